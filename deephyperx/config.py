"""The run configuration: engine defaults, then the model's paper defaults, then a YAML
file, then the command line. A value left unset (None) never overrides an earlier one,
so ``--lr`` reaches every model and an unset flag keeps the model's own default."""
from __future__ import annotations

import hashlib
import json
import math
from typing import Any, Mapping, Optional, Sequence

import yaml

from deephyperx.errors import UserError
from deephyperx.registry import ModelSpec
from deephyperx.yaml_files import read_yaml_mapping

#: Run settings that belong to no model (the model's own come from the registry).
RUN_DEFAULTS: dict[str, Any] = {
    "dataset": None,
    "folder": "Datasets",
    "training_sample": 0.1,
    "sampling_mode": "random",
    "train_set": None,
    "test_set": None,
    "guard": None,
    "block_size": None,
    "val_fraction": 0.05,
    "class_balancing": False,
    "test_stride": 1,
    "flip_augmentation": False,
    "radiation_augmentation": False,
    "mixture_augmentation": False,
    "runs": 1,
    "seed": 0,
    "restore": None,
    "cuda": -1,
    "out": "outputs",
    "n_jobs": 1,
    "trust_checkpoint": False,
    "with_exploration": False,
    "synthetic": None,  # spectra file (.h5) or generator checkpoint (.pt) whose spectra join training
    "synthetic_ratio": None,  # synthetic spectra per real training pixel (1 when --synthetic is given)
    "synthetic_sha256": None,  # filled by the run: the --synthetic file's checksum (experiment identity)
    "scene_sha256": None,  # filled by the run: a custom scene's content checksum (experiment identity)
    "train_set_sha256": None,  # filled by the run: the --train_set file's checksum (experiment identity)
    "test_set_sha256": None,  # filled by the run: the --test_set file's checksum (experiment identity)
    "keep_best": None,  # a validation score (val_oa, val_loss, ...): keep the best epoch's weights, not the last
    "model_args": {},
}

#: Validation scores that ``keep_best`` can select weights on, and whether higher is better.
BEST_METRICS = {"val_oa": True, "val_aa": True, "val_kappa": True, "val_loss": False}

#: Keys that change the numbers a run produces (used to name and match run folders).
_NOT_IN_IDENTITY = {"runs", "out", "folder", "cuda", "n_jobs", "trust_checkpoint", "seed", "with_exploration"}


def load_yaml_config(path: Optional[str]) -> dict[str, Any]:
    """Read a ``--config FILE.yaml``: a mapping of the same keys as the command-line flags."""
    if not path:
        return {}
    return read_yaml_mapping(path, "config file", "flag: value pairs", empty_ok=True)


def resolve_config(spec: ModelSpec, *layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge run defaults, the model's training defaults, then ``layers`` (YAML, command line),
    skipping None values; check the keys and values."""
    config: dict[str, Any] = {**RUN_DEFAULTS, **spec.training_defaults(), "model": spec.name}
    config["model_args"] = dict(spec.model_arguments())
    apply_layers(config, spec.name, layers)
    validate_config(config)
    return config


def apply_layers(config: dict[str, Any], model: str, layers: Sequence[Mapping[str, Any]]) -> None:
    """Apply ``layers`` (YAML file, command line) in order onto ``config``: None values are
    skipped, keys must exist in ``config``, and ``model_args`` may only name the options already
    in ``config['model_args']`` (the model's own). One-line errors."""
    known = set(config)
    for layer in layers:
        for key, value in layer.items():
            if value is None:
                continue
            if key not in known:
                raise UserError(f"unknown setting '{key}'; known settings: {', '.join(sorted(known))}")
            if key == "model_args":
                unknown = set(value) - set(config["model_args"])
                if unknown:
                    raise UserError(f"model {model} has no option {sorted(unknown)}; "
                                    f"its options: {sorted(config['model_args']) or 'none'}")
                for option, given in value.items():
                    check_option_type(model, option, given, config["model_args"][option])
                config["model_args"].update(value)
            else:
                config[key] = value


def check_option_type(model: str, option: str, value: Any, default: Any) -> None:
    """Refuse a model option whose value is not of its default's kind (a whole number, a number,
    true/false, a text), naming the option, the value and the default."""
    if default is None or value is None:
        return
    if isinstance(default, bool):
        fits = isinstance(value, bool)
    elif isinstance(default, int):
        fits = isinstance(value, int) and not isinstance(value, bool)
    elif isinstance(default, float):
        fits = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    elif isinstance(default, (list, tuple)):
        fits = isinstance(value, (list, tuple))
    else:
        fits = isinstance(value, type(default))
    if not fits:
        kind = {bool: "true or false", int: "a whole number", float: "a finite number"}.get(type(default),
                                                                                          type(default).__name__)
        raise UserError(f"model {model} option {option}={value!r} must be {kind} (its default is {default!r})")


#: Settings that hold a real number when set.
NUMBER_SETTINGS = ("lr", "weight_decay", "training_sample", "val_fraction", "synthetic_ratio", "focus_fraction",
                   "detect_iou")
#: Settings that name a file or folder when set.
PATH_SETTINGS = ("out", "folder", "restore", "train_set", "test_set", "synthetic", "dataset", "catalogue")
#: Seeds are 32-bit (NumPy's generators refuse larger or negative ones).
SEED_LIMIT = 2 ** 32


def check_shared_settings(config: dict[str, Any]) -> None:
    """Refuse the values of settings every task shares that cannot work, before any work starts: a file
    or folder that is not a text (or holds a NUL or control character), NaN or infinite numbers, a
    learning rate that is not positive, a negative weight decay, a seed outside 0 .. 2**32 - runs, a
    process count of 0 (or below -1) and a GPU index below -1."""
    for key in PATH_SETTINGS:
        value = config.get(key)
        if value is not None and (not isinstance(value, str) or not value
                                  or any(ord(ch) < 32 or ord(ch) == 127 for ch in value)):
            raise UserError(f"--{key} {value!r} must name a file or folder (a non-empty text without control "
                            "characters)")
    for key in NUMBER_SETTINGS:
        value = config.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                  or not math.isfinite(value)):
            raise UserError(f"--{key} {value!r} must be a finite number")
    if "lr" in config and config["lr"] <= 0:
        raise UserError(f"--lr {config['lr']!r} must be a positive number")
    if config.get("weight_decay") is not None and config["weight_decay"] < 0:
        raise UserError(f"--weight_decay {config['weight_decay']!r} must be 0 or more")
    if config.get("synthetic_ratio") is not None and config["synthetic_ratio"] <= 0:
        raise UserError(f"--synthetic_ratio {config['synthetic_ratio']!r} must be a positive number")
    runs = config.get("runs") if isinstance(config.get("runs"), int) else 1
    seed = config.get("seed")
    if seed is not None and (not _whole(seed) or not 0 <= seed <= SEED_LIMIT - max(1, runs)):
        raise UserError(f"--seed {seed!r} must be a whole number from 0 to {SEED_LIMIT - max(1, runs)}")
    n_jobs = config.get("n_jobs")
    if n_jobs is not None and (not _whole(n_jobs) or not (n_jobs >= 1 or n_jobs == -1)):
        raise UserError(f"--n_jobs {n_jobs!r} must be a number of processes of at least 1 (or -1 for every core)")
    cuda = config.get("cuda")
    if cuda is not None and (not _whole(cuda) or cuda < -1):
        raise UserError(f"--cuda {cuda!r} must be a GPU index (0, 1, ...) or -1 for the CPU")


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def validate_config(config: dict[str, Any]) -> None:
    """Refuse values that cannot work, with one line saying which and why."""
    check_shared_settings(config)
    positive_int = ("epoch", "batch_size", "runs", "patch_size", "test_stride")
    for key in positive_int:
        value = config[key]
        if not isinstance(value, int) or isinstance(value, bool) or value < (0 if key == "epoch" else 1):
            raise UserError(f"--{key} {value!r} must be a whole number of at least {0 if key == 'epoch' else 1}")
    if not isinstance(config["lr"], (int, float)) or config["lr"] <= 0:
        raise UserError(f"--lr {config['lr']!r} must be a positive number")
    sample = config["training_sample"]
    if not isinstance(sample, (int, float)) or sample <= 0:
        raise UserError(f"--training_sample {sample!r} must be a fraction in (0, 1) or a number of pixels per class")
    from deephyperx.splits import MODES

    reduction = config.get("reduction")
    if reduction is not None and (not isinstance(reduction, dict) or reduction.get("name") != "pca"
                                  or not isinstance(reduction.get("components"), int) or reduction["components"] < 1
                                  or set(reduction) - {"name", "components", "whiten"}
                                  or not isinstance(reduction.get("whiten", False), bool)):
        raise UserError(f"reduction {reduction!r}: use {{name: pca, components: N, whiten: true/false}} with N >= 1 "
                        "(or --pca N [--pca_whiten])")

    if config["sampling_mode"] not in MODES:
        raise UserError(f"--sampling_mode {config['sampling_mode']!r} is unknown; choose one of: {', '.join(MODES)}")
    if not 0 <= config["val_fraction"] < 1:
        raise UserError(f"--val_fraction {config['val_fraction']} must be in [0, 1)")
    if config.get("keep_best") is not None and config["keep_best"] not in BEST_METRICS:
        raise UserError(f"--keep_best {config['keep_best']!r} is not a validation score; choose one of: "
                        f"{', '.join(BEST_METRICS)}")


def model_band_count(config: dict[str, Any], scene_bands: int) -> int:
    """Bands the model sees: the PCA components when a reduction is set, else the scene's bands."""
    reduction = config.get("reduction")
    return int(reduction["components"]) if reduction else scene_bands


def experiment_id(config: dict[str, Any]) -> str:
    """A short stable hash of the settings that change a run's numbers (unset settings are left
    out, so adding a new setting whose default is None keeps existing folders' names)."""
    identity = {k: v for k, v in sorted(config.items()) if k not in _NOT_IN_IDENTITY and v is not None}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]


def to_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=True)
