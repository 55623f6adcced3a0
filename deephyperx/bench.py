"""The benchmark: every model on every scene under one protocol (same seeds, same splits),
collected into one comparison table (Markdown, CSV, JSON) and a figure.

Each (scene, model) pair is an ordinary classification experiment (:func:`~deephyperx.runner.run_experiment`,
which drives the experiment skeleton of :mod:`deephyperx.experiment`) in its own folder; finished seeds
are read back, so an interrupted benchmark resumes where it stopped when the same command is given again.
"""
from __future__ import annotations

import csv
import io
import sys
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from deephyperx import distributed
from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.config import ClassifySettings
from deephyperx.metrics import format_stat
from deephyperx.progress import Progress
from deephyperx.protocols import protocol_label, validation_source
from deephyperx.registry import get_spec
from deephyperx.experiment import EverySeedDiverged
from deephyperx.reports import save_json
from deephyperx.runner import run_experiment
from deephyperx.scene import Scene
from deephyperx.settings import setting


@dataclass
class BenchSettings(ClassifySettings):
    """The settings of ``main.py bench``: models x scenes, each pair an experiment of
    :class:`~deephyperx.config.ClassifySettings` under the protocol these flags set (a YAML file may
    set any other setting for every pair)."""

    SHOWN = {"models", "datasets", "runs_for", "finished_only", "folder", "training_sample", "sampling_mode", "runs",
             "seed", "epoch", "val_fraction", "keep_best", "early_stopping", "guard", "block_size", "cuda", "n_jobs",
             "config", "out", "train_set", "test_set", "val_per_class", "validation_from", "fit_preprocessing"}
    DEFAULTS = {"out": "outputs/bench"}

    models: Optional[list] = setting(None, config=False, nargs="+", required=True, help="the models to compare")
    datasets: Optional[list] = setting(None, config=False, nargs="+", required=True,
                                       help="the scenes (names or .yaml declarations)")
    runs_for: Optional[list] = setting(None, config=False, nargs="+", metavar="MODEL=N",
                                       help="fewer (or more) seeds for some models, e.g. SSRN=1 when five seeds of "
                                            "its full schedule do not fit the machine; the table says each model's runs")
    finished_only: Optional[bool] = setting(None, config=False, action="store_true",
                                            help="train nothing: build the table from the seeds already finished "
                                                 "(e.g. by parallel bench processes, one per model or seed); pairs "
                                                 "with none are left out")


def run_bench(scenes: Sequence[str], models: Sequence[str], load_scene: Callable[[str], Scene],
              make_config: Callable[[str, Scene], dict[str, Any]], out: Path,
              command: Optional[str] = None, finished_only: bool = False) -> list[dict[str, Any]]:
    """Run every model on every scene (scenes loaded once each) and write the tables to ``out``.

    With ``finished_only`` nothing is trained: the table gathers the seeds already finished (by
    this machine or by parallel ``bench`` processes on another), and pairs with none are left out.
    Standard error says the plan as the first pair starts, then after each pair how many are done and
    the time left.
    """
    rows = []
    pairs = len(scenes) * len(models)
    progress: Optional[Progress] = None
    for scene_name in scenes:
        scene = load_scene(scene_name)
        for model in models:
            config = make_config(model, scene)
            if progress is None and distributed.is_main():  # the first pair's input is good: the plan
                print(f"[bench] {len(models)} model(s) x {len(scenes)} scene(s): {pairs} experiment(s), run one "
                      "after the other (seeds already finished are read back)", file=sys.stderr)
                progress = Progress(pairs, "experiments done", "bench", bar=False, seconds=0)
            diverged: Optional[EverySeedDiverged] = None
            try:
                result = run_experiment(scene, config, command, reuse_finished=True, finished_only=finished_only)
            except EverySeedDiverged as error:
                result, diverged = None, error
            if progress is not None:  # a line after each pair but the last: how far the bench is, the time left
                progress.update(1, f"last: {model} on {scene.name}")
            if diverged is not None:
                print(diverged)
                rows.append(diverged_row(scene.name, model, config, diverged.diverged))
                write_tables(rows, out)
                continue
            if result is None:
                print(f"{model} on {scene.name}: no finished seed yet; left out of the table")
                continue
            rows.append(bench_row(result))
            write_tables(rows, out)  # the table grows as pairs finish
    if progress is not None:
        progress.close()
    return rows


def _mean(values: list[Optional[float]]) -> Optional[float]:
    known = [v for v in values if v is not None]
    return float(np.mean(known)) if known else None


def bench_row(result: dict[str, Any]) -> dict[str, Any]:
    """One table row from an experiment's aggregate."""
    config, runs = result["config"], result["runs"]
    return {
        "scene": result["scene"], "model": result["model"],
        "split": split_cell(config), "protocol": protocol_label(config),
        "runs": result["n_runs"], "seeds": result.get("seeds"),
        "epochs": config.get("epoch") if get_spec(result["model"]).family == "neural" else None,
        **{key: result[key] for key in ("overall_accuracy", "average_accuracy", "kappa")},
        "f1_per_class": {c["name"]: c["f1"] for c in result["per_class"]},
        "parameters": _mean([r.get("parameters") for r in runs]),
        "train_pixels": _mean([training_pixels(r, config) for r in runs]),
        "test_pixels": _mean([r.get("n_test") for r in runs]),
        "train_seconds": _mean([r.get("train_seconds") for r in runs]),
        "inference_seconds": _mean([r.get("inference_seconds") for r in runs]),
        "devices": devices_of(runs),
        "diverged": result.get("diverged", []),
        "folder": result["folder"],
        "run_overall_accuracy": [r.get("overall_accuracy") for r in runs],
    }


def split_cell(config: dict[str, Any]) -> str:
    """The split's mode and sample, as the experiment folder names it (``file`` for fixed maps); the
    whole protocol is :func:`~deephyperx.protocols.protocol_label`."""
    mode = "file" if config.get("train_set") else config["sampling_mode"]
    return f"{mode} {config['training_sample']}"


def training_pixels(run: dict[str, Any], config: Optional[dict[str, Any]] = None) -> Optional[int]:
    """The split's training share of one run: the pixels that trained plus the validation held out of
    them (not validation the experiment's ``config`` draws from elsewhere: see
    :func:`~deephyperx.protocols.validation_source`)."""
    if run.get("n_train") is None:
        return None
    config = config or {}
    carved = validation_source(config.get("validation_from"), config.get("val_per_class")) == "train"
    return run["n_train"] + ((run.get("n_validation") or 0) if carved else 0)


def pixels_cell(row: dict[str, Any]) -> str:
    """The train / test pixels column (means over the runs): models with other patch sizes get other
    splits in ``blocks`` mode, so a comparison needs them beside the scores."""
    if row.get("train_pixels") is None or row.get("test_pixels") is None:
        return "-"
    return f"{row['train_pixels']:,.0f} / {row['test_pixels']:,.0f}"


def diverged_row(scene: str, model: str, config: dict[str, Any], diverged: list[dict[str, Any]]) -> dict[str, Any]:
    """A table row for a pair whose every seed diverged: no scores, the divergence recorded."""
    return {"scene": scene, "model": model, "split": split_cell(config),
            "protocol": protocol_label(config), "runs": 0, "seeds": [], "epochs": config.get("epoch"),
            **{key: None for key in ("overall_accuracy", "average_accuracy", "kappa")},
            "f1_per_class": {}, "parameters": None, "train_pixels": None, "test_pixels": None,
            "train_seconds": None, "inference_seconds": None, "devices": None, "diverged": diverged, "folder": None}


def runs_cell(row: dict[str, Any]) -> str:
    """The runs column: finished seeds, and which seeds diverged (left out of the means)."""
    diverged = row.get("diverged") or []
    if not diverged:
        return str(row["runs"])
    seeds = ", ".join(f"{d['seed']} (epoch {d['epoch']})" for d in diverged)
    return f"{row['runs']}; diverged: seed {seeds}"


def devices_of(runs: list[dict[str, Any]]) -> str:
    """Where the runs trained, e.g. ``cpu x1, cuda:0 NVIDIA H100 80GB HBM3 x4`` (times depend on it);
    runs from before the device was recorded count as ``unrecorded``."""
    counts = Counter(run.get("device") or "unrecorded" for run in runs)
    return ", ".join(f"{name} x{n}" for name, n in counts.items())


def _stat(stat: Optional[dict[str, Any]]) -> str:
    return format_stat(stat) if stat is not None else "diverged"


def markdown_table(rows: list[dict[str, Any]]) -> str:
    lines = ["| scene | model | protocol | runs | epochs | train / test px | OA (%) | AA (%) | kappa (x100) | "
             "parameters | train (s) | inference (s) | device |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        params = f"{int(r['parameters']):,}" if r["parameters"] is not None else "-"
        times = [f"{r[k]:.1f}" if r[k] is not None else "-" for k in ("train_seconds", "inference_seconds")]
        protocol = r.get("protocol") or r["split"]
        lines.append(f"| {r['scene']} | {r['model']} | {protocol} | {runs_cell(r)} | {r['epochs'] or '-'} | "
                     f"{pixels_cell(r)} | {_stat(r['overall_accuracy'])} | {_stat(r['average_accuracy'])} | "
                     f"{_stat(r['kappa'])} | {params} | {times[0]} | {times[1]} | {r.get('devices') or '-'} |")
    return "\n".join(lines) + "\n"


def per_class_markdown(rows: list[dict[str, Any]]) -> str:
    """Per-class F1 (mean ± std) of every model, one table per scene."""
    out = []
    for scene in dict.fromkeys(r["scene"] for r in rows if r["f1_per_class"]):
        mine = [r for r in rows if r["scene"] == scene and r["f1_per_class"]]
        names = list(mine[0]["f1_per_class"])
        out.append(f"\n### {scene}: F1 per class (%)\n")
        out.append("| class | " + " | ".join(r["model"] for r in mine) + " |")
        out.append("|---" * (len(mine) + 1) + "|")
        for name in names:
            out.append(f"| {name} | " + " | ".join(_stat(r["f1_per_class"][name]) for r in mine) + " |")
    return "\n".join(out) + "\n"


def csv_table(rows: list[dict[str, Any]]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["scene", "model", "split", "runs", "epochs", "oa_mean", "oa_std", "aa_mean", "aa_std",
                     "kappa_mean", "kappa_std", "parameters", "train_seconds", "inference_seconds", "devices",
                     "diverged_seeds", "train_pixels", "test_pixels", "protocol"])
    for r in rows:
        writer.writerow([r["scene"], r["model"], r["split"], r["runs"], r["epochs"],
                         *((r[k] or {}).get(m) for k in ("overall_accuracy", "average_accuracy", "kappa")
                           for m in ("mean", "std")),
                         r["parameters"], r["train_seconds"], r["inference_seconds"], r.get("devices"),
                         " ".join(str(d["seed"]) for d in r.get("diverged") or []),
                         r.get("train_pixels"), r.get("test_pixels"), r.get("protocol") or r["split"]])
    return buffer.getvalue()


def save_bench_figure(rows: list[dict[str, Any]], path: Path) -> None:
    """Overall accuracy per model and scene, one point per run (seaborn bar plot with the runs' spread)."""
    import pandas as pd
    import seaborn as sns
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    records = []
    for r in rows:
        if r["folder"] is None:  # every seed diverged: nothing to plot
            continue
        for run in _run_values(r):
            records.append({"scene": r["scene"], "model": r["model"], "OA (%)": 100 * run})
    frame = pd.DataFrame.from_records(records, columns=["scene", "model", "OA (%)"])
    fig = Figure(figsize=(max(6, 1.2 * frame["model"].nunique() * frame["scene"].nunique()), 4.5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    if len(frame):
        sns.barplot(data=frame, x="model", y="OA (%)", hue="scene", errorbar="sd", ax=ax)
        sns.stripplot(data=frame, x="model", y="OA (%)", hue="scene", dodge=True, palette="dark:black", size=3,
                      ax=ax, legend=False)
    ax.set_ylim(0, 100)
    title = "overall accuracy, mean ± std over runs (dots: runs)"
    lost = [f"{r['model']} on {r['scene']}" for r in rows if r["folder"] is None]
    if lost:
        title += "\nevery seed diverged (not shown): " + ", ".join(lost)
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)


def _run_values(row: dict[str, Any]) -> list[float]:
    """The overall accuracy of each run of the row (its own seeds: the experiment folder's results.json
    may hold more, finished by other commands)."""
    return [value for value in row.get("run_overall_accuracy", []) if value is not None]


def write_tables(rows: list[dict[str, Any]], out: Path) -> None:
    """bench.md, bench.csv, bench.json and bench.png in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "bench.md", "## Benchmark\n\n" + markdown_table(rows) + per_class_markdown(rows))
    atomic_write_text(out / "bench.csv", csv_table(rows))
    save_json(out / "bench.json", rows)
    save_bench_figure(rows, out / "bench.png")
