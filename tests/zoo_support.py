"""Helpers shared by the zoo's tests: build a registered model by name, count its parameters, fit one
through the engine and score its map on its own training pixels."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import models  # noqa: F401  (registers the zoo)
from deephyperx.config import resolve_config
from deephyperx.experiment import Experiment
from deephyperx.registry import create_model, get_spec
from deephyperx.runner import ClassifyTask


def build(name: str, n_bands: int, patch_size: int, n_classes: int = 16, **options) -> torch.nn.Module:
    """Model ``name`` in evaluation mode, initialised under seed 0."""
    torch.manual_seed(0)
    return create_model(name, n_bands=n_bands, n_classes=n_classes, patch_size=patch_size, **options).eval()


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def training_accuracy(folder: Path, scene) -> float:
    """Accuracy of the saved map on the run's own training pixels."""
    train = np.load(folder / "split.npz")["train"]
    prediction = np.load(folder / "prediction.npy")
    return float((prediction[train] == scene.labels[train]).mean())


def fit(name: str, scene, tmp_path: Path, **overrides) -> Path:
    """Seed 0 of model ``name`` on ``scene`` through the engine (30% training, 10% of it validation unless
    ``overrides`` say otherwise); its folder."""
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.3, "val_fraction": 0.1}
    config = resolve_config(get_spec(name), {**base, **overrides})
    Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / name)
    return tmp_path / name
