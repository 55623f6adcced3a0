"""Report files of segmentation runs: Markdown summaries with full and eroded ground-truth scores,
colour label maps of any size (saved as plain images, one pixel per pixel), and reduced views of
big tiles for figures."""
from __future__ import annotations

from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from deephyperx.atomic import PathLike, atomic_path
from deephyperx.metrics import format_percent, format_stat
from deephyperx.reports import _table, _yaml_block, colour_map_image, runs_intro

#: Figures (map comparisons, monitor images) show tiles reduced to at most this many pixels a side.
FIGURE_SIDE = 2000


def display_step(height: int, width: int, side: int = FIGURE_SIDE) -> int:
    """Take every ``step``-th pixel so that a (height, width) map fits ``side`` pixels a side."""
    return max(1, -(-max(height, width) // side))


def save_label_png(label_map: np.ndarray, palette: Sequence[Sequence[int]], n_classes: int, path: PathLike) -> None:
    """A label map as an RGB PNG of the same size (palette colours, IGNORE black), for GIS tools and
    side-by-side viewing with the tile; written band by band into one image."""
    rgb = np.empty(label_map.shape + (3,), dtype=np.uint8)
    for row in range(0, label_map.shape[0], 1024):
        rgb[row:row + 1024] = colour_map_image(np.asarray(label_map[row:row + 1024]), palette, n_classes)
    with atomic_path(path) as tmp:
        Image.fromarray(rgb).save(tmp, format="PNG")


def _pct(value: Optional[float]) -> str:
    return format_percent(value)


def _stat(stat: Optional[dict[str, Any]]) -> str:
    return format_stat(stat)


HEADLINE = (("Overall accuracy (OA, %)", "overall_accuracy"), ("Kappa (× 100)", "kappa"),
            ("Mean F1 (%)", "mean_f1"), ("Mean IoU (mIoU, %)", "mean_iou"), ("Average accuracy (AA, %)", "average_accuracy"))


def run_markdown(title: str, metrics: dict[str, Any], config: dict[str, Any]) -> str:
    """One run: headline scores on full and eroded ground truth, per-class F1 and IoU, per-region
    scores, detection scores when asked, timing, and the resolved configuration."""
    eroded = metrics.get("eroded") or {}
    parts = [f"# {title}", "",
             "Scores on the test regions, against the full ground truth and against the eroded ground truth "
             "(class boundaries ignored within 3 pixels, the ISPRS convention).", ""]
    parts.append(_table(["metric", "full ground truth", "eroded ground truth"],
                        [[label, _pct(metrics.get(key)), _pct(eroded.get(key))] for label, key in HEADLINE]
                        + [["Test pixels", metrics.get("n_test", "n/a"), eroded.get("n_test", "n/a")]]))
    parts += ["", "## Per-class results", ""]
    eroded_rows = {row["name"]: row for row in eroded.get("per_class", [])}
    parts.append(_table(["class", "support", "F1 (%)", "IoU (%)", "eroded F1 (%)", "eroded IoU (%)"], [
        [row["name"], row["support"], _pct(row["f1"]), _pct(row["iou"]),
         _pct(eroded_rows.get(row["name"], {}).get("f1")), _pct(eroded_rows.get(row["name"], {}).get("iou"))]
        for row in metrics["per_class"]]))
    parts += ["", "Mean F1 and mIoU average the classes that have test pixels; n/a: undefined.", ""]
    regions = metrics.get("regions") or []
    if regions:
        parts += ["## Test regions", ""]
        parts.append(_table(["region", "tile", "window (rows, cols)", "pixels", "OA (%)", "mean F1 (%)", "mIoU (%)"], [
            [r["name"], r["tile"], _window_text(r["window"]), r["n_test"], _pct(r["overall_accuracy"]),
             _pct(r["mean_f1"]), _pct(r["mean_iou"])] for r in regions]))
        parts.append("")
    detection = metrics.get("detection")
    if detection:
        parts += [f"## Objects of class '{detection['class']}' (segment-before-detect)", ""]
        parts.append(_table(["precision (%)", "recall (%)", "F1 (%)", "TP", "FP", "FN", "IoU threshold"], [[
            _pct(detection["precision"]), _pct(detection["recall"]), _pct(detection["f1"]), detection["tp"],
            detection["fp"], detection["fn"], detection["iou_threshold"]]]))
        parts += ["", "Objects are connected components of the predicted class; true objects those of the "
                      "ground truth; a prediction matches a true object when their boxes overlap with IoU at or above "
                      "the threshold. Per-region CSV and GeoJSON files are in `objects/`.", ""]
    parts += ["## Timing", "", _table(["what", "value"], [
        ["epochs", metrics.get("epochs")], ["training (s)", _seconds(metrics.get("train_seconds"))],
        ["inference (s)", _seconds(metrics.get("inference_seconds"))], ["parameters", metrics.get("parameters")]]),
        "", "## Configuration", "", _yaml_block(config), ""]
    return "\n".join(parts)


def _window_text(window: Sequence[int]) -> str:
    r0, r1, c0, c1 = window
    return f"{r0}:{r1}, {c0}:{c1}"


def _seconds(value: Optional[float]) -> str:
    return "n/a" if value is None else f"{value:.1f}"


def aggregate_markdown(title: str, aggregate: dict[str, Any], commands: Optional[Sequence[str]] = None) -> str:
    """Several runs: mean ± sample std of the headline scores (full and eroded) and per-class F1/IoU."""
    eroded = aggregate.get("eroded") or {}
    parts = [f"# {title}", "", runs_intro(aggregate["n_runs"], aggregate.get("seeds")), ""]
    parts.append(_table(["metric", "full ground truth", "eroded ground truth"],
                        [[label, _stat(aggregate.get(key)), _stat(eroded.get(key))] for label, key in HEADLINE]))
    parts += ["", "## Per-class results", ""]
    eroded_rows = {row["name"]: row for row in eroded.get("per_class", [])}
    parts.append(_table(["class", "F1", "IoU", "eroded F1", "eroded IoU"], [
        [row["name"], _stat(row["f1"]), _stat(row["iou"]), _stat(eroded_rows.get(row["name"], {}).get("f1")),
         _stat(eroded_rows.get(row["name"], {}).get("iou"))] for row in aggregate["per_class"]]))
    detection = aggregate.get("detection")
    if detection:
        parts += ["", f"## Objects of class '{detection['class']}'", ""]
        parts.append(_table(["precision", "recall", "F1"], [[_stat(detection["precision"]), _stat(detection["recall"]),
                                                             _stat(detection["f1"])]]))
    if commands:
        parts += ["", "## Reproduce", "", "```bash", *commands, "```"]
    parts.append("")
    return "\n".join(parts)
