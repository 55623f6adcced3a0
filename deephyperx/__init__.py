"""deephyperx: deep learning for hyperspectral and remote-sensing imagery.

The package is the engine: it knows no particular model and no particular scene. Models register
themselves through :mod:`deephyperx.registry`, scenes are :class:`deephyperx.scene.Scene` objects,
and installed packages bring the zoo and the scene catalogues as plugins (entry points).

The Python API (:mod:`deephyperx.api`) is available from the package itself::

    import deephyperx as dhx
    dhx.list_models()
    result = dhx.train("hamida", dhx.load_scene("IndianPines", folder="data"), training_sample=0.1, seed=0)
    dhx.load(result.folder / "model.pt").predict(cube)

Its functions are imported on first use, so ``import deephyperx`` stays light.
"""
from __future__ import annotations

from typing import Any

from deephyperx.errors import DataNotFoundError, UserError
from deephyperx.scene import Scene

__version__ = "0.1.0"

#: The Python API's names, served from :mod:`deephyperx.api` on first use.
API = ("list_models", "create_model", "list_scenes", "load_scene", "train", "load", "generate", "Classifier",
       "TrainResult", "SeedResult", "Split", "GeneratedSpectra")

__all__ = ["Scene", "UserError", "DataNotFoundError", "__version__", *API]


def __getattr__(name: str) -> Any:
    if name in API:
        from deephyperx import api

        return getattr(api, name)
    raise AttributeError(f"module 'deephyperx' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(API))
