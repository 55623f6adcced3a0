"""TensorBoard backend (DeepHyperX users asked for it): scalars, maps and spectra as event files.

Available when the ``tensorboard`` package is installed; ``python main.py --tensorboard DIR``
writes one sub-folder per run, to be watched with ``tensorboard --logdir DIR``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from deephyperx.errors import UserError
from deephyperx.monitor import Monitor


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


class TensorBoardMonitor(Monitor):
    """Write training events under ``<logdir>/<run name>/``."""

    def __init__(self, logdir: str | Path):
        if not tensorboard_available():
            raise UserError("--tensorboard needs the tensorboard package: pip install tensorboard")
        self.logdir = Path(logdir)
        self.writer = None
        self._palette = None

    def run_started(self, info: dict[str, Any]) -> None:
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(self.logdir / str(info.get("run", "run"))))
        self.writer.add_text("config", "\n".join(f"    {k}: {v}" for k, v in sorted(info.get("config", {}).items())))

    def image(self, name: str, rgb: np.ndarray) -> None:
        self.writer.add_image(name, np.asarray(rgb, dtype=np.uint8), dataformats="HWC")

    def label_map(self, name, label_map, palette, class_names) -> None:
        from deephyperx.reports import colour_map_image

        self._palette = palette
        self.writer.add_image(name, colour_map_image(label_map, palette, len(class_names)), dataformats="HWC")

    def spectra(self, name, wavelengths, mean, std, class_names) -> None:
        from deephyperx.reports import figure_pixels, spectra_figure
        from deephyperx.scene import default_palette

        palette = self._palette or default_palette(len(class_names))
        pixels = figure_pixels(spectra_figure(wavelengths, mean, std, class_names, palette))
        self.writer.add_image(name, pixels, dataformats="HWC")

    def iteration(self, step: int, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            self.writer.add_scalar(f"iteration/{key}", value, step)

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        for key, value in logs.items():
            if value is not None and np.isfinite(value):
                self.writer.add_scalar(f"epoch/{key}", value, epoch + 1)

    def confusion(self, matrix: np.ndarray, class_names) -> None:
        rows = ["| truth \\ predicted | " + " | ".join(class_names) + " |", "|---" * (len(class_names) + 1) + "|"]
        rows += [f"| {name} | " + " | ".join(str(int(v)) for v in row) + " |" for name, row in zip(class_names, matrix)]
        self.writer.add_text("confusion_matrix", "\n".join(rows))

    def text(self, message: str) -> None:
        self.writer.add_text("log", message)

    def run_ended(self, summary: dict[str, Any]) -> None:
        for key in ("overall_accuracy", "average_accuracy", "kappa"):
            if summary.get(key) is not None:
                self.writer.add_scalar(f"test/{key}", summary[key], 0)
        self.writer.close()
