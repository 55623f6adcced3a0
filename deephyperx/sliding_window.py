"""Sliding-window inference over a tile of any size, with memory bounded by one row band.

A dense model sees ``window`` x ``window`` crops taken every ``stride`` pixels; where crops
overlap, their logits are summed and divided by the number of crops that saw the pixel
(averaging logits, as in Audebert et al., ACCV 2016). Windows at the right and bottom borders
are moved back inside the tile, so every window is whole; a tile smaller than the window is
mirrored up to the window's size.

Memory: windows are processed one *window row* at a time. After a window row, the pixels above
the next window row's first line will never be seen again, so their averaged logits are final:
they are turned into labels (and optionally a class probability) and dropped. Only one band of
``n_classes x window x width`` logits, one strip of input rows and the label output are ever held;
the tile itself is read strip by strip through ``read_window``, so a memory-mapped raster stays
on disk.
"""
from __future__ import annotations

from typing import Callable, Iterator, Optional, Sequence

import numpy as np
import torch
from torch import nn

from deephyperx.errors import UserError
from deephyperx.steps import logits_of

#: ``read_window(row0, row1, col0, col1)`` -> one (rows, cols, channels) float array per model input.
WindowReader = Callable[[int, int, int, int], Sequence[np.ndarray]]


def window_starts(length: int, window: int, stride: int) -> np.ndarray:
    """First index of every window along an axis of ``length`` pixels: every ``stride`` pixels,
    plus one window flush with the end so the last pixels are covered (a single window at 0 when
    the axis is shorter than the window)."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, stride, dtype=np.int64)
    if starts[-1] != length - window:
        starts = np.append(starts, length - window)
    return starts


def coverage(length: int, window: int, starts: np.ndarray) -> np.ndarray:
    """How many windows cover each pixel of an axis (at least 1 everywhere)."""
    counts = np.zeros(max(length, window) + 1, dtype=np.int64)
    np.add.at(counts, starts, 1)
    np.add.at(counts, starts + window, -1)
    return np.cumsum(counts)[:max(length, window)]


def check_window(window: int, stride: int) -> None:
    """Refuse a window or stride that cannot tile: stride must be in 1..window."""
    if window < 1:
        raise UserError(f"sliding window {window} must be at least 1 pixel")
    if not 1 <= stride <= window:
        raise UserError(f"--stride {stride} must be between 1 and the window size {window} "
                        "(a larger stride would leave pixels unseen)")


def _pad_strip(strip: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Mirror a (h, w, C) strip up to (rows, cols, C) when the tile is smaller than the window."""
    extra_r, extra_c = rows - strip.shape[0], cols - strip.shape[1]
    if extra_r <= 0 and extra_c <= 0:
        return strip
    mode = "reflect" if min(strip.shape[:2]) > 1 else "edge"
    return np.pad(strip, ((0, max(extra_r, 0)), (0, max(extra_c, 0)), (0, 0)), mode=mode)


def _read_strip(read_window: WindowReader, row: int, window: int, shape: tuple[int, int]) -> list[np.ndarray]:
    """The input rows [row, row + window) of the whole width, float32, padded to the window."""
    height, width = shape
    strips = read_window(row, min(row + window, height), 0, width)
    out = []
    for strip in strips:
        strip = np.asarray(strip, dtype=np.float32)
        if strip.ndim == 2:
            strip = strip[..., None]
        out.append(_pad_strip(strip, window, max(width, window)))
    return out


@torch.no_grad()
def _window_row_logits(model: nn.Module, strips: list[np.ndarray], col_starts: np.ndarray, window: int,
                       batch_size: int, device: torch.device, band: np.ndarray) -> None:
    """Add the logits of every window of one window row into ``band`` (K, window, width)."""
    for first in range(0, len(col_starts), batch_size):
        cols = col_starts[first:first + batch_size]
        inputs = [torch.from_numpy(np.ascontiguousarray(
            np.stack([s[:, c:c + window] for c in cols]).transpose(0, 3, 1, 2))).to(device) for s in strips]
        logits = logits_of(model(*inputs))
        if logits.shape[1] != band.shape[0] or tuple(logits.shape[2:]) != (window, window):
            raise ValueError(f"the model returned logits of shape {tuple(logits.shape)} for {window}x{window} "
                             f"windows; expected (N, {band.shape[0]}, {window}, {window})")
        logits = logits.float().cpu().numpy()
        for i, c in enumerate(cols):
            band[:, :, c:c + window] += logits[i]


def averaged_logit_bands(model: nn.Module, read_window: WindowReader, shape: tuple[int, int], n_classes: int,
                         window: int, stride: int, batch_size: int,
                         device: torch.device) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(row0, logits)`` with ``logits`` (K, rows, width) the final averaged logits of tile
    rows ``row0 .. row0 + rows``, top to bottom; only one band of logits is held at a time."""
    check_window(window, stride)
    height, width = shape
    padded_w = max(width, window)
    row_starts, col_starts = window_starts(height, window, stride), window_starts(width, window, stride)
    row_count = coverage(height, window, row_starts).astype(np.float32)
    col_count = coverage(width, window, col_starts)[:width].astype(np.float32)
    band = np.zeros((n_classes, window, padded_w), dtype=np.float32)
    model.eval()
    for i, row in enumerate(row_starts):
        strips = _read_strip(read_window, int(row), window, shape)
        _window_row_logits(model, strips, col_starts, window, batch_size, device, band)
        done = int(row_starts[i + 1] - row) if i + 1 < len(row_starts) else window
        rows = min(done, height - int(row))
        counts = row_count[row:row + rows, None] * col_count[None, :]
        yield int(row), band[:, :rows, :width] / counts
        band[:, :window - done] = band[:, done:]
        band[:, window - done:] = 0.0


def predict_tile(model: nn.Module, read_window: WindowReader, shape: tuple[int, int], n_classes: int,
                 window: int, stride: int, batch_size: int, device: torch.device,
                 probabilities: Optional[np.ndarray] = None, probability_class: Optional[int] = None,
                 out: Optional[np.ndarray] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """The (H, W) class map of a tile of ``shape`` by sliding ``window`` x ``window`` crops every
    ``stride`` pixels and averaging overlapping logits.

    ``read_window(row0, row1, col0, col1)`` returns the model's inputs (normalised) for that part
    of the tile. With ``probabilities`` (an (H, W) float array, e.g. ``numpy.lib.format.open_memmap``
    on disk) the softmax probability of class ``probability_class`` is written there too (the score
    of detected objects). ``out`` may be a preallocated (H, W) integer array (e.g. int16 or a memmap).
    ``progress(done, total)`` hears of the pixels labelled after each window row.
    """
    height, width = shape
    labels = np.empty((height, width), dtype=np.int64) if out is None else out
    if labels.shape != (height, width):
        raise ValueError(f"out has shape {labels.shape}, expected {(height, width)}")
    if probabilities is not None:
        if probability_class is None or not 0 <= probability_class < n_classes:
            raise ValueError(f"probability_class {probability_class} must be in 0..{n_classes - 1}")
        if probabilities.shape != (height, width):
            raise ValueError(f"probabilities has shape {probabilities.shape}, expected {(height, width)}")
    for row, logits in averaged_logit_bands(model, read_window, shape, n_classes, window, stride, batch_size, device):
        rows = logits.shape[1]
        labels[row:row + rows] = logits.argmax(0)
        if probabilities is not None:
            shifted = np.exp(logits - logits.max(0, keepdims=True))
            probabilities[row:row + rows] = shifted[probability_class] / shifted.sum(0)
        if progress is not None:
            progress((row + rows) * width, height * width)
    return labels


def array_reader(*rasters: np.ndarray) -> WindowReader:
    """A :data:`WindowReader` over in-memory or memory-mapped (H, W, C) arrays (C optional)."""
    def read(row0: int, row1: int, col0: int, col1: int) -> list[np.ndarray]:
        return [np.asarray(r[row0:row1, col0:col1], dtype=np.float32) for r in rasters]
    return read
