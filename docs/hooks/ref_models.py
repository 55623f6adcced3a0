"""The generated model page: one section per registered model, read from :mod:`deephyperx.registry`.

Each section gives the model's paper (its registered citation), family, registered defaults, options,
parameter count (the model built for a representative scene, named on the page) and the reproduced and
published numbers of ``docs/results/classification.csv`` (a dash when the model has no row there).
"""
from __future__ import annotations

import csv
import inspect
from pathlib import Path
from typing import Any, Optional

from ref_markdown import MISSING, cell, code, table, text_block, value_text

#: The representative pixel-classification scene the parameter counts are given for.
BANDS, CLASSES, COUNT_SCENE = 200, 16, "Indian Pines (200 bands, 16 classes)"
#: The representative tile set of the segmentation models: ISPRS Vaihingen's classes, 3-channel images.
SEG_CLASSES, SEG_SCENE = 6, "ISPRS Vaihingen (6 classes; 3 channels for `image`, 1 for every other source)"

FAMILY_TITLES = {
    "sklearn": ("scikit-learn baselines", "python main.py --model {name}"),
    "neural": ("Neural pixel classifiers", "python main.py --model {name}"),
    "generator": ("Spectrum generators", "python main.py generate --model {name}"),
    "segmentation": ("Aerial segmentation networks", "python main.py segment --model {name}"),
}
#: Training settings that do not apply to a scikit-learn estimator (it is fitted, not trained by epochs).
NOT_FOR_SKLEARN = {"epoch", "batch_size", "optimizer", "lr", "momentum", "weight_decay", "scheduler", "loss",
                   "supervision", "epoch_samples"}
#: Columns of the results file (docs/results/classification.csv) shown in a model's table, in order.
RESULT_COLUMNS = (("scene", "scene"), ("protocol", "protocol"), ("training_sample", "training sample"),
                  ("epochs", "epochs"), ("seeds", "seeds"))
#: Number of (scene, protocol, training sample) settings given a column of the summary table.
SUMMARY_SETTINGS = 3


def parameter_count(spec: Any) -> tuple[Optional[int], str]:
    """The number of trainable parameters of ``spec``'s model built for the representative scene, and
    what it was built for (scikit-learn estimators learn theirs from the data: None)."""
    from deephyperx.config import model_band_count
    from deephyperx.registry import create_model

    defaults = spec.training_defaults()
    if spec.family == "sklearn":
        return None, "learned from the data"
    if spec.family == "segmentation":
        inputs = list(defaults["inputs"])
        model = create_model(spec.name, n_classes=SEG_CLASSES, source_names=inputs,
                             channels=[3 if source == "image" else 1 for source in inputs])
        return _count(model), f"{SEG_CLASSES} classes, sources {', '.join(inputs)}"
    bands = model_band_count(defaults, BANDS)
    model = create_model(spec.name, n_bands=bands, n_classes=CLASSES, patch_size=defaults["patch_size"], seed=0)
    built = f"{bands} bands (its PCA of the 200)" if bands != BANDS else f"{BANDS} bands"
    if spec.family != "generator":
        built += f", patch {defaults['patch_size']}"
    return _count(model), built


def _count(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def read_results(path: Path) -> dict[str, list[dict[str, str]]]:
    """The rows of the classification results file by model (empty when the file is absent)."""
    if not path.is_file():
        return {}
    rows: dict[str, list[dict[str, str]]] = {}
    with path.open(newline="", encoding="utf-8") as handle:
        for row in csv.DictReader(handle):
            rows.setdefault((row.get("model") or "").strip(), []).append(row)
    return rows


def _mean_std(row: dict[str, str], key: str) -> str:
    mean, std = (row.get(f"{key}_mean") or "").strip(), (row.get(f"{key}_std") or "").strip()
    if not mean:
        return MISSING
    return f"{mean} ± {std}" if std else mean


def results_table(rows: list[dict[str, str]]) -> str:
    """The reproduced (mean ± std over seeds) and published numbers of one model; each row's variant,
    status, note, published source and command follow the table, by row number."""
    if not rows:
        return f"Reproduced and published numbers: {MISSING} (no row in `docs/results/classification.csv`).\n"
    scores = [key for key in ("oa", "aa", "kappa") if any(f"{key}_mean" in row for row in rows)]
    header = (["#"] + [title for _, title in RESULT_COLUMNS] + [f"{s.upper() if s != 'kappa' else 'kappa'}"
                                                               for s in scores] + ["published OA", "device"])
    body, details = [], []
    for number, row in enumerate(rows, 1):
        body.append([str(number)] + [cell(row.get(key)) for key, _ in RESULT_COLUMNS]
                    + [cell(_mean_std(row, s)) for s in scores]
                    + [cell(row.get("published_oa")), cell(row.get("device"))])
        said = [f"{label}: {cell(row[key])}" for key, label in (("variant", "variant"), ("status", "status"),
                                                               ("note", "note"), ("published_source", "published in"))
                if (row.get(key) or "").strip()]
        details.append(f"{number}. {code(row.get('command'))}" + ("; " + "; ".join(said) if said else ""))
    return ("Reproduced numbers (mean ± std over the seeds named; scores in %) and the published ones, from "
            "`docs/results/classification.csv`:\n\n" + table(header, body) + "\nCommands (and what else the row "
            "says):\n\n" + "\n".join(details) + "\n")


def model_section(spec: Any, results: list[dict[str, str]], counted: tuple[Optional[int], str]) -> str:
    """The Markdown section of one registered model (``counted``: its :func:`parameter_count`)."""
    title, command = FAMILY_TITLES[spec.family]
    count, built = counted
    defaults, registered = spec.training_defaults(), spec.defaults
    lines = [f"### `{spec.name}`\n", f"{cell(spec.description)}\n" if spec.description else "",
             table(["", ""], [
                 ["paper", cell(spec.citation)],
                 ["family", f"{spec.family} ({title.lower()}), run by {code(command.format(name=spec.name))}"],
                 ["parameters", f"{count:,} ({cell(built)})" if count is not None else cell(built)],
                 ["defined in", code(f"{spec.factory.__module__}.{spec.factory.__name__}")],
             ])]
    shown = [k for k in defaults if not (spec.family == "sklearn" and k in NOT_FOR_SKLEARN)]
    lines.append("\nRegistered defaults (a flag left unset keeps them; *engine* marks the engine's own default, "
                 "which this model's registration does not change):\n")
    lines.append(table(["setting", "value", "from"],
                       [[code(k), code(value_text(defaults[k])), "registration" if k in registered else "*engine*"]
                        for k in shown]))
    options = spec.model_arguments()
    if options:
        lines.append("\nModel options (`--model_args KEY=VALUE` or a YAML file's `model_args`):\n")
        lines.append(table(["option", "default"], [[code(k), code(value_text(v))] for k, v in options.items()]))
    lines.append("\n" + results_table(results))
    doc = inspect.getdoc(spec.factory)
    if doc:
        lines.append(f'\n??? note "Docstring of `{spec.factory.__name__}`"\n\n' + text_block(doc, "    "))
    return "\n".join(lines) + "\n"


def summary_settings(results: dict[str, list[dict[str, str]]]) -> list[tuple[str, str, str]]:
    """The (scene, protocol, training sample) settings with the most models measured with their registered
    defaults (rows without a variant), most first."""
    counts: dict[tuple[str, str, str], set[str]] = {}
    for model, rows in results.items():
        for row in rows:
            if not (row.get("variant") or "").strip():
                key = (row.get("scene", ""), row.get("protocol", ""), row.get("training_sample", ""))
                counts.setdefault(key, set()).add(model)
    return sorted(counts, key=lambda k: (-len(counts[k]), k[0], k[1] != "random", k[2]))[:SUMMARY_SETTINGS]


def summary_table(specs: list[Any], results: dict[str, list[dict[str, str]]],
                  counts: dict[str, tuple[Optional[int], str]]) -> str:
    """One row per model: family, parameters, reproduced OA (with the published one, where the row gives it)
    in the most measured settings."""
    settings = summary_settings(results)
    rows = []
    for spec in specs:
        count, _ = counts[spec.name]
        found = results.get(spec.name, [])
        scores = []
        for setting in settings:
            match = [r for r in found if not (r.get("variant") or "").strip() and
                     (r.get("scene", ""), r.get("protocol", ""), r.get("training_sample", "")) == setting]
            published = (match[0].get("published_oa") or "").strip() if match else ""
            scores.append(MISSING if not match else cell(_mean_std(match[0], "oa"))
                          + (f" (published {cell(published)})" if published else ""))
        rows.append([f"[`{spec.name}`](#{anchor(spec.name)})", spec.family,
                     f"{count:,}" if count is not None else MISSING, *scores])
    return table(["model", "family", "parameters", *[f"OA (%), {cell(s)} {cell(p)} {cell(t)}"
                                                     for s, p, t in settings]], rows)


def anchor(name: str) -> str:
    """The id Python-Markdown's toc gives the heading of ``name``'s section."""
    return "".join(c for c in name.lower() if c.isalnum() or c in "-_ ").strip().replace(" ", "-")


def models_page(results_csv: Path) -> str:
    """The whole page."""
    from deephyperx.registry import get_spec, list_models

    specs = [get_spec(name) for name in list_models()]
    results = read_results(results_csv)
    counts = {spec.name: parameter_count(spec) for spec in specs}
    source = ("`docs/results/classification.csv`" if results_csv.is_file()
              else "`docs/results/classification.csv` (not written yet: every number is a dash)")
    parts = [
        "# Models\n",
        "Generated from the model registry (`deephyperx.registry.list_models()` and `get_spec(name)`) each time "
        "the site is built, so it always matches the code; `python main.py list` prints the same models. "
        f"Parameter counts are those of the model built for {COUNT_SCENE} with its registered patch size "
        f"(segmentation networks: {SEG_SCENE}); they change with the scene's bands and classes. Reproduced "
        f"numbers (mean ± std over seeds, registered defaults) and the published ones come from {source}, each "
        "row with the command that produced it and the device it ran on; a published number is the one its "
        "source reports, under the protocol the model's rows name (see each model's section and "
        "[Results](../results/index.md)).\n",
        summary_table(specs, results, counts),
    ]
    for family, (title, _) in FAMILY_TITLES.items():
        members = [s for s in specs if s.family == family]
        if members:
            parts.append(f"\n## {title}\n")
            parts += [model_section(s, results.get(s.name, []), counts[s.name]) for s in members]
    return "\n".join(parts)
