"""``python main.py generate``: train a conditional spectrum generator on a scene's training
pixels, write synthetic spectra of each class to an HDF5 file and a realism report.

    python main.py generate --model cgan --dataset IndianPines --folder ../shared/data \\
        --training_sample 0.1 --samples_per_class 1000 --out synthetic.h5
    python main.py generate --model cvae --dataset IndianPines --restore RUN/model.pt --classes Woods Corn-notill

Flags keep main.py's names. Giving the same command again resumes an interrupted run; with
``--restore`` the checkpoint's generator is used as it is (add ``--epoch N`` to train it further).
Bad input prints one line and exits with status 2, before anything is written.

This module wires the catalogue (``datasets``) and the zoo (``models``) to the engine, as
main.py does, so it imports them when the command runs.
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Sequence

from deephyperx.config import load_yaml_config, resolve_config
from deephyperx.disk import check_writable_folder
from deephyperx.errors import UserError
from deephyperx.generation import GenerationRequest, generate
from deephyperx.command_line import OneLineParser, add_monitoring_arguments, add_split_arguments, monitor_factory
from deephyperx.plugins import Plugins, SceneCatalogue
from deephyperx.registry import chosen_model, list_models
from deephyperx.scene import Scene

DEFAULT_RUNS_DIR = "outputs/generate"

#: Flags passed on to the run configuration (main.py's names).
RUN_KEYS = ("epoch", "lr", "batch_size", "optimizer", "weight_decay", "training_sample", "sampling_mode",
            "train_set", "test_set", "guard", "block_size", "val_fraction", "seed", "restore", "cuda")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="main.py generate", help_hint="python main.py generate --help", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    scene = parser.add_argument_group("scene")
    scene.add_argument("--dataset", help="scene name (see `python main.py list`) or a scene declaration .yaml")
    scene.add_argument("--folder", help="folder holding the scenes (default: $DEEPHYPERX_DATA or Datasets)")
    scene.add_argument("--cube", help="custom scene: cube file (.mat .npy .h5 .hdr .tif)")
    scene.add_argument("--gt", help="custom scene: label raster file (0 = unlabelled)")
    scene.add_argument("--cube_key", help="variable/dataset name inside the cube file")
    scene.add_argument("--gt_key", help="variable/dataset name inside the label file")
    model = parser.add_argument_group("generator and training (unset flags keep the model's paper defaults)")
    model.add_argument("--model", help=f"generator: {', '.join(list_models('generator')) or 'cgan, cvae'}")
    model.add_argument("--epoch", type=int, help="epochs (an epoch is the model's epoch_samples spectra)")
    model.add_argument("--lr", type=float)
    model.add_argument("--batch_size", type=int)
    model.add_argument("--optimizer", help="sgd, adam, adamw, adagrad, adadelta or rmsprop")
    model.add_argument("--weight_decay", type=float)
    model.add_argument("--restore", help="generator checkpoint (model.pt of a generate run) to use instead of training")
    add_split_arguments(parser, "split (the generator learns from the training pixels only)")
    out = parser.add_argument_group("generation")
    out.add_argument("--samples_per_class", type=int, default=1000, help="spectra generated per class (default 1000)")
    out.add_argument("--classes", nargs="+", metavar="NAME", help="generate these classes only (default: all)")
    out.add_argument("--out", help="HDF5 file of the synthetic spectra (default: synthetic.h5 in the run folder)")
    out.add_argument("--no_report", action="store_true", help="skip the realism report")
    run = parser.add_argument_group("run")
    run.add_argument("--seed", type=int)
    run.add_argument("--cuda", type=int, help="GPU index; -1 (default) for the CPU")
    run.add_argument("--runs_dir", help=f"folder of the run folders (default {DEFAULT_RUNS_DIR})")
    run.add_argument("--config", help="YAML file of settings (flags given here override it)")
    add_monitoring_arguments(parser)
    return parser


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings the user gave (None for those left unset)."""
    settings = {k: getattr(args, k) for k in RUN_KEYS}
    sample = settings["training_sample"]
    if sample is not None and sample > 1:
        if sample != int(sample):
            raise UserError(f"--training_sample {sample}: above 1 it counts pixels per class and must be whole")
        settings["training_sample"] = int(sample)
    if args.restore and args.epoch is None:
        settings["epoch"] = 0  # a restored generator is used as it is
    return settings


def load_scene(args: argparse.Namespace, file_config: dict[str, Any], folder: str, scenes: SceneCatalogue) -> Scene:
    """The scene named by the flags: a custom cube + labels, a declaration file or a catalogue name."""
    if args.cube or args.gt:
        if not (args.cube and args.gt):
            raise UserError("--cube and --gt go together: give both the cube and the label raster")
        return scenes.load_custom(args.cube, args.gt, cube_key=args.cube_key, labels_key=args.gt_key)
    name = args.dataset or file_config.get("dataset")
    if not name:
        raise UserError("no --dataset given; name a scene (see `python main.py list`) or give --cube and --gt")
    return scenes.resolve(name, folder)


def command(argv: Sequence[str], plugins: Plugins) -> int:
    """Run ``main.py generate`` with ``argv`` (the arguments after ``generate``); 0 on success."""
    args = build_parser().parse_args(list(argv))
    file_config = load_yaml_config(args.config)
    spec = chosen_model(args.model or file_config.get("model"), ("generator",), "main.py generate")
    folder = plugins.folder(args.folder, file_config.get("folder"))
    settings = {**settings_of(args), "folder": folder, "out": args.runs_dir or DEFAULT_RUNS_DIR,
                "normalization": "minmax"}
    layers = {k: v for k, v in file_config.items() if k != "model"}
    config = resolve_config(spec, layers, settings)
    check_writable_folder(config["out"], "--runs_dir")
    if args.out:
        check_writable_folder(Path(args.out).parent, "--out")
    scene = load_scene(args, file_config, folder, plugins.scenes)
    config["dataset"] = scene.name
    request = GenerationRequest(samples_per_class=args.samples_per_class, class_names=args.classes,
                                out_file=Path(args.out) if args.out else None, report=not args.no_report)
    monitors = monitor_factory(args)
    generate(scene, config, request, extra_monitors=monitors(int(config["seed"])) if monitors else None)
    return 0
