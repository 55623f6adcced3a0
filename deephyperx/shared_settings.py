"""The settings several tasks share, each declared once (see :mod:`deephyperx.settings`).

A task's declaration inherits the groups it takes: ``class ClassifySettings(SceneChoice, Split,
Training, Run, ...)``. Defaults here are the engine's; a model's registration overrides those of
:class:`ModelDefaults` (its paper's), and a task may override others in its ``DEFAULTS``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import yaml

from deephyperx.errors import UserError
from deephyperx.settings import MODEL, MONITORING, SCENE, SPLIT, setting


def parse_model_args(items: Optional[Sequence[str]]) -> Optional[dict[str, Any]]:
    """``["width=0.25", "vgg_weights=vgg.pth"]`` -> ``{"width": 0.25, "vgg_weights": "vgg.pth"}``
    (values read as plain YAML data: a ``!!python/...`` tag is refused, never run)."""
    if not items:
        return None
    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UserError(f"--model_args {item!r}: write KEY=VALUE, e.g. width=0.25")
        try:
            options[key] = yaml.safe_load(value) if value else None
        except yaml.constructor.ConstructorError:
            raise UserError(f"--model_args {item!r}: the value holds a YAML tag that builds an object; give a "
                            "plain number, word or list, e.g. width=0.25") from None
        except yaml.YAMLError:
            options[key] = value
    return options


@dataclass
class ModelDefaults:
    """Training settings every model has; a model's registration may fix each (its paper's values)."""

    patch_size: int = setting(1, group=MODEL, help="side of the square patch around each pixel")
    epoch: int = setting(100, group=MODEL, help="epochs (with epoch_samples, an epoch is that many samples)")
    batch_size: int = setting(100, group=MODEL)
    optimizer: str = setting("adam", group=MODEL, help="sgd, adam, adamw, adagrad, adadelta or rmsprop")
    lr: float = setting(1e-3, group=MODEL, help="learning rate (reaches every neural model)")
    momentum: float = setting(0.0, flag=False)
    weight_decay: float = setting(0.0, group=MODEL)
    scheduler: Optional[dict] = setting({"name": "plateau", "factor": 0.1, "patience_fraction": 0.25}, flag=False)
    loss: str = setting("cross_entropy", flag=False)
    supervision: str = setting("supervised", flag=False)
    #: "center": one label per patch; "dense": a label per patch pixel
    output: str = setting("center", flag=False)
    #: rasters fed to forward(), in order: the cube, then scene extras
    inputs: list = setting(["cube"], flag=False)
    #: e.g. {"name": "pca", "components": 30, "whiten": True}: fitted on training pixels
    reduction: Optional[dict] = setting(None, flag=False)
    normalization: str = setting("standard", group=MODEL,
                                 help="standard (per band), minmax (global) or none; fitted on training pixels")
    epoch_samples: Optional[int] = setting(None, group=MODEL,
                                           help="samples drawn per epoch (default: one pass over the training set)")


@dataclass
class ModelOptions:
    """The model's own architecture options (``model_args``: a YAML mapping, or KEY=VALUE flags)."""

    model_args: dict = setting({}, group=MODEL, nargs="+", metavar="KEY=VALUE", parse=parse_model_args,
                               help="model options, e.g. width=0.25 (see `python main.py list --markdown`)")


@dataclass
class Split:
    """How a scene's labelled pixels split into training, validation and test."""

    training_sample: float = setting(0.1, group=SPLIT, help="fraction of labelled pixels (<1) or pixels per class (>1)")
    sampling_mode: str = setting("random", group=SPLIT,
                                 help="random, fixed, disjoint or blocks (spatially disjoint with a guard band)")
    train_set: Optional[str] = setting(None, group=SPLIT, help="label raster of training pixels (with --test_set)")
    test_set: Optional[str] = setting(None, group=SPLIT, help="label raster of test pixels (with --train_set)")
    guard: Optional[int] = setting(None, group=SPLIT, help="blocks mode: guard band width (default patch_size // 2)")
    block_size: Optional[int] = setting(None, group=SPLIT, help="blocks mode: block side in pixels (default "
                                        "max(2 x patch, min(H, W) // 15), at most min(H, W) // 6)")
    # protocols of the literature (deephyperx/protocols.py); None keeps existing experiment folders' names
    val_per_class: Optional[int] = setting(None, group=SPLIT, metavar="M",
                                           help="M validation pixels per class drawn from the labelled pixels "
                                                "outside training (taken out of the test set), instead of "
                                                "--val_fraction: N + M per class with --sampling_mode fixed "
                                                "--training_sample N (MambaHSI: 30 + 10)")
    validation_from: Optional[str] = setting(None, group=SPLIT, choices=["train", "test"],
                                             help="train (default) or test: validation pixels drawn from the test "
                                                  "pixels, which stay scored (a leak some papers made: early "
                                                  "stopping on the test set, as A2S2K-ResNet and DBDA)")


@dataclass
class Validation:
    """The share of the training data held out for validation (the learning-rate schedule, keep_best)."""

    val_fraction: float = setting(0.05, group=SPLIT,
                                  help="share of the training pixels held out for validation (default 0.05; "
                                       "`main.py segment`: of each training region's rows, default 0)")


@dataclass
class SceneChoice:
    """Which scene: a catalogue name or a declaration file (``dataset``), or a cube and labels."""

    dataset: Optional[str] = setting(None, group=SCENE, help="the scene (the tile set for `main.py segment`): a name "
                                     "(see `python main.py list`) or a declaration .yaml; main.py's default: "
                                     "IndianPines if its files are in --folder, else the embedded Synthetic scene")
    folder: str = setting("Datasets", group=SCENE, identity=False,
                          help="folder holding the scenes and tile sets (default: $DEEPHYPERX_DATA or Datasets)")
    cube: Optional[str] = setting(None, group=SCENE, config=False, help="custom scene: cube file (.mat .npy .h5 .hdr .tif)")
    gt: Optional[str] = setting(None, group=SCENE, config=False, help="custom scene: label raster file (0 = unlabelled)")
    cube_key: Optional[str] = setting(None, group=SCENE, config=False, help="variable/dataset name inside the cube file")
    gt_key: Optional[str] = setting(None, group=SCENE, config=False, help="variable/dataset name inside the label file")


@dataclass
class ModelChoice:
    """Which model (a registered name); it picks the model's defaults, so it is not a setting itself."""

    model: Optional[str] = setting(None, group=MODEL, config=False, help="model name (see `python main.py list`)")


@dataclass
class Runs:
    """How many seeds a command runs."""

    runs: int = setting(1, identity=False, help="number of runs, seeds seed..seed+runs-1")


@dataclass
class Seed:
    """The (first) seed: splits, initialisation and batch order follow from it."""

    seed: int = setting(0, identity=False, help="the (first) run's seed (default 0)")


@dataclass
class Device:
    cuda: int = setting(-1, identity=False, help="GPU index; -1 (default) for the CPU")
    precision: Optional[str] = setting(None, choices=["fp32", "bf16"],
                                       help="numeric precision: fp32 (default: the published numbers) or bf16 mixed "
                                            "precision (autocast; faster only on processors with native bfloat16, "
                                            "e.g. AMX)")


@dataclass
class Output:
    out: str = setting("outputs", identity=False, help="output folder (one folder per experiment inside)")


@dataclass
class Restore:
    restore: Optional[str] = setting(None, group=MODEL, help="checkpoint (model.pt, model.skops) to start from; "
                                     "with --epoch 0 it only evaluates")


@dataclass
class ConfigFile:
    config: Optional[str] = setting(None, config=False, help="YAML file of settings (flags given here override it)")


@dataclass
class Monitoring:
    """Live monitors beside the files and console every run writes (flags of the command line only)."""

    visdom: Optional[bool] = setting(None, group=MONITORING, config=False, action="store_true",
                                     help="plot to visdom even if the server is not up yet (default: only when it "
                                          "answers)")
    no_visdom: Optional[bool] = setting(None, group=MONITORING, config=False, action="store_true",
                                        help="never plot to visdom")
    visdom_server: str = setting("http://127.0.0.1", group=MONITORING, config=False, flag_default="http://127.0.0.1",
                                 help="visdom server URL (default http://127.0.0.1)")
    visdom_port: int = setting(8097, group=MONITORING, config=False, flag_default=8097,
                               help="visdom server port (default 8097)")
    visdom_username: Optional[str] = setting(None, group=MONITORING, config=False,
                                             help="visdom login (or $VISDOM_USERNAME)")
    visdom_password: Optional[str] = setting(None, group=MONITORING, config=False,
                                             help="visdom password (or $VISDOM_PASSWORD)")
    tensorboard: Optional[str] = setting(None, group=MONITORING, config=False, metavar="DIR",
                                         help="also write TensorBoard event files under DIR")


@dataclass
class ClassWeights:
    class_balancing: bool = setting(False, group=MODEL, action="store_true", help="inverse median frequency weights")


@dataclass
class Flips:
    flip_augmentation: bool = setting(False, group=MODEL, action="store_true",
                                      help="random flips and rotations of training patches")


@dataclass
class Radiation:
    radiation_augmentation: bool = setting(False, group=MODEL, action="store_true",
                                           help="random radiation noise on training patches")
