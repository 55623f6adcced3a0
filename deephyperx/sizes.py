"""Sizes in bytes, read and written the one way every flag uses (``--memory_budget``, ``--cache_bytes``).

``k``, ``M``, ``G``, ``T`` (with or without ``B``) are powers of 1000 and ``KiB``, ``MiB``, ``GiB``,
``TiB`` powers of 1024, as Dask and ``df -H`` read them: ``2G``, ``2GB``, ``2GiB``, ``2048M`` and
``2048 MB`` are all sizes; a plain number is bytes.
"""
from __future__ import annotations

import math
import re
from typing import Optional, Union

from deephyperx.errors import UserError

_UNITS = {"": 1, "b": 1}
for _power, _letter in enumerate("kmgt", start=1):
    _UNITS.update({_letter: 1000 ** _power, f"{_letter}b": 1000 ** _power, f"{_letter}ib": 1024 ** _power})

_SIZE = re.compile(r"\s*([0-9]*\.?[0-9]+(?:[eE][0-9]+)?)\s*([a-zA-Z]*)\s*")


def parse_size(text: Union[str, int], what: str = "size") -> int:
    """Bytes in ``text`` (``"2GB"`` -> 2000000000, ``"1.5GiB"`` -> 1610612736, ``4096`` -> 4096); a
    one-line :class:`UserError` naming ``what`` (e.g. ``--memory_budget``) for anything else or for a
    size below one byte."""
    if isinstance(text, int) and not isinstance(text, bool):
        value = float(text)
    else:
        match = _SIZE.fullmatch(str(text)) if not isinstance(text, bool) else None
        unit = match.group(2).lower() if match else None
        if unit not in _UNITS:
            raise UserError(f"{what} {text!r} is not a size; write it like 2GB, 500MB, 1.5GiB or 2048M")
        value = float(match.group(1)) * _UNITS[unit]
    if not math.isfinite(value) or value < 1:
        raise UserError(f"{what} {text!r} must be a positive size, e.g. 2GB or 500MB")
    return int(value)


def format_size(n: Optional[float]) -> str:
    """``n`` bytes in the largest decimal unit that keeps it at least 1: ``1234567`` -> ``1.2 MB``."""
    if n is None:
        return "?"
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{int(n)} B"


def rounded_up(n: float) -> str:
    """``n`` bytes rounded up to whole kB below a megabyte, else to whole MB, so that the size given
    (and read back by :func:`parse_size`) is never less than ``n``."""
    if n < 1e6:
        return f"{math.ceil(n / 1e3)} kB"
    return f"{math.ceil(n / 1e6)} MB"
