"""Normalisation of the cube, with statistics computed on training pixels only.

The statistics travel with the model (in its checkpoint), so a restored model
normalises a new cube exactly as it did during training.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from deephyperx.errors import UserError

METHODS = ("standard", "minmax", "none")


@dataclass
class Normaliser:
    """``x -> (x - shift) * scale``, per band; fitted by :func:`fit_normaliser`."""

    method: str
    shift: np.ndarray
    scale: np.ndarray

    def apply(self, cube: np.ndarray, rows_per_chunk: int = 256) -> np.ndarray:
        """Return a float32 normalised copy of ``cube`` (H, W, B), read chunk by chunk."""
        out = np.empty(cube.shape, dtype=np.float32)
        for r in range(0, cube.shape[0], rows_per_chunk):
            chunk = np.asarray(cube[r:r + rows_per_chunk], dtype=np.float32)
            out[r:r + rows_per_chunk] = (chunk - self.shift) * self.scale
        return out

    def invert(self, values: np.ndarray) -> np.ndarray:
        """Bring normalised spectra back to the cube's original units."""
        return values / self.scale + self.shift

    def state_dict(self) -> dict:
        return {"method": self.method, "shift": self.shift.tolist(), "scale": self.scale.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "Normaliser":
        return cls(state["method"], np.asarray(state["shift"], np.float32), np.asarray(state["scale"], np.float32))


def fit_normaliser(cube: np.ndarray, train_mask: np.ndarray, method: str = "standard") -> Normaliser:
    """Fit per-band standardisation, global min-max, or identity on the pixels of ``train_mask``."""
    if method not in METHODS:
        raise UserError(f"unknown normalization '{method}'; choose one of: {', '.join(METHODS)}")
    n_bands = cube.shape[2]
    if method == "none":
        return Normaliser(method, np.zeros(n_bands, np.float32), np.ones(n_bands, np.float32))
    pixels = np.asarray(cube[train_mask], dtype=np.float64)
    if method == "standard":
        mean, std = pixels.mean(axis=0), pixels.std(axis=0)
        std[std < 1e-12] = 1.0
        return Normaliser(method, mean.astype(np.float32), (1.0 / std).astype(np.float32))
    low, high = float(pixels.min()), float(pixels.max())
    span = high - low if high > low else 1.0
    return Normaliser(method, np.full(n_bands, low, np.float32), np.full(n_bands, 1.0 / span, np.float32))


@dataclass
class PCAProjection:
    """Projection of (normalised) spectra onto their first principal components, fitted on
    training pixels only (HybridSN's PCA step, done inside the pipeline)."""

    mean: np.ndarray
    components: np.ndarray  # (C, B)

    def apply(self, cube: np.ndarray, rows_per_chunk: int = 256) -> np.ndarray:
        """(H, W, B) -> (H, W, C) float32, chunk by chunk."""
        out = np.empty(cube.shape[:2] + (len(self.components),), dtype=np.float32)
        for r in range(0, cube.shape[0], rows_per_chunk):
            chunk = np.asarray(cube[r:r + rows_per_chunk], dtype=np.float32) - self.mean
            out[r:r + rows_per_chunk] = chunk @ self.components.T
        return out

    def state_dict(self) -> dict:
        return {"mean": self.mean.tolist(), "components": self.components.tolist()}

    @classmethod
    def from_state_dict(cls, state: dict) -> "PCAProjection":
        return cls(np.asarray(state["mean"], np.float32), np.asarray(state["components"], np.float32))


def fit_pca(cube: np.ndarray, train_mask: np.ndarray, n_components: int, whiten: bool = False) -> PCAProjection:
    """Principal components of the training pixels' spectra (signs fixed so that each
    component's largest coefficient is positive, for reproducibility). With ``whiten``, each
    component is divided by its standard deviation over the training pixels, so every projected
    band has unit variance there (scikit-learn's ``PCA(whiten=True)``)."""
    pixels = np.asarray(cube[train_mask], dtype=np.float64)
    limit = min(pixels.shape)
    if not 1 <= n_components <= limit:
        raise UserError(f"PCA to {n_components} components needs at most {limit} "
                        f"(bands {pixels.shape[1]}, training pixels {pixels.shape[0]}); choose fewer components")
    mean = pixels.mean(axis=0)
    _, singular, vt = np.linalg.svd(pixels - mean, full_matrices=False)
    components = vt[:n_components]
    signs = np.sign(components[np.arange(n_components), np.abs(components).argmax(axis=1)])
    components = components * signs[:, None]
    if whiten:
        std = singular[:n_components] / np.sqrt(max(len(pixels) - 1, 1))
        if std[-1] <= 1e-7 * max(std[0], 1e-30):
            raise UserError(f"PCA whitening: component {n_components} has no variance over the training pixels; "
                            "choose fewer components")
        components = components / std[:, None]
    return PCAProjection(mean.astype(np.float32), components.astype(np.float32))
