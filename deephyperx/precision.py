"""Numeric precision of a run: float32 (the default, which keeps the published numbers) or bfloat16
mixed precision through autocast, on the processor's native bfloat16 units where it has them.

On CPUs, bfloat16 pays only on processors with native bfloat16 arithmetic (AVX512-BF16 or AMX tiles:
a 2048x2048 product ran about 4.7 times faster than in float32 on one such processor); elsewhere it is
emulated and slower than float32. :func:`describe_support` says which the processor is and
:func:`precision_context` warns once when bf16 is asked for without native support.
"""
from __future__ import annotations

import contextlib
import sys
from functools import lru_cache
from typing import ContextManager

import torch

#: The precisions a run accepts (``--precision``).
PRECISIONS = ("fp32", "bf16")
#: CPU flags (/proc/cpuinfo) of native bfloat16 arithmetic.
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")

_warned = False


@lru_cache(maxsize=1)
def cpu_flags() -> frozenset[str]:
    """The processor's feature flags (empty where /proc/cpuinfo is not readable)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("flags"):
                    return frozenset(line.split(":", 1)[1].split())
    except OSError:
        pass
    return frozenset()


def native_bf16_on_cpu() -> bool:
    """True when the CPU computes bfloat16 natively (AVX512-BF16 or AMX)."""
    return any(flag in cpu_flags() for flag in NATIVE_BF16_FLAGS)


def describe_support() -> dict[str, object]:
    """What the processor offers, for run records and benchmarks."""
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "native_bf16": native_bf16_on_cpu(),
            "bf16_flags": sorted(flag for flag in NATIVE_BF16_FLAGS if flag in cpu_flags())}


def precision_context(precision: str, device: torch.device) -> ContextManager:
    """The autocast context of ``precision`` on ``device`` (a null context for fp32). Asking bf16 on a
    CPU without native bfloat16 prints one warning: it runs, but slower than fp32."""
    global _warned
    if precision == "fp32":
        return contextlib.nullcontext()
    if precision != "bf16":
        raise ValueError(f"precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    if device.type == "cpu" and not native_bf16_on_cpu() and not _warned:
        _warned = True
        print(f"warning: --precision bf16 on a CPU without native bfloat16 ({', '.join(NATIVE_BF16_FLAGS)} not "
              f"in its flags; capability {torch.backends.cpu.get_cpu_capability()}): it is emulated and usually "
              "slower than fp32", file=sys.stderr)
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
