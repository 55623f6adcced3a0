"""Pixel classification of a scene: split, normalise, train, map the whole scene, score, write files.

:class:`ClassifyTask` is the classification part of the experiment skeleton
(:mod:`deephyperx.experiment`), which owns the seeds, the ``.partial`` folders and their resumption,
the monitors and the aggregate over seeds; :func:`run_experiment` drives it. Under torchrun
(:mod:`deephyperx.distributed`) every rank trains; rank 0 alone maps the scene and writes the reports.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from deephyperx import checkpoint as ckpt
from deephyperx import distributed
from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.config import experiment_id, model_band_count
from deephyperx.precision import precision_context
from deephyperx.allocator import return_freed_memory, trim_heap
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment, MonitorsPerSeed, SeedRun, Task
from deephyperx.hashing import file_sha256
from deephyperx.inference import predict_centre, predict_dense, predict_pixels_sklearn
from deephyperx.metrics import confusion_matrix, metrics_from_confusion
from deephyperx.progress import run_label
from deephyperx.preprocessing import Normaliser, PCAProjection, fit_normaliser, fit_pca
from deephyperx.registry import ModelSpec, create_model, get_spec
from deephyperx.reports import (run_summary_markdown, save_confusion_png, save_json, rgb_composite, save_label_map_png,
                                save_map_comparison_png)
from deephyperx.safe_paths import experiment_path
from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler
from deephyperx.scene import IGNORE, Scene, class_spectra
from deephyperx.protocols import protocol_record, validation_source
from deephyperx.splits import (choose_validation, map_truth, split_from_label_maps, split_pixels, split_summary,
                               split_warnings)
from deephyperx.steps import get_step
from deephyperx.synthetic_mixing import (SyntheticDraw, draw_synthetic, mixing_maker, resolve_synthetic_settings,
                                         summary_lines)
from deephyperx.training import Trainer, TrainingData, inverse_median_frequency


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    #: what makes the split a weak test of what was asked (:func:`~deephyperx.splits.split_warnings`)
    warnings: list[str] = field(default_factory=list)
    #: every pixel's class for this run: the scene's labels, or fixed maps' classes on their pixels
    labels: Optional[np.ndarray] = None
    #: where the validation pixels come from (:func:`~deephyperx.protocols.validation_source`)
    validation_source: str = "train"
    #: fixed maps only: per set, pixels and departures from the scene's labels (:func:`~deephyperx.splits.map_truth`)
    maps: dict = field(default_factory=dict)

    def truth(self, scene: Scene) -> np.ndarray:
        """The class of every pixel for this run (the scene's labels unless fixed maps override them)."""
        return scene.labels if self.labels is None else self.labels

    def fitted(self) -> np.ndarray:
        """The pixels a scikit-learn model fits: training plus validation carved out of it (its own
        cross-validation plays validation), never validation drawn from elsewhere."""
        return self.train | self.validation if self.validation_source == "train" else self.train


# ----- devices -----------------------------------------------------------------------------------

def describe_device(device: torch.device) -> str:
    """``cpu``, or the GPU's index and name (e.g. ``cuda:0 NVIDIA H100 80GB HBM3``): times depend on it."""
    if device.type != "cuda":
        return device.type
    return f"{device} {torch.cuda.get_device_name(device)}"


def resolve_device(cuda: int) -> torch.device:
    """``--cuda N`` picks GPU N; -1, or no GPU present, means the CPU (with one warning line)."""
    if cuda is None or cuda < 0:
        return torch.device("cpu")
    if not torch.cuda.is_available():
        print(f"warning: --cuda {cuda} asked but no CUDA device is available; running on the CPU", file=sys.stderr)
        return torch.device("cpu")
    if cuda >= torch.cuda.device_count():
        raise UserError(f"--cuda {cuda}: only {torch.cuda.device_count()} CUDA device(s); use 0..{torch.cuda.device_count() - 1} or -1")
    return torch.device(f"cuda:{cuda}")


# ----- splits ------------------------------------------------------------------------------------

def label_map_from_file(path: str, scene: Scene) -> np.ndarray:
    """Read a train/test label raster and map its values to the scene's class ids."""
    from deephyperx.readers import read_raster

    raw = np.asarray(read_raster(path))
    if raw.shape != scene.shape:
        raise UserError(f"label file {path} is {raw.shape[0]}x{raw.shape[1]} but the scene is "
                        f"{scene.shape[0]}x{scene.shape[1]}; give labels of the scene's size")
    ids = np.full(raw.shape, IGNORE, dtype=np.int64)
    for class_id, value in enumerate(scene.label_values):
        ids[raw == value] = class_id
    unknown = np.setdiff1d(np.unique(raw[ids == IGNORE]), [0])
    if unknown.size:
        raise UserError(f"label file {path} holds values {unknown[:10].tolist()} that are not classes of "
                        f"{scene.name} (its class values: {scene.label_values}); fix the file or the scene")
    return ids


def make_split(scene: Scene, config: dict[str, Any], seed: int) -> Split:
    """Train/validation/test masks for this run, deterministic under ``seed``."""
    truth, maps = scene.labels, {}
    if config.get("train_set") or config.get("test_set"):
        if not (config.get("train_set") and config.get("test_set")):
            raise UserError("--train_set and --test_set go together; give both label files")
        train_map, test_map = (label_map_from_file(config[k], scene) for k in ("train_set", "test_set"))
        train, test = split_from_label_maps(train_map, test_map)
        truth, maps = map_truth(scene.labels, train_map, test_map)
        for side, counts in maps.items():
            for key, what in (("unlabelled_in_scene", "unlabelled"), ("other_class_in_scene", "of another class")):
                if counts[key]:
                    print(f"warning: [{run_label(config['model'], scene.name, seed)}] {counts[key]} "
                          f"{'training' if side == 'train' else side} pixels of "
                          f"{Path(config[side + '_set']).name} are {what} in the label file of {scene.name}; "
                          "their class is the map's", file=sys.stderr)
    else:
        train, test = split_pixels(scene.labels, config["sampling_mode"], config["training_sample"], seed,
                                   patch_size=config["patch_size"], guard=config.get("guard"),
                                   block_size=config.get("block_size"), class_names=scene.class_names)
    # label-file splits are not checked against training_sample, which they do not use
    asked = 0.0 if config.get("train_set") else float(config["training_sample"])
    warnings = split_warnings(truth, train, test, asked, scene.class_names)
    for line in warnings:
        print(f"warning: [{run_label(config['model'], scene.name, seed)}] the split is weak: {line}", file=sys.stderr)
    per_class = config.get("val_per_class")
    train, validation, test = choose_validation(train, test, truth, seed, config["val_fraction"], per_class,
                                                config.get("validation_from") or "train", scene.class_names)
    return Split(train, validation, test, warnings, None if truth is scene.labels else truth,
                 validation_source(config.get("validation_from"), per_class), maps)


# ----- one run -----------------------------------------------------------------------------------

def check_patch_fits(config: dict[str, Any], family: str, scene: Scene) -> None:
    """Refuse a patch larger than the scene, and a patch around the spectra of a scikit-learn model."""
    if config["patch_size"] > min(scene.shape):
        raise UserError(f"--patch_size {config['patch_size']} is larger than scene {scene.name} "
                        f"({scene.shape[0]}x{scene.shape[1]}); choose at most {min(scene.shape)}")
    if family == "sklearn" and config["patch_size"] != 1:
        raise UserError(f"model {config['model']} classifies single spectra; drop --patch_size or use a neural model")


def run_folder_names(config: dict[str, Any], scene: Scene) -> Path:
    """``<out>/<scene>_<model>_<mode><sample>_<hash>``: one folder per distinct experiment."""
    mode = "file" if config.get("train_set") else config["sampling_mode"]
    return experiment_path(config["out"], [(scene.name, "scene name"), (config["model"], "model name"),
                                           (f"{mode}{config['training_sample']}", "split")],
                           experiment_id(with_input_checksums(config, scene)))


def with_input_checksums(config: dict[str, Any], scene: Scene) -> dict[str, Any]:
    """``config`` with the checksums of inputs that their names do not pin down, which join the
    experiment's identity (its folder), so that different data never share a folder: a custom scene's
    content (``scene_sha256``, see :meth:`~deephyperx.scene.Scene.content_sha256`: the same data under
    any file name, format or folder gives the same value) and the label rasters of
    ``--train_set/--test_set`` (``train_set_sha256``, ``test_set_sha256``; their paths stay in the
    identity too). Catalogue and embedded scenes are identified by their names, as before: a download
    checks its files' checksums, and hashing a large scene at every start would cost time and rename
    every existing experiment folder. Values found in ``config`` (a YAML file) are replaced."""
    sums: dict[str, Any] = {"scene_sha256": scene.content_sha256() if scene.by_content else None}
    for key in ("train_set", "test_set"):
        path = config.get(key)
        sums[f"{key}_sha256"] = file_sha256(path) if path and Path(path).is_file() else None
    return {**config, **sums}


def neural_inputs(scene: Scene, spec_inputs: list[str]) -> list[np.ndarray]:
    """The rasters a model reads, in order: the cube, then named extras (e.g. a DSM)."""
    rasters = []
    for name in spec_inputs:
        if name == "cube":
            rasters.append(scene.cube)
        elif name in scene.extras:
            rasters.append(scene.extras[name])
        else:
            raise UserError(f"the model reads a '{name}' raster that scene {scene.name} does not have "
                            f"(it has: {', '.join(['cube', *scene.extras]) })")
    return rasters


# ----- the classification task -------------------------------------------------------------------

@dataclass
class ClassifyParts:
    """What a classification seed builds before any folder exists."""

    split: Split
    restored: Optional[dict]
    model: Any  # a torch module or a scikit-learn estimator
    synthetic: Optional[SyntheticDraw] = None


class ClassifyTask(Task):
    """Pixel classification of a scene: split, normalise, train (a neural or a scikit-learn model),
    map the whole scene, score on the test pixels, write the reports."""

    run_facts = ("seed", "overall_accuracy", "average_accuracy", "kappa", "train_seconds", "inference_seconds",
                 "parameters", "epochs", "n_train", "n_validation", "n_test", "device")

    def __init__(self, scene: Scene, config: dict[str, Any]):
        self.scene, self.config = scene, config
        self.spec: ModelSpec = get_spec(config["model"])
        self.name, self.model, self.class_names = scene.name, self.spec.name, scene.class_names

    def experiment_folder(self) -> Path:
        return run_folder_names(self.config, self.scene)

    def prepare(self, run: SeedRun) -> ClassifyParts:
        join_process_group(run.config)
        if distributed.world_size() > 1 and self.spec.family != "neural":
            raise UserError(f"model {self.spec.name} is a {self.spec.family} model; distributed training (torchrun) "
                            "is for neural models: run it in one process (python main.py ...)")
        run.config = resolve_synthetic_settings(run.config, self.spec.family, run.seed)
        split = make_split(self.scene, run.config, run.seed)  # bad splits fail before any folder exists
        restored = self._restored_checkpoint(run.config)
        model = self.build_model(run.config, restored)  # an impossible model fails before any folder exists
        parts = ClassifyParts(split, restored, model)
        if run.config.get("synthetic"):  # a bad synthetic file fails before any folder exists too
            parts.synthetic = draw_synthetic(run.config, self.scene, split.train, run.seed)
        return parts

    def resumable(self, run: SeedRun) -> bool:
        return self.spec.family == "neural"

    def epochs(self, run: SeedRun) -> Optional[int]:
        return run.config["epoch"] if self.spec.family == "neural" else None

    def fit_and_report(self, run: SeedRun) -> Optional[dict[str, Any]]:
        if not distributed.is_main():  # train alongside rank 0, which maps, scores and reports
            self._run_neural(run)
            return None
        scene, split = self.scene, run.parts.split
        self._show_scene(run)
        started = time.perf_counter()
        fitted = self._run_sklearn(run) if self.spec.family == "sklearn" else self._run_neural(run)
        if fitted is None:
            return None
        prediction, info = fitted
        truth = split.truth(scene)
        cm = confusion_matrix(np.where(split.test, truth, IGNORE).ravel(), prediction.ravel(), scene.n_classes)
        metrics = metrics_from_confusion(cm, scene.class_names)
        metrics.update({"seed": run.seed, "scene": scene.name, "model": self.spec.name,
                        "wall_seconds": time.perf_counter() - started, **info,
                        "split": split_summary(truth, split.fitted(), split.test, scene.class_names),
                        "n_train": int(split.train.sum()), "n_validation": int(split.validation.sum()),
                        "split_warnings": split.warnings, "protocol": protocol_record(run.config, split.maps)})
        run.monitor.confusion(cm, scene.class_names)
        run.monitor.label_map("prediction", prediction, scene.palette, scene.class_names)
        self._write_reports(run, metrics, cm, prediction)
        return metrics

    def _show_scene(self, run: SeedRun) -> None:
        """Send the monitors what the scene looks like: RGB composite, ground truth, class spectra."""
        scene, monitor = self.scene, run.monitor
        if scene.rgb_bands is not None:
            monitor.image("rgb", rgb_composite(scene.cube, scene.rgb_bands))
        monitor.label_map("ground_truth", scene.labels, scene.palette, scene.class_names)
        if run.config.get("with_exploration"):
            mean, std = class_spectra(scene)
            monitor.spectra("class_spectra", scene.wavelengths, mean, std, scene.class_names)

    # --- restored checkpoints, features and models -------------------------------------------------
    def _restored_checkpoint(self, config: dict[str, Any]) -> Optional[dict]:
        path = config.get("restore")
        if not path:
            return None
        if self.spec.family == "sklearn":  # the description is checked before the estimator file is read
            estimator, meta = ckpt.load_sklearn(path, trusted=config.get("trust_checkpoint", False),
                                                check=lambda meta: self._check_meta(config, meta, path))
            return {"estimator": estimator, **meta}
        data = ckpt.load_checkpoint(path)
        self._check_meta(config, data, path)
        return data

    def _check_meta(self, config: dict[str, Any], data: dict, path: str) -> None:
        ckpt.check_compatible(data, model=self.spec.name, n_bands=self.scene.n_bands,
                              class_names=self.scene.class_names, path=path)
        saved_patch = data.get("config", {}).get("patch_size")
        if saved_patch is not None and saved_patch != config["patch_size"]:
            raise UserError(f"checkpoint {path} was trained with patch_size {saved_patch}; use --patch_size {saved_patch}")

    def _describe(self, features: dict[str, Any]) -> dict[str, Any]:
        return {"n_bands": self.scene.n_bands, "class_names": list(self.scene.class_names),
                "scene": self.scene.name, **features}

    def features(self, config: dict[str, Any], train: np.ndarray, restored: Optional[dict],
                 inputs: list[str]) -> tuple[list[np.ndarray], dict[str, Any]]:
        """The rasters a model reads, normalised (and the cube projected by PCA when asked), with
        statistics fitted on ``train`` pixels (every pixel of the scene under ``fit_preprocessing: scene``,
        a leak some papers made) or taken from the restored checkpoint; and their state."""
        raw = [r if r.ndim == 3 else r[..., None] for r in neural_inputs(self.scene, inputs)]
        if config.get("fit_preprocessing") == "scene":
            train = np.ones(self.scene.shape, dtype=bool)
        if restored is not None:
            normalisers = {k: Normaliser.from_state_dict(v) for k, v in restored["normalisers"].items()}
        else:
            method = config["normalization"]
            normalisers = {k: fit_normaliser(r, train, method if k == "cube" else "standard")
                           for k, r in zip(inputs, raw)}
        rasters = [normalisers[k].apply(r) for k, r in zip(inputs, raw)]
        projection = None
        if config.get("reduction") and "cube" in inputs:
            at = inputs.index("cube")
            projection = PCAProjection.from_state_dict(restored["projection"]) if restored is not None \
                else fit_pca(rasters[at], train, config["reduction"]["components"],
                             bool(config["reduction"].get("whiten", False)))
            rasters[at] = projection.apply(rasters[at])
        state = {"normalisers": {k: n.state_dict() for k, n in normalisers.items()},
                 "projection": projection.state_dict() if projection is not None else None}
        return rasters, state

    def build_model(self, config: dict[str, Any], restored: Optional[dict]) -> Any:
        """The estimator or network of a seed's run (``config['seed']``; restored weights loaded), seeded."""
        seed = config["seed"]
        if self.spec.family == "sklearn":
            if restored is not None:
                return restored["estimator"]
            return create_model(self.spec.name, n_classes=self.scene.n_classes, seed=seed,
                                class_balancing=config["class_balancing"], n_jobs=config["n_jobs"],
                                **config["model_args"])
        model = create_model(self.spec.name, n_bands=model_band_count(config, self.scene.n_bands),
                             n_classes=self.scene.n_classes, patch_size=config["patch_size"], seed=seed,
                             **config["model_args"])
        if restored is not None:
            model.load_state_dict(restored["model_state"])
        return model

    # --- scikit-learn ----------------------------------------------------------------------------
    def _run_sklearn(self, run: SeedRun) -> tuple[np.ndarray, dict]:
        split, restored, estimator = run.parts.split, run.parts.restored, run.parts.model
        train = split.fitted()  # cross-validation inside the estimator plays validation
        (cube,), features = self.features(run.config, train, restored, ["cube"])
        started = time.perf_counter()
        if restored is None:
            estimator.fit(cube[train], split.truth(self.scene)[train])
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        prediction = predict_pixels_sklearn(estimator, cube, progress=lambda done, total: run.monitor.progress(
            "mapping the scene", done, total, unit="px"))
        info = {"train_seconds": train_seconds, "inference_seconds": time.perf_counter() - started,
                "device": "cpu"}
        if hasattr(estimator, "best_params_"):
            info["selected_parameters"] = {k: (v if isinstance(v, (int, float, str)) else str(v))
                                           for k, v in estimator.best_params_.items()}
        meta = {"config": run.config, **self._describe(features)}
        ckpt.save_sklearn(run.partial / "model.skops", estimator, meta)
        return prediction, info

    # --- neural ----------------------------------------------------------------------------------
    def _run_neural(self, run: SeedRun) -> Optional[tuple[np.ndarray, dict]]:
        """Train and map the scene; None on torchrun's other ranks (they train only) and when stopped early."""
        cfg, parts, monitor = run.config, run.parts, run.monitor
        split, model = parts.split, parts.model
        device = distributed.rank_device(resolve_device(cfg["cuda"]))
        inputs = list(cfg["inputs"])
        rasters, features = self.features(cfg, split.train, parts.restored, inputs)
        train_labels = np.where(split.train, split.truth(self.scene), IGNORE)
        sampler = PatchSampler(rasters, train_labels, cfg["patch_size"])
        dense = cfg["output"] == "dense"
        augmentation = Augmentation(cfg["flip_augmentation"], cfg["radiation_augmentation"], cfg["mixture_augmentation"])
        train_maker = BatchMaker(sampler, *np.nonzero(split.train), dense=dense, augmentation=augmentation)
        if parts.synthetic is not None:  # synthetic spectra join the training batches only
            train_maker = mixing_maker(train_maker, parts.synthetic, features["normalisers"]["cube"],
                                       features["projection"])
            monitor.text(f"training on {train_maker.n_real} real and {train_maker.n_synthetic} synthetic spectra "
                         f"from {parts.synthetic.info['source']}")
        val_labels = np.where(split.validation, split.truth(self.scene), IGNORE)
        val_maker = BatchMaker(sampler.with_labels(val_labels), *np.nonzero(split.validation),
                               dense=dense) if split.validation.any() else None
        unlabelled = BatchMaker(sampler, *np.nonzero(~(split.train | split.validation | split.test)), dense=False)
        weights = inverse_median_frequency(torch.as_tensor(train_labels), self.scene.n_classes) \
            if cfg["class_balancing"] else None
        data = TrainingData(train_maker, val_maker, self.scene.n_classes, unlabelled, weights)

        describe = self._describe(features)
        trainer = Trainer(model, get_step(cfg["supervision"]), data, cfg, monitor, device,
                          checkpoint_path=run.checkpoint, checkpoint_extra=lambda: describe)
        state = run.train(trainer)
        if state is None or not distributed.is_main():
            return None
        started = time.perf_counter()
        batch = max(cfg["batch_size"], 256)
        unit = "windows" if dense else "px"

        def progress(done: int, total: int) -> None:
            monitor.progress("mapping the scene", done, total, unit=unit)

        trim_heap()  # what training held for its steps goes back before the map's tiles are allocated
        return_freed_memory()
        with precision_context(cfg.get("precision") or "fp32", device):
            if dense:
                prediction = predict_dense(trainer.model, sampler, self.scene.n_classes, batch, device,
                                           cfg["test_stride"], progress=progress)
            else:
                prediction = predict_centre(trainer.model, sampler, batch, device, progress=progress)
        inference_seconds = time.perf_counter() - started
        run.keep_model(trainer)
        info = {"train_seconds": state.train_seconds, "inference_seconds": inference_seconds,
                "epochs": state.epoch, "parameters": sum(p.numel() for p in model.parameters()),
                "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
                "device": describe_device(device)}
        if parts.synthetic is not None:
            info["synthetic"] = parts.synthetic.info
        if state.best_epoch is not None:
            info["best_epoch"] = state.best_epoch
        if state.stopped_early:
            info["stopped_early"] = True
        if distributed.world_size() > 1:
            info["world_size"] = distributed.world_size()
        return prediction, info

    # --- reports ---------------------------------------------------------------------------------
    def _write_reports(self, run: SeedRun, metrics: dict, cm: np.ndarray, prediction: np.ndarray) -> None:
        scene, folder, split = self.scene, run.partial, run.parts.split
        save_json(folder / "metrics.json", metrics)
        with atomic_path(folder / "prediction.npy") as tmp:
            np.save(tmp, prediction.astype(np.int16))
        with atomic_path(folder / "split.npz") as tmp:
            np.savez_compressed(tmp, train=split.train, validation=split.validation, test=split.test)
        save_confusion_png(cm, scene.class_names, folder / "confusion.png")
        shown = np.where(scene.labels != IGNORE, prediction, IGNORE)
        save_map_comparison_png(scene.labels, shown, scene.palette, scene.class_names, folder / "map.png")
        save_label_map_png(prediction, scene.palette, scene.class_names, folder / "map_full.png",
                           title=f"{self.spec.name} on {scene.name}: every pixel")
        extra = summary_lines(metrics["synthetic"]) if "synthetic" in metrics else None
        atomic_write_text(folder / "summary.md", run_summary_markdown(
            f"{self.spec.name} on {scene.name}, seed {run.seed}", metrics, run.config, extra))


# ----- several runs --------------------------------------------------------------------------------

def join_process_group(config: dict[str, Any]) -> None:
    """Join the torchrun process group when launched by torchrun (NCCL when training on GPUs)."""
    cuda = config.get("cuda")
    distributed.init(use_cuda=cuda is not None and cuda >= 0 and torch.cuda.is_available())


def run_experiment(scene: Scene, config: dict[str, Any], command: Optional[str] = None,
                   extra_monitors: Optional[MonitorsPerSeed] = None,
                   reuse_finished: bool = False, finished_only: bool = False) -> Optional[dict[str, Any]]:
    """``config['runs']`` runs of :class:`ClassifyTask` with seeds ``seed, seed+1, ...`` and their
    aggregate report (see :meth:`~deephyperx.experiment.Experiment.run`: claimed seeds, finished seeds
    read back under ``reuse_finished``, nothing trained under ``finished_only``, diverged seeds
    recorded and left out, :class:`~deephyperx.experiment.EverySeedDiverged` when none finished).
    The returned aggregate, which main.py prints and bench tabulates, covers this command's seeds;
    ``results.json`` and ``results.md`` cover every seed finished in the experiment's folder."""
    join_process_group(config)
    # the checksums of a --synthetic file, of a custom scene and of split files join the experiment's identity
    config = with_input_checksums(resolve_synthetic_settings(config, get_spec(config["model"]).family), scene)
    return Experiment(ClassifyTask(scene, config)).run(command, extra_monitors, reuse_finished, finished_only)
