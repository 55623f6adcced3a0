"""What do synthetic spectra add? Compare a real-only benchmark with the same benchmark trained on
real + synthetic spectra, scene by scene and model by model.

    python main.py bench --models nn hu --datasets IndianPines --runs 5 --out outputs/real
    python main.py bench --models nn hu --datasets IndianPines --runs 5 --config augment.yaml \\
        --out outputs/augmented
    python benchmarks/augmentation_gain.py outputs/real/bench.json outputs/augmented/bench.json \\
        --out outputs/augmentation_gain

where ``augment.yaml`` holds ``synthetic: <synthetic.h5 or model.pt of main.py generate>`` and
``synthetic_ratio: 1``. Writes ``augmentation_gain.md`` and ``augmentation_gain.json`` into
``--out``: overall accuracy (mean ± std over runs) of both, and the gain in percentage points.
When the two benchmarks ran different seeds (a heavy generator for seed 0 only beside five real-only
seeds), both sides are compared on the seeds they share, read from each experiment's results.json.
Bad input prints one line and exits with status 2, writing nothing.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Optional, Sequence


import numpy as np  # noqa: E402

from deephyperx.atomic import atomic_write_text  # noqa: E402
from deephyperx.errors import UserError  # noqa: E402
from deephyperx.metrics import format_percent  # noqa: E402
from deephyperx.reports import load_json, save_json  # noqa: E402

REQUIRED = ("scene", "model", "overall_accuracy")


def load_bench(path: Path) -> list[dict[str, Any]]:
    """The rows of a ``bench.json`` written by ``main.py bench``; one-line error otherwise."""
    rows = load_json(path)
    if not isinstance(rows, list) or not all(isinstance(r, dict) and all(k in r for k in REQUIRED) for r in rows):
        raise UserError(f"{path} is not a bench.json of `main.py bench` (a list of rows with "
                        f"{', '.join(REQUIRED)})")
    return rows


def synthetic_setting(row: dict[str, Any]) -> Optional[str]:
    """``ratio R from FILE`` as recorded in the experiment's results.json, when it can be read."""
    results = Path(str(row.get("folder", ""))) / "results.json"
    if not results.is_file():
        return None
    try:
        config = load_json(results).get("config", {})
    except (UserError, AttributeError):
        return None
    if not config.get("synthetic"):
        return None
    return f"ratio {config.get('synthetic_ratio')} from {Path(config['synthetic']).name}"


def per_seed_runs(row: dict[str, Any]) -> dict[int, dict[str, Any]]:
    """The row's runs by seed, from its experiment's results.json (empty when it cannot be read)."""
    results = Path(str(row.get("folder", ""))) / "results.json"
    try:
        runs = load_json(results).get("runs", []) if results.is_file() else []
    except (UserError, AttributeError):
        return {}
    return {int(run["seed"]): run for run in runs if isinstance(run, dict) and "seed" in run}


def on_seeds(row: dict[str, Any], seeds: list[int]) -> dict[str, Any]:
    """The row's OA and AA as mean ± sample std over ``seeds`` only (its per-seed runs)."""
    runs = per_seed_runs(row)
    out = dict(row, seeds=seeds, runs=len(seeds))
    for key in ("overall_accuracy", "average_accuracy"):
        values = np.array([runs[s][key] for s in seeds], dtype=float)
        out[key] = {"mean": float(values.mean()), "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    "n": len(values)}
    return out


def matched(real: dict[str, Any], augmented: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Both rows restricted to the seeds both ran, when their seeds differ (e.g. a heavy generator
    run for seed 0 only beside a five-seed real-only benchmark), so that a gain compares like with like."""
    real_seeds, augmented_seeds = real.get("seeds"), augmented.get("seeds")
    if not real_seeds or not augmented_seeds or list(real_seeds) == list(augmented_seeds):
        return real, augmented
    common = sorted(set(real_seeds) & set(augmented_seeds))
    if not common:
        raise UserError(f"{real['scene']}/{real['model']}: the real-only runs (seeds {real_seeds}) and the augmented "
                        f"runs (seeds {augmented_seeds}) share no seed; run both with the same --seed")
    if not all(set(common) <= set(per_seed_runs(row)) for row in (real, augmented)):
        raise UserError(f"{real['scene']}/{real['model']}: the per-seed results of seeds {common} cannot be read "
                        "from the experiments' results.json; keep the benchmark folders beside their bench.json")
    return on_seeds(real, common), on_seeds(augmented, common)


def _points(augmented: dict[str, Any], real: dict[str, Any], key: str) -> Optional[float]:
    a, r = augmented.get(key, {}).get("mean"), real.get(key, {}).get("mean")
    return None if a is None or r is None else 100.0 * (a - r)


def gain_rows(real: list[dict[str, Any]], augmented: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
    """One row per (scene, model) in both benchmarks, in the real-only file's order, and the
    pairs found in one file only."""
    by_key = {(r["scene"], r["model"]): r for r in augmented}
    real_keys = {(r["scene"], r["model"]) for r in real}
    rows = []
    for r in real:
        a = by_key.get((r["scene"], r["model"]))
        if a is None:
            continue
        r, a = matched(r, a)
        rows.append({"scene": r["scene"], "model": r["model"], "seeds": r.get("seeds"),
                     "runs": {"real_only": r.get("runs"), "augmented": a.get("runs")},
                     "split": {"real_only": r.get("split"), "augmented": a.get("split")},
                     "oa_real_only": r["overall_accuracy"], "oa_augmented": a["overall_accuracy"],
                     "gain_points": _points(a, r, "overall_accuracy"),
                     "aa_gain_points": _points(a, r, "average_accuracy"),
                     "synthetic": synthetic_setting(a)})
    only = [{"scene": r["scene"], "model": r["model"], "in": "real-only"} for r in real
            if (r["scene"], r["model"]) not in by_key]
    only += [{"scene": a["scene"], "model": a["model"], "in": "augmented"} for a in augmented
             if (a["scene"], a["model"]) not in real_keys]
    return rows, only


def _signed(points: Optional[float]) -> str:
    return "n/a" if points is None else f"{points:+.2f}"


def gain_markdown(rows: list[dict], only: list[dict], sources: Sequence[Path]) -> str:
    """The gain table as Markdown, with the two source files and the unmatched pairs."""
    lines = ["# Gain from synthetic spectra", "",
             f"Real-only: `{sources[0]}`; augmented: `{sources[1]}`. Overall accuracy in percent, mean ± std "
             "over the seeds both ran; gain = augmented - real-only, in percentage points.", "",
             "| scene | model | OA real-only (%) | OA augmented (%) | gain (points) | AA gain (points) | runs | "
             "synthetic | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    for row in rows:
        oa_r, oa_a = row["oa_real_only"], row["oa_augmented"]
        note = "different splits" if row["split"]["real_only"] != row["split"]["augmented"] else ""
        lines.append(f"| {row['scene']} | {row['model']} | {format_percent(oa_r.get('mean'), oa_r.get('std'))} | "
                     f"{format_percent(oa_a.get('mean'), oa_a.get('std'))} | {_signed(row['gain_points'])} | "
                     f"{_signed(row['aa_gain_points'])} | {row['runs']['real_only']} / {row['runs']['augmented']} | "
                     f"{row['synthetic'] or '-'} | {note} |")
    if only:
        lines += ["", "In one file only: " + ", ".join(f"{o['scene']}/{o['model']} ({o['in']})" for o in only) + "."]
    return "\n".join(lines) + "\n"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("real_only", type=Path, help="bench.json of the real-only benchmark")
    parser.add_argument("augmented", type=Path, help="bench.json of the benchmark with --synthetic spectra")
    parser.add_argument("--out", type=Path, default=Path("outputs/augmentation_gain"), help="folder of the tables")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        rows, only = gain_rows(load_bench(args.real_only), load_bench(args.augmented))
        if not rows:
            raise UserError(f"{args.real_only} and {args.augmented} share no scene/model pair; "
                            "run the same models on the same scenes")
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    save_json(args.out / "augmentation_gain.json", {"real_only": str(args.real_only), "augmented": str(args.augmented),
                                                    "rows": rows, "only_in_one": only})
    atomic_write_text(args.out / "augmentation_gain.md", gain_markdown(rows, only, [args.real_only, args.augmented]))
    print(f"gain table: {args.out / 'augmentation_gain.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
