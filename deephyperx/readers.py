"""Reading raster files (cubes and label maps) into numpy arrays, whatever their format.

The engine side of scene loading: it knows file formats, not scenes. Every reader returns a
(rows, cols, bands) or (rows, cols) array and keeps big files on disk (memory maps) where the
format allows it. Every problem a person can fix (missing file, corrupt file, ambiguous MATLAB
variable, missing optional package) raises :class:`UserError` with a one-line message.
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable, Optional, Union

import numpy as np

from deephyperx.errors import UserError

PathLike = Union[str, Path]

#: MATLAB classes that hold a numeric array (``scipy.io.whosmat`` names).
_MATLAB_NUMERIC = {
    "double", "single", "logical", "int8", "uint8", "int16", "uint16",
    "int32", "uint32", "int64", "uint64",
}


def read_raster(path: PathLike, key: Optional[str] = None) -> np.ndarray:
    """Read the array stored in ``path`` as (H, W, B) or (H, W).

    ``key`` names the variable (MATLAB) or dataset (HDF5) when the file holds several; it is
    ignored by single-array formats (.npy, ENVI, GeoTIFF).
    """
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path (and the --folder option)")
    reader = _reader_for(path)
    try:
        return reader(path, key)
    except UserError:
        raise
    except Exception as exc:  # any library failure on a bad file becomes one actionable line
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(
            f"{path}: cannot read this file ({detail}); it may be truncated or corrupt: "
            "download or export it again"
        ) from exc


def supported_extensions() -> list[str]:
    """File extensions :func:`read_raster` understands (lower case)."""
    return sorted(_READERS)


def _reader_for(path: Path) -> Callable[[Path, Optional[str]], np.ndarray]:
    """Pick the reader from the file extension."""
    suffix = path.suffix.lower()
    if suffix not in _READERS:
        raise UserError(
            f"{path}: unknown file type '{suffix}'; use one of {', '.join(supported_extensions())} "
            "(for ENVI give the .hdr header)"
        )
    return _READERS[suffix]


def _choose_key(path: Path, key: Optional[str], keys: list[str], kind: str) -> str:
    """Return ``key`` if present, or the only array when ``key`` is None; else say which keys exist."""
    if key is not None:
        if key not in keys:
            raise UserError(f"{path}: no {kind} named '{key}'; the file holds {_key_list(keys)}")
        return key
    if len(keys) == 1:
        return keys[0]
    if not keys:
        raise UserError(f"{path}: the file holds no numeric array; check that it is the right file")
    raise UserError(f"{path}: the file holds several arrays ({_key_list(keys)}); name the one to use with a key")


def _key_list(keys: list[str]) -> str:
    return ", ".join(repr(k) for k in keys) if keys else "no arrays"


# --- MATLAB -------------------------------------------------------------------------------


def _read_mat(path: Path, key: Optional[str]) -> np.ndarray:
    """MATLAB v5 through scipy; v7.3 (an HDF5 file) through h5py, back in MATLAB's orientation."""
    import h5py

    if h5py.is_hdf5(str(path)):
        return _read_mat73(path, key)
    import scipy.io

    keys = [name for name, _, cls in scipy.io.whosmat(str(path)) if cls in _MATLAB_NUMERIC]
    chosen = _choose_key(path, key, keys, "MATLAB variable")
    return np.asarray(scipy.io.loadmat(str(path), variable_names=[chosen])[chosen])


def _read_mat73(path: Path, key: Optional[str]) -> np.ndarray:
    """MATLAB v7.3 stores arrays column-major, so h5py sees them transposed: undo that."""
    import h5py

    with h5py.File(path, "r") as handle:
        keys = [name for name, item in handle.items()
                if isinstance(item, h5py.Dataset) and not name.startswith("#")
                and item.dtype.kind in "biuf"]
    chosen = _choose_key(path, key, keys, "MATLAB variable")
    return _h5_array(path, chosen).T


# --- HDF5 -----------------------------------------------------------------------------------


def _read_h5(path: Path, key: Optional[str]) -> np.ndarray:
    """An HDF5 dataset named by ``key`` (a path such as ``group/cube`` is fine)."""
    import h5py

    with h5py.File(path, "r") as handle:
        keys = _h5_dataset_names(handle)
    return _h5_array(path, _choose_key(path, key, keys, "dataset"))


def _h5_dataset_names(handle) -> list[str]:
    """Names of every numeric dataset in an open HDF5 file, groups walked recursively."""
    import h5py

    names: list[str] = []

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf":
            names.append(name)

    handle.visititems(visit)
    return names


def _h5_array(path: Path, name: str) -> np.ndarray:
    """Memory-map a contiguous, uncompressed HDF5 dataset; read any other one into memory."""
    import h5py

    with h5py.File(path, "r") as handle:
        dataset = handle[name]
        offset = dataset.id.get_offset()
        contiguous = dataset.chunks is None and offset is not None and dataset.size > 0
        if not contiguous:
            return np.asarray(dataset[()])
        dtype, shape = dataset.dtype, dataset.shape
    return np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)


# --- NumPy, ENVI, GeoTIFF ------------------------------------------------------------------


def open_npy(path: PathLike) -> np.ndarray:
    """A .npy file memory-mapped read-only. Its objects are never unpickled: a file of Python objects
    (which could run code when loaded) is refused with one line, as is a file without a .npy header."""
    path = Path(path)
    with open(path, "rb") as handle:
        if handle.read(6) != b"\x93NUMPY":
            raise UserError(f"{path}: no NumPy .npy header; give a file written by numpy.save")
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except ValueError as error:
        if "allow_pickle" in str(error) or "object" in str(error).lower():
            raise UserError(f"{path} holds Python objects, which are never loaded (they could run code); "
                            "give a numeric array saved with numpy.save") from None
        raise


def _read_npy(path: Path, key: Optional[str]) -> np.ndarray:
    """A .npy file, memory-mapped (never unpickles objects)."""
    return open_npy(path)


def _read_envi(path: Path, key: Optional[str]) -> np.ndarray:
    """An ENVI image given by its header, memory-mapped as (rows, cols, bands) where possible."""
    import spectral

    image = spectral.open_image(str(path))
    try:
        return image.open_memmap(interleave="bip")
    except Exception:  # e.g. a byte order or layout numpy cannot map: load it instead
        return np.asarray(image.load())


def _read_tiff(path: Path, key: Optional[str]) -> np.ndarray:
    """A (Geo)TIFF through rasterio if installed, else tifffile."""
    try:
        import rasterio  # noqa: F401
    except ImportError:
        pass
    else:
        return _read_tiff_rasterio(path)
    try:
        import tifffile  # noqa: F401
    except ImportError:
        raise UserError(
            f"{path}: reading GeoTIFF needs the rasterio or tifffile package; run `pip install tifffile`"
        ) from None
    return _read_tiff_tifffile(path)


def _read_tiff_rasterio(path: Path) -> np.ndarray:
    """rasterio reads (bands, rows, cols): return (rows, cols, bands), or (rows, cols) for one band."""
    import rasterio

    with rasterio.open(path) as source:
        data = source.read()
    return data[0] if data.shape[0] == 1 else np.moveaxis(data, 0, -1)


def _read_tiff_tifffile(path: Path) -> np.ndarray:
    """tifffile names its axes (e.g. 'YXS', 'SYX', 'IYX'): put Y and X first, the rest as bands."""
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        axes = series.axes
        data = series.asarray()
    if "Y" not in axes or "X" not in axes:
        raise UserError(f"{path}: the TIFF has axes '{axes}' and no image plane; export it as a plain raster")
    order = [axes.index("Y"), axes.index("X")] + [i for i, a in enumerate(axes) if a not in "YX"]
    data = np.transpose(data, order)
    rows, cols = data.shape[:2]
    bands = int(np.prod(data.shape[2:])) if data.ndim > 2 else 1
    return data.reshape(rows, cols) if bands == 1 else data.reshape(rows, cols, bands)


_READERS: dict[str, Callable[[Path, Optional[str]], np.ndarray]] = {
    ".mat": _read_mat,
    ".npy": _read_npy,
    ".h5": _read_h5,
    ".hdf5": _read_h5,
    ".hdr": _read_envi,
    ".tif": _read_tiff,
    ".tiff": _read_tiff,
}
