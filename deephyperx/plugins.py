"""What a composition root plugs into the engine's commands: the scene and tile-set catalogues, the
default data folder and the modules that register the model zoo.

The engine knows no particular scene, tile set or model. ``main.py`` (the composition root) builds one
:class:`Plugins` from the scene catalogue, the tile-set catalogue and the zoo and hands it to the commands
(``generate``, ``segment``, ``map``, ``catalogue``); a test or another front end can hand them other
catalogues. Models register themselves in :mod:`deephyperx.registry` when their modules are imported:
:func:`import_zoo` imports the modules a :class:`Plugins` names (Dask workers do the same).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence, Union

from deephyperx.scene import Scene

PathLike = Union[str, Path]


@dataclass(frozen=True)
class SceneCatalogue:
    """Named and custom scenes: ``resolve(name_or_yaml, folder)``, ``load_custom(cube, labels, cube_key=,
    labels_key=)``, ``names()``, and ``find_default(folder)`` (the scene to run when none is named)."""

    resolve: Callable[[str, PathLike], Scene]
    load_custom: Callable[..., Scene]
    names: Callable[[], list[str]]
    find_default: Callable[[PathLike], str]


@dataclass(frozen=True)
class TileSetCatalogue:
    """Named and custom aerial tile sets: ``resolve(name_or_yaml, folder, seed=)``, ``custom(images, labels,
    extras, **declaration)`` and ``names()``."""

    resolve: Callable[..., Any]
    custom: Callable[..., Any]
    names: Callable[[], list[str]]


@dataclass(frozen=True)
class Plugins:
    """Everything a command needs from outside the engine."""

    scenes: SceneCatalogue
    tilesets: TileSetCatalogue
    default_folder: str
    #: Modules whose import registers the model zoo (imported here and by every Dask worker).
    zoo_modules: Sequence[str] = ()

    def folder(self, *given: Optional[str]) -> str:
        """The first data folder given (flag, then config file), else the default one."""
        return next((str(f) for f in given if f), self.default_folder)


def import_zoo(modules: Sequence[str]) -> None:
    """Import the modules that register the model zoo (each once; importing again is free)."""
    for name in modules:
        importlib.import_module(name)


#: Entry-point groups of installed packages that bring scene and tile-set catalogues (see pyproject.toml).
SCENE_GROUP, TILESET_GROUP = "deephyperx.scenes", "deephyperx.tilesets"


def installed_plugins(default_folder: Optional[str] = None) -> Plugins:
    """The catalogues installed packages declare (entry points :data:`SCENE_GROUP` and
    :data:`TILESET_GROUP`), for front ends that wire nothing in themselves (the Python API); the zoo
    comes the same way, through :func:`deephyperx.registry.load_plugins`. A one-line
    :class:`~deephyperx.errors.UserError` when none is installed."""
    import os

    from deephyperx import entry_points
    from deephyperx.errors import UserError

    found = {}
    for group in (SCENE_GROUP, TILESET_GROUP):
        entries = entry_points.declared(group)
        if not entries:
            raise UserError(f"no package declares a {group} entry point: install deephyperx (pip install -e .) "
                            "to use its Python API, or run python main.py from the source tree")
        found[group] = entry_points.load(entries[0])
    folder = default_folder or os.environ.get("DEEPHYPERX_DATA", "Datasets")
    return Plugins(scenes=found[SCENE_GROUP], tilesets=found[TILESET_GROUP], default_folder=folder)
