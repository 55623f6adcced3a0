"""Typed settings: one declaration per task, from which everything else about a setting is derived.

A task's settings are a dataclass whose fields are declared with :func:`setting`: the field's name
is the key of the resolved configuration (and of a ``--config`` YAML file), its type annotation is
what a value must be, and its metadata says how it appears on the command line (flag, help, group),
whether it joins the experiment's identity (the hash that names its folder) and what it means. From
one declaration the engine derives:

* the command-line flags (:func:`add_flags`, DeepHyperX's names; each flag declared once, in the
  field that owns it, shared by the tasks that inherit the group);
* the flags a user gave (:func:`given`, None for those left unset, so that they never override);
* the YAML file's validation (:func:`check_keys`, :func:`check_types`): an unknown key is one line
  naming the closest valid key, a value of the wrong kind one line naming the key and the kind;
* the resolved configuration (:func:`layer_settings`: declared defaults < model's registered
  defaults < YAML < flags) and the keys left out of the experiment's identity (:func:`outside_identity`).

Shared groups live in :mod:`deephyperx.shared_settings`; a task composes its declaration from them
(dataclass inheritance), adds its own fields, and may give a shared setting another default in a
class attribute ``DEFAULTS`` (``--out`` is ``outputs/segment`` for ``main.py segment``). Settings that only steer the command line itself (``--config``, the monitors) are declared
the same way with ``config=False``: they get a flag but never enter the configuration.
"""
from __future__ import annotations

import argparse
import dataclasses
import difflib
import math
import typing
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Mapping, Optional, Sequence, Union

from deephyperx.errors import UserError

#: Where a setting's flag is shown in ``--help``, in this order.
GROUPS = ("scene", "tile set", "catalogue", "model and training (unset flags keep the model's paper defaults)",
          "split", "generation", "run", "monitoring (files and console are always on)")

SCENE, TILES, CATALOGUE, MODEL, SPLIT, GENERATION, RUN, MONITORING = GROUPS


def setting(default: Any = None, *, help: str = "", flag: Union[str, bool] = True, group: str = RUN,
            identity: bool = True, config: bool = True, parse: Optional[Callable[[Any], Any]] = None,
            flag_default: Any = None, **argparse_options: Any) -> Any:
    """Declare one setting (a dataclass field).

    ``flag``: True for ``--<name>``, a string for another flag name, False for a setting without a
    flag (YAML files and the engine set it). ``identity``: whether the value joins the experiment's
    identity (False for where and how a run runs, not what it computes). ``config``: False for flags
    that steer the command line and never enter the configuration. ``parse`` turns the flag's parsed
    value into the setting's (``KEY=VALUE`` words into a mapping). A flag left unset parses as
    ``flag_default`` (None: unset, so that it never overrides). Other keywords (``type``, ``nargs``,
    ``metavar``, ``action``, ``const``) go to argparse."""
    metadata = {"help": help, "flag": flag, "group": group, "identity": identity, "config": config,
                "parse": parse, "flag_default": flag_default, "argparse": argparse_options}
    if isinstance(default, (dict, list)):
        return dataclasses.field(default_factory=lambda: type(default)(default), metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class Declared:
    """One declared setting, read from a dataclass field (with its task's overrides)."""

    name: str
    hint: Any
    default: Any
    help: str
    flag: Optional[str]
    group: str
    identity: bool
    config: bool
    parse: Optional[Callable[[Any], Any]]
    flag_default: Any
    argparse: Mapping[str, Any]


def declared(declaration: type) -> list[Declared]:
    """The settings of ``declaration`` (a dataclass), the first base's first. A task may give a shared
    setting another default (class attribute ``DEFAULTS``: name -> value) or another flag (``FLAGS``:
    name -> ``{"flag": "--crop", "help": ..., argparse options}``, e.g. ``--crop`` for ``patch_size``),
    and may show only some flags (``SHOWN``: the names whose flags it takes; the others stay settings
    that a YAML file can give)."""
    hints = typing.get_type_hints(declaration)
    new_defaults, new_flags = getattr(declaration, "DEFAULTS", {}), getattr(declaration, "FLAGS", {})
    shown = getattr(declaration, "SHOWN", None)
    found = []
    for item in sorted(dataclasses.fields(declaration), key=lambda f: _declaring_rank(declaration, f.name)):
        meta = dict(item.metadata)
        default = item.default_factory() if item.default_factory is not dataclasses.MISSING else item.default
        default = new_defaults.get(item.name, default)
        if item.name in new_flags:
            other = dict(new_flags[item.name])
            meta.update({k: other.pop(k) for k in ("flag", "help", "parse", "flag_default") if k in other})
            meta["argparse"] = other
        flag = meta.get("flag", True)
        flag = f"--{item.name}" if flag is True else (flag or None)
        if shown is not None and item.name not in shown:
            flag = None
        found.append(Declared(item.name, hints[item.name], default, meta.get("help", ""), flag,
                              meta.get("group", RUN), meta.get("identity", True), meta.get("config", True),
                              meta.get("parse"), meta.get("flag_default"), meta.get("argparse", {})))
    return found


def _declaring_rank(declaration: type, name: str) -> int:
    """The position, in ``declaration``'s method resolution order, of the class declaring ``name``: the
    task's own settings come first in ``--help``, then its first base's, and so on."""
    for rank, cls in enumerate(declaration.__mro__):
        if name in cls.__dict__.get("__annotations__", {}):
            return rank
    return len(declaration.__mro__)


def defaults(declaration: type) -> dict[str, Any]:
    """The declared default of every configuration setting."""
    return {s.name: s.default for s in declared(declaration) if s.config}


def outside_identity(declaration: type) -> set[str]:
    """The configuration keys that do not join the experiment's identity (where and how a run runs)."""
    return {s.name for s in declared(declaration) if s.config and not s.identity}


# ----- the command line --------------------------------------------------------------------------------

def add_flags(parser: argparse.ArgumentParser, declaration: type, skip: Iterable[str] = ()) -> None:
    """Add the flag of every setting of ``declaration`` (except ``skip``) to ``parser``, grouped as
    declared; an unset flag parses as None."""
    skipped = set(skip)
    groups: dict[str, Any] = {}
    chosen = [s for s in declared(declaration) if s.flag and s.name not in skipped]
    for title in sorted({s.group for s in chosen}, key=lambda g: GROUPS.index(g) if g in GROUPS else len(GROUPS)):
        groups[title] = parser.add_argument_group(title)
    for item in chosen:
        options = {"default": item.flag_default, "help": item.help or None, **item.argparse}
        if "action" not in options and "type" not in options and "nargs" not in options:
            options["type"] = _argparse_type(item.hint)
        if "action" not in options and "metavar" not in options and item.flag.lstrip("-") != item.name:
            options["metavar"] = item.flag.lstrip("-").upper()
        groups[item.group].add_argument(item.flag, dest=item.name, **{k: v for k, v in options.items()
                                                                       if v is not None or k == "default"})


def _argparse_type(hint: Any) -> Any:
    """The converter argparse applies to a flag of type ``hint`` (Optional[int] -> int)."""
    base = _strip_optional(hint)
    return base if base in (int, float) else None


def given(args: argparse.Namespace, declaration: type, skip: Iterable[str] = ()) -> dict[str, Any]:
    """The configuration settings the flags set (None for those left unset)."""
    skipped = set(skip)
    values = {}
    for item in declared(declaration):
        if item.flag and item.config and item.name not in skipped:
            value = getattr(args, item.name)
            values[item.name] = item.parse(value) if item.parse is not None and value is not None else value
    return values


def yaml_aliases(declaration: type) -> dict[str, str]:
    """Flag names a YAML file may use for settings whose flag is named otherwise (``crop: 256`` for
    ``patch_size``), when the flag takes the setting's value as it is."""
    return {s.flag.lstrip("-"): s.name for s in declared(declaration)
            if s.flag and s.config and s.flag.lstrip("-") != s.name and "action" not in s.argparse}


# ----- values: keys and types ----------------------------------------------------------------------------

#: Names users of other tools write for a setting (for the "did you mean" of an unknown key).
COMMON_NAMES = {"learning_rate": "lr", "epochs": "epoch", "n_epochs": "epoch", "patch": "patch_size",
                "batch": "batch_size", "scene": "dataset", "data": "folder", "output": "out", "gpu": "cuda",
                "device": "cuda", "runs_dir": "out", "crop": "patch_size", "train_fraction": "training_sample"}


def check_keys(layer: Mapping[str, Any], known: Iterable[str], where: str = "setting") -> None:
    """Refuse an unknown key with one line naming the closest valid one."""
    known = sorted(set(known))
    for key in layer:
        if key not in known:
            close = [COMMON_NAMES[key]] if COMMON_NAMES.get(key) in known else \
                difflib.get_close_matches(str(key), known, n=1, cutoff=0.6)
            hint = f"did you mean '{close[0]}'? " if close else ""
            raise UserError(f"unknown {where} '{key}'; {hint}known settings: {', '.join(known)}")


def check_types(values: Mapping[str, Any], declaration: type) -> None:
    """Refuse a value that is not of its setting's declared type (None always passes: unset)."""
    for item in declared(declaration):
        value = values.get(item.name)
        if value is not None and item.config and not conforms(value, item.hint):
            raise UserError(f"--{item.name} {value!r} must be {describe(item.hint)}")


def conforms(value: Any, hint: Any) -> bool:
    """Whether ``value`` is of type ``hint`` (ints are floats too; bools are not numbers)."""
    hint = _strip_optional(hint)
    if hint is Any:
        return True
    origin = typing.get_origin(hint)
    if origin is Union:
        return any(conforms(value, option) for option in typing.get_args(hint))
    if origin in (list, tuple, Sequence):
        (item,) = typing.get_args(hint)[:1] or (Any,)
        return isinstance(value, (list, tuple)) and all(conforms(v, item) for v in value)
    if origin is dict or hint is dict:
        return isinstance(value, dict)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if isinstance(hint, type):
        return isinstance(value, hint)
    return True


def describe(hint: Any) -> str:
    """``hint`` in words, for error messages."""
    hint = _strip_optional(hint)
    names = {int: "a whole number", float: "a finite number", bool: "true or false", str: "a text", dict: "a mapping",
             list: "a list"}
    origin = typing.get_origin(hint)
    if origin is Union:
        return " or ".join(describe(option) for option in typing.get_args(hint))
    if origin in (list, tuple, Sequence):
        return f"a list of {describe(typing.get_args(hint)[0])}s" if typing.get_args(hint) else "a list"
    if origin is dict:
        return "a mapping"
    return names.get(hint, getattr(hint, "__name__", str(hint)))


def _strip_optional(hint: Any) -> Any:
    """``Optional[X]`` -> ``X``."""
    if typing.get_origin(hint) is Union:
        options = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(options) == 1:
            return options[0]
        return Union[tuple(options)]
    return hint


# ----- layering ----------------------------------------------------------------------------------------

def layer_settings(base: dict[str, Any], layers: Sequence[Mapping[str, Any]], known: Iterable[str],
                   model: str, model_options: Mapping[str, Any]) -> dict[str, Any]:
    """Apply ``layers`` (a YAML file, then the flags) onto ``base`` in order: None values are skipped,
    an unknown key is refused naming the closest known one, and ``model_args`` may only name the
    model's own options, each of the kind of its default."""
    known = set(known)
    config = dict(base)
    config["model_args"] = dict(config.get("model_args") or {})
    for layer in layers:
        check_keys(layer, known)
        for key, value in layer.items():
            if value is None:
                continue
            if key == "model_args":
                if not isinstance(value, dict):
                    raise UserError(f"model_args {value!r} must be a mapping of option: value")
                unknown = sorted(set(value) - set(model_options))
                if unknown:
                    raise UserError(f"model {model} has no option {unknown}; its options: "
                                    f"{sorted(model_options) or 'none'}")
                for option, given_value in value.items():
                    check_option_type(model, option, given_value, model_options[option])
                config["model_args"].update(value)
            else:
                config[key] = value
    return config


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
