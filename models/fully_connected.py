"""The fully connected baseline of DeepHyperX."""
from __future__ import annotations

import torch
from torch import nn

from deephyperx.registry import register_model, require_single_spectra


@register_model("nn", patch_size=1, epoch=100, batch_size=100, optimizer="adam", lr=1e-4,
                citation="Audebert, Le Saux & Lefevre, Deep learning for classification of hyperspectral data: "
                         "a comparative review, IEEE GRSM 7(2), 2019 (its 'Baseline' network)")
class FullyConnected(nn.Module):
    """Four fully connected layers (bands-2048-4096-2048-classes) with ReLU on single spectra,
    optional dropout p=0.5 after the hidden layers; Kaiming-normal initialisation as in DeepHyperX."""

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 1, *, dropout: bool = False):
        super().__init__()
        require_single_spectra("nn", patch_size)
        widths = [n_bands, 2048, 4096, 2048]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.ReLU()]
            if dropout:
                layers.append(nn.Dropout(0.5))
        layers.append(nn.Linear(widths[-1], n_classes))
        self.layers = nn.Sequential(*layers)
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.kaiming_normal_(module.weight)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.layers(x.flatten(1))
