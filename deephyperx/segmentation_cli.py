"""``python main.py segment``: train and evaluate a segmentation model on aerial tiles.

    python main.py segment --model segnet --dataset VaihingenCrop --folder ../shared/data --epoch 30
    python main.py segment --model fusenet --dataset SyntheticAerial --sources image ndsm --crop 128
    python main.py segment --model segnet --images a.png b.png --labels a_gt.png b_gt.png \\
        --extra dsm=a_dsm.tif,b_dsm.tif --sources image dsm --class_names road building tree --test_tiles b
    python main.py segment --model segnet --dataset VaihingenCrop --folder ../shared/data --detect car
    python main.py segment detect --prediction pred.npy --class car --truth gt.png --out objects/
    python main.py segment list

Unset flags keep the model's paper defaults (crop, epochs, samples per epoch, optimiser). Run
folders, checkpoints and resume work as for ``main.py``: give the same command again to resume.
Bad input prints one line and exits with status 2, leaving nothing written.

The tile-set catalogue and the model zoo come from the command line's plugins
(:class:`~deephyperx.plugins.Plugins`): this module names no tile set and no model.
"""
from __future__ import annotations

import argparse
import shlex
from typing import Any, Optional, Sequence

import yaml

from deephyperx.errors import UserError
from deephyperx.command_line import OneLineParser, add_monitoring_arguments
from deephyperx.plugins import Plugins, TileSetCatalogue

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="main.py segment", help_hint="python main.py segment --help", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    tiles = parser.add_argument_group("tile set (a catalogue name, a .yaml declaration, or files)")
    tiles.add_argument("--dataset", help="tile set name (see `main.py segment list`) or a tile-set .yaml file")
    tiles.add_argument("--folder", help="data folder (default: $DEEPHYPERX_DATA or Datasets)")
    tiles.add_argument("--tileset_seed", type=int, default=0,
                       help="seed of generated tile sets and random splits (SyntheticAerial, IndianPinesTwoSensors)")
    tiles.add_argument("--images", nargs="+", help="custom tile set: one image per tile")
    tiles.add_argument("--labels", nargs="+", help="custom tile set: one label raster per image")
    tiles.add_argument("--eroded_labels", nargs="+", help="custom tile set: eroded ground truth per image")
    tiles.add_argument("--extra", nargs="+", action="extend", metavar="SOURCE=FILES",
                       help="custom tile set: another co-registered source, e.g. dsm=a.tif,b.tif")
    tiles.add_argument("--class_names", nargs="+", help="custom tile set: class names")
    tiles.add_argument("--label_values", nargs="+", type=int, help="custom tile set: label value of each class")
    tiles.add_argument("--ignored_labels", nargs="+", type=int, help="custom tile set: ignored values (default 0)")
    tiles.add_argument("--train_tiles", nargs="+", help="custom tile set: training tiles (by image file stem)")
    tiles.add_argument("--test_tiles", nargs="+", help="custom tile set: test tiles (by image file stem)")
    tiles.add_argument("--name", help="custom tile set: its name (default: the first image's stem)")
    model = parser.add_argument_group("model and training (unset flags keep the model's paper defaults)")
    model.add_argument("--model", help="segmentation model (see `main.py segment list`)")
    model.add_argument("--sources", nargs="+", help="sources the model reads, in order (default: the model's)")
    model.add_argument("--model_args", nargs="+", metavar="KEY=VALUE", help="model options, e.g. width=0.25")
    model.add_argument("--epoch", type=int)
    model.add_argument("--epoch_samples", type=int, help="random crops per epoch")
    model.add_argument("--batch_size", type=int)
    model.add_argument("--lr", type=float)
    model.add_argument("--optimizer")
    model.add_argument("--weight_decay", type=float)
    model.add_argument("--crop", type=int, help="crop side in pixels (a multiple of 32); also the test window")
    model.add_argument("--stride", type=int, help="sliding-window stride at test time (default: half the crop)")
    model.add_argument("--no_flip", action="store_true", help="no random flips and rotations of crops")
    model.add_argument("--class_balancing", action="store_true", default=None, help="inverse median frequency weights")
    model.add_argument("--focus_class", metavar="CLASS",
                       help="centre a share of the training crops on pixels of this rare class (e.g. car)")
    model.add_argument("--focus_fraction", type=float, help="share of training crops centred on --focus_class (default 0.5)")
    model.add_argument("--normalization", help="standard (per channel, fitted on training regions) or none")
    model.add_argument("--val_fraction", type=float, help="share of each training region's rows kept for validation")
    model.add_argument("--restore", help="checkpoint (model.pt) to start from; with --epoch 0 it only evaluates")
    run = parser.add_argument_group("run")
    run.add_argument("--runs", type=int)
    run.add_argument("--seed", type=int)
    run.add_argument("--reuse_finished", action="store_true", default=None,
                     help="read back seeds already finished in the experiment's folder instead of running them again")
    run.add_argument("--out", help="output folder (default outputs/segment)")
    run.add_argument("--cuda", type=int, help="GPU index; -1 (default) for the CPU")
    run.add_argument("--predict_train", action="store_true", default=None, help="also score the training regions")
    run.add_argument("--detect", metavar="CLASS", help="extract the objects of this class (e.g. car) and score them")
    run.add_argument("--detect_min_pixels", type=int, help="drop objects smaller than this (default 1)")
    run.add_argument("--detect_iou", type=float, help="box IoU of a match (default 0.5)")
    run.add_argument("--config", help="YAML file of settings (flags given here override it)")
    add_monitoring_arguments(parser)
    return parser


#: Flags copied into the configuration under the same name.
RUN_KEYS = ("epoch", "epoch_samples", "batch_size", "lr", "optimizer", "weight_decay", "stride", "class_balancing",
            "normalization", "val_fraction", "restore", "runs", "seed", "out", "cuda", "predict_train", "detect",
            "detect_min_pixels", "detect_iou", "focus_class", "focus_fraction", "reuse_finished")

#: Flag names accepted in a --config file for the configuration keys they set.
FILE_ALIASES = {"crop": "patch_size", "sources": "inputs"}

CUSTOM_KEYS = ("images", "labels", "eroded_labels", "extra", "class_names", "label_values", "ignored_labels",
               "train_tiles", "test_tiles", "name")


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


def parse_extras(items: Optional[Sequence[str]]) -> dict[str, list[str]]:
    """``["dsm=a.tif,b.tif"]`` -> ``{"dsm": ["a.tif", "b.tif"]}``."""
    extras: dict[str, list[str]] = {}
    for item in items or []:
        source, sep, files = item.partition("=")
        if not sep or not source or not files:
            raise UserError(f"--extra {item!r}: write SOURCE=FILE1,FILE2,... (one file per image), e.g. dsm=a.tif,b.tif")
        if source in extras:
            raise UserError(f"--extra names source '{source}' twice; give its files once, comma-separated")
        extras[source] = [f for f in files.split(",") if f]
    return extras


def cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The configuration keys the flags set (None where unset)."""
    settings = {k: getattr(args, k) for k in RUN_KEYS}
    settings["patch_size"] = args.crop
    settings["inputs"] = list(args.sources) if args.sources else None
    settings["model_args"] = parse_model_args(args.model_args)
    settings["flip_augmentation"] = False if args.no_flip else None
    custom = {k: getattr(args, k) for k in CUSTOM_KEYS if getattr(args, k) is not None}
    settings["custom"] = custom or None
    return settings


def load_tileset(args: argparse.Namespace, file_config: dict[str, Any], folder: str, tilesets: TileSetCatalogue) -> Any:
    """The tile set named by ``--dataset`` (catalogue or .yaml) or declared by ``--images ...``."""
    if args.images:
        if args.dataset:
            raise UserError("give either --dataset or --images (a custom tile set), not both")
        return tilesets.custom(
            args.images, args.labels, parse_extras(args.extra), name=args.name, eroded_labels=args.eroded_labels,
            class_names=args.class_names, label_values=args.label_values,
            ignored_labels=tuple(args.ignored_labels) if args.ignored_labels is not None else (0,),
            train=args.train_tiles, test=args.test_tiles)
    stray = [f"--{k}" for k in CUSTOM_KEYS if k != "images" and getattr(args, k) is not None]
    if stray:
        raise UserError(f"{stray[0]} describes a custom tile set; give --images too (or drop it)")
    name = args.dataset or file_config.get("dataset")
    if not name:
        raise UserError("no tile set given; use --dataset NAME (see `main.py segment list`) or --images ... --labels ...")
    return tilesets.resolve(name, folder, seed=args.tileset_seed)


def print_listing(tilesets: TileSetCatalogue) -> None:
    """Segmentation models and the tile-set catalogue."""
    from deephyperx.registry import get_spec, list_models

    print("segmentation models:")
    for name in list_models("segmentation"):
        spec = get_spec(name)
        inputs = ", ".join(spec.training_defaults()["inputs"])
        print(f"  {name:10s} reads {inputs:12s} {spec.description[:80]}")
    print("tile sets:")
    for name in tilesets.names():
        print(f"  {name}")


def report_line(result: dict[str, Any]) -> None:
    """Print the experiment's mean ± std scores and where the reports are."""
    from deephyperx.metrics import format_percent

    def stat(entry: Optional[dict], key: str) -> str:
        value = (entry or {}).get(key) or {}
        return format_percent(value.get("mean"), value.get("std"))

    eroded = result.get("eroded")
    line = (f"{result['model']} on {result['scene']}, {result['n_runs']} run(s): OA {stat(result, 'overall_accuracy')}"
            f"  kappa {stat(result, 'kappa')}  mean F1 {stat(result, 'mean_f1')}  mIoU {stat(result, 'mean_iou')}")
    if eroded:
        line += f"  | eroded GT: OA {stat(eroded, 'overall_accuracy')}  mean F1 {stat(eroded, 'mean_f1')}"
    print(line)
    detection = result.get("detection")
    if detection:
        print(f"objects of class {detection['class']}: precision {stat(detection, 'precision')}  "
              f"recall {stat(detection, 'recall')}  F1 {stat(detection, 'f1')}")
    print(f"reports: {result['folder']}")


def command(argv: list[str], plugins: Plugins) -> int:
    """``main.py segment ...`` (``segment detect ...`` and ``segment list`` are sub-commands)."""
    if argv and argv[0] == "detect":
        from deephyperx.objects import detect_command

        return detect_command(argv[1:])
    if argv and argv[0] == "list":
        print_listing(plugins.tilesets)
        return 0
    from deephyperx.command_line import monitor_factory, redact_secrets
    from deephyperx.config import load_yaml_config
    from deephyperx.disk import check_writable_folder
    from deephyperx.registry import chosen_model
    from deephyperx.segmentation_run import resolve_segmentation_config, run_segmentation_experiment

    args = build_parser().parse_args(argv)
    file_config = load_yaml_config(args.config)
    spec = chosen_model(args.model or file_config.get("model"), ("segmentation",), "main.py segment")
    settings = cli_settings(args)
    folder = plugins.folder(args.folder, file_config.get("folder"))
    settings["folder"] = folder
    file_layer = {FILE_ALIASES.get(k, k): v for k, v in file_config.items() if k != "model"}
    config = resolve_segmentation_config(spec, file_layer, settings)
    check_writable_folder(config["out"])
    tileset = load_tileset(args, file_config, folder, plugins.tilesets)
    config["dataset"] = tileset.name
    monitors = monitor_factory(args)
    shown = redact_secrets(argv)
    result = run_segmentation_experiment(tileset, config, "python main.py segment " + " ".join(
        shlex.quote(a) for a in shown), monitors)
    report_line(result)
    return 0
