"""Report files a person opens: JSON, Markdown summaries and PNG figures.

Every file is written atomically (temporary file + rename, :mod:`deephyperx.atomic`), so a
crash never leaves a half-written report. Figures are drawn with matplotlib's object API
(``matplotlib.figure.Figure`` rendered by the Agg canvas) rather than pyplot: it needs no
display, keeps no global figure list that could leak memory over many runs, and does not
switch the backend of a caller's session (a notebook keeps its inline plots).
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.patches import Patch
from PIL import Image

from deephyperx.atomic import PathLike, atomic_path, atomic_write, atomic_write_text
from deephyperx.errors import UserError
from deephyperx.metrics import format_percent, format_stat

#: Colour of unlabelled (IGNORE) pixels in maps.
UNLABELLED_RGB = (0, 0, 0)
#: Class maps and composites smaller than this many pixels on their long side are enlarged
#: by an integer factor (nearest neighbour) so that a 145x145 scene is readable on screen.
MIN_DISPLAY_SIDE = 580
#: Maps larger than this are drawn reduced, to keep PNG files reasonable.
MAX_DISPLAY_SIDE = 4000
#: Up to this many classes, the confusion matrix cells carry their value as text.
MAX_ANNOTATED_CLASSES = 20
DPI = 100


# --------------------------------------------------------------------------- JSON

def to_plain(obj: Any) -> Any:
    """Turn numpy scalars/arrays, tuples and paths into JSON/YAML types; NaN and inf become None."""
    if isinstance(obj, dict):
        return {_plain_key(k): to_plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return to_plain(obj.tolist())
    if isinstance(obj, np.generic):
        return to_plain(obj.item())
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, Path):
        return str(obj)
    return obj


def _plain_key(key: Any) -> Any:
    """Dictionary keys JSON accepts: numpy scalars become Python scalars, paths become strings."""
    if isinstance(key, np.generic):
        return key.item()
    if isinstance(key, Path):
        return str(key)
    return key


def save_json(path: PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON (numpy types converted, NaN written as null), atomically."""
    with atomic_write(path, "w") as handle:
        json.dump(to_plain(obj), handle, indent=2, allow_nan=False)
        handle.write("\n")


def load_json(path: PathLike) -> Any:
    """Read a JSON file; a missing or malformed file is a :class:`UserError` naming it."""
    path = Path(path)
    try:
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; check the run folder") from None
    except json.JSONDecodeError as err:
        raise UserError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}); rewrite or delete it") from None


# --------------------------------------------------------------------------- figures

def _save_figure(fig: Figure, path: PathLike) -> None:
    """Render ``fig`` with Agg into a PNG at ``path``, atomically."""
    FigureCanvasAgg(fig)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=DPI, bbox_inches="tight", pad_inches=0.1)


def _row_percentages(cm: np.ndarray) -> np.ndarray:
    """Each row divided by its sum, in percent; rows without pixels stay 0."""
    sums = cm.sum(axis=1, keepdims=True).astype(np.float64)
    return np.divide(100.0 * cm, sums, out=np.zeros(cm.shape, dtype=np.float64), where=sums > 0)


def _cell_text(value: float, normalise: bool) -> str:
    """Cell label: blank for 0 (so that errors stand out), whole percent from 10 %, else one decimal."""
    if value == 0:
        return ""
    if normalise:
        return f"{value:.0f}" if value >= 9.95 else f"{value:.1f}"
    return f"{int(value)}"


def save_confusion_png(cm: np.ndarray, class_names: Sequence[str], path: PathLike, normalise: bool = True) -> None:
    """Heatmap of a confusion matrix (rows = truth); cells show row percentages or counts."""
    cm = np.asarray(cm)
    n = len(class_names)
    if cm.shape != (n, n):
        raise UserError(f"confusion figure: matrix of shape {cm.shape} for {n} class names; give one name per class")
    values = _row_percentages(cm) if normalise else cm.astype(np.float64)
    vmax = 100.0 if normalise else max(float(values.max()), 1.0)
    side = max(4.0, 0.6 * n + 2.5)  # about 0.6 inch per class keeps 16 classes legible
    fig = Figure(figsize=(side + 1.0, side))
    ax = fig.add_subplot()
    image = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04, label="% of true class" if normalise else "pixels")
    fontsize = 10 if n <= 10 else 9
    ax.set_xticks(range(n), labels=[str(c) for c in class_names], rotation=45, ha="right", fontsize=fontsize)
    ax.set_yticks(range(n), labels=[str(c) for c in class_names], fontsize=fontsize)
    ax.set_xlabel("Predicted class")
    ax.set_ylabel("True class")
    ax.set_title("Confusion matrix (row-normalised, %)" if normalise else "Confusion matrix (pixels)")
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                colour = "white" if values[i, j] > 0.6 * vmax else "black"
                ax.text(j, i, _cell_text(values[i, j], normalise), ha="center", va="center",
                        color=colour, fontsize=fontsize - 1)
    _save_figure(fig, path)


def colour_map_image(label_map: np.ndarray, palette: Sequence[Sequence[int]], n_classes: int) -> np.ndarray:
    """(H, W) class ids -> (H, W, 3) uint8 colours; IGNORE (-1) pixels are black."""
    label_map = np.asarray(label_map)
    if label_map.ndim != 2:
        raise UserError(f"map: label map has shape {label_map.shape}; expected (rows, cols)")
    if len(palette) < n_classes:
        raise UserError(f"map: {len(palette)} palette colours for {n_classes} classes; give one colour per class")
    if label_map.size and (label_map.min() < -1 or label_map.max() >= n_classes):
        raise UserError(f"map: class ids span {label_map.min()}..{label_map.max()}, expected -1..{n_classes - 1}")
    lut = np.array([tuple(c)[:3] for c in palette[:n_classes]] + [UNLABELLED_RGB], dtype=np.uint8)
    return lut[np.where(label_map < 0, n_classes, label_map)]


def _display_scale(height: int, width: int) -> float:
    """Screen pixels per map pixel: an integer enlargement for small scenes, a reduction for huge ones."""
    longest = max(height, width, 1)
    if longest < MIN_DISPLAY_SIDE:
        return float(math.ceil(MIN_DISPLAY_SIDE / longest))
    return min(1.0, MAX_DISPLAY_SIDE / longest)


def _legend_handles(palette: Sequence[Sequence[int]], class_names: Sequence[str], unlabelled: bool) -> list[Patch]:
    handles = [Patch(facecolor=np.array(palette[k][:3]) / 255.0, edgecolor="black", linewidth=0.3, label=str(name))
               for k, name in enumerate(class_names)]
    if unlabelled:
        handles.append(Patch(facecolor=np.array(UNLABELLED_RGB) / 255.0, edgecolor="grey", label="unlabelled"))
    return handles


def _draw_map(ax: Any, rgb: np.ndarray, title: Optional[str]) -> None:
    """Show an RGB map with crisp pixels and no axes."""
    ax.imshow(rgb, interpolation="nearest", resample=False)
    ax.set_axis_off()
    if title:
        ax.set_title(title)


def save_label_map_png(label_map: np.ndarray, palette: Sequence[Sequence[int]], class_names: Sequence[str],
                       path: PathLike, title: Optional[str] = None) -> None:
    """A class map in palette colours (unlabelled black) with a legend of class names."""
    rgb = colour_map_image(label_map, palette, len(class_names))
    height, width = rgb.shape[:2]
    scale = _display_scale(height, width)
    fig = Figure(figsize=(width * scale / DPI, height * scale / DPI))
    ax = fig.add_axes((0.0, 0.0, 1.0, 1.0))
    _draw_map(ax, rgb, title)
    handles = _legend_handles(palette, class_names, bool((np.asarray(label_map) < 0).any()))
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0,
              fontsize=9, frameon=False)
    _save_figure(fig, path)


def save_map_comparison_png(ground_truth: np.ndarray, prediction: np.ndarray, palette: Sequence[Sequence[int]],
                            class_names: Sequence[str], path: PathLike) -> None:
    """Ground truth and prediction side by side, with one legend for both."""
    if np.shape(ground_truth) != np.shape(prediction):
        raise UserError(f"map comparison: ground truth is {np.shape(ground_truth)} but prediction is "
                        f"{np.shape(prediction)}; predict the whole scene")
    n = len(class_names)
    gt_rgb, pred_rgb = colour_map_image(ground_truth, palette, n), colour_map_image(prediction, palette, n)
    height, width = gt_rgb.shape[:2]
    scale = _display_scale(height, width)
    panel_w, panel_h, gap = width * scale / DPI, height * scale / DPI, 0.3
    fig = Figure(figsize=(2 * panel_w + gap, panel_h))
    total_w = 2 * panel_w + gap
    left = fig.add_axes((0.0, 0.0, panel_w / total_w, 1.0))
    right = fig.add_axes(((panel_w + gap) / total_w, 0.0, panel_w / total_w, 1.0))
    _draw_map(left, gt_rgb, "Ground truth")
    _draw_map(right, pred_rgb, "Prediction")
    unlabelled = bool((np.asarray(ground_truth) < 0).any() or (np.asarray(prediction) < 0).any())
    right.legend(handles=_legend_handles(palette, class_names, unlabelled), loc="upper left",
                 bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize=9, frameon=False)
    _save_figure(fig, path)


def stretch_band(band: np.ndarray, low: float = 2.0, high: float = 98.0) -> np.ndarray:
    """Linear stretch of one band between its ``low`` and ``high`` percentiles to [0, 1];
    non-finite pixels become 0 and a constant band becomes mid-grey."""
    band = np.asarray(band, dtype=np.float64)
    finite = np.isfinite(band)
    if not finite.any():
        return np.zeros(band.shape)
    lo, hi = np.percentile(band[finite], [low, high])
    if hi <= lo:
        return np.where(finite, 0.5, 0.0)
    return np.where(finite, np.clip((band - lo) / (hi - lo), 0.0, 1.0), 0.0)


def rgb_composite(cube: np.ndarray, rgb_bands: Sequence[int]) -> np.ndarray:
    """(H, W, 3) uint8 false-colour composite, each band stretched between its 2nd and 98th percentiles."""
    if np.ndim(cube) != 3:
        raise UserError(f"RGB composite: cube has shape {np.shape(cube)}; expected (rows, cols, bands)")
    n_bands = cube.shape[2]
    if len(rgb_bands) != 3 or any(not 0 <= int(b) < n_bands for b in rgb_bands):
        raise UserError(f"RGB composite: bands {tuple(rgb_bands)} do not name 3 bands in 0..{n_bands - 1}")
    rgb = np.stack([stretch_band(cube[:, :, int(b)]) for b in rgb_bands], axis=-1)
    return np.round(rgb * 255.0).astype(np.uint8)


def save_rgb_png(cube: np.ndarray, rgb_bands: Sequence[int], path: PathLike) -> None:
    """Save :func:`rgb_composite`; small scenes are enlarged by an integer factor (nearest
    neighbour), as class maps are."""
    pixels = rgb_composite(cube, rgb_bands)
    scale = _display_scale(*pixels.shape[:2])
    if scale > 1:
        pixels = np.repeat(np.repeat(pixels, int(scale), axis=0), int(scale), axis=1)
    with atomic_path(path) as tmp:
        Image.fromarray(pixels).save(tmp, format="PNG")


# --------------------------------------------------------------------------- Markdown

def _cell(text: Any) -> str:
    """Table cell text with Markdown's column separator escaped."""
    return str(text).replace("|", "\\|")


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _yaml_block(config: dict[str, Any]) -> str:
    text = yaml.safe_dump(to_plain(config), sort_keys=False, default_flow_style=False, allow_unicode=True)
    return "```yaml\n" + text.rstrip("\n") + "\n```"


def run_summary_markdown(title: str, metrics: dict[str, Any], config: dict[str, Any],
                         extra: Optional[dict[str, Any]] = None) -> str:
    """One run: OA/AA/kappa, a per-class table and the resolved configuration, as Markdown.

    Accuracies are in percent with two decimals; kappa is given × 100 as is customary.
    """
    parts = [f"# {title}", ""]
    parts.append(_table(["metric", "value"], [
        ["Overall accuracy (OA, %)", format_percent(metrics["overall_accuracy"])],
        ["Average accuracy (AA, %)", format_percent(metrics["average_accuracy"])],
        ["Kappa (× 100)", format_percent(metrics["kappa"])],
        *([["Training pixels (+ validation)", f"{metrics['n_train']} (+ {metrics.get('n_validation', 0)})"]]
          if "n_train" in metrics else []),
        ["Test pixels", metrics.get("n_test", "n/a")],
    ]))
    if metrics.get("split_warnings"):
        parts += ["", "**The split is weak:**", "", *(f"- {line}" for line in metrics["split_warnings"])]
    if extra:
        parts += ["", _table(["detail", "value"], [[k, v] for k, v in to_plain(extra).items()])]
    parts += ["", "## Per-class results", ""]
    parts.append(_table(["class", "support", "accuracy (%)", "F1 (%)", "IoU (%)"], [
        [row["name"], row["support"], format_percent(row["accuracy"]), format_percent(row["f1"]),
         format_percent(row["iou"])]
        for row in metrics["per_class"]
    ]))
    parts += ["", "n/a: undefined, the class has no test pixels (and, for F1/IoU, is never predicted).",
              "", "## Configuration", "", _yaml_block(config), ""]
    return "\n".join(parts)


def _stat(stat: dict[str, Any]) -> str:
    return format_stat(stat)


def runs_intro(n_runs: int, seeds: Optional[Sequence[int]]) -> str:
    """The first line of an aggregate report: mean ± std over several runs, or one run's scores."""
    listed = f" (seed{'s' if len(seeds or []) > 1 else ''} {', '.join(str(s) for s in seeds)})" if seeds else ""
    if n_runs == 1:
        return f"One run{listed}, in percent (one run gives no standard deviation)."
    return f"Mean ± sample standard deviation over {n_runs} runs{listed}, in percent."


def aggregate_markdown(title: str, aggregate: dict[str, Any], class_names: Sequence[str],
                       commands: Optional[Sequence[str]] = None) -> str:
    """Several runs: mean ± sample std of OA, AA, kappa and per-class accuracy/F1, in percent."""
    per_class = aggregate["per_class"]
    if len(per_class) != len(class_names):
        raise UserError(f"aggregate report: {len(class_names)} class names for {len(per_class)} classes; "
                        "give one name per class")
    parts = [f"# {title}", "", runs_intro(aggregate["n_runs"], aggregate.get("seeds")), ""]
    parts.append(_table(["metric", "mean ± std" if aggregate["n_runs"] > 1 else "value"], [
        ["Overall accuracy (OA)", _stat(aggregate["overall_accuracy"])],
        ["Average accuracy (AA)", _stat(aggregate["average_accuracy"])],
        ["Kappa (× 100)", _stat(aggregate["kappa"])],
    ]))
    parts += ["", "## Per-class results", ""]
    parts.append(_table(["class", "accuracy", "F1", "IoU"], [
        [name, _stat(row["accuracy"]), _stat(row["f1"]), _stat(row["iou"])]
        for name, row in zip(class_names, per_class)
    ]))
    if commands:
        parts += ["", "## Reproduce", "", "```bash", *commands, "```"]
    parts.append("")
    return "\n".join(parts)


def save_markdown(path: PathLike, text: str) -> None:
    """Write a Markdown report atomically."""
    atomic_write_text(path, text)


# --------------------------------------------------------------------------- training curves, spectra, HTML

def save_curves_png(iterations: Sequence[tuple[int, float]], epochs: Sequence[dict[str, float]], path: PathLike,
                    smoothing: float = 0.9) -> None:
    """Loss per iteration (raw and exponentially smoothed), validation OA/AA/kappa and learning rate per epoch."""
    fig = Figure(figsize=(13, 3.6))
    loss_ax, val_ax, lr_ax = fig.subplots(1, 3)
    if iterations:
        steps, losses = zip(*iterations)
        smoothed, value = [], losses[0]
        for loss in losses:
            value = smoothing * value + (1 - smoothing) * loss
            smoothed.append(value)
        loss_ax.plot(steps, losses, color="0.75", linewidth=0.8, label="loss")
        loss_ax.plot(steps, smoothed, color="C0", linewidth=1.5, label=f"smoothed ({smoothing})")
        loss_ax.legend(fontsize=8)
    loss_ax.set(title="training loss", xlabel="iteration")
    numbered = list(enumerate(epochs, start=1))
    for key, label in (("val_oa", "OA"), ("val_aa", "AA"), ("val_kappa", "kappa")):
        points = [(e, r[key]) for e, r in numbered if r.get(key) is not None and np.isfinite(r[key])]
        if points:
            val_ax.plot(*zip(*points), marker=".", label=label)
    if val_ax.lines:
        val_ax.legend(fontsize=8)
    val_ax.set(title="validation", xlabel="epoch", ylim=(0, 1.02))
    rates = [(e, r["lr"]) for e, r in numbered if "lr" in r]
    if rates:
        lr_ax.plot(*zip(*rates), marker=".", color="C3")
        lr_ax.set_yscale("log")
    lr_ax.set(title="learning rate", xlabel="epoch")
    fig.tight_layout()
    _save_figure(fig, path)


def spectra_figure(wavelengths: Optional[Sequence[float]], mean: np.ndarray, std: np.ndarray,
                   class_names: Sequence[str], palette: Sequence[Sequence[int]],
                   title: str = "class spectra (mean ± std)") -> Figure:
    """Each class's mean spectrum with a ± std band, in the class's palette colour."""
    mean, std = np.asarray(mean, float), np.asarray(std, float)
    x = np.asarray(wavelengths, float) if wavelengths is not None else np.arange(mean.shape[1])
    fig = Figure(figsize=(10, 5))
    ax = fig.subplots()
    for k, name in enumerate(class_names):
        if not np.isfinite(mean[k]).any():
            continue
        colour = np.asarray(palette[k][:3]) / 255.0
        ax.plot(x, mean[k], color=colour, linewidth=1.2, label=name)
        ax.fill_between(x, mean[k] - std[k], mean[k] + std[k], color=colour, alpha=0.15, linewidth=0)
    ax.set(title=title, xlabel="wavelength (nm)" if wavelengths is not None else "band", ylabel="value")
    ax.legend(fontsize=7, ncol=2, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def save_spectra_png(wavelengths: Optional[Sequence[float]], mean: np.ndarray, std: np.ndarray,
                     class_names: Sequence[str], palette: Sequence[Sequence[int]], path: PathLike) -> None:
    """Save :func:`spectra_figure` as a PNG."""
    _save_figure(spectra_figure(wavelengths, mean, std, class_names, palette), path)


def figure_pixels(fig: Figure) -> np.ndarray:
    """Render a figure to an (H, W, 3) uint8 array (for image-only backends)."""
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def run_report_html(title: str, metrics: dict[str, Any], images: Sequence[tuple[str, str]]) -> str:
    """A self-contained HTML page: headline metrics, per-class table and the run's figures
    (``images`` are (caption, file name relative to the page))."""
    import html

    def row(cells: Sequence[Any], tag: str = "td") -> str:
        return "<tr>" + "".join(f"<{tag}>{html.escape(str(c))}</{tag}>" for c in cells) + "</tr>"

    def pct(value: Optional[float]) -> str:
        return "n/a" if value is None else f"{100 * value:.2f}"

    headline = [row(["metric", "value (%)"], "th")] + [
        row([label, pct(metrics.get(key))]) for label, key in
        (("overall accuracy (OA)", "overall_accuracy"), ("average accuracy (AA)", "average_accuracy"),
         ("kappa (x100)", "kappa"))]
    classes = [row(["class", "support", "accuracy", "precision", "F1", "IoU"], "th")] + [
        row([c["name"], c["support"], pct(c["accuracy"]), pct(c["precision"]), pct(c["f1"]), pct(c["iou"])])
        for c in metrics.get("per_class", [])]
    figures = "\n".join(f'<figure><img src="{html.escape(src)}" alt="{html.escape(caption)}">'
                        f"<figcaption>{html.escape(caption)}</figcaption></figure>" for caption, src in images)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%;border:1px solid #eee}}figure{{margin:1.5em 0}}</style></head>
<body><h1>{html.escape(title)}</h1>
<table>{"".join(headline)}</table>
<h2>Per class</h2><table>{"".join(classes)}</table>
<h2>Figures</h2>
{figures}
</body></html>
"""
