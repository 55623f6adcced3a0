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

from deephyperx.command_line import OneLineParser
from deephyperx.errors import UserError
from deephyperx.plugins import Plugins, TileSetCatalogue
from deephyperx.segmentation_run import SegmentSettings
from deephyperx.settings import add_flags, given, yaml_aliases

def build_parser() -> argparse.ArgumentParser:
    """The flags of ``main.py segment``, derived from :class:`~deephyperx.segmentation_run.SegmentSettings`."""
    parser = OneLineParser(prog="main.py segment", help_hint="python main.py segment --help", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, SegmentSettings)
    return parser


CUSTOM_KEYS = ("images", "labels", "eroded_labels", "extra", "class_names", "label_values", "ignored_labels",
               "train_tiles", "test_tiles", "name")


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
    settings = given(args, SegmentSettings)
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
    from deephyperx.metrics import format_stat

    def stat(entry: Optional[dict], key: str) -> str:
        return format_stat((entry or {}).get(key))

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
    aliases = yaml_aliases(SegmentSettings)
    file_layer = {aliases.get(k, k): v for k, v in file_config.items() if k != "model"}
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
