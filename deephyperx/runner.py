"""A run from scene to report: split, normalise, train, map the whole scene, score, write files.

Each seed's run is written into ``<name>.partial/`` and renamed when complete, so a
run folder is never half-written; an interrupted run resumes from the checkpoint in
its ``.partial`` folder when the same command is given again.

Under torchrun (:mod:`deephyperx.distributed`) every rank trains; rank 0 alone touches the run
folders, monitors, maps the scene and writes the reports, and sends the others what they need
(the checkpoint to resume from, the final metrics).
"""
from __future__ import annotations

import contextlib
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch

from deephyperx import checkpoint as ckpt
from deephyperx import distributed
from deephyperx.atomic import atomic_path, atomic_write_text, replace_directory
from deephyperx.config import experiment_id, model_band_count, to_yaml
from deephyperx.errors import TrainingDiverged, UserError, divergence_hint
from deephyperx.experiment_lock import claim_seeds, experiment_lock, remove_empty_folders, remove_unheld_files
from deephyperx.file_monitor import FileMonitor
from deephyperx.hashing import file_sha256
from deephyperx.inference import predict_centre, predict_dense, predict_pixels_sklearn
from deephyperx.metrics import aggregate_runs, confusion_matrix, metrics_from_confusion
from deephyperx.monitor import ConsoleMonitor, JsonLinesMonitor, Monitor, Monitors, trim_records
from deephyperx.preprocessing import Normaliser, PCAProjection, fit_normaliser, fit_pca
from deephyperx.registry import ModelSpec, create_model, get_spec
from deephyperx.reports import (aggregate_markdown, load_json, run_summary_markdown, save_confusion_png, save_json,
                                rgb_composite, save_label_map_png, save_map_comparison_png)
from deephyperx.run_environment import record_environment
from deephyperx.safe_paths import experiment_path
from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler
from deephyperx.scene import IGNORE, Scene, class_spectra
from deephyperx.seeding import seed_everything
from deephyperx.splits import split_from_label_maps, split_pixels, split_summary, split_warnings, validation_split
from deephyperx.steps import get_step
from deephyperx.synthetic_mixing import (SyntheticDraw, draw_synthetic, mixing_maker, resolve_synthetic_settings,
                                         summary_lines)
from deephyperx.training import Trainer, TrainingData, inverse_median_frequency

MonitorFactory = Callable[[Scene, dict, Path], list[Monitor]]


@dataclass
class Split:
    train: np.ndarray
    validation: np.ndarray
    test: np.ndarray
    #: what makes the split a weak test of what was asked (:func:`~deephyperx.splits.split_warnings`)
    warnings: list[str] = field(default_factory=list)


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
    if config.get("train_set") or config.get("test_set"):
        if not (config.get("train_set") and config.get("test_set")):
            raise UserError("--train_set and --test_set go together; give both label files")
        train, test = split_from_label_maps(label_map_from_file(config["train_set"], scene),
                                            label_map_from_file(config["test_set"], scene))
    else:
        train, test = split_pixels(scene.labels, config["sampling_mode"], config["training_sample"], seed,
                                   patch_size=config["patch_size"], guard=config.get("guard"),
                                   block_size=config.get("block_size"), class_names=scene.class_names)
    # label-file splits are not checked against training_sample, which they do not use
    asked = 0.0 if config.get("train_set") else float(config["training_sample"])
    warnings = split_warnings(scene.labels, train, test, asked, scene.class_names)
    for line in warnings:
        print(f"warning: the split of {scene.name} (seed {seed}) is weak: {line}", file=sys.stderr)
    train, validation = validation_split(train, scene.labels, config["val_fraction"], seed)
    return Split(train, validation, test, warnings)


# ----- one run -----------------------------------------------------------------------------------

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


def open_partial_folder(partial: Path, config: dict[str, Any], seed: int) -> None:
    """Keep ``partial`` when it holds a run of the same experiment and seed (to resume from it),
    else start it afresh; record the identity and the configuration in it."""
    saved, identity = partial / "identity.txt", f"{experiment_id(config)} seed {seed}"
    if partial.exists() and not (saved.is_file() and saved.read_text() == identity):
        shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    atomic_write_text(saved, identity)
    atomic_write_text(partial / "config.yaml", to_yaml(config))


def resume_partial_folder(partial: Path, config: dict[str, Any], seed: int, resumable: bool = True) -> Optional[dict]:
    """Open ``partial`` (see :func:`open_partial_folder`) and return the checkpoint to resume from,
    with the metrics log trimmed back to it; None, and no log, when there is none (or the run is
    not ``resumable``)."""
    open_partial_folder(partial, config, seed)
    checkpoint, finished = partial / "checkpoint.pt", partial / "model.pt"
    if resumable and not checkpoint.is_file() and finished.is_file():  # training ended, the reports did not
        os.replace(finished, checkpoint)
    state = ckpt.load_checkpoint(checkpoint) if resumable and checkpoint.is_file() else None
    continue_records(partial, state, config)
    return state


def continue_records(partial: Path, state: Optional[dict], config: dict[str, Any]) -> None:
    """Bring ``partial``'s records to the checkpoint ``state`` a run goes on from: the metrics log
    trimmed back to it, or removed for a fresh start (``state`` None); and this process's
    environment added to ``environment.jsonl``."""
    if state is None:
        (partial / "metrics.jsonl").unlink(missing_ok=True)
    else:
        trim_records(partial / "metrics.jsonl", state["step"], state["epoch"])
    record_environment(partial, None if state is None else state["epoch"], config.get("cuda"))


def discard_unresumable_partial(partial: Path) -> None:
    """After a run failed on bad input: remove ``partial`` unless it holds a checkpoint to resume
    from (a checkpoint, or the model of a finished training whose reports could not be written), and its
    experiment folder too when nothing but lock and owner files nobody holds is left in it (a failed run
    leaves no trace)."""
    if (partial / "checkpoint.pt").is_file() or (partial / "model.pt").is_file():
        return
    shutil.rmtree(partial, ignore_errors=True)
    folder = partial.parent
    if not folder.is_dir():
        return
    # Under the folder's lock, as claims are taken: a process starting the same experiment now either
    # claimed first (its lock file keeps the folder) or finds the folder gone and makes it anew. While
    # this process claims seeds of the folder, its own held locks keep it; the claim's end removes it.
    with experiment_lock(folder):
        if remove_unheld_files(folder):
            remove_empty_folders([folder])


class SingleRun:
    """One seed of an experiment, written into ``final_dir`` (via ``final_dir.partial``)."""

    def __init__(self, scene: Scene, config: dict[str, Any], seed: int, final_dir: Path,
                 extra_monitors: Optional[list[Monitor]] = None):
        self.scene, self.seed, self.final_dir = scene, seed, final_dir
        self.config = {**config, "seed": seed}
        self.spec: ModelSpec = get_spec(config["model"])
        self.partial = final_dir.with_name(final_dir.name + ".partial")
        self.extra_monitors = extra_monitors or []
        self.synthetic: Optional[SyntheticDraw] = None

    def execute(self) -> dict[str, Any]:
        join_process_group(self.config)
        if distributed.world_size() > 1 and self.spec.family != "neural":
            raise UserError(f"model {self.spec.name} is a {self.spec.family} model; distributed training (torchrun) "
                            "is for neural models: run it in one process (python main.py ...)")
        seed_everything(self.seed)
        self.config = resolve_synthetic_settings(self.config, self.spec.family, self.seed)
        split = make_split(self.scene, self.config, self.seed)  # bad splits fail before any folder exists
        restored = self._restored_checkpoint()
        model = self._build_model(restored)  # an impossible model fails before any folder exists
        if self.config.get("synthetic"):  # a bad synthetic file fails before any folder exists too
            self.synthetic = draw_synthetic(self.config, self.scene, split.train, self.seed)
        # rank 0 alone prepares the folder; every rank resumes from the checkpoint it found there
        resume = distributed.broadcast_object(self._prepare_partial() if distributed.is_main() else None)
        try:
            return self._execute(split, restored, model, resume)
        except UserError:
            if distributed.is_main():
                discard_unresumable_partial(self.partial)
            raise

    def _execute(self, split: Split, restored: Optional[dict], model: Any, resume: Optional[dict]) -> dict[str, Any]:
        if not distributed.is_main():  # train alongside rank 0, then take its metrics
            self._run_neural(split, restored, Monitors([]), resume, model)
            return distributed.broadcast_object(None)
        epochs = self.config["epoch"] if self.spec.family == "neural" else None
        monitor = Monitors([ConsoleMonitor(epochs), JsonLinesMonitor(self.partial / "metrics.jsonl"),
                            FileMonitor(self.partial), *self.extra_monitors])
        monitor.run_started({"run": f"{self.scene.name}_{self.spec.name}_seed{self.seed}", "scene": self.scene.name,
                             "model": self.spec.name, "seed": self.seed, "class_names": self.scene.class_names,
                             "config": self.config, "folder": str(self.final_dir)})
        self._show_scene(monitor)
        started = time.perf_counter()
        if self.spec.family == "sklearn":
            prediction, info = self._run_sklearn(split, restored, model)
        else:
            prediction, info = self._run_neural(split, restored, monitor, resume, model)
        cm = confusion_matrix(np.where(split.test, self.scene.labels, IGNORE).ravel(), prediction.ravel(),
                              self.scene.n_classes)
        metrics = metrics_from_confusion(cm, self.scene.class_names)
        metrics.update({"seed": self.seed, "scene": self.scene.name, "model": self.spec.name,
                        "wall_seconds": time.perf_counter() - started, **info,
                        "split": split_summary(self.scene.labels, split.train | split.validation, split.test,
                                               self.scene.class_names),
                        "n_train": int(split.train.sum()), "n_validation": int(split.validation.sum()),
                        "split_warnings": split.warnings})
        monitor.confusion(cm, self.scene.class_names)
        monitor.label_map("prediction", prediction, self.scene.palette, self.scene.class_names)
        self._write_reports(metrics, cm, prediction, split)
        monitor.run_ended(metrics)
        if self.spec.family != "sklearn":  # the last checkpoint becomes the model only once all is written,
            os.replace(self.partial / "checkpoint.pt", self.partial / "model.pt")  # so a failure resumes from it
        replace_directory(self.partial, self.final_dir)
        return distributed.broadcast_object(metrics)

    def _show_scene(self, monitor: Monitor) -> None:
        """Send the monitors what the scene looks like: RGB composite, ground truth, class spectra."""
        scene = self.scene
        if scene.rgb_bands is not None:
            monitor.image("rgb", rgb_composite(scene.cube, scene.rgb_bands))
        monitor.label_map("ground_truth", scene.labels, scene.palette, scene.class_names)
        if self.config.get("with_exploration"):
            mean, std = class_spectra(scene)
            monitor.spectra("class_spectra", scene.wavelengths, mean, std, scene.class_names)

    # --- folders and checkpoints -----------------------------------------------------------------
    def _prepare_partial(self) -> Optional[dict]:
        """Keep a partial folder of the same experiment and seed (to resume), else start afresh.
        Returns the checkpoint to resume from, with the log trimmed back to it."""
        return resume_partial_folder(self.partial, self.config, self.seed, self.spec.family == "neural")

    def _restored_checkpoint(self) -> Optional[dict]:
        path = self.config.get("restore")
        if not path:
            return None
        if self.spec.family == "sklearn":  # the description is checked before the estimator file is read
            estimator, meta = ckpt.load_sklearn(path, trusted=self.config.get("trust_checkpoint", False),
                                                check=lambda meta: self._check_meta(meta, path))
            return {"estimator": estimator, **meta}
        data = ckpt.load_checkpoint(path)
        self._check_meta(data, path)
        return data

    def _check_meta(self, data: dict, path: str) -> None:
        ckpt.check_compatible(data, model=self.spec.name, n_bands=self.scene.n_bands,
                              class_names=self.scene.class_names, path=path)
        saved_patch = data.get("config", {}).get("patch_size")
        if saved_patch is not None and saved_patch != self.config["patch_size"]:
            raise UserError(f"checkpoint {path} was trained with patch_size {saved_patch}; use --patch_size {saved_patch}")

    def _describe(self, features: dict[str, Any]) -> dict[str, Any]:
        return {"n_bands": self.scene.n_bands, "class_names": list(self.scene.class_names),
                "scene": self.scene.name, **features}

    def _features(self, train: np.ndarray, restored: Optional[dict],
                  inputs: list[str]) -> tuple[list[np.ndarray], dict[str, Any]]:
        """The rasters a model reads, normalised (and the cube projected by PCA when asked), with
        statistics fitted on ``train`` pixels or taken from the restored checkpoint; and their state."""
        raw = [r if r.ndim == 3 else r[..., None] for r in neural_inputs(self.scene, inputs)]
        if restored is not None:
            normalisers = {k: Normaliser.from_state_dict(v) for k, v in restored["normalisers"].items()}
        else:
            method = self.config["normalization"]
            normalisers = {k: fit_normaliser(r, train, method if k == "cube" else "standard")
                           for k, r in zip(inputs, raw)}
        rasters = [normalisers[k].apply(r) for k, r in zip(inputs, raw)]
        projection = None
        if self.config.get("reduction") and "cube" in inputs:
            at = inputs.index("cube")
            projection = PCAProjection.from_state_dict(restored["projection"]) if restored is not None \
                else fit_pca(rasters[at], train, self.config["reduction"]["components"],
                             bool(self.config["reduction"].get("whiten", False)))
            rasters[at] = projection.apply(rasters[at])
        state = {"normalisers": {k: n.state_dict() for k, n in normalisers.items()},
                 "projection": projection.state_dict() if projection is not None else None}
        return rasters, state

    def _build_model(self, restored: Optional[dict]) -> Any:
        """The estimator or network of this run (restored weights loaded), seeded."""
        if self.spec.family == "sklearn":
            if restored is not None:
                return restored["estimator"]
            return create_model(self.spec.name, n_classes=self.scene.n_classes, seed=self.seed,
                                class_balancing=self.config["class_balancing"], n_jobs=self.config["n_jobs"],
                                **self.config["model_args"])
        model = create_model(self.spec.name, n_bands=model_band_count(self.config, self.scene.n_bands),
                             n_classes=self.scene.n_classes,
                             patch_size=self.config["patch_size"], seed=self.seed, **self.config["model_args"])
        if restored is not None:
            model.load_state_dict(restored["model_state"])
        return model

    # --- scikit-learn ----------------------------------------------------------------------------
    def _run_sklearn(self, split: Split, restored: Optional[dict], estimator: Any) -> tuple[np.ndarray, dict]:
        train = split.train | split.validation  # cross-validation inside the estimator plays validation
        (cube,), features = self._features(train, restored, ["cube"])
        started = time.perf_counter()
        if restored is None:
            estimator.fit(cube[train], self.scene.labels[train])
        train_seconds = time.perf_counter() - started
        started = time.perf_counter()
        prediction = predict_pixels_sklearn(estimator, cube)
        info = {"train_seconds": train_seconds, "inference_seconds": time.perf_counter() - started,
                "device": "cpu"}
        if hasattr(estimator, "best_params_"):
            info["selected_parameters"] = {k: (v if isinstance(v, (int, float, str)) else str(v))
                                           for k, v in estimator.best_params_.items()}
        meta = {"config": self.config, **self._describe(features)}
        ckpt.save_sklearn(self.partial / "model.skops", estimator, meta)
        return prediction, info

    # --- neural ----------------------------------------------------------------------------------
    def _run_neural(self, split: Split, restored: Optional[dict], monitor: Monitor,
                    resume: Optional[dict], model: torch.nn.Module) -> tuple[np.ndarray, dict]:
        cfg = self.config
        device = distributed.rank_device(resolve_device(cfg["cuda"]))
        inputs = list(cfg["inputs"])
        rasters, features = self._features(split.train, restored, inputs)
        train_labels = np.where(split.train, self.scene.labels, IGNORE)
        sampler = PatchSampler(rasters, train_labels, cfg["patch_size"])
        dense = cfg["output"] == "dense"
        augmentation = Augmentation(cfg["flip_augmentation"], cfg["radiation_augmentation"], cfg["mixture_augmentation"])
        train_maker = BatchMaker(sampler, *np.nonzero(split.train), dense=dense, augmentation=augmentation)
        if self.synthetic is not None:  # synthetic spectra join the training batches only
            train_maker = mixing_maker(train_maker, self.synthetic, features["normalisers"]["cube"],
                                       features["projection"])
            monitor.text(f"training on {train_maker.n_real} real and {train_maker.n_synthetic} synthetic spectra "
                         f"from {self.synthetic.info['source']}")
        val_labels = np.where(split.validation, self.scene.labels, IGNORE)
        val_maker = BatchMaker(sampler.with_labels(val_labels), *np.nonzero(split.validation),
                               dense=dense) if split.validation.any() else None
        unlabelled = BatchMaker(sampler, *np.nonzero(~(split.train | split.validation | split.test)), dense=False)
        weights = inverse_median_frequency(torch.as_tensor(train_labels), self.scene.n_classes) \
            if cfg["class_balancing"] else None
        data = TrainingData(train_maker, val_maker, self.scene.n_classes, unlabelled, weights)

        describe = self._describe(features)
        trainer = Trainer(model, get_step(cfg["supervision"]), data, cfg, monitor, device,
                          checkpoint_path=self.partial / "checkpoint.pt", checkpoint_extra=lambda: describe)
        if resume is not None:
            trainer.load_state_dict(resume)
            monitor.text(f"resuming {self.final_dir.name} from epoch {resume['epoch']} ({self.partial})")
        state = trainer.fit()
        if not distributed.is_main():
            return None, {}
        started = time.perf_counter()
        batch = max(cfg["batch_size"], 256)
        if dense:
            prediction = predict_dense(trainer.model, sampler, self.scene.n_classes, batch, device, cfg["test_stride"])
        else:
            prediction = predict_centre(trainer.model, sampler, batch, device)
        inference_seconds = time.perf_counter() - started
        if not (self.partial / "checkpoint.pt").is_file():  # nothing trained (restored, --epoch 0)
            ckpt.save_checkpoint(self.partial / "checkpoint.pt", trainer.state_dict())
        info = {"train_seconds": state.train_seconds, "inference_seconds": inference_seconds,
                "epochs": state.epoch, "parameters": sum(p.numel() for p in model.parameters()),
                "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
                "device": describe_device(device)}
        if self.synthetic is not None:
            info["synthetic"] = self.synthetic.info
        if state.best_epoch is not None:
            info["best_epoch"] = state.best_epoch
        if distributed.world_size() > 1:
            info["world_size"] = distributed.world_size()
        return prediction, info

    # --- reports ---------------------------------------------------------------------------------
    def _write_reports(self, metrics: dict, cm: np.ndarray, prediction: np.ndarray, split: Split) -> None:
        scene, folder = self.scene, self.partial
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
            f"{self.spec.name} on {scene.name}, seed {self.seed}", metrics, self.config, extra))


# ----- several runs --------------------------------------------------------------------------------

def join_process_group(config: dict[str, Any]) -> None:
    """Join the torchrun process group when launched by torchrun (NCCL when training on GPUs)."""
    cuda = config.get("cuda")
    distributed.init(use_cuda=cuda is not None and cuda >= 0 and torch.cuda.is_available())


class EverySeedDiverged(UserError):
    """No seed of an experiment finished: each one's training diverged (nan or infinite loss or weights)."""

    def __init__(self, model: str, scene: str, diverged: list[dict[str, Any]]):
        self.model, self.scene, self.diverged = model, scene, diverged
        super().__init__(f"{model} on {scene}: every seed diverged ({describe_divergences(diverged)}); "
                         f"{divergence_hint(diverged[-1].get('lr'))}")


def describe_divergences(diverged: list[dict[str, Any]]) -> str:
    """The diverged seeds' records in words: ``seed 0 at epoch 12 (loss nan); seed 3 at ...``."""
    return "; ".join(f"seed {d['seed']} at epoch {d['epoch']} (loss {d['loss']})" for d in diverged)


def diverged_marker(folder: Path, seed: int) -> Path:
    """The file recording that a seed's training diverged (read back by a resumed benchmark)."""
    return folder / f"seed{seed}.diverged.json"


def run_experiment(scene: Scene, config: dict[str, Any], command: Optional[str] = None,
                   extra_monitors: Optional[Callable[[int], list[Monitor]]] = None,
                   reuse_finished: bool = False, finished_only: bool = False) -> Optional[dict[str, Any]]:
    """``config['runs']`` runs with seeds ``seed, seed+1, ...``; writes the aggregate report.

    With ``reuse_finished`` (the benchmark's resume), a seed whose folder is complete is read back
    instead of run again; an interrupted seed resumes from its checkpoint either way. With
    ``finished_only`` nothing is trained: the finished seeds alone are aggregated (None if none is).

    The seeds to train are claimed before any work (:func:`~deephyperx.experiment_lock.claim_seeds`):
    a seed another process is running stops the command with one line naming it. ``results.json`` and
    ``results.md`` aggregate every seed finished in the folder, whichever command ran it (written
    under the folder's lock, so that commands running other seeds at once never drop each other's);
    the returned aggregate, which main.py prints and bench tabulates, covers this command's seeds.

    A seed whose training diverges (nan or infinite loss) is recorded in ``seed<N>.diverged.json``
    (read back, not retrained, under ``reuse_finished``) and left out of the aggregate, which lists
    it under ``diverged``; when every seed diverged, :class:`EverySeedDiverged` is raised.
    """
    reuse_finished = reuse_finished or finished_only
    join_process_group(config)
    # the checksums of a --synthetic file, of a custom scene and of split files join the experiment's identity
    config = with_input_checksums(resolve_synthetic_settings(config, get_spec(config["model"]).family), scene)
    folder = run_folder_names(config, scene)
    main = distributed.is_main()
    seeds = [int(config["seed"]) + i for i in range(config["runs"])]
    to_train = [] if finished_only else [s for s in seeds if not (reuse_finished and main and settled(folder, s))]
    runs: list[dict[str, Any]] = []
    diverged: list[dict[str, Any]] = []
    with claimed_seeds(folder, to_train, command):
        for seed in seeds:
            done, marker = folder / f"seed{seed}" / "metrics.json", diverged_marker(folder, seed)
            if reuse_finished:  # rank 0 reads the finished run (or its divergence) and tells the others
                finished = distributed.broadcast_object(load_json(done) if main and done.is_file() else None)
                if finished is not None:
                    runs.append(finished)
                    continue
                known = distributed.broadcast_object(load_json(marker) if main and marker.is_file() else None)
                if known is not None:
                    diverged.append(known)
                    continue
            if finished_only:
                continue
            monitors = extra_monitors(seed) if extra_monitors and main else None
            try:
                runs.append(SingleRun(scene, config, seed, folder / f"seed{seed}", monitors).execute())
            except TrainingDiverged as error:
                record = {"seed": seed, **error.as_record()}
                if main:
                    save_json(marker, record)
                if main and config["runs"] > 1:  # one seed's failure among several: say it, go on
                    print(f"{error} (seed {seed}; recorded in {marker}: delete it to train this seed again)",
                          file=sys.stderr)
                diverged.append(record)
            else:
                if main:  # finished now: an older divergence of this seed no longer holds
                    marker.unlink(missing_ok=True)
        if main:
            write_experiment_results(folder, scene.name, scene.class_names, config, command)
    if not runs:
        if diverged:
            raise EverySeedDiverged(config["model"], scene.name, diverged)
        return None
    return experiment_aggregate(runs, diverged, scene.name, config, command, folder)


def settled(folder: Path, seed: int) -> bool:
    """Whether a seed of the experiment in ``folder`` finished or is recorded as diverged."""
    return (folder / f"seed{seed}" / "metrics.json").is_file() or diverged_marker(folder, seed).is_file()


@contextlib.contextmanager
def claimed_seeds(folder: Path, seeds: list[int], command: Optional[str],
                  flags: str = "--seed or --out") -> Iterator[None]:
    """Claim ``seeds`` of ``folder`` for the time of the block (see
    :func:`~deephyperx.experiment_lock.claim_seeds`; nothing when ``seeds`` is empty). Under torchrun
    rank 0 alone touches folders, so it alone claims, and every rank learns whether it could."""
    if not distributed.active():
        with claim_seeds(folder, seeds, command, flags) if seeds else contextlib.nullcontext():
            yield
        return
    with contextlib.ExitStack() as stack:
        refusal = None
        if distributed.is_main() and seeds:
            try:
                stack.enter_context(claim_seeds(folder, seeds, command, flags))
            except UserError as error:
                refusal = str(error)
        refusal = distributed.broadcast_object(refusal)
        if refusal is not None:
            raise UserError(refusal)
        yield


SEED_FOLDER = re.compile(r"seed(\d+)")
DIVERGED_FILE = re.compile(r"seed(\d+)\.diverged\.json")


def settled_seeds(folder: Path) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The metrics of every seed finished in an experiment folder (``seed<N>/metrics.json``) and the
    records of every seed diverged (``seed<N>.diverged.json``) and not finished since, in seed order."""
    finished: dict[int, dict[str, Any]] = {}
    for path in folder.glob("seed*/metrics.json"):
        match = SEED_FOLDER.fullmatch(path.parent.name)
        if match is not None:
            finished[int(match.group(1))] = load_json(path)
    diverged: dict[int, dict[str, Any]] = {}
    for path in folder.glob("seed*.diverged.json"):
        match = DIVERGED_FILE.fullmatch(path.name)
        if match is not None and int(match.group(1)) not in finished:
            diverged[int(match.group(1))] = load_json(path)
    return [finished[s] for s in sorted(finished)], [diverged[s] for s in sorted(diverged)]


def experiment_aggregate(runs: list[dict[str, Any]], diverged: list[dict[str, Any]], scene: str,
                         config: dict[str, Any], command: Optional[str], folder: Path) -> dict[str, Any]:
    """Mean ± std over ``runs`` and the facts of each, with the ``diverged`` seeds listed apart."""
    aggregate = aggregate_runs(runs)
    aggregate.update({"scene": scene, "model": config["model"], "folder": str(folder),
                      "command": command, "config": config,
                      "runs": [{k: run.get(k) for k in RUN_FACTS} for run in runs]})
    if diverged:
        aggregate["diverged"] = diverged
    return aggregate


def recorded_commands(results: Path, command: Optional[str]) -> list[str]:
    """The commands an experiment's ``results.json`` names (each once, oldest first), then ``command``."""
    try:
        previous = load_json(results) if results.is_file() else {}
    except (OSError, ValueError, UserError):
        previous = {}
    known = previous.get("commands") if isinstance(previous, dict) else None
    if not isinstance(known, list):
        known = [previous.get("command")] if isinstance(previous, dict) else []
    return [c for c in dict.fromkeys([*known, command]) if isinstance(c, str) and c]


def write_experiment_results(folder: Path, scene: str, class_names: list[str], config: dict[str, Any],
                             command: Optional[str]) -> None:
    """Under the folder's lock, write ``results.json`` and ``results.md`` from every seed finished in the
    folder, by this command or by another (nothing when none has finished)."""
    if not folder.is_dir():
        return
    with experiment_lock(folder):
        runs, diverged = settled_seeds(folder)
        if not runs:
            return
        aggregate = experiment_aggregate(runs, diverged, scene, config, command, folder)
        aggregate["commands"] = recorded_commands(folder / "results.json", command)
        save_json(folder / "results.json", aggregate)
        text = aggregate_markdown(f"{config['model']} on {scene}", aggregate, class_names,
                                  aggregate["commands"] or None)
        text += (f"\nThese are the seeds finished in {folder.name}/, whichever command ran them (the commands "
                 "above ran this experiment); a command's printed line covers only the seeds it ran.\n")
        if diverged:
            text += f"\nLeft out of the means: training diverged in {describe_divergences(diverged)}.\n"
        atomic_write_text(folder / "results.md", text)


#: Per-run facts kept in an experiment's results.json beside the aggregate.
RUN_FACTS = ("seed", "overall_accuracy", "average_accuracy", "kappa", "train_seconds", "inference_seconds",
             "parameters", "epochs", "n_train", "n_validation", "n_test", "device")
