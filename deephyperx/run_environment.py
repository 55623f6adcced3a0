"""What a run ran on, kept beside its results: library versions, torch's thread counts, the CPU and
the instruction set torch's kernels use, the device and the number of processes. Numbers from the
same command and seed can differ with another thread count or another CPU instruction set (torch
adds in another order; adversarial training amplifies it, see docs/results/generators.md), so each start and
each resume of a run appends one record to its folder's ``environment.jsonl``, and a resume with
another thread count, number of processes or instruction set says so on stderr."""
from __future__ import annotations

import datetime
import json
import os
import platform
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from deephyperx import distributed
from deephyperx.atomic import atomic_write_text

ENVIRONMENT_FILE = "environment.jsonl"


def device_name(cuda: Optional[int]) -> str:
    """The device a ``--cuda`` value gives: a GPU's name, or "cpu" (also when no GPU is there)."""
    if cuda is None or cuda < 0 or not torch.cuda.is_available() or cuda >= torch.cuda.device_count():
        return "cpu"
    return f"cuda:{cuda} ({torch.cuda.get_device_name(cuda)})"


def cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux), else what ``platform`` knows, else "unknown"."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def installed_version(distribution: str) -> Optional[str]:
    """The installed version of ``distribution`` (None when it is not installed), without importing it."""
    try:
        return version(distribution)
    except PackageNotFoundError:
        return None


def describe_environment(cuda: Optional[int] = None) -> dict[str, Any]:
    """This process's software, thread counts and device (from ``--cuda``), as JSON-ready values.

    scikit-learn's version is read from its installed metadata: importing it would cost a neural run
    about 90 MB of resident memory for one string."""
    return {
        "time": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "scikit_learn": installed_version("scikit-learn"),
        "platform": platform.platform(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "cpu": cpu_model(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "device": device_name(cuda),
        "world_size": distributed.world_size(),
    }


def read_environment(folder: Path) -> list[dict[str, Any]]:
    """The records of ``folder``'s ``environment.jsonl``, oldest first (none when absent)."""
    path = Path(folder) / ENVIRONMENT_FILE
    if not path.is_file():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def record_environment(folder: Path, resumed_from_epoch: Optional[int] = None,
                       cuda: Optional[int] = None) -> dict[str, Any]:
    """Append this process's environment to ``folder``'s ``environment.jsonl`` (rewritten
    atomically) and return the record. A fresh start (``resumed_from_epoch`` None) begins a new
    file; a resume keeps the earlier records and warns when the thread count or the number of
    processes changed, since the numbers will then differ from an uninterrupted run's."""
    earlier = read_environment(folder) if resumed_from_epoch is not None else []
    record = {**describe_environment(cuda), "resumed_from_epoch": resumed_from_epoch}
    if earlier:
        warn_on_changes(earlier[-1], record)
    lines = [json.dumps(item, sort_keys=True) for item in [*earlier, record]]
    atomic_write_text(Path(folder) / ENVIRONMENT_FILE, "\n".join(lines) + "\n")
    return record


def warn_on_changes(before: dict[str, Any], now: dict[str, Any]) -> None:
    """One stderr line per setting that differs between the run's last start and this resume (a
    setting the earlier record lacks, written before it was recorded, is not compared)."""
    settings = (("torch_threads", "{} torch threads"), ("world_size", "{} processes"),
                ("cpu_capability", "the {} CPU instruction set"))
    for key, phrase in settings:
        if key in before and before[key] != now.get(key):
            print(f"warning: this run went on with {phrase.format(before[key])} and resumes with "
                  f"{now.get(key)}; its numbers will differ from an uninterrupted run's "
                  f"(see {ENVIRONMENT_FILE} in its folder)", file=sys.stderr)
