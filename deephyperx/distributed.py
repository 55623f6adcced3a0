"""Data-parallel training across processes and machines with torch.distributed, launched by torchrun.

A process started by ``torchrun`` finds ``WORLD_SIZE``, ``RANK`` and ``LOCAL_RANK`` in its
environment; :func:`init` then joins the process group (gloo on CPUs, NCCL when training on CUDA).
Without torchrun (or with one process) every function here is a no-op, so a plain
``python main.py ...`` behaves, and computes, exactly as it always did.

What is split between ranks and what is not (see docs/DISTRIBUTED.md):

* each epoch every rank draws the same seeded order of the training samples and keeps its own
  strided shard (:func:`shard`), padded so that every rank makes the same number of batches;
* the model is wrapped in DistributedDataParallel (:func:`wrap_model`), which averages gradients;
* rank 0 alone validates, writes checkpoints and run folders, maps the scene and writes reports; the
  others receive its validation scores (:func:`broadcast_object`) so schedulers step identically.
"""
from __future__ import annotations

import atexit
import datetime
import os
import sys
from typing import Any, NoReturn, Optional, Sequence

import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from deephyperx.errors import UserError

#: Environment variable overriding the backend (``gloo`` or ``nccl``).
ENV_BACKEND = "DEEPHYPERX_DIST_BACKEND"
#: Environment variable: seconds a rank may wait for the others (rank 0 maps the scene meanwhile).
ENV_TIMEOUT = "DEEPHYPERX_DIST_TIMEOUT"
BACKENDS = ("gloo", "nccl")
DEFAULT_TIMEOUT_S = 2 * 3600.0


# ----- where this process stands -----------------------------------------------------------------

def launched() -> bool:
    """Whether torchrun (or another launcher setting ``WORLD_SIZE``) started several processes."""
    try:
        return int(os.environ.get("WORLD_SIZE", "1")) > 1
    except ValueError:
        raise UserError(f"WORLD_SIZE={os.environ['WORLD_SIZE']!r} is not a number; launch with torchrun") from None


def active() -> bool:
    """Whether this process is one of several in an initialised process group."""
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def rank() -> int:
    """This process's rank (0 when not distributed)."""
    return dist.get_rank() if active() else 0


def world_size() -> int:
    """Processes training together (1 when not distributed)."""
    return dist.get_world_size() if active() else 1


def local_rank() -> int:
    """This process's index on its machine (torchrun's ``LOCAL_RANK``; 0 when not distributed)."""
    return int(os.environ.get("LOCAL_RANK", "0")) if active() else 0


def is_main() -> bool:
    """Whether this process writes files, validates and reports (rank 0, or the only process)."""
    return rank() == 0


def rank_keys() -> tuple[int, ...]:
    """Extra seed keys for this rank's own random streams (augmentation, dropout): none on rank 0,
    so that rank 0 and a single process draw the same streams, ``(rank,)`` on the others."""
    return (rank(),) if rank() else ()


# ----- joining and leaving -----------------------------------------------------------------------

def choose_backend(use_cuda: bool, requested: Optional[str] = None) -> str:
    """The backend: ``requested`` (or ``$DEEPHYPERX_DIST_BACKEND``), else NCCL for CUDA, gloo for CPUs."""
    name = (requested or os.environ.get(ENV_BACKEND) or ("nccl" if use_cuda else "gloo")).lower()
    if name not in BACKENDS:
        raise UserError(f"distributed backend '{name}' is unknown; choose one of: {', '.join(BACKENDS)}")
    if name == "nccl" and not torch.cuda.is_available():
        raise UserError("distributed backend 'nccl' needs CUDA GPUs and none is available; use gloo "
                        f"({ENV_BACKEND}=gloo) or train on GPUs (--cuda 0)")
    return name


def _timeout() -> datetime.timedelta:
    raw = os.environ.get(ENV_TIMEOUT)
    try:
        seconds = float(raw) if raw else DEFAULT_TIMEOUT_S
    except ValueError:
        seconds = -1.0
    if seconds <= 0:
        raise UserError(f"{ENV_TIMEOUT}={raw!r} must be a positive number of seconds")
    return datetime.timedelta(seconds=seconds)


def init(use_cuda: bool = False, backend: Optional[str] = None) -> bool:
    """Join the process group when launched by torchrun (idempotent); False when not distributed.

    With NCCL each process takes the GPU of its ``LOCAL_RANK``. The group is left at exit."""
    if not launched():
        return False
    if dist.is_initialized():
        return True
    name = choose_backend(use_cuda, backend)
    if name == "nccl":
        torch.cuda.set_device(_gpu_of(int(os.environ.get("LOCAL_RANK", "0"))))
    try:
        dist.init_process_group(backend=name, timeout=_timeout())
    except (RuntimeError, ValueError) as error:
        where = f"{os.environ.get('MASTER_ADDR', '?')}:{os.environ.get('MASTER_PORT', '?')}"
        first = (str(error).strip().splitlines() or [type(error).__name__])[0][:160]
        raise UserError(f"could not join the process group at {where} ({first}); check torchrun's "
                        "--rdzv_endpoint and that every node can reach it") from None
    atexit.register(shutdown)
    return True


def shutdown() -> None:
    """Leave the process group (no-op when none was joined)."""
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def exit_process(status: int) -> NoReturn:
    """End the program with exit ``status``: ``sys.exit`` in a plain process; in one that joined a
    process group, run the exit handlers (which leave the group), flush the standard streams and
    ``os._exit``, skipping the interpreter's finalisation.

    Why: Gloo's worker threads release a finished collective's tensors after the caller has its
    result. When the last Python reference to such a tensor is gone, that release needs the GIL; if
    the main thread is by then finalising the interpreter, the worker thread is killed inside C++
    code and the process aborts ("terminate called without an active exception", SIGABRT), failing
    a run that finished and wrote everything (about one short two-process run in ten on a 2-core
    machine). Python's own ``multiprocessing`` ends its children the same way."""
    if not (dist.is_available() and dist.is_initialized()):
        sys.exit(status)
    atexit._run_exitfuncs()  # noqa: SLF001  (leaves the group, flushes logging, removes temporary files)
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed or broken stream has nothing left to lose
            pass
    os._exit(status)


# ----- communication (no-ops in a single process) -----------------------------------------------------

def _comm_device() -> torch.device:
    """Where collective tensors live: the rank's GPU under NCCL, else the CPU."""
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def barrier() -> None:
    """Wait until every rank gets here."""
    if active():
        dist.barrier()


def broadcast_object(value: Any, src: int = 0) -> Any:
    """Rank ``src``'s ``value`` on every rank (picklable values: scores, checkpoints, metrics)."""
    if not active():
        return value
    holder = [value if rank() == src else None]
    dist.broadcast_object_list(holder, src=src)
    return holder[0]


def all_reduce_sum(values: Sequence[float]) -> list[float]:
    """Element-wise sums over ranks of ``values`` (float64)."""
    if not active():
        return [float(v) for v in values]
    tensor = torch.tensor(list(values), dtype=torch.float64, device=_comm_device())
    dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor.cpu().tolist()


def mean_across_ranks(values: Sequence[float]) -> float:
    """The mean of every rank's ``values`` together (NaN when there are none)."""
    total, count = all_reduce_sum([float(sum(values)), float(len(values))])
    return total / count if count else float("nan")


# ----- the data -----------------------------------------------------------------------------------

def shard(order: torch.Tensor, rank_: int, world: int) -> torch.Tensor:
    """Rank ``rank_``'s share of an epoch's sample ``order``: every ``world``-th sample from
    ``rank_``, after padding ``order`` with its own first samples (repeated as needed) to a multiple
    of ``world``, so every rank gets ``ceil(len(order) / world)`` samples and as many batches. The
    shards are disjoint positions of the padded order and together cover all of ``order``."""
    if world < 1 or not 0 <= rank_ < world:
        raise ValueError(f"rank {rank_} is not one of {world} ranks")
    n = len(order)
    if world == 1 or n == 0:
        return order
    total = -(-n // world) * world
    padded = order.repeat(-(-total // n))[:total]
    return padded[rank_::world]


# ----- the model ----------------------------------------------------------------------------------

class _ForwardingDDP(DistributedDataParallel):
    """DDP that also answers the wrapped model's own attributes (a step reading
    ``model.reconstruction_weight`` or calling ``model.auxiliary_loss`` sees the model's)."""

    def __getattr__(self, name: str) -> Any:
        try:
            return super().__getattr__(name)
        except AttributeError:
            if name == "module":
                raise
            return getattr(self.module, name)


def wrap_model(model: nn.Module, device: torch.device) -> nn.Module:
    """``model`` in DistributedDataParallel when distributed (gradients averaged over ranks, rank 0's
    initial weights broadcast to all), else ``model`` itself."""
    if not active():
        return model
    ids = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else None
    return _ForwardingDDP(model, device_ids=ids)


def rank_device(device: torch.device) -> torch.device:
    """The GPU of this rank's ``LOCAL_RANK`` when training on CUDA in a process group; else ``device``."""
    if not (active() and device.type == "cuda"):
        return device
    return torch.device("cuda", _gpu_of(local_rank()))


def _gpu_of(local: int) -> int:
    """GPU ``local`` of this node (one process per GPU), or a one-line error when there are fewer."""
    count = torch.cuda.device_count()
    if local >= count:
        raise UserError(f"process LOCAL_RANK {local} needs GPU {local} but this node has {count}; "
                        f"give torchrun --nproc_per_node {count} or fewer")
    return local


#END
