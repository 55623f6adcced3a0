"""Plugins that installed packages declare as entry points (models, scene and tile-set catalogues).

A source tree imports its plugins under their own names (``models``, ``datasets``); installed, the
same files are ``deephyperx.models`` and ``deephyperx_app.datasets``. Loading an entry point whose
files a process already imported under another name returns that module instead of importing the
files a second time (which would register every model twice, from two copies of its class).
"""
from __future__ import annotations

import importlib.util
import sys
from importlib.metadata import EntryPoint, entry_points
from types import ModuleType
from typing import Any, Optional


def declared(group: str) -> list[EntryPoint]:
    """The entry points of ``group`` that installed packages declare."""
    return list(entry_points(group=group))


def imported_copy(module: str) -> Optional[ModuleType]:
    """The module already imported from the files of ``module`` under another name, if any."""
    if module in sys.modules:
        return sys.modules[module]
    try:
        spec = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    origin = getattr(spec, "origin", None)
    if not origin:
        return None
    return next((m for m in list(sys.modules.values()) if getattr(m, "__file__", None) == origin), None)


def load(entry: EntryPoint) -> Any:
    """What ``entry`` names (a module, or an attribute of one), reusing an imported copy of its files."""
    module = imported_copy(entry.module)
    if module is None:
        return entry.load()
    return getattr(module, entry.attr) if entry.attr else module
