"""Raster files opened without loading them: the one place that reads a cube, a label map or an image.

:func:`open_lazy_cube` opens any raster file the toolbox reads (``.npy``, HDF5 ``.h5``/``.hdf5``,
MATLAB ``.mat`` v5 and v7.3, ENVI ``.hdr``, (Geo)TIFF, PNG/JPEG/BMP) as a :class:`LazyCube` of shape
(H, W, B) without reading its pixels: scenes and custom cubes, label rasters and split maps, tile sets,
catalogues and out-of-core mapping all go through it. :meth:`LazyCube.read` gives one (row0, row1,
col0, col1) window as float32; :meth:`LazyCube.as_array` the whole raster in the file's own data type,
memory-mapped where the file allows, as (H, W) when the file holds a plane and (H, W, B) otherwise.

* ``.npy`` (header read by ``np.load(mmap_mode='r')``), ENVI (BIP, BIL or BSQ) and uncompressed,
  contiguous (Geo)TIFF: positional reads of the window's bytes (:class:`RawCube`); a Fortran-ordered
  ``.npy`` through a memory map (:class:`MappedCube`);
* HDF5 (``.h5``, ``.hdf5``, MATLAB v7.3 ``.mat``): a slice of the dataset, so only the chunks the
  window touches are read (MATLAB's column-major arrays are seen transposed by HDF5: undone here);
* compressed or tiled (Geo)TIFF: rasterio windows when rasterio is installed, else only the strips
  or tiles the window touches, decoded by tifffile;
* MATLAB v5 and Pillow images cannot be read by window: they are loaded whole
  (:attr:`LazyCube.resident_bytes` tells the memory budget).

Positional reads rather than memory maps keep what a window costs predictable: the kernel maps
pages around each page a memory map touches, several times a narrow window's size.
:attr:`LazyCube.georeference` keeps what is needed to give a map the cube's georeferencing
(GeoTIFF tags, ENVI ``map info``). A file that cannot be read (missing, of an unknown type, damaged,
an array of Python objects, which is never unpickled) raises a one-line
:class:`~deephyperx.errors.UserError` naming the file.
"""
from __future__ import annotations

import contextlib
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import numpy as np

from deephyperx.errors import UserError

PathLike = Union[str, Path]
#: (row0, row1, col0, col1), half-open, in pixels.
Window = tuple[int, int, int, int]

#: MATLAB classes that hold a numeric array (``scipy.io.whosmat`` names).
_MATLAB_NUMERIC = {"double", "single", "logical", "int8", "uint8", "int16", "uint16", "int32", "uint32", "int64",
                   "uint64"}
#: Image files decoded whole through Pillow.
PIL_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
TIFF_SUFFIXES = (".tif", ".tiff")

#: GeoTIFF and GDAL tags read from a TIFF cube: code -> name.
GEOTIFF_TAGS = {
    33550: "ModelPixelScaleTag",
    33922: "ModelTiepointTag",
    34264: "ModelTransformationTag",
    34735: "GeoKeyDirectoryTag",
    34736: "GeoDoubleParamsTag",
    34737: "GeoAsciiParamsTag",
}
GDAL_METADATA, GDAL_NODATA = 42112, 42113


@dataclass(frozen=True)
class TiffTag:
    """One TIFF tag as tifffile writes it: code, data type letter, count and value."""

    code: int
    dtype: str
    count: int
    value: Any

    def extratag(self) -> tuple[int, str, int, Any, bool]:
        """The tuple ``tifffile.TiffWriter.write(extratags=...)`` takes."""
        return self.code, self.dtype, self.count, self.value, True


@dataclass(frozen=True)
class Georeference:
    """Where a cube lies on Earth: GeoTIFF tags (pixel scale, tie points, transformation, geo keys
    and their parameters), ENVI header fields (``map info``, ``coordinate system string``), and the
    GDAL no-data value and metadata of the source (kept for the record: they describe the cube's
    values, not a class map's)."""

    geotiff: tuple[TiffTag, ...] = ()
    envi: dict[str, Any] = field(default_factory=dict)
    nodata: Optional[str] = None
    gdal_metadata: Optional[str] = None

    def tiff_tags(self) -> list[tuple[int, str, int, Any, bool]]:
        """Geo tags for a TIFF map: the cube's GeoTIFF tags, else the pixel scale and tie point of
        an unrotated ENVI ``map info`` (its coordinate system stays in the map's JSON description)."""
        if self.geotiff:
            return [tag.extratag() for tag in self.geotiff]
        placement = envi_placement(self.envi.get("map info"))
        if placement is None:
            return []
        (ref_col, ref_row, easting, northing), (x_size, y_size) = placement
        return [(33550, "d", 3, (x_size, y_size, 0.0), True),
                (33922, "d", 6, (ref_col, ref_row, 0.0, easting, northing, 0.0), True)]

    def as_dict(self) -> dict[str, Any]:
        """A JSON-ready description (TIFF tag values as lists)."""
        return {"geotiff": {GEOTIFF_TAGS[t.code]: _plain(t.value) for t in self.geotiff},
                "envi": {k: _plain(v) for k, v in self.envi.items()},
                "nodata": self.nodata, "gdal_metadata": self.gdal_metadata}


def envi_placement(map_info: Any) -> Optional[tuple[tuple[float, ...], tuple[float, float]]]:
    """From ENVI ``map info`` ({projection, ref x, ref y, easting, northing, x size, y size, ...}):
    the tie point (0-based column and row, easting, northing) and pixel size; None when absent,
    unreadable or rotated."""
    if not map_info:
        return None
    items = [s.strip() for s in (map_info if isinstance(map_info, (list, tuple)) else
                                 str(map_info).strip("{} ").split(","))]
    if any(s.lower().startswith("rotation") for s in items):
        return None
    try:
        ref_x, ref_y, easting, northing, x_size, y_size = (float(v) for v in items[1:7])
    except (ValueError, IndexError):
        return None
    return (ref_x - 1.0, ref_y - 1.0, easting, northing), (x_size, y_size)


def _plain(value: Any) -> Any:
    """A tag or header value as JSON-ready data."""
    if isinstance(value, bytes):
        return value.decode("latin-1")
    if isinstance(value, (tuple, list, np.ndarray)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


# ----- formats: keys, headers, rasters in memory ----------------------------------------------------

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


def _h5_dataset_names(handle) -> list[str]:
    """Names of every numeric dataset in an open HDF5 file, groups walked recursively."""
    import h5py

    names: list[str] = []

    def visit(name: str, item) -> None:
        if isinstance(item, h5py.Dataset) and item.dtype.kind in "biuf":
            names.append(name)

    handle.visititems(visit)
    return names


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


@dataclass(frozen=True)
class RasterInfo:
    """Size of a raster, read from its header when the format allows."""

    rows: int
    cols: int
    channels: int

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols


class Raster:
    """An opened raster: ``data`` with named axes (``Y``, ``X``, others = channels).

    ``data`` may be a memory map (then :meth:`read` touches only the window) or an array
    decoded in memory.
    """

    def __init__(self, path: str, data: np.ndarray, axes: str) -> None:
        if len(axes) != data.ndim or "Y" not in axes or "X" not in axes:
            raise UserError(f"{path}: a raster of shape {data.shape} (axes '{axes}') has no image plane; "
                            "give a (rows, cols) or (rows, cols, channels) raster")
        self.path, self.data, self.axes = path, data, axes
        self._y, self._x = axes.index("Y"), axes.index("X")
        self._others = [i for i in range(data.ndim) if i not in (self._y, self._x)]

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.data.shape[self._y]), int(self.data.shape[self._x])

    @property
    def channels(self) -> int:
        return int(np.prod([self.data.shape[i] for i in self._others])) if self._others else 1

    @property
    def memory_mapped(self) -> bool:
        return isinstance(self.data, np.memmap)

    @property
    def resident_bytes(self) -> int:
        """Bytes this raster holds in memory (0 for a memory map)."""
        return 0 if self.memory_mapped else int(self.data.nbytes)

    def read(self, window: Optional[Window] = None) -> np.ndarray:
        """The window as a (h, w, C) array in the file's data type (a copy, never a view)."""
        r0, r1, c0, c1 = window if window is not None else (0, self.shape[0], 0, self.shape[1])
        index: list = [slice(None)] * self.data.ndim
        index[self._y], index[self._x] = slice(r0, r1), slice(c0, c1)
        block = np.asarray(self.data[tuple(index)])
        block = np.transpose(block, [self._y, self._x] + self._others)
        return np.array(block.reshape(r1 - r0, c1 - c0, self.channels))


def _info_from_axes(shape: Sequence[int], axes: str) -> RasterInfo:
    if "Y" not in axes or "X" not in axes:
        raise ValueError(f"axes '{axes}' hold no image plane")
    others = [n for n, a in zip(shape, axes) if a not in "YX"]
    return RasterInfo(int(shape[axes.index("Y")]), int(shape[axes.index("X")]), int(np.prod(others)) if others else 1)


def _tiff_layout(path: Path) -> tuple[tuple[int, ...], str]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return tuple(series.shape), series.axes


# ----- the cube -------------------------------------------------------------------------------

@contextlib.contextmanager
def damaged_file_as_one_line(what: str, advice: str) -> Iterator[None]:
    """A library's failure on a damaged file becomes one :class:`UserError` line: ``what (detail); advice``."""
    try:
        yield
    except UserError:
        raise
    except Exception as exc:
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{what} ({detail}); {advice}") from None


class LazyCube:
    """A (H, W, B) cube on disk; subclasses read one window of it in the file's own layout."""

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, key: Optional[str] = None,
                 georeference: Optional[Georeference] = None, ndim: int = 3) -> None:
        self.path, self.key, self.georeference = path, key, georeference
        self.shape = tuple(int(n) for n in shape)
        self.dtype = np.dtype(dtype)
        self.ndim = ndim  # 2: the file holds one plane (a label map), read back as (H, W)

    @property
    def resident_bytes(self) -> int:
        """Bytes of the cube held in memory (0: it stays on disk)."""
        return 0

    @property
    def read_bytes_per_value(self) -> int:
        """Peak bytes per value of a window while it is read: the float32 result, plus a buffer in
        the file's type when the values need converting (a memory budget counts on it)."""
        return 4 if self.dtype == np.dtype(np.float32) else 4 + self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        """Bytes of the whole cube in the file's data type."""
        return int(np.prod(self.shape)) * self.dtype.itemsize

    def identity(self) -> dict[str, Any]:
        """What identifies this cube's content for a resumable job: resolved path, key, size, mtime."""
        stat = os.stat(self.path)
        return {"path": str(self.path.resolve()), "key": self.key, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}

    def read(self, window: Window) -> np.ndarray:
        """The window (row0, row1, col0, col1), half-open, as a float32 (h, w, B) array."""
        r0, r1, c0, c1 = (int(v) for v in window)
        height, width = self.shape[:2]
        if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
            raise UserError(f"{self.path}: window rows {r0}:{r1}, cols {c0}:{c1} lies outside the "
                            f"{height}x{width} cube")
        with damaged_file_as_one_line(f"{self.path}: cannot read window rows {r0}:{r1}, cols {c0}:{c1}",
                                      "the file may be truncated or corrupt: export or copy it again"):
            block = self._read(r0, r1, c0, c1)
        return np.asarray(block, dtype=np.float32).reshape(r1 - r0, c1 - c0, self.shape[2])

    def as_array(self) -> np.ndarray:
        """The whole raster in the file's data type, (H, W) for a plane and (H, W, B) otherwise;
        memory-mapped where the format allows (subclasses), read into memory otherwise."""
        with damaged_file_as_one_line(f"{self.path}: cannot read this file",
                                      "it may be truncated or corrupt: download or export it again"):
            data = self._whole()
        return data[:, :, 0] if self.ndim == 2 and data.ndim == 3 else data

    def _whole(self) -> np.ndarray:
        height, width, bands = self.shape
        return np.asarray(self._read(0, height, 0, width)).reshape(height, width, bands)

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        raise NotImplementedError


class ArrayCube(LazyCube):
    """A raster already in memory (MATLAB v5 files and images, or an array given directly)."""

    def __init__(self, path: Path, array: np.ndarray, key: Optional[str] = None) -> None:
        ndim = array.ndim
        array = _as_cube(array, path)
        super().__init__(path, array.shape, array.dtype, key, ndim=ndim)
        self.data = array

    @property
    def resident_bytes(self) -> int:
        return int(self.data.nbytes)

    def _whole(self) -> np.ndarray:
        return self.data

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.data[r0:r1, c0:c1]


class MappedCube(LazyCube):
    """A raster read through a memory map of ``data`` with named axes (``Y``, ``X``, others bands): a
    Fortran-ordered ``.npy``, or a contiguous TIFF laid out along more than three axes."""

    def __init__(self, path: Path, data: np.ndarray, axes: str, georeference: Optional[Georeference] = None,
                 ndim: int = 3) -> None:
        self.raster = Raster(str(path), data, axes)
        shape = (*self.raster.shape, self.raster.channels)
        super().__init__(path, shape, data.dtype, None, georeference, ndim)

    @property
    def read_bytes_per_value(self) -> int:
        return 4 + 3 * self.dtype.itemsize  # pages mapped around the window's, and its copy

    def _whole(self) -> np.ndarray:
        data = self.raster.data
        if self.raster.axes in ("YX", "YXB", "YXC", "YXS"):
            return data if data.ndim == 3 else data[:, :, None]
        return self.raster.read()

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        return self.raster.read((r0, r1, c0, c1))


class RawCube(LazyCube):
    """A cube stored uncompressed at ``offset`` of its file, in one of three layouts of (rows Y,
    columns X, bands B): ``"YXB"`` (.npy, ENVI BIP, pixel-interleaved TIFF), ``"YBX"`` (ENVI BIL) or
    ``"BYX"`` (ENVI BSQ, planar TIFF). Windows are read with positional reads straight into the
    result: a memory map would also do, but the kernel maps pages around each one touched
    (fault-around, read-ahead), which makes a narrow window of a wide cube cost the process several
    times its size in resident memory."""

    LAYOUTS = ("YXB", "YBX", "BYX")

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, layout: str, offset: int,
                 georeference: Optional[Georeference] = None, ndim: int = 3) -> None:
        if layout not in self.LAYOUTS:
            raise ValueError(f"layout {layout!r} is not one of {self.LAYOUTS}")
        super().__init__(path, shape, dtype, None, georeference, ndim)
        self.layout, self.offset = layout, int(offset)

    def _whole(self) -> np.ndarray:
        """A memory map of the file, seen as (H, W, B) whatever its layout (a view, no copy)."""
        height, width, bands = self.shape
        stored = {"YXB": (height, width, bands), "YBX": (height, bands, width), "BYX": (bands, height, width)}
        data = np.memmap(self.path, dtype=self.dtype, mode="r", offset=self.offset, shape=stored[self.layout])
        return {"YXB": data, "YBX": data.transpose(0, 2, 1), "BYX": data.transpose(1, 2, 0)}[self.layout]

    @property
    def read_bytes_per_value(self) -> int:
        native = self.dtype == np.dtype(np.float32)  # read straight into the result
        return 4 if native else 4 + self.dtype.itemsize

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        height, width, bands = self.shape
        size = self.dtype.itemsize
        out = np.empty((r1 - r0, c1 - c0, bands), dtype=self.dtype)
        with open(self.path, "rb", buffering=0) as handle:
            fd = handle.fileno()
            if self.layout == "YXB":
                for i, row in enumerate(range(r0, r1)):
                    _pread_into(fd, out[i], self.offset + (row * width + c0) * bands * size)
            elif self.layout == "YBX":
                line = np.empty((bands, width), dtype=self.dtype)
                for i, row in enumerate(range(r0, r1)):
                    _pread_into(fd, line, self.offset + row * bands * width * size)
                    out[i] = line[:, c0:c1].T
            else:
                plane = np.empty((r1 - r0, c1 - c0), dtype=self.dtype)
                for band in range(bands):
                    start = self.offset + (band * height * width) * size
                    for i, row in enumerate(range(r0, r1)):
                        _pread_into(fd, plane[i], start + (row * width + c0) * size)
                    out[:, :, band] = plane
        return out


def _pread_into(fd: int, target: np.ndarray, offset: int) -> None:
    """Fill the contiguous array ``target`` with the bytes of file ``fd`` at ``offset``."""
    view = memoryview(target).cast("B")
    done = 0
    while done < len(view):
        count = os.preadv(fd, [view[done:]], offset + done)
        if count == 0:
            raise ValueError(f"the file ends at byte {offset + done}, before the window's data")
        done += count


class HDF5Cube(LazyCube):
    """An HDF5 dataset (or a MATLAB v7.3 variable, stored transposed) read by slices."""

    def __init__(self, path: Path, key: str, shape: tuple[int, int, int], dtype: np.dtype, matlab: bool,
                 ndim: int = 3) -> None:
        super().__init__(path, shape, dtype, key, ndim=ndim)
        self.matlab = matlab

    def _whole(self) -> np.ndarray:
        """Memory-mapped when the dataset is contiguous and uncompressed, read into memory otherwise."""
        import h5py

        with h5py.File(self.path, "r") as handle:
            dataset = handle[self.key]
            offset = dataset.id.get_offset()
            if dataset.chunks is None and offset is not None and dataset.size > 0:
                data = np.memmap(self.path, dtype=dataset.dtype, mode="r", offset=offset, shape=dataset.shape)
            else:
                data = np.asarray(dataset[()])
        data = data.T if self.matlab else data
        return data if data.ndim == 3 else data[:, :, None]

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        import h5py

        with h5py.File(self.path, "r") as handle:
            dataset = handle[self.key]
            if not self.matlab:
                block = dataset[r0:r1, c0:c1] if dataset.ndim == 3 else dataset[r0:r1, c0:c1][:, :, None]
                return block
            block = dataset[:, c0:c1, r0:r1] if dataset.ndim == 3 else dataset[c0:c1, r0:r1][None]
        return block.T


class TiffSegmentCube(LazyCube):
    """A compressed, tiled or stripped TIFF: only the strips or tiles a window touches are read and
    decoded (by tifffile). Bands are either samples of one page (contiguous or planar) or pages."""

    def __init__(self, path: Path, shape: tuple[int, int, int], dtype: np.dtype, georeference: Georeference,
                 bands_are_pages: bool, ndim: int = 3) -> None:
        super().__init__(path, shape, dtype, None, georeference, ndim)
        self.bands_are_pages = bands_are_pages

    def _whole(self) -> np.ndarray:
        """The first series decoded whole, its axes put in (Y, X, bands) order."""
        import tifffile

        with tifffile.TiffFile(self.path) as tif:
            series = tif.series[0]
            return Raster(str(self.path), series.asarray(), series.axes).read()

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        import tifffile

        out = np.empty((r1 - r0, c1 - c0, self.shape[2]), dtype=np.float32)
        with tifffile.TiffFile(self.path) as tif:
            pages = tif.series[0].pages
            if self.bands_are_pages:
                for band, page in enumerate(pages):
                    _decode_window(tif, page, (r0, r1, c0, c1), out[:, :, band:band + 1])
            else:
                _decode_window(tif, pages[0], (r0, r1, c0, c1), out)
        return out


class RasterioCube(LazyCube):
    """A TIFF read by rasterio windows (any compression GDAL knows)."""

    def _whole(self) -> np.ndarray:
        import rasterio

        with rasterio.open(self.path) as source:
            return np.moveaxis(source.read(), 0, -1)

    def _read(self, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        import rasterio
        from rasterio.windows import Window as RioWindow

        with rasterio.open(self.path) as source:
            block = source.read(window=RioWindow(c0, r0, c1 - c0, r1 - r0))
        return np.moveaxis(block, 0, -1)


def _decode_window(tif: Any, page: Any, window: Window, out: np.ndarray) -> None:
    """Decode the strips or tiles of ``page`` that meet ``window`` into ``out`` (h, w, samples).

    tifffile numbers segments along ``page.chunked``: [separate samples,] rows of segments, columns
    of segments [, 1 for contiguous samples]; strips span the whole width (one column)."""
    r0, r1, c0, c1 = window
    key = page.keyframe  # the layout of pages after the first is their key frame's
    if key.imagedepth > 1:
        raise UserError(f"{tif.filename}: a volumetric TIFF (depth {key.imagedepth}) is no cube; "
                        "export it with bands as samples or pages")
    separate = key.planarconfig == 2 and key.samplesperpixel > 1
    seg_h, seg_w = (key.tilelength, key.tilewidth) if key.is_tiled else (key.rowsperstrip, key.imagewidth)
    first = 1 if separate else 0
    tables = getattr(page, "jpegtables", None) or key.jpegtables
    extra = {"jpegtables": tables} if tables is not None else {}
    for index in range(math.prod(key.chunked)):
        position = np.unravel_index(index, key.chunked)
        y0, x0 = int(position[first]) * seg_h, int(position[first + 1]) * seg_w
        if y0 >= r1 or y0 + seg_h <= r0 or x0 >= c1 or x0 + seg_w <= c0:
            continue
        tif.filehandle.seek(page.dataoffsets[index])
        data = tif.filehandle.read(page.databytecounts[index])
        segment, _, _ = key.decode(data, index, _fullsize=key.is_tiled, **extra)
        if segment is None:
            raise ValueError(f"strip or tile {index} holds no data")
        segment = segment.reshape(segment.shape[-3:])  # (rows, cols, contiguous samples)
        top, bottom = max(r0, y0), min(r1, y0 + segment.shape[0])
        left, right = max(c0, x0), min(c1, x0 + segment.shape[1])
        part = segment[top - y0:bottom - y0, left - x0:right - x0]
        bands = slice(int(position[0]), int(position[0]) + 1) if separate else slice(None)
        out[top - r0:bottom - r0, left - c0:right - c0, bands] = part


# ----- opening --------------------------------------------------------------------------------

def open_lazy_cube(path: PathLike, key: Optional[str] = None) -> LazyCube:
    """Open the cube in ``path`` (``key``: the HDF5 dataset or MATLAB variable when there are
    several) without reading its pixels; one-line :class:`UserError` on anything unusable."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path (and the --folder option)")
    suffix = path.suffix.lower()
    opener = _OPENERS.get(suffix)
    if opener is None:
        raise UserError(f"{path}: unknown file type '{suffix}'; use one of {', '.join(supported_extensions())} "
                        "(for ENVI give the .hdr header)")
    try:
        cube = opener(path, key)
    except UserError:
        raise
    except Exception as exc:  # a damaged header or a library failure becomes one actionable line
        detail = " ".join(str(exc).split())[:200] or type(exc).__name__
        raise UserError(f"{path}: cannot read this file ({detail}); it may be truncated or corrupt: download or "
                        "export it again") from None
    if min(cube.shape) < 1:
        raise UserError(f"{path}: the raster has shape {cube.shape}; it holds no pixels")
    return cube


def supported_extensions() -> list[str]:
    """File extensions :func:`open_lazy_cube` reads (lower case)."""
    return sorted(_OPENERS)


def _as_cube(array: np.ndarray, path: Path) -> np.ndarray:
    if array.ndim == 2:
        return array[:, :, None]
    if array.ndim != 3:
        raise UserError(f"{path}: an array of shape {array.shape} is no cube; give (rows, cols, bands)")
    return array


def _cube_shape(shape: tuple[int, ...], path: Path) -> tuple[int, int, int]:
    if len(shape) not in (2, 3):
        raise UserError(f"{path}: an array of shape {tuple(shape)} is no cube; give (rows, cols, bands)")
    return (int(shape[0]), int(shape[1]), int(shape[2]) if len(shape) == 3 else 1)


def _open_npy(path: Path, key: Optional[str]) -> LazyCube:
    data = open_npy(path)  # maps the file, reads only the header
    shape = _cube_shape(data.shape, path)
    if data.flags.f_contiguous and not data.flags.c_contiguous:  # column-major: windows through the map
        return MappedCube(path, data, "YX" if data.ndim == 2 else "YXB", ndim=data.ndim)
    return RawCube(path, shape, data.dtype, "YXB", data.offset, ndim=data.ndim)


def _open_hdf5(path: Path, key: Optional[str], matlab: bool = False) -> LazyCube:
    import h5py

    with h5py.File(path, "r") as handle:
        if matlab:
            keys = [name for name, item in handle.items() if isinstance(item, h5py.Dataset)
                    and not name.startswith("#") and item.dtype.kind in "biuf"]
            chosen = _choose_key(path, key, keys, "MATLAB variable")
        else:
            chosen = _choose_key(path, key, _h5_dataset_names(handle), "dataset")
        dataset = handle[chosen]
        shape, dtype = tuple(dataset.shape), dataset.dtype
    shape = tuple(reversed(shape)) if matlab else shape
    return HDF5Cube(path, chosen, _cube_shape(shape, path), dtype, matlab, ndim=len(shape))


#: The first bytes of an HDF5 file, found at offset 0 or after a user block of 512 x 2^k bytes.
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"


def is_hdf5_file(path: Path) -> bool:
    """Whether ``path`` is an HDF5 file (MATLAB v7.3 files are), read from its signature: the same test
    as ``h5py.is_hdf5`` without importing h5py (about 11 MB of resident memory) for MATLAB v5 files."""
    size = path.stat().st_size
    with open(path, "rb") as stream:
        offset = 0
        while offset + len(HDF5_SIGNATURE) <= size:
            stream.seek(offset)
            if stream.read(len(HDF5_SIGNATURE)) == HDF5_SIGNATURE:
                return True
            offset = 512 if offset == 0 else offset * 2
    return False


def _open_mat(path: Path, key: Optional[str]) -> LazyCube:
    if is_hdf5_file(path):
        return _open_hdf5(path, key, matlab=True)
    import scipy.io

    keys = [name for name, _, cls in scipy.io.whosmat(str(path)) if cls in _MATLAB_NUMERIC]
    chosen = _choose_key(path, key, keys, "MATLAB variable")
    return ArrayCube(path, np.asarray(scipy.io.loadmat(str(path), variable_names=[chosen])[chosen]), chosen)


def _open_envi(path: Path, key: Optional[str]) -> LazyCube:
    import spectral

    image = spectral.open_image(str(path))
    fields = {name: image.metadata[name] for name in ("map info", "coordinate system string", "projection info")
              if name in image.metadata}
    georeference = Georeference(envi=fields) if fields else None
    shape = (int(image.nrows), int(image.ncols), int(image.nbands))
    layout = {spectral.BIP: "YXB", spectral.BIL: "YBX", spectral.BSQ: "BYX"}[image.interleave]
    data_file, dtype = Path(image.filename), np.dtype(image.dtype)
    expected = image.offset + int(np.prod(shape)) * dtype.itemsize
    if data_file.stat().st_size < expected:
        raise UserError(f"{data_file}: {data_file.stat().st_size} bytes but its header {path.name} describes "
                        f"{expected}; the data file is truncated: export or copy it again")
    return RawCube(data_file, shape, dtype, layout, image.offset, georeference)


def _open_tiff(path: Path, key: Optional[str]) -> LazyCube:
    try:
        import tifffile
    except ImportError:
        raise UserError(f"{path}: reading GeoTIFF needs the tifffile package; run `pip install tifffile`") from None

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        page = series.pages[0]
        georeference = _tiff_georeference(page)
        shape, axes, offset = tuple(series.shape), series.axes, series.dataoffset
        dtype = np.dtype(series.dtype).newbyteorder(tif.byteorder)
        n_pages = len(series.pages)
        page_shape, page_axes = tuple(page.shape), page.axes
        samples = int(page.samplesperpixel)
    cube_shape = _tiff_cube_shape(shape, axes, path)
    ndim = 2 if cube_shape[2] == 1 else 3
    if offset is not None:  # uncompressed and contiguous
        layout = _raw_layout(axes, shape)
        if layout is not None:
            return RawCube(path, cube_shape, dtype, layout, offset, georeference, ndim)
        data = np.memmap(path, dtype=dtype, mode="r", offset=offset, shape=shape)
        return MappedCube(path, data, axes, georeference, ndim)
    try:
        import rasterio  # noqa: F401
    except ImportError:
        pass
    else:
        return RasterioCube(path, cube_shape, dtype, None, georeference, ndim)
    bands_are_pages = n_pages > 1
    if bands_are_pages and (samples != 1 or n_pages != cube_shape[2]):
        raise UserError(f"{path}: a TIFF of {n_pages} pages of shape {page_shape} ({page_axes}) cannot be read by "
                        "window; store bands as samples of one page or as single-band pages")
    if not bands_are_pages and samples != cube_shape[2]:
        raise UserError(f"{path}: the TIFF's layout ({axes}) cannot be read by window; store the bands as "
                        "samples of one page")
    return TiffSegmentCube(path, cube_shape, dtype, georeference, bands_are_pages, ndim)


def _open_pil(path: Path, key: Optional[str]) -> LazyCube:
    """An image decoded whole by Pillow (a palette image keeps its indices; a 1-bit one becomes 0/255)."""
    from PIL import Image

    with Image.open(path) as image:
        return ArrayCube(path, np.asarray(image.convert("L") if image.mode == "1" else image))


def _raw_layout(axes: str, shape: tuple[int, ...]) -> Optional[str]:
    """The :class:`RawCube` layout of a contiguous TIFF series with tifffile's ``axes``, if any."""
    if axes in ("YX", "YXS"):
        return "YXB"
    if len(axes) == 3 and axes.endswith("YX"):
        return "BYX"
    return None


def _tiff_cube_shape(shape: tuple[int, ...], axes: str, path: Path) -> tuple[int, int, int]:
    """(rows, cols, bands) of a TIFF series of ``shape`` with tifffile's ``axes`` (Y, X, the rest bands)."""
    if "Y" not in axes or "X" not in axes:
        raise UserError(f"{path}: the TIFF has axes '{axes}' and no image plane; export it as a plain raster")
    info = _info_from_axes(shape, axes)
    return info.rows, info.cols, info.channels


def _tiff_georeference(page: Any) -> Optional[Georeference]:
    """The GeoTIFF and GDAL tags of a TIFF page (None when it has none)."""
    tags = []
    for code in GEOTIFF_TAGS:
        tag = page.tags.get(code)
        if tag is not None:
            value = tag.value
            value = tuple(value) if isinstance(value, (tuple, list, np.ndarray)) else value
            dtype = {2: "s", 3: "H", 12: "d"}.get(int(tag.dtype), "d")
            count = len(value.encode("latin-1")) + 1 if isinstance(value, str) else len(value)
            tags.append(TiffTag(code, dtype, count, value))
    text = lambda code: (str(page.tags[code].value) if code in page.tags else None)  # noqa: E731
    nodata, metadata = text(GDAL_NODATA), text(GDAL_METADATA)
    if not tags and nodata is None and metadata is None:
        return None
    return Georeference(tuple(tags), {}, nodata, metadata)


_OPENERS = {
    ".npy": _open_npy,
    ".h5": _open_hdf5,
    ".hdf5": _open_hdf5,
    ".mat": _open_mat,
    ".hdr": _open_envi,
    ".tif": _open_tiff,
    ".tiff": _open_tiff,
    **{suffix: _open_pil for suffix in PIL_SUFFIXES},
}
