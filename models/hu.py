"""1D CNN on spectra of Hu et al. (2015)."""
from __future__ import annotations

import math

import torch
from torch import nn

from deephyperx.registry import register_model, require_single_spectra


@register_model("hu", patch_size=1, epoch=1500, batch_size=100, optimizer="sgd", lr=0.01, scheduler={"name": "none"},
                citation="Hu, Huang, Wei, Zhang & Li, Deep convolutional neural networks for hyperspectral image "
                         "classification, Journal of Sensors 2015, 258619")
class Hu1D(nn.Module):
    """Input spectrum (n1 bands) -> C1: 20 filters of width k1 = ceil(n1/9), tanh -> M2: max pooling
    of width k2 = ceil(k1/5) -> F3: 100 units, tanh -> softmax output. Weights drawn from
    U(-0.05, 0.05) and zero biases, as the paper states. The paper's pooling keeps the
    partial last window; PyTorch's MaxPool1d drops it (at most one feature fewer).

    Training: the paper's Algorithm 1 trains by SGD at a fixed learning rate until the training
    error falls below a threshold or an iteration cap is reached; lr 0.01 is DeepHyperX's reading of
    it (the paper's values could not be read here). DeepHyperX stops after 100 epochs with a plateau
    scheduler, which leaves this network far from converged (training loss about 1.3, 50% OA on
    Indian Pines at 10%). We follow the algorithm: a constant learning rate (no scheduler) and a cap
    of 1500 epochs, ours, chosen so that the training loss on Indian Pines at 10% gets near 0.2.
    """

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 1):
        super().__init__()
        require_single_spectra("hu", patch_size)
        kernel = math.ceil(n_bands / 9)
        pool = math.ceil(kernel / 5)
        self.conv = nn.Conv1d(1, 20, kernel)
        self.pool = nn.MaxPool1d(pool)
        features = 20 * ((n_bands - kernel + 1) // pool)
        self.fc1 = nn.Linear(features, 100)
        self.fc2 = nn.Linear(100, n_classes)
        for module in self.modules():
            if isinstance(module, (nn.Linear, nn.Conv1d)):
                nn.init.uniform_(module.weight, -0.05, 0.05)
                nn.init.zeros_(module.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        spectra = x.flatten(1).unsqueeze(1)  # (N, 1, bands)
        features = self.pool(torch.tanh(self.conv(spectra)))
        return self.fc2(torch.tanh(self.fc1(features.flatten(1))))
