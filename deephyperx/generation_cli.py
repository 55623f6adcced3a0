"""``python main.py generate``: train a conditional spectrum generator on a scene's training
pixels, write synthetic spectra of each class to an HDF5 file and a realism report.

    python main.py generate --model cgan --dataset IndianPines --folder ../shared/data \\
        --training_sample 0.1 --samples_per_class 1000 --out synthetic.h5
    python main.py generate --model cvae --dataset IndianPines --restore RUN/model.pt --classes Woods Corn-notill

Flags keep main.py's names. Giving the same command again resumes an interrupted run; with
``--restore`` the checkpoint's generator is used as it is (add ``--epoch N`` to train it further).
Bad input prints one line and exits with status 2, before anything is written.

The scene catalogue and the model zoo come from the command line's plugins
(:class:`~deephyperx.plugins.Plugins`): this module names no scene and no model.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from deephyperx.config import ClassifySettings, load_yaml_config, resolve_config
from deephyperx.disk import check_writable_folder
from deephyperx.errors import UserError
from deephyperx.generation import GenerationRequest, generate
from deephyperx.command_line import OneLineParser, monitor_factory
from deephyperx.plugins import Plugins, SceneCatalogue
from deephyperx.registry import chosen_model
from deephyperx.scene import Scene
from deephyperx.settings import GENERATION, add_flags, given, setting

@dataclass
class GenerateSettings(ClassifySettings):
    """The settings of ``main.py generate``: those of a classification run (the generator learns from the
    training pixels of the same split), the flags a generator takes, and what to generate."""

    SHOWN = {"dataset", "folder", "cube", "gt", "cube_key", "gt_key", "model", "epoch", "lr", "batch_size",
             "optimizer", "weight_decay", "restore", "training_sample", "sampling_mode", "train_set", "test_set",
             "guard", "block_size", "val_fraction", "seed", "cuda", "out", "config", "visdom", "no_visdom",
             "visdom_server", "visdom_port", "visdom_username", "visdom_password", "tensorboard",
             "samples_per_class", "classes", "spectra_out", "no_report"}
    DEFAULTS = {"out": "outputs/generate"}
    FLAGS = {"out": {"flag": "--runs_dir", "help": "folder of the run folders (default outputs/generate)"}}

    samples_per_class: int = setting(1000, group=GENERATION, config=False, flag_default=1000,
                                     help="spectra generated per class (default 1000)")
    classes: Optional[list] = setting(None, group=GENERATION, config=False, nargs="+", metavar="NAME",
                                      help="generate these classes only (default: all)")
    spectra_out: Optional[str] = setting(None, group=GENERATION, config=False, flag="--out",
                                         help="HDF5 file of the synthetic spectra (default: synthetic.h5 in the run "
                                              "folder)")
    no_report: Optional[bool] = setting(None, group=GENERATION, config=False, action="store_true",
                                        help="skip the realism report")


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``main.py generate``, derived from :class:`GenerateSettings`."""
    parser = OneLineParser(prog="main.py generate", help_hint="python main.py generate --help", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, GenerateSettings)
    return parser


def settings_of(args: argparse.Namespace) -> dict[str, Any]:
    """The run settings the user gave (None for those left unset)."""
    settings = given(args, GenerateSettings)
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
    settings = {**settings_of(args), "folder": folder, "normalization": "minmax"}
    layers = {k: v for k, v in file_config.items() if k != "model"}
    config = resolve_config(spec, layers, settings, declaration=GenerateSettings)
    check_writable_folder(config["out"], "--runs_dir")
    if args.spectra_out:
        check_writable_folder(Path(args.spectra_out).parent, "--out")
    scene = load_scene(args, file_config, folder, plugins.scenes)
    config["dataset"] = scene.name
    request = GenerationRequest(samples_per_class=args.samples_per_class, class_names=args.classes,
                                out_file=Path(args.spectra_out) if args.spectra_out else None,
                                report=not args.no_report)
    monitors = monitor_factory(args)
    generate(scene, config, request, extra_monitors=monitors(int(config["seed"])) if monitors else None)
    return 0
