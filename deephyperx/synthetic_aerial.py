"""The embedded synthetic aerial scene: RGB image, DSM and labels of a small suburb, where height decides.

A stand-in for ISPRS Vaihingen/Potsdam (whose height rasters are not available here) for the
tests and the demo of the fusion networks (FuseNet, V-FuseNet, residual correction). Each tile
is ``size`` x ``size`` pixels at about 0.5 m, labelled with the five ISPRS classes:

* **impervious surfaces**: a road network (one or two roads each way, gently curving) and car
  parks beside the roads, at ground level;
* **building**: rectangular and L-shaped houses, flat or gabled, 3.5-16 m high. Their roofs draw
  their colour from **the same distribution as roads and car parks** (dark asphalt, grey and light
  concrete, reddish and brownish surfaces) with the same texture, so that colour alone cannot
  tell a roof from a road: height (and, for a network, context) must;
* **low vegetation**: lawns at ground level, green to dry yellow-green;
* **tree**: crowns as irregular blobs, in clusters, 5-14 m high, darker green and textured;
* **car**: small rectangles on the roads' lanes and in the car parks' stalls, about 1.5 m high.

Buildings and trees cast shadows (sun from the north-west), which darken whatever they fall on.
The image gets a slight blur and sensor noise. The DSM (metres above sea level) is the terrain
(a random base elevation, a tilt of up to about 15 m across a 256-pixel tile and gentle hills)
plus the objects' heights plus 0.1 m of noise, so that a raw DSM value says little about the
class: a normalised DSM (height above ground, :func:`normalised_dsm`, a morphological ground
estimate as nDSM products use) is written beside it. Tiles are deterministic under the seed.

On disk (:func:`write_synthetic_tiles`): ``tile<i>_rgb.png``, ``tile<i>_dsm.tif``,
``tile<i>_ndsm.tif`` (float32) and ``tile<i>_labels.png`` (class ids 0-4), regenerated only when
missing or made with other parameters. :func:`make_synthetic_aerial` wraps them in a TileSet with
sources "image", "dsm" and "ndsm"; the first ``n_tiles - 1`` tiles train, the last one tests.

How much height matters: a per-pixel decision tree (depth 6) trained on the training tiles to
tell roofs from impervious surfaces reaches a balanced accuracy on the test tile of 0.32-0.66
from RGB alone, 0.29-0.97 from RGB + raw DSM, and 1.00 from RGB + nDSM (seeds 0-3, tiles of 128
and 256 pixels); ``tests/test_synthetic_aerial.py`` checks below 0.75 and above 0.95.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import ndimage

from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.errors import UserError

if TYPE_CHECKING:
    from deephyperx.tiles import TileSet

IMPERVIOUS, BUILDING, LOW_VEGETATION, TREE, CAR = range(5)
CLASS_NAMES = ["impervious surfaces", "building", "low vegetation", "tree", "car"]
#: The ISPRS benchmark's colour of each class.
PALETTE = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0)]
#: Bumped whenever the generator changes, so that tiles on disk are regenerated.
GENERATOR_VERSION = 1
MIN_SIZE = 96

#: Paved surfaces AND roofs draw their base colour from these tones (RGB) with these weights.
PAVED_TONES = np.array([[88, 90, 96], [128, 127, 124], [172, 168, 160], [150, 96, 80], [122, 104, 88]], float)
PAVED_WEIGHTS = np.array([0.3, 0.25, 0.15, 0.15, 0.15])
#: Car paints: white, black, silver, grey, red, blue.
CAR_COLOURS = np.array([[225, 225, 228], [32, 32, 36], [185, 188, 192], [120, 122, 126], [165, 30, 32],
                        [35, 55, 140]], float)
LAWN, DRY_GRASS, FOLIAGE = np.array([98, 132, 70.0]), np.array([150, 146, 96.0]), np.array([52, 86, 44.0])
#: Standard deviation of the per-pixel texture of each class (grey levels); roofs share the roads'.
TEXTURE = {IMPERVIOUS: 6.0, BUILDING: 6.0, LOW_VEGETATION: 6.0, TREE: 16.0, CAR: 4.0}
ROAD_WIDTH, CAR_LENGTH, CAR_WIDTH = (10, 16), (9, 11), (4, 5)
#: Side of a building's main block, in pixels; no building holds a square wider than the largest.
BUILDING_SIDE = (14, 44)
#: Sun elevation (degrees) and the ground sampling distance (metres per pixel), for shadow lengths.
SUN_ELEVATION, GSD = 50.0, 0.5
SHADOW_FACTOR, SENSOR_NOISE, DSM_NOISE = 0.55, 3.0, 0.1
#: Gentle hills on the terrain: three waves of these amplitudes (m) and wavelengths (pixels).
HILL_AMPLITUDE, HILL_WAVELENGTH = (0.4, 1.0), (250.0, 500.0)


@dataclass
class _Canvas:
    """The tile being drawn: class ids, height above ground (m), base colour and brightness."""

    labels: np.ndarray
    height: np.ndarray
    colour: np.ndarray
    shade: np.ndarray

    @classmethod
    def empty(cls, size: int) -> "_Canvas":
        return cls(np.full((size, size), LOW_VEGETATION, np.uint8), np.zeros((size, size), np.float32),
                   np.zeros((size, size, 3), np.float32), np.ones((size, size), np.float32))

    @property
    def size(self) -> int:
        return self.labels.shape[0]

    def paint(self, mask: np.ndarray, label: int, colour: np.ndarray, height) -> None:
        self.labels[mask] = label
        self.colour[mask] = colour
        self.height[mask] = height if np.isscalar(height) else height[mask]


@dataclass
class _Road:
    """A road in its own frame: ``axis`` 0 runs along columns (horizontal), 1 along rows; ``centre``
    is the across-coordinate of its centre line at every along-coordinate."""

    axis: int
    centre: np.ndarray
    width: int

    def mask(self, size: int) -> np.ndarray:
        across = np.arange(size)[:, None]
        mask = np.abs(across - self.centre[None, :]) <= self.width / 2
        return mask if self.axis == 0 else mask.T


# --- public ------------------------------------------------------------------------------


def synthesise_tile(rng: np.random.Generator, size: int = 256) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One tile: image uint8 (size, size, 3), DSM float32 (size, size) in metres, labels uint8 (ids 0-4)."""
    if int(size) < MIN_SIZE:
        raise UserError(f"synthetic aerial tile size {size} is too small; use at least {MIN_SIZE} pixels")
    canvas = _Canvas.empty(int(size))
    _paint_lawn(rng, canvas)
    roads = _paint_roads(rng, canvas)
    parks = _paint_car_parks(rng, canvas, roads)
    _paint_buildings(rng, canvas)
    _paint_trees(rng, canvas)
    _paint_cars(rng, canvas, roads, parks)
    return _render_image(rng, canvas), _render_dsm(rng, canvas.height), canvas.labels


def normalised_dsm(dsm: np.ndarray, window: int = BUILDING_SIDE[1] + 5) -> np.ndarray:
    """Height above ground (m) from a DSM, as nDSM products estimate it: remove a ground plane
    fitted to the lowest points, take a grey opening of the (lightly smoothed) rest by a
    ``window`` x ``window`` square wider than any building (which keeps the ground and drops
    buildings, trees and cars), smooth it, and subtract. Removing the plane first keeps the
    tile's edges right (an opening near an edge would cut a sloping terrain)."""
    dsm = np.asarray(dsm, np.float64)
    plane = _ground_plane(dsm)
    residual = ndimage.gaussian_filter(dsm - plane, 1.0)
    ground = plane + ndimage.gaussian_filter(ndimage.grey_opening(residual, size=(window, window)), window / 8)
    return np.clip(dsm - ground, 0.0, None).astype(np.float32)


def _ground_plane(dsm: np.ndarray, iterations: int = 5) -> np.ndarray:
    """A plane fitted by least squares to the lower half of the points, refitted on the points
    below the previous fit, so that buildings and trees do not lift it."""
    rows, cols = np.indices(dsm.shape, dtype=np.float64)
    design = np.stack([np.ones(dsm.size), rows.ravel(), cols.ravel()], axis=1)
    values = dsm.ravel()
    keep = np.ones(dsm.size, bool)
    for _ in range(iterations):
        coefficients = np.linalg.lstsq(design[keep], values[keep], rcond=None)[0]
        residual = values - design @ coefficients
        keep = residual <= np.median(residual[keep])
    return (design @ coefficients).reshape(dsm.shape)


def write_synthetic_tiles(folder: Path, seed: int = 0, size: int = 256, n_tiles: int = 4) -> dict[str, dict[str, Path]]:
    """Write the tiles into ``folder`` (regenerated only when missing or made with other
    parameters): ``tile<i>_rgb.png``, ``tile<i>_dsm.tif``, ``tile<i>_ndsm.tif`` (float32 TIFFs) and
    ``tile<i>_labels.png``. Tile ``i`` is drawn from ``default_rng([seed, i])``, so adding tiles
    never changes the others. Returns tile name -> {"image", "dsm", "ndsm", "labels"} paths."""
    if int(n_tiles) < 2:
        raise UserError(f"n_tiles {n_tiles} is too few; the synthetic aerial scene needs at least 2 (train and test)")
    folder = Path(folder)
    paths = {f"tile{i}": _tile_paths(folder, f"tile{i}") for i in range(int(n_tiles))}
    manifest = {"generator_version": GENERATOR_VERSION, "seed": int(seed), "size": int(size), "n_tiles": int(n_tiles)}
    manifest_path = folder / "synthetic_aerial.json"
    if _up_to_date(manifest_path, manifest, paths):
        return paths
    manifest_path.unlink(missing_ok=True)  # an interrupted rewrite must never look up to date
    for i, (name, files) in enumerate(paths.items()):
        image, dsm, labels = synthesise_tile(np.random.default_rng([int(seed), i]), int(size))
        _write_tile(files, image, dsm, labels)
    atomic_write_text(manifest_path, json.dumps(manifest) + "\n")
    return paths


def make_synthetic_aerial(folder: Path, seed: int = 0, size: int = 256, n_tiles: int = 4) -> "TileSet":
    """The synthetic aerial scene as a :class:`deephyperx.tiles.TileSet` of tiles written to
    ``folder``: sources "image" (RGB), "dsm" and "ndsm"; the first ``n_tiles - 1`` tiles train,
    the last one tests (whole tiles, so test pixels are never seen in training)."""
    from deephyperx.tiles import Region, Tile, TileSet, ValueDecoder

    paths = write_synthetic_tiles(Path(folder), seed, size, n_tiles)
    tiles = {name: Tile(name=name, sources={key: str(files[key]) for key in ("image", "dsm", "ndsm")},
                        labels=str(files["labels"])) for name, files in paths.items()}
    names = list(tiles)
    return TileSet(
        name="SyntheticAerial",
        tiles=tiles,
        class_names=list(CLASS_NAMES),
        palette=list(PALETTE),
        source_channels={"image": 3, "dsm": 1, "ndsm": 1},
        train=[Region(tile=name) for name in names[:-1]],
        test=[Region(tile=names[-1])],
        label_decoder=ValueDecoder(range(len(CLASS_NAMES)), name="SyntheticAerial labels"),
        description=f"embedded synthetic aerial scene (seed {seed}, {n_tiles} tiles of {size}x{size}): "
                    "roofs coloured like roads, so height decides",
    )


# --- layout ------------------------------------------------------------------------------


def _paint_lawn(rng: np.random.Generator, canvas: _Canvas) -> None:
    """Everything starts as low vegetation: lawns varying smoothly between green and dry grass."""
    size = canvas.size
    dryness = np.clip(0.35 + 0.3 * _smooth_field(rng, (size, size), size / 10), 0.0, 1.0)[..., None]
    canvas.colour[:] = (1 - dryness) * LAWN + dryness * DRY_GRASS
    canvas.height[:] = np.clip(0.1 + 0.08 * _smooth_field(rng, (size, size), 3.0), 0.0, None)


def _paint_roads(rng: np.random.Generator, canvas: _Canvas) -> list[_Road]:
    """One or two roads in each direction, gently curving, each with its own paved colour."""
    size = canvas.size
    roads = []
    for axis in (0, 1):
        count = max(1, int(round(size / 200 * rng.uniform(0.8, 1.6))))
        for position in _spaced_positions(rng, count, 0.15 * size, 0.85 * size, 0.3 * size):
            width = int(rng.integers(*ROAD_WIDTH, endpoint=True))
            along = np.arange(size)
            amplitude, period = rng.uniform(0, 0.03 * size), rng.uniform(1.0, 2.5) * size
            centre = position + amplitude * np.sin(2 * np.pi * along / period + rng.uniform(0, 2 * np.pi))
            road = _Road(axis, centre, width)
            canvas.paint(road.mask(size), IMPERVIOUS, _paved_colour(rng), 0.0)
            roads.append(road)
    return roads


def _paint_car_parks(rng: np.random.Generator, canvas: _Canvas, roads: list[_Road]) -> list[tuple]:
    """One or two car parks, each a rectangle touching a road on one side. Returns
    ``(row0, col0, row1, col1, axis)`` with the axis of the road it lies along."""
    size = canvas.size
    parks = []
    for _ in range(int(rng.integers(1, 3))):
        road = roads[int(rng.integers(len(roads)))]
        length, depth = int(rng.integers(30, 61)), int(rng.integers(22, 35))
        start = int(rng.integers(0, size - length))
        centre = road.centre[start:start + length]
        if rng.random() < 0.5:  # on the side of higher rows (columns for a vertical road)
            across0 = int(np.floor(centre.min() + road.width / 2))
            across1 = across0 + depth
        else:
            across1 = int(np.ceil(centre.max() - road.width / 2)) + 1
            across0 = across1 - depth
        across0, across1 = max(across0, 0), min(across1, size)
        if across1 - across0 < 12:
            continue
        box = (across0, start, across1, start + length) if road.axis == 0 else (start, across0, start + length, across1)
        mask = np.zeros((size, size), bool)
        mask[box[0]:box[2], box[1]:box[3]] = True
        mask &= canvas.labels == LOW_VEGETATION
        canvas.paint(mask, IMPERVIOUS, _paved_colour(rng), 0.0)
        parks.append((*box, road.axis))
    return parks


def _paint_buildings(rng: np.random.Generator, canvas: _Canvas) -> None:
    """Houses on free lawn, 3 px from anything paved or built: rectangles (flat or gabled) and
    L shapes (flat), until about a fifth of the tile is built or space runs out."""
    size = canvas.size
    built, attempts = 0, 0
    while (built < 0.2 * size * size and attempts < 400) or built == 0 and attempts < 4000:
        attempts += 1
        rows, cols = (int(v) for v in rng.integers(BUILDING_SIDE[0], BUILDING_SIDE[1] + 1, size=2))
        row0, col0 = int(rng.integers(-4, size - rows + 4)), int(rng.integers(-4, size - cols + 4))
        parts = [(row0, col0, row0 + rows, col0 + cols)]
        gabled = rng.random() < 0.5
        if not gabled and rng.random() < 0.4:
            wing_rows, wing_cols = int(rng.integers(10, rows + 1)), int(rng.integers(10, 20))
            parts.append((row0 + rows - wing_rows, col0 + cols, row0 + rows, col0 + cols + wing_cols))
        if not all(_free(canvas, part, margin=3) for part in parts):
            continue
        footprint = np.zeros((size, size), bool)
        for part in parts:
            footprint |= _rectangle(size, *part)
        if not footprint.any():
            continue
        height, shade = _roof(rng, footprint, rng.uniform(3.5, 16.0), gabled, parts[0])
        canvas.paint(footprint, BUILDING, _paved_colour(rng), height)
        canvas.shade[footprint] = shade[footprint]
        built += int(footprint.sum())


def _roof(rng: np.random.Generator, footprint: np.ndarray, eave: float, gabled: bool,
          box: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Roof height (m) and brightness: flat, or gabled with the ridge along the long side and the
    two slopes lit differently."""
    size = footprint.shape[0]
    height = np.full((size, size), eave, np.float32)
    shade = np.ones((size, size), np.float32)
    if gabled:
        row0, col0, row1, col1 = box
        rows, cols = np.indices((size, size), dtype=np.float32)
        across, middle, half = ((rows, (row0 + row1 - 1) / 2, (row1 - row0) / 2) if col1 - col0 >= row1 - row0
                                else (cols, (col0 + col1 - 1) / 2, (col1 - col0) / 2))
        offset = across - middle
        height += rng.uniform(1.5, 4.0) * np.clip(1 - np.abs(offset) / half, 0, 1)
        shade = np.where(offset < 0, 1.1, 0.9).astype(np.float32)  # sun from the north-west
    else:
        height += rng.uniform(0.0, 0.4)
    return height, shade


def _paint_trees(rng: np.random.Generator, canvas: _Canvas) -> None:
    """Clusters of crowns on the lawns: irregular blobs, dome-shaped, lit from the north-west."""
    size = canvas.size
    lawn_depth = ndimage.distance_transform_edt(canvas.labels == LOW_VEGETATION)
    covered, target, attempts = 0, 0.12 * size * size, 0
    while (covered < target and attempts < 300) or covered == 0 and attempts < 3000:
        attempts += 1
        centre = rng.integers(0, size, size=2)
        for _ in range(int(rng.integers(1, 7))):
            radius = rng.uniform(4.0, 10.0)
            crown_centre = np.clip(centre + rng.normal(0, radius, size=2), 0, size - 1)
            row, col = np.round(crown_centre).astype(int)
            if lawn_depth[row, col] < radius / 2:
                continue
            covered += _paint_crown(rng, canvas, crown_centre, radius)


def _paint_crown(rng: np.random.Generator, canvas: _Canvas, centre: np.ndarray, radius: float) -> int:
    """One crown; only lawn pixels become tree (crowns stop at walls and kerbs). Returns its area."""
    reach = int(np.ceil(radius * 1.4)) + 1
    row0, col0 = (max(int(v) - reach, 0) for v in centre)
    row1, col1 = (min(int(v) + reach + 1, canvas.size) for v in centre)
    window = (slice(row0, row1), slice(col0, col1))
    rows, cols = np.mgrid[row0:row1, col0:col1].astype(np.float32)
    d_row, d_col = rows - centre[0], cols - centre[1]
    angle = np.arctan2(d_row, d_col)
    wobble = 1 + sum(rng.uniform(0, 0.12) * np.cos(k * angle + rng.uniform(0, 2 * np.pi)) for k in (2, 3, 5))
    distance = np.hypot(d_row, d_col) / (radius * wobble)
    labels, height = canvas.labels[window], canvas.height[window]
    top = rng.uniform(5.0, 14.0)
    crown = (top * (0.55 + 0.45 * np.sqrt(np.clip(1 - distance ** 2, 0, 1)))).astype(np.float32)
    # only lawn or a lower crown (a lower crown hides under a taller one)
    mask = (distance < 1) & ((labels == LOW_VEGETATION) | (labels == TREE)) & (crown >= height)
    labels[mask] = TREE
    height[mask] = crown[mask]
    canvas.colour[window][mask] = FOLIAGE * rng.uniform(0.85, 1.15) + rng.normal(0, 4, 3)
    canvas.shade[window][mask] = (1 - 0.25 * (d_row + d_col) / (radius * np.sqrt(2)))[mask]
    return int(mask.sum())


def _paint_cars(rng: np.random.Generator, canvas: _Canvas, roads: list[_Road], parks: list[tuple]) -> None:
    """Cars along both lanes of every road and in rows of stalls in the car parks; a car is only
    placed where it and a 1-pixel margin around it are impervious and free of other cars."""
    count = sum(_cars_on_road(rng, canvas, road) for road in roads)
    count += sum(_cars_in_park(rng, canvas, park) for park in parks)
    attempts = 0
    while count == 0 and attempts < 1000:  # every tile holds at least one car
        attempts += 1
        road = roads[int(rng.integers(len(roads)))]
        count += _car_in_lane(rng, canvas, road, int(rng.integers(0, canvas.size - CAR_LENGTH[1])), 0.0)
    if count == 0:
        raise RuntimeError("no room for a car on any road")  # cannot happen for sizes >= MIN_SIZE


def _cars_on_road(rng: np.random.Generator, canvas: _Canvas, road: _Road) -> int:
    count = 0
    for lane in (-1, 1):
        along = int(rng.integers(0, 30))
        while along < canvas.size - CAR_LENGTH[1]:
            count += _car_in_lane(rng, canvas, road, along, lane * road.width / 4)
            along += int(rng.integers(14, 60))
    return count


def _car_in_lane(rng: np.random.Generator, canvas: _Canvas, road: _Road, along: int, offset: float) -> int:
    length, width = int(rng.integers(*CAR_LENGTH, endpoint=True)), int(rng.integers(*CAR_WIDTH, endpoint=True))
    across0 = int(round(road.centre[along + length // 2] + offset - width / 2))
    if road.axis == 0:
        return _place_car(rng, canvas, across0, along, width, length, front=rng.random() < 0.5, along_cols=True)
    return _place_car(rng, canvas, along, across0, length, width, front=rng.random() < 0.5, along_cols=False)


def _cars_in_park(rng: np.random.Generator, canvas: _Canvas, park: tuple) -> int:
    """Rows of stalls perpendicular to the road, two rows when the park is deep enough."""
    row0, col0, row1, col1, axis = park
    depth = (row1 - row0) if axis == 0 else (col1 - col0)
    length = CAR_LENGTH[1]
    starts = [2, depth - length - 2] if depth >= 2 * length + 6 else [(depth - length) // 2]
    count = 0
    for start in starts:
        span = range(col0 + 1, col1 - CAR_WIDTH[1], CAR_WIDTH[1] + 2) if axis == 0 else \
            range(row0 + 1, row1 - CAR_WIDTH[1], CAR_WIDTH[1] + 2)
        for position in span:
            if rng.random() > 0.65:
                continue
            width = int(rng.integers(*CAR_WIDTH, endpoint=True))
            car_length = int(rng.integers(*CAR_LENGTH, endpoint=True))
            if axis == 0:
                count += _place_car(rng, canvas, row0 + start, position, car_length, width,
                                    front=rng.random() < 0.5, along_cols=False)
            else:
                count += _place_car(rng, canvas, position, col0 + start, width, car_length,
                                    front=rng.random() < 0.5, along_cols=True)
    return count


def _place_car(rng: np.random.Generator, canvas: _Canvas, row0: int, col0: int, rows: int, cols: int,
               front: bool, along_cols: bool) -> int:
    """Paint a car with a darker windscreen and rear window if the spot is free; return 1 if placed."""
    size = canvas.size
    if row0 < 1 or col0 < 1 or row0 + rows > size - 1 or col0 + cols > size - 1:
        return 0
    around = canvas.labels[row0 - 1:row0 + rows + 1, col0 - 1:col0 + cols + 1]
    if not np.all(around == IMPERVIOUS):
        return 0
    mask = _rectangle(size, row0, col0, row0 + rows, col0 + cols)
    height = np.zeros((size, size), np.float32)
    height[mask] = 1.5
    height[mask & ~ndimage.binary_erosion(mask)] = 1.1  # rounded body edges
    canvas.paint(mask, CAR, CAR_COLOURS[int(rng.integers(len(CAR_COLOURS)))] + rng.normal(0, 5, 3), height)
    length = cols if along_cols else rows
    position = np.arange(length) / length
    position = position if front else 1 - position
    glass = np.ones(length)
    glass[(position > 0.2) & (position < 0.35)] = 0.45  # windscreen
    glass[(position > 0.75) & (position < 0.85)] = 0.6  # rear window
    window = canvas.shade[row0:row0 + rows, col0:col0 + cols]
    window[:] = glass[None, :] if along_cols else glass[:, None]
    return 1


# --- rendering ---------------------------------------------------------------------------


def _render_image(rng: np.random.Generator, canvas: _Canvas) -> np.ndarray:
    """Base colours x brightness x shadows, plus class texture, a slight blur and sensor noise."""
    size = canvas.size
    texture_std = np.zeros((size, size), np.float32)
    for label, std in TEXTURE.items():
        texture_std[canvas.labels == label] = std
    clumps = ndimage.gaussian_filter(rng.standard_normal((size, size)), 0.8) * 2.0  # leafy texture
    grain = np.where(canvas.labels == TREE, clumps, rng.standard_normal((size, size)))
    shadow = ndimage.gaussian_filter(_shadows(canvas.height).astype(np.float32), 0.7)
    light = canvas.shade * (1 - (1 - SHADOW_FACTOR) * shadow)
    image = canvas.colour * light[..., None] + (texture_std * grain)[..., None]
    image = ndimage.gaussian_filter(image, sigma=(0.6, 0.6, 0))
    image += rng.normal(0, SENSOR_NOISE, image.shape)
    return np.clip(np.round(image), 0, 255).astype(np.uint8)


def _shadows(height: np.ndarray) -> np.ndarray:
    """Pixels in the shadow of a taller object, with the sun in the north-west (shadows fall to the
    south-east): a pixel is shaded when a pixel k diagonal steps up-sun rises above the sun's ray."""
    drop_per_step = np.sqrt(2) * GSD * np.tan(np.radians(SUN_ELEVATION))
    steps = int(np.ceil(float(height.max()) / drop_per_step)) + 1
    shadow = np.zeros(height.shape, bool)
    for k in range(1, steps):
        upsun = np.zeros_like(height)
        upsun[k:, k:] = height[:-k, :-k]
        shadow |= upsun - k * drop_per_step > height + 0.3
    return shadow


def _render_dsm(rng: np.random.Generator, height: np.ndarray) -> np.ndarray:
    """Terrain (base elevation, tilt, hills) + object heights + noise, float32 metres."""
    rows, cols = np.indices(height.shape, dtype=np.float64)
    slope = rng.uniform(0.01, 0.06)  # metres per pixel: a 1-6 % grade at 0.5 m pixels
    direction = rng.uniform(0, 2 * np.pi)
    terrain = rng.uniform(180.0, 320.0) + slope * (np.cos(direction) * cols + np.sin(direction) * rows)
    terrain += _hills(rng, rows, cols)
    return (terrain + height + rng.normal(0, DSM_NOISE, height.shape)).astype(np.float32)


def _hills(rng: np.random.Generator, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    """Gentle hills: a sum of three long plane waves, the same whatever the tile size (so the
    terrain is smooth enough for a ground estimate by opening on small tiles too)."""
    hills = np.zeros(rows.shape)
    for _ in range(3):
        direction = rng.uniform(0, 2 * np.pi)
        wavelength, amplitude = rng.uniform(*HILL_WAVELENGTH), rng.uniform(*HILL_AMPLITUDE)
        phase = 2 * np.pi * (np.cos(direction) * cols + np.sin(direction) * rows) / wavelength
        hills += amplitude * np.cos(phase + rng.uniform(0, 2 * np.pi))
    return hills


# --- helpers -----------------------------------------------------------------------------


def _paved_colour(rng: np.random.Generator) -> np.ndarray:
    """A road's, car park's or roof's colour: one tone of :data:`PAVED_TONES`, brightened or dimmed, jittered."""
    tone = PAVED_TONES[rng.choice(len(PAVED_TONES), p=PAVED_WEIGHTS)]
    return tone * rng.uniform(0.88, 1.12) + rng.normal(0, 6, 3)


def _smooth_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """Smooth Gaussian noise of unit standard deviation."""
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma, mode="wrap")
    return field / (field.std() + 1e-12)


def _spaced_positions(rng: np.random.Generator, count: int, low: float, high: float, gap: float) -> list[float]:
    """``count`` positions in [low, high] at least ``gap`` apart (fewer if they do not fit)."""
    positions: list[float] = []
    for _ in range(200):
        if len(positions) == count:
            break
        candidate = rng.uniform(low, high)
        if all(abs(candidate - p) >= gap for p in positions):
            positions.append(candidate)
    return sorted(positions)


def _rectangle(size: int, row0: int, col0: int, row1: int, col1: int) -> np.ndarray:
    mask = np.zeros((size, size), bool)
    mask[max(row0, 0):max(row1, 0), max(col0, 0):max(col1, 0)] = True
    return mask


def _free(canvas: _Canvas, box: tuple[int, int, int, int], margin: int) -> bool:
    """Whether the rectangle ``box``, grown by ``margin`` pixels, covers only lawn (inside the tile)."""
    row0, col0, row1, col1 = box
    size = canvas.size
    window = canvas.labels[max(row0 - margin, 0):min(row1 + margin, size),
                           max(col0 - margin, 0):min(col1 + margin, size)]
    return window.size > 0 and bool(np.all(window == LOW_VEGETATION))


def _tile_paths(folder: Path, name: str) -> dict[str, Path]:
    return {"image": folder / f"{name}_rgb.png", "dsm": folder / f"{name}_dsm.tif",
            "ndsm": folder / f"{name}_ndsm.tif", "labels": folder / f"{name}_labels.png"}


def _up_to_date(manifest_path: Path, manifest: dict, paths: dict[str, dict[str, Path]]) -> bool:
    try:
        written = json.loads(manifest_path.read_text())
    except (OSError, ValueError):
        return False
    return written == manifest and all(p.is_file() for files in paths.values() for p in files.values())


def _write_tile(files: dict[str, Path], image: np.ndarray, dsm: np.ndarray, labels: np.ndarray) -> None:
    """PNG image and labels (Pillow), float32 DSM and nDSM TIFFs (tifffile, uncompressed so
    readers can memory-map them); every file written atomically."""
    import tifffile
    from PIL import Image

    for key, array in (("image", image), ("labels", labels)):
        with atomic_path(files[key]) as tmp:
            Image.fromarray(array).save(tmp, format="PNG")
    for key, array in (("dsm", dsm), ("ndsm", normalised_dsm(dsm))):
        with atomic_path(files[key]) as tmp:
            tifffile.imwrite(tmp, np.asarray(array, np.float32))

