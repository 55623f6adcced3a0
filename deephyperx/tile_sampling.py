"""Random crops across the tiles of a tile set, for training dense models on big aerial tiles.

A *region* is a tile, a window of it and optionally a mask of the pixels whose labels count
(:class:`deephyperx.tiles.Region`). :class:`RandomCrops` draws square crops across regions: a
region is chosen with probability proportional to its area (its labelled mask pixels when it
has a mask), then a crop position uniformly inside the region's window (with a mask: uniformly
among positions whose crop holds a randomly drawn mask pixel, so that crops of a sparse mask are
never empty). Labels outside the region's window or mask are IGNORE, and pixels outside the
window are never read (their inputs are 0, the normalised mean), so no test pixel leaks into
training. Flips and rotations (the 8 dihedral transforms) are applied identically to every
source and to the labels.

Sources are normalised with statistics fitted on the training regions only
(:func:`fit_source_normalisers`, streamed over the regions so a big tile is never loaded whole),
and read through :class:`TileReader`, which keeps small tiles normalised in memory and reads big
ones window by window from disk.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np
import torch

from deephyperx.errors import UserError
from deephyperx.lazy_cube import open_npy
from deephyperx.preprocessing import Normaliser
from deephyperx.sampling import Batch, dihedral
from deephyperx.scene import IGNORE
from deephyperx.seeding import torch_generator
from deephyperx.sliding_window import WindowReader

Window = tuple[int, int, int, int]  # (row0, row1, col0, col1), half-open

#: Tiles whose normalised sources fit in this many bytes (all cached tiles together) are kept in memory.
DEFAULT_CACHE_BYTES = 1 << 30
#: Pixels read at once when statistics are streamed over a region.
STATISTICS_CHUNK_PIXELS = 1 << 22


# ----- regions ---------------------------------------------------------------------------------

@dataclass
class ResolvedRegion:
    """A region with its window made explicit and its mask loaded (a view of the window)."""

    tile: str
    window: Window
    mask: Optional[np.ndarray]  # bool (window rows, window cols), or None: every pixel counts

    @property
    def area(self) -> int:
        """Labelled-pixel budget of the region: its mask's pixels, else its window's."""
        if self.mask is not None:
            return int(np.count_nonzero(self.mask))
        r0, r1, c0, c1 = self.window
        return (r1 - r0) * (c1 - c0)


def resolve_region(tileset: Any, region: Any) -> ResolvedRegion:
    """Check a region against its tile and load its mask (a boolean .npy of the whole tile)."""
    if region.tile not in tileset.tiles:
        raise UserError(f"region of tile '{region.tile}': no such tile in {tileset.name} "
                        f"(tiles: {', '.join(list(tileset.tiles)[:10])})")
    height, width = tileset.tile_shape(region.tile)
    window = tuple(int(v) for v in region.window) if region.window is not None else (0, height, 0, width)
    r0, r1, c0, c1 = window
    if not (0 <= r0 < r1 <= height and 0 <= c0 < c1 <= width):
        raise UserError(f"region window {window} of tile '{region.tile}' is not inside its {height}x{width} "
                        "pixels; give (row0, row1, col0, col1) with 0 <= row0 < row1 <= rows")
    mask = None
    if getattr(region, "mask", None):
        try:
            full = open_npy(region.mask)
        except (OSError, ValueError) as error:
            raise UserError(f"region mask {region.mask} cannot be read as a .npy array ({error}); "
                            "give a boolean (rows, cols) .npy") from None
        if full.shape != (height, width):
            raise UserError(f"region mask {region.mask} is {full.shape} but tile '{region.tile}' is "
                            f"{height}x{width}; give a mask of the tile's size")
        mask = np.asarray(full[r0:r1, c0:c1], dtype=bool)
    return ResolvedRegion(region.tile, window, mask)  # type: ignore[arg-type]


def hold_out_rows(tileset: Any, regions: Sequence[Any], fraction: float) -> tuple[list[Any], list[Any]]:
    """Split every region into a training part and a validation part: the bottom ``fraction`` of
    its window's rows (a spatially disjoint strip, so validation crops never overlap training ones).
    Regions too short to split stay whole in training."""
    if not 0 < fraction < 1:
        raise UserError(f"--val_fraction {fraction} must be in (0, 1) to hold out validation rows")
    train, validation = [], []
    for region in regions:
        r0, r1, c0, c1 = resolve_region(tileset, region).window
        held = int(round((r1 - r0) * fraction))
        if held < 1 or held >= r1 - r0:
            train.append(region)
            continue
        train.append(dataclasses.replace(region, window=(r0, r1 - held, c0, c1)))
        validation.append(dataclasses.replace(region, window=(r1 - held, r1, c0, c1)))
    return train, validation


# ----- normalisation -----------------------------------------------------------------------------

def row_chunks(window: Window) -> list[Window]:
    """The window cut into bands of rows of about :data:`STATISTICS_CHUNK_PIXELS` pixels."""
    r0, r1, c0, c1 = window
    rows = max(1, STATISTICS_CHUNK_PIXELS // max(c1 - c0, 1))
    return [(r, min(r + rows, r1), c0, c1) for r in range(r0, r1, rows)]


def fit_source_normalisers(tileset: Any, regions: Sequence[Any], sources: Sequence[str],
                           method: str = "standard") -> dict[str, Normaliser]:
    """Per-channel standardisation of each source, fitted on the pixels of ``regions`` (the
    training regions: their masks' pixels when they have masks), streamed band by band with
    Chan's pooled mean and variance so that a big tile is never read whole."""
    if method not in ("standard", "none"):
        raise UserError(f"normalization '{method}' is not available for tiles; choose standard or none")
    resolved = [resolve_region(tileset, r) for r in regions]
    normalisers = {}
    for source in sources:
        channels = int(tileset.source_channels[source])
        if method == "none":
            normalisers[source] = Normaliser("none", np.zeros(channels, np.float32), np.ones(channels, np.float32))
            continue
        count, mean, m2 = 0, np.zeros(channels), np.zeros(channels)
        for region in resolved:
            for chunk in row_chunks(region.window):
                pixels = _as_hwc(tileset.read_source(region.tile, source, chunk)).reshape(-1, channels)
                if region.mask is not None:
                    r0, c0 = region.window[0], region.window[2]
                    pixels = pixels[region.mask[chunk[0] - r0:chunk[1] - r0, chunk[2] - c0:chunk[3] - c0].ravel()]
                if not len(pixels):
                    continue
                pixels = pixels.astype(np.float64)
                n, chunk_mean = len(pixels), pixels.mean(axis=0)
                chunk_m2 = ((pixels - chunk_mean) ** 2).sum(axis=0)
                delta, total = chunk_mean - mean, count + n
                mean = mean + delta * n / total
                m2 = m2 + chunk_m2 + delta ** 2 * count * n / total
                count = total
        if count == 0:
            raise UserError(f"{tileset.name}: the training regions hold no pixels to fit the '{source}' "
                            "normalisation on; check the split")
        std = np.sqrt(m2 / count)
        std[std < 1e-12] = 1.0
        normalisers[source] = Normaliser("standard", mean.astype(np.float32), (1.0 / std).astype(np.float32))
    return normalisers


def _as_hwc(array: np.ndarray) -> np.ndarray:
    """A raster as (rows, cols, channels)."""
    array = np.asarray(array)
    return array[..., None] if array.ndim == 2 else array


# ----- reading ------------------------------------------------------------------------------------

class TileReader:
    """Normalised windows of a tile set's sources and of its labels.

    A tile whose normalised sources fit in what is left of ``cache_bytes`` is read and normalised
    once and kept in memory (a PNG is decoded whole anyway); bigger tiles are read window by window
    through ``TileSet.read_source``, so a memory-mapped raster stays on disk.
    """

    def __init__(self, tileset: Any, sources: Sequence[str], normalisers: dict[str, Normaliser],
                 cache_bytes: int = DEFAULT_CACHE_BYTES):
        self.tileset = tileset
        self.sources = list(sources)
        self.normalisers = normalisers
        self.cache_left = cache_bytes
        self._cache: dict[str, Optional[list[np.ndarray]]] = {}
        self._labels: dict[tuple[str, bool], Optional[np.ndarray]] = {}

    def _cached(self, tile: str) -> Optional[list[np.ndarray]]:
        if tile not in self._cache:
            height, width = self.tileset.tile_shape(tile)
            size = height * width * 4 * sum(int(self.tileset.source_channels[s]) for s in self.sources)
            if size <= self.cache_left:
                self.cache_left -= size
                self._cache[tile] = [self._normalised(tile, s, None) for s in self.sources]
            else:
                self._cache[tile] = None
        return self._cache[tile]

    def _normalised(self, tile: str, source: str, window: Optional[Window]) -> np.ndarray:
        raw = _as_hwc(self.tileset.read_source(tile, source, window))
        return self.normalisers[source].apply(raw)

    def read(self, tile: str, window: Window) -> list[np.ndarray]:
        """Normalised (rows, cols, channels) float32 arrays of every source over ``window``."""
        cached = self._cached(tile)
        if cached is not None:
            r0, r1, c0, c1 = window
            return [array[r0:r1, c0:c1] for array in cached]
        return [self._normalised(tile, s, window) for s in self.sources]

    def labels(self, tile: str, window: Window, eroded: bool = False) -> np.ndarray:
        """(rows, cols) int64 class ids of ``window``, IGNORE where unknown."""
        key = (tile, eroded)
        if key not in self._labels:
            height, width = self.tileset.tile_shape(tile)
            if height * width * 2 <= self.cache_left:
                self.cache_left -= height * width * 2
                self._labels[key] = np.asarray(self.tileset.read_labels(tile, None, eroded=eroded)).astype(np.int16)
            else:
                self._labels[key] = None
        cached = self._labels[key]
        if cached is not None:
            r0, r1, c0, c1 = window
            return cached[r0:r1, c0:c1].astype(np.int64)
        return np.asarray(self.tileset.read_labels(tile, window, eroded=eroded), dtype=np.int64)

    def window_reader(self, tile: str, origin: Window) -> WindowReader:
        """A reader for :func:`deephyperx.sliding_window.predict_tile` over the window ``origin``
        of ``tile`` (coordinates relative to the window)."""
        r0, _, c0, _ = origin

        def read(row0: int, row1: int, col0: int, col1: int) -> list[np.ndarray]:
            return self.read(tile, (r0 + row0, r0 + row1, c0 + col0, c0 + col1))
        return read


# ----- the crop sampler -----------------------------------------------------------------------------

def _uniform(low: int, high: int, generator: Optional[torch.Generator]) -> int:
    """A uniform integer in [low, high]."""
    return low + int(torch.randint(0, high - low + 1, (1,), generator=generator))


def _crop_range(start: int, stop: int, crop: int) -> tuple[int, int]:
    """First and last crop start keeping a crop inside [start, stop) (or, when the window is
    shorter than the crop, covering all of it)."""
    return (start, stop - crop) if stop - start >= crop else (stop - crop, start)


class RandomCrops:
    """A :class:`deephyperx.sampling.BatchMaker`-compatible maker of random square crops.

    ``len()`` is the number of crops that would tile the regions once (an epoch when the
    configuration sets no ``epoch_samples``). ``make(index, generator, augment)`` draws
    ``len(index)`` crops with ``generator`` (training); without a generator, crop ``i`` is drawn
    from a generator seeded by ``(seed, i)``, so validation crops are the same every epoch.
    The batch's inputs are one (N, C, crop, crop) tensor per source and its target (N, crop, crop)
    class ids with IGNORE outside the region and its mask.
    """

    def __init__(self, tileset: Any, regions: Sequence[Any], sources: Sequence[str], crop: int,
                 normalisers: dict[str, Normaliser], augment: bool = True, reader: Optional[TileReader] = None,
                 seed: int = 0, focus: Optional[tuple[int, float]] = None):
        if crop < 1:
            raise UserError(f"crop size {crop} must be at least 1 pixel")
        self.tileset, self.crop, self.augment, self.seed = tileset, int(crop), augment, seed
        self.sources = list(sources)
        self.reader = reader or TileReader(tileset, sources, normalisers)
        self.regions = [r for r in (resolve_region(tileset, region) for region in regions) if r.area > 0]
        if not self.regions:
            raise UserError(f"{tileset.name}: no labelled pixels in the regions to crop from; check the split")
        areas = torch.tensor([float(r.area) for r in self.regions], dtype=torch.float64)
        self.weights = areas / areas.sum()
        self._mask_pixels = [np.flatnonzero(r.mask) if r.mask is not None else None for r in self.regions]
        self._length = int(sum(math.ceil(r.area / self.crop ** 2) for r in self.regions))
        self.focus_fraction = 0.0
        if focus is not None:
            self._set_focus(*focus)

    def __len__(self) -> int:
        return self._length

    def _set_focus(self, class_id: int, fraction: float) -> None:
        """Centre a share ``fraction`` of the training crops on a pixel of class ``class_id`` drawn
        uniformly over the regions (rare-class sampling: cars are 1-2% of an aerial tile)."""
        if not 0 < fraction <= 1:
            raise UserError(f"--focus_fraction {fraction} must be in (0, 1]")
        self._focus_pixels = [self._class_pixels(region, class_id) for region in self.regions]
        counts = torch.tensor([float(len(p)) for p in self._focus_pixels], dtype=torch.float64)
        if counts.sum() == 0:
            name = self.tileset.class_names[class_id]
            raise UserError(f"--focus_class {name}: no training pixel of that class in {self.tileset.name}; "
                            "choose a class present in the training regions")
        self.focus_weights = counts / counts.sum()
        self.focus_fraction = float(fraction)

    def _class_pixels(self, region: ResolvedRegion, class_id: int) -> np.ndarray:
        """Flat indices (within the region's window) of the region's labelled pixels of ``class_id``,
        read band by band so a big tile is never loaded whole."""
        r0, c0 = region.window[0], region.window[2]
        width = region.window[3] - c0
        found = []
        for chunk in row_chunks(region.window):
            hit = self.reader.labels(region.tile, chunk) == class_id
            if region.mask is not None:
                hit &= region.mask[chunk[0] - r0:chunk[1] - r0, :]
            rows, cols = np.nonzero(hit)
            found.append((rows + chunk[0] - r0) * width + cols)
        return np.concatenate(found).astype(np.int64) if found else np.zeros(0, np.int64)

    def _position(self, k: int, generator: Optional[torch.Generator],
                  pixels: Optional[np.ndarray] = None) -> tuple[int, int]:
        """Top-left corner of a crop in region ``k`` (tile coordinates); with ``pixels`` (flat indices
        in the window), a crop holding one of them drawn uniformly (default: the region's mask)."""
        r0, r1, c0, c1 = self.regions[k].window
        row_low, row_high = _crop_range(r0, r1, self.crop)
        col_low, col_high = _crop_range(c0, c1, self.crop)
        pixels = self._mask_pixels[k] if pixels is None else pixels
        if pixels is not None:  # a crop around a labelled pixel drawn uniformly
            flat = int(pixels[int(torch.randint(0, len(pixels), (1,), generator=generator))])
            row, col = divmod(flat, c1 - c0)
            row, col = row + r0, col + c0
            row_low, row_high = max(row_low, row - self.crop + 1), min(row_high, row)
            col_low, col_high = max(col_low, col - self.crop + 1), min(col_high, col)
        return _uniform(row_low, row_high, generator), _uniform(col_low, col_high, generator)

    def _draw(self, n: int, generator: Optional[torch.Generator]) -> list[tuple[int, int, int]]:
        """``n`` (region, row, col) crops drawn with ``generator``."""
        if self.focus_fraction > 0:
            focused = (torch.rand(n, generator=generator) < self.focus_fraction).tolist()
            return [self._draw_focused(generator) if f else self._draw_any(generator) for f in focused]
        chosen = torch.multinomial(self.weights, n, replacement=True, generator=generator).tolist()
        return [(k, *self._position(k, generator)) for k in chosen]

    def _draw_any(self, generator: Optional[torch.Generator]) -> tuple[int, int, int]:
        """One crop drawn as without focus."""
        k = int(torch.multinomial(self.weights, 1, generator=generator))
        return (k, *self._position(k, generator))

    def _draw_focused(self, generator: Optional[torch.Generator]) -> tuple[int, int, int]:
        """One crop holding a pixel of the focus class, drawn uniformly over all such pixels."""
        k = int(torch.multinomial(self.focus_weights, 1, generator=generator))
        return (k, *self._position(k, generator, self._focus_pixels[k]))

    def _cut(self, k: int, row: int, col: int) -> tuple[list[np.ndarray], np.ndarray]:
        """Inputs (C, crop, crop) of every source and labels (crop, crop) of one crop; only the part
        inside the region's window is read, the rest is 0 / IGNORE."""
        region, crop = self.regions[k], self.crop
        r0, r1, c0, c1 = region.window
        top, bottom, left, right = max(row, r0), min(row + crop, r1), max(col, c0), min(col + crop, c1)
        inside = (top - row, bottom - row, left - col, right - col)
        window = (top, bottom, left, right)
        inputs = []
        for source, array in zip(self.sources, self.reader.read(region.tile, window)):
            out = np.zeros((crop, crop, array.shape[2]), dtype=np.float32)
            out[inside[0]:inside[1], inside[2]:inside[3]] = array
            inputs.append(out.transpose(2, 0, 1))
        labels = np.full((crop, crop), IGNORE, dtype=np.int64)
        part = self.reader.labels(region.tile, window)
        if region.mask is not None:
            part = np.where(region.mask[top - r0:bottom - r0, left - c0:right - c0], part, IGNORE)
        labels[inside[0]:inside[1], inside[2]:inside[3]] = part
        return inputs, labels

    def make(self, index: torch.Tensor, generator: Optional[torch.Generator] = None,
             augment: bool = False) -> Batch:
        """A batch of ``len(index)`` crops (see the class notes for how they are drawn)."""
        index = torch.as_tensor(index).reshape(-1)
        if generator is not None:
            draws = self._draw(len(index), generator)
        else:
            draws = [self._draw(1, torch_generator(self.seed, int(i)))[0] for i in index.tolist()]
        cut = [self._cut(*draw) for draw in draws]
        inputs = [torch.from_numpy(np.stack([c[0][s] for c in cut])) for s in range(len(self.sources))]
        target = torch.from_numpy(np.stack([c[1] for c in cut]))
        if augment and self.augment:
            codes = torch.randint(0, 8, (len(draws),), generator=generator)
            inputs = [dihedral(x, codes) for x in inputs]
            target = dihedral(target, codes)
        rows = torch.tensor([d[1] for d in draws], dtype=torch.long)
        cols = torch.tensor([d[2] for d in draws], dtype=torch.long)
        return Batch(inputs, target, rows, cols)

    def labelled_counts(self, n_classes: int) -> np.ndarray:
        """Pixels of each class over the regions (for class-balancing weights)."""
        counts = np.zeros(n_classes, dtype=np.int64)
        for region in self.regions:
            for chunk in row_chunks(region.window):
                labels = self.reader.labels(region.tile, chunk)
                if region.mask is not None:
                    r0, c0 = region.window[0], region.window[2]
                    labels = labels[region.mask[chunk[0] - r0:chunk[1] - r0, chunk[2] - c0:chunk[3] - c0]]
                labels = labels[labels != IGNORE]
                counts += np.bincount(labels.ravel(), minlength=n_classes)[:n_classes]
        return counts
