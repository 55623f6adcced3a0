"""The results pages, generated from the results data: ``docs/results/*.csv`` (one file per kind of table,
every row with the command that makes it) and ``docs/results/commands.yaml`` (each table's command) give
``docs/results/*.md``.

    python benchmarks/results_pages.py            # write the pages that differ from the data (atomically)
    python benchmarks/results_pages.py --check    # write nothing; exit 1 naming each page that differs

The data is checked first: every column present, every row with a command and a known table, numbers
that parse, a spread (std) for every mean over several seeds and none for a single seed. Bad data prints
one line naming the file, line and column, and exits with status 2, writing nothing.
"""
from __future__ import annotations

import argparse
import csv
import json
import sys
import textwrap
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional, Sequence

import yaml

from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"
Row = dict[str, str]


# --- the data: one schema per file -------------------------------------------------------------------------

@dataclass(frozen=True)
class Schema:
    """A results file: its columns, which of them are numbers, and the (mean, std) pairs whose spread must
    be given for several seeds (``spread``) or may be (``optional_spread``); a single seed has none."""
    columns: tuple[str, ...]
    numeric: tuple[str, ...]
    spread: tuple[str, ...] = ()
    optional_spread: tuple[str, ...] = ()


def _pairs(*names: str) -> tuple[str, ...]:
    return tuple(f"{name}_{part}" for name in names for part in ("mean", "std"))


SCHEMAS: dict[str, Schema] = {
    "classification.csv": Schema(
        ("group", "model", "variant", "scene", "protocol", "training_sample", "epochs", "seeds",
         *_pairs("oa", "aa", "kappa"), "oa_min", "oa_max", "published_oa", "published_source", "parameters",
         "train_px", "test_px", "train_time_s", "inference_time_s", "device", "status", "note", "command"),
        ("training_sample", "epochs", *_pairs("oa", "aa", "kappa"), "oa_min", "oa_max", "published_oa", "parameters",
         "train_px", "test_px", "train_time_s", "inference_time_s"),
        spread=("oa", "aa", "kappa")),
    "per_class_f1.csv": Schema(
        ("group", "model", "scene", "protocol", "training_sample", "seeds", "class", "f1_mean", "f1_std", "command"),
        ("training_sample", "f1_mean", "f1_std"), spread=("f1",)),
    "generators.csv": Schema(
        ("group", "generator", "scene", "training_sample", "seeds", "torch_threads", "device",
         *_pairs("svm_trtr", "svm_tstr", "svm_ratio"), "svm_ratio_by_seed", *_pairs("svm_gain"),
         *_pairs("mlp_trtr", "mlp_tstr", "mlp_ratio", "mlp_gain", "two_sample", "angle_ratio"),
         "published_svm_ratio", "published_source", "note", "command"),
        ("training_sample", "torch_threads", *_pairs("svm_trtr", "svm_tstr", "svm_ratio", "svm_gain", "mlp_trtr",
                                                     "mlp_tstr", "mlp_ratio", "mlp_gain", "two_sample", "angle_ratio"),
         "published_svm_ratio"),
        spread=("svm_trtr", "svm_tstr", "svm_ratio", "svm_gain", "mlp_trtr", "mlp_tstr", "mlp_ratio", "mlp_gain",
                "two_sample", "angle_ratio")),
    "augmentation.csv": Schema(
        ("group", "generator", "model", "scene", "training_sample", "seeds", "generator_threads", "device",
         *_pairs("oa_real", "oa_aug", "oa_gain", "aa_gain"), "oa_gain_by_seed", "positive_seeds", "published_gain",
         "published_source", "command"),
        ("training_sample", "generator_threads", *_pairs("oa_real", "oa_aug", "oa_gain", "aa_gain"), "positive_seeds",
         "published_gain"),
        spread=("oa_real", "oa_aug"), optional_spread=("oa_gain", "aa_gain")),
    "segmentation.csv": Schema(
        ("group", "model", "sources", "scene", "variant", "epochs", "seeds", *_pairs("oa", "kappa"), "mean_f1", "miou",
         "class_f1", "class_iou", "published_oa", "published_source", "train_time_s", "device", "note", "command"),
        ("epochs", *_pairs("oa", "kappa"), "mean_f1", "miou", "published_oa", "train_time_s"),
        spread=("oa", "kappa")),
    "detection.csv": Schema(
        ("group", "model", "sources", "scene", "variant", "epochs", "seeds", "car_f1", "car_pixel_recall",
         "car_pixel_precision", "true_objects", "objects", "matched", "object_precision", "object_recall", "device",
         "note", "command"),
        ("epochs", "car_f1", "car_pixel_recall", "car_pixel_precision", "true_objects", "objects", "matched",
         "object_precision", "object_recall")),
}


def seed_list(text: str) -> list[int]:
    """The seeds of ``0-4``, ``0``, ``0, 2`` or ``0-1, 3``; a one-line error for anything else."""
    seeds: list[int] = []
    try:
        for part in text.split(","):
            first, _, last = part.strip().partition("-")
            seeds += range(int(first), int(last or first) + 1)
    except ValueError:
        raise UserError(f"seeds '{text}' is not a list of seeds such as 0-4, 0 or 0, 2") from None
    if not seeds:
        raise UserError(f"seeds '{text}' names no seed; write e.g. 0-4 or 0")
    return seeds


def is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def check_row(name: str, schema: Schema, line: int, row: Row, groups: set[str]) -> None:
    """One row of a results file against its schema (see the module's docstring)."""
    where = f"{name} line {line}"
    if row["group"] not in groups:
        raise UserError(f"{where}: group '{row['group']}' has no table on the results pages; use one of: "
                        f"{', '.join(sorted(groups))}")
    if not row["command"].strip():
        raise UserError(f"{where}: the command column is empty; give the command that makes this row")
    for column in schema.numeric:
        if row[column] and not is_number(row[column]):
            raise UserError(f"{where}: {column} '{row[column]}' is not a number")
    seeds = seed_list(row["seeds"])
    for metric in (*schema.spread, *schema.optional_spread):
        mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
        if std and not mean:
            raise UserError(f"{where}: {metric}_std is given without {metric}_mean")
        if len(seeds) == 1 and std:
            raise UserError(f"{where}: {metric}_std '{std}' for the single seed {row['seeds']}; a single run has "
                            f"no spread, leave it empty")
        if len(seeds) > 1 and mean and not std and metric in schema.spread:
            raise UserError(f"{where}: {metric}_mean over seeds {row['seeds']} has no {metric}_std; give the "
                            f"sample standard deviation over the seeds")
    for column in ("published_oa", "published_svm_ratio", "published_gain"):
        if row.get(column) and not row.get("published_source"):
            raise UserError(f"{where}: {column} '{row[column]}' has no published_source; name where it comes from")


def load_table(folder: Path, name: str, groups: set[str]) -> list[Row]:
    """The rows of ``folder/name``, checked against its schema."""
    path, schema = folder / name, SCHEMAS[name]
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            reader = csv.DictReader(handle)
            header = tuple(reader.fieldnames or ())
            if header != schema.columns:
                missing = [c for c in schema.columns if c not in header]
                unknown = [c for c in header if c not in schema.columns]
                raise UserError(f"{path}: the columns differ from {name}'s schema (missing: {', '.join(missing) or '-'}"
                                f"; unknown: {', '.join(unknown) or '-'}); write its header as: "
                                f"{','.join(schema.columns)}")
            rows = []
            for row in reader:
                if None in row or any(value is None for value in row.values()):
                    raise UserError(f"{path} line {reader.line_num}: the row has {len(header)} columns in the "
                                    f"header but not in the row; quote values holding commas")
                check_row(name, schema, reader.line_num, row, groups)
                rows.append(row)
    except FileNotFoundError:
        raise UserError(f"{path} not found; the results data lives in docs/results/") from None
    except (UnicodeDecodeError, csv.Error) as error:
        raise UserError(f"{path} is not a UTF-8 CSV file ({error})") from None
    return rows


def load_commands(folder: Path) -> dict[str, str]:
    """Each table's command, from ``folder/commands.yaml`` (a mapping of group to command)."""
    path = folder / "commands.yaml"
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(f"{path} not found; it maps each table (group) to the command that makes it") from None
    except (yaml.YAMLError, UnicodeDecodeError) as error:
        raise UserError(f"{path} is not a YAML file: {str(error).splitlines()[0]}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) and v.strip()
                                             for k, v in data.items()):
        raise UserError(f"{path} must map each group name to its command (a non-empty string)")
    return {key: value.strip() for key, value in data.items()}


# --- formatting ---------------------------------------------------------------------------------------------

def mean_std(row: Row, metric: str) -> str:
    """``mean ± std``, or the mean alone for a single seed (no made-up spread)."""
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not mean:
        return ""
    return f"{mean} ± {std}" if std else mean


def signed(text: str) -> str:
    """A gain with its sign: ``+0.17``, ``-0.49``."""
    return text if not text or text.startswith("-") else f"+{text}"


def signed_mean_std(row: Row, metric: str) -> str:
    mean, std = row[f"{metric}_mean"], row[f"{metric}_std"]
    if not mean:
        return ""
    return f"{signed(mean)} ± {std}" if std else signed(mean)


def thousands(text: str) -> str:
    """``17227792`` as ``17,227,792``; decimals are kept as written."""
    if not text:
        return ""
    whole, dot, decimals = text.partition(".")
    return f"{int(whole):,}{dot}{decimals}"


def budget(text: str) -> str:
    """A training sample as a share (``10%``) or a count per class (``10 px/class``)."""
    value = float(text)
    return f"{value * 100:g}%" if value < 1 else f"{value:g} px/class"


def versus_published(row: Row) -> str:
    """Our mean OA minus the published one, in points."""
    if not (row["oa_mean"] and row["published_oa"]):
        return ""
    return f"{float(row['oa_mean']) - float(row['published_oa']):+.2f}"


def code(text: str) -> str:
    return f"`{text}`" if text else ""


def setting(text: str) -> str:
    """A setting, its leading command-line flags as code: ``--class_balancing, width 1/4``."""
    flags, comma, rest = text.partition(",")
    return f"`{flags}`{comma}{rest}" if flags.startswith("--") else text


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


@dataclass(frozen=True)
class Column:
    header: str
    value: Callable[[Row], str]


def markdown_table(columns: Sequence[Column], rows: Sequence[Row]) -> str:
    """A Markdown table of ``rows``; columns empty in every row are left out."""
    kept = [c for c in columns if any(c.value(row) for row in rows)]
    lines = ["| " + " | ".join(c.header for c in kept) + " |", "|" + "---|" * len(kept)]
    lines += ["| " + " | ".join(cell(c.value(row)) for c in kept) + " |" for row in rows]
    return "\n".join(lines)


# --- the pages ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Section:
    """One table of a page: the rows of ``group`` in ``data``, shown with ``columns`` under ``title``, after
    ``about`` (what it measures) and the command, and followed by ``findings`` (what it shows)."""
    group: str
    data: str
    title: str
    columns: Sequence[Column]
    about: str = ""
    findings: Sequence[str] = ()
    label: Callable[[Row], str] = lambda row: row["model"]
    extra: Callable[[list[Row], dict[str, list[Row]]], str] = lambda rows, tables: ""
    #: like ``extra``, after the findings (a view of its own under the table's section)
    closing: Callable[[list[Row], dict[str, list[Row]]], str] = lambda rows, tables: ""


@dataclass(frozen=True)
class Page:
    name: str
    title: str
    intro: str
    sections: Sequence[Section] = field(default_factory=tuple)


def published_label(row: Row, rows: Sequence[Row]) -> str:
    """A row's name beside its published number: the model, and the scene when the table has several."""
    if "model" not in row:
        return row["scene"]
    several = len({r["scene"] for r in rows}) > 1
    return code(row["model"]) + (f" on {row['scene']}" if several else "")


def published_notes(rows: Sequence[Row], column: str) -> str:
    """The sources of a table's published numbers, one line each."""
    sources: dict[str, list[str]] = {}
    for row in rows:
        if row.get(column):
            sources.setdefault(row["published_source"], []).append(published_label(row, rows))
    if len(sources) == 1:
        return f"Published: {next(iter(sources))}."
    lines = [f"- {', '.join(dict.fromkeys(names))}: {source}." for source, names in sources.items()]
    return "Published numbers:\n\n" + "\n".join(lines) if lines else ""


def commands_block(section: Section, rows: Sequence[Row], commands: dict[str, str]) -> str:
    """The table's command, or, when its rows come from different commands, each command with its rows."""
    if section.group in commands:
        return f"```bash\n{commands[section.group]}\n```"
    by_command: dict[str, list[str]] = {}
    for row in rows:
        by_command.setdefault(row["command"].strip(), []).append(section.label(row))
    parts = ["\n".join(textwrap.wrap("; ".join(dict.fromkeys(labels)), 110, initial_indent="# ",
                                     subsequent_indent="#   ")) + f"\n{command}"
             for command, labels in by_command.items()]
    return "```bash\n" + "\n\n".join(parts) + "\n```"


def render_section(section: Section, tables: dict[str, list[Row]], commands: dict[str, str]) -> str:
    rows = [row for row in tables[section.data] if row["group"] == section.group]
    if not rows:
        raise UserError(f"docs/results/{section.data} has no row of group '{section.group}', which the results "
                        f"pages show; add its rows or remove the table from benchmarks/results_pages.py")
    parts = [f"## {section.title}"]
    if section.about:
        parts.append(section.about.strip())
    parts.append(commands_block(section, rows, commands))
    parts.append(markdown_table(section.columns, rows))
    for column in ("published_oa", "published_svm_ratio", "published_gain"):
        notes = published_notes(rows, column) if column in rows[0] else ""
        if notes:
            parts.append(notes)
    extra = section.extra(rows, tables)
    if extra:
        parts.append(extra.strip())
    if section.findings:
        parts.append("What it shows:\n\n" + "\n".join(f"- {finding.strip()}" for finding in section.findings))
    closing = section.closing(rows, tables)
    if closing:
        parts.append(closing.strip())
    return "\n\n".join(parts)


GENERATED = ("<!-- Generated by benchmarks/results_pages.py from docs/results/*.csv and commands.yaml: edit the "
             "data, then run it. -->")


def render_page(page: Page, tables: dict[str, list[Row]], commands: dict[str, str]) -> str:
    parts = [GENERATED, f"# {page.title}", page.intro.strip()]
    parts += [render_section(section, tables, commands) for section in page.sections]
    return "\n\n".join(parts) + "\n"


# --- what each page shows -----------------------------------------------------------------------------------

def model_label(row: Row) -> str:
    scene = f", {row['scene']} {budget(row['training_sample'])}" if row.get("variant") else ""
    variant = f" ({row['variant']})" if row.get("variant") else ""
    return f"{row['model']}{scene}{variant}"


def oa_range(row: Row) -> str:
    low, high = row["oa_min"], row["oa_max"]
    if low and high:
        return f"{low}-{high}"
    return f"from {low}" if low else (f"up to {high}" if high else "")


def oa_or_status(row: Row) -> str:
    return mean_std(row, "oa") or row["status"]


CLASSIFICATION_COLUMNS = (
    Column("model", lambda r: code(r["model"])),
    Column("seeds", lambda r: r["seeds"]),
    Column("epochs", lambda r: r["epochs"]),
    Column("OA (%)", oa_or_status),
    Column("AA (%)", lambda r: mean_std(r, "aa")),
    Column("kappa (x100)", lambda r: mean_std(r, "kappa")),
    Column("OA range over seeds", oa_range),
    Column("published OA (%)", lambda r: r["published_oa"]),
    Column("ours - published", versus_published),
    Column("parameters", lambda r: thousands(r["parameters"])),
    Column("train px", lambda r: thousands(r["train_px"])),
    Column("test px", lambda r: thousands(r["test_px"])),
    Column("train (s)", lambda r: thousands(r["train_time_s"])),
    Column("inference (s)", lambda r: thousands(r["inference_time_s"])),
    Column("device", lambda r: r["device"]),
    Column("note", lambda r: r["note"]),
)
ENGINE_COLUMNS = (Column("split", lambda r: f"{r['protocol']} {budget(r['training_sample'])}"),
                  *CLASSIFICATION_COLUMNS)
SETTINGS_COLUMNS = (
    Column("model", lambda r: code(r["model"])),
    Column("scene, split", lambda r: f"{r['scene']}, {r['protocol']} {budget(r['training_sample'])}"),
    Column("setting", lambda r: setting(r["variant"])),
) + CLASSIFICATION_COLUMNS[1:]


PROTOCOL_COLUMNS = (
    Column("model", lambda r: code(r["model"])),
    Column("protocol", lambda r: setting(r["variant"])),
) + CLASSIFICATION_COLUMNS[1:]

MODERN_FINDINGS = (
    "`SSFTT` scores 97.27 ± 0.30 leak-free and 96.94 ± 0.79 with the PCA fitted on every pixel of the per-band "
    "standardised scene (seeds 0-4), and 96.97 ± 1.09 with the authors' preprocessing exactly (whitened PCA of "
    "the raw bands fitted on every pixel, `--normalization none`; seeds 0-2). The three differ by less than "
    "their spread over seeds, and all fall 1.35 to 1.68 points short of the published 98.62, a single run of "
    "the authors' code (our best seed: 97.89). Neither the leak nor the preprocessing explains the gap.",
    "`A2S2K` under its paper's protocol (a whitened rotation onto all 200 principal components fitted on every "
    "pixel; early stopping with patience 20 on 1,013 validation pixels drawn from the test set, which stay "
    "scored) reaches 98.80 OA and 98.41 AA (seed 0; published 98.66, mean of 3 runs). It stopped after 60 of "
    "its 200 epochs and kept epoch 40's weights. Leak-free, with the same stopping rule on 10% of the training "
    "pixels (PCA fitted on them), it scores 98.33 OA but 92.58 AA: the leak gains 0.47 points of OA and 5.83 of "
    "AA. The AA gain is one class: Oats has 2 training pixels, of which the leak-free run holds one out for "
    "validation, and scores 5.6% leak-free against 94.4%; the other 15 classes lie within 1.6 points of each "
    "other in the two runs. One seed each.",
    "`GAHT` trains its paper's whole schedule (300 epochs, SGD) in 20.7 minutes and scores 95.33 OA, 85.75 AA "
    "(seed 0, leak-free). Its authors' code configures Pavia University and Salinas (1% training + 1% "
    "validation) but not Indian Pines, so no published number stands beside it.",
    "Registered schedules on two CPU cores (epochs x seconds per epoch, `python benchmarks/epoch_times.py`, "
    "data in `cpu_epoch_times.json`): `SSFTT` 2.9 minutes (its full runs measured 2.6), `GAHT` 22, "
    "`SpectralFormer` 41, `A2S2K` 53, `MambaHSI` 71 and `DBDA` 128. Those over 30 minutes are 3-D convolutions over every band "
    "(`A2S2K`, `DBDA`: 200 bands at batches of 16, 65 steps an epoch), a 200-token transformer per pixel "
    "(`SpectralFormer`), or a selective scan run step by step in plain PyTorch (`MambaHSI`). Under their "
    "authors' early stopping `A2S2K` trains 54 to 60 epochs (14 to 21 minutes).",
)
FIXED_FINDINGS = (
    "The RBF SVM baseline on standardised bands scores 71.96 OA on these maps, 7.5 points under its 79.48 on a "
    "10% random split with 50% more training pixels.",
    "`SSFTT` (leak-free, seeds 0-2) reaches 94.85 ± 0.34 OA and 97.46 ± 0.25 AA. The maps keep training and "
    "test pixels apart but not their neighbourhoods: 98.35% of the test pixels lie inside the 13x13 patch of "
    "some training pixel, and 78.91% inside a 7x7 one (`python benchmarks/split_overlap.py --train "
    "../shared/data/splits/IndianPines/Indian_pines_TR.mat --test ../shared/data/splits/IndianPines/"
    "Indian_pines_TE.mat --patch 1 7 13`). A spatial model on these maps sees around almost every test pixel "
    "in training; the spatially disjoint blocks above are the split that does not.",
    "`SpectralFormer` (patch-wise with cross-layer adaptive fusion, its paper's 300 epochs, seed 0) scores 77.70 "
    "OA and 88.02 AA against the paper's 81.76 and 87.81: the AA matches, the OA falls 4.06 points short. The "
    "shortfall sits in the two largest test classes, which weigh on OA but not on AA: Soybean-mintill (2,418 "
    "test pixels, 66.05% right) and Corn-notill (1,384, 62.72%); every other class but Soybean-clean (69.33%) "
    "and Soybean-notill (73.42%) is above 82%. One seed cannot tell how much of the gap is the seed: on these "
    "maps seeds change only the initialisation and the batches.",
    "`GAHT`, `A2S2K`, `DBDA` and `MambaHSI` have no rows on these maps yet; their commands are the "
    "`SpectralFormer` row's with `--model` changed.",
)


# --- the zoo's OA against CPU training time ----------------------------------------------------------------

#: Seconds per epoch of each model on two CPU cores (``benchmarks/epoch_times.py``), for rows whose full
#: run was not timed on the CPU.
EPOCH_TIMES = "cpu_epoch_times.json"
#: The points behind the figure (written with the pages, and checked like them).
TIME_POINTS = "oa_vs_cpu_time.csv"
TIME_FIGURE = "oa_vs_cpu_time.svg"
#: Where the zoo's Indian Pines 10% random rows are, in order of preference (a model's first row counts).
TIME_GROUPS = ("zoo_modern_ip_random10", "zoo_ip_random10", "engine_ip")
CPU_DEVICE = "CPU 2 cores"


@dataclass(frozen=True)
class TimePoint:
    """One model of the zoo: its leak-free OA on Indian Pines 10% random and the CPU time of its training."""
    model: str
    oa_mean: float
    oa_std: Optional[float]
    seconds: float
    measured: bool  # the row's own full runs on the CPU, or epochs x seconds per epoch
    epochs: Optional[int]


def load_epoch_times(folder: Path) -> dict[str, dict]:
    """``folder/cpu_epoch_times.json``'s rows by model (none when the file is absent)."""
    path = folder / EPOCH_TIMES
    if not path.is_file():
        return {}
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
        return {str(row["model"]): row for row in report["rows"] if float(row["seconds_per_epoch"]) > 0}
    except (ValueError, KeyError, TypeError) as error:
        raise UserError(f"{path} is not an epoch-times report of benchmarks/epoch_times.py ({error})") from None


def zoo_time_points(rows: Sequence[Row], epoch_times: dict[str, dict]) -> tuple[list[TimePoint], list[str]]:
    """The zoo's points (sorted by time) and the models that have an OA but no CPU time yet."""
    points: dict[str, TimePoint] = {}
    untimed: list[str] = []
    for group in TIME_GROUPS:
        for row in rows:
            model = row["model"]
            if (row["group"] != group or model in points or model in untimed or row["scene"] != "IndianPines"
                    or row["protocol"] != "random" or row["training_sample"] != "0.1"
                    or not (row["variant"] == "" or row["variant"].startswith("leak-free")) or not row["oa_mean"]):
                continue
            epochs = int(row["epochs"]) if row["epochs"] else None
            oa_std = float(row["oa_std"]) if row["oa_std"] else None
            if row["train_time_s"] and row["device"] == CPU_DEVICE:
                points[model] = TimePoint(model, float(row["oa_mean"]), oa_std, float(row["train_time_s"]), True,
                                          epochs)
            elif model in epoch_times:
                timed = epoch_times[model]
                epochs = epochs or int(timed["registered_epochs"])
                points[model] = TimePoint(model, float(row["oa_mean"]), oa_std,
                                          float(timed["seconds_per_epoch"]) * epochs, False, epochs)
            else:
                untimed.append(model)
    return sorted(points.values(), key=lambda p: (p.seconds, p.model)), untimed


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.1f}" if seconds < 600 else f"{seconds / 60:.0f}"


def time_points_csv(points: Sequence[TimePoint]) -> str:
    """The figure's data, one model per line."""
    lines = ["model,oa_mean,oa_std,cpu_train_s,time_source,epochs"]
    for p in points:
        lines.append(f"{p.model},{p.oa_mean:.2f},{'' if p.oa_std is None else f'{p.oa_std:.2f}'},{p.seconds:.1f},"
                     f"{'measured' if p.measured else 'projected'},{'' if p.epochs is None else p.epochs}")
    return "\n".join(lines) + "\n"


def read_time_points(path: Path) -> list[TimePoint]:
    """The points :func:`time_points_csv` wrote."""
    with open(path, newline="", encoding="utf-8") as handle:
        return [TimePoint(r["model"], float(r["oa_mean"]), float(r["oa_std"]) if r["oa_std"] else None,
                          float(r["cpu_train_s"]), r["time_source"] == "measured",
                          int(r["epochs"]) if r["epochs"] else None) for r in csv.DictReader(handle)]


def draw_time_figure(points: Sequence[TimePoint], path: Path) -> None:
    """OA against CPU training time, log time axis; filled markers: measured runs, hollow: projected."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 5))
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    for measured, marker_face, label in ((True, "tab:blue", "full runs timed on the CPU"),
                                         (False, "none", "epochs x CPU seconds per epoch")):
        chosen = [p for p in points if p.measured == measured]
        if not chosen:
            continue
        ax.errorbar([p.seconds / 60 for p in chosen], [p.oa_mean for p in chosen],
                    yerr=[p.oa_std or 0.0 for p in chosen], fmt="o", mfc=marker_face, mec="tab:blue",
                    ecolor="tab:gray", capsize=2, label=label)
    for p in points:
        ax.annotate(p.model, (p.seconds / 60, p.oa_mean), textcoords="offset points", xytext=(4, 3), fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("CPU training time per seed, 2 cores (minutes, log scale)")
    ax.set_ylabel("OA (%), leak-free, mean ± std over seeds")
    ax.set_title("The zoo on Indian Pines, 10% random: accuracy against CPU training time", fontsize=10)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    import matplotlib

    with matplotlib.rc_context({"svg.hashsalt": "deephyperx", "svg.fonttype": "none"}), atomic_path(path) as tmp:
        fig.savefig(tmp, format="svg", metadata={"Date": None})


def time_view(rows: list[Row], tables: dict[str, list[Row]]) -> str:
    """The figure, its points and the models not yet timed, under the modern zoo's table."""
    points, untimed = zoo_time_points(tables["classification.csv"], tables.get(EPOCH_TIMES, {}))  # type: ignore
    table = markdown_table((
        Column("model", lambda p: code(p.model)),
        Column("OA (%)", lambda p: f"{p.oa_mean:.2f}" + ("" if p.oa_std is None else f" ± {p.oa_std:.2f}")),
        Column("CPU training (min)", lambda p: minutes(p.seconds)),
        Column("time", lambda p: "full runs" if p.measured else f"{p.epochs} epochs x s/epoch"),
    ), points)  # type: ignore[arg-type]
    text = f"""
### Accuracy against CPU training time

![OA against CPU training time, the zoo on Indian Pines 10% random]({TIME_FIGURE})

Every model of the zoo with a leak-free row on Indian Pines 10% random (this table first, then the zoo's
and the engine's tables above), at its training time per seed on two CPU cores: the rows' own full runs
where they were timed on the CPU, else its registered epochs times the seconds per epoch of
`python benchmarks/epoch_times.py` (data: `{EPOCH_TIMES}`; the figure's points: `{TIME_POINTS}`).

{table}
"""
    if untimed:
        text += f"\nNot shown, no CPU time yet: {', '.join(code(m) for m in untimed)}.\n"
    return text


def per_class_tables(rows: list[Row], tables: dict[str, list[Row]]) -> str:
    """The engine's per-class F1, one table per split, models side by side."""
    f1 = [row for row in tables["per_class_f1.csv"] if row["group"] == rows[0]["group"]]
    parts = []
    for split in dict.fromkeys((row["protocol"], row["training_sample"]) for row in f1):
        chosen = [row for row in f1 if (row["protocol"], row["training_sample"]) == split]
        models = list(dict.fromkeys(row["model"] for row in chosen))
        seeds = ", ".join(dict.fromkeys(row["seeds"] for row in chosen))
        by_class: dict[str, dict[str, Row]] = {}
        for row in chosen:
            by_class.setdefault(row["class"], {})[row["model"]] = row
        class_rows = [{"class": name, **{m: mean_std(values[m], "f1") if m in values else "" for m in models}}
                      for name, values in by_class.items()]
        columns = [Column("class", lambda r: r["class"])] + [Column(code(m), lambda r, m=m: r[m]) for m in models]
        parts.append(f"### Per-class F1 (%), {split[0]} {budget(split[1])}, seeds {seeds}\n\n"
                     f"From the same runs (the `bench.md` of each command holds them too).\n\n"
                     + markdown_table(columns, class_rows))
    return "\n\n".join(parts)


PROTOCOLS = """
Every number on these pages comes from the command shown above its table, run on the real scenes of
`../shared/data` (the `device` column says where). The data lives in `docs/results/*.csv`, one file per kind
of table, each row with its own command; `docs/results/commands.yaml` gives each table's command. These pages
are generated from it: `python benchmarks/results_pages.py` (`--check` exits 1 when a page differs from
its data).

## Protocols

- **Training pixels** are the split's training share minus a 5% validation hold-out (`--val_fraction 0.05`,
  used by the learning-rate schedule). The scikit-learn models get it back (their grid search
  cross-validates inside the training set), and `HybridSN` trains on every training pixel, as its authors
  do. Test pixels are all other labelled pixels. Normalisation is per-band standardisation fitted on
  training pixels only.
- **`random`**: a stratified random share of each class (or a number of pixels per class). Patches of
  spatial models then overlap test pixels, which flatters them; spectral models do not look at
  neighbours. Published numbers use this split.
- **`disjoint-blocks`** (`--sampling_mode blocks`): spatially disjoint square blocks go to training until
  each class's share is near the target, and test pixels within `patch_size // 2` of a training pixel
  are removed. This is the honest number for generalisation to unseen fields.
- **Scores**: OA, AA (mean of per-class recalls) and kappa, as mean ± sample standard deviation over the
  seeds named in the row (`0-4` is five runs). A single-seed row shows its value alone: it has no spread.
- **Times** are wall seconds on the row's device, measured while other jobs shared its cores: read them as
  orders of magnitude.
- **Repeatability**: the same command and seed give the same numbers on the same device, torch thread count
  and library versions (the tests run the command line twice and compare, and kill a run midway, resume
  it and compare). Every run folder records its device, CPU instruction set and thread counts in
  `environment.jsonl`.
"""

PAGE_LIST = (
    {"page": "[Classification](classification.md)",
     "what": "OA, AA and kappa of the scikit-learn baselines and the deep model zoo on Indian Pines (random, "
             "spatially disjoint and the standard fixed maps) and Salinas-A, beside the published numbers and, "
             "for today's models, beside their papers' leaking protocols"},
    {"page": "[Spectrum generators](generators.md)",
     "what": "how real the spectra of `cvae` and `cgan` are, and what they add to a classifier's training"},
    {"page": "[Segmentation](segmentation.md)",
     "what": "aerial and multimodal segmentation: fusion of height or a second sensor, distance-transform "
             "multitask, vehicle extraction (CPU-scaled runs)"},
)
INDEX = Page("index.md", "Results", PROTOCOLS + "\n## Pages\n\n" + markdown_table(
    (Column("page", lambda r: r["page"]), Column("what it measures", lambda r: r["what"])), PAGE_LIST))

CLASSIFICATION = Page("classification.md", "Classification", """
Pixel classification of the hyperspectral scenes: every model with its registered defaults (the paper's
schedule; see [the model defaults](../MODELS.md)) unless a row names another setting. Protocols, scores
and devices are explained on the [results overview](index.md). Data: `docs/results/classification.csv`
(and `per_class_f1.csv`).
""", (
    Section("engine_ip", "classification.csv", "Scikit-learn SVM and the MLP on Indian Pines", ENGINE_COLUMNS,
            about="""
`SVM_grid` chooses an RBF, linear or polynomial kernel and C/gamma by 3-fold cross-validation on the
training pixels' standardised spectra; `nn` is DeepHyperX's fully connected baseline. Splits: 10% random,
10% spatially disjoint blocks, and 30% random, the protocol of the published SVM number. The script also
trains `hu`; its rows under these splits are in the zoo tables below.
""",
            findings=(
                "At 30% random `SVM_grid` is 1.77 points of OA above the published SVM, whose kernel and grid are "
                "not stated. Its grid search picked an RBF kernel in every seed (C = 1000 and gamma = 0.001 in "
                "three seeds, C = 100 and gamma = 0.01 in two).",
                "The spatially disjoint split costs both models 16 to 17 points of OA: with blocks, whole fields "
                "are unseen in training, where a random split puts training pixels in every field.",
            ),
            extra=per_class_tables),
    Section("zoo_ip_random10", "classification.csv", "The model zoo on Indian Pines, 10% random",
            CLASSIFICATION_COLUMNS, about="""
Every deep model of the zoo with its full schedule: the light models over seeds 0-4, the heavy `HybridSN`,
`SSRN`, `luo` and `sharma` over seed 0 (`--runs_for`). Each row's own command (`--models <model>` into
the same folder) is in its `command` column. `benchmarks/zoo_results.sh ../shared/data outputs/zoo` runs
the three zoo tables, resumably (`JOBS=N` runs N seeds at once; `CUDA=0` trains on a GPU, where `chen`
joins: its 27x27x200 patches train at about 1 sample/s on one CPU core, about 100 hours for its 400
epochs).
""",
            findings=(
                "`hamida` and `he` reach the published numbers (the HybridSN authors' runs of a DeepHyperX "
                "fork) as means over five seeds, and so does every seed of `he` (OA range column) and four of "
                "five of `hamida` (its lowest seed, 82.37, falls 0.25 short).",
                "`HybridSN` (seed 0) falls 2.17 points short. Its registration follows the authors' notebook "
                "(whitened PCA to 30 components, every training pixel trains) but for one difference kept on "
                "purpose: the PCA is fitted on training pixels only, where the authors fit it on the whole "
                "image, test pixels included. Without whitening it scores a higher OA and a lower AA (settings "
                "table below).",
                "`SSRN` (seed 0) falls 1.28 points short. Its validation accuracy on 53 pixels swings between "
                "epochs (0.98 at epoch 172, 0.92 at the last); runs score the last epoch's weights by default, "
                "where the SSRN authors keep the best validation epoch's (`--keep_best val_loss`).",
                "`hu` trains at a constant learning rate for up to 1500 epochs (its paper's Algorithm 1), `liu` "
                "with Adam at its paper's rate, `luo` at lr 0.01 without weight decay and `boulch` with Adam: "
                "each departure from DeepHyperX's settings, and why, is in the model's docstring.",
                "`mou` underfits with its registered Adadelta at lr 1.0 (training loss 1.2 and falling at epoch "
                "100); Adam at lr 0.01 trains it much further (settings table).",
                "`sharma` reaches 80.04 OA but 50.33 AA: five classes get F1 0 (Alfalfa, Grass-pasture-mowed, "
                "Oats and Stone-Steel-Towers, each under 100 labelled pixels, and Wheat).",
                "`boulch` passes every spectrum through a 3-value code (its paper's aim is a false-colour view "
                "of the scene), and a linear layer on 3 values separates 16 classes poorly.",
            )),
    Section("zoo_ip_blocks10", "classification.csv", "The model zoo on Indian Pines, 10% spatially disjoint blocks",
            CLASSIFICATION_COLUMNS, about="""
The same models on spatially disjoint blocks. The block side grows with the patch, `max(2 x patch,
min(H, W) // 15)` and at most `min(H, W) // 6`: on Indian Pines 9 px for patches of 1 and 3, 10 for 5, 14
for 7, 18 for 9 and 24 for 12 and more, so models of different patch sizes get different splits. The
`train px` and `test px` columns give each row's (means over its seeds, validation hold-out included). Some small
classes (Grass-pasture-mowed, Oats) get no training pixel in some splits, which lowers AA more than OA;
runs name such classes in a warning line and in `metrics.json` (`split_warnings`).
""",
            findings=(
                "The spectral `hu` is the best model on blocks, and `nn` comes next: the two models that see one "
                "pixel lose the least against the random split (`nn` 17.2 points of OA, `hu` 18.9). The light "
                "spatial models lose 31 to 44 points and `SSRN` 48.6: with these blocks, their advantage on the "
                "random split is mostly spatial leakage, patches that overlap test pixels of their own field.",
                "Blocks spread the seeds far more than the random split (standard deviations of 2.7 to 9.6 "
                "points of OA), because each seed draws other blocks: which fields are seen in training "
                "changes. `liu` spreads most; its validation pixels sit inside the training blocks, so nothing "
                "in training tells a seed that generalises from one that does not. The gaps between `li`, "
                "`hamida` and `lee` are within one standard deviation: comparisons on blocks need all five "
                "seeds.",
                "On its 24-px blocks `HybridSN` fits the training blocks (final training loss 0.002) and does "
                "not transfer. `hu` trained on exactly its split (settings table) reaches 33.01 OA, three times "
                "`HybridSN`'s 10.98 and far below its own score on 9-px blocks: the split is much harder, and "
                "`HybridSN` transfers even worse than the spectral model on it. Its 25x25 input covers most of "
                "a training block, so it can learn each field's layout instead of its spectra.",
                "With 64-px patches no spatially disjoint test of Indian Pines exists: a 32-px guard band "
                "around a tenth of the scene covers nearly all of it, so `sharma`'s row is no measure of "
                "generalisation. `chen` (27-px patches) needs a GPU.",
            )),
    Section("zoo_salinasa_random5", "classification.csv", "The model zoo on Salinas-A, 5% random",
            CLASSIFICATION_COLUMNS, about="""
Salinas-A is the 86x83 subset of Salinas with 6 classes: 5% random gives 268 labelled training pixels (254
train, 14 held out for validation) and 5,080 test pixels. The published numbers are for the whole Salinas
scene (16 classes; HybridSN 99.95 and SSRN 99.53 at 5%), not this subset. `chen`'s command is the table's
with `--models chen --runs 1` (on a GPU add `--cuda 0`).
""",
            findings=(
                "The scene is easy: every model but `boulch`, `mou` and `sharma` passes 98.5% OA in every seed, "
                "and the spatial `hamida`, `he`, `li`, `liu` and `lee` lie within 0.18 points of each other, "
                "inside their seed-to-seed spread. `mou` underfits here as on Indian Pines.",
                "`HybridSN` trains with the authors' whitened PCA to 30 components on 268 pixels, which scales "
                "up components those pixels barely estimate; without whitening it classifies every test pixel "
                "right (settings table). The authors use 15 components on Salinas (`--pca 15 --pca_whiten`).",
                "`sharma` diverges with its report's schedule (SGD 0.05, momentum 0.9, batch 60): the training "
                "loss jumps from epoch 3 on and reaches 3.4e30 at epoch 15, where the run stops and records "
                "`seed0.diverged.json`. With 254 training pixels an epoch is 5 steps, and its 64x64 patches "
                "cover most of the scene. At a tenth of the rate it trains (settings table).",
            )),
    Section("settings", "classification.csv", "Other settings", SETTINGS_COLUMNS, label=model_label, about="""
Runs with one setting changed from the registration, seed 0 each, to explain a gap to a published number
or a model that does not train. Settings chosen while looking at test accuracy are explorations, not
protocol results. `unwhitened.yaml` holds `reduction: {name: pca, components: 30}`.
""",
            findings=(
                "`HybridSN` on Indian Pines: whitening costs 1.43 points of OA and gains 2.70 of AA. Keeping the "
                "weights of the lowest validation loss (`--keep_best val_loss`, epoch 74) gains AA and loses OA "
                "against the last epoch's; 53 validation pixels are too few to pick a better epoch reliably. One "
                "seed each cannot separate these differences from the seed-to-seed spread.",
                "`mou` keeps Adadelta at lr 1.0, the rate its docstring attributes to the paper; to train it "
                "further give `--optimizer adam --lr 0.01`.",
            )),
    Section("zoo_modern_ip_random10", "classification.csv",
            "Today's models on Indian Pines, 10% random: leak-free and under their paper's protocol",
            PROTOCOL_COLUMNS, about="""
The models published since 2020, trained with their registered (paper) schedules. Each is run leak-free
(the default: normalisation and PCA fitted on training pixels only, no validation carved from test pixels)
and, where its paper leaked, under its paper's own protocol too, with the leakage switches that reproduce it (`--fit_preprocessing
scene`: PCA and normalisation fitted on every pixel of the scene, test pixels included; `--validation_from
test`: early stopping on pixels taken from the test set). The difference between the two rows is the
leakage in the published protocol. Each row's command is in its `command` column.
""", findings=MODERN_FINDINGS, closing=time_view),
    Section("zoo_ip_fixed", "classification.csv",
            "Indian Pines on the standard fixed maps (695 training / 9,671 test pixels)",
            CLASSIFICATION_COLUMNS, about="""
The training and test maps of SpectralFormer and miniGCN (`../shared/data/splits/IndianPines/`): fixed,
spatially structured, and the same for every paper that uses them, so seeds change only the models'
initialisation and batches. 26 training and 230 test pixels of these maps are unlabelled in
`Indian_pines_gt.mat`; the map's class is their truth, and each run warns about them and records them
in the protocol record of its `metrics.json`.
""", findings=FIXED_FINDINGS),
))


def realism_label(row: Row) -> str:
    return f"{row['generator']}, {row['scene']} {budget(row['training_sample'])}"


def augmentation_label(row: Row) -> str:
    return f"{row['generator']} {row['model']}, {row['scene']} {budget(row['training_sample'])}"


def positive(row: Row) -> str:
    return f"{row['positive_seeds']} of {len(seed_list(row['seeds']))}" if row["positive_seeds"] else ""


GENERATORS = Page("generators.md", "Spectrum generators", """
How real are the spectra of `cvae` and `cgan` (`main.py generate`), and what do they add to a classifier's
training? For each scene, label budget (5% of the labelled pixels, or 10 pixels per class) and seed, a
generator trains on that seed's training pixels only, so no test pixel ever reaches it, and writes 1,000
spectra per class with its realism report. Data: `docs/results/generators.csv` and `augmentation.csv`.
The paper (Audebert et al., IGARSS 2018: `cgan` on Pavia University) reports a linear SVM TSTR / TRTR of
0.98 and a gain of +0.42 point for an MLP.
""", (
    Section("realism", "generators.csv", "Realism", (
        Column("generator", lambda r: code(r["generator"])),
        Column("scene", lambda r: r["scene"]),
        Column("budget", lambda r: budget(r["training_sample"])),
        Column("seeds", lambda r: r["seeds"]),
        Column("torch threads", lambda r: r["torch_threads"]),
        Column("SVM TRTR", lambda r: mean_std(r, "svm_trtr")),
        Column("SVM TSTR", lambda r: mean_std(r, "svm_tstr")),
        Column("SVM TSTR/TRTR", lambda r: mean_std(r, "svm_ratio")),
        Column("published", lambda r: r["published_svm_ratio"]),
        Column("SVM TSTR/TRTR by seed", lambda r: r["svm_ratio_by_seed"]),
        Column("SVM gain", lambda r: signed_mean_std(r, "svm_gain")),
        Column("MLP TRTR", lambda r: mean_std(r, "mlp_trtr")),
        Column("MLP TSTR", lambda r: mean_std(r, "mlp_tstr")),
        Column("MLP TSTR/TRTR", lambda r: mean_std(r, "mlp_ratio")),
        Column("MLP gain", lambda r: signed_mean_std(r, "mlp_gain")),
        Column("two-sample (%)", lambda r: mean_std(r, "two_sample")),
        Column("angle ratio", lambda r: mean_std(r, "angle_ratio")),
        Column("device", lambda r: r["device"]),
        Column("note", lambda r: r["note"]),
    ), label=realism_label, about="""
Overall accuracy (%) on the real test pixels of a linear SVM and an MLP (scikit-learn, standardised
inputs) trained on real spectra (TRTR) or on synthetic ones (TSTR); their gain is real + synthetic minus
real alone, in points. The two-sample test is a random forest telling real from synthetic spectra (50%:
indistinguishable). The angle ratio is the median spectral angle of synthetic spectra to their nearest
training spectrum over that of real test spectra: below 1, they sit closer to the training spectra than
new real ones do (near copies). `benchmarks/realism_summary.py` gathers the seeds' reports
(`runs/*/seed*/realism/realism.json`) into mean ± sample std, with each seed's torch thread count.
`JOBS=2` on a 2-core CPU trains two seeds at once with one torch thread each
(`benchmarks/threads_per_job.sh`).
""",
        findings=(
            "No `cgan` setting reaches the paper's SVM ratio of 0.98 (0.05 to 0.28 short). Its registered "
            "schedule is a tenth of the paper's 100,000 generator iterations, and its validation Wasserstein "
            "estimate is still falling at the last epoch. Its spectra copy no training spectrum (angle ratio "
            "above 1) and a random forest tells them from real ones 84% to 99% of the time.",
            "`cvae` reaches 0.98 at 10 px/class, where its spectra sit closer to the training spectra than real "
            "test spectra do (angle ratio 0.78 and 0.50) and the two-sample test is near chance: with so few "
            "pixels the generator learns little beyond the training spectra themselves. On Indian Pines at 5% "
            "it keeps 0.81.",
            "`cgan` depends on the number of torch threads and on the CPU: torch's reductions add in another "
            "order with another thread count or instruction set, and adversarial training amplifies the "
            "difference. The two Indian Pines 5% rows are the same command and seeds on two CPUs: single seeds "
            "move, the generator-free TRTR columns do not, and the mean moves far less than the spread between "
            "seeds. With the same thread count and CPU a run repeats exactly; give the thread count with the "
            "seed.",
        )),
    Section("augmentation", "augmentation.csv", "Augmentation", (
        Column("generator", lambda r: code(r["generator"])),
        Column("model", lambda r: code(r["model"])),
        Column("scene", lambda r: r["scene"]),
        Column("budget", lambda r: budget(r["training_sample"])),
        Column("seeds", lambda r: r["seeds"]),
        Column("OA real only (%)", lambda r: mean_std(r, "oa_real")),
        Column("OA real + synthetic (%)", lambda r: mean_std(r, "oa_aug")),
        Column("OA gain (points)", lambda r: signed_mean_std(r, "oa_gain")),
        Column("published gain", lambda r: signed(r["published_gain"])),
        Column("AA gain (points)", lambda r: signed_mean_std(r, "aa_gain")),
        Column("OA gain by seed", lambda r: r["oa_gain_by_seed"]),
        Column("seeds with a positive gain", positive),
        Column("generator's torch threads", lambda r: r["generator_threads"]),
        Column("device", lambda r: r["device"]),
    ), label=augmentation_label, about="""
The zoo's `nn` (an MLP) and `hu` (a 1D CNN), each with its registered full schedule, trained on real
pixels only and on real + synthetic spectra at ratio 1 (as many synthetic spectra as real ones, each seed
reading its own generator's file through `--synthetic 'gen/seed{seed}.h5'`);
`benchmarks/augmentation_gain.py` pairs the two benches seed by seed.
""",
        findings=(
            "The paper's +0.42 for an MLP is matched only at 10 px/class (`cgan`: +0.49 ± 0.45 on Indian Pines, "
            "+0.43 on Salinas-A), within the seed-to-seed spread; at 5% the MLP gains +0.17 (Indian Pines) and "
            "+0.03 (Salinas-A) with `cgan`, and nothing measurable with `cvae`.",
            "The 1D CNN `hu` gains in every setting and every `cgan` seed, by more than its spread on Indian "
            "Pines. Spectra that a linear SVM finds less useful alone help it at least as much: spectra that "
            "are not copies of the training ones add variety to learn from.",
            "On Salinas-A, which real pixels nearly solve, every gain is within the real-only spread.",
        )),
))

SEGMENTATION_COLUMNS = (
    Column("model", lambda r: code(r["model"])),
    Column("scene", lambda r: r["scene"]),
    Column("sources", lambda r: r["sources"]),
    Column("setting", lambda r: setting(r["variant"])),
    Column("epochs", lambda r: r["epochs"]),
    Column("seeds", lambda r: r["seeds"]),
    Column("OA (%)", lambda r: mean_std(r, "oa")),
    Column("kappa (x100)", lambda r: mean_std(r, "kappa")),
    Column("mean F1 (%)", lambda r: r["mean_f1"]),
    Column("mIoU (%)", lambda r: r["miou"]),
    Column("F1 per class (%)", lambda r: r["class_f1"]),
    Column("IoU per class (%)", lambda r: r["class_iou"]),
    Column("published OA (%)", lambda r: r["published_oa"]),
    Column("train (s)", lambda r: thousands(r["train_time_s"])),
    Column("device", lambda r: r["device"]),
    Column("note", lambda r: r["note"]),
)


def segmentation_label(row: Row) -> str:
    variant = f" {row['variant']}" if row["variant"] else ""
    return f"{row['model']} on {row['scene']} ({row['sources']}){variant}"


def segmentation_section(group: str, title: str, about: str, findings: Sequence[str]) -> Section:
    return Section(group, "segmentation.csv", title, SEGMENTATION_COLUMNS, about=about, findings=findings,
                   label=segmentation_label)


SEGMENTATION = Page("segmentation.md", "Aerial and multimodal segmentation", """
`main.py segment` under a CPU-scaled protocol (`benchmarks/segmentation_results.sh`): networks at 1/8 of
SegNet's width (`--model_args width=0.125`), Adam 1e-3, batch 10, and a few thousand random crops in all,
seed 0 unless a row says otherwise. The published SegNet trains 50 epochs of 10,000 crops of 256x256 at
full width: these tables compare models under one protocol and reproduce no published number. Data:
`docs/results/segmentation.csv` and `detection.csv`.
""", (
    segmentation_section("seg_synthetic", "Fusion where height decides: the synthetic aerial scene", """
`SyntheticAerial` (embedded): 4 tiles of 256x256, three train and one tests; roofs have the colours of roads
and car parks, so only height separates them. Crops of 64x64, 500 per epoch. Test tile, full ground truth.
""", (
        "Every model given the height beats image-only SegNet (+8 to +12 points of OA, building F1 +6 to "
        "+10); residual correction and FuseNet do best. On the eroded ground truth (3-pixel boundary removed, "
        "as ISPRS scores) every fusion model exceeds 98.5% OA, against 91.8% for image-only SegNet.",
        "Cars (4-5 px wide) stay hard for every model at this width and crop size.",
    )),
    segmentation_section("seg_crops", "SegNet on the real ISPRS crops", """
`VaihingenCrop` (IRRG, 512x512, 9 cm) trains on rows 171-512 and tests on rows 0-171; `PotsdamCrop` (RGB,
512x512, 5 cm) trains on rows 0-341 and tests on rows 341-512: single contiguous cuts, so that every class of
the crop falls on both sides. Labels are the eroded ISPRS ground truth. Crops of 128x128, 250 per epoch;
`--class_balancing` weights classes by inverse median frequency.
""", (
        "Far below the published SegNet: 5,000 crops of one 342-row crop at 1/8 width teach the network the "
        "large classes only. With class weights and twice the crops it marks car pixels and mean F1 rises, "
        "but as fragments (vehicle extraction below). This measures the budget, not the method.",
    )),
    segmentation_section("seg_wider", "A wider SegNet on the Vaihingen crop", """
Width 1/4 instead of 1/8, with class weights.
""", (
        "A wider network does not fix it at this data size: one 342x512 crop holds too few cars to learn "
        "them from scratch on this budget.",
    )),
    segmentation_section("seg_vehicles", "Sampling the rare class on purpose", """
`--focus_class car` centres half of the training crops on a car pixel drawn uniformly over the training rows.
""", (
        "Without class weights the network never predicts a car; with them it marks 62% of the car pixels "
        "but paints whole road stretches as car. The crop's training rows hold 7 cars (227 to 623 pixels "
        "each, several in shadow), too few for a network trained from scratch to tell a car from the asphalt "
        "around it.",
    )),
    Section("seg_detection", "detection.csv", "Vehicle extraction (segment-before-detect)", (
        Column("model", lambda r: code(r["model"])),
        Column("scene", lambda r: r["scene"]),
        Column("sources", lambda r: r["sources"]),
        Column("setting", lambda r: setting(r["variant"])),
        Column("epochs", lambda r: r["epochs"]),
        Column("car F1, pixels (%)", lambda r: r["car_f1"]),
        Column("car pixels: recall / precision (%)",
               lambda r: f"{r['car_pixel_recall']} / {r['car_pixel_precision']}" if r["car_pixel_recall"] else ""),
        Column("true cars", lambda r: r["true_objects"]),
        Column("objects found", lambda r: r["objects"]),
        Column("matched (IoU 0.5)", lambda r: r["matched"]),
        Column("object precision (%)", lambda r: r["object_precision"]),
        Column("object recall (%)", lambda r: r["object_recall"]),
        Column("note", lambda r: r["note"]),
    ), label=segmentation_label, about="""
`--detect car` extracts objects from the predicted map, writes them as CSV and GeoJSON and matches them to the
true cars by box IoU 0.5. On the synthetic test tile (37 cars, 4-5 px wide) the models of the synthetic table
are evaluated only (`--epoch 0 --restore`, same scores); on the Vaihingen test rows there are 5 whole cars.
""",
        findings=(
            "Segment-before-detect finds cars where the segmentation sees them: V-FuseNet finds 14 of the 37 "
            "synthetic cars. Object recall follows the pixels' car F1 but loses to fragments: a car split in two "
            "gives two boxes that each miss IoU 0.5.",
            "On the Vaihingen crop no setting matches a car: the objects are fragments or road-sized.",
        )),
    segmentation_section("seg_twosource", "Fusion on the real two-source cases", """
`Sentinel2Slovenia` (13 bands and a terrain DEM; train rows 0-67, test rows 67-101) and
`IndianPinesTwoSensors` (Indian Pines as a VNIR and a SWIR sensor; blocks, 30% of the pixels). Crops of
32x32, 500 per epoch; full ground truth of the test region.
""", (
        "On Sentinel-2 the terrain model does not help: the patch is 75% forest, the test strip is 34 rows of "
        "10 m pixels, and a terrain DEM (not a surface model) says little about land cover there; every fusion "
        "model does worse than the image alone.",
        "On Indian Pines as two sensors, residual correction gains 7 points over the VNIR-only SegNet while "
        "FuseNet loses 10. All these encoder-decoders stay far below the zoo's pixel classifiers on this scene: "
        "they pool 32x32 crops down to 1x1, and 30% of the labelled pixels in blocks leaves few labelled pixels "
        "per crop. Fusion wins on the synthetic scene, where height decides; these two real cases do not show "
        "it.",
    )),
    segmentation_section("seg_spacenet", "Distance-transform multitask against SegNet", """
`SpaceNetAtlanta` (900x900 panchromatic, 0.5 m, 43 buildings; a stand-in for Inria): train on columns 0-600,
test on columns 600-900. Crops of 128x128, 250 per epoch. `segnet_dt` adds to the cross-entropy lambda (1)
times the L1 distance between predicted and true truncated signed distance maps (truncation 20 px). Published
on Inria Aerial Image Labeling: +6.98 building IoU and +0.89 OA for the distance-transform SegNet over plain
SegNet (full width, far longer training).
""", (
        "Without class weights both networks predict background everywhere (buildings are 3% of the test "
        "strip). With them, at 20 epochs and one seed, the distance-transform model does worse.",
    )),
    segmentation_section("seg_spacenet_long", "Distance-transform multitask, 60 epochs", """
Three times longer than the table above, with class weights, seeds 0-2.
""", (
        "At 60 epochs the distance-transform model beats SegNet in every seed: +3.37 building IoU and +1.17 "
        "OA on the means, each seed's gain larger than either model's spread. That is the published direction, "
        "with about half of its IoU gain and a slightly larger OA gain.",
        "Both stay below the 20-epoch SegNet: the plateau scheduler, driven by the training loss, cuts the "
        "rate to 1e-6 by about epoch 46, and the longer runs fit the training columns more tightly.",
    )),
))

PAGES: tuple[Page, ...] = (INDEX, CLASSIFICATION, GENERATORS, SEGMENTATION)


def render_pages(folder: Path) -> dict[str, str]:
    """Every page's Markdown (and the figure's points, :data:`TIME_POINTS`), from the data in ``folder``."""
    groups = {section.group for page in PAGES for section in page.sections}
    tables = {name: load_table(folder, name, groups) for name in SCHEMAS}
    tables[EPOCH_TIMES] = load_epoch_times(folder)  # type: ignore[assignment]
    commands = load_commands(folder)
    unknown = sorted(set(commands) - groups)
    if unknown:
        raise UserError(f"{folder / 'commands.yaml'} names groups no table shows: {', '.join(unknown)}")
    pages = {page.name: render_page(page, tables, commands) for page in PAGES}
    pages[TIME_POINTS] = time_points_csv(zoo_time_points(tables["classification.csv"], tables[EPOCH_TIMES])[0])
    return pages


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 naming each page that differs from what the data gives")
    parser.add_argument("--data", type=Path, default=RESULTS, help="folder of the CSV files and commands.yaml")
    parser.add_argument("--out", type=Path, default=None, help="folder of the pages (default: the data folder)")
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    out = args.out or args.data
    try:
        pages = render_pages(args.data)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    stale = [name for name, text in pages.items()
             if not (out / name).is_file() or (out / name).read_text(encoding="utf-8") != text]
    if args.check:
        for name in stale:
            print(f"{out / name} differs from its data; run python benchmarks/results_pages.py", file=sys.stderr)
        return 1 if stale else 0
    for name in stale:
        atomic_write_text(out / name, pages[name])
        print(f"wrote {out / name}")
    if TIME_POINTS in stale or not (out / TIME_FIGURE).is_file():  # the figure follows its points
        draw_time_figure(read_time_points(out / TIME_POINTS), out / TIME_FIGURE)
        print(f"wrote {out / TIME_FIGURE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
