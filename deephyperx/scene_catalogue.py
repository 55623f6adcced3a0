"""A catalogue of many scenes of one sensor (Sentinel-2 tiles, MiniFrance-like collections) that
train one centre-pixel classifier together.

A catalogue is a YAML file::

    name: s2_tiles                   # default: the file's stem
    folder: data                     # base of relative paths (default: the YAML file's folder)
    class_names: [water, forest, crop]
    label_values: [1, 2, 3]          # value of each class in the label files (default 1..K)
    ignore: 0                        # label value(s) of unlabelled pixels (default 0)
    cube_key: cube                   # dataset / variable in .h5 / .mat files (per scene too)
    label_key: labels
    split:
      test_scenes: [t31, t32]        # whole scenes held out for testing
      val_scenes: [t30]              # whole scenes for validation
      test_fraction: 0.3             # or: a random pixel split inside every scene without a role
      val_fraction: 0.05             # share of training scenes' labelled pixels kept for validation
      seed: 0                        # seed of the pixel split (the split belongs to the catalogue)
    scenes:
      - {name: t01, cube: t01.npy, labels: t01_gt.npy}
      - {name: t30, cube: t30.h5, labels: t30_gt.h5, cube_key: data, role: val}

A scene's role is its own ``role`` (train, val, test or split), else ``test``/``val`` when the
split names it, else ``split`` when the split gives a ``test_fraction``, else ``train``. The
pixel split is a fixed hash of (split seed, scene, pixel), so any window's roles can be computed
without reading the rest of the scene and every model and run seed is scored on the same pixels.

Loading checks everything a header can tell (files, shapes, band counts, class declarations)
without reading pixels (MATLAB v5 files, which have no window reader, are read once); label
values are checked when the labels are first streamed
(:func:`deephyperx.catalogue_sampling.build_index`). Files are read a band of rows at a time
through :mod:`deephyperx.lazy_cube` (``.npy`` and ENVI memory maps opened per read, HDF5 slices,
TIFF memory maps or strips); MATLAB v5 files and PNG/JPEG labels are read whole, so each of
their scenes is one block.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import yaml

from deephyperx.errors import UserError
from deephyperx.safe_paths import check_name
from deephyperx.scene import IGNORE, default_palette
from deephyperx.tiles import PIL_SUFFIXES, ValueDecoder
from deephyperx.yaml_files import read_yaml_mapping

#: Pixel roles, as stored in int8 role maps (NONE: unlabelled or outside every set).
NONE, TRAIN, VAL, TEST = 0, 1, 2, 3
ROLE_CODES = {"train": TRAIN, "val": VAL, "test": TEST}
SCENE_ROLES = ("train", "val", "test", "split")

CATALOGUE_KEYS = {"name", "folder", "class_names", "label_values", "ignore", "cube_key", "label_key", "split",
                  "scenes", "palette"}
SPLIT_KEYS = {"test_scenes", "val_scenes", "test_fraction", "val_fraction", "seed"}
SCENE_KEYS = {"name", "cube", "labels", "cube_key", "label_key", "role"}


# ----- raster files read a band of rows at a time -------------------------------------------------

class RasterFile:
    """A cube (rows, cols, bands) or label raster (rows, cols) on disk: its shape from the header,
    and :meth:`read_rows` for a band of rows, through :func:`deephyperx.lazy_cube.open_lazy_cube`
    (PNG/JPEG labels through :func:`deephyperx.tiles.open_raster`). Nothing stays open or in memory
    between reads, so many files cost neither memory nor file handles; files that cannot be read
    by window (MATLAB v5, images) are reopened for each read and are ``windowed = False``."""

    def __init__(self, path: Path, key: Optional[str] = None):
        from deephyperx.lazy_cube import open_lazy_cube

        self.path, self.key = Path(path), key
        if not self.path.is_file():
            raise UserError(f"{self.path}: no such file; check the path in the catalogue (relative paths start "
                            "at the catalogue's folder)")
        self._cube = None
        if self.path.suffix.lower() in PIL_SUFFIXES:
            from deephyperx.tiles import raster_info

            info = raster_info(self.path)
            self.shape, self.dtype, self.windowed = (info.rows, info.cols, info.channels), None, False
            return
        cube = open_lazy_cube(self.path, key)
        self.shape, self.dtype, self.key = tuple(cube.shape), cube.dtype, cube.key
        self.windowed = cube.resident_bytes == 0
        if self.windowed:  # a whole-read file is not held: it is reopened for each read
            self._cube = cube

    @property
    def rows(self) -> int:
        return int(self.shape[0])

    @property
    def cols(self) -> int:
        return int(self.shape[1])

    @property
    def channels(self) -> int:
        return int(self.shape[2])

    def read_rows(self, row0: int, row1: int) -> np.ndarray:
        """Rows ``row0:row1`` as a float32 (rows, cols, channels) array (label images: their own type);
        a fresh array, shared with nothing the file object keeps, so the caller may change it."""
        window = (row0, row1, 0, self.cols)
        if self.path.suffix.lower() in PIL_SUFFIXES:
            from deephyperx.tiles import open_raster

            return open_raster(self.path).read(window)
        from deephyperx.lazy_cube import open_lazy_cube

        cube = self._cube if self._cube is not None else open_lazy_cube(self.path, self.key)
        return cube.read(window)


# ----- the catalogue -------------------------------------------------------------------------------

@dataclass(frozen=True)
class CatalogueScene:
    """One scene: its cube and label files (headers read) and its role."""

    name: str
    cube: RasterFile
    labels: RasterFile
    role: str

    @property
    def shape(self) -> tuple[int, int]:
        return self.cube.rows, self.cube.cols

    @property
    def windowed(self) -> bool:
        """Whether both files can be read a band of rows at a time."""
        return self.cube.windowed and self.labels.windowed


@dataclass
class Catalogue:
    """Scenes of one sensor with shared classes, and how their pixels split into train/val/test."""

    name: str
    path: Path
    class_names: list[str]
    label_values: list[int]
    ignored: list[int]
    scenes: list[CatalogueScene]
    test_fraction: float = 0.0
    val_fraction: float = 0.0
    split_seed: int = 0
    palette: Optional[list[tuple[int, int, int]]] = None

    def __post_init__(self) -> None:
        if self.palette is None:
            self.palette = default_palette(len(self.class_names))
        self._decoders = {s.name: ValueDecoder(self.label_values, self.ignored,
                                               name=f"catalogue {self.name}: labels of scene '{s.name}' "
                                                    f"({s.labels.path})") for s in self.scenes}

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def n_bands(self) -> int:
        return self.scenes[0].cube.channels

    @property
    def cube_bytes(self) -> int:
        """Bytes of all cubes as float32 (what normalised scenes would take in memory)."""
        return int(sum(s.cube.rows * s.cube.cols * s.cube.channels * 4 for s in self.scenes))

    def classes(self, index: int, row0: int, row1: int) -> np.ndarray:
        """Class ids (rows, cols) int64 of rows ``row0:row1`` of scene ``index`` (IGNORE where unlabelled);
        a label value that is neither a class value nor ignored raises a UserError."""
        scene = self.scenes[index]
        raw = scene.labels.read_rows(row0, row1)
        return self._decoders[scene.name](raw)

    def roles(self, index: int, row0: int, row1: int, classes: np.ndarray) -> np.ndarray:
        """Role codes (rows, cols) int8 (:data:`TRAIN`, :data:`VAL`, :data:`TEST` or :data:`NONE`) of
        rows ``row0:row1`` of scene ``index`` whose class ids are ``classes``."""
        role = self.scenes[index].role
        roles = np.zeros(classes.shape, dtype=np.int8)
        labelled = classes != IGNORE
        if role in ("val", "test"):
            roles[labelled] = ROLE_CODES[role]
            return roles
        width = self.scenes[index].cube.cols
        flat = np.arange(row0 * width, row1 * width, dtype=np.uint64).reshape(classes.shape)
        draw = pixel_uniform(self.split_seed, index, flat)
        test_share = self.test_fraction if role == "split" else 0.0
        roles[labelled] = TRAIN
        roles[labelled & (draw < test_share + self.val_fraction)] = VAL
        roles[labelled & (draw < test_share)] = TEST
        return roles

    def read_cube(self, index: int, row0: int, row1: int) -> np.ndarray:
        """Raw cube rows ``row0:row1`` of scene ``index`` as a fresh (rows, cols, bands) array."""
        return self.scenes[index].cube.read_rows(row0, row1)


def pixel_uniform(seed: int, scene: int, flat: np.ndarray) -> np.ndarray:
    """A uniform number in [0, 1) per pixel, a fixed hash (SplitMix64) of (seed, scene, flat index):
    the same pixel always draws the same number, whichever window it is read in."""
    key = np.uint64((int(seed) * 0x9E3779B97F4A7C15 + (int(scene) + 1) * 0xD1B54A32D192ED03) % 2**64)
    with np.errstate(over="ignore"):
        z = (flat.astype(np.uint64) + np.uint64(1)) * np.uint64(0x9E3779B97F4A7C15) + key
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2 ** 53)


# ----- loading and checking --------------------------------------------------------------------------

def load_catalogue(path: str | Path) -> Catalogue:
    """Read and check a catalogue YAML file (headers only: no pixel is read)."""
    path = Path(path)
    data = read_yaml_mapping(path, "catalogue", "name, class_names, scenes, ...")
    where = f"catalogue {path}"
    _known_keys(data, CATALOGUE_KEYS, where)
    folder = path.parent / str(data.get("folder", "."))
    class_names = _class_names(data.get("class_names"), where)
    values = _int_list(data.get("label_values", list(range(1, len(class_names) + 1))), "label_values", where)
    ignored = _int_list(data.get("ignore", 0), "ignore", where)
    if len(values) != len(class_names):
        raise UserError(f"{where}: {len(class_names)} class_names but {len(values)} label_values; "
                        "give one value per class")
    ValueDecoder(values, ignored, name=f"{where}: label_values and ignore")  # distinct values, or one line
    split = data.get("split") or {}
    if not isinstance(split, dict):
        raise UserError(f"{where}: split must be a mapping (test_scenes, val_scenes, test_fraction, "
                        "val_fraction, seed)")
    _known_keys(split, SPLIT_KEYS, f"{where}: split")
    test_fraction = _fraction(split.get("test_fraction", 0.0), "split.test_fraction", where)
    val_fraction = _fraction(split.get("val_fraction", 0.0), "split.val_fraction", where)
    if test_fraction + val_fraction >= 1:
        raise UserError(f"{where}: split.test_fraction {test_fraction} + split.val_fraction {val_fraction} must be "
                        "below 1 so that some pixels train")
    seed = split.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise UserError(f"{where}: split.seed {seed!r} must be a whole number")
    scenes = _scenes(data.get("scenes"), folder, data, split, test_fraction, where)
    name = check_name(data.get("name") or path.stem, f"{where}: name", "give the catalogue a plain name")
    catalogue = Catalogue(name, path, class_names, values, ignored, scenes,
                          test_fraction, val_fraction, seed, _palette(data.get("palette"), len(class_names), where))
    _check_roles(catalogue, where)
    return catalogue


def _known_keys(data: dict, known: set[str], where: str) -> None:
    unknown = sorted(set(map(str, data)) - known)
    if unknown:
        raise UserError(f"{where}: unknown key '{unknown[0]}'; known keys: {', '.join(sorted(known))}")


def _class_names(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or len(value) < 2 or not all(isinstance(v, (str, int)) for v in value):
        raise UserError(f"{where}: class_names must list at least two class names, e.g. [water, forest]")
    names = [str(v) for v in value]
    if len(set(names)) != len(names):
        raise UserError(f"{where}: class_names {names} repeat a name; give each class once")
    return names


def _int_list(value: Any, key: str, where: str) -> list[int]:
    items = value if isinstance(value, list) else [value]
    if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in items):
        raise UserError(f"{where}: {key} {value!r} must be whole numbers >= 0 (label values in the label files)")
    return [int(v) for v in items]


def _fraction(value: Any, key: str, where: str) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value < 1:
        raise UserError(f"{where}: {key} {value!r} must be a fraction in [0, 1)")
    return float(value)


def _palette(value: Any, n_classes: int, where: str) -> Optional[list[tuple[int, int, int]]]:
    if value is None:
        return None
    def colour(c: Any) -> bool:
        return isinstance(c, list) and len(c) == 3 and all(isinstance(v, int) and 0 <= v <= 255 for v in c)

    if not isinstance(value, list) or len(value) < n_classes or not all(colour(c) for c in value):
        raise UserError(f"{where}: palette must give one [R, G, B] colour (0..255) per class ({n_classes} classes)")
    return [tuple(c) for c in value]


def _scene_role(entry: dict, name: str, split: dict, test_fraction: float, where: str) -> str:
    role = entry.get("role")
    if role is not None:
        if role not in SCENE_ROLES:
            raise UserError(f"{where}: scene '{name}' has role {role!r}; choose one of {', '.join(SCENE_ROLES)}")
        return str(role)
    if name in (split.get("test_scenes") or []):
        return "test"
    if name in (split.get("val_scenes") or []):
        return "val"
    return "split" if test_fraction > 0 else "train"


def _scenes(entries: Any, folder: Path, data: dict, split: dict, test_fraction: float,
            where: str) -> list[CatalogueScene]:
    """Every scene's files opened (headers only) and checked against the first scene's bands."""
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{where}: scenes must list at least one scene ({{cube: FILE, labels: FILE}})")
    scenes: list[CatalogueScene] = []
    for number, entry in enumerate(entries):
        if not isinstance(entry, dict) or "cube" not in entry or "labels" not in entry:
            raise UserError(f"{where}: scene #{number + 1} must be a mapping with a cube and labels file")
        _known_keys(entry, SCENE_KEYS, f"{where}: scene #{number + 1}")
        name = str(entry.get("name") or Path(str(entry["cube"])).stem)
        if any(s.name == name for s in scenes):
            raise UserError(f"{where}: two scenes are named '{name}'; give each scene its own name")
        cube = RasterFile(folder / str(entry["cube"]), entry.get("cube_key", data.get("cube_key")))
        labels = RasterFile(folder / str(entry["labels"]), entry.get("label_key", data.get("label_key")))
        _check_scene_files(name, cube, labels, scenes[0] if scenes else None, where)
        scenes.append(CatalogueScene(name, cube, labels, _scene_role(entry, name, split, test_fraction, where)))
    names = {s.name for s in scenes}
    for key in ("test_scenes", "val_scenes"):
        listed = split.get(key) or []
        if not isinstance(listed, list):
            raise UserError(f"{where}: split.{key} must be a list of scene names")
        missing = [str(n) for n in listed if str(n) not in names]
        if missing:
            raise UserError(f"{where}: split.{key} names scene '{missing[0]}', which is not in the catalogue "
                            f"(scenes: {', '.join(sorted(names)[:10])})")
    both = set(map(str, split.get("test_scenes") or [])) & set(map(str, split.get("val_scenes") or []))
    if both:
        raise UserError(f"{where}: scene '{sorted(both)[0]}' is in both split.test_scenes and split.val_scenes")
    return scenes


def _check_scene_files(name: str, cube: RasterFile, labels: RasterFile, first: Optional[CatalogueScene],
                       where: str) -> None:
    """Shapes, types and band count of one scene, from the headers."""
    if len(cube.shape) != 3:
        raise UserError(f"{where}: cube of scene '{name}' ({cube.path}) has shape {cube.shape}; "
                        "give a (rows, cols, bands) cube")
    if cube.dtype is not None and cube.dtype.kind not in "biuf":
        raise UserError(f"{where}: cube of scene '{name}' ({cube.path}) holds {cube.dtype} values; give numbers")
    if labels.channels != 1:
        raise UserError(f"{where}: labels of scene '{name}' ({labels.path}) have {labels.channels} channels; "
                        "give a single-band label raster")
    if (labels.rows, labels.cols) != (cube.rows, cube.cols):
        raise UserError(f"{where}: scene '{name}': cube is {cube.rows}x{cube.cols} ({cube.path}) but labels are "
                        f"{labels.rows}x{labels.cols} ({labels.path}); give labels of the cube's size")
    if first is not None and cube.channels != first.cube.channels:
        raise UserError(f"{where}: scene '{name}' has {cube.channels} bands ({cube.path}) but scene '{first.name}' "
                        f"has {first.cube.channels}; every scene of a catalogue comes from one sensor")


def _check_roles(catalogue: Catalogue, where: str) -> None:
    """Some scene must be able to give training pixels and some test pixels."""
    roles = [s.role for s in catalogue.scenes]
    trains = any(r in ("train", "split") for r in roles)
    tests = "test" in roles or ("split" in roles and catalogue.test_fraction > 0)
    if not trains:
        raise UserError(f"{where}: no scene trains (every scene is val or test); leave some without a role")
    if not tests:
        raise UserError(f"{where}: nothing is held out for testing; list split.test_scenes or give "
                        "split.test_fraction (a pixel split inside each scene)")


def check_patch_size(catalogue: Catalogue, patch_size: int) -> None:
    """Refuse a patch larger than a scene (a patch must fit, as for a single scene)."""
    for scene in catalogue.scenes:
        if patch_size > min(scene.shape):
            raise UserError(f"catalogue {catalogue.name}: patch_size {patch_size} is larger than scene "
                            f"'{scene.name}' ({scene.shape[0]}x{scene.shape[1]}); choose a patch of at most "
                            f"{min(scene.shape)} or drop that scene")


def write_catalogue(path: str | Path, scenes: Sequence[dict[str, Any]], class_names: Sequence[str],
                    **settings: Any) -> Path:
    """Write a catalogue YAML (atomically): ``scenes`` as in the file format, ``settings`` the other
    top-level keys (label_values, ignore, split, ...). For scripts that build catalogues."""
    from deephyperx.atomic import atomic_write_text

    data = {"class_names": list(class_names), **settings, "scenes": [dict(s) for s in scenes]}
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False))
    return Path(path)
