"""Realism of a generator over seeds: mean ± sample std of the realism reports that
`main.py generate` wrote for each seed (TRTR, TSTR, real + synthetic, their ratio, with a linear SVM
and an MLP; the two-sample test; the nearest-angle ratio), one table row per scene, budget and
generator, then one row per seed (the seeds' own values, for results gathered seed by seed).

    python benchmarks/realism_summary.py outputs/generators/*/cvae outputs/generators/*/cgan \
        --out outputs/generators/realism_summary

Each folder given is a generator folder of `benchmarks/generator_results.sh` (its `runs/` holds one
run folder per seed, each with `config.yaml` and `realism/realism.json`). Writes
`realism_summary.md` and `realism_summary.json` (atomically). The table gives each seed's torch
thread count from its `environment.jsonl` ("?" for runs made before runs recorded it): adversarial
training gives other numbers with another count.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


from deephyperx.atomic import atomic_write_text  # noqa: E402
from deephyperx.config import load_yaml_config  # noqa: E402
from deephyperx.errors import UserError  # noqa: E402
from deephyperx.metrics import mean_and_std  # noqa: E402
from deephyperx.reports import load_json, save_json  # noqa: E402
from deephyperx.run_environment import read_environment  # noqa: E402

CLASSIFIERS = ("linear_svm", "mlp")
EXPERIMENTS = ("trtr", "tstr", "real_plus_synthetic")


def seed_reports(folder: Path) -> list[tuple[dict[str, Any], dict[str, Any], Path]]:
    """(config, realism report, run folder) of every finished seed under ``folder/runs``."""
    found = []
    for report in sorted(folder.glob("runs/*/seed*/realism/realism.json")):
        run = report.parent.parent
        if run.name.endswith(".partial"):
            continue
        found.append((load_yaml_config(str(run / "config.yaml")), load_json(report), run))
    return found


def thread_counts(run: Path) -> Optional[list[int]]:
    """The torch thread counts a run trained with (more than one if a resume changed it); None
    when its folder has no environment record."""
    return sorted({record["torch_threads"] for record in read_environment(run)}) or None


def _threads_cell(counts: Sequence[Optional[list[int]]]) -> str:
    return ", ".join("?" if c is None else "+".join(map(str, c)) for c in counts)


def seed_values(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of one seed's report that the summary averages (accuracies in %)."""
    values: dict[str, float] = {}
    for classifier in CLASSIFIERS:
        utility = report["utility"][classifier]
        for experiment in EXPERIMENTS:
            values[f"{classifier}_{experiment}"] = 100 * utility[experiment]["overall_accuracy"]
        values[f"{classifier}_ratio"] = utility["tstr"]["overall_accuracy"] / utility["trtr"]["overall_accuracy"]
        values[f"{classifier}_gain"] = values[f"{classifier}_real_plus_synthetic"] - values[f"{classifier}_trtr"]
    values["two_sample"] = 100 * report["two_sample"]["accuracy"]
    values["angle_ratio"] = report["angles"]["nearest_to_real_train"]["median_ratio"]
    return values


def summarise(folder: Path) -> dict[str, Any]:
    """One row: the setting of ``folder``'s seeds and mean/std/n of each value over them."""
    reports = seed_reports(folder)
    if not reports:
        raise UserError(f"{folder}: no finished realism report under runs/*/seed*/realism/; "
                        "give a generator folder written by benchmarks/generator_results.sh")
    settings = {(c["dataset"], c["model"], c["sampling_mode"], c["training_sample"]) for c, _, _ in reports}
    if len(settings) > 1:
        raise UserError(f"{folder}: its runs mix settings {sorted(map(str, settings))}; give one folder per setting")
    dataset, model, mode, budget = settings.pop()
    per_seed = [seed_values(report) for _, report, _ in reports]
    stats = {key: mean_and_std([v[key] for v in per_seed]) for key in per_seed[0]}
    return {"folder": str(folder), "scene": dataset, "generator": model, "split": f"{mode} {budget}",
            "seeds": [int(report["seed"]) for _, report, _ in reports],
            "torch_threads": [thread_counts(run) for _, _, run in reports], "stats": stats,
            "per_seed": per_seed}


COLUMNS = ("linear_svm_trtr", "linear_svm_tstr", "linear_svm_ratio", "linear_svm_gain",
           "mlp_trtr", "mlp_tstr", "mlp_ratio", "mlp_gain", "two_sample", "angle_ratio")
VALUE_HEADS = ("SVM TRTR | SVM TSTR | SVM TSTR/TRTR | SVM real+syn gain | MLP TRTR | MLP TSTR | MLP TSTR/TRTR | "
               "MLP real+syn gain | two-sample (%) | angle ratio |")


def _digits(key: str) -> int:
    return 3 if key.endswith("ratio") else 2


def _format(key: str, value: float) -> str:
    return f"{value:{'+' if key.endswith('gain') else ''}.{_digits(key)}f}"


def _cell(key: str, stat: dict[str, float]) -> str:
    return f"{_format(key, stat['mean'])} ± {stat['std']:.{_digits(key)}f}"


def _table_head(first_columns: str) -> list[str]:
    head = f"| {first_columns} | {VALUE_HEADS}"
    return [head, "|" + "---|" * (head.count("|") - 1)]


def markdown(rows: Sequence[dict[str, Any]]) -> str:
    """The summary table (mean ± std, one row per folder), then each seed's own row."""
    lines = ["# Realism over seeds", "",
             "Overall accuracy (%) on the real test pixels, mean ± sample std over seeds; TSTR: trained on "
             "synthetic, tested on real; TRTR: trained and tested on real; gain: real + synthetic minus real "
             "alone (points); two-sample: a classifier telling real from synthetic (50% = indistinguishable); "
             "angle ratio: median spectral angle of synthetic spectra to their nearest training spectrum over "
             "that of real test spectra (well below 1: copies); torch threads: each seed's, from its "
             "environment.jsonl (?: not recorded).", "",
             *_table_head("scene | split | generator | seeds | torch threads")]
    for r in rows:
        lines.append(f"| {r['scene']} | {r['split']} | {r['generator']} | {', '.join(map(str, r['seeds']))} | "
                     f"{_threads_cell(r['torch_threads'])} | "
                     + " | ".join(_cell(k, r["stats"][k]) for k in COLUMNS) + " |")
    lines += ["", "## Each seed", "", *_table_head("scene | split | generator | seed | torch threads")]
    for r in rows:
        for seed, threads, values in zip(r["seeds"], r["torch_threads"], r["per_seed"]):
            lines.append(f"| {r['scene']} | {r['split']} | {r['generator']} | {seed} | {_threads_cell([threads])} | "
                         + " | ".join(_format(k, values[k]) for k in COLUMNS) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("folders", nargs="+", type=Path, help="generator folders (each with runs/)")
    parser.add_argument("--out", type=Path, default=Path("outputs/generators/realism_summary"))
    args = parser.parse_args(argv)
    try:
        rows = [summarise(folder) for folder in args.folders]
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    save_json(args.out / "realism_summary.json", rows)
    atomic_write_text(args.out / "realism_summary.md", markdown(rows))
    print(f"table: {args.out / 'realism_summary.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
