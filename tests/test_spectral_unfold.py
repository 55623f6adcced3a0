"""3D convolutions as matrix products (models/spectral_unfold.py): the same outputs and gradients as
``torch.nn.Conv3d`` within float32 rounding, for every kernel, stride and padding hamida and li use and
others, and hamida, which trains with them by default, equals its Conv3d formulation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from models.cnn3d import Hamida3D
from models.spectral_unfold import conv3d_as_matmul, flatten_like_conv3d, volume_of_patches

#: float32 rounding of sums of a few hundred products, relative to the largest value
TOLERANCE = 1e-5


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.detach(), b.detach()
    return float((a - b).abs().max() / b.abs().max().clamp_min(1e-12))


def as_channels_first(volume: torch.Tensor) -> torch.Tensor:
    """(C, N, H, W, D) -> (N, C, D, H, W)."""
    return volume.permute(1, 0, 4, 2, 3)


@pytest.mark.parametrize("in_channels, out_channels, kernel, stride, padding", [
    (1, 20, (3, 3, 3), (1, 1, 1), (1, 0, 0)),  # hamida conv1
    (20, 20, (3, 1, 1), (2, 1, 1), (1, 0, 0)),  # hamida's learnt pooling
    (35, 35, (2, 1, 1), (2, 1, 1), (0, 0, 0)),  # hamida conv4
    (1, 2, (7, 3, 3), (1, 1, 1), (0, 0, 0)),  # li conv1
    (2, 4, (3, 3, 3), (1, 1, 1), (0, 0, 0)),  # li conv2
    (3, 5, (1, 1, 1), (2, 1, 1), (0, 0, 0)),  # a 1x1x1 kernel, strided
    (4, 6, (5, 2, 3), (2, 2, 1), (2, 1, 1)),  # any other shape
])
def test_outputs_and_gradients_equal_conv3d(in_channels, out_channels, kernel, stride, padding):
    torch.manual_seed(0)
    conv = nn.Conv3d(in_channels, out_channels, kernel, stride=stride, padding=padding)
    x = torch.randn(6, in_channels, 31, 7, 6, requires_grad=True)  # (N, C, D, H, W)
    expected = conv(x)
    volume = x.permute(1, 0, 3, 4, 2)  # (C, N, H, W, D)
    got = as_channels_first(conv3d_as_matmul(conv, volume))
    assert got.shape == expected.shape
    assert relative_error(got, expected) < TOLERANCE
    upstream = torch.randn_like(expected)
    want = torch.autograd.grad(expected, [x, conv.weight, conv.bias], upstream)
    have = torch.autograd.grad(got, [x, conv.weight, conv.bias], upstream)
    for a, b in zip(have, want):
        assert relative_error(a, b) < TOLERANCE


def test_layers_it_does_not_compute_are_refused():
    with pytest.raises(ValueError, match="plain Conv3d"):
        conv3d_as_matmul(nn.Conv3d(2, 2, 3, groups=2), torch.zeros(2, 1, 5, 5, 5))


def conv3d_forward(model: nn.Module, layers: list[nn.Conv3d], x: torch.Tensor) -> torch.Tensor:
    """The network computed with Conv3d layers, as before (the reference)."""
    volume = x.unsqueeze(1)
    for layer in layers:
        volume = F.relu(layer(volume))
    return model.fc(volume.flatten(1))


HAMIDA_LAYERS = ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4")


@pytest.mark.parametrize("model, bands, patch, layers", [
    (Hamida3D, 200, 5, HAMIDA_LAYERS),
    (Hamida3D, 103, 3, HAMIDA_LAYERS),  # padded 3x3 convolutions inside a narrow patch
    (Hamida3D, 30, 7, HAMIDA_LAYERS),
])
def test_hamida_equals_its_conv3d_formulation(model, bands, patch, layers):
    torch.manual_seed(1)
    network = model(bands, 16, patch)
    x = torch.randn(12, bands, patch, patch)
    expected = conv3d_forward(network, [getattr(network, name) for name in layers], x)
    got = network(x)
    assert relative_error(got, expected) < TOLERANCE
    want = torch.autograd.grad(expected.logsumexp(1).mean(), list(network.parameters()))
    have = torch.autograd.grad(got.logsumexp(1).mean(), list(network.parameters()))
    for a, b in zip(have, want):
        assert relative_error(a, b) < TOLERANCE
    with torch.no_grad():  # inference takes the Conv3d path: the same numbers
        assert relative_error(network(x), expected) < TOLERANCE


def test_the_layout_helpers_round_trip():
    x = torch.randn(3, 10, 5, 4)
    volume = volume_of_patches(x)
    assert volume.shape == (1, 3, 5, 4, 10)
    assert torch.equal(flatten_like_conv3d(volume), x.unsqueeze(1).flatten(1))
