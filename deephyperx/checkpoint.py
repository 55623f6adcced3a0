"""Self-describing checkpoints, written atomically and loaded without executing code.

A neural checkpoint is a ``torch.save`` dictionary holding weights, optimiser and
scheduler states, the epoch, RNG states, the resolved configuration, the class names,
the band count and the normalisation statistics; it is loaded with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain data.
A scikit-learn model is saved with skops, whose loader refuses types it does not trust.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.errors import UserError

FORMAT = "deephyperx-checkpoint"
VERSION = 1


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain data) as a checkpoint at ``path``, atomically."""
    path = Path(path)
    with atomic_path(path) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    return path


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of ours; one-line :class:`UserError` for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give the path of a .pt file written by a run")
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, KeyError, RuntimeError, ...)
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        raise UserError(f"{path} is not a deephyperx checkpoint that can be loaded safely ({first[:160]})") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not a deephyperx checkpoint (no '{FORMAT}' marker); "
                        "give a checkpoint.pt or model.pt written by main.py")
    return data


def check_compatible(data: dict[str, Any], *, model: str, n_bands: int, class_names: list[str], path: str | Path) -> None:
    """Refuse a checkpoint trained for another model, band count or class list."""
    config = data.get("config", {})
    if config.get("model") != model:
        raise UserError(f"checkpoint {path} is of model '{config.get('model')}', not '{model}'; "
                        f"use --model {config.get('model')} or another checkpoint")
    if data.get("n_bands") != n_bands:
        raise UserError(f"checkpoint {path} expects {data.get('n_bands')} bands but the scene has {n_bands}; "
                        "restore it on a scene of the same sensor")
    if list(data.get("class_names", [])) != list(class_names):
        raise UserError(f"checkpoint {path} was trained on classes {data.get('class_names')} "
                        f"({config.get('dataset')}), not on this scene's {len(class_names)} classes")


# ----- scikit-learn models -------------------------------------------------------------------

def save_sklearn(path: str | Path, estimator: Any, meta: dict[str, Any]) -> Path:
    """Save an estimator with skops and its description as JSON beside it (``.json``)."""
    import skops.io as sio

    path = Path(path)
    with atomic_path(path) as tmp:
        sio.dump(estimator, tmp)
    atomic_write_text(path.with_suffix(".json"), json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=2))
    return path


def load_sklearn(path: str | Path, trusted: bool = False) -> tuple[Any, dict[str, Any]]:
    """Load an estimator saved by :func:`save_sklearn`. Only scikit-learn and NumPy types are
    accepted unless ``trusted`` is True (the user vouches for the file)."""
    import skops.io as sio

    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise UserError(f"{path} (with {meta_path.name} beside it) not found; give a model.skops written by a run")
    try:
        meta = json.loads(meta_path.read_text())
        untrusted = sio.get_untrusted_types(file=path)
    except Exception as error:  # corrupt zip or JSON
        raise UserError(f"{path} is not a readable skops model ({type(error).__name__}); re-run training") from None
    if meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not a deephyperx model description")
    foreign = [t for t in untrusted if not t.startswith(("sklearn.", "numpy.", "scipy."))]
    if foreign and not trusted:
        raise UserError(f"{path} contains types that are not scikit-learn's ({', '.join(foreign[:3])}); "
                        "pass --trust_checkpoint only if you trust where the file came from")
    return sio.load(path, trusted=untrusted), meta
