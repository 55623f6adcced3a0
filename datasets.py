"""The scene catalogue: one declaration per named scene, plus loading of custom scenes.

A researcher adds a scene by adding one :class:`SceneDeclaration` (or calling
:func:`declare_scene`); nothing else changes. A scene that lives only on one's own disk needs
no code at all: :func:`load_custom_scene` takes two file paths, and :func:`load_scene_file`
reads a short YAML declaration such as::

    name: MyScene
    cube: {file: cube.npy}
    labels: {file: gt.mat, key: gt}
    class_names: [water, trees, roads]
    ignored_labels: [0]
    rgb_bands: [30, 20, 10]

Label files keep their own values (e.g. SalinasA's 1, 10..14); loading maps the classes to
contiguous ids 0..K-1 and unlabelled values to :data:`~deephyperx.scene.IGNORE`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import numpy as np

from deephyperx.errors import DataNotFoundError, UserError
from deephyperx.plugins import SceneCatalogue
from deephyperx.label_values import check_rgb_bands, label_map, remap_labels  # noqa: F401  (remap_labels: for tests)
from deephyperx.readers import read_raster
from deephyperx.safe_paths import check_name
from deephyperx.scene import Scene
from deephyperx.yaml_files import read_yaml_mapping

PathLike = Union[str, Path]
RGB = tuple[int, int, int]

#: Environment variable holding a mirror base URL that replaces the scenes' remote hosts.
MIRROR_ENV = "DEEPHYPERX_MIRROR"
#: Base URL of the GIC (UPV/EHU) "Hyperspectral Remote Sensing Scenes" page's uploads.
GIC = "https://www.ehu.eus/ccwintco/uploads"
GIC_PAGE = "https://www.ehu.eus/ccwintco/index.php/Hyperspectral_Remote_Sensing_Scenes"


@dataclass(frozen=True)
class RemoteFile:
    """One file of a scene as published: where to fetch it and how to recognise the original."""

    filename: str
    url: Optional[str]
    sha256: Optional[str] = None
    size: Optional[int] = None


@dataclass(frozen=True)
class SceneDeclaration:
    """Everything needed to find, download and load one named scene.

    ``label_values`` are the values the label file uses for the classes, in class order
    (default 1..K); ``ignored_labels`` are the values that mean "unlabelled". ``labels_step``
    subsamples a label raster that is on a finer grid than the cube (DFC2018). ``embedded``
    builds a scene that needs no files (the synthetic scene).
    """

    name: str
    folder: str
    cube_file: Optional[str]
    cube_key: Optional[str]
    labels_file: Optional[str]
    labels_key: Optional[str]
    class_names: tuple[str, ...]
    ignored_labels: tuple[int, ...] = (0,)
    label_values: Optional[tuple[int, ...]] = None
    rgb_bands: Optional[RGB] = None
    wavelengths: Optional[tuple[float, ...]] = None
    n_bands: Optional[int] = None
    palette: Optional[tuple[RGB, ...]] = None
    files: tuple[RemoteFile, ...] = ()
    citation: str = ""
    how_to_get: str = ""
    labels_step: int = 1
    embedded: Optional[Callable[[], Scene]] = None

    @property
    def values(self) -> tuple[int, ...]:
        """Label-file value of each class, in class order."""
        if self.label_values is not None:
            return tuple(self.label_values)
        return tuple(range(1, len(self.class_names) + 1))

    @property
    def band_count(self) -> Optional[int]:
        """Number of bands if the declaration knows it (explicitly or from its wavelengths)."""
        if self.n_bands is not None:
            return self.n_bands
        return len(self.wavelengths) if self.wavelengths is not None else None


CATALOGUE: dict[str, SceneDeclaration] = {}


def declare_scene(decl: SceneDeclaration, replace: bool = False) -> SceneDeclaration:
    """Add ``decl`` to the catalogue after checking that it is self-consistent."""
    check_declaration(decl)
    if decl.name in CATALOGUE and not replace:
        raise UserError(f"scene '{decl.name}' is already declared; pick another name or pass replace=True")
    CATALOGUE[decl.name] = decl
    return decl


def list_scenes() -> list[str]:
    """Names of every declared scene, in declaration order."""
    return list(CATALOGUE)


def get_declaration(name: str) -> SceneDeclaration:
    """The declaration called ``name`` (case-insensitive), or a UserError listing the choices."""
    if name in CATALOGUE:
        return CATALOGUE[name]
    by_lower = {key.lower(): decl for key, decl in CATALOGUE.items()}
    if name.lower() in by_lower:
        return by_lower[name.lower()]
    raise UserError(
        f"unknown scene '{name}'; choose one of {', '.join(list_scenes())}, or give a path to a .yaml scene file"
    )


def check_declaration(decl: SceneDeclaration) -> None:
    """Raise UserError if a declaration contradicts itself (counts, band indices, palette)."""
    where = f"scene declaration {decl.name}"
    values = decl.values
    if len(values) != len(decl.class_names):
        raise UserError(f"{where}: {len(decl.class_names)} class names but {len(values)} label values")
    if len(set(values)) != len(values):
        raise UserError(f"{where}: label values {list(values)} repeat a value")
    if set(values) & set(decl.ignored_labels):
        raise UserError(f"{where}: values {sorted(set(values) & set(decl.ignored_labels))} are both class and unlabelled")
    if decl.palette is not None and len(decl.palette) < len(decl.class_names):
        raise UserError(f"{where}: {len(decl.palette)} colours for {len(decl.class_names)} classes")
    if decl.n_bands is not None and decl.wavelengths is not None and len(decl.wavelengths) != decl.n_bands:
        raise UserError(f"{where}: {len(decl.wavelengths)} wavelengths for {decl.n_bands} bands")
    if decl.rgb_bands is not None:
        check_rgb_bands(decl.rgb_bands, decl.band_count, where)
    if decl.labels_step < 1:
        raise UserError(f"{where}: labels_step must be >= 1, got {decl.labels_step}")
    if decl.embedded is None and not (decl.cube_file and decl.labels_file):
        raise UserError(f"{where}: give cube_file and labels_file (or an embedded builder)")


# --- Nominal wavelengths -----------------------------------------------------------------


def _drop_bands(centres: np.ndarray, removed_1based: Sequence[tuple[int, int]]) -> tuple[float, ...]:
    """Remove 1-based inclusive band ranges (the published "corrected" band removals)."""
    keep = np.ones(len(centres), dtype=bool)
    for first, last in removed_1based:
        keep[first - 1:last] = False
    return tuple(float(round(w, 2)) for w in centres[keep])


def _keep_bands(centres: np.ndarray, kept_1based: Sequence[tuple[int, int]]) -> tuple[float, ...]:
    """Keep only 1-based inclusive band ranges."""
    keep = np.zeros(len(centres), dtype=bool)
    for first, last in kept_1based:
        keep[first - 1:last] = True
    return tuple(float(round(w, 2)) for w in centres[keep])


def _nearest_bands(wavelengths: Sequence[float], targets: tuple[float, float, float] = (640.0, 550.0, 460.0)) -> RGB:
    """Bands closest to red, green and blue."""
    wl = np.asarray(wavelengths)
    r, g, b = (int(np.abs(wl - t).argmin()) for t in targets)
    return r, g, b


# Nominal, approximate band centres: AVIRIS bands spread evenly over 400-2500 nm (about
# 9.4 nm apart), minus the water-absorption bands the GIC page says were removed. Real AVIRIS
# centres differ by a few nm from flight to flight; use these for plots, not for physics.
# Indian Pines starts from Purdue's 220-band release, Salinas from all 224 AVIRIS bands.
_AVIRIS_220 = np.linspace(400.0, 2500.0, 220)
_AVIRIS_224 = np.linspace(400.0, 2500.0, 224)
_INDIAN_PINES_WL = _drop_bands(_AVIRIS_220, [(104, 108), (150, 163), (220, 220)])
_SALINAS_WL = _drop_bands(_AVIRIS_224, [(108, 112), (154, 167), (224, 224)])
# Nominal Hyperion band centres (EO-1 documentation, approximate): VNIR bands 1-70 from
# 355.59 nm every 10.18 nm, SWIR bands 71-242 from 851.92 nm every 10.09 nm. Botswana keeps
# bands [10-55, 82-97, 102-119, 134-164, 187-220] as listed on the GIC page.
_HYPERION_242 = np.concatenate([355.59 + 10.18 * np.arange(70), 851.92 + 10.09 * np.arange(172)])
_BOTSWANA_WL = _keep_bands(_HYPERION_242, [(10, 55), (82, 97), (102, 119), (134, 164), (187, 220)])
# Houston 2013 (ITRES CASI-1500): 144 bands over 380-1050 nm; evenly spread nominal centres.
_HOUSTON2013_WL = tuple(float(round(w, 2)) for w in np.linspace(380.0, 1050.0, 144))


# --- The catalogue ------------------------------------------------------------------------

_GIC_CITE = f"Hyperspectral Remote Sensing Scenes, Grupo de Inteligencia Computacional (UPV/EHU), {GIC_PAGE}"
_SALINAS_NAMES = (
    "Brocoli_green_weeds_1", "Brocoli_green_weeds_2", "Fallow", "Fallow_rough_plow",
    "Fallow_smooth", "Stubble", "Celery", "Grapes_untrained", "Soil_vinyard_develop",
    "Corn_senesced_green_weeds", "Lettuce_romaine_4wk", "Lettuce_romaine_5wk",
    "Lettuce_romaine_6wk", "Lettuce_romaine_7wk", "Vinyard_untrained", "Vinyard_vertical_trellis",
)
_GRSS_PORTAL = "the IEEE GRSS Data and Algorithm Standard Evaluation (DASE) portal, dase.grss-ieee.org (free registration)"


def _make_synthetic() -> Scene:
    """The embedded synthetic scene (imported on use: the catalogue must not need it to load)."""
    from deephyperx.synthetic import make_synthetic_scene

    return make_synthetic_scene(seed=0)


_DECLARATIONS = (
    SceneDeclaration(
        name="IndianPines", folder="IndianPines",
        cube_file="Indian_pines_corrected.mat", cube_key="indian_pines_corrected",
        labels_file="Indian_pines_gt.mat", labels_key="indian_pines_gt",
        class_names=(
            "Alfalfa", "Corn-notill", "Corn-mintill", "Corn", "Grass-pasture", "Grass-trees",
            "Grass-pasture-mowed", "Hay-windrowed", "Oats", "Soybean-notill", "Soybean-mintill",
            "Soybean-clean", "Wheat", "Woods", "Buildings-Grass-Trees-Drives", "Stone-Steel-Towers",
        ),
        rgb_bands=(43, 21, 11), wavelengths=_INDIAN_PINES_WL, n_bands=200,
        files=(
            RemoteFile("Indian_pines_corrected.mat", f"{GIC}/6/67/Indian_pines_corrected.mat",
                       "ec2f8808710919d566f70f0d4aa885aae1ddfd42b734aba71c5e12ca65450939", 5953527),
            RemoteFile("Indian_pines_gt.mat", f"{GIC}/c/c4/Indian_pines_gt.mat",
                       "65c4687a8ab04f6da4789799bc3bc4f6e88bccac3ed6a2e6ae367e5e6b9e429c", 1125),
        ),
        citation=("Baumgardner, Biehl, Landgrebe (2015), 220 Band AVIRIS Hyperspectral Image Data Set: "
                  "June 12, 1992 Indian Pine Test Site 3, Purdue University Research Repository, "
                  f"doi:10.4231/R7RX991C; {_GIC_CITE}"),
    ),
    SceneDeclaration(
        name="PaviaU", folder="PaviaU",
        cube_file="PaviaU.mat", cube_key="paviaU", labels_file="PaviaU_gt.mat", labels_key="paviaU_gt",
        class_names=("Asphalt", "Meadows", "Gravel", "Trees", "Painted metal sheets", "Bare Soil",
                     "Bitumen", "Self-Blocking Bricks", "Shadows"),
        # ROSIS, 430-860 nm; which 12 noisy bands were dropped is not published: no wavelengths.
        rgb_bands=(55, 41, 12), n_bands=103,
        files=(
            RemoteFile("PaviaU.mat", f"{GIC}/e/ee/PaviaU.mat",
                       "28447fa87f7a5797845e9a189c0da85e23b1d06a4ba7361e5ff44efbf834d2fb", 34806917),
            RemoteFile("PaviaU_gt.mat", f"{GIC}/5/50/PaviaU_gt.mat",
                       "23f6a426928f9b32984adffe659e29f554f9fb6c93b5a107528d308d5087a829", 11005),
        ),
        citation=f"ROSIS data courtesy of Prof. Paolo Gamba, University of Pavia; {_GIC_CITE}",
    ),
    SceneDeclaration(
        name="PaviaC", folder="PaviaC",
        cube_file="Pavia.mat", cube_key="pavia", labels_file="Pavia_gt.mat", labels_key="pavia_gt",
        class_names=("Water", "Trees", "Asphalt", "Self-Blocking Bricks", "Bitumen", "Tiles",
                     "Shadows", "Meadows", "Bare Soil"),
        # ROSIS, 430-860 nm; the removed bands are not published: no wavelengths.
        rgb_bands=(55, 41, 12), n_bands=102,
        files=(
            RemoteFile("Pavia.mat", f"{GIC}/e/e3/Pavia.mat",
                       "b60341da323fd271cd97dd6d7a69514d385ccd7fdfc5a60c4ff5994b047f152e", 129624657),
            RemoteFile("Pavia_gt.mat", f"{GIC}/5/53/Pavia_gt.mat",
                       "7eb54ab81b404dd3ae572e6d0ec211595029e5a847bec2cfb8f9e72d07066b69", 34887),
        ),
        citation=f"ROSIS data courtesy of Prof. Paolo Gamba, University of Pavia; {_GIC_CITE}",
    ),
    SceneDeclaration(
        name="KSC", folder="KSC",
        cube_file="KSC.mat", cube_key="KSC", labels_file="KSC_gt.mat", labels_key="KSC_gt",
        class_names=("Scrub", "Willow swamp", "Cabbage palm hammock", "Cabbage palm/oak hammock",
                     "Slash pine", "Oak/broadleaf hammock", "Hardwood swamp", "Graminoid marsh",
                     "Spartina marsh", "Cattail marsh", "Salt marsh", "Mud flats", "Water"),
        # AVIRIS; which 48 of the 224 bands were removed is not published: no wavelengths.
        rgb_bands=(43, 21, 11), n_bands=176,
        # Checksums of the originals are not known (no Git LFS pointer found): size only.
        files=(
            RemoteFile("KSC.mat", f"{GIC}/2/26/KSC.mat", None, 56824624),
            RemoteFile("KSC_gt.mat", f"{GIC}/a/a6/KSC_gt.mat"),
        ),
        citation=("AVIRIS, NASA Kennedy Space Center, 1996; labels by the Center for Space Research, "
                  "University of Texas at Austin; Ham et al., IEEE TGRS 43(3), 2005; " + _GIC_CITE),
    ),
    SceneDeclaration(
        name="Botswana", folder="Botswana",
        cube_file="Botswana.mat", cube_key="Botswana", labels_file="Botswana_gt.mat", labels_key="Botswana_gt",
        class_names=("Water", "Hippo grass", "Floodplain grasses 1", "Floodplain grasses 2", "Reeds",
                     "Riparian", "Firescar", "Island interior", "Acacia woodlands", "Acacia shrublands",
                     "Acacia grasslands", "Short mopane", "Mixed mopane", "Exposed soils"),
        rgb_bands=(75, 33, 15), wavelengths=_BOTSWANA_WL, n_bands=145,
        files=(
            RemoteFile("Botswana.mat", f"{GIC}/7/72/Botswana.mat",
                       "f1603903c844cdc2980550b0180688e8e1a72d4292595d1120e1dec2a80a91c7", 78911133),
            RemoteFile("Botswana_gt.mat", f"{GIC}/5/58/Botswana_gt.mat"),
        ),
        citation=f"NASA EO-1 Hyperion, Okavango Delta, 2001; Ham et al., IEEE TGRS 43(3), 2005; {_GIC_CITE}",
    ),
    SceneDeclaration(
        name="Salinas", folder="Salinas",
        cube_file="Salinas_corrected.mat", cube_key="salinas_corrected",
        labels_file="Salinas_gt.mat", labels_key="salinas_gt",
        class_names=_SALINAS_NAMES,
        rgb_bands=(43, 21, 11), wavelengths=_SALINAS_WL, n_bands=204,
        files=(
            RemoteFile("Salinas_corrected.mat", f"{GIC}/a/a3/Salinas_corrected.mat",
                       "5ec1c0d22f56d18ecd336f8e35735863c0f160682e04e0c18ef3f89a3334d87d", 26552770),
            # No Git LFS pointer known for the label file: checksum left unknown.
            RemoteFile("Salinas_gt.mat", f"{GIC}/f/fa/Salinas_gt.mat"),
        ),
        citation=f"AVIRIS (NASA/JPL), Salinas Valley, California; {_GIC_CITE}",
    ),
    SceneDeclaration(
        name="SalinasA", folder="SalinasA",
        cube_file="SalinasA_corrected.mat", cube_key="salinasA_corrected",
        labels_file="SalinasA_gt.mat", labels_key="salinasA_gt",
        # The label file keeps Salinas's class values: 1 and 10..14 (loaded as ids 0..5).
        class_names=(_SALINAS_NAMES[0],) + _SALINAS_NAMES[9:14],
        label_values=(1, 10, 11, 12, 13, 14),
        rgb_bands=(43, 21, 11), wavelengths=_SALINAS_WL, n_bands=204,
        files=(
            RemoteFile("SalinasA_corrected.mat", f"{GIC}/1/1a/SalinasA_corrected.mat",
                       "d75684ed3ab71a1024cee0f9db9061f50a3523a92ff5edfbbb1eed976b9f1721", 1539086),
            RemoteFile("SalinasA_gt.mat", f"{GIC}/a/aa/SalinasA_gt.mat",
                       "17814c1d3296c0e29b27f320f2c4174d2a68adb87e376abe78f02923e2c2e454", 587),
        ),
        citation=f"AVIRIS (NASA/JPL), Salinas Valley, California (Salinas-A sub-scene); {_GIC_CITE}",
    ),
    # Houston 2013: the contest ships a CASI GeoTIFF and ENVI ROI text files. We declare the
    # common .mat packaging instead (one array per file, so no MATLAB key is needed): a
    # 349x1905x144 cube and a 349x1905 label map with values 0 (unlabelled) and 1..15 holding
    # the union of the contest's training and test samples.
    SceneDeclaration(
        name="Houston2013", folder="Houston2013",
        cube_file="Houston.mat", cube_key=None, labels_file="Houston_gt.mat", labels_key=None,
        class_names=("Healthy grass", "Stressed grass", "Synthetic grass", "Trees", "Soil", "Water",
                     "Residential", "Commercial", "Road", "Highway", "Railway", "Parking Lot 1",
                     "Parking Lot 2", "Tennis Court", "Running Track"),
        rgb_bands=_nearest_bands(_HOUSTON2013_WL), wavelengths=_HOUSTON2013_WL, n_bands=144,
        citation=("Debes et al., Hyperspectral and LiDAR Data Fusion: Outcome of the 2013 GRSS Data "
                  "Fusion Contest, IEEE JSTARS 7(6), 2014"),
        how_to_get=(f"get the 2013 Data Fusion Contest data from {_GRSS_PORTAL}, then save the "
                    "349x1905x144 CASI cube as Houston.mat and the 349x1905 ground truth (0 = unlabelled, "
                    "1..15) as Houston_gt.mat, one variable each, in FOLDER/Houston2013/ "
                    "(or describe your own files in a .yaml scene file)"),
    ),
    # DFC2018 (Houston 2018): the training HSI is an ENVI image at 1 m, the ground truth a
    # GeoTIFF at 0.5 m, hence labels_step=2 (every second label pixel, nearest neighbour).
    # The band count and centres are not verified here (48 bands over 380-1050 nm are
    # documented), so none are declared; RGB bands are the ones nearest 640/550/460 nm on an
    # even 48-band grid over 380-1050 nm (approximate).
    SceneDeclaration(
        name="DFC2018", folder="DFC2018",
        cube_file="2018_IEEE_GRSS_DFC_HSI_TR.HDR", cube_key=None,
        labels_file="2018_IEEE_GRSS_DFC_GT_TR.tif", labels_key=None,
        class_names=("Healthy grass", "Stressed grass", "Artificial turf", "Evergreen trees",
                     "Deciduous trees", "Bare earth", "Water", "Residential buildings",
                     "Non-residential buildings", "Roads", "Sidewalks", "Crosswalks",
                     "Major thoroughfares", "Highways", "Railways", "Paved parking lots",
                     "Unpaved parking lots", "Cars", "Trains", "Stadium seats"),
        rgb_bands=_nearest_bands(np.linspace(380.0, 1050.0, 48)),
        labels_step=2,
        citation=("Xu et al., Advanced Multi-Sensor Optical Remote Sensing for Urban Land Use and Land "
                  "Cover Classification: Outcome of the 2018 IEEE GRSS Data Fusion Contest, IEEE JSTARS "
                  "12(6), 2019"),
        how_to_get=(f"get the 2018 Data Fusion Contest data from {_GRSS_PORTAL}, then place the ENVI "
                    "hyperspectral image 2018_IEEE_GRSS_DFC_HSI_TR (with its header "
                    "2018_IEEE_GRSS_DFC_HSI_TR.HDR) and the GeoTIFF labels 2018_IEEE_GRSS_DFC_GT_TR.tif "
                    "in FOLDER/DFC2018/ (reading GeoTIFF needs `pip install tifffile`)"),
    ),
    SceneDeclaration(
        name="Synthetic", folder="Synthetic", cube_file=None, cube_key=None,
        labels_file=None, labels_key=None, class_names=(), embedded=_make_synthetic,
        citation="deephyperx embedded synthetic scene (deephyperx/synthetic.py)",
    ),
)

for _decl in _DECLARATIONS:
    declare_scene(_decl)


# --- Loading a catalogue scene ------------------------------------------------------------


def scene_files(decl: SceneDeclaration, folder: PathLike) -> list[Path]:
    """Paths where the cube and label files of ``decl`` are expected under ``folder``."""
    if decl.embedded is not None:
        return []
    base = Path(folder).expanduser() / decl.folder
    return [base / decl.cube_file, base / decl.labels_file]


def load_scene(name: str, folder: PathLike) -> Scene:
    """Load the catalogue scene ``name`` from ``<folder>/<decl.folder>/``."""
    return load_declared(get_declaration(name), folder)


def load_declared(decl: SceneDeclaration, folder: PathLike) -> Scene:
    """Load a scene from its declaration (catalogued or not)."""
    if decl.embedded is not None:
        return decl.embedded().validate()
    _require_files(decl, folder)
    cube_path, labels_path = scene_files(decl, folder)
    cube = read_raster(cube_path, decl.cube_key)
    if decl.n_bands is not None and cube.ndim == 3 and cube.shape[2] != decl.n_bands:
        raise UserError(f"{cube_path}: {cube.shape[2]} bands, but {decl.name} has {decl.n_bands}; "
                        "check that this is the right (corrected) file")
    raw = label_map(read_raster(labels_path, decl.labels_key), labels_path)[::decl.labels_step, ::decl.labels_step]
    return Scene.from_arrays(
        decl.name, cube, raw, str(labels_path), list(decl.class_names), decl.values, decl.ignored_labels,
        rgb_bands=decl.rgb_bands, wavelengths=decl.wavelengths, palette=decl.palette,
        description=decl.citation,
    )


def _require_files(decl: SceneDeclaration, folder: PathLike) -> None:
    """Raise DataNotFoundError (one line: which files, how to get them) if any file is missing."""
    missing = [p for p in scene_files(decl, folder) if not p.is_file()]
    if not missing:
        return
    listed = ", ".join(str(p) for p in missing)
    if decl.how_to_get:
        how = decl.how_to_get.replace("FOLDER", str(folder))
    else:
        how = f"run `python main.py --download {decl.name} --folder {folder}`"
    raise DataNotFoundError(f"scene {decl.name}: missing {listed}; {how}")


def find_default_scene(folder: PathLike) -> str:
    """'IndianPines' if its files are under ``folder``, else the embedded 'Synthetic'."""
    files = scene_files(CATALOGUE["IndianPines"], folder)
    return "IndianPines" if all(p.is_file() for p in files) else "Synthetic"


# --- Turning raw arrays into a Scene ------------------------------------------------------


_SCENE_FILE_KEYS = {"name", "cube", "labels", "class_names", "ignored_labels", "label_values",
                    "rgb_bands", "wavelengths", "palette", "description"}


#: A scene from one's own cube and label files (see :meth:`Scene.from_files`).
load_custom_scene = Scene.from_files


def load_scene_file(path: PathLike) -> Scene:
    """Load a scene described by a short YAML file (relative paths are relative to the file)."""
    path = Path(path).expanduser()
    spec = _read_yaml_mapping(path)
    unknown = sorted(set(spec) - _SCENE_FILE_KEYS)
    if unknown:
        raise UserError(f"{path}: unknown entries {unknown}; allowed: {', '.join(sorted(_SCENE_FILE_KEYS))}")
    cube_file, cube_key = _file_entry(spec, "cube", path)
    labels_file, labels_key = _file_entry(spec, "labels", path)
    return load_custom_scene(
        cube_file, labels_file, cube_key=cube_key, labels_key=labels_key,
        name=check_name(spec.get("name") or path.stem, f"{path}: scene name", "give the scene a plain name"),
        ignored_labels=_int_list(spec.get("ignored_labels", [0]), "ignored_labels", path),
        class_names=[str(c) for c in _list(spec["class_names"], "class_names", path)] if "class_names" in spec else None,
        label_values=_int_list(spec["label_values"], "label_values", path) if "label_values" in spec else None,
        rgb_bands=_int_list(spec["rgb_bands"], "rgb_bands", path) if spec.get("rgb_bands") is not None else None,
        wavelengths=_float_list(spec["wavelengths"], path) if spec.get("wavelengths") is not None else None,
        palette=_list(spec["palette"], "palette", path) if spec.get("palette") is not None else None,
        description=str(spec.get("description", "")),
    )


def _read_yaml_mapping(path: Path) -> Mapping[str, Any]:
    """Parse ``path`` as a YAML mapping, with one-line errors for missing or malformed files."""
    return read_yaml_mapping(path, "scene file", "at least 'cube' and 'labels' entries")


def _file_entry(spec: Mapping[str, Any], entry: str, yaml_path: Path) -> tuple[Path, Optional[str]]:
    """Resolve ``cube``/``labels`` (a path, or ``{file: ..., key: ...}``) against the YAML's folder."""
    if entry not in spec:
        raise UserError(f"{yaml_path}: missing '{entry}' entry; add e.g. `{entry}: {{file: {entry}.npy}}`")
    value = spec[entry]
    if isinstance(value, str):
        value = {"file": value}
    if not isinstance(value, dict) or not isinstance(value.get("file"), str):
        raise UserError(f"{yaml_path}: '{entry}' must be a file name or {{file: NAME, key: VARIABLE}}")
    key = value.get("key")
    return yaml_path.parent / Path(value["file"]).expanduser(), (str(key) if key is not None else None)


def _list(value: Any, entry: str, path: Path) -> list:
    if not isinstance(value, (list, tuple)):
        raise UserError(f"{path}: '{entry}' must be a list, got {value!r}")
    return list(value)


def _int_list(value: Any, entry: str, path: Path) -> list[int]:
    items = _list(value, entry, path)
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in items):
        raise UserError(f"{path}: '{entry}' must be a list of whole numbers, got {items}")
    return items


def _float_list(value: Any, path: Path) -> list[float]:
    items = _list(value, "wavelengths", path)
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in items):
        raise UserError(f"{path}: 'wavelengths' must be a list of numbers (nm), got {items}")
    return [float(v) for v in items]


def resolve_scene(dataset: str, folder: PathLike) -> Scene:
    """A catalogue name, or a path to a .yaml/.yml scene file, to a loaded Scene."""
    if Path(dataset).suffix.lower() in (".yaml", ".yml"):
        return load_scene_file(dataset)
    return load_scene(dataset, folder)


# --- Download --------------------------------------------------------------------------------


def check_mirror_url(mirror: str) -> None:
    """Refuse a mirror that is not an ``http://``, ``https://`` or ``file://`` base URL."""
    from urllib.parse import urlsplit

    parts = urlsplit(mirror)
    if parts.scheme not in ("http", "https", "file") or (parts.scheme != "file" and not parts.netloc):
        raise UserError(f"--mirror {mirror!r} is not a base URL; give one such as http://host/scenes "
                        f"(files are read from <mirror>/<scene folder>/<file>), or unset ${MIRROR_ENV}")


def download_scene(name: str, folder: PathLike, mirror: Optional[str] = None, progress: bool = True) -> list[Path]:
    """Fetch the files of scene ``name`` into ``<folder>/<decl.folder>/``; return their paths.

    ``mirror`` (or the DEEPHYPERX_MIRROR environment variable) is a base URL that replaces the
    remote host: files come from ``{mirror}/{decl.folder}/{filename}``. Files already present with
    the right checksum are not fetched again.
    """
    from deephyperx.download import download_file

    decl = get_declaration(name)
    if decl.embedded is not None:
        return []
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    if mirror is not None:
        check_mirror_url(mirror)
    if not decl.files:
        how = decl.how_to_get.replace("FOLDER", str(folder))
        raise UserError(f"scene {decl.name} cannot be downloaded automatically; {how}")
    target = Path(folder).expanduser() / decl.folder
    paths = []
    for remote in decl.files:
        url = f"{mirror.rstrip('/')}/{decl.folder}/{remote.filename}" if mirror else remote.url
        if url is None:
            raise UserError(f"scene {decl.name}: no URL for {remote.filename}; {decl.how_to_get or 'use a mirror'}")
        paths.append(download_file(url, target / remote.filename, remote.sha256, progress=progress))
    return paths


#: This catalogue as the engine's commands and the Python API take it (entry point ``deephyperx.scenes``).
SCENES = SceneCatalogue(resolve=resolve_scene, load_custom=load_custom_scene, names=list_scenes,
                        find_default=find_default_scene)
