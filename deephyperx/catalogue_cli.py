"""``python main.py catalogue``: train one centre-pixel model on a catalogue of many scenes of one
sensor, sampling patches across the files through a bounded cache, and score it scene by scene.

    python main.py catalogue --catalogue tiles.yaml --model hu --epoch 20 --epoch_samples 100000
    python main.py catalogue --catalogue tiles.yaml --model hamida --cache_bytes 2GB --cuda 0
    python main.py catalogue --catalogue tiles.yaml --model hu --restore run/model.pt --epoch 0

The catalogue (a YAML file, see :mod:`deephyperx.scene_catalogue`) lists the scenes and how their
pixels split into training, validation and test. Memory stays bounded whatever the catalogue's
size: labels are streamed once to count pixels per block, the normalisation is fitted by
streaming the training pixels, and training and scoring read normalised blocks of rows through a
cache of ``--cache_bytes`` (see :mod:`deephyperx.catalogue_sampling`). Unset flags keep the
model's paper defaults.

The run folder ``<out>/<catalogue>_<model>_<hash>/seed<seed>`` is written as ``.partial`` and
renamed when complete; training checkpoints every epoch and the same command resumes an
interrupted run. ``model.pt`` has the format of ``main.py``'s, so a model trained on a catalogue
can be restored on a single scene of the same sensor (``main.py --restore model.pt``).
Bad input prints one line and exits with status 2, leaving nothing written.
"""
from __future__ import annotations

import argparse
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from deephyperx.command_line import OneLineParser
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment, SeedRun, Task
from deephyperx.hashing import file_sha256
from deephyperx.monitor import Monitor
from deephyperx.plugins import Plugins
from deephyperx.settings import CATALOGUE, add_flags, check_types, defaults, given, layer_settings, setting
from deephyperx.shared_settings import (ClassWeights, ConfigFile, Device, Flips, ModelChoice, ModelDefaults, ModelOptions,
                                        Output, Radiation, Restore, Seed)

@dataclass
class CatalogueSettings(ModelChoice, ModelDefaults, ModelOptions, ClassWeights, Flips, Radiation, Seed, Device, Output,
                        Restore, ConfigFile):
    """The settings of ``main.py catalogue``: a catalogue file of many scenes, the cache that bounds the
    memory of reading them, and a centre-pixel model's training."""

    SHOWN = {"catalogue", "cache_bytes", "block_rows", "visit_samples", "model", "model_args", "epoch", "epoch_samples",
             "batch_size", "lr", "optimizer", "weight_decay", "patch_size", "normalization", "class_balancing",
             "flip_augmentation", "radiation_augmentation", "restore", "seed", "cuda", "out", "config"}
    DEFAULTS = {"out": "outputs/catalogue"}

    catalogue: Optional[str] = setting(None, group=CATALOGUE, identity=False,
                                       help="YAML file listing the scenes, their classes and split")
    cache_bytes: Union[str, int] = setting("1GB", group=CATALOGUE,
                                           help="bytes of normalised blocks kept in memory, e.g. 256MB, 1GB (default "
                                                "1GB)")
    block_rows: Optional[int] = setting(None, group=CATALOGUE,
                                        help="rows per block (default: chosen so the cache holds 8 blocks)")
    visit_samples: Optional[int] = setting(None, group=CATALOGUE,
                                           help="with --epoch_samples: patches cut each time a block is read (default: "
                                                "a quarter of a block's training pixels)")
    #: filled by the run: the catalogue file's checksum (experiment identity)
    catalogue_sha256: Optional[str] = setting(None, flag=False)
    #: the catalogue's name (checkpoints name their data under this key)
    dataset: Optional[str] = setting(None, flag=False)


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``main.py catalogue``, derived from :class:`CatalogueSettings`."""
    parser = OneLineParser(prog="main.py catalogue", help_hint="python main.py catalogue --help", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, CatalogueSettings)
    return parser


# ----- configuration ----------------------------------------------------------------------------------

def resolve_catalogue_config(spec: Any, *layers: dict[str, Any]) -> dict[str, Any]:
    """Catalogue defaults, the model's training defaults, then ``layers`` (YAML, flags); checked."""
    from deephyperx.sizes import parse_size

    base: dict[str, Any] = {**defaults(CatalogueSettings), **spec.training_defaults(), "model": spec.name,
                            "model_args": dict(spec.model_arguments())}
    config = layer_settings(base, layers, set(base), spec.name, spec.model_arguments())
    check_types(config, CatalogueSettings)
    config["cache_bytes"] = parse_size(config["cache_bytes"], "--cache_bytes")
    validate_catalogue_config(config)
    return config


def validate_catalogue_config(config: dict[str, Any]) -> None:
    """Refuse values that cannot work, with one line naming the value and what to do."""
    from deephyperx.config import check_shared_settings

    check_shared_settings(config)
    for key, least in (("epoch", 0), ("batch_size", 1), ("patch_size", 1)):
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < least:
            raise UserError(f"--{key} {value!r} must be a whole number of at least {least}")
    for key in ("epoch_samples", "block_rows", "visit_samples"):
        value = config[key]
        if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
            raise UserError(f"--{key} {value!r} must be a whole number of at least 1")
    if not isinstance(config["lr"], (int, float)) or config["lr"] <= 0:
        raise UserError(f"--lr {config['lr']!r} must be a positive number")
    if not config.get("catalogue"):
        raise UserError("no --catalogue given; give the YAML file listing the scenes")
    model = config["model"]
    if config["output"] != "center":
        raise UserError(f"model {model} predicts dense label patches; `main.py catalogue` trains centre-pixel models "
                        "(hu, hamida, li, he, ...)")
    if list(config["inputs"]) != ["cube"]:
        raise UserError(f"model {model} reads {config['inputs']}; a catalogue gives only the cube")
    if config["supervision"] != "supervised":
        raise UserError(f"model {model} trains with '{config['supervision']}' supervision; `main.py catalogue` "
                        "trains supervised models")
    if config.get("reduction"):
        raise UserError(f"model {model} projects spectra with PCA, which `main.py catalogue` does not fit")


def experiment_id(config: dict[str, Any]) -> str:
    """A short stable hash of the settings that change a run's numbers."""
    from deephyperx.config import experiment_id as config_id

    return config_id(config, CatalogueSettings)


# ----- one run ------------------------------------------------------------------------------------------

class CacheLog(Monitor):
    """A monitor recording the cache's hits and misses during each epoch (training and validation)."""

    def __init__(self, cache: Any):
        self.cache, self.epochs = cache, []
        self._last = (cache.hits, cache.misses)

    def epoch_ended(self, epoch: int, logs: dict[str, float]) -> None:
        hits, misses = self.cache.hits - self._last[0], self.cache.misses - self._last[1]
        self._last = (self.cache.hits, self.cache.misses)
        self.epochs.append({"epoch": epoch, "hits": hits, "misses": misses})


@dataclass
class CatalogueParts:
    """What a catalogue run builds before any folder exists: the model, the block index and the cache."""

    model: torch.nn.Module
    restored: Optional[dict]
    index: Any
    index_seconds: float
    cache: Any
    cache_log: CacheLog


class CatalogueTask(Task):
    """One centre-pixel model trained on a catalogue of scenes through a bounded cache, scored scene
    by scene."""

    def __init__(self, catalogue: Any, config: dict[str, Any], command: Optional[str] = None):
        from deephyperx.registry import get_spec

        self.catalogue, self.config, self.command = catalogue, config, command
        self.spec = get_spec(config["model"])
        self.name, self.model, self.class_names = catalogue.name, self.spec.name, catalogue.class_names

    def experiment_folder(self) -> Path:
        from deephyperx.safe_paths import experiment_path

        return experiment_path(self.config["out"], [(self.catalogue.name, "catalogue name"),
                                                    (self.spec.name, "model name")], experiment_id(self.config))

    def prepare(self, run: SeedRun) -> CatalogueParts:
        from deephyperx.catalogue_sampling import BlockCache, build_index, choose_block_rows
        from deephyperx.scene_catalogue import TEST, TRAIN, check_patch_size

        cfg, catalogue = run.config, self.catalogue
        check_patch_size(catalogue, cfg["patch_size"])
        restored = self._restored(cfg)
        model = self._build_model(cfg, restored)  # an impossible model fails before any folder exists
        block_rows = choose_block_rows(catalogue, cfg["patch_size"], cfg["cache_bytes"], cfg["block_rows"])
        started = time.perf_counter()
        index = build_index(catalogue, cfg["patch_size"], block_rows)  # undeclared label values fail here
        index_seconds = time.perf_counter() - started
        if cfg["epoch"] > 0 and not index.role_counts(TRAIN).sum():
            raise UserError(f"catalogue {catalogue.name}: no labelled training pixels; check the labels and the split")
        if not index.role_counts(TEST).sum():
            raise UserError(f"catalogue {catalogue.name}: no labelled test pixels; check the labels and the split")
        cache = BlockCache(cfg["cache_bytes"])
        return CatalogueParts(model, restored, index, index_seconds, cache, CacheLog(cache))

    def monitors(self, run: SeedRun) -> list[Monitor]:
        from deephyperx.file_monitor import FileMonitor

        return [FileMonitor(run.partial), run.parts.cache_log]

    def _restored(self, config: dict[str, Any]) -> Optional[dict]:
        from deephyperx import checkpoint as ckpt

        path = config.get("restore")
        if not path:
            return None
        data = ckpt.load_checkpoint(path)
        ckpt.check_compatible(data, model=self.spec.name, n_bands=self.catalogue.n_bands,
                              class_names=self.catalogue.class_names, path=path)
        saved = data.get("config", {}).get("patch_size")
        if saved is not None and saved != config["patch_size"]:
            raise UserError(f"checkpoint {path} was trained with patch_size {saved}; use --patch_size {saved}")
        return data

    def _build_model(self, config: dict[str, Any], restored: Optional[dict]) -> torch.nn.Module:
        from deephyperx.registry import create_model

        model = create_model(self.spec.name, n_bands=self.catalogue.n_bands, n_classes=self.catalogue.n_classes,
                             patch_size=config["patch_size"], seed=config["seed"], **config["model_args"])
        if restored is not None:
            model.load_state_dict(restored["model_state"])
        return model

    # --- training and scoring --------------------------------------------------------------------
    def fit_and_report(self, run: SeedRun) -> Optional[dict[str, Any]]:
        from deephyperx.catalogue_sampling import (CatalogueMaker, CatalogueSource, class_weights,
                                                   fit_catalogue_normaliser, score_catalogue)
        from deephyperx.preprocessing import Normaliser
        from deephyperx.runner import resolve_device
        from deephyperx.sampling import Augmentation
        from deephyperx.scene_catalogue import TEST, TRAIN, VAL
        from deephyperx.steps import get_step
        from deephyperx.training import Trainer, TrainingData

        cfg, catalogue, parts, index = run.config, self.catalogue, run.parts, run.parts.index
        started = time.perf_counter()
        saved = run.resume or parts.restored
        normaliser = Normaliser.from_state_dict(saved["normalisers"]["cube"]) if saved is not None \
            else fit_catalogue_normaliser(catalogue, index, cfg["normalization"])
        fit_seconds = time.perf_counter() - started
        source = CatalogueSource(catalogue, index, normaliser, parts.cache)
        augmentation = Augmentation(cfg["flip_augmentation"], cfg["radiation_augmentation"])
        train = CatalogueMaker(source, TRAIN, cfg["epoch_samples"], augmentation, cfg["visit_samples"])
        validation = CatalogueMaker(source, VAL) if index.role_counts(VAL).sum() else None
        weights = class_weights(index.class_counts(TRAIN)) if cfg["class_balancing"] else None
        describe = {"n_bands": catalogue.n_bands, "class_names": list(catalogue.class_names),
                    "scene": catalogue.name, "label_values": list(catalogue.label_values),
                    "normalisers": {"cube": normaliser.state_dict()}, "projection": None}
        data = TrainingData(train, validation, catalogue.n_classes, None, weights)
        trainer = Trainer(parts.model, get_step(cfg["supervision"]), data, cfg, run.monitor, resolve_device(cfg["cuda"]),
                          checkpoint_path=run.checkpoint, checkpoint_extra=lambda: describe)
        run.monitor.text(f"{catalogue.name}: {len(catalogue.scenes)} scenes, {len(index)} blocks of "
                         f"{index.block_rows} rows, {source.group_size} blocks per group, cache "
                         f"{cfg['cache_bytes']:,} bytes")
        state = run.train(trainer)
        if state is None:
            return None
        training_cache = parts.cache.stats()
        started = time.perf_counter()
        matrices = score_catalogue(trainer.model, source, max(cfg["batch_size"], 256), trainer.device, TEST,
                                   lambda done, total: run.monitor.progress("scoring the test pixels", done, total,
                                                                           unit="px"))
        scoring_seconds = time.perf_counter() - started
        run.keep_model(trainer)
        metrics = self._metrics(matrices, index)
        metrics.update({
            "seed": run.seed, "scene": catalogue.name, "model": self.spec.name, "epochs": state.epoch,
            "epoch_samples": len(train), "samples_trained": state.epoch * len(train),
            "train_seconds": state.train_seconds, "resumed_from_epoch": int(run.resume["epoch"]) if run.resume else 0,
            "command": self.command, "index_seconds": parts.index_seconds, "normaliser_seconds": fit_seconds,
            "scoring_seconds": scoring_seconds, "parameters": sum(p.numel() for p in parts.model.parameters()),
            "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
            "blocks": len(index), "block_rows": index.block_rows, "group_size": source.group_size,
            "visit_samples": train.visit_samples,
            "cache": {**parts.cache.stats(), "training": training_cache, "per_epoch": parts.cache_log.epochs},
            "catalogue_cube_bytes": int(sum(s.cube.rows * s.cube.cols * s.cube.channels * s.cube.dtype.itemsize
                                            for s in catalogue.scenes)),
            "catalogue_float32_bytes": catalogue.cube_bytes,
        })
        run.monitor.confusion(matrices.sum(axis=0), catalogue.class_names)
        self._write_reports(run, metrics, matrices.sum(axis=0))
        return metrics

    def _metrics(self, matrices: np.ndarray, index: Any) -> dict[str, Any]:
        """Metrics of all test pixels, and OA/AA/kappa per scene that has test pixels."""
        from deephyperx.metrics import metrics_from_confusion
        from deephyperx.scene_catalogue import TEST, TRAIN, VAL

        catalogue = self.catalogue
        metrics = metrics_from_confusion(matrices.sum(axis=0), catalogue.class_names)
        counts = {r: index.scene_counts(r, len(catalogue.scenes)) for r in (TRAIN, VAL, TEST)}
        scenes = []
        for s, scene in enumerate(catalogue.scenes):
            row = {"scene": scene.name, "role": scene.role, "n_train": int(counts[TRAIN][s]),
                   "n_validation": int(counts[VAL][s]), "n_test": int(counts[TEST][s])}
            if matrices[s].sum():
                scores = metrics_from_confusion(matrices[s], catalogue.class_names)
                row.update({k: scores[k] for k in ("overall_accuracy", "average_accuracy", "kappa")})
            scenes.append(row)
        metrics.update({"scenes": scenes, "n_train": int(counts[TRAIN].sum()),
                        "n_validation": int(counts[VAL].sum())})
        return metrics

    def _write_reports(self, run: SeedRun, metrics: dict[str, Any], cm: np.ndarray) -> None:
        from deephyperx.atomic import atomic_write_text
        from deephyperx.reports import run_summary_markdown, save_confusion_png, save_json

        folder, catalogue = run.partial, self.catalogue
        save_json(folder / "metrics.json", metrics)
        save_confusion_png(cm, catalogue.class_names, folder / "confusion.png")
        atomic_write_text(folder / "scenes.md", scenes_markdown(metrics))
        cache = metrics["cache"]
        extra = {"scenes": len(catalogue.scenes), "blocks": metrics["blocks"],
                 "cache bound (bytes)": cache["max_bytes"], "cache peak (bytes)": cache["peak_bytes"],
                 "cache hit rate": round(cache["hit_rate"], 4) if cache["hit_rate"] is not None else "n/a"}
        atomic_write_text(folder / "summary.md", run_summary_markdown(
            f"{self.spec.name} on catalogue {catalogue.name}, seed {run.seed}", metrics, run.config, extra))


def scenes_markdown(metrics: dict[str, Any]) -> str:
    """The per-scene table: role, pixel counts and OA / AA / kappa of scenes with test pixels."""
    from deephyperx.metrics import format_percent

    lines = [f"# {metrics['model']} on catalogue {metrics['scene']}: scene by scene", "",
             f"All test pixels: OA {format_percent(metrics['overall_accuracy'])}, "
             f"AA {format_percent(metrics['average_accuracy'])}, kappa {format_percent(metrics['kappa'])} "
             f"({metrics['n_test']:,} pixels).", "",
             "| scene | role | train | validation | test | OA (%) | AA (%) | kappa (× 100) |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for row in metrics["scenes"]:
        scores = [format_percent(row.get(k)) for k in ("overall_accuracy", "average_accuracy", "kappa")]
        lines.append(f"| {row['scene']} | {row['role']} | {row['n_train']:,} | {row['n_validation']:,} | "
                     f"{row['n_test']:,} | " + " | ".join(scores) + " |")
    return "\n".join(lines) + "\n"


# ----- the command ---------------------------------------------------------------------------------------

def cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys the flags set (None where unset)."""
    return given(args, CatalogueSettings)


def command(argv: Sequence[str], plugins: Plugins) -> int:
    """``main.py catalogue ...``: train, score, write the run folder; print the scores."""
    from deephyperx.config import load_yaml_config
    from deephyperx.metrics import format_percent
    from deephyperx.scene_catalogue import load_catalogue

    args = build_parser().parse_args(list(argv))
    file_config = load_yaml_config(args.config)
    path = args.catalogue or file_config.get("catalogue")
    if not path:
        raise UserError("no --catalogue given; give the YAML file listing the scenes")
    catalogue = load_catalogue(path)  # a bad catalogue fails before the model zoo is used
    from deephyperx.registry import chosen_model
    from deephyperx.disk import check_writable_folder

    spec = chosen_model(args.model or file_config.get("model"), ("neural",), "main.py catalogue")
    config = resolve_catalogue_config(spec, {k: v for k, v in file_config.items() if k != "model"}, cli_settings(args))
    config.update(dataset=catalogue.name, catalogue_sha256=file_sha256(path))
    check_writable_folder(config["out"])
    shown = "python main.py catalogue " + " ".join(shlex.quote(a) for a in argv)
    experiment = Experiment(CatalogueTask(catalogue, config, shown))
    metrics = experiment.run_claimed(config["seed"], shown)  # another process on this seed: one line, stop
    print(f"{spec.name} on catalogue {catalogue.name} ({len(catalogue.scenes)} scenes): "
          f"OA {format_percent(metrics['overall_accuracy'])}  AA {format_percent(metrics['average_accuracy'])}  "
          f"kappa {format_percent(metrics['kappa'])}  ({metrics['n_test']:,} test pixels)")
    print(f"reports: {experiment.folder / ('seed' + str(config['seed']))}")
    return 0
