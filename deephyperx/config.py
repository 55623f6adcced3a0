"""The run configuration: engine defaults, then the model's paper defaults, then a YAML
file, then the command line. A value left unset (None) never overrides an earlier one,
so ``--lr`` reaches every model and an unset flag keeps the model's own default."""
from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from typing import Any, Mapping, Optional

import yaml

from deephyperx.precision import PRECISIONS
from deephyperx.errors import UserError
from deephyperx.protocols import check_protocol_settings
from deephyperx.registry import ModelSpec
from deephyperx.settings import MODEL, SCENE, check_types, defaults, layer_settings, outside_identity, setting
from deephyperx.shared_settings import (ClassWeights, ConfigFile, Device, Flips, ModelChoice, ModelDefaults, ModelOptions,
                                        Monitoring, Output, Radiation, Restore, Runs, SceneChoice, Seed, Split,
                                        Validation)
from deephyperx.yaml_files import read_yaml_mapping

@dataclass
class ClassifySettings(ModelChoice, SceneChoice, Split, Validation, ModelDefaults, ModelOptions, ClassWeights, Flips, Radiation,
                       Runs, Seed, Device, Output, Restore, ConfigFile, Monitoring):
    """The settings of ``main.py`` (classify a scene's pixels); ``main.py generate`` shares them."""

    pca: Optional[int] = setting(None, group=MODEL, config=False, metavar="N",
                                 help="project spectra on their first N principal components (fitted on training "
                                      "pixels); replaces the model's own reduction")
    pca_whiten: Optional[bool] = setting(None, group=MODEL, config=False, action="store_true",
                                         help="with --pca: scale each component to unit variance over the training "
                                              "pixels")
    fit_preprocessing: Optional[str] = setting(None, group=MODEL, choices=["train", "scene"],
                                               help="train (default) or scene: fit normalisation and PCA on every "
                                                    "pixel of the scene, test pixels included (a leak some papers "
                                                    "made)")
    mixture_augmentation: bool = setting(False, group=MODEL, action="store_true",
                                         help="training spectra mixed with others of their class")
    synthetic: Optional[str] = setting(None, group=MODEL, metavar="FILE",
                                       help="mix synthetic spectra into training: a spectra file (.h5) or a generator's "
                                            "model.pt written by `main.py generate` (single-spectrum models such as "
                                            "nn, hu)")
    synthetic_ratio: Optional[float] = setting(None, group=MODEL, metavar="R",
                                               help="synthetic spectra per real training pixel, per class in "
                                                    "proportion (default 1)")
    keep_best: Optional[str] = setting(None, group=MODEL, metavar="SCORE",
                                       help="keep the weights of the epoch with the best validation SCORE (val_oa, "
                                            "val_aa, val_kappa or val_loss) instead of the last epoch's")
    early_stopping: Optional[int] = setting(None, group=MODEL, metavar="EPOCHS",
                                            help="stop training once the validation loss has not fallen for EPOCHS "
                                                 "epochs (A2S2K-ResNet and DBDA: 20) and keep the weights of its "
                                                 "lowest epoch (unless --keep_best names another score); needs "
                                                 "validation pixels")
    trust_checkpoint: bool = setting(False, group=MODEL, identity=False, action="store_true",
                                     help="load a .skops model that names types deephyperx does not write (they can "
                                          "run code while the file is read): only for a file you trust")
    test_stride: int = setting(1, help="stride of sliding-window inference for dense models")
    n_jobs: int = setting(1, identity=False, help="processes for scikit-learn grid searches (-1: every core)")
    with_exploration: bool = setting(False, identity=False, action="store_true",
                                     help="also show each class's mean ± std spectrum to the monitors")
    download: Optional[list] = setting(None, group=SCENE, config=False, nargs="+", metavar="NAME",
                                       help="download these scenes into --folder and exit")
    mirror: Optional[str] = setting(None, group=SCENE, config=False,
                                    help="base URL replacing the scenes' download host (or $DEEPHYPERX_MIRROR)")
    # filled by the run, joining the experiment's identity: checksums of what names do not pin down
    synthetic_sha256: Optional[str] = setting(None, flag=False)
    scene_sha256: Optional[str] = setting(None, flag=False)
    train_set_sha256: Optional[str] = setting(None, flag=False)
    test_set_sha256: Optional[str] = setting(None, flag=False)


#: The settings of a run that belong to no model (the model's own come from the registry).
RUN_DEFAULTS: dict[str, Any] = {k: v for k, v in defaults(ClassifySettings).items()
                                if k not in defaults(ModelDefaults)}

#: Validation scores that ``keep_best`` can select weights on, and whether higher is better.
BEST_METRICS = {"val_oa": True, "val_aa": True, "val_kappa": True, "val_loss": False}

def load_yaml_config(path: Optional[str]) -> dict[str, Any]:
    """Read a ``--config FILE.yaml``: a mapping of the same keys as the command-line flags."""
    if not path:
        return {}
    return read_yaml_mapping(path, "config file", "flag: value pairs", empty_ok=True)


def resolve_config(spec: ModelSpec, *layers: Mapping[str, Any], declaration: type = ClassifySettings) -> dict[str, Any]:
    """The declared defaults, the model's training defaults, then ``layers`` (YAML, command line),
    skipping None values; unknown keys, values of the wrong kind and impossible values refused."""
    base: dict[str, Any] = {**defaults(declaration), **spec.training_defaults(), "model": spec.name}
    base["model_args"] = dict(spec.model_arguments())
    config = layer_settings(base, layers, set(base), spec.name, spec.model_arguments())
    check_types(config, declaration)
    validate_config(config)
    return config


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
    if config.get("precision") not in (None, *PRECISIONS):
        raise UserError(f"--precision {config['precision']!r}: choose one of {', '.join(PRECISIONS)}")
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
    check_protocol_settings(config)
    patience = config.get("early_stopping")
    if patience is not None:
        if isinstance(patience, bool) or not isinstance(patience, int) or patience < 1:
            raise UserError(f"--early_stopping {patience!r} must be a whole number of epochs (at least 1), e.g. 20")
        if config["val_fraction"] == 0 and config.get("val_per_class") is None:
            raise UserError(f"--early_stopping {patience} watches the validation loss but this run holds no validation "
                            "pixels (val_fraction 0): give --val_fraction above 0 (or --val_per_class M)")
    if config.get("keep_best") is not None and config["keep_best"] not in BEST_METRICS:
        raise UserError(f"--keep_best {config['keep_best']!r} is not a validation score; choose one of: "
                        f"{', '.join(BEST_METRICS)}")


def model_band_count(config: dict[str, Any], scene_bands: int) -> int:
    """Bands the model sees: the PCA components when a reduction is set, else the scene's bands."""
    reduction = config.get("reduction")
    return int(reduction["components"]) if reduction else scene_bands


def experiment_id(config: dict[str, Any], declaration: type = ClassifySettings) -> str:
    """A short stable hash of the settings that change a run's numbers (those ``declaration`` does not
    mark ``identity=False``; unset settings are left out, so adding a new setting whose default is
    None keeps existing folders' names)."""
    excluded = outside_identity(declaration)
    identity = {k: v for k, v in sorted(config.items()) if k not in excluded and v is not None}
    return hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode()).hexdigest()[:8]


def to_yaml(config: dict[str, Any]) -> str:
    return yaml.safe_dump(json.loads(json.dumps(config, default=str)), sort_keys=True)
