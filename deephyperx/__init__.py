"""deephyperx: the engine of the toolbox.

It knows no particular model and no particular scene: models register themselves
through :mod:`deephyperx.registry`, scenes are described by :class:`deephyperx.scene.Scene`.
"""
from deephyperx.errors import DataNotFoundError, UserError
from deephyperx.scene import Scene

__all__ = ["Scene", "UserError", "DataNotFoundError"]
__version__ = "0.1.0"
