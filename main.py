"""deephyperx command line: train and evaluate a model on a scene by name.

    python main.py --model SVM_grid --dataset IndianPines --training_sample 0.1 --runs 5
    python main.py list                       # models and scenes
    python main.py --download IndianPines     # fetch a scene
    python main.py visdom --env_path runs/    # a visdom server on 127.0.0.1 for live monitoring

DeepHyperX's flag names keep working. Bad input prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import math
import os
import shlex
import sys
from pathlib import Path
from typing import Any, Optional, Sequence

if __package__:  # installed (the `deephyperx` command): the catalogues sit beside this module in
    from . import aerial_datasets, datasets  # deephyperx_app, the zoo is deephyperx.models
    from deephyperx import models
else:  # a source tree (python main.py): all of them beside main.py
    import aerial_datasets
    import datasets
    import models
from deephyperx.bench import BenchSettings
from deephyperx.config import ClassifySettings, load_yaml_config, resolve_config
from deephyperx.disk import check_writable_folder
from deephyperx import distributed
from deephyperx.errors import UserError
from deephyperx.metrics import format_stat
from deephyperx.plugins import Plugins
from deephyperx.command_line import OneLineParser, monitor_factory, redact_secrets
from deephyperx.runner import check_patch_fits, run_experiment
from deephyperx.registry import chosen_model, get_spec, list_models, require_family
from deephyperx.settings import add_flags, defaults, given
from deephyperx.scene import Scene

DEFAULT_FOLDER = os.environ.get("DEEPHYPERX_DATA", "Datasets")
#: The modules whose import registers the model zoo (imported above; Dask workers import them too).
ZOO_MODULES = (models.__name__,)


def plugins() -> Plugins:
    """What this command line plugs into the engine's commands: the scene catalogue (``datasets``), the
    aerial tile sets (``aerial_datasets``), the default data folder and the zoo's modules."""
    return Plugins(scenes=datasets.SCENES, tilesets=aerial_datasets.TILESETS, default_folder=DEFAULT_FOLDER,
                   zoo_modules=ZOO_MODULES)


#: Every sub-command of ``main.py`` with its one-line description: the top-level ``--help`` lists them.
COMMANDS = {
    "list": "the models, scenes and tile sets (--markdown: the model table for docs)",
    "bench": "models x scenes under one protocol, in one comparison table (bench.md/.csv/.json/.png)",
    "generate": "train a spectrum generator; write synthetic spectra of each class and a realism report",
    "segment": "train and evaluate a segmentation model on aerial tiles (segment detect: objects of a map)",
    "map": "map a scene of any size with a trained model, tile by tile (or on Dask)",
    "catalogue": "train one classifier on a catalogue (YAML) of many scene files, scored scene by scene",
    "visdom": "start a local visdom server (web assets offline) for live monitoring",
}


def commands_help() -> str:
    """The sub-commands block of the top-level help."""
    width = max(len(name) for name in COMMANDS)
    lines = [f"  {name:{width}s}  {text}" for name, text in COMMANDS.items()]
    return ("commands (%(prog)s COMMAND --help: each one's flags):\n" + "\n".join(lines)
            + "\n\nwithout a command, main.py trains and evaluates a pixel classifier with the flags below.")


def build_parser() -> argparse.ArgumentParser:
    """The flags of ``main.py``, derived from :class:`~deephyperx.config.ClassifySettings`; its help
    lists the sub-commands first."""
    parser = OneLineParser(description=__doc__.rstrip() + "\n\n" + commands_help(),
                           usage="%(prog)s [COMMAND] [flags]  (COMMAND: " + ", ".join(COMMANDS) + ")",
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    add_flags(parser, ClassifySettings)
    return parser


def cli_settings(args: argparse.Namespace) -> dict[str, Any]:
    """Flags the user gave (None for those left unset)."""
    settings = given(args, ClassifySettings)
    if args.pca_whiten and args.pca is None:
        raise UserError("--pca_whiten needs --pca N (the number of components to keep)")
    if args.pca is not None:
        settings["reduction"] = {"name": "pca", "components": args.pca, **({"whiten": True} if args.pca_whiten else {})}
    sample = settings["training_sample"]
    if sample is not None and not math.isfinite(sample):
        raise UserError(f"--training_sample {sample}: give a fraction in (0, 1) or a number of pixels per class")
    if sample is not None and sample > 1:
        if sample != int(sample):
            raise UserError(f"--training_sample {sample}: above 1 it counts pixels per class and must be whole")
        settings["training_sample"] = int(sample)
    return settings


def load_scene(args: argparse.Namespace, file_config: dict[str, Any]) -> tuple[Scene, Optional[str]]:
    """The scene named by the flags (a custom cube + labels, a declaration file, or a catalogue
    name), and a notice to print when the embedded scene stands in for missing data."""
    folder = args.folder or file_config.get("folder") or DEFAULT_FOLDER
    if args.cube or args.gt:
        if not (args.cube and args.gt):
            raise UserError("--cube and --gt go together: give both the cube and the label raster")
        return datasets.load_custom_scene(args.cube, args.gt, cube_key=args.cube_key, labels_key=args.gt_key), None
    name = args.dataset or file_config.get("dataset")
    notice = None
    if not name:
        name = datasets.find_default_scene(folder)
        if name == "Synthetic":
            notice = (f"no IndianPines files under {folder}: using the embedded Synthetic scene "
                      "(give --dataset NAME --folder DIR for real data)")
    return datasets.resolve_scene(name, folder), notice


def print_listing(markdown: bool = False) -> None:
    """The registered models, the scene catalogue and the aerial tile sets (``list --markdown``:
    the model table for docs)."""
    if markdown:
        print("| model | family | patch / crop | epochs | batch | optimiser | lr | supervision | output | inputs | reference |")
        print("|---|---|---|---|---|---|---|---|---|---|---|")
        for name in list_models():
            spec = get_spec(name)
            d = spec.training_defaults()
            trained = spec.family != "sklearn"
            cells = [d["patch_size"] if spec.family != "generator" else "-",
                     _epochs_cell(d) if trained else "-", d["batch_size"] if trained else "-",
                     d["optimizer"] if trained else "-", d["lr"] if trained else "-",
                     d["supervision"] if trained else "-", d["output"] if spec.family != "generator" else "spectra",
                     " + ".join(d["inputs"])]
            print(f"| `{name}` | {spec.family} | " + " | ".join(str(c) for c in cells) + f" | {spec.citation} |")
        return
    print("models:")
    for name in list_models():
        spec = get_spec(name)
        text = spec.description if len(spec.description) <= 90 else spec.description[:89] + "…"
        print(f"  {name:10s} {spec.family:12s} {text}")
    print("scenes (main.py, main.py generate):")
    for name in datasets.list_scenes():
        print(f"  {name}")
    print("tile sets (main.py segment):")
    for name in aerial_datasets.list_tilesets():
        print(f"  {name}")


def _epochs_cell(defaults: dict[str, Any]) -> str:
    """Epochs, with the samples per epoch when an epoch is a sample count."""
    if defaults.get("epoch_samples"):
        return f"{defaults['epoch']} x {defaults['epoch_samples']:,} samples"
    return str(defaults["epoch"])


def build_bench_parser() -> argparse.ArgumentParser:
    """The flags of ``main.py bench``, derived from :class:`~deephyperx.bench.BenchSettings`."""
    parser = OneLineParser(prog="main.py bench", help_hint="python main.py bench --help",
                           description="Run models x scenes under one protocol and write one comparison table "
                                       "(bench.md/.csv/.json/.png). Interrupted? Run it again.")
    add_flags(parser, BenchSettings)
    return parser


def parse_runs_for(items: Optional[Sequence[str]], models: Sequence[str]) -> dict[str, int]:
    """``["SSRN=1", "HybridSN=2"]`` -> ``{"SSRN": 1, "HybridSN": 2}``; each name must be one of ``models``."""
    runs: dict[str, int] = {}
    for item in items or []:
        name, sep, count = item.partition("=")
        if not sep or not count.isdigit() or int(count) < 1:
            raise UserError(f"--runs_for {item!r}: write MODEL=N with N a whole number of at least 1, e.g. SSRN=1")
        if name not in models:
            raise UserError(f"--runs_for {item!r}: {name} is not among --models ({', '.join(models)})")
        runs[name] = int(count)
    return runs


def run_bench_command(argv: Sequence[str]) -> int:
    """``python main.py bench --models ... --datasets ...``."""
    from deephyperx.bench import run_bench

    args = build_bench_parser().parse_args(argv)
    file_config = load_yaml_config(args.config)
    folder = args.folder or file_config.get("folder") or DEFAULT_FOLDER
    specs = [get_spec(name) for name in args.models]  # unknown names fail before any work
    for spec in specs:
        require_family(spec, ("neural", "sklearn"), "main.py bench")
    for name in args.datasets:
        if not name.lower().endswith((".yaml", ".yml")):
            datasets.get_declaration(name)
    out = args.out or defaults(BenchSettings)["out"]
    shared = given(args, BenchSettings)
    sample = shared["training_sample"]
    if sample is not None and math.isfinite(sample) and sample > 1:
        shared["training_sample"] = int(sample)
    shared.update(folder=folder, out=out)
    check_writable_folder(out)
    runs_for = parse_runs_for(args.runs_for, args.models)
    for spec in specs:  # check every configuration before the first run
        resolve_config(spec, file_config, shared, {"runs": runs_for.get(spec.name)})

    def make_config(model: str, scene: Scene) -> dict[str, Any]:
        config = resolve_config(get_spec(model), {k: v for k, v in file_config.items() if k != "model"}, shared,
                                {"runs": runs_for.get(model)})
        config["dataset"] = scene.name
        if config["patch_size"] > min(scene.shape):
            raise UserError(f"model {model}: patch_size {config['patch_size']} is larger than scene {scene.name}")
        return config

    command = "python main.py " + " ".join(shlex.quote(a) for a in ["bench", *argv])
    rows = run_bench(args.datasets, args.models, lambda name: datasets.resolve_scene(name, folder), make_config,
                     Path(out), command, finished_only=bool(args.finished_only))
    if distributed.is_main():
        for row in rows:
            report_line({**row, "n_runs": row["runs"]})
        print(f"table: {Path(out) / 'bench.md'}")
    return 0


#: Sub-commands served by a module's ``command(argv, plugins) -> int`` (imported only when used).
MODULE_COMMANDS = {
    "visdom": "deephyperx.visdom_server",  # start a local visdom server with its assets offline
    "generate": "deephyperx.generation_cli",  # train a spectrum generator, write spectra and a realism report
    "segment": "deephyperx.segmentation_cli",  # train and evaluate a segmentation model on aerial tiles
    "map": "deephyperx.mapping_cli",  # map a scene of any size from a checkpoint, tile by tile (or on Dask)
    "catalogue": "deephyperx.catalogue_cli",  # train one classifier on a catalogue of many scene files
}

#: Sub-commands that run in one process only (``main.py`` and ``bench`` run under torchrun).
SINGLE_PROCESS_COMMANDS = ("visdom", "generate", "segment", "map", "catalogue")


def run(argv: Sequence[str]) -> int:
    if argv and argv[0] == "bench":
        return run_bench_command(argv[1:])
    if argv and argv[0] == "list":
        listing = OneLineParser(prog="main.py list", description="The models, scenes and tile sets.",
                                help_hint="python main.py list --help")
        listing.add_argument("--markdown", action="store_true", help="the model table for docs, in Markdown")
        print_listing(markdown=listing.parse_args(argv[1:]).markdown)
        return 0
    if argv and argv[0] in SINGLE_PROCESS_COMMANDS and distributed.launched():
        raise UserError(f"main.py {argv[0]} runs in one process; launch it without torchrun "
                        "(torchrun runs main.py and main.py bench)")
    if argv and argv[0] in MODULE_COMMANDS:
        import importlib

        return importlib.import_module(MODULE_COMMANDS[argv[0]]).command(list(argv[1:]), plugins())
    if argv and not argv[0].startswith("-"):
        raise UserError(f"unknown command '{argv[0]}'; the commands are {', '.join(COMMANDS)} "
                        "(see python main.py --help), and main.py's own flags start with --")
    args = build_parser().parse_args(argv)
    if args.download:
        folder = args.folder or DEFAULT_FOLDER
        check_writable_folder(folder, "--folder")
        for name in args.download:
            datasets.download_scene(name, folder, mirror=args.mirror)
        return 0
    file_config = load_yaml_config(args.config)
    spec = chosen_model(args.model or file_config.get("model"), ("neural", "sklearn"), "main.py")
    settings = cli_settings(args)
    settings["folder"] = args.folder or file_config.get("folder") or DEFAULT_FOLDER
    config = resolve_config(spec, {k: v for k, v in file_config.items() if k != "model"}, settings)
    check_writable_folder(config["out"])
    scene, notice = load_scene(args, file_config)
    config["dataset"] = scene.name
    check_patch_fits(config, spec.family, scene)
    if notice and distributed.is_main():
        print(notice, file=sys.stderr)
    monitors = monitor_factory(args)
    command = "python main.py " + " ".join(shlex.quote(a) for a in redact_secrets(argv))
    result = run_experiment(scene, config, command, monitors)
    if distributed.is_main():  # under torchrun every rank returns the metrics; one prints them
        report_line(result)
    return 0


def report_line(result: dict[str, Any]) -> None:
    """Print the experiment's mean ± std metrics and where the reports are."""
    n, diverged = result["n_runs"], result.get("diverged") or []
    lost = f"; diverged, left out: seed {', '.join(str(d['seed']) for d in diverged)}" if diverged else ""
    if result["overall_accuracy"] is None:
        print(f"{result['model']} on {result['scene']}: no run finished{lost}")
        return
    print(f"{result['model']} on {result['scene']}, {n} run(s): "
          + "  ".join(f"{label} {format_stat(result[key])}"
                      for label, key in (("OA", "overall_accuracy"), ("AA", "average_accuracy"), ("kappa", "kappa")))
          + lost)
    print(f"reports: {result['folder']}")


def console() -> None:
    """The ``deephyperx`` command of an installed package (``python main.py`` in a source tree)."""
    distributed.exit_process(main())


def main(argv: Optional[Sequence[str]] = None) -> int:
    from deephyperx.command_line import run_with_exit_status

    return run_with_exit_status(run, argv)


if __name__ == "__main__":
    console()  # sys.exit, or a clean end of a torchrun rank
