"""Accuracy and time of float32 against bfloat16 mixed precision (``--precision bf16``), model by model,
over seeds, on a real scene: whether bf16 pays on this processor and what it costs in OA.

    python benchmarks/precision_accuracy.py --models hamida:20 li:20 SSFTT:20 --seeds 3 \\
        --folder ../shared/data --json docs/perf/precision_accuracy.json

Each ``MODEL:EPOCHS`` trains ``--seeds`` seeds (0, 1, ...) on Indian Pines 10% random (or ``--dataset``
and ``--training_sample``) with the model's registered settings and EPOCHS epochs, once in float32 and
once under bfloat16 autocast, through the Python API (the same path as ``main.py``). The JSON (written
atomically, again after each model and precision, so a long run keeps what it finished) gives per
model and precision: OA, AA and kappa per seed, their mean and standard deviation,
training and inference seconds per seed, and the processor's capability and native bfloat16 support.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from deephyperx.atomic import atomic_write_text
from deephyperx.precision import describe_support


def model_and_epochs(text: str) -> tuple[str, int]:
    """``MODEL:EPOCHS`` -> (MODEL, EPOCHS)."""
    name, _, epochs = text.partition(":")
    if not epochs.isdigit() or int(epochs) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: give MODEL:EPOCHS, e.g. hamida:20")
    return name, int(epochs)


def mean_std(values: list[float]) -> tuple[float, float]:
    return round(statistics.fmean(values), 2), round(statistics.stdev(values), 2) if len(values) > 1 else 0.0


def measure(model: str, epochs: int, precision: str, seeds: int, args: argparse.Namespace, out: Path) -> dict[str, Any]:
    """Train ``seeds`` seeds of ``model`` at ``precision``; their scores and times."""
    from deephyperx.api import train

    result = train(model, args.dataset, folder=args.folder, training_sample=args.training_sample, seed=0,
                   epochs=epochs, runs=seeds, out=out / precision, precision=precision)
    per_seed = [run.metrics for run in result.seeds]
    row: dict[str, Any] = {"model": model, "precision": precision, "epochs": epochs, "seeds": len(per_seed)}
    for key, name in (("overall_accuracy", "oa"), ("average_accuracy", "aa"), ("kappa", "kappa")):
        values = [100 * float(m[key]) for m in per_seed]
        row[f"{name}_per_seed"] = [round(v, 2) for v in values]
        row[f"{name}_mean"], row[f"{name}_std"] = mean_std(values)
    row["train_seconds_per_seed"] = [round(float(m["train_seconds"]), 1) for m in per_seed]
    row["inference_seconds_per_seed"] = [round(float(m["inference_seconds"]), 1) for m in per_seed]
    return row


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", type=model_and_epochs, required=True, help="MODEL:EPOCHS ...")
    parser.add_argument("--seeds", type=int, default=3, help="seeds per model and precision (default 3)")
    parser.add_argument("--dataset", default="IndianPines")
    parser.add_argument("--folder", default="../shared/data", help="folder of the scenes")
    parser.add_argument("--training_sample", type=float, default=0.1)
    parser.add_argument("--json", required=True, help="where to write the measurements")
    args = parser.parse_args(argv)
    command = "python benchmarks/precision_accuracy.py " + " ".join(sys.argv[1:] if argv is None else argv)
    rows: list[dict[str, Any]] = []
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="precision_") as scratch:
        for model, epochs in args.models:
            for precision in ("fp32", "bf16"):
                rows.append(measure(model, epochs, precision, args.seeds, args, Path(scratch) / model))
                print(json.dumps(rows[-1]), file=sys.stderr)
                result = {"command": command, "torch": torch.__version__, **describe_support(),
                          "threads": torch.get_num_threads(), "rows": rows}
                atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")  # each finished row kept
    return 0


if __name__ == "__main__":
    sys.exit(main())
