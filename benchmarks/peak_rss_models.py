"""Peak resident memory of ``main.py`` runs, model by model, repeated, in this checkout or another one
(an earlier version, to compare): the before/after of docs/PERFORMANCE.md.

    python benchmarks/peak_rss_models.py --models hamida li lee --runs 3 --json outputs/bench/peak_rss.json -- \\
        --dataset IndianPines --folder ../shared/data --training_sample 0.1 --epoch 2
    python benchmarks/peak_rss_models.py --checkout ../deephyperx-before ...   # the same, for an older checkout

Each run is a fresh ``python main.py --model M <arguments after -->`` started in ``--checkout`` with this
interpreter; its peak resident set size is the kernel's own count for that process (``os.wait4``'s
``ru_maxrss``). Runs of one model are spread over the whole benchmark (model after model, round after
round) so that a slow drift of the machine does not favour one model. The JSON (written atomically)
gives every run, the median and the range per model.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Optional

from deephyperx.atomic import atomic_write_text


def peak_rss_mb(command: list[str], cwd: Path) -> tuple[float, int]:
    """Run ``command`` in ``cwd`` (output discarded); its peak resident set size in MB and exit status."""
    process = subprocess.Popen(command, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    return round(usage.ru_maxrss / 1024, 1), process.returncode


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, common = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", required=True, help="models to run, one after another")
    parser.add_argument("--runs", type=int, default=3, help="runs of each model (default 3)")
    parser.add_argument("--checkout", type=Path, default=Path(__file__).resolve().parent.parent,
                        help="the folder holding the main.py to run (default: this checkout)")
    parser.add_argument("--python", default=sys.executable,
                        help="the interpreter to run it with (default: this one; an older checkout may need its own)")
    parser.add_argument("--json", required=True, help="where to write the measurements")
    args = parser.parse_args(ours)
    if args.runs < 1:
        parser.error(f"--runs {args.runs}: give at least 1")
    main_py = args.checkout.resolve() / "main.py"
    if not main_py.is_file():
        parser.error(f"--checkout {args.checkout}: no main.py there; give the folder of a deephyperx checkout")
    runs: dict[str, list[float]] = {model: [] for model in args.models}
    with tempfile.TemporaryDirectory(prefix="peak_rss_") as scratch:
        for round_ in range(args.runs):
            for model in args.models:
                command = [args.python, str(main_py), "--model", model, *common, "--out", scratch]
                peak, status = peak_rss_mb(command, args.checkout.resolve())
                if status != 0:
                    print(f"{model}: run {round_ + 1} exited with status {status}: {' '.join(command)}",
                          file=sys.stderr)
                    return 1
                runs[model].append(peak)
                print(f"{model} run {round_ + 1}/{args.runs}: {peak} MB", file=sys.stderr)
    result = {
        "command": "python benchmarks/peak_rss_models.py " + " ".join(argv),
            "checkout": str(args.checkout), "python": args.python, "arguments": common,
        "models": {model: {"runs_mb": peaks, "median_mb": round(statistics.median(peaks), 1),
                           "min_mb": min(peaks), "max_mb": max(peaks)} for model, peaks in runs.items()},
    }
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result["models"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
