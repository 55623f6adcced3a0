"""Helpers shared by the zoo's tests: build a registered model by name, count its parameters."""
from __future__ import annotations

import torch

import models  # noqa: F401  (registers the zoo)
from deephyperx.registry import create_model


def build(name: str, n_bands: int, patch_size: int, n_classes: int = 16, **options) -> torch.nn.Module:
    """Model ``name`` in evaluation mode, initialised under seed 0."""
    torch.manual_seed(0)
    return create_model(name, n_bands=n_bands, n_classes=n_classes, patch_size=patch_size, **options).eval()


def n_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())
