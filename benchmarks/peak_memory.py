"""Peak resident memory of a command, phase by phase (load, train, infer, report), written as JSON.

    python benchmarks/peak_memory.py --json outputs/bench/peak_memory_hamida.json -- \\
        --model hamida --dataset IndianPines --folder ../shared/data --training_sample 0.1 --epoch 2

Runs ``main.py`` with the arguments after ``--`` in this process while a sampling thread reads the
process's resident set size (/proc/self/statm) every ``--interval`` seconds together with the main
thread's stack; each sample is charged to the phase whose function is on the stack (the innermost
known one wins), so the JSON gives each phase's peak and duration, the whole run's peak
(``getrusage``'s ``ru_maxrss``, which sees between samples too) and where the highest samples were.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import threading
import time
from pathlib import Path
from typing import Any, Optional

from deephyperx.atomic import atomic_write_text

#: Phase of a sample: the innermost of these functions on the main thread's stack.
PHASES = {
    "load": ("load_scene", "resolve_scene", "load_custom_scene", "from_files", "from_arrays"),
    "prepare": ("prepare",),
    "train": ("fit", "train_epoch", "_train", "train"),
    "infer": ("predict_centre", "predict_dense", "predict_pixels_sklearn", "map_scene"),
    "report": ("_write_reports", "write_results", "save_confusion_png", "save_map_comparison_png",
               "save_label_map_png"),
}
PAGE = os.sysconf("SC_PAGE_SIZE")


def resident_bytes() -> int:
    """This process's resident set size now."""
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE


def phase_of(frame: Any) -> str:
    """The phase of the innermost known function on ``frame``'s stack ("other" when none)."""
    while frame is not None:
        name = frame.f_code.co_name
        for phase, functions in PHASES.items():
            if name in functions:
                return phase
        frame = frame.f_back
    return "other"


class Sampler(threading.Thread):
    """Samples (seconds, resident bytes, phase) of the main thread until stopped."""

    def __init__(self, interval: float):
        super().__init__(daemon=True)
        self.interval, self.samples, self.done = interval, [], threading.Event()
        self.main_id, self.start_time = threading.main_thread().ident, time.perf_counter()

    def run(self) -> None:
        while not self.done.is_set():
            frame = sys._current_frames().get(self.main_id)
            self.samples.append((time.perf_counter() - self.start_time, resident_bytes(), phase_of(frame)))
            time.sleep(self.interval)


def summarise(samples: list[tuple[float, int, str]], interval: float) -> dict[str, Any]:
    phases: dict[str, dict[str, Any]] = {}
    for seconds, rss, phase in samples:
        entry = phases.setdefault(phase, {"peak_mb": 0.0, "seconds": 0.0, "first_s": seconds})
        entry["peak_mb"] = max(entry["peak_mb"], rss / 2**20)
        entry["seconds"] += interval
    for entry in phases.values():
        entry["peak_mb"], entry["seconds"] = round(entry["peak_mb"], 1), round(entry["seconds"], 1)
    return dict(sorted(phases.items(), key=lambda item: item[1]["first_s"]))


def main(argv: Optional[list[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    ours, command = (argv[:argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", required=True, help="where to write the measurements")
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between samples (default 0.05)")
    args = parser.parse_args(ours)
    if not command:
        parser.error("give main.py's arguments after --")
    from deephyperx_app import main as command_line  # the installed command line (pip install -e .)

    sampler = Sampler(args.interval)
    sampler.start()
    started = time.perf_counter()
    status = command_line.main(command)
    sampler.done.set()
    sampler.join()
    result = {"command": "python main.py " + " ".join(command), "exit_status": status,
              "wall_seconds": round(time.perf_counter() - started, 1),
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
              "phases": summarise(sampler.samples, args.interval), "interval_s": args.interval,
              "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or None}
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.json, json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return status


if __name__ == "__main__":
    sys.exit(main())
