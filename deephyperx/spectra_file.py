"""Labelled spectra files: synthetic (or any) spectra with their class ids, written as HDF5.

One file holds ``spectra`` (N, B) float32 in the scene's original units, ``labels`` (N,)
int64 class ids 0..K-1 and, when known, ``wavelengths`` (B,); its attributes say which
scene and model produced it, the class names and the generator's configuration, so that a
file read back later can be checked against the scene it is meant to augment.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Union

import numpy as np
import yaml

from deephyperx.atomic import atomic_path
from deephyperx.errors import UserError

PathLike = Union[str, Path]

#: Marker attribute of files written by :func:`write_spectra_file`.
FORMAT = "deephyperx-spectra"


@dataclass
class LabelledSpectra:
    """Spectra in the scene's original units with their class ids and provenance."""

    spectra: np.ndarray  # (N, B) float32
    labels: np.ndarray  # (N,) int64 class ids 0..K-1
    class_names: list[str]
    wavelengths: Optional[np.ndarray]  # (B,) or None
    scene: str
    model: str
    config: dict  # the generator's configuration

    @property
    def n_bands(self) -> int:
        return int(self.spectra.shape[1])

    def check(self) -> "LabelledSpectra":
        """Refuse inconsistent shapes or class ids (a programming error upstream, or a bad file)."""
        if self.spectra.ndim != 2:
            raise UserError(f"spectra of {self.scene}/{self.model} have shape {self.spectra.shape}; expected (N, bands)")
        if self.labels.shape != (self.spectra.shape[0],):
            raise UserError(f"{self.spectra.shape[0]} spectra but labels of shape {self.labels.shape}")
        if self.labels.size and (self.labels.min() < 0 or self.labels.max() >= len(self.class_names)):
            raise UserError(f"class ids outside 0..{len(self.class_names) - 1} for {len(self.class_names)} class names")
        if self.wavelengths is not None and self.wavelengths.shape != (self.n_bands,):
            raise UserError(f"{len(self.wavelengths)} wavelengths for {self.n_bands} bands")
        return self


def _plain(value: Any) -> Any:
    """A configuration made of plain YAML types (tuples, paths, numbers of numpy become plain)."""
    return json.loads(json.dumps(value, default=str))


def write_spectra_file(path: PathLike, data: LabelledSpectra) -> None:
    """Write ``data`` to ``path`` as HDF5, atomically (a temporary file renamed on success)."""
    import h5py

    data.check()
    with atomic_path(Path(path)) as tmp:
        with h5py.File(tmp, "w") as handle:
            handle.create_dataset("spectra", data=np.asarray(data.spectra, dtype=np.float32), compression="gzip")
            handle.create_dataset("labels", data=np.asarray(data.labels, dtype=np.int64))
            if data.wavelengths is not None:
                handle.create_dataset("wavelengths", data=np.asarray(data.wavelengths, dtype=np.float64))
            handle.attrs["format"] = FORMAT
            handle.attrs["class_names"] = json.dumps(list(data.class_names))
            handle.attrs["scene"] = data.scene
            handle.attrs["model"] = data.model
            handle.attrs["config"] = yaml.safe_dump(_plain(data.config), sort_keys=True)
            handle.attrs["n_bands"] = data.n_bands


def read_spectra_file(path: PathLike, n_bands: Optional[int] = None,
                      class_names: Optional[list[str]] = None) -> LabelledSpectra:
    """Read a file written by :func:`write_spectra_file`; with ``n_bands`` or ``class_names``,
    refuse a file made for another sensor or class list. Every problem is a one-line UserError."""
    import h5py

    path = Path(path)
    if not path.is_file():
        raise UserError(f"spectra file {path} does not exist; give an .h5 file written by `main.py generate`")
    if not h5py.is_hdf5(path):
        raise UserError(f"{path} is not an HDF5 file; give an .h5 file written by `main.py generate`")
    try:
        with h5py.File(path, "r") as handle:
            missing = [k for k in ("spectra", "labels") if k not in handle]
            if missing or "class_names" not in handle.attrs:
                what = ", ".join(missing) if missing else "the class_names attribute"
                raise UserError(f"{path} lacks {what}; give a spectra file written by `main.py generate`")
            data = LabelledSpectra(
                spectra=np.asarray(handle["spectra"], dtype=np.float32),
                labels=np.asarray(handle["labels"], dtype=np.int64),
                class_names=list(json.loads(_text(handle.attrs["class_names"]))),
                wavelengths=np.asarray(handle["wavelengths"], dtype=np.float64) if "wavelengths" in handle else None,
                scene=_text(handle.attrs.get("scene", "")),
                model=_text(handle.attrs.get("model", "")),
                config=yaml.safe_load(_text(handle.attrs.get("config", ""))) or {},
            )
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, yaml.YAMLError) as error:
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise UserError(f"{path} could not be read as a spectra file ({first[:160]})") from None
    _check_against(path, data.check(), n_bands, class_names)
    return data


def _text(value: Any) -> str:
    """An HDF5 string attribute as ``str`` (h5py may give bytes)."""
    return value.decode("utf-8") if isinstance(value, bytes) else str(value)


def _check_against(path: Path, data: LabelledSpectra, n_bands: Optional[int],
                   class_names: Optional[list[str]]) -> None:
    if n_bands is not None and data.n_bands != n_bands:
        raise UserError(f"spectra file {path} has {data.n_bands} bands but the scene has {n_bands}; "
                        "generate spectra for a scene of the same sensor")
    if class_names is not None and list(data.class_names) != list(class_names):
        raise UserError(f"spectra file {path} holds classes of {data.scene or 'another scene'} "
                        f"({len(data.class_names)} classes), not this scene's {len(class_names)}; "
                        "generate spectra for this scene")
