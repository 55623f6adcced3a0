"""Reading the YAML files a user gives (settings, scene, tile-set and catalogue declarations).

``yaml.safe_load`` builds plain data only (no ``!!python/object`` tags), so a file from someone
else runs no code. Every problem a person can fix (missing, a folder, unreadable, not UTF-8, not
valid YAML, not a mapping) is one :class:`UserError` line naming the file and what it should be.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Union

import yaml

from deephyperx.errors import UserError

PathLike = Union[str, Path]


def read_text_file(path: PathLike, what: str) -> str:
    """The UTF-8 text of ``path`` (``what`` names it in errors, e.g. "config file")."""
    path = Path(path).expanduser()
    if path.is_dir():
        raise UserError(f"{what} {path} is a folder; give the path of a YAML file")
    if not path.is_file():
        raise UserError(f"{what} {path} does not exist; check the path")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as error:
        raise UserError(f"{what} {path} is not UTF-8 text (byte {error.start}); save it as UTF-8 YAML") from None
    except OSError as error:
        raise UserError(f"{what} {path} cannot be read ({error.strerror}); check its permissions") from None


def read_yaml(path: PathLike, what: str) -> Any:
    """The plain data of the YAML file ``path`` (None for an empty file)."""
    text = read_text_file(path, what)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise UserError(f"{what} {path} is not valid YAML ({detail[:200]}); fix the file") from None


def read_yaml_mapping(path: PathLike, what: str, expected: str, empty_ok: bool = False) -> dict[str, Any]:
    """:func:`read_yaml` for a file that must hold a mapping; ``expected`` says what the mapping holds.
    An empty file is an empty mapping when ``empty_ok``."""
    data = read_yaml(path, what)
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise UserError(f"{what} {path} must hold a mapping ({expected}), not {type(data).__name__}")
    if not all(isinstance(key, str) for key in data):
        raise UserError(f"{what} {path}: every key must be a name, got {[k for k in data if not isinstance(k, str)][:3]}")
    return data
