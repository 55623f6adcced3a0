"""Names that become paths stay inside the output folder.

A scene's, tile set's, catalogue's or region's name may come from a file someone else wrote (a
scene declaration's ``name:``, an image file's stem). Before such a name becomes part of a file or
folder name it is checked here: no path separators, no NUL or control characters, no ``.`` or
``..`` and no leading dot (hidden files and the engine's own ``.seedN.old`` style names), and at
most :data:`MAX_NAME_BYTES` bytes so that the folder name, with what is added to it, stays under
the file system's 255-byte limit. Each joined path is checked once more to lie under its root.
"""
from __future__ import annotations

import hashlib
import os
import unicodedata
from pathlib import Path
from typing import Sequence, Union

from deephyperx.errors import UserError

PathLike = Union[str, Path]

#: Longest name (UTF-8 bytes) that may become part of a file or folder name.
MAX_NAME_BYTES = 96


def name_problem(name: str) -> str | None:
    """Why ``name`` cannot be part of a file or folder name, or None if it can."""
    if not name:
        return "it is empty"
    if "/" in name or "\\" in name:
        return "it holds a path separator"
    if name.startswith("."):
        return "it starts with a dot"
    if any(unicodedata.category(ch) in ("Cc", "Cs") for ch in name):
        return "it holds a control character"
    if name != name.strip():
        return "it starts or ends with white space"
    if len(name.encode("utf-8", "surrogatepass")) > MAX_NAME_BYTES:
        return f"it is longer than {MAX_NAME_BYTES} bytes"
    return None


def check_name(name: object, what: str, hint: str = "give a plain name") -> str:
    """``name`` as a string if it can be part of a file or folder name, else a one-line
    :class:`UserError` naming ``what`` (e.g. "scene name") and the value."""
    text = str(name)
    problem = name_problem(text)
    if problem is not None:
        shown = text if len(text) <= 60 else text[:57] + "..."
        raise UserError(f"{what} {shown!r} cannot name a file or folder ({problem}); {hint} "
                        f"(letters, digits, spaces, '-', '_', '.'; at most {MAX_NAME_BYTES} bytes)")
    return text


def file_stem(name: str) -> str:
    """A file-name-safe stem for an internal name (a region, a class): characters other than letters,
    digits, ``-``, ``_`` and ``.`` become ``_``; no leading dot; a long name is cut and given a short
    hash of the whole so that two long names stay distinct."""
    stem = "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in name).lstrip(".") or "_"
    if len(stem.encode()) > MAX_NAME_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        stem = stem.encode()[:MAX_NAME_BYTES - 9].decode("utf-8", "ignore") + "_" + digest
    return stem


def inside(root: PathLike, path: PathLike) -> Path:
    """``path``, after checking that it lies under ``root`` once both are made absolute and
    symbolic links are resolved; a :class:`UserError` otherwise."""
    root_real = Path(os.path.realpath(root))
    path_real = Path(os.path.realpath(path))
    if path_real != root_real and root_real not in path_real.parents:
        raise UserError(f"{path} would lie outside the output folder {root}; choose names without '..' "
                        "or absolute paths")
    return Path(path)


def experiment_path(out: PathLike, parts: Sequence[tuple[object, str]], identity: str) -> Path:
    """``<out>/<part>_<part>_..._<identity>``, each part ``(value, what)`` checked by
    :func:`check_name`, the result checked to lie under ``out``."""
    names = [check_name(value, what) for value, what in parts]
    return inside(out, Path(out) / "_".join([*names, identity]))
