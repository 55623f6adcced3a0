"""A segmentation experiment on aerial tiles: train on random crops of the training regions, slide
over every test region, score against full and eroded ground truth, write reports.

:class:`SegmentTask` is the segmentation part of the experiment skeleton (:mod:`deephyperx.experiment`),
which writes each seed's run into ``<name>.partial/``, renames it when complete and resumes it from
its checkpoint (written every epoch by :class:`deephyperx.training.Trainer`) when the same command is
given again. Normalisation statistics of every source are fitted on the training regions only and
travel in the checkpoint. Several seeds give mean ± std (``results.json`` / ``results.md``).
"""
from __future__ import annotations

import contextlib
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Optional, Sequence

import numpy as np
import torch

from deephyperx import checkpoint as ckpt
from deephyperx import segmentation_steps  # noqa: F401  (registers the segmentation training steps)
from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.config import check_shared_settings
from deephyperx.config import experiment_id as config_experiment_id
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment, MonitorsPerSeed, SeedRun, Task
from deephyperx.metrics import (CLASS_MEANS, OVERALL_METRICS, aggregate_runs, confusion_matrix, mean_and_std,
                                segmentation_metrics)
from deephyperx.monitor import Monitor
from deephyperx.preprocessing import Normaliser
from deephyperx.registry import ModelSpec, create_model, get_spec
from deephyperx.reports import rgb_composite, save_confusion_png, save_json, save_map_comparison_png
from deephyperx.runner import resolve_device
from deephyperx.safe_paths import experiment_path, file_stem
from deephyperx.scene import IGNORE
from deephyperx.segmentation_reports import (aggregate_markdown, display_step, run_markdown,
                                             save_label_png)
from deephyperx.settings import MODEL, TILES, check_types, defaults, layer_settings, setting
from deephyperx.shared_settings import (ClassWeights, ConfigFile, Device, Flips, ModelChoice, ModelDefaults, ModelOptions,
                                        Monitoring, Output, Restore, Runs, SceneChoice, Seed, Validation)
from deephyperx.sliding_window import check_window, predict_tile
from deephyperx.steps import get_step
from deephyperx.tile_sampling import (RandomCrops, ResolvedRegion, TileReader, row_chunks, fit_source_normalisers,
                                      hold_out_rows, resolve_region)
from deephyperx.training import Trainer, TrainingData

#: Height and width of crops and windows must be multiples of this: the SegNet family pools 5 times.
SIZE_MULTIPLE = 32

#: Share of training crops centred on ``--focus_class`` pixels when no ``--focus_fraction`` is given.
DEFAULT_FOCUS_FRACTION = 0.5

@dataclass
class SegmentSettings(ModelChoice, SceneChoice, Validation, ModelDefaults, ModelOptions, ClassWeights, Flips, Runs, Seed,
                      Device, Output, Restore, ConfigFile, Monitoring):
    """The settings of ``main.py segment``: a tile set (a catalogue name, a .yaml declaration or files
    given as flags), a segmentation model and its training, sliding-window inference, detection."""

    SHOWN = {"dataset", "folder", "tileset_seed", "images", "labels", "eroded_labels", "extra", "class_names",
             "label_values", "ignored_labels", "train_tiles", "test_tiles", "name", "model", "inputs", "model_args",
             "epoch", "epoch_samples", "batch_size", "lr", "optimizer", "weight_decay", "patch_size", "stride",
             "flip_augmentation", "class_balancing", "focus_class", "focus_fraction", "normalization", "val_fraction",
             "restore", "runs", "seed", "reuse_finished", "out", "cuda", "predict_train", "detect",
             "detect_min_pixels", "detect_iou", "config", "visdom", "no_visdom", "visdom_server", "visdom_port",
             "visdom_username", "visdom_password", "tensorboard"}
    DEFAULTS = {"val_fraction": 0.0, "flip_augmentation": True, "out": "outputs/segment"}
    FLAGS = {
        "patch_size": {"flag": "--crop", "help": "crop side in pixels (a multiple of 32); also the test window"},
        "inputs": {"flag": "--sources", "nargs": "+", "help": "sources the model reads, in order (default: the model's)"},
        "flip_augmentation": {"flag": "--no_flip", "action": "store_const", "const": False,
                              "help": "no random flips and rotations of crops"},
    }

    tileset_seed: int = setting(0, group=TILES, config=False, flag_default=0,
                                help="seed of generated tile sets and random splits (SyntheticAerial, "
                                     "IndianPinesTwoSensors)")
    images: Optional[list] = setting(None, group=TILES, config=False, nargs="+", help="custom tile set: one image per tile")
    labels: Optional[list] = setting(None, group=TILES, config=False, nargs="+",
                                     help="custom tile set: one label raster per image")
    eroded_labels: Optional[list] = setting(None, group=TILES, config=False, nargs="+",
                                            help="custom tile set: eroded ground truth per image")
    extra: Optional[list] = setting(None, group=TILES, config=False, nargs="+", action="extend", metavar="SOURCE=FILES",
                                    help="custom tile set: another co-registered source, e.g. dsm=a.tif,b.tif")
    class_names: Optional[list] = setting(None, group=TILES, config=False, nargs="+", help="custom tile set: class names")
    label_values: Optional[list] = setting(None, group=TILES, config=False, nargs="+", type=int,
                                           help="custom tile set: label value of each class")
    ignored_labels: Optional[list] = setting(None, group=TILES, config=False, nargs="+", type=int,
                                             help="custom tile set: ignored values (default 0)")
    train_tiles: Optional[list] = setting(None, group=TILES, config=False, nargs="+",
                                          help="custom tile set: training tiles (by image file stem)")
    test_tiles: Optional[list] = setting(None, group=TILES, config=False, nargs="+",
                                         help="custom tile set: test tiles (by image file stem)")
    name: Optional[str] = setting(None, group=TILES, config=False,
                                  help="custom tile set: its name (default: the first image's stem)")
    #: a tile set declared on the command line: its files and classes
    custom: Optional[dict] = setting(None, flag=False)
    stride: Optional[int] = setting(None, group=MODEL, help="sliding-window stride at test time (default: half the crop)")
    focus_class: Optional[str] = setting(None, group=MODEL, metavar="CLASS",
                                         help="centre a share of the training crops on pixels of this rare class "
                                              "(e.g. car)")
    focus_fraction: Optional[float] = setting(None, group=MODEL,
                                              help="share of training crops centred on --focus_class (default 0.5)")
    predict_train: bool = setting(False, identity=False, action="store_true", help="also score the training regions")
    reuse_finished: bool = setting(False, identity=False, action="store_true",
                                   help="read back seeds already finished in the experiment's folder instead of "
                                        "running them again")
    detect: Optional[str] = setting(None, identity=False, metavar="CLASS",
                                    help="extract the objects of this class (e.g. car) and score them")
    detect_min_pixels: int = setting(1, identity=False, help="drop objects smaller than this (default 1)")
    detect_iou: float = setting(0.5, identity=False, help="box IoU of a match (default 0.5)")


# ----- configuration ----------------------------------------------------------------------------

def resolve_segmentation_config(spec: ModelSpec, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge the segment defaults, the model's training defaults and ``layers`` (YAML file, command
    line), skipping None values; check keys and values."""
    options = {k: v for k, v in spec.model_arguments().items() if k != "source_names"}  # the runner names sources
    base: dict[str, Any] = {**defaults(SegmentSettings), **spec.training_defaults(), "model": spec.name,
                            "model_args": dict(options)}
    config = layer_settings(base, layers, set(base), spec.name, options)
    if config["stride"] is None:
        config["stride"] = max(1, int(config["patch_size"]) // 2)
    check_types(config, SegmentSettings)
    validate_segmentation_config(config)
    return config


def validate_segmentation_config(config: dict[str, Any]) -> None:
    """Refuse values that cannot work, with one line naming the value and what to do."""
    check_shared_settings(config)
    for key, least in (("epoch", 0), ("batch_size", 1), ("runs", 1), ("patch_size", 1), ("stride", 1),
                       ("detect_min_pixels", 1)):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            flag = {"patch_size": "crop"}.get(key, key)
            raise UserError(f"--{flag} {value!r} must be a whole number of at least {least}")
    crop = config["patch_size"]
    if crop % SIZE_MULTIPLE:
        raise UserError(f"--crop {crop} is not a multiple of {SIZE_MULTIPLE} (the network pools 5 times by 2); "
                        f"use e.g. {max(SIZE_MULTIPLE, crop // SIZE_MULTIPLE * SIZE_MULTIPLE)}")
    check_window(crop, config["stride"])
    samples = config.get("epoch_samples")
    if samples is not None and (not isinstance(samples, int) or isinstance(samples, bool) or samples < 1):
        raise UserError(f"--epoch_samples {samples!r} must be a whole number of at least 1")
    if not isinstance(config["lr"], (int, float)) or config["lr"] <= 0:
        raise UserError(f"--lr {config['lr']!r} must be a positive number")
    if not 0 <= config["val_fraction"] < 1:
        raise UserError(f"--val_fraction {config['val_fraction']} must be in [0, 1)")
    if config["focus_class"] is None and config["focus_fraction"] is not None:
        raise UserError(f"--focus_fraction {config['focus_fraction']} needs --focus_class CLASS (e.g. car)")
    if config["focus_class"] is not None:
        config["focus_fraction"] = DEFAULT_FOCUS_FRACTION if config["focus_fraction"] is None else config["focus_fraction"]
        if not isinstance(config["focus_fraction"], (int, float)) or not 0 < config["focus_fraction"] <= 1:
            raise UserError(f"--focus_fraction {config['focus_fraction']!r} must be a number in (0, 1]")
    if not 0 < config["detect_iou"] <= 1:
        raise UserError(f"--detect_iou {config['detect_iou']} must be in (0, 1]")
    if config["normalization"] not in ("standard", "none"):
        raise UserError(f"--normalization {config['normalization']!r}: choose standard or none")
    if not config.get("inputs"):
        raise UserError("no sources to read; give --sources (e.g. --sources image dsm)")


def experiment_id(config: dict[str, Any]) -> str:
    """A short stable hash of the settings that change a run's numbers."""
    return config_experiment_id(config, SegmentSettings)


def experiment_folder(config: dict[str, Any], tileset_name: str) -> Path:
    """``<out>/<tileset>_<model>_<hash>``: one folder per distinct experiment."""
    return experiment_path(config["out"], [(tileset_name, "tile-set name"), (config["model"], "model name")],
                           experiment_id(config))


def check_tileset_for(config: dict[str, Any], tileset: Any) -> None:
    """Refuse, before anything is written, a tile set this experiment cannot run on: a source the
    model reads that the tiles lack, a class to detect that does not exist, no test regions."""
    missing = [s for s in config["inputs"] if s not in tileset.source_channels]
    if missing:
        raise UserError(f"model {config['model']} reads sources {', '.join(config['inputs'])} but tile set "
                        f"{tileset.name} has no '{missing[0]}' (it has: {', '.join(tileset.source_channels)}); "
                        "choose its sources with --sources or give the missing rasters")
    for flag in ("detect", "focus_class"):
        if config.get(flag) is not None:
            class_index(tileset.class_names, config[flag], flag)
    if not tileset.test:
        raise UserError(f"tile set {tileset.name} has no test regions; declare test tiles (e.g. --test_tiles)")
    if config["epoch"] > 0 and not tileset.train:
        raise UserError(f"tile set {tileset.name} has no training regions; declare training tiles or use "
                        "--restore CKPT --epoch 0")


def class_index(class_names: Sequence[str], name: str, flag: str = "detect") -> int:
    """The id of class ``name`` (case-insensitive, or a number) given by ``--flag``."""
    if str(name).isdigit() and int(name) < len(class_names):
        return int(name)
    lowered = [c.lower() for c in class_names]
    if str(name).lower() not in lowered:
        raise UserError(f"--{flag} {name}: no such class; choose one of: {', '.join(class_names)}")
    return lowered.index(str(name).lower())


# ----- one run ----------------------------------------------------------------------------------

@dataclass
class RegionScore:
    """Confusion matrices of one predicted region, and what was written for it."""

    name: str
    tile: str
    window: tuple[int, int, int, int]
    full: np.ndarray
    eroded: np.ndarray
    detection: Optional[dict] = None


def region_names(regions: Sequence[ResolvedRegion], tile_shapes: Callable[[str], tuple[int, int]]) -> list[str]:
    """A readable unique name per region: the tile's name when the region is the whole tile."""
    names = []
    for region in regions:
        r0, r1, c0, c1 = region.window
        whole = (r0, c0) == (0, 0) and (r1, c1) == tuple(tile_shapes(region.tile)) and region.mask is None
        names.append(region.tile if whole else f"{region.tile}_r{r0}-{r1}_c{c0}-{c1}")
    seen: dict[str, int] = {}
    unique = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        unique.append(name if names.count(name) == 1 else f"{name}_{seen[name]}")
    return unique


def confusion_over_region(reader: TileReader, region: ResolvedRegion, prediction: np.ndarray, n_classes: int,
                          eroded: bool) -> np.ndarray:
    """Confusion matrix of ``prediction`` (the region's window) against its labels, band by band."""
    cm = np.zeros((n_classes, n_classes), dtype=np.int64)
    r0, _, c0, _ = region.window
    for chunk in row_chunks(region.window):
        truth = reader.labels(region.tile, chunk, eroded=eroded)
        rows = slice(chunk[0] - r0, chunk[1] - r0)
        if region.mask is not None:
            truth = np.where(region.mask[rows], truth, IGNORE)
        cm += confusion_matrix(truth, prediction[rows], n_classes)
    return cm


def strided_read(read: Callable[[tuple[int, int, int, int]], np.ndarray], window: tuple[int, int, int, int],
                 step: int, chunk_pixels: int = 1 << 22) -> np.ndarray:
    """Every ``step``-th pixel of ``window`` (rows and columns), read through ``read`` in bands of
    about ``chunk_pixels``: a reduced view of a big tile for figures, without loading it whole."""
    r0, r1, c0, c1 = window
    rows_per_chunk = max(step, chunk_pixels // max(c1 - c0, 1) // step * step)
    return np.concatenate([read((row, min(row + rows_per_chunk, r1), c0, c1))[::step, ::step]
                           for row in range(r0, r1, rows_per_chunk)])


def strided_labels(reader: TileReader, region: ResolvedRegion, step: int, eroded: bool = False) -> np.ndarray:
    """Every ``step``-th label of the region, IGNORE outside its mask (see :func:`strided_read`)."""
    r0 = region.window[0]

    def read(chunk: tuple[int, int, int, int]) -> np.ndarray:
        labels = reader.labels(region.tile, chunk, eroded=eroded)
        if region.mask is not None:
            labels = np.where(region.mask[chunk[0] - r0:chunk[1] - r0], labels, IGNORE)
        return labels
    return strided_read(read, region.window, step)


@dataclass
class SegmentParts:
    """What a segmentation seed builds before any folder exists, and its inference time so far."""

    model: torch.nn.Module
    restored: Optional[dict]
    test: list[ResolvedRegion]
    inference_seconds: float = 0.0  # sliding-window prediction of the test regions


class SegmentTask(Task):
    """Segmentation of a tile set: train on random crops of the training regions, slide over every
    test region, score against full and eroded ground truth, write reports."""

    run_facts = ("seed", "overall_accuracy", "kappa", "mean_f1", "mean_iou", "train_seconds", "inference_seconds",
                 "parameters", "epochs", "n_test")

    def __init__(self, tileset: Any, config: dict[str, Any]):
        self.tileset, self.config = tileset, config
        self.spec: ModelSpec = get_spec(config["model"])
        self.name, self.model, self.class_names = tileset.name, self.spec.name, list(tileset.class_names)
        self.inputs = list(config["inputs"])
        self.channels = [int(tileset.source_channels[s]) for s in self.inputs]
        self.n_classes = len(tileset.class_names)

    def experiment_folder(self) -> Path:
        return experiment_folder(self.config, self.tileset.name)

    def prepare(self, run: SeedRun) -> SegmentParts:
        restored = self._restored_checkpoint()
        model = self._build_model(restored)  # an impossible model fails before any folder exists
        return SegmentParts(model, restored, [resolve_region(self.tileset, r) for r in self.tileset.test])

    def summarise(self, runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
        return aggregate_segmentation(runs)

    def results_markdown(self, title: str, aggregate: dict[str, Any], commands: Optional[list[str]]) -> str:
        return aggregate_markdown(title, aggregate, commands)

    def fit_and_report(self, run: SeedRun) -> Optional[dict[str, Any]]:
        parts, monitor = run.parts, run.monitor
        started = time.perf_counter()
        train_regions, val_regions = self._training_regions()
        normalisers = self._normalisers(run.resume or parts.restored, train_regions)
        reader = TileReader(self.tileset, self.inputs, normalisers)
        self._show_tiles(monitor, reader, parts.test[0])
        trainer = self._trainer(run, reader, normalisers, train_regions, val_regions)
        state = run.train(trainer)
        if state is None:
            return None
        device = trainer.device
        names = region_names(parts.test, self.tileset.tile_shape)
        areas = [window_area(region.window) for region in parts.test]
        scores = [self._predict_region(run, trainer.model, reader, region, name, device, first=i == 0,
                                       progress=region_progress(run.monitor, "predicting the test regions", areas, i))
                  for i, (region, name) in enumerate(zip(parts.test, names))]
        metrics = self._metrics(scores)
        metrics.update({"seed": run.seed, "scene": self.tileset.name, "model": self.spec.name,
                        "sources": self.inputs, "train_seconds": state.train_seconds,
                        "inference_seconds": parts.inference_seconds, "epochs": state.epoch,
                        "parameters": sum(p.numel() for p in parts.model.parameters()),
                        "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
                        "wall_seconds": time.perf_counter() - started,
                        "n_train_regions": len(train_regions), "n_validation_regions": len(val_regions)})
        if run.config.get("predict_train") and train_regions:
            metrics["train"] = self._score_training_regions(trainer.model, reader, train_regions, device, run.monitor)
        run.keep_model(trainer)
        monitor.confusion(np.asarray(metrics["confusion_matrix"]), self.tileset.class_names)
        self._write_reports(run, metrics)
        return metrics

    # --- data ------------------------------------------------------------------------------------
    def _training_regions(self) -> tuple[list[Any], list[Any]]:
        regions = list(self.tileset.train)
        if self.config["val_fraction"] > 0 and regions:
            return hold_out_rows(self.tileset, regions, self.config["val_fraction"])
        return regions, []

    def _normalisers(self, checkpoint: Optional[dict], train_regions: list[Any]) -> dict[str, Normaliser]:
        """The statistics a checkpoint carries (resumed or restored run), else fitted on training regions."""
        if checkpoint is not None:
            return {k: Normaliser.from_state_dict(v) for k, v in checkpoint["normalisers"].items()}
        return fit_source_normalisers(self.tileset, train_regions, self.inputs, self.config["normalization"])

    def _trainer(self, run: SeedRun, reader: TileReader, normalisers: dict[str, Normaliser],
                 train_regions: list[Any], val_regions: list[Any]) -> Trainer:
        cfg, crop = run.config, int(run.config["patch_size"])
        device = resolve_device(cfg["cuda"])
        focus = None if cfg["focus_class"] is None else \
            (class_index(self.tileset.class_names, cfg["focus_class"], "focus_class"), float(cfg["focus_fraction"]))
        train = RandomCrops(self.tileset, train_regions, self.inputs, crop, normalisers,
                            augment=bool(cfg["flip_augmentation"]), reader=reader, seed=run.seed, focus=focus) \
            if train_regions and cfg["epoch"] > 0 else _NoCrops()
        validation = RandomCrops(self.tileset, val_regions, self.inputs, crop, normalisers, augment=False,
                                 reader=reader, seed=run.seed) if val_regions else None
        weights = None
        if cfg["class_balancing"] and isinstance(train, RandomCrops):
            counts = train.labelled_counts(self.n_classes)
            weights = _inverse_median_frequency(counts)
        data = TrainingData(train, validation, self.n_classes, None, weights)
        describe = {"class_names": list(self.tileset.class_names), "scene": self.tileset.name,
                    "inputs": self.inputs, "channels": self.channels,
                    "normalisers": {k: n.state_dict() for k, n in normalisers.items()}}
        return Trainer(run.parts.model, get_step(cfg["supervision"]), data, cfg, run.monitor, device,
                       checkpoint_path=run.checkpoint, checkpoint_extra=lambda: describe)

    # --- prediction and scores -------------------------------------------------------------------
    def _predict(self, model: torch.nn.Module, reader: TileReader, region: ResolvedRegion, device: torch.device,
                 probabilities: Optional[np.ndarray] = None, probability_class: Optional[int] = None,
                 progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
        r0, r1, c0, c1 = region.window
        prediction = np.empty((r1 - r0, c1 - c0), dtype=np.int16)
        crop = int(self.config["patch_size"])
        return predict_tile(model, reader.window_reader(region.tile, region.window), prediction.shape,
                            self.n_classes, crop, int(self.config["stride"]), int(self.config["batch_size"]),
                            device, probabilities, probability_class, out=prediction, progress=progress)

    def _predict_region(self, run: SeedRun, model: torch.nn.Module, reader: TileReader, region: ResolvedRegion,
                        name: str, device: torch.device, first: bool,
                        progress: Optional[Callable[[int, int], None]] = None) -> RegionScore:
        """Predict one test region, write its maps, score it (and extract objects when asked)."""
        folder = run.partial / "predictions"
        folder.mkdir(parents=True, exist_ok=True)
        stem = file_stem(name)
        detect = self.config.get("detect")
        probabilities, class_id = None, None
        if detect is not None:
            class_id = class_index(self.tileset.class_names, detect)
            r0, r1, c0, c1 = region.window
            label = file_stem(self.tileset.class_names[class_id])
            probabilities = np.lib.format.open_memmap(folder / f"{stem}_{label}_probability.npy", mode="w+",
                                                      dtype=np.float32, shape=(r1 - r0, c1 - c0))
        started = time.perf_counter()
        prediction = self._predict(model, reader, region, device, probabilities, class_id, progress)
        run.parts.inference_seconds += time.perf_counter() - started
        with atomic_path(folder / f"{stem}.npy") as tmp:
            np.save(tmp, prediction)
        save_label_png(prediction, self.tileset.palette, self.n_classes, folder / f"{stem}.png")
        step = display_step(*prediction.shape)
        truth_view = strided_labels(reader, region, step)
        shown = np.asarray(prediction[::step, ::step], dtype=np.int64)
        save_map_comparison_png(truth_view, shown, self.tileset.palette, self.tileset.class_names,
                                folder / f"{stem}_comparison.png")
        if first:  # the map the run's report.html shows
            with atomic_path(run.partial / "map.png") as tmp:
                shutil.copyfile(folder / f"{stem}_comparison.png", tmp)
            run.monitor.label_map("prediction", shown, self.tileset.palette, self.tileset.class_names)
        score = RegionScore(name, region.tile, region.window,
                            confusion_over_region(reader, region, prediction, self.n_classes, eroded=False),
                            confusion_over_region(reader, region, prediction, self.n_classes, eroded=True))
        if detect is not None:
            score.detection = self._detect(run, reader, region, stem, prediction, probabilities, class_id)
            probabilities.flush()
            del probabilities
        return score

    def _detect(self, run: SeedRun, reader: TileReader, region: ResolvedRegion, stem: str, prediction: np.ndarray,
                probabilities: np.ndarray, class_id: int) -> dict:
        """Segment-before-detect on one region: objects of ``class_id`` as CSV/GeoJSON, scored against
        the connected components of the full ground truth (eroding it would wipe out small vehicles)."""
        from deephyperx.objects import detect

        truth = reader.labels(region.tile, region.window)
        predicted = prediction
        if region.mask is not None:
            truth = np.where(region.mask, truth, IGNORE)
            predicted = np.where(region.mask, prediction, IGNORE)
        transform, crs = self._map_transform(region)
        cfg = self.config
        return detect(predicted, class_id, run.partial / "objects", truth=truth, scores=probabilities,
                      min_pixels=int(cfg["detect_min_pixels"]), iou_threshold=float(cfg["detect_iou"]),
                      class_names=list(self.tileset.class_names), transform=transform, crs=crs,
                      stem=f"{stem}_{file_stem(self.tileset.class_names[class_id])}")

    def _map_transform(self, region: ResolvedRegion):
        """Affine transform from the region's pixels to map coordinates (a GeoTIFF tile's grid) or to
        the tile's pixel coordinates; None when the region starts at the tile's corner and has no grid."""
        from deephyperx.objects import geotiff_transform

        r0, _, c0, _ = region.window
        path = self.tileset.tiles[region.tile].sources.get(self.inputs[0], "")
        grid, crs = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), None
        if str(path).lower().endswith((".tif", ".tiff")):
            with contextlib.suppress(UserError):  # a TIFF without georeferencing: pixel coordinates
                grid, crs = geotiff_transform(path)
        a, b, c, d, e, f = grid
        transform = (a, b, c + a * c0 + b * r0, d, e, f + d * c0 + e * r0)
        if crs is None and transform == (1.0, 0.0, 0.0, 0.0, 1.0, 0.0):
            return None, None
        return transform, crs

    def _metrics(self, scores: list[RegionScore]) -> dict[str, Any]:
        names = list(self.tileset.class_names)
        full = sum(s.full for s in scores)
        eroded = sum(s.eroded for s in scores)
        metrics = segmentation_metrics(full, names)
        metrics["eroded"] = segmentation_metrics(eroded, names) if eroded.sum() else None
        metrics["regions"] = []
        for s in scores:
            one = segmentation_metrics(s.full, names) if s.full.sum() else None
            metrics["regions"].append({"name": s.name, "tile": s.tile, "window": list(s.window),
                                       "n_test": int(s.full.sum()),
                                       **{k: (one[k] if one else None) for k in ("overall_accuracy", "kappa",
                                                                                  "mean_f1", "mean_iou")}})
        detections = [s.detection for s in scores if s.detection is not None]
        if detections:
            metrics["detection"] = pooled_detection(detections)
        return metrics

    def _score_training_regions(self, model: torch.nn.Module, reader: TileReader, regions: list[Any],
                                device: torch.device, monitor: Monitor) -> dict[str, Any]:
        """OA, kappa, mean F1 and mIoU on the training regions (to see over-fitting)."""
        cm = np.zeros((self.n_classes, self.n_classes), dtype=np.int64)
        resolved = [resolve_region(self.tileset, r) for r in regions]
        areas = [window_area(region.window) for region in resolved]
        for i, region in enumerate(resolved):
            progress = region_progress(monitor, "predicting the training regions", areas, i)
            cm += confusion_over_region(reader, region, self._predict(model, reader, region, device, progress=progress),
                                        self.n_classes, eroded=False)
        scores = segmentation_metrics(cm, list(self.tileset.class_names))
        return {k: scores[k] for k in (*OVERALL_METRICS, *CLASS_MEANS, "n_test")}

    # --- figures for the monitors ------------------------------------------------------------------
    def _show_tiles(self, monitor: Monitor, reader: TileReader, region: ResolvedRegion) -> None:
        """Send the monitors the first test region: its RGB composite and its ground truth."""
        tileset = self.tileset
        r0, r1, c0, c1 = region.window
        step = display_step(r1 - r0, c1 - c0)
        source, bands = getattr(tileset, "rgb_source", None), getattr(tileset, "rgb_channels", None)
        if source in tileset.source_channels and bands is not None:
            raw = strided_read(lambda chunk: tileset.read_source(region.tile, source, chunk), region.window, step)
            monitor.image("rgb", rgb_composite(raw, bands))
        monitor.label_map("ground_truth", strided_labels(reader, region, step), tileset.palette,
                          tileset.class_names)

    # --- restored checkpoints and models ----------------------------------------------------------
    def _restored_checkpoint(self) -> Optional[dict]:
        path = self.config.get("restore")
        if not path:
            return None
        data = ckpt.load_checkpoint(path)
        saved = data.get("config", {})
        if saved.get("model") != self.spec.name:
            raise UserError(f"checkpoint {path} is of model '{saved.get('model')}', not '{self.spec.name}'; "
                            f"use --model {saved.get('model')} or another checkpoint")
        if list(data.get("class_names", [])) != list(self.tileset.class_names):
            raise UserError(f"checkpoint {path} was trained on classes {data.get('class_names')}, not on "
                            f"{self.tileset.name}'s {list(self.tileset.class_names)}")
        if list(data.get("channels", [])) != self.channels or "normalisers" not in data:
            raise UserError(f"checkpoint {path} reads sources {data.get('inputs')} with {data.get('channels')} "
                            f"channels, not {self.inputs} with {self.channels}; give matching --sources")
        return data

    def _build_model(self, restored: Optional[dict]) -> torch.nn.Module:
        model = create_model(self.spec.name, n_classes=self.n_classes, channels=self.channels,
                             source_names=self.inputs, **self.config["model_args"])
        if restored is not None:
            try:
                model.load_state_dict(restored["model_state"])
            except RuntimeError as error:
                first = str(error).strip().splitlines()[0]
                raise UserError(f"checkpoint {self.config['restore']} does not fit this {self.spec.name} "
                                f"({first[:160]}); give the same --model_args it was trained with") from None
        return model

    # --- reports ---------------------------------------------------------------------------------
    def _write_reports(self, run: SeedRun, metrics: dict) -> None:
        folder = run.partial
        save_json(folder / "metrics.json", metrics)
        names = list(self.tileset.class_names)
        save_confusion_png(np.asarray(metrics["confusion_matrix"]), names, folder / "confusion.png")
        if metrics.get("eroded"):
            save_confusion_png(np.asarray(metrics["eroded"]["confusion_matrix"]), names,
                               folder / "confusion_eroded.png")
        atomic_write_text(folder / "summary.md", run_markdown(
            f"{self.spec.name} on {self.tileset.name}, seed {run.seed}", metrics, run.config))


class _NoCrops:
    """The training set of a run that only evaluates (``--epoch 0``): no samples."""

    def __len__(self) -> int:
        return 0


def window_area(window: Sequence[int]) -> int:
    """Pixels of a (row0, row1, col0, col1) window."""
    r0, r1, c0, c1 = window
    return (r1 - r0) * (c1 - c0)


def region_progress(monitor: Monitor, what: str, areas: Sequence[int], index: int) -> Callable[[int, int], None]:
    """The ``progress(done, total)`` of region ``index``'s prediction, told to ``monitor`` as a share of
    all the regions' pixels (``areas``), so one estimate of the time left covers every region."""
    before, total, note = sum(areas[:index]), sum(areas), f"region {index + 1} of {len(areas)}"
    return lambda done, _total: monitor.progress(what, before + done, total, note, "px")


def _inverse_median_frequency(counts: np.ndarray) -> torch.Tensor:
    """Class weights ``median(freq) / freq`` from pixel counts (absent classes weigh 0)."""
    freq = counts / max(counts.sum(), 1)
    present = freq > 0
    weights = np.zeros(len(counts))
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.tensor(weights, dtype=torch.float32)


def pooled_detection(results: Sequence[dict]) -> dict[str, Any]:
    """Object-level precision, recall and F1 over several regions, from their summed counts."""
    tp, fp, fn = (sum(int(r.get(k, 0)) for r in results) for k in ("tp", "fp", "fn"))
    empty = 1.0 if tp + fp + fn == 0 else 0.0
    precision = tp / (tp + fp) if tp + fp else empty
    recall = tp / (tp + fn) if tp + fn else empty
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"class": results[0]["class"], "class_id": results[0]["class_id"], "precision": precision,
            "recall": recall, "f1": f1, "tp": tp, "fp": fp, "fn": fn,
            "objects": sum(int(r["objects"]) for r in results),
            "iou_threshold": results[0].get("iou_threshold")}


# ----- several runs -------------------------------------------------------------------------------

def aggregate_segmentation(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean ± sample std over runs of OA, AA, kappa, per-class scores, mean F1 and mIoU, on full and
    eroded ground truth, and of object-level scores when detection ran."""
    aggregate = aggregate_runs(runs)
    for key in CLASS_MEANS:
        aggregate[key] = mean_and_std([run.get(key) for run in runs])
    eroded = [run["eroded"] for run in runs if run.get("eroded")]
    if len(eroded) == len(runs):
        aggregate["eroded"] = aggregate_runs(eroded)
        for key in CLASS_MEANS:
            aggregate["eroded"][key] = mean_and_std([run.get(key) for run in eroded])
    detections = [run["detection"] for run in runs if run.get("detection")]
    if detections:
        aggregate["detection"] = {"class": detections[0]["class"],
                                  **{k: mean_and_std([d[k] for d in detections]) for k in ("precision", "recall", "f1")}}
    return aggregate


def run_segmentation_experiment(tileset: Any, config: dict[str, Any], command: Optional[str] = None,
                                extra_monitors: Optional[MonitorsPerSeed] = None) -> dict[str, Any]:
    """``config['runs']`` runs of :class:`SegmentTask` with seeds ``seed, seed+1, ...`` and their
    aggregate report (see :meth:`~deephyperx.experiment.Experiment.run`: claimed seeds, diverged seeds
    recorded and left out); with ``reuse_finished``, a seed whose folder is complete is read back
    instead of run again. ``results.json`` and ``results.md`` aggregate every seed finished in the
    folder, whichever command ran it; the returned aggregate covers this command's seeds."""
    check_tileset_for(config, tileset)
    return Experiment(SegmentTask(tileset, config)).run(command, extra_monitors,
                                                        reuse_finished=bool(config.get("reuse_finished")))
