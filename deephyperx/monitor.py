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

from deephyperx.progress import (Progress, format_duration, is_terminal, line_seconds, rough_duration, run_label,
                                 time_left)


class Monitor:
    """Receives training events. Every method is optional (no-op by default).

    Events, in the order a run emits them:

    - ``run_started(info)``: ``info`` holds ``run`` (a name such as ``IndianPines_hu_seed0``,
      used for visdom envs), ``scene``, ``model``, ``seed``, ``class_names``, ``config``, ``folder``.
    - ``image(name, rgb)``: an (H, W, 3) uint8 picture, e.g. the scene's RGB composite.
    - ``label_map(name, map, palette, class_names)``: e.g. ``ground_truth``, later ``prediction``.
    - ``spectra(name, wavelengths, mean, std, class_names)``: per-class mean and std, (K, B) each.
    - ``training_started(plan)``: before the first epoch a training runs here; ``plan`` holds
      ``epochs``, ``start_epoch`` (above 0 when resumed), ``batches`` (a rank's batches an epoch)
      and ``batch_size``.
    - ``iteration(step, logs)``: after every optimisation step (``loss`` and step extras).
    - ``epoch_ended(epoch, logs)``: ``train_loss``, ``lr`` and, with validation, ``val_loss``,
      ``val_oa``, ``val_aa``, ``val_kappa``.
    - ``confusion(matrix, class_names)``: the test confusion matrix (rows = truth).
    - ``text(message)``: a line for the user.
    - ``progress(what, done, total, note, unit)``: how far a long step other than training is
      (mapping the scene, predicting test regions, the realism report), counted in ``unit``
      (``px``, ``windows``, ``steps``), with an optional ``note`` (e.g. the current region).
    - ``run_ended(summary)``: final metrics; a backend flushes and saves here.
    """

    def run_started(self, info: dict[str, Any]) -> None: ...
    def image(self, name: str, rgb: np.ndarray) -> None: ...
    def training_started(self, plan: dict[str, Any]) -> None: ...
    def iteration(self, step: int, logs: dict[str, float]) -> None: ...
    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None: ...
    def confusion(self, matrix: np.ndarray, class_names: Sequence[str]) -> None: ...
    def label_map(self, name: str, label_map: np.ndarray, palette: Sequence[tuple[int, int, int]],
                  class_names: Sequence[str]) -> None: ...
    def spectra(self, name: str, wavelengths: Optional[np.ndarray], mean: np.ndarray, std: np.ndarray,
                class_names: Sequence[str]) -> None: ...
    def text(self, message: str) -> None: ...
    def progress(self, what: str, done: int, total: int, note: Optional[str] = None, unit: str = "") -> None: ...
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
    def training_started(self, plan): self._call("training_started", plan)
    def iteration(self, step, logs): self._call("iteration", step, logs)
    def epoch_ended(self, epoch, logs): self._call("epoch_ended", epoch, logs)
    def confusion(self, matrix, class_names): self._call("confusion", matrix, class_names)
    def label_map(self, name, label_map, palette, class_names): self._call("label_map", name, label_map, palette, class_names)
    def spectra(self, name, wavelengths, mean, std, class_names): self._call("spectra", name, wavelengths, mean, std, class_names)
    def text(self, message): self._call("text", message)
    def progress(self, what, done, total, note=None, unit=""): self._call("progress", what, done, total, note, unit)
    def run_ended(self, summary): self._call("run_ended", summary)


class ConsoleMonitor(Monitor):
    """Progress on standard error, every line naming its run (``[hu IndianPines seed 0]``): the plan
    of the training before it starts (epochs x batches, seeds), an estimate of its length once the
    first epoch is timed, then a tqdm bar over epochs on a terminal, or one line per epoch with the
    time left otherwise (a bar would garble the log of a batch job); long epochs and long steps
    (:meth:`progress`) add a line every :func:`~deephyperx.progress.line_seconds` in a log.

    ``seeds`` is ``(position, count)``: this seed is the position-th of the count seeds the command
    trains (the estimate covers those left)."""

    def __init__(self, total_epochs: int | None = None, stream=None, bar: bool | None = None,
                 seeds: tuple[int, int] = (1, 1), seconds: float | None = None):
        self.total_epochs = total_epochs
        self.stream = stream or sys.stderr
        self.bar_enabled = is_terminal(self.stream) if bar is None else bar
        self.seeds = seeds
        self.seconds = line_seconds() if seconds is None else seconds
        self.label, self.what, self.run_name = "", "training", "training"
        self._bar = None
        self._start = time.monotonic()
        self._plan: dict[str, Any] = {}
        self._trained_from: Optional[int] = None  # the epoch this process's training started at
        self._trained_since = self._start
        self._ended: list[float] = []  # when each epoch of this process ended
        self._batch = 0  # batches done in the current epoch
        self._last_line = self._start
        self._steps: dict[str, Progress] = {}

    def _say(self, message: str) -> None:
        line = (f"[{self.label}] " if self.label else "") + message
        if self.bar_enabled:  # above any bar on the terminal
            from tqdm import tqdm

            tqdm.write(line, file=self.stream)
        else:
            print(line, file=self.stream, flush=True)

    def run_started(self, info):
        named = "model" in info and "scene" in info
        if named:
            self.label = run_label(info["model"], info["scene"], info.get("seed"))
            self.what = f"{info['model']} on {info['scene']}"
        self.run_name = str(info.get("run") or self.label or "training")
        if named and not self.total_epochs:  # a model fitted in one go (scikit-learn): its plan in one line
            position, count = self.seeds
            self._say(f"{self.what}: one fit a seed" + (f", seed {position} of {count}" if count > 1 else ""))

    def training_started(self, plan):
        self._plan = dict(plan)
        epochs, start = int(plan.get("epochs") or 0), int(plan.get("start_epoch") or 0)
        self._trained_from, self._trained_since = start, time.monotonic()
        position, count = self.seeds
        batches = plan.get("batches")
        shape = f"{epochs} epoch{'s' if epochs != 1 else ''}" + (
            f" x {batches} batch{'es' if batches != 1 else ''} of {plan.get('batch_size')}" if batches else "")
        seeds = f", {count} seeds (this is seed {position} of {count})" if count > 1 else ", 1 seed"
        resumed = f"; resuming after epoch {start}, {epochs - start} left" if start else ""
        self._say(f"{self.what}: {shape} a seed{seeds}{resumed}")
        if self.bar_enabled and epochs:
            self._open_bar(initial=start)

    def _open_bar(self, initial: int = 0) -> None:
        from tqdm import tqdm

        if self._bar is None:
            desc = f"[{self.label}]" if self.label else self.run_name
            self._bar = tqdm(total=self.total_epochs, initial=initial, desc=desc, unit="epoch", file=self.stream,
                             dynamic_ncols=True)

    def iteration(self, step, logs):
        """Within a long epoch, a line every so often (in a log) or the batch on the bar."""
        self._batch += 1
        batches = self._plan.get("batches")
        now = time.monotonic()
        if not batches or now - self._last_line < max(self.seconds, 0.5 if self._bar is not None else 0.0):
            return
        self._last_line = now
        where = f"batch {self._batch}/{batches}"
        if self._bar is not None:
            self._bar.set_postfix_str(where, refresh=True)
            return
        epoch = (self._trained_from or 0) + len(self._ended) + 1
        epoch_started = self._ended[-1] if self._ended else self._trained_since
        left = time_left(now - epoch_started, self._batch, batches)
        self._say(f"epoch {epoch}{self._of_total()} {where}, ETA of the epoch {format_duration(left)}")

    def _of_total(self) -> str:
        return f"/{self.total_epochs}" if self.total_epochs else ""

    def epoch_ended(self, epoch, logs):
        now = time.monotonic()
        if self._trained_from is None:  # no plan was announced: time from the first epoch seen
            self._trained_from, self._trained_since = epoch, self._start
        self._ended.append(now)
        self._batch, self._last_line = 0, now
        done = epoch + 1 - self._trained_from
        left = time_left(now - self._trained_since, done, (self.total_epochs or 0) - self._trained_from) \
            if self.total_epochs else None
        if len(self._ended) == 1 and self.total_epochs and self._plan:
            self._estimate(now - self._trained_since, epoch)
        shown = {k: f"{v:.4g}" for k, v in logs.items() if isinstance(v, (int, float))}
        if self.bar_enabled:
            self._open_bar()
            self._bar.n = epoch + 1
            self._bar.set_postfix(shown, refresh=True)
            if self.total_epochs and epoch + 1 >= self.total_epochs:  # trained: the bar's line stays
                self._bar.close()
                self._bar = None
            return
        eta = f" ETA {format_duration(left)}" if left is not None and epoch + 1 < (self.total_epochs or 0) else ""
        self._say(f"epoch {epoch + 1}{self._of_total()} " + " ".join(f"{k}={v}" for k, v in shown.items())
                  + f" ({format_duration(now - self._start)}){eta}")

    def _estimate(self, first: float, epoch: int) -> None:
        """Once the first epoch is timed: the seed's length, and that of the seeds left."""
        total = int(self.total_epochs or 0)
        position, count = self.seeds
        if epoch + 1 >= total and position >= count:  # nothing left to estimate
            return
        seed = first * total
        text = f"epoch {epoch + 1} took {rough_duration(first)}: about {rough_duration(seed)} a seed"
        if epoch > 0:
            text += f" ({rough_duration(first * (total - epoch - 1))} left of this one)"
        if count - position > 0:
            rest = first * (total - epoch - 1) + seed * (count - position)
            text += f", about {rough_duration(rest)} until the last of the {count} seeds ends"
        self._say(text)

    def text(self, message):
        self._say(message)

    def progress(self, what, done, total, note=None, unit=""):
        step = self._steps.get(what)
        if step is None:
            step = self._steps[what] = Progress(total, what, self.label, unit=unit, stream=self.stream,
                                                bar=self.bar_enabled, seconds=self.seconds)
        step.set(done, note)
        if done >= total:
            step.close()
            del self._steps[what]

    def run_ended(self, summary):
        for step in self._steps.values():
            step.close()
        self._steps.clear()
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
