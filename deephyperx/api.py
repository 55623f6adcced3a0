"""The Python API: deephyperx from a notebook or a script, in the style of timm and scikit-learn.

    import deephyperx as dhx

    dhx.list_models()                                   # every registered model
    net = dhx.create_model("hamida", n_bands=200, n_classes=16)   # unset options keep the paper's defaults
    scene = dhx.load_scene("IndianPines", folder="../shared/data")  # or dhx.Scene.from_files(cube, labels)
    result = dhx.train("hamida", scene, training_sample=0.1, seed=0)
    result.metrics["overall_accuracy"], result.split.test.sum()
    classifier = dhx.load(result.folder / "model.pt")
    labels = classifier.predict(scene.cube)             # a class id for every pixel, tile by tile

Every function runs the same engine as ``python main.py``: :func:`train` resolves the settings the way
the command line does (the model's registered defaults, then what is given), writes the same experiment
folder under ``out`` and gives the same numbers for the same seed. Models and scenes come from the
installed packages' plugins (entry points), so nothing needs importing first.
"""
from __future__ import annotations

import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np

from deephyperx import checkpoint as ckpt
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.generation import GenerationRequest
from deephyperx.generation import generate as run_generation
from deephyperx.lazy_cube import open_lazy_cube
from deephyperx.plugins import installed_plugins
from deephyperx.preprocessing import Normaliser, PCAProjection
from deephyperx.registry import ModelSpec, get_spec
from deephyperx.registry import create_model as build_registered
from deephyperx.registry import list_models as registered_models
from deephyperx.reports import load_json
from deephyperx.scene import Scene
from deephyperx.seeding import restore_rng_states, rng_states, seed_everything
from deephyperx.spectra_file import LabelledSpectra, read_spectra_file

PathLike = Union[str, Path]
#: What :meth:`Classifier.predict` maps: an array (H, W, B), a scene, or a raster file (read tile by tile).
CubeLike = Union[np.ndarray, Scene, PathLike]

__all__ = ["list_models", "create_model", "list_scenes", "load_scene", "train", "load", "generate",
           "Classifier", "TrainResult", "SeedResult", "Split", "GeneratedSpectra"]


# ----- the zoo -------------------------------------------------------------------------------------

def list_models(family: Optional[str] = None) -> list[str]:
    """The registered model names, sorted; ``family`` keeps one kind: ``"neural"``, ``"sklearn"``,
    ``"generator"`` or ``"segmentation"``."""
    return registered_models(family)


def create_model(name: str, n_bands: Optional[int] = None, n_classes: Optional[int] = None, *,
                 patch_size: Optional[int] = None, seed: Optional[int] = 0, **options: Any) -> Any:
    """Build model ``name`` with its paper's defaults; ``options`` override its architecture options
    (those ``python main.py list --markdown`` shows). A neural model needs ``n_bands`` and ``n_classes``
    and returns a ``torch.nn.Module`` whose patch side is the registered one unless ``patch_size`` is
    given; a scikit-learn model needs ``n_classes`` and returns an unfitted estimator. ``seed`` fixes the
    initial weights."""
    spec = get_spec(name)
    if n_classes is None or (spec.family != "sklearn" and n_bands is None):
        needed = "n_classes" if spec.family == "sklearn" else "n_bands and n_classes"
        raise UserError(f"create_model({name!r}) needs {needed}, e.g. create_model({name!r}, n_bands=200, "
                        "n_classes=16)")
    known = spec.model_arguments()
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise UserError(f"model {name} has no option {unknown[0]!r}; its options are: "
                        f"{', '.join(sorted(known)) or 'none'}")
    arguments = {**known, **options}
    if spec.family == "sklearn":
        return build_registered(name, n_classes=n_classes, seed=seed, **arguments)
    patch = patch_size if patch_size is not None else spec.training_defaults()["patch_size"]
    saved = rng_states()  # the caller's random streams are left as they were
    try:
        if seed is not None:
            seed_everything(seed)
        return build_registered(name, n_bands=n_bands, n_classes=n_classes, patch_size=patch, seed=seed,
                                **arguments)
    finally:
        restore_rng_states(saved)


# ----- scenes --------------------------------------------------------------------------------------

def list_scenes() -> list[str]:
    """The names of the scenes in the installed catalogue (``IndianPines``, ``PaviaU``, ``Synthetic``, ...)."""
    return list(installed_plugins().scenes.names())


def load_scene(name: str, folder: Optional[PathLike] = None) -> Scene:
    """The catalogue scene ``name`` read from ``folder`` (default: $DEEPHYPERX_DATA, else ``Datasets``),
    or a scene declaration file (``.yaml``). For one's own cube and labels use :meth:`Scene.from_files`."""
    plugins = installed_plugins()
    return plugins.scenes.resolve(name, str(folder) if folder is not None else plugins.default_folder)


#: The API function that runs each family of models.
FAMILY_FUNCTIONS = {"neural": "train", "sklearn": "train", "generator": "generate",
                    "segmentation": None}


def require_api_family(name: str, families: tuple[str, ...], function: str) -> ModelSpec:
    """The registration of ``name``, refused (naming what runs it) when of another family than ``function`` runs."""
    spec = get_spec(name)
    if spec.family not in families:
        other = FAMILY_FUNCTIONS.get(spec.family)
        hint = f"use deephyperx.{other}({name!r}, ...)" if other else \
            f"run it with `deephyperx segment --model {name}` (aerial tile sets)"
        raise UserError(f"model {name} is a {spec.family} model, which deephyperx.{function} does not run; {hint}")
    return spec


# ----- training ------------------------------------------------------------------------------------

@dataclass
class Split:
    """Which pixels trained, validated and tested a run: three (H, W) boolean masks."""

    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray


@dataclass
class SeedResult:
    """One seed's run: its metrics (``metrics.json``), trained model, split, full-scene map and folder."""

    seed: int
    folder: Path
    metrics: dict[str, Any]
    split: Split
    prediction: np.ndarray
    model: "Classifier"


@dataclass
class TrainResult:
    """What :func:`train` gives back: every seed's run, and their mean ± std over seeds (``summary``,
    the content of ``results.json``). The attributes of the first seed are at hand directly."""

    summary: dict[str, Any]
    seeds: list[SeedResult] = field(default_factory=list)

    @property
    def metrics(self) -> dict[str, Any]:
        """The first seed's metrics: ``overall_accuracy``, ``average_accuracy``, ``kappa``, ``per_class``, ..."""
        return self.seeds[0].metrics

    @property
    def model(self) -> "Classifier":
        """The first seed's trained model."""
        return self.seeds[0].model

    @property
    def split(self) -> Split:
        return self.seeds[0].split

    @property
    def prediction(self) -> np.ndarray:
        """The first seed's class id of every pixel of the scene."""
        return self.seeds[0].prediction

    @property
    def folder(self) -> Path:
        """The first seed's folder (its ``model.pt`` or ``model.skops``, reports and maps)."""
        return self.seeds[0].folder

    @property
    def experiment_folder(self) -> Path:
        return Path(self.summary["folder"])


def train(model: str, scene: Union[Scene, str], *, training_sample: Optional[float] = None, seed: int = 0,
          epochs: Optional[int] = None, runs: int = 1, out: Optional[PathLike] = None,
          folder: Optional[PathLike] = None, **settings: Any) -> TrainResult:
    """Train model ``model`` (a registered name) on ``scene`` (a :class:`Scene` or a catalogue name read
    from ``folder``) and evaluate it on the test pixels, as ``python main.py --model MODEL ...`` does.

    ``training_sample`` is a fraction of each class's labelled pixels (below 1) or a number of pixels
    per class; ``epochs`` is ``--epoch``; ``runs`` seeds ``seed, seed+1, ...`` are trained; ``out`` is the
    folder of the experiment folders (default ``outputs``). Any other setting of the command line is a
    keyword with the flag's name (``patch_size=7``, ``sampling_mode="disjoint"``, ``lr=0.01``,
    ``model_args={"dropout": True}``); an unknown one is refused naming the closest. Unset settings keep
    the model's registered (paper) defaults."""
    spec = require_api_family(model, ("neural", "sklearn"), "train")
    if isinstance(scene, str):
        scene = load_scene(scene, folder)
    given = {**settings, "training_sample": training_sample, "seed": seed, "epoch": epochs, "runs": runs,
             "out": str(out) if out is not None else None, "folder": str(folder) if folder is not None else None}
    if isinstance(given["training_sample"], float) and given["training_sample"] > 1:
        given["training_sample"] = int(given["training_sample"])
    config = resolve_config(spec, {k: v for k, v in given.items() if v is not None})
    config["dataset"] = scene.name
    from deephyperx.runner import check_patch_fits, run_experiment

    check_patch_fits(config, spec.family, scene)
    summary = run_experiment(scene, config, command=None)
    if summary is None:
        raise UserError(f"{spec.name} on {scene.name}: no seed finished")
    experiment = Path(summary["folder"])
    return TrainResult(summary, [seed_result(experiment / f"seed{run['seed']}", int(run["seed"]))
                                 for run in summary["runs"]])


def seed_result(folder: Path, seed: int) -> SeedResult:
    """A finished seed's run read back from its folder."""
    with np.load(folder / "split.npz") as masks:
        split = Split(masks["train"], masks["validation"], masks["test"])
    model_file = folder / "model.pt" if (folder / "model.pt").is_file() else folder / "model.skops"
    return SeedResult(seed, folder, load_json(folder / "metrics.json"), split,
                      np.load(folder / "prediction.npy").astype(np.int64), load(model_file))


# ----- trained models ------------------------------------------------------------------------------

@dataclass
class Classifier:
    """A trained pixel classifier with the preprocessing of its training (normalisation, PCA), loaded
    from a run's ``model.pt`` (neural) or ``model.skops`` (scikit-learn) by :func:`load`."""

    path: Path
    name: str
    config: dict[str, Any]
    class_names: list[str]
    n_bands: int
    #: the network (neural models) or the fitted estimator (scikit-learn models)
    estimator: Any
    normaliser: Optional[Normaliser] = None
    projection: Optional[PCAProjection] = None

    @property
    def neural(self) -> bool:
        return self.path.suffix.lower() != ".skops"

    def predict(self, cube: CubeLike, *, key: Optional[str] = None, out: Optional[PathLike] = None,
                memory_budget: Union[str, int] = "2GB", batch_size: Optional[int] = None,
                device: str = "cpu", progress: bool = False) -> np.ndarray:
        """The class id (0..K-1, in :attr:`class_names` order) of every pixel of ``cube``: an array
        (H, W, B), a :class:`Scene`, or a raster file (``key``: its variable in a .mat/.h5).

        A neural model maps tile by tile within ``memory_budget`` (``"2GB"``, ``"512MiB"``, bytes), so a
        file larger than memory maps too; with ``out`` (``.npy``, ``.tif``, ``.h5``) the map is written
        there (an interrupted job resumes) and returned memory-mapped from it. A scikit-learn model
        classifies a band of rows at a time."""
        if isinstance(cube, Scene):
            cube = cube.cube
        if not self.neural:
            return self._predict_spectra(cube, key)
        from deephyperx.tiled_mapping import map_scene

        with tempfile.TemporaryDirectory(prefix="deephyperx-map-") as scratch:
            if isinstance(cube, np.ndarray):
                if cube.ndim != 3:
                    raise UserError(f"predict: the cube has shape {cube.shape}; give (rows, cols, bands)")
                source = Path(scratch) / "cube.npy"
                np.save(source, cube)
            else:
                source = Path(cube)
            target = Path(out) if out is not None else Path(scratch) / "map.npy"
            map_scene(self.path, source, target, key=None if isinstance(cube, np.ndarray) else key,
                      memory_budget=memory_budget, batch_size=batch_size, device=device, progress=progress)
            if out is not None:
                return open_lazy_cube(target).as_array()
            return np.load(target).astype(np.int64)

    def _predict_spectra(self, cube: Union[np.ndarray, PathLike], key: Optional[str]) -> np.ndarray:
        from deephyperx.inference import predict_pixels_sklearn

        raw = cube if isinstance(cube, np.ndarray) else open_lazy_cube(cube, key).as_array()
        if raw.ndim != 3 or raw.shape[2] != self.n_bands:
            raise UserError(f"predict: the cube has shape {raw.shape}; model {self.name} reads (rows, cols, "
                            f"{self.n_bands}) cubes")
        features = self.normaliser.apply(raw) if self.normaliser is not None else np.asarray(raw, np.float32)
        if self.projection is not None:
            features = self.projection.apply(features)
        return predict_pixels_sklearn(self.estimator, features)


def load(path: PathLike, *, trusted: bool = False) -> Classifier:
    """A trained classifier from a run's ``model.pt`` or ``model.skops``. Loading runs no code from the
    file (tensors and plain data only; a scikit-learn file only with the types deephyperx writes, unless
    ``trusted``)."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path} does not exist; give the model.pt or model.skops of a finished run")
    if path.suffix.lower() == ".skops":
        estimator, meta = ckpt.load_sklearn(path, trusted=trusted)
        projection = meta.get("projection")
        return Classifier(path, meta["config"]["model"], meta["config"], list(meta["class_names"]),
                          int(meta["n_bands"]), estimator,
                          Normaliser.from_state_dict(meta["normalisers"]["cube"]),
                          PCAProjection.from_state_dict(projection) if projection else None)
    from deephyperx.tiled_mapping import load_mapping_model

    mapping = load_mapping_model(path)
    return Classifier(path, mapping.name, mapping.config, mapping.class_names, mapping.n_bands, mapping.network,
                      mapping.normaliser, mapping.projection)


# ----- spectrum generators -------------------------------------------------------------------------

@dataclass
class GeneratedSpectra:
    """Labelled synthetic spectra (in the scene's units) written by :func:`generate`, with the run's
    summary (realism report included unless ``report=False``)."""

    spectra: np.ndarray
    labels: np.ndarray
    class_names: list[str]
    file: Path
    summary: dict[str, Any]


def generate(model: str, scene: Union[Scene, str], *, training_sample: Optional[float] = None, seed: int = 0,
             samples_per_class: int = 1000, classes: Optional[Sequence[str]] = None, epochs: Optional[int] = None,
             out: Optional[PathLike] = None, spectra_file: Optional[PathLike] = None, report: bool = True,
             folder: Optional[PathLike] = None, **settings: Any) -> GeneratedSpectra:
    """Train the conditional generator ``model`` (``cgan``, ``cvae``) on the training pixels of ``scene``
    and generate ``samples_per_class`` spectra of each class (or of ``classes``), as
    ``python main.py generate`` does. ``out`` is the folder of the run folders (default
    ``outputs/generate``); ``spectra_file`` the HDF5 file to write (default: ``synthetic.h5`` in the run
    folder)."""
    from deephyperx.generation_cli import GenerateSettings

    spec = require_api_family(model, ("generator",), "generate")
    if isinstance(scene, str):
        scene = load_scene(scene, folder)
    given = {**settings, "training_sample": training_sample, "seed": seed, "epoch": epochs,
             "out": str(out) if out is not None else None, "folder": str(folder) if folder is not None else None,
             "normalization": "minmax"}
    config = resolve_config(spec, {k: v for k, v in given.items() if v is not None}, declaration=GenerateSettings)
    config["dataset"] = scene.name
    request = GenerationRequest(samples_per_class=samples_per_class,
                                class_names=list(classes) if classes is not None else None,
                                out_file=Path(spectra_file) if spectra_file is not None else None, report=report)
    summary = run_generation(scene, config, request)
    if summary is None:
        raise UserError(f"{spec.name} on {scene.name}: the generator did not finish")
    written: LabelledSpectra = read_spectra_file(summary["spectra_file"])
    return GeneratedSpectra(written.spectra, written.labels, written.class_names, Path(summary["spectra_file"]),
                            summary)
