"""Multi-source tile sets: several co-registered rasters per tile (image, DSM, nDSM, OSM raster,
a second sensor) plus labels, read window by window so that big tiles stay on disk.

A :class:`TileSet` names its tiles, the sources each tile holds, its classes and its train/test
:class:`Region` lists. Rasters are opened lazily: ``.npy`` files and uncompressed TIFFs are
memory-mapped and only the requested window is read; PNG/JPEG (and compressed TIFFs) cannot be
read by window, so they are decoded whole once and kept in a bounded in-memory cache.

Labels are decoded by the tile set's ``label_decoder`` from the raw label raster (ISPRS colour
codes, or values such as mmsegmentation's 0 = boundary, 1..6 = classes) to class ids 0..K-1 and
:data:`~deephyperx.scene.IGNORE`. :func:`erode_boundaries` builds the ISPRS "eroded" ground truth
(class boundaries ignored within a 3-pixel disc) when no eroded file exists.
"""
from __future__ import annotations

import collections
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Optional, Sequence

import numpy as np
from scipy import ndimage

from deephyperx.errors import UserError
from deephyperx.lazy_cube import (PIL_SUFFIXES, TIFF_SUFFIXES, Raster, RasterInfo, Window,  # noqa: F401
                                   _info_from_axes, _tiff_layout, open_lazy_cube)
from deephyperx.scene import IGNORE

RGB = tuple[int, int, int]

#: Radius (pixels) of the disc the ISPRS benchmark erodes class boundaries with.
ISPRS_BOUNDARY_RADIUS = 3
#: Bytes of decoded (not memory-mapped) rasters a tile set keeps in memory.
DEFAULT_CACHE_BYTES = 1 << 30


@dataclass(frozen=True)
class Tile:
    """One tile: a raster path per source, and its label rasters (full and eroded) if any."""

    name: str
    sources: dict[str, str]
    labels: Optional[str] = None
    eroded_labels: Optional[str] = None


@dataclass(frozen=True)
class Region:
    """A part of a tile used for training or testing: a window, and optionally a boolean mask
    (``.npy`` of the tile's shape) saying which labelled pixels count."""

    tile: str
    window: Optional[Window] = None
    mask: Optional[str] = None


# --- Rasters ----------------------------------------------------------------------------------


def open_raster(path: str | Path) -> Raster:
    """Open ``path`` (any raster :func:`~deephyperx.lazy_cube.open_lazy_cube` reads): memory-mapped where
    the file allows (``.npy``, uncompressed TIFF, ENVI, contiguous HDF5), decoded whole otherwise."""
    cube = open_lazy_cube(path)
    data = cube.as_array()
    return Raster(str(path), data, "YX" if data.ndim == 2 else "YXC")


def raster_info(path: str | Path) -> RasterInfo:
    """Rows, columns and channels of ``path``, from the header where possible (no pixel decoded)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: no such file; check the path (and the --folder option)")
    suffix = path.suffix.lower()
    try:
        if suffix in PIL_SUFFIXES:
            from PIL import Image

            with Image.open(path) as image:
                return RasterInfo(image.size[1], image.size[0], len(image.getbands()))
        if suffix in TIFF_SUFFIXES:
            return _info_from_axes(*_tiff_layout(path))
    except Exception as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise UserError(f"{path}: cannot read this raster ({detail}); it may be truncated or corrupt") from exc
    raster = open_raster(path)
    return RasterInfo(*raster.shape, raster.channels)


class RasterCache:
    """Opened rasters by path, reopened when the file changes. Memory maps cost nothing; decoded
    rasters are kept until their total size passes ``max_bytes`` (least recently used dropped)."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES) -> None:
        self.max_bytes = max_bytes
        self._rasters: collections.OrderedDict[str, tuple[tuple[int, int], Raster]] = collections.OrderedDict()
        self._infos: dict[str, tuple[tuple[int, int], RasterInfo]] = {}

    def raster(self, path: str) -> Raster:
        stamp = _stamp(path)
        held = self._rasters.get(path)
        if held is not None and held[0] == stamp:
            self._rasters.move_to_end(path)
            return held[1]
        raster = open_raster(path)
        self._rasters[path] = (stamp, raster)
        self._shrink()
        return raster

    def info(self, path: str) -> RasterInfo:
        stamp = _stamp(path)
        held = self._infos.get(path)
        if held is None or held[0] != stamp:
            if Path(path).suffix.lower() in PIL_SUFFIXES + TIFF_SUFFIXES:
                info = raster_info(path)  # from the header: no pixel decoded
            else:  # no cheap header (MATLAB, HDF5, ENVI, .npy): open once, keep the raster
                raster = self.raster(path)
                info = RasterInfo(*raster.shape, raster.channels)
            held = (stamp, info)
            self._infos[path] = held
        return held[1]

    def _shrink(self) -> None:
        total = sum(r.resident_bytes for _, r in self._rasters.values())
        while total > self.max_bytes and len(self._rasters) > 1:
            _, (_, dropped) = self._rasters.popitem(last=False)
            total -= dropped.resident_bytes


def _stamp(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        raise UserError(f"{path}: no such file; check the path (and the --folder option)") from None
    return stat.st_mtime_ns, stat.st_size


# --- Label decoding ---------------------------------------------------------------------------


def _single_band(raw: np.ndarray, what: str) -> np.ndarray:
    raw = np.asarray(raw)
    if raw.ndim == 3 and raw.shape[2] == 1:
        raw = raw[:, :, 0]
    if raw.ndim != 2:
        raise UserError(f"{what}: labels of shape {raw.shape}; give a single-band label raster "
                        "(or declare colour-coded labels with a palette)")
    return raw


def _whole_numbers(raw: np.ndarray, what: str) -> np.ndarray:
    if raw.dtype.kind in "iub":
        return raw.astype(np.int64)
    if raw.dtype.kind != "f" or not np.isfinite(raw).all() or not np.array_equal(raw, np.round(raw)):
        raise UserError(f"{what}: labels of type {raw.dtype} hold non-whole values; give class values")
    return raw.astype(np.int64)


class ValueDecoder:
    """Label values to class ids: ``values[k]`` becomes k, ``ignored`` values become IGNORE.

    Any other value raises a :class:`UserError` (a wrong file or an undeclared class). E.g. the
    mmsegmentation ISPRS crops: ``ValueDecoder(range(1, 7), ignored=(0,))``.
    """

    def __init__(self, values: Iterable[int], ignored: Iterable[int] = (), name: str = "labels") -> None:
        self.values = tuple(int(v) for v in values)
        self.ignored = tuple(int(v) for v in ignored)
        self.name = name
        every = self.values + self.ignored
        if len(set(every)) != len(every) or min(every, default=0) < 0:
            raise UserError(f"{name}: label values {list(self.values)} and ignored values {list(self.ignored)} "
                            "must be distinct whole numbers >= 0")
        self._lut = np.full(max(every, default=0) + 2, -2, dtype=np.int64)  # -2: not declared
        self._lut[list(self.values)] = np.arange(len(self.values))
        self._lut[list(self.ignored)] = IGNORE

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        ints = _whole_numbers(_single_band(raw, self.name), self.name)
        index = np.clip(ints, -1, self._lut.size - 1)
        out = self._lut[index]
        bad = (out == -2) | (ints < 0) | (ints >= self._lut.size - 1)
        if bad.any():
            unknown = np.unique(ints[bad])[:10].tolist()
            raise UserError(f"{self.name}: label values {unknown} are neither class values {list(self.values)} "
                            f"nor ignored values {list(self.ignored)}; check the label file or declare them")
        return out

    def __repr__(self) -> str:
        return f"ValueDecoder(values={list(self.values)}, ignored={list(self.ignored)})"


class ColourDecoder:
    """Colour-coded (RGB) labels to class ids: ``palette[k]`` becomes k, any other colour IGNORE
    (ISPRS: black marks eroded boundaries).

    When every palette channel is 0 or 255 (ISPRS), channels are thresholded at 128 first, so
    that slightly off colours left by resampling or lossy saving still decode.
    """

    def __init__(self, palette: Sequence[Sequence[int]], name: str = "labels") -> None:
        self.palette = [tuple(int(c) for c in colour) for colour in palette]
        self.name = name
        if any(len(c) != 3 or min(c) < 0 or max(c) > 255 for c in self.palette):
            raise UserError(f"{name}: palette {self.palette} must hold (R, G, B) colours in 0..255")
        codes = [_colour_code(c) for c in self.palette]
        if len(set(codes)) != len(codes):
            raise UserError(f"{name}: palette {self.palette} repeats a colour; give one colour per class")
        self.binary = all(v in (0, 255) for c in self.palette for v in c)
        if self.binary:
            self._lut = np.full(8, IGNORE, dtype=np.int64)
            for k, (r, g, b) in enumerate(self.palette):
                self._lut[(r > 127) * 4 + (g > 127) * 2 + (b > 127)] = k
        else:
            order = np.argsort(codes)
            self._codes, self._ids = np.asarray(codes, dtype=np.int64)[order], order.astype(np.int64)

    def __call__(self, raw: np.ndarray) -> np.ndarray:
        raw = np.asarray(raw)
        if raw.ndim != 3 or raw.shape[2] not in (3, 4):
            raise UserError(f"{self.name}: colour-coded labels must be RGB rasters, got shape {raw.shape}")
        r, g, b = (raw[:, :, i].astype(np.int64) for i in range(3))
        if self.binary:
            return self._lut[(r > 127) * 4 + (g > 127) * 2 + (b > 127)]
        code = (r << 16) | (g << 8) | b
        pos = np.clip(np.searchsorted(self._codes, code), 0, len(self._codes) - 1)
        return np.where(self._codes[pos] == code, self._ids[pos], IGNORE)

    def __repr__(self) -> str:
        return f"ColourDecoder(palette={self.palette})"


def _colour_code(colour: Sequence[int]) -> int:
    r, g, b = colour
    return (r << 16) | (g << 8) | b


def encode_colours(ids: np.ndarray, palette: Sequence[Sequence[int]],
                   ignore_colour: RGB = (0, 0, 0)) -> np.ndarray:
    """Class ids (with IGNORE) to an RGB (h, w, 3) uint8 image, the inverse of :class:`ColourDecoder`."""
    table = np.asarray(list(palette) + [ignore_colour], dtype=np.uint8)
    ids = np.asarray(ids)
    return table[np.where(ids == IGNORE, len(palette), ids)]


# --- Eroded ground truth ----------------------------------------------------------------------


def disc(radius: int) -> np.ndarray:
    """Boolean disc footprint: offsets (dy, dx) with dy^2 + dx^2 <= radius^2."""
    offsets = np.arange(-radius, radius + 1)
    return offsets[:, None] ** 2 + offsets[None, :] ** 2 <= radius ** 2


def erode_boundaries(labels: np.ndarray, radius: int = ISPRS_BOUNDARY_RADIUS) -> np.ndarray:
    """Labels with IGNORE on every pixel whose disc of ``radius`` holds another class.

    Only borders between two classes count: a border with IGNORE or with the raster's edge
    erodes nothing. This is how the ISPRS benchmark builds its "eroded" ground truth.
    """
    labels = np.asarray(labels).astype(np.int64)
    if labels.ndim != 2:
        raise UserError(f"erode_boundaries needs a (rows, cols) label map, got shape {labels.shape}")
    if radius < 0:
        raise UserError(f"erosion radius {radius} must be >= 0")
    valid = labels != IGNORE
    if radius == 0 or not valid.any():
        return labels.copy()
    footprint = disc(radius)
    above = int(labels[valid].max()) + 1
    highest = ndimage.maximum_filter(np.where(valid, labels, -1), footprint=footprint, mode="constant", cval=-1)
    lowest = ndimage.minimum_filter(np.where(valid, labels, above), footprint=footprint,
                                    mode="constant", cval=above)
    return np.where(valid & (highest != lowest), IGNORE, labels)


# --- The tile set -----------------------------------------------------------------------------


@dataclass
class TileSet:
    """Tiles of co-registered sources with labels, classes and train/test regions.

    ``source_bands`` optionally picks (and may repeat) channels of a source's raster, e.g.
    ``{"image": (0, 0, 0)}`` makes a 3-channel image from a panchromatic band, or
    ``{"vnir": (0, ..., 62)}`` one sensor's bands from a cube; ``source_channels`` counts the
    channels after that choice.
    """

    name: str
    tiles: dict[str, Tile]
    class_names: list[str]
    palette: list[RGB]
    source_channels: dict[str, int]
    train: list[Region]
    test: list[Region]
    label_decoder: Callable[[np.ndarray], np.ndarray]
    rgb_source: Optional[str] = "image"
    rgb_channels: Optional[tuple[int, int, int]] = (0, 1, 2)
    description: str = ""
    source_bands: dict[str, tuple[int, ...]] = field(default_factory=dict)
    cache_bytes: int = DEFAULT_CACHE_BYTES
    _rasters: RasterCache = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._rasters = RasterCache(self.cache_bytes)

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_rasters", None)  # memory maps and decoded rasters are reopened, not pickled
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self._rasters = RasterCache(self.cache_bytes)

    # -- Names and shapes

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def sources(self) -> list[str]:
        """Names of the sources every tile holds, in declaration order."""
        return list(self.source_channels)

    def tile(self, name: str) -> Tile:
        """The tile called ``name``, or a UserError listing some names."""
        if name not in self.tiles:
            known = ", ".join(list(self.tiles)[:8]) + (", ..." if len(self.tiles) > 8 else "")
            raise UserError(f"tile set {self.name}: no tile named '{name}'; tiles: {known}")
        return self.tiles[name]

    def tile_shape(self, tile: str) -> tuple[int, int]:
        """(rows, cols) of a tile (from its first source's header)."""
        first = next(iter(self.tile(tile).sources.values()))
        return self._rasters.info(first).shape

    # -- Reading

    def read_source(self, tile: str, source: str, window: Optional[Window] = None) -> np.ndarray:
        """The window of one source as (h, w, C) float32 (whole tile when ``window`` is None)."""
        path = self._source_path(tile, source)
        raster = self._rasters.raster(path)
        window = self._checked_window(window, raster.shape, tile)
        data = raster.read(window)
        bands = self.source_bands.get(source)
        if bands is not None:
            data = data[:, :, self._checked_bands(source, bands, raster.channels, path)]
        return data.astype(np.float32, copy=False)

    def read_labels(self, tile: str, window: Optional[Window] = None, eroded: bool = False) -> np.ndarray:
        """Class ids (h, w) int64 with IGNORE. ``eroded`` reads the eroded ground truth, or erodes
        the full labels (radius :data:`ISPRS_BOUNDARY_RADIUS`) when the tile has no eroded file."""
        record = self.tile(tile)
        if eroded and record.eroded_labels is not None:
            return self._decoded(record.eroded_labels, tile, window)
        if record.labels is None:
            raise UserError(f"tile set {self.name}: tile '{tile}' has no labels; score or train on labelled tiles only")
        if not eroded:
            return self._decoded(record.labels, tile, window)
        return self._eroded(record.labels, tile, window)

    def _decoded(self, path: str, tile: str, window: Optional[Window]) -> np.ndarray:
        raster = self._rasters.raster(path)
        window = self._checked_window(window, raster.shape, tile)
        return np.asarray(self.label_decoder(raster.read(window)), dtype=np.int64)

    def _eroded(self, path: str, tile: str, window: Optional[Window]) -> np.ndarray:
        """Erode a window grown by the radius (so borders just outside it count), then crop it."""
        shape = self._rasters.info(path).shape
        r0, r1, c0, c1 = self._checked_window(window, shape, tile)
        pad = ISPRS_BOUNDARY_RADIUS
        outer = (max(r0 - pad, 0), min(r1 + pad, shape[0]), max(c0 - pad, 0), min(c1 + pad, shape[1]))
        labels = erode_boundaries(self._decoded(path, tile, outer), ISPRS_BOUNDARY_RADIUS)
        return labels[r0 - outer[0]:r1 - outer[0], c0 - outer[2]:c1 - outer[2]]

    # -- Regions

    def region_window(self, region: Region) -> Window:
        """The region's window, the whole tile when it has none."""
        rows, cols = self.tile_shape(region.tile)
        return self._checked_window(region.window, (rows, cols), region.tile)

    def region_mask(self, region: Region) -> np.ndarray:
        """(h, w) boolean mask over the region's window: True where pixels count."""
        r0, r1, c0, c1 = self.region_window(region)
        if region.mask is None:
            return np.ones((r1 - r0, c1 - c0), dtype=bool)
        mask = self._region_mask_array(region)
        return np.array(mask[r0:r1, c0:c1], dtype=bool)

    def region_labels(self, region: Region, eroded: bool = False) -> np.ndarray:
        """Labels over the region's window with IGNORE outside its mask."""
        labels = self.read_labels(region.tile, self.region_window(region), eroded=eroded)
        return np.where(self.region_mask(region), labels, IGNORE)

    def _region_mask_array(self, region: Region) -> np.ndarray:
        mask = self._rasters.raster(region.mask).data
        if mask.ndim != 2 or mask.shape != self.tile_shape(region.tile) or mask.dtype.kind not in "bui":
            raise UserError(f"tile set {self.name}: mask {region.mask} of tile '{region.tile}' has shape "
                            f"{mask.shape} ({mask.dtype}); give a boolean mask of the tile's shape "
                            f"{self.tile_shape(region.tile)}")
        return mask

    # -- Checks

    def check(self) -> None:
        """Raise a one-line UserError on missing files, rasters of one tile of different sizes,
        wrong channel counts, a palette too short or regions outside their tiles."""
        where = f"tile set {self.name}"
        if not self.tiles:
            raise UserError(f"{where}: no tiles; give at least one image")
        if not self.class_names or len(self.palette) < self.n_classes:
            raise UserError(f"{where}: {self.n_classes} classes but {len(self.palette)} colours; give one colour per class")
        if not self.source_channels:
            raise UserError(f"{where}: no sources declared; give at least an image")
        for tile in self.tiles.values():
            self._check_tile(tile)
        for region in list(self.train) + list(self.test):
            self.region_window(region)
            if region.mask is not None:
                self._check_file(region.mask, f"{where}: mask of tile '{region.tile}'")
                self._region_mask_array(region)

    def _check_tile(self, tile: Tile) -> None:
        where = f"tile set {self.name}: tile '{tile.name}'"
        missing = [s for s in self.source_channels if s not in tile.sources]
        if missing:
            raise UserError(f"{where} has no '{missing[0]}' raster; give one for every tile (sources: "
                            f"{', '.join(self.source_channels)})")
        rasters = [(source, tile.sources[source]) for source in self.source_channels]
        rasters += [(kind, path) for kind, path in (("labels", tile.labels), ("eroded labels", tile.eroded_labels))
                    if path is not None]
        reference = None
        for role, path in rasters:
            self._check_file(path, f"{where}: {role}")
            info = self._rasters.info(path)
            if reference is None:
                reference = (role, path, info)
            elif info.shape != reference[2].shape:
                raise UserError(f"{where}: {reference[0]} is {_size(reference[2])} ({reference[1]}) but {role} is "
                                f"{_size(info)} ({path}); give co-registered rasters of the same size")
            if role in self.source_channels:
                self._check_channels(role, path, info, where)

    def _check_channels(self, source: str, path: str, info: RasterInfo, where: str) -> None:
        bands = self.source_bands.get(source)
        channels = len(self._checked_bands(source, bands, info.channels, path)) if bands is not None else info.channels
        if channels != self.source_channels[source]:
            raise UserError(f"{where}: source '{source}' has {channels} channels ({path}) but the tile set expects "
                            f"{self.source_channels[source]}; give a raster with {self.source_channels[source]}")

    @staticmethod
    def _check_file(path: str, what: str) -> None:
        if not Path(path).is_file():
            raise UserError(f"{what} file {path} not found; check the path")

    def _checked_bands(self, source: str, bands: Sequence[int], channels: int, path: str) -> list[int]:
        bands = [int(b) for b in bands]
        if not bands or min(bands) < 0 or max(bands) >= channels:
            raise UserError(f"tile set {self.name}: source '{source}' picks channels {bands[:6]}... of {path}, "
                            f"which has {channels}; pick channels in 0..{channels - 1}")
        return bands

    def _source_path(self, tile: str, source: str) -> str:
        record = self.tile(tile)
        if source not in record.sources:
            raise UserError(f"tile set {self.name}: tile '{tile}' has no source '{source}'; sources: "
                            f"{', '.join(record.sources)}")
        return record.sources[source]

    def _checked_window(self, window: Optional[Sequence[int]], shape: tuple[int, int], tile: str) -> Window:
        if window is None:
            return 0, int(shape[0]), 0, int(shape[1])
        if len(window) != 4:
            raise UserError(f"window {tuple(window)} of tile '{tile}' must be (row0, row1, col0, col1)")
        r0, r1, c0, c1 = (int(v) for v in window)
        if not (0 <= r0 < r1 <= shape[0] and 0 <= c0 < c1 <= shape[1]):
            raise UserError(f"tile set {self.name}: window {(r0, r1, c0, c1)} lies outside tile '{tile}' of "
                            f"{shape[0]}x{shape[1]} pixels; give 0 <= row0 < row1 <= rows and 0 <= col0 < col1 <= cols")
        return r0, r1, c0, c1


def _size(info: RasterInfo) -> str:
    return f"{info.rows}x{info.cols}"
