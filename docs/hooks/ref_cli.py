"""The generated command-line page: every flag of ``main.py`` and of each sub-command, read from the
argparse parsers the commands themselves build (and, for flags derived from a settings declaration, the
declared default a flag left unset falls back to)."""
from __future__ import annotations

import argparse
import contextlib
import io
from typing import Any, Callable, Optional

from ref_markdown import MISSING, cell, code, table, text_block, value_text


def declared_defaults(declaration: Optional[type]) -> dict[str, Any]:
    """Setting name -> the default a flag left unset falls back to, for a settings declaration."""
    if declaration is None:
        return {}
    from deephyperx.settings import declared

    return {item.name: item.default for item in declared(declaration)}


def default_text(action: argparse.Action, fallback: dict[str, Any]) -> str:
    """What a flag means when it is not given: argparse's default, else the declared one (for training
    settings, the model's registered value, falling back to the engine's)."""
    from deephyperx.registry import ENGINE_DEFAULTS

    if action.required:
        return "required"
    if isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction)):
        return "off" if isinstance(action, argparse._StoreTrueAction) else "on"
    if action.default not in (None, argparse.SUPPRESS):
        return code(value_text(action.default))
    if action.dest in ENGINE_DEFAULTS:
        engine = ENGINE_DEFAULTS[action.dest]
        return "the model's, else unset" if engine is None else f"the model's, else {code(value_text(engine))}"
    if action.dest in fallback and fallback[action.dest] not in (None, {}, []):
        return code(value_text(fallback[action.dest]))
    return MISSING


def flag_text(action: argparse.Action) -> str:
    """The flag's spellings with its argument, e.g. ``--download NAME [NAME ...]``."""
    names = ", ".join(action.option_strings)
    if action.nargs == 0:
        return code(names)
    metavar = action.metavar or action.dest.upper()
    if isinstance(metavar, tuple):
        metavar = " ".join(metavar)
    if action.nargs in ("+", "*"):
        metavar = f"{metavar} [{metavar} ...]"
    elif action.nargs == "?":
        metavar = f"[{metavar}]"
    if action.choices:
        metavar = "{" + ",".join(str(c) for c in action.choices) + "}"
    return code(f"{names} {metavar}")


def flags_section(parser: argparse.ArgumentParser, declaration: Optional[type] = None) -> str:
    """The flags of ``parser`` as one table per argument group, in ``--help`` order."""
    fallback = declared_defaults(declaration)
    parts = []
    for group in parser._action_groups:
        actions = [a for a in group._group_actions if a.option_strings and not isinstance(a, argparse._HelpAction)]
        if not actions:
            continue
        parts.append(f"**{cell(group.title)}**\n")
        parts.append(table(["flag", "when not given", "what it does"],
                           [[flag_text(a), default_text(a, fallback),
                             cell((a.help or "").replace("%(default)s", value_text(a.default)))]
                            for a in actions]))
    return "\n".join(parts)


def help_output(run: Callable[[list[str]], Any], argv: list[str]) -> str:
    """What ``run(argv)`` prints for a ``--help`` (parsers built inside a command are read this way)."""
    buffer = io.StringIO()
    with contextlib.redirect_stdout(buffer), contextlib.suppress(SystemExit):
        run(argv)
    return buffer.getvalue()


def command_section(title: str, command: str, parser: argparse.ArgumentParser,
                    declaration: Optional[type] = None) -> str:
    """One command: its description (as ``--help`` shows it) and its flags."""
    lines = [f"## `{command}`\n", f"{title} `{command} --help` prints the same.\n"]
    if parser.description:  # as --help shows it (argparse fills in %(prog)s)
        lines.append(text_block(parser.description.replace("%(prog)s", parser.prog)))
    lines.append(flags_section(parser, declaration))
    return "\n".join(lines) + "\n"


def cli_page() -> str:
    """The whole page."""
    from deephyperx import catalogue_cli, generation_cli, mapping_cli, objects, segmentation_cli, visdom_server
    from deephyperx.bench import BenchSettings
    from deephyperx.catalogue_cli import CatalogueSettings
    from deephyperx.config import ClassifySettings
    from deephyperx.generation_cli import GenerateSettings
    from deephyperx.segmentation_run import SegmentSettings
    from deephyperx_app import main

    listing = help_output(main.run, ["list", "--help"])
    parts = [
        "# Command line\n",
        "Generated from the argparse parsers of `main.py` and its sub-commands each time the site is built "
        "(`deephyperx` is the same command once the package is installed: `deephyperx list` = "
        "`python main.py list`). \"When not given\" is what a flag left unset means: for the training "
        "settings, the value the model's registration fixes (see [Models](models.md)), else the engine's "
        "default shown; a dash means unset (the help text says what then happens). A YAML file given with "
        "`--config` sets the same keys, and flags override it. Bad input to any command prints one `error:` "
        "line and exits with status 2, writing nothing.\n",
        command_section("Train and evaluate a pixel classifier (neural or scikit-learn) on a scene.",
                        "python main.py", main.build_parser(), ClassifySettings),
        "## `python main.py list`\n",
        "The registered models, the scenes and the tile sets. Its `--help`:\n",
        text_block(listing),
        command_section("Models x scenes under one protocol, one comparison table.", "python main.py bench",
                        main.build_bench_parser(), BenchSettings),
        command_section("Train a spectrum generator, write synthetic spectra and a realism report.",
                        "python main.py generate", generation_cli.build_parser(), GenerateSettings),
        command_section("Train and evaluate a segmentation network on aerial tiles; `python main.py segment list` "
                        "lists the segmentation models and tile sets.", "python main.py segment",
                        segmentation_cli.build_parser(), SegmentSettings),
        command_section("Objects of one class from a predicted label map (segment-before-detect).",
                        "python main.py segment detect", objects.build_parser()),
        command_section("Map a scene of any size from a checkpoint, tile by tile (or on Dask).", "python main.py map",
                        mapping_cli.build_parser()),
        command_section("Train one classifier on a catalogue of many scene files.", "python main.py catalogue",
                        catalogue_cli.build_parser(), CatalogueSettings),
        command_section("A visdom server on 127.0.0.1 for watching runs live (see [Monitoring](../MONITORING.md)).",
                        "python main.py visdom", visdom_server._parser()),
    ]
    return "\n".join(parts)
