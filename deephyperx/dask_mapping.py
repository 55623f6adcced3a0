"""Mapping a scene on a Dask cluster: tiles are tasks, the client writes the map.

The job is planned and its output opened (or resumed) exactly as in
:func:`deephyperx.tiled_mapping.map_scene`; each pending tile becomes one task that a worker
process runs by opening the cube and loading the checkpoint once (cached by path) and returning
the tile's classes (and probabilities). The client writes results as they complete, through the
same :class:`~deephyperx.tiled_mapping.MapWriter` and manifest, so an interrupted Dask job
resumes like a single-process one, and either can finish the other's job.

``scheduler="local"`` starts a :class:`distributed.LocalCluster` of ``workers`` single-threaded
processes on this machine; a ``tcp://host:port`` address connects to a running scheduler, whose
workers must see the checkpoint and cube at the same paths (a shared file system) and be able to
import deephyperx and the model zoo. A worker that dies is replaced and its task retried on
another worker (the scheduler's ``distributed.scheduler.allowed-failures``, 3 by default); a task
that keeps killing workers stops the job with a one-line error, leaving the partial map to resume.
"""
from __future__ import annotations

import contextlib
import importlib
import itertools
import logging
import os
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import torch

from deephyperx.errors import UserError
from deephyperx.lazy_cube import LazyCube, open_lazy_cube
from deephyperx.tiled_mapping import (InferenceCost, MappingJob, MappingModel, MappingReport, TilePlan, TileResult,
                                      load_mapping_model, predict_tile, prepare_job, return_freed_memory)

PathLike = Union[str, Path]

#: Per worker process: loaded models and opened cubes, keyed by path (and modification time).
_MODELS: dict[tuple[str, int], MappingModel] = {}
_CUBES: dict[tuple[str, Optional[str], int], LazyCube] = {}


def _stamp(path: str) -> int:
    return os.stat(path).st_mtime_ns


def _worker_model(checkpoint: str) -> MappingModel:
    key = (checkpoint, _stamp(checkpoint))
    if key not in _MODELS:
        return_freed_memory()
        _MODELS.clear()  # one job's model at a time per worker
        _MODELS[key] = load_mapping_model(checkpoint, "cpu")
    return _MODELS[key]


def _worker_cube(path: str, key: Optional[str]) -> LazyCube:
    ident = (path, key, _stamp(path))
    if ident not in _CUBES:
        _CUBES.clear()
        _CUBES[ident] = open_lazy_cube(path, key)
    return _CUBES[ident]


def map_tile_task(checkpoint: str, cube: str, key: Optional[str], plan: TilePlan, cost: InferenceCost, index: int,
                  probabilities: bool, imports: Sequence[str] = ()) -> tuple[int, TileResult]:
    """One Dask task: classify tile ``index`` of ``plan`` in a worker process. ``imports`` are
    modules to import first (the model zoo, which registers the models)."""
    for name in imports:
        importlib.import_module(name)
    with contextlib.suppress(ValueError, AttributeError):  # outside a worker: keep torch's threads
        from distributed import get_worker

        torch.set_num_threads(max(1, int(get_worker().state.nthreads)))
    model = _worker_model(checkpoint)
    return index, predict_tile(model, _worker_cube(cube, key), plan, index, cost, "cpu", probabilities)


@contextlib.contextmanager
def dask_client(scheduler: str = "local", workers: int = 2) -> Iterator[Any]:
    """A client of a new local cluster (``"local"``: ``workers`` processes of one thread each) or of
    the scheduler at address ``scheduler``; closed (and the local cluster stopped) on exit."""
    from distributed import Client, LocalCluster

    if scheduler == "local":
        if workers < 1:
            raise UserError(f"--workers {workers} must be at least 1")
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                          silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
            yield client
        return
    if "://" not in scheduler:
        raise UserError(f"--dask {scheduler!r} is neither 'local' nor a scheduler address such as "
                        "tcp://host:8786")
    try:
        _probe(scheduler)
        client = Client(scheduler, timeout="10s")
    except (OSError, TimeoutError) as error:
        detail = " ".join(str(error).split())[:160] or type(error).__name__
        raise UserError(f"cannot reach the Dask scheduler at {scheduler} ({detail}); start one with "
                        "`dask scheduler` and workers with `dask worker ADDRESS`, or use --dask local") from None
    with client:
        yield client


def _probe(address: str) -> None:
    """Open and close a TCP connection to a ``tcp://host:port`` scheduler, so that a refused or
    unroutable address fails at once rather than after the client's connection retries."""
    import socket

    scheme, _, rest = address.partition("://")
    host, _, port = rest.rpartition(":")
    if scheme == "tcp" and port.isdigit():
        with socket.create_connection((host.strip("[]"), int(port)), timeout=5):
            pass


def dask_results(client: Any, job: MappingJob, imports: Sequence[str],
                 in_flight: Optional[int] = None) -> Iterator[tuple[int, TileResult]]:
    """Run the job's pending tiles as tasks and yield (index, result) as they complete. At most
    ``in_flight`` tasks (default: twice the cluster's threads) are submitted at once, so that
    finished tiles waiting for the client never pile up in the workers' memory. A tile whose task
    killed its workers raises a one-line :class:`UserError`; the tasks still running are cancelled
    whenever the iteration stops."""
    from distributed import as_completed
    from distributed.scheduler import KilledWorker

    checkpoint, cube = str(Path(job.model.checkpoint).resolve()), str(Path(job.cube.path).resolve())
    pending = iter(job.pending)
    limit = in_flight or max(2, 2 * sum(client.nthreads().values()))
    tiles: dict[Any, int] = {}

    def submit(index: int) -> Any:
        future = client.submit(map_tile_task, checkpoint, cube, job.cube.key, job.plan, job.cost, index,
                               job.probabilities, tuple(imports), key=f"deephyperx-map-{job.writer.job_id}-{index}",
                               pure=False)
        tiles[future] = index
        return future

    running = as_completed([submit(index) for index in itertools.islice(pending, limit)], with_results=True)
    try:
        while True:
            try:  # results are gathered as tasks finish, so a worker dying later cannot lose them
                future, (index, result) = next(running)
            except StopIteration:
                return
            except KilledWorker as error:
                key = str(getattr(error, "task", ""))  # deephyperx-map-<job>-<tile>
                tile = key.rsplit("-", 1)[-1] if key.startswith("deephyperx-map-") else "?"
                raise UserError(f"a Dask worker died while mapping tile {tile} of {cube}, on every retry the "
                                "scheduler allows (distributed.scheduler.allowed-failures); the partial map "
                                f"{job.writer.targets[0].partial} is kept: run the same command again to resume"
                                ) from None
            del tiles[future]
            future.release()
            following = next(pending, None)
            if following is not None:
                running.add(submit(following))
            yield index, result
    finally:
        client.cancel(list(tiles))


def map_scene_dask(checkpoint: PathLike, cube_path: PathLike, out: PathLike, *, key: Optional[str] = None,
                   memory_budget: Union[str, int] = "2GB", probabilities: bool = False,
                   batch_size: Optional[int] = None, scheduler: str = "local", workers: int = 2,
                   imports: Sequence[str] = (), progress: bool = True, tile_side: Optional[int] = None,
                   on_tile: Any = None, in_flight: Optional[int] = None) -> MappingReport:
    """Map ``cube_path`` with the model of ``checkpoint`` into ``out`` with tiles as Dask tasks; resumes
    an interrupted job of the same inputs and options, whether it ran on Dask or in one process.
    The memory budget holds per task: a worker of N threads runs N tiles at once (``local``
    workers have one thread each)."""
    if scheduler != "local" and "://" not in scheduler:  # before any file is written
        raise UserError(f"--dask {scheduler!r} is neither 'local' nor a scheduler address such as tcp://host:8786")
    job = prepare_job(checkpoint, cube_path, out, key=key, memory_budget=memory_budget, probabilities=probabilities,
                      batch_size=batch_size, device="cpu", tile_side=tile_side)
    try:
        with dask_client(scheduler, workers) as client:
            return job.run(dask_results(client, job, imports, in_flight), progress, on_tile)
    except BaseException:
        job.writer.abandon()
        raise
