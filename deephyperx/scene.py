"""The scene: one co-registered hyperspectral cube (plus optional extra rasters) and its labels."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional, Sequence, Union

import numpy as np

from deephyperx.errors import UserError
from deephyperx.label_values import IGNORE, check_rgb_bands, integer_labels, label_map, remap_labels
from deephyperx.readers import read_raster
from deephyperx.safe_paths import file_stem

PathLike = Union[str, Path]
__all__ = ["IGNORE", "Scene", "class_spectra", "default_palette"]


@dataclass
class Scene:
    """A labelled scene ready for the engine.

    ``cube`` is (H, W, B) and may be a memory map; ``labels`` is (H, W) with class ids
    0..K-1 and :data:`IGNORE` for unlabelled pixels. ``label_values`` keeps, for each
    class id, the value it had in the label file (SalinasA's 1, 10..14 become 0..5).
    ``extras`` holds co-registered rasters (H, W, C) such as a DSM, for multi-input models.
    ``by_content``: the scene is identified by what it holds, not by its name alone (a custom scene
    read from files the user names, whose name is only the file's stem): its experiments' identity
    includes :meth:`content_sha256`.
    """

    name: str
    cube: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    label_values: Optional[list[int]] = None
    rgb_bands: Optional[tuple[int, int, int]] = None
    wavelengths: Optional[np.ndarray] = None
    palette: Optional[list[tuple[int, int, int]]] = None
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    description: str = ""
    by_content: bool = False

    def __post_init__(self) -> None:
        if self.label_values is None:
            self.label_values = list(range(1, len(self.class_names) + 1))
        if self.palette is None:
            self.palette = default_palette(len(self.class_names))

    @classmethod
    def from_arrays(
        cls,
        name: str,
        cube: np.ndarray,
        raw_labels: np.ndarray,
        labels_source: str,
        class_names: list[str],
        values: Sequence[int],
        ignored: Sequence[int],
        *,
        rgb_bands: Optional[Sequence[int]] = None,
        wavelengths: Optional[Sequence[float]] = None,
        palette: Optional[Sequence[Sequence[int]]] = None,
        description: str = "",
    ) -> "Scene":
        """A validated scene from a cube and a raw label raster: label-file ``values`` become class ids
        0..K-1 (in their order), ``ignored`` values unlabelled; band metadata is checked against the cube."""
        labels = remap_labels(raw_labels, values, ignored, labels_source)
        n_bands = int(cube.shape[2]) if cube.ndim == 3 else None
        rgb = check_rgb_bands(rgb_bands, n_bands, f"scene {name}") if rgb_bands is not None else None
        wl = None
        if wavelengths is not None:
            wl = np.asarray(wavelengths, dtype=np.float64)
            if n_bands is not None and wl.shape != (n_bands,):
                raise UserError(f"scene {name}: {wl.size} wavelengths for a cube of {n_bands} bands; give one per band")
        scene = cls(
            name=name, cube=cube, labels=labels, class_names=list(class_names),
            label_values=[int(v) for v in values], rgb_bands=rgb, wavelengths=wl,
            palette=[tuple(int(c) for c in colour) for colour in palette] if palette is not None else None,
            description=description,
        )
        return scene.validate()

    @classmethod
    def from_files(
        cls,
        cube_path: PathLike,
        labels_path: PathLike,
        *,
        cube_key: Optional[str] = None,
        labels_key: Optional[str] = None,
        name: Optional[str] = None,
        ignored_labels: Sequence[int] = (0,),
        class_names: Optional[Sequence[str]] = None,
        label_values: Optional[Sequence[int]] = None,
        rgb_bands: Optional[Sequence[int]] = None,
        wavelengths: Optional[Sequence[float]] = None,
        palette: Optional[Sequence[Sequence[int]]] = None,
        description: str = "",
    ) -> "Scene":
        """A scene from one's own cube file and label file (.mat, .npy, .h5, ENVI .hdr, GeoTIFF, PNG),
        without declaring it in code.

        Classes are the sorted distinct label values that are not in ``ignored_labels``, unless
        ``label_values`` lists them; ``class_names`` (default "class <value>") must match in count.
        """
        cube_path, labels_path = Path(cube_path).expanduser(), Path(labels_path).expanduser()
        cube = read_raster(cube_path, cube_key)
        raw = label_map(read_raster(labels_path, labels_key), labels_path)
        if raw.shape != tuple(cube.shape[:2]):
            raise UserError(f"labels {labels_path} are {raw.shape[0]}x{raw.shape[1]} but cube {cube_path} is "
                            f"{cube.shape[0]}x{cube.shape[1]}; give a label raster of the cube's size")
        if label_values is None:
            ints = integer_labels(np.asarray(raw), str(labels_path))
            values = [int(v) for v in np.unique(ints) if int(v) not in set(ignored_labels)]
        else:
            values = [int(v) for v in label_values]
        negative = [v for v in values if v < 0]
        if negative:
            raise UserError(f"{labels_path}: label values {negative[:5]} are negative; class values are whole numbers "
                            "of at least 1 (0 = unlabelled): declare them as ignored_labels if they mark unlabelled "
                            "pixels, or fix the label file")
        if class_names is None:
            class_names = [f"class {v}" for v in values]
        elif len(class_names) != len(values):
            raise UserError(
                f"{labels_path}: {len(class_names)} class names given but the labels hold {len(values)} classes "
                f"(values {values}); give one name per class value"
            )
        return cls.from_arrays(
            name or file_stem(cube_path.stem), cube, raw, str(labels_path), list(class_names), values, tuple(ignored_labels),
            rgb_bands=rgb_bands, wavelengths=wavelengths, palette=palette, description=description,
        ).identified_by_content()  # named after a file: its experiments are told apart by its content

    @property
    def shape(self) -> tuple[int, int]:
        return int(self.cube.shape[0]), int(self.cube.shape[1])

    @property
    def n_bands(self) -> int:
        return int(self.cube.shape[2])

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    def identified_by_content(self) -> "Scene":
        """Mark the scene as identified by its content (``by_content``, a custom scene); returns it."""
        self.by_content = True
        return self

    def content_sha256(self) -> str:
        """SHA-256 of what changes a run's numbers: the cube's and extras' values, the class ids of the
        labels, the classes' names and label values (read once, a band of rows at a time; then kept)."""
        cached = self.__dict__.get("_content_sha256")
        if cached is None:
            from deephyperx.hashing import content_sha256

            parts: list = ["cube", self.cube, "labels", self.labels, "classes", repr(list(self.class_names)),
                           "values", repr(list(self.label_values or []))]
            for key in sorted(self.extras):
                parts += [f"extra {key}", self.extras[key]]
            cached = self.__dict__["_content_sha256"] = content_sha256(parts)
        return cached

    def class_counts(self) -> np.ndarray:
        """Number of labelled pixels of each class."""
        valid = self.labels[self.labels != IGNORE]
        return np.bincount(valid.ravel(), minlength=self.n_classes)

    def validate(self) -> "Scene":
        """Check shapes, label range and finite values; raise :class:`UserError` otherwise."""
        if self.cube.ndim != 3:
            raise UserError(f"scene {self.name}: the cube has shape {self.cube.shape}; expected (rows, cols, bands)")
        if self.labels.shape != self.cube.shape[:2]:
            raise UserError(
                f"scene {self.name}: cube is {self.cube.shape[0]}x{self.cube.shape[1]} but labels are "
                f"{self.labels.shape[0]}x{self.labels.shape[1]}; give a label raster of the cube's size"
            )
        for key, extra in self.extras.items():
            if extra.shape[:2] != self.cube.shape[:2]:
                raise UserError(f"scene {self.name}: extra raster '{key}' is {extra.shape[:2]}, cube is {self.shape}")
        if self.labels.size and (self.labels.min() < IGNORE or self.labels.max() >= self.n_classes):
            raise UserError(f"scene {self.name}: labels outside 0..{self.n_classes - 1}")
        if len(self.label_values) != self.n_classes or len(self.palette) < self.n_classes:
            raise UserError(f"scene {self.name}: {self.n_classes} class names but "
                            f"{len(self.label_values)} label values / {len(self.palette)} colours")
        bad = _count_non_finite(self.cube)
        if bad:
            raise UserError(
                f"scene {self.name}: the cube holds {bad} NaN or infinite values; fill or mask them "
                "(e.g. numpy.nan_to_num) before training"
            )
        return self


def class_spectra(scene: Scene) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of each class's spectra, (K, B) each (NaN for an empty class)."""
    mean = np.full((scene.n_classes, scene.n_bands), np.nan)
    std = np.full((scene.n_classes, scene.n_bands), np.nan)
    for k in range(scene.n_classes):
        pixels = np.asarray(scene.cube[scene.labels == k], dtype=np.float64)
        if len(pixels):
            mean[k], std[k] = pixels.mean(axis=0), pixels.std(axis=0)
    return mean, std


def _count_non_finite(cube: np.ndarray, rows_per_chunk: int = 64) -> int:
    """Count NaN/inf values chunk by chunk so that memory-mapped cubes are not loaded whole."""
    if not np.issubdtype(cube.dtype, np.floating):
        return 0
    return int(sum((~np.isfinite(cube[r:r + rows_per_chunk])).sum() for r in range(0, cube.shape[0], rows_per_chunk)))


def default_palette(n_classes: int) -> list[tuple[int, int, int]]:
    """Distinct colours for ``n_classes`` classes (matplotlib's tab20, then HSV)."""
    import colorsys

    tab20 = [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
        (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
        (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
    ]
    colours = tab20[:n_classes]
    for i in range(n_classes - len(colours)):
        r, g, b = colorsys.hsv_to_rgb((i * 0.618034) % 1.0, 0.75, 0.9)
        colours.append((int(r * 255), int(g * 255), int(b * 255)))
    return colours
