"""Reading a raster file (a cube, a label map) whole, whatever its format.

The engine side of scene loading: it knows file formats, not scenes. :func:`read_raster` opens the
file with the one raster opener, :func:`deephyperx.lazy_cube.open_lazy_cube`, and returns it as a
(rows, cols, bands) or (rows, cols) array, memory-mapped where the format allows (``.npy``, ENVI,
uncompressed TIFF, contiguous HDF5), so that big files stay on disk. Every problem a person can fix
(missing, corrupt or ambiguous file, a missing optional package) is a one-line :class:`UserError`.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Union

import numpy as np

from deephyperx.lazy_cube import open_lazy_cube, supported_extensions  # noqa: F401  (re-exported)

PathLike = Union[str, Path]


def read_raster(path: PathLike, key: Optional[str] = None) -> np.ndarray:
    """The array stored in ``path`` as (H, W, B) or (H, W).

    ``key`` names the variable (MATLAB) or dataset (HDF5) when the file holds several; it is
    ignored by single-array formats (.npy, ENVI, GeoTIFF, images).
    """
    return open_lazy_cube(path, key).as_array()
