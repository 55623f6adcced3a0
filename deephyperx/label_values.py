"""Label rasters as the engine reads them: class ids 0..K-1, unlabelled pixels :data:`IGNORE`.

Label-file values (Salinas-A's 1, 10..14; 0 for unlabelled) become contiguous class ids in the order
of the class values; values declared unlabelled become :data:`IGNORE`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from deephyperx.errors import UserError

#: Internal label of unlabelled or ignored pixels. Classes are numbered 0..K-1.
IGNORE = -1

PathLike = Union[str, Path]
RGB = tuple[int, int, int]


def check_rgb_bands(rgb_bands: Sequence[int], n_bands: Optional[int], where: str) -> RGB:
    """Three band indices, each inside the cube when its band count is known."""
    bands = tuple(int(b) for b in rgb_bands)
    if len(bands) != 3:
        raise UserError(f"{where}: rgb_bands must be three band indices, got {list(rgb_bands)}")
    if min(bands) < 0 or (n_bands is not None and max(bands) >= n_bands):
        raise UserError(f"{where}: rgb_bands {list(bands)} must lie in 0..{(n_bands or 1) - 1}")
    return bands  # type: ignore[return-value]


def label_map(array: np.ndarray, source: PathLike) -> np.ndarray:
    """A (H, W) label raster from what a reader returned ((H, W) or (H, W, 1))."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise UserError(f"{source}: labels have shape {array.shape}; give a single-band (rows, cols) label raster")
    return array


def remap_labels(raw: np.ndarray, values: Sequence[int], ignored: Sequence[int], source: str) -> np.ndarray:
    """Map label-file values to class ids 0..K-1 (in the order of ``values``) and unlabelled to IGNORE."""
    raw = integer_labels(np.asarray(raw), source)
    present, inverse = np.unique(raw, return_inverse=True)
    index = {int(v): k for k, v in enumerate(values)}
    unlabelled = {int(v) for v in ignored}
    unknown = [int(v) for v in present if int(v) not in index and int(v) not in unlabelled]
    if unknown:
        raise UserError(
            f"{source}: label values {unknown} are neither class values {list(values)} nor unlabelled "
            f"values {list(ignored)}; fix the label file or declare them (class names / ignored_labels)"
        )
    lookup = np.array([index.get(int(v), IGNORE) for v in present], dtype=np.int64)
    return lookup[inverse.reshape(-1)].reshape(raw.shape)


def integer_labels(raw: np.ndarray, source: str) -> np.ndarray:
    """Labels as int64; float label files must hold whole, finite numbers."""
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)
    if raw.dtype.kind != "f":
        raise UserError(f"{source}: labels have type {raw.dtype}; give an integer label raster")
    if not np.isfinite(raw).all() or not np.array_equal(raw, np.round(raw)):
        raise UserError(f"{source}: labels hold NaN or fractional values; give whole-number class values")
    return raw.astype(np.int64)
