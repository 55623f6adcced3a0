"""Monitoring: the training loop reports events to a :class:`Monitor`; backends decide
what to do with them (console progress, JSON-lines files, and later visdom or TensorBoard).

A backend that fails must never stop training: :class:`Monitors` catches its errors,
prints one warning per backend and carries on.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np


class Monitor:
    """Receives training events. Every method is optional (no-op by default).

    Events, in the order a run emits them:

    - ``run_started(info)``: ``info`` holds ``run`` (a name such as ``IndianPines_hu_seed0``,
      used for visdom envs), ``scene``, ``model``, ``seed``, ``class_names``, ``config``, ``folder``.
    - ``image(name, rgb)``: an (H, W, 3) uint8 picture, e.g. the scene's RGB composite.
    - ``label_map(name, map, palette, class_names)``: e.g. ``ground_truth``, later ``prediction``.
    - ``spectra(name, wavelengths, mean, std, class_names)``: per-class mean and std, (K, B) each.
    - ``iteration(step, logs)``: after every optimisation step (``loss`` and step extras).
    - ``epoch_ended(epoch, logs)``: ``train_loss``, ``lr`` and, with validation, ``val_loss``,
      ``val_oa``, ``val_aa``, ``val_kappa``.
    - ``confusion(matrix, class_names)``: the test confusion matrix (rows = truth).
    - ``text(message)``: a line for the user.
    - ``run_ended(summary)``: final metrics; a backend flushes and saves here.
    """

    def run_started(self, info: dict[str, Any]) -> None: ...
    def image(self, name: str, rgb: np.ndarray) -> None: ...
    def iteration(self, step: int, logs: dict[str, float]) -> None: ...
    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None: ...
    def confusion(self, matrix: np.ndarray, class_names: Sequence[str]) -> None: ...
    def label_map(self, name: str, label_map: np.ndarray, palette: Sequence[tuple[int, int, int]],
                  class_names: Sequence[str]) -> None: ...
    def spectra(self, name: str, wavelengths: Optional[np.ndarray], mean: np.ndarray, std: np.ndarray,
                class_names: Sequence[str]) -> None: ...
    def text(self, message: str) -> None: ...
    def run_ended(self, summary: dict[str, Any]) -> None: ...


class Monitors(Monitor):
    """Fan events out to several monitors; a failing backend warns once and is skipped."""

    def __init__(self, monitors: Sequence[Monitor]):
        self.monitors = list(monitors)
        self._warned: set[int] = set()

    def _call(self, method: str, *args: Any) -> None:
        for monitor in self.monitors:
            try:
                getattr(monitor, method)(*args)
            except Exception as error:  # a monitor must never stop training
                if id(monitor) not in self._warned:
                    self._warned.add(id(monitor))
                    print(f"warning: monitor {type(monitor).__name__} failed ({error}); training goes on",
                          file=sys.stderr)

    def run_started(self, info): self._call("run_started", info)
    def image(self, name, rgb): self._call("image", name, rgb)
    def iteration(self, step, logs): self._call("iteration", step, logs)
    def epoch_ended(self, epoch, logs): self._call("epoch_ended", epoch, logs)
    def confusion(self, matrix, class_names): self._call("confusion", matrix, class_names)
    def label_map(self, name, label_map, palette, class_names): self._call("label_map", name, label_map, palette, class_names)
    def spectra(self, name, wavelengths, mean, std, class_names): self._call("spectra", name, wavelengths, mean, std, class_names)
    def text(self, message): self._call("text", message)
    def run_ended(self, summary): self._call("run_ended", summary)


class ConsoleMonitor(Monitor):
    """Progress on standard error: a tqdm bar over epochs on a terminal, one line per epoch
    otherwise (a bar would garble the log of a batch job)."""

    def __init__(self, total_epochs: int | None = None, stream=None, bar: bool | None = None):
        self.total_epochs = total_epochs
        self.stream = stream or sys.stderr
        self.bar_enabled = self.stream.isatty() if bar is None else bar
        self._bar = None
        self._start = time.monotonic()

    def run_started(self, info):
        if self.bar_enabled and self.total_epochs:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total_epochs, desc=str(info.get("run", "training")), unit="epoch",
                             file=self.stream, dynamic_ncols=True)

    def epoch_ended(self, epoch, logs):
        shown = {k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, (int, float))}
        if self._bar is not None:
            self._bar.n = epoch + 1
            self._bar.set_postfix(shown, refresh=True)
            return
        total = f"/{self.total_epochs}" if self.total_epochs else ""
        print(f"epoch {epoch + 1}{total} " + " ".join(f"{k}={v}" for k, v in shown.items())
              + f" ({time.monotonic() - self._start:.0f}s)", file=self.stream)

    def text(self, message):
        if self._bar is not None:
            self._bar.write(message, file=self.stream)
        else:
            print(message, file=self.stream)

    def run_ended(self, summary):
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class JsonLinesMonitor(Monitor):
    """Append every iteration and epoch record to ``metrics.jsonl`` as the run goes."""

    def __init__(self, path: str | Path, every: int = 1):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.every = max(1, every)
        self._handle = open(self.path, "a", encoding="utf-8")

    def _write(self, record: dict) -> None:
        self._handle.write(json.dumps(record) + "\n")
        self._handle.flush()

    def iteration(self, step, logs):
        if step % self.every == 0:
            self._write({"kind": "iteration", "step": step, **logs})

    def epoch_ended(self, epoch, logs):
        self._write({"kind": "epoch", "epoch": epoch, **logs})

    def run_ended(self, summary):
        self._write({"kind": "end", **{k: v for k, v in summary.items() if isinstance(v, (int, float, str))}})
        self._handle.close()


def trim_records(path: str | Path, step: int, epoch: int) -> None:
    """Drop records written after a checkpoint (iteration > ``step`` or epoch >= ``epoch``) from a
    JSON-lines log, so that a resumed run's log reads as one uninterrupted run."""
    from deephyperx.atomic import atomic_write_text

    path = Path(path)
    if not path.is_file():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut by the interruption
            continue
        if record.get("kind") == "iteration" and record.get("step", 0) > step:
            continue
        if record.get("kind") == "epoch" and record.get("epoch", 0) >= epoch:
            continue
        kept.append(line)
    atomic_write_text(path, "".join(f"{line}\n" for line in kept))
