"""CPU seconds per training epoch of each model on a real scene, and the time of its whole registered
schedule projected from them: the time axis of the zoo's OA-against-CPU-time view where a full run's own
time was not measured on the CPU.

    python benchmarks/epoch_times.py --models hu hamida SSRN A2S2K --epochs 2 --folder ../shared/data \\
        --json docs/results/cpu_epoch_times.json

Each model trains ``--epochs`` epochs with its registered settings on Indian Pines 10% random, seed 0 (or
``--dataset`` and ``--training_sample``), through the engine's own loop, and stops there as an interrupted
run would (no scene map): ``seconds_per_epoch`` is the loop's training time over those epochs (the
first epoch's warm-up included), ``projected_schedule_s`` that times the registered epochs. Models run one
after another in this process with the machine's threads; the JSON (written atomically, again after
each model, so a stopped run keeps what it finished) records the processor, the thread count and the
command.
"""
from __future__ import annotations

import argparse
import json
import platform
import shlex
import sys
import tempfile
from pathlib import Path
from typing import Any, Optional

import torch

from deephyperx.atomic import atomic_write_text
from deephyperx.errors import UserError


def time_epochs(model: str, dataset: str, folder: str, training_sample: float, epochs: int) -> dict[str, Any]:
    """Train ``model`` for ``epochs`` epochs (then stop, as an interruption would); its timings."""
    from deephyperx import checkpoint as ckpt
    from deephyperx.api import load_scene
    from deephyperx.config import resolve_config
    from deephyperx.experiment import Experiment
    from deephyperx.registry import get_spec
    from deephyperx.runner import ClassifyTask, check_patch_fits

    spec = get_spec(model)
    if spec.family != "neural":
        raise UserError(f"{model} is a {spec.family} model: its results rows give its whole training time")
    scene = load_scene(dataset, folder)
    with tempfile.TemporaryDirectory() as out:
        config = resolve_config(spec, {"dataset": scene.name, "folder": folder, "training_sample": training_sample,
                                       "seed": 0, "out": out})
        config["dataset"] = scene.name
        check_patch_fits(config, spec.family, scene)
        schedule = int(config["epoch"])
        if epochs > schedule:
            raise UserError(f"--epochs {epochs} is more than {model}'s registered {schedule}")
        final = Path(out) / "seed0"
        Experiment(ClassifyTask(scene, config)).run_seed(0, final, stop_after_epoch=epochs)
        state = ckpt.load_checkpoint(final.with_name("seed0.partial") / "checkpoint.pt")
    seconds = float(state["train_seconds"])
    return {"model": model, "epochs_timed": int(state["epoch"]), "train_seconds": round(seconds, 2),
            "seconds_per_epoch": round(seconds / int(state["epoch"]), 3), "registered_epochs": schedule,
            "projected_schedule_s": round(seconds / int(state["epoch"]) * schedule, 1),
            "batch_size": int(config["batch_size"]), "patch_size": int(config["patch_size"])}


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True)
    parser.add_argument("--epochs", type=int, default=2, help="epochs timed per model (default 2)")
    parser.add_argument("--dataset", default="IndianPines")
    parser.add_argument("--folder", default="../shared/data")
    parser.add_argument("--training_sample", type=float, default=0.1)
    parser.add_argument("--json", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.epochs < 1:
        print(f"error: --epochs {args.epochs} must be at least 1", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "command": "python benchmarks/epoch_times.py " + shlex.join(argv if argv is not None else sys.argv[1:]),
        "scene": args.dataset, "training_sample": args.training_sample, "seed": 0,
        "device": f"CPU, {torch.get_num_threads()} threads", "processor": platform.processor() or platform.machine(),
        "torch": torch.__version__, "rows": []}
    for model in args.models:
        try:
            row = time_epochs(model, args.dataset, args.folder, args.training_sample, args.epochs)
        except UserError as error:
            print(f"error: {error}", file=sys.stderr)
            return 2
        report["rows"].append(row)
        atomic_write_text(args.json, json.dumps(report, indent=2) + "\n")
        print(f"{model}: {row['seconds_per_epoch']:.2f} s/epoch, {row['registered_epochs']} epochs -> "
              f"{row['projected_schedule_s'] / 60:.1f} min", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
