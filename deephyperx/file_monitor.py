"""File reports for when no visdom server runs: figures updated as the run goes and a final
HTML page, all in the run's folder (written atomically, so a reader never sees half a file)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
from PIL import Image

from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.monitor import Monitor
from deephyperx.reports import run_report_html, save_curves_png, save_label_map_png, save_spectra_png


class FileMonitor(Monitor):
    """Write ``curves.png`` (loss, validation metrics, learning rate) at most every
    ``min_interval`` seconds and at the end, the scene's ``rgb.png`` / ``ground_truth.png`` /
    ``spectra.png`` when shown, and ``report.html`` when the run ends. A resumed run reads the
    curves recorded so far back from ``metrics.jsonl``."""

    def __init__(self, folder: str | Path, min_interval: float = 10.0):
        self.folder = Path(folder)
        self.min_interval = min_interval
        self.iterations: list[tuple[int, float]] = []
        self.epochs: list[dict[str, float]] = []
        self._last_drawn = -float("inf")
        self._title = "run"
        self._palette: Optional[Sequence] = None
        self._read_log(self.folder / "metrics.jsonl")

    def _read_log(self, path: Path) -> None:
        if not path.is_file():
            return
        for line in path.read_text(encoding="utf-8").splitlines():
            record = json.loads(line)
            if record.get("kind") == "iteration":
                self.iterations.append((record["step"], record["loss"]))
            elif record.get("kind") == "epoch":
                self.epochs.append({k: v for k, v in record.items() if k not in ("kind", "epoch")})

    def run_started(self, info: dict[str, Any]) -> None:
        self._title = f"{info.get('model')} on {info.get('scene')}, seed {info.get('seed')}"

    def image(self, name: str, rgb: np.ndarray) -> None:
        with atomic_path(self.folder / f"{name}.png") as tmp:
            Image.fromarray(np.asarray(rgb, dtype=np.uint8)).save(tmp, format="PNG")

    def label_map(self, name, label_map, palette, class_names) -> None:
        self._palette = palette
        if name == "ground_truth":  # the prediction is drawn by the run's report beside the ground truth
            save_label_map_png(label_map, palette, class_names, self.folder / "ground_truth.png", title="ground truth")

    def spectra(self, name, wavelengths, mean, std, class_names) -> None:
        from deephyperx.scene import default_palette

        palette = self._palette or default_palette(len(class_names))
        save_spectra_png(wavelengths, mean, std, class_names, palette, self.folder / f"{name}.png")

    def iteration(self, step: int, logs: dict[str, float]) -> None:
        self.iterations.append((step, float(logs["loss"])))

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        self.epochs.append(dict(logs))
        if time.monotonic() - self._last_drawn >= self.min_interval:
            self._draw_curves()

    def _draw_curves(self) -> None:
        save_curves_png(self.iterations, self.epochs, self.folder / "curves.png")
        self._last_drawn = time.monotonic()

    def run_ended(self, summary: dict[str, Any]) -> None:
        if self.epochs:
            self._draw_curves()
        candidates = [("RGB composite", "rgb.png"), ("ground truth and prediction", "map.png"),
                      ("prediction of every pixel", "map_full.png"), ("confusion matrix", "confusion.png"),
                      ("training curves", "curves.png"), ("class spectra", "class_spectra.png")]
        images = [(caption, name) for caption, name in candidates if (self.folder / name).is_file()]
        atomic_write_text(self.folder / "report.html", run_report_html(self._title, summary, images))
