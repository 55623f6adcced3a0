"""Progress of long work, with the time left.

On a terminal a tqdm bar; in a log file (standard error redirected, a batch job) a plain line every
``DEEPHYPERX_PROGRESS_SECONDS`` seconds (default 30; 0: a line at every step), since a bar's carriage
returns garble a log. Every line names its run (``[hu IndianPines seed 0]``) when it belongs to one.

    with Progress(total=5000, what="mapping the scene", label="hu IndianPines seed 0") as progress:
        for batch in ...:
            progress.update(len(batch))
"""
from __future__ import annotations

import math
import os
import sys
import time
from typing import Any, Callable, Optional, TextIO

from deephyperx.errors import UserError

#: The environment variable setting the seconds between two progress lines in a log file.
PROGRESS_SECONDS = "DEEPHYPERX_PROGRESS_SECONDS"
DEFAULT_SECONDS = 30.0

#: ``progress(done, total)``: how far a loop is, in its own units (pixels, patches, steps).
ProgressCallback = Callable[[int, int], None]


def line_seconds() -> float:
    """Seconds between two progress lines in a log file: ``$DEEPHYPERX_PROGRESS_SECONDS`` or 30."""
    text = os.environ.get(PROGRESS_SECONDS)
    if text is None or not text.strip():
        return DEFAULT_SECONDS
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{PROGRESS_SECONDS}={text!r}: give the seconds between two progress lines, "
                        "a number of at least 0 (e.g. 30), or unset it")
    return value


def format_duration(seconds: Optional[float]) -> str:
    """A compact duration: ``45s``, ``2m10s``, ``1h05m``, ``3d04h`` (``?`` when unknown)."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    if seconds < 86400:
        return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"
    return f"{seconds // 86400}d{seconds % 86400 // 3600:02d}h"


def rough_duration(seconds: float) -> str:
    """A duration in words for estimates: ``40 s``, ``46 min``, ``3 h 05 min``, ``2 days 4 h``."""
    if seconds < 0.5:
        return "under a second"
    if seconds < 90:
        return f"{round(seconds)} s"
    minutes = round(seconds / 60)
    if minutes < 90:
        return f"{minutes} min"
    if minutes < 48 * 60:
        return f"{minutes // 60} h {minutes % 60:02d} min"
    hours = round(seconds / 3600)
    return f"{hours // 24} days {hours % 24} h"


def run_label(model: Any, scene: Any, seed: Any = None) -> str:
    """How log lines name a run: ``hu IndianPines seed 0``."""
    return f"{model} {scene}" + (f" seed {seed}" if seed is not None else "")


def time_left(elapsed: float, done: float, total: float) -> Optional[float]:
    """Seconds left at the pace so far (None before any progress)."""
    if done <= 0 or elapsed <= 0:
        return None
    return elapsed / done * max(0.0, total - done)


class Progress:
    """How far a loop of ``total`` units is: a tqdm bar on a terminal, else a line every
    :func:`line_seconds` (and none for work that ends sooner). Call :meth:`update` (units done since
    the last call) or :meth:`set` (units done so far), and :meth:`close` at the end (or use ``with``)."""

    def __init__(self, total: int, what: str, label: str = "", unit: str = "", initial: int = 0,
                 stream: Optional[TextIO] = None, bar: Optional[bool] = None, seconds: Optional[float] = None):
        self.total, self.what, self.label, self.unit = int(total), what, label, unit
        self.stream = stream or sys.stderr
        self.seconds = line_seconds() if seconds is None else seconds
        self.done = self.initial = int(initial)
        self.note = ""
        self._started = self._last_line = time.monotonic()
        self._bar = None
        if is_terminal(self.stream) if bar is None else bar:
            from tqdm import tqdm

            self._bar = tqdm(total=self.total, initial=self.initial, desc=self.prefix() + what, unit=unit or "it",
                             unit_scale=bool(unit), file=self.stream, dynamic_ncols=True, leave=False)

    def prefix(self) -> str:
        return f"[{self.label}] " if self.label else ""

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def update(self, n: int = 1, note: Optional[str] = None) -> None:
        self.set(self.done + int(n), note)

    def set(self, done: int, note: Optional[str] = None) -> None:
        """Record that ``done`` units are done (a note, e.g. the current step, goes with it)."""
        step, self.done = int(done) - self.done, int(done)
        if note is not None:
            self.note = note
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(step)
            return
        now = time.monotonic()
        if now - self._last_line >= self.seconds and self.done < self.total:
            self._last_line = now
            print(self.line(), file=self.stream, flush=True)

    def eta(self) -> Optional[float]:
        """Seconds left at the pace since the start."""
        return time_left(time.monotonic() - self._started, self.done - self.initial, self.total - self.initial)

    def line(self) -> str:
        """``[label] what 1,234/5,000 px (25%), step ..., 1m02s so far, ETA 3m06s``."""
        unit = f" {self.unit}" if self.unit else ""
        share = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        note = f", {self.note}" if self.note else ""
        return (f"{self.prefix()}{self.what} {self.done:,}/{self.total:,}{unit}{share}{note}, "
                f"{format_duration(time.monotonic() - self._started)} so far, ETA {format_duration(self.eta())}")

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def is_terminal(stream: Any) -> bool:
    """Whether ``stream`` is a terminal (a bar there) rather than a file or a pipe (lines there)."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or file-like stream without a terminal
        return False
