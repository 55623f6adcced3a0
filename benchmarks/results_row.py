"""One row of ``docs/results/classification.csv`` from finished run folders: the mean ± standard deviation over
their seeds, the split's sizes, the times and the run's protocol, with the command that made them.

    python benchmarks/results_row.py --group zoo_ip_fixed --command "python main.py --model SSFTT ..." \\
        outputs/zoo_fixed/IndianPines_SSFTT_fixed_*          # prints the row
    python benchmarks/results_row.py ... --append            # adds it to classification.csv (atomically)

``train px`` counts the validation hold-out too, as the results pages do (not when it is drawn from the
test pixels, which stay scored). Every ``seedN/metrics.json`` under the given experiment folders counts
once per seed (a seed found twice is refused); they must share model, scene, protocol and epochs (under
``--early_stopping`` each seed ends at its own epoch: the row gives their mean, and its note each seed's
epochs and kept epoch). Run ``python benchmarks/results_pages.py`` afterwards to regenerate the pages.
"""
from __future__ import annotations

import argparse
import csv
import io
import json
import statistics
import sys
from pathlib import Path
from typing import Any, Optional

from deephyperx.atomic import atomic_write_text
from deephyperx.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
CLASSIFICATION = ROOT / "docs" / "results" / "classification.csv"


def seed_metrics(folders: list[Path]) -> list[dict[str, Any]]:
    """The metrics of every seed under ``folders``, by seed."""
    found: dict[int, dict[str, Any]] = {}
    for folder in folders:
        for path in sorted(folder.glob("seed*/metrics.json")):
            metrics = json.loads(path.read_text())
            if metrics["seed"] in found:
                raise UserError(f"{path}: seed {metrics['seed']} is already in another folder; give each seed once")
            found[metrics["seed"]] = metrics
    if not found:
        raise UserError(f"no seed*/metrics.json under {', '.join(map(str, folders))}; give finished run folders")
    runs = [found[seed] for seed in sorted(found)]
    labels = {run["protocol"]["label"] for run in runs}
    if len(labels) > 1:
        raise UserError(f"the runs differ in protocol ({'; '.join(sorted(labels))}); a row averages one protocol")
    for key in ("model", "scene") if early_stopped(runs) else ("model", "scene", "epochs"):
        values = {str(run.get(key, "")) for run in runs}
        if len(values) > 1:
            raise UserError(f"the runs differ in {key} ({', '.join(sorted(values))}); a row averages one setting")
    return runs


def seeds_text(seeds: list[int]) -> str:
    """0,1,2,3,4 -> "0-4"; other sets as a list."""
    return f"{seeds[0]}-{seeds[-1]}" if seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 1 \
        else " ".join(map(str, seeds))


def spread(values: list[float]) -> tuple[str, str]:
    mean = f"{statistics.fmean(values):.2f}"
    return mean, (f"{statistics.stdev(values):.2f}" if len(values) > 1 else "")


def validation_is_test(protocol: dict[str, Any]) -> bool:
    """Whether the validation pixels are test pixels (``--validation_from test``): they stay scored, so they
    do not count as training pixels."""
    return protocol.get("validation", {}).get("from") == "test"


def early_stopped(runs: list[dict[str, Any]]) -> bool:
    """Whether the runs trained under ``--early_stopping`` (each seed then ends at its own epoch)."""
    return "early_stopping" in runs[0]["protocol"]


def epochs_text(runs: list[dict[str, Any]]) -> str:
    """The epochs trained: the schedule's, or under early stopping their mean over seeds (rounded)."""
    if early_stopped(runs):
        return str(round(statistics.fmean(int(run["epochs"]) for run in runs)))
    return str(runs[0].get("epochs", ""))


def stopping_note(runs: list[dict[str, Any]]) -> str:
    """Under early stopping, the epochs each seed trained and the epoch whose weights it kept."""
    if not early_stopped(runs):
        return ""
    return "; " + "; ".join(f"seed {run['seed']}: {run['epochs']} epochs"
                            f"{'' if run.get('stopped_early') else ' (the whole schedule)'}, "
                            f"weights of epoch {run.get('best_epoch', run['epochs'])}" for run in runs)


def make_row(runs: list[dict[str, Any]], args: argparse.Namespace) -> dict[str, str]:
    first = runs[0]
    protocol = first["protocol"]
    row = {"group": args.group, "model": first["model"], "variant": args.variant, "scene": first["scene"],
           "protocol": args.protocol or protocol["split"], "training_sample": args.training_sample,
           "epochs": epochs_text(runs), "seeds": seeds_text([run["seed"] for run in runs])}
    for key, name in (("overall_accuracy", "oa"), ("average_accuracy", "aa"), ("kappa", "kappa")):
        row[f"{name}_mean"], row[f"{name}_std"] = spread([100 * run[key] for run in runs])
    oas = [100 * run["overall_accuracy"] for run in runs]
    row["oa_min"], row["oa_max"] = (f"{min(oas):.2f}", f"{max(oas):.2f}") if len(runs) > 1 else ("", "")
    row.update({"published_oa": args.published_oa, "published_source": args.published_source,
                "parameters": str(first.get("parameters", "")),
                "train_px": str(first["n_train"] + (0 if validation_is_test(protocol) else first.get("n_validation", 0))),
                "test_px": str(first["n_test"]),
                "train_time_s": f"{statistics.fmean(run['train_seconds'] for run in runs):.1f}",
                "inference_time_s": f"{statistics.fmean(run['inference_seconds'] for run in runs):.1f}",
                "device": args.device, "status": args.status,
                "note": (args.note or protocol["label"]) + stopping_note(runs),
                "command": args.command})
    return row


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("folders", nargs="+", type=Path, help="experiment folders (holding seedN/metrics.json)")
    parser.add_argument("--group", required=True, help="the table the row belongs to")
    parser.add_argument("--command", required=True, help="the command that makes these runs")
    parser.add_argument("--variant", default="", help="what sets the row apart (e.g. 'paper protocol (leaks)')")
    parser.add_argument("--protocol", default="", help="the protocol column (default: the runs' split)")
    parser.add_argument("--training_sample", default="")
    parser.add_argument("--published_oa", default="")
    parser.add_argument("--published_source", default="")
    parser.add_argument("--device", default="CPU 2 cores")
    parser.add_argument("--status", default="")
    parser.add_argument("--note", default="", help="default: the runs' protocol label")
    parser.add_argument("--append", action="store_true", help=f"add the row to {CLASSIFICATION.name}")
    args = parser.parse_args(argv)
    try:
        row = make_row(seed_metrics(args.folders), args)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with open(CLASSIFICATION, newline="") as stream:
        columns = next(csv.reader(stream))
    line = io.StringIO()
    csv.DictWriter(line, columns, lineterminator="\n").writerow(row)
    if args.append:
        atomic_write_text(CLASSIFICATION, CLASSIFICATION.read_text() + line.getvalue())
    print(line.getvalue(), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
