"""Where the training and inference time of the small 3D CNNs goes, against the processor's matmul rate.

    python benchmarks/profile_models.py --json outputs/bench/profile.json            # hamida li lee he (+ SSFTT)
    python benchmarks/profile_models.py --models hamida li --threads 2 --steps 20 --json ...

For each model, on Indian Pines-shaped patches (200 bands or the model's PCA components, 16 classes, its
registered patch), with ``--threads`` intra-op threads:

- ``matmul_gflops``: a 2048x2048 float32 matrix product timed in the same process (the rate the
  processor reaches on arithmetic alone), and in bfloat16 when the processor has native bfloat16;
- training: SGD steps on batches of ``--batch`` random patches (forward, cross-entropy, backward,
  update): samples per second, floating-point operations per step (``torch.utils.flop_counter``),
  achieved GFLOP/s and its fraction of the matmul rate;
- where a step's time goes (``torch.profiler``): ``operator_fraction`` is the self time of the ATen
  operators (the kernels, dispatch included) over the wall time, ``overhead_fraction`` the rest
  (Python, autograd bookkeeping, allocation between operators);
- inference: patches per second of forward passes without gradients (batches of 1024);
- ``step_tensor_peak_mb``: the most tensor memory a training step holds at once (its working set);
- ``--precision bf16``: the same under bfloat16 autocast, to see whether it pays on this processor.

hamida is also timed in its plain ``Conv3d`` formulation (``formulation: conv3d``), which it trained
with before its convolutions became matrix products (models/spectral_unfold.py): the before/after of
docs/PERFORMANCE.md. li is also timed as matrix products (``formulation: matmul``), the formulation it
does not use because it is slower there. The JSON is written atomically.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable, Optional

import torch
import torch.nn.functional as F
from torch import nn
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from deephyperx.atomic import atomic_write_text
from deephyperx.api import create_model
from deephyperx.config import model_band_count
from deephyperx.precision import PRECISIONS, describe_support, precision_context
from deephyperx.registry import get_spec, list_models
from deephyperx.tensor_peak import TensorPeak
from deephyperx.models.spectral_unfold import conv3d_as_matmul, flatten_like_conv3d, volume_of_patches

#: The Conv3d layers of the models timed in another formulation too, in forward order, and that formulation.
OTHER_FORMULATION = {"hamida": ("conv3d", ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4")),
                     "li": ("matmul", ("conv1", "conv2"))}
DEFAULT_MODELS = ("hamida", "li", "lee", "he", "SSFTT")


def matmul_gflops(dtype: torch.dtype, size: int = 2048, repeats: int = 10) -> float:
    """GFLOP/s of a size x size matrix product in ``dtype`` (best of ``repeats``)."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    best = min(_timed(lambda: a @ b) for _ in range(repeats))
    return 2 * size ** 3 / best / 1e9


def _timed(work: Callable[[], Any]) -> float:
    started = time.perf_counter()
    work()
    return time.perf_counter() - started


def conv3d_forward(model: nn.Module, layers: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
    """``model`` computed with its ``Conv3d`` layers as modules (the formulation before matrix products)."""
    volume = x.unsqueeze(1)
    for name in layers:
        volume = F.relu(getattr(model, name)(volume))
    return model.fc(volume.flatten(1))


def matmul_forward(model: nn.Module, layers: tuple[str, ...], x: torch.Tensor) -> torch.Tensor:
    """``model`` computed with its ``Conv3d`` layers as matrix products (models/spectral_unfold.py)."""
    volume = volume_of_patches(x)
    for name in layers:
        volume = F.relu(conv3d_as_matmul(getattr(model, name), volume))
    return model.fc(flatten_like_conv3d(volume))


PRECISION = "fp32"  # --precision


def training_step(model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor], optimiser: torch.optim.Optimizer,
                  x: torch.Tensor, y: torch.Tensor) -> None:
    optimiser.zero_grad(set_to_none=True)
    with precision_context(PRECISION, torch.device("cpu")):
        loss = F.cross_entropy(forward(x).float(), y)
    loss.backward()
    optimiser.step()


def measure(name: str, formulation: str, model: nn.Module, forward: Callable[[torch.Tensor], torch.Tensor],
            batch: int, steps: int, bands: int, patch: int, matmul: float) -> dict[str, Any]:
    """The training and inference figures of one model in one formulation."""
    torch.manual_seed(0)
    dense = get_spec(name).training_defaults().get("output") == "dense"  # lee: a label per patch pixel
    x = torch.randn(batch, bands, patch, patch)
    y = torch.randint(0, 16, (batch, patch, patch) if dense else (batch,))
    optimiser = torch.optim.SGD(model.parameters(), lr=1e-3)
    model.train()
    for _ in range(2):  # warm-up: allocator, oneDNN primitives
        training_step(model, forward, optimiser, x, y)
    with FlopCounterMode(display=False) as counter:
        training_step(model, forward, optimiser, x, y)
    flops = counter.get_total_flops()
    with TensorPeak() as tensors:
        training_step(model, forward, optimiser, x, y)
    seconds = [_timed(lambda: training_step(model, forward, optimiser, x, y)) for _ in range(steps)]
    step_seconds = sorted(seconds)[len(seconds) // 2]  # the median step
    with profile(activities=[ProfilerActivity.CPU]) as profiler:
        started = time.perf_counter()
        for _ in range(3):
            training_step(model, forward, optimiser, x, y)
        wall = time.perf_counter() - started
    operator_us = sum(e.self_cpu_time_total for e in profiler.key_averages() if e.key.startswith("aten::"))
    operator_fraction = min(1.0, operator_us / 1e6 / wall)
    model.eval()
    probe = torch.randn(1024, bands, patch, patch)
    with torch.no_grad(), precision_context(PRECISION, torch.device("cpu")):
        forward(probe)
        inference = min(_timed(lambda: forward(probe)) for _ in range(3))
    achieved = flops / step_seconds / 1e9
    return {"model": name, "formulation": formulation, "precision": PRECISION, "bands": bands, "patch": patch, "batch": batch,
            "parameters": sum(p.numel() for p in model.parameters()),
            "train_step_ms": round(step_seconds * 1e3, 2), "train_samples_per_s": round(batch / step_seconds, 1),
            "gflop_per_step": round(flops / 1e9, 3), "achieved_gflops": round(achieved, 2),
            "fraction_of_matmul": round(achieved / matmul, 4), "operator_fraction": round(operator_fraction, 3),
            "overhead_fraction": round(1 - operator_fraction, 3),
            "step_tensor_peak_mb": round(tensors.peak / 2**20, 1),
            "inference_patches_per_s": round(len(probe) / inference, 1)}


def profile_model(name: str, args: argparse.Namespace, matmul: float) -> list[dict[str, Any]]:
    spec = get_spec(name)
    defaults = spec.training_defaults()
    bands = model_band_count(defaults, 200)
    patch = int(defaults["patch_size"])
    model = create_model(name, n_bands=bands, n_classes=16, seed=0)
    rows = []
    formulations: list[tuple[str, Callable[[torch.Tensor], torch.Tensor]]] = [("default", model)]
    if name in OTHER_FORMULATION:
        other, layers = OTHER_FORMULATION[name]
        compute = conv3d_forward if other == "conv3d" else matmul_forward
        formulations.append((other, lambda x: compute(model, layers, x)))
    for formulation, forward in formulations:
        rows.append(measure(name, formulation, model, forward, args.batch, args.steps, bands, patch, matmul))
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_MODELS)} (those registered)")
    parser.add_argument("--threads", type=int, default=2, help="intra-op threads (default 2)")
    parser.add_argument("--batch", type=int, default=100, help="training batch (default 100)")
    parser.add_argument("--steps", type=int, default=15, help="timed training steps per model (default 15)")
    parser.add_argument("--precision", choices=PRECISIONS, default="fp32", help="fp32 (default) or bf16 autocast")
    parser.add_argument("--json", required=True, help="where to write the results")
    args = parser.parse_args(argv)
    global PRECISION
    PRECISION = args.precision
    torch.set_num_threads(args.threads)
    names = args.models or [m for m in DEFAULT_MODELS if m in list_models()]
    support = describe_support()
    matmul = matmul_gflops(torch.float32)
    result: dict[str, Any] = {
        "command": "python benchmarks/profile_models.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "threads": args.threads, "torch": torch.__version__, "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), **support, "matmul_fp32_gflops": round(matmul, 1),
        "matmul_bf16_gflops": round(matmul_gflops(torch.bfloat16), 1) if support["native_bf16"] else None,
        "rows": []}
    for name in names:
        result["rows"].extend(profile_model(name, args, matmul))
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
