"""Small 3D convolutions of hyperspectral patches as one matrix product each: the same numbers, a
fraction of the time.

A ``Conv3d`` whose kernels are a few voxels wide, on a handful of channels (hamida, li), spends its CPU
time in the overhead of a direct 3D kernel (its weight gradient above all), not in arithmetic
(``benchmarks/profile_models.py`` measures it; docs/PERFORMANCE.md shows the table). Here such a layer
is im2col + one matrix product: each (input channel, kernel offset) becomes one row of a matrix whose
columns are the output voxels, and the kernels times that matrix give every output at once.

Activations travel between layers in the layout (C, N, H, W, D): channels outermost, bands innermost.
The product's output is already in that layout, and each window row is a copy of long runs of bands,
which is what makes the gathering fast; no transpose is needed between layers. The window gathering
has its own backward pass (:class:`Windows`): each offset's gradient is added into one buffer in place.

The ``nn.Conv3d`` modules keep their parameters, so checkpoints, initialisations and the dense
evaluation of :mod:`deephyperx.dense_eval` are unchanged; ``tests/test_spectral_unfold.py`` proves
outputs and gradients equal to ``Conv3d``'s within float32 rounding.
"""
from __future__ import annotations

from itertools import product

import torch
import torch.nn.functional as F
from torch import nn


class Windows(torch.autograd.Function):
    """im2col of a volume in the layout (C, N, H, W, D) for kernel (kd, kh, kw) and stride (sd, sh, sw):
    (C, kd, kh, kw, N, H', W', D'), contiguous. Its backward adds each offset's gradient into one buffer."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, kernel: tuple[int, int, int], stride: tuple[int, int, int]) -> torch.Tensor:
        ctx.shape, ctx.kernel, ctx.stride = x.shape, kernel, stride
        (kd, kh, kw), (sd, sh, sw) = kernel, stride
        windows = x.unfold(2, kh, sh).unfold(3, kw, sw).unfold(4, kd, sd)  # (C, N, H', W', D', kh, kw, kd)
        return windows.permute(0, 7, 5, 6, 1, 2, 3, 4).contiguous()

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None, None]:
        (kd, kh, kw), (sd, sh, sw) = ctx.kernel, ctx.stride
        height, width, depth = grad.shape[5:8]
        grad_x = grad.new_zeros(ctx.shape)
        for a, b, c in product(range(kd), range(kh), range(kw)):
            grad_x[:, :, b:b + sh * (height - 1) + 1:sh, c:c + sw * (width - 1) + 1:sw,
                   a:a + sd * (depth - 1) + 1:sd] += grad[:, a, b, c]
        return grad_x, None, None


def volume_of_patches(patches: torch.Tensor) -> torch.Tensor:
    """(N, bands, rows, cols) patches as a one-channel volume in the layout (1, N, H, W, D)."""
    return patches.permute(0, 2, 3, 1).unsqueeze(0)


def flatten_like_conv3d(volume: torch.Tensor) -> torch.Tensor:
    """(C, N, H, W, D) -> (N, C*D*H*W), in the order ``Conv3d``'s (N, C, D, H, W) output flattens to
    (what a classifier trained on that output expects)."""
    return volume.permute(1, 0, 4, 2, 3).reshape(volume.shape[1], -1)


def conv3d_as_matmul(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """``conv`` applied to ``x`` in the layout (C, N, H, W, D); returns (C', N, H', W', D').

    Equal to ``conv`` on (N, C, D, H, W) for any kernel, stride and zero padding (no dilation, groups
    or other padding modes)."""
    if conv.groups != 1 or conv.dilation != (1, 1, 1) or conv.padding_mode != "zeros":
        raise ValueError("conv3d_as_matmul computes plain Conv3d layers (no groups, dilation or padding modes)")
    pd, ph, pw = conv.padding
    if pd or ph or pw:
        x = F.pad(x, (pd, pd, pw, pw, ph, ph))
    kernel, stride = tuple(conv.kernel_size), tuple(conv.stride)
    if kernel == (1, 1, 1):
        windows = x[:, :, ::stride[1], ::stride[2], ::stride[0]]
    else:
        windows = Windows.apply(x, kernel, stride)
    out_shape = windows.shape[-4:]
    rows = windows.reshape(-1, out_shape.numel())
    weight = conv.weight.reshape(conv.out_channels, -1)  # (C', C*kd*kh*kw): the rows' order
    if conv.bias is None:
        out = weight @ rows
    else:
        out = torch.addmm(conv.bias.unsqueeze(1), weight, rows)
    return out.view(conv.out_channels, *out_shape)
