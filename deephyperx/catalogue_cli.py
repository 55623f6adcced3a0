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
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence, Union

import numpy as np
import torch

from deephyperx.command_line import OneLineParser
from deephyperx.errors import UserError
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


class CatalogueRun:
    """One seed of a catalogue experiment, written into ``final_dir`` (via ``final_dir.partial``)."""

    def __init__(self, catalogue: Any, config: dict[str, Any], final_dir: Path, command: Optional[str] = None):
        from deephyperx.registry import get_spec

        self.catalogue, self.config, self.final_dir = catalogue, config, Path(final_dir)
        self.command = command
        self.index_seconds = 0.0
        self.seed = int(config["seed"])
        self.spec = get_spec(config["model"])
        self.partial = self.final_dir.with_name(self.final_dir.name + ".partial")

    def execute(self, stop_after_epoch: Optional[int] = None) -> Optional[dict[str, Any]]:
        """Train, score and write the run folder; with ``stop_after_epoch`` (tests), stop training
        there and leave the ``.partial`` folder as an interrupted run would (returns None)."""
        from deephyperx.catalogue_sampling import build_index, choose_block_rows
        from deephyperx.scene_catalogue import TEST, TRAIN, check_patch_size
        from deephyperx.seeding import seed_everything

        cfg, catalogue = self.config, self.catalogue
        seed_everything(self.seed)
        check_patch_size(catalogue, cfg["patch_size"])
        restored = self._restored()
        model = self._build_model(restored)  # an impossible model fails before any folder exists
        block_rows = choose_block_rows(catalogue, cfg["patch_size"], cfg["cache_bytes"], cfg["block_rows"])
        started = time.perf_counter()
        index = build_index(catalogue, cfg["patch_size"], block_rows)  # undeclared label values fail here
        self.index_seconds = time.perf_counter() - started
        if cfg["epoch"] > 0 and not index.role_counts(TRAIN).sum():
            raise UserError(f"catalogue {catalogue.name}: no labelled training pixels; check the labels and the split")
        if not index.role_counts(TEST).sum():
            raise UserError(f"catalogue {catalogue.name}: no labelled test pixels; check the labels and the split")
        resume = self._prepare_partial()
        try:
            metrics = self._execute(model, restored, resume, index, stop_after_epoch)
        except UserError:
            from deephyperx.runner import discard_unresumable_partial
            discard_unresumable_partial(self.partial)
            raise
        return metrics

    # --- folders and checkpoints -----------------------------------------------------------------
    def _prepare_partial(self) -> Optional[dict]:
        from deephyperx.runner import resume_partial_folder

        return resume_partial_folder(self.partial, self.config, self.seed)

    def _restored(self) -> Optional[dict]:
        from deephyperx import checkpoint as ckpt

        path = self.config.get("restore")
        if not path:
            return None
        data = ckpt.load_checkpoint(path)
        ckpt.check_compatible(data, model=self.spec.name, n_bands=self.catalogue.n_bands,
                              class_names=self.catalogue.class_names, path=path)
        saved = data.get("config", {}).get("patch_size")
        if saved is not None and saved != self.config["patch_size"]:
            raise UserError(f"checkpoint {path} was trained with patch_size {saved}; use --patch_size {saved}")
        return data

    def _build_model(self, restored: Optional[dict]) -> torch.nn.Module:
        from deephyperx.registry import create_model

        model = create_model(self.spec.name, n_bands=self.catalogue.n_bands, n_classes=self.catalogue.n_classes,
                             patch_size=self.config["patch_size"], seed=self.seed, **self.config["model_args"])
        if restored is not None:
            model.load_state_dict(restored["model_state"])
        return model

    # --- training and scoring --------------------------------------------------------------------
    def _execute(self, model: torch.nn.Module, restored: Optional[dict], resume: Optional[dict],
                 index: Any, stop_after_epoch: Optional[int] = None) -> Optional[dict[str, Any]]:
        from deephyperx.catalogue_sampling import (BlockCache, CatalogueMaker, CatalogueSource, class_weights,
                                                   fit_catalogue_normaliser, score_catalogue)
        from deephyperx.file_monitor import FileMonitor
        from deephyperx.monitor import ConsoleMonitor, JsonLinesMonitor, Monitors
        from deephyperx.preprocessing import Normaliser
        from deephyperx.runner import resolve_device
        from deephyperx.sampling import Augmentation
        from deephyperx.scene_catalogue import TEST, TRAIN, VAL
        from deephyperx.steps import get_step
        from deephyperx.training import Trainer, TrainingData

        cfg, catalogue = self.config, self.catalogue
        started = time.perf_counter()
        saved = resume or restored
        normaliser = Normaliser.from_state_dict(saved["normalisers"]["cube"]) if saved is not None \
            else fit_catalogue_normaliser(catalogue, index, cfg["normalization"])
        fit_seconds = time.perf_counter() - started
        cache = BlockCache(cfg["cache_bytes"])
        source = CatalogueSource(catalogue, index, normaliser, cache)
        cache_log = CacheLog(cache)
        monitor = Monitors([ConsoleMonitor(cfg["epoch"]), JsonLinesMonitor(self.partial / "metrics.jsonl"),
                            FileMonitor(self.partial), cache_log])
        monitor.run_started({"run": f"{catalogue.name}_{self.spec.name}_seed{self.seed}", "scene": catalogue.name,
                             "model": self.spec.name, "seed": self.seed, "class_names": catalogue.class_names,
                             "config": cfg, "folder": str(self.final_dir)})
        augmentation = Augmentation(cfg["flip_augmentation"], cfg["radiation_augmentation"])
        train = CatalogueMaker(source, TRAIN, cfg["epoch_samples"], augmentation, cfg["visit_samples"])
        validation = CatalogueMaker(source, VAL) if index.role_counts(VAL).sum() else None
        weights = class_weights(index.class_counts(TRAIN)) if cfg["class_balancing"] else None
        describe = {"n_bands": catalogue.n_bands, "class_names": list(catalogue.class_names),
                    "scene": catalogue.name, "label_values": list(catalogue.label_values),
                    "normalisers": {"cube": normaliser.state_dict()}, "projection": None}
        trainer = Trainer(model, get_step(cfg["supervision"]), TrainingData(train, validation, catalogue.n_classes,
                                                                            None, weights),
                          cfg, monitor, resolve_device(cfg["cuda"]), checkpoint_path=self.partial / "checkpoint.pt",
                          checkpoint_extra=lambda: describe)
        first_epoch = 0
        if resume is not None:
            trainer.load_state_dict(resume)
            first_epoch = int(resume["epoch"])
            monitor.text(f"resuming {self.final_dir.name} from epoch {first_epoch} ({self.partial})")
        monitor.text(f"{catalogue.name}: {len(catalogue.scenes)} scenes, {len(index)} blocks of {index.block_rows} "
                     f"rows, {source.group_size} blocks per group, cache {cfg['cache_bytes']:,} bytes")
        state = trainer.fit(stop_after_epoch)
        if state.epoch < cfg["epoch"]:
            return None
        training_cache = cache.stats()
        started = time.perf_counter()
        matrices = score_catalogue(trainer.model, source, max(cfg["batch_size"], 256), trainer.device, TEST)
        scoring_seconds = time.perf_counter() - started
        last, final = self.partial / "checkpoint.pt", self.partial / "model.pt"
        if last.is_file():
            os.replace(last, final)
        else:
            from deephyperx import checkpoint as ckpt

            ckpt.save_checkpoint(final, trainer.state_dict())
        metrics = self._metrics(matrices, index)
        metrics.update({
            "seed": self.seed, "scene": catalogue.name, "model": self.spec.name, "epochs": state.epoch,
            "epoch_samples": len(train), "samples_trained": state.epoch * len(train),
            "train_seconds": state.train_seconds, "resumed_from_epoch": first_epoch, "command": self.command,
            "index_seconds": self.index_seconds, "normaliser_seconds": fit_seconds, "scoring_seconds": scoring_seconds,
            "parameters": sum(p.numel() for p in model.parameters()),
            "final_train_loss": state.history[-1]["train_loss"] if state.history else None,
            "blocks": len(index), "block_rows": index.block_rows, "group_size": source.group_size,
            "visit_samples": train.visit_samples,
            "cache": {**cache.stats(), "training": training_cache, "per_epoch": cache_log.epochs},
            "catalogue_cube_bytes": int(sum(s.cube.rows * s.cube.cols * s.cube.channels * s.cube.dtype.itemsize
                                            for s in catalogue.scenes)),
            "catalogue_float32_bytes": catalogue.cube_bytes,
        })
        monitor.confusion(matrices.sum(axis=0), catalogue.class_names)
        self._write_reports(metrics, matrices.sum(axis=0))
        monitor.run_ended(metrics)
        from deephyperx.atomic import replace_directory

        replace_directory(self.partial, self.final_dir)
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

    def _write_reports(self, metrics: dict[str, Any], cm: np.ndarray) -> None:
        from deephyperx.atomic import atomic_write_text
        from deephyperx.reports import run_summary_markdown, save_confusion_png, save_json

        folder, catalogue = self.partial, self.catalogue
        save_json(folder / "metrics.json", metrics)
        save_confusion_png(cm, catalogue.class_names, folder / "confusion.png")
        atomic_write_text(folder / "scenes.md", scenes_markdown(metrics))
        cache = metrics["cache"]
        extra = {"scenes": len(catalogue.scenes), "blocks": metrics["blocks"],
                 "cache bound (bytes)": cache["max_bytes"], "cache peak (bytes)": cache["peak_bytes"],
                 "cache hit rate": round(cache["hit_rate"], 4) if cache["hit_rate"] is not None else "n/a"}
        atomic_write_text(folder / "summary.md", run_summary_markdown(
            f"{self.spec.name} on catalogue {catalogue.name}, seed {self.seed}", metrics, self.config, extra))


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
    from deephyperx.safe_paths import experiment_path

    spec = chosen_model(args.model or file_config.get("model"), ("neural",), "main.py catalogue")
    config = resolve_catalogue_config(spec, {k: v for k, v in file_config.items() if k != "model"}, cli_settings(args))
    config.update(dataset=catalogue.name, catalogue_sha256=file_sha256(path))
    check_writable_folder(config["out"])
    final_dir = experiment_path(config["out"], [(catalogue.name, "catalogue name"), (spec.name, "model name")],
                                experiment_id(config)) / f"seed{config['seed']}"
    shown = "python main.py catalogue " + " ".join(shlex.quote(a) for a in argv)
    from deephyperx.experiment_lock import claim_seeds

    with claim_seeds(final_dir.parent, [config["seed"]], shown):  # another process on this seed: one line, stop
        metrics = CatalogueRun(catalogue, config, final_dir, shown).execute()
    print(f"{spec.name} on catalogue {catalogue.name} ({len(catalogue.scenes)} scenes): "
          f"OA {format_percent(metrics['overall_accuracy'])}  AA {format_percent(metrics['average_accuracy'])}  "
          f"kappa {format_percent(metrics['kappa'])}  ({metrics['n_test']:,} test pixels)")
    print(f"reports: {final_dir}")
    return 0
