"""Small 3D convolutions of hyperspectral patches as one matrix product each: the same numbers, a
fraction of the time.

A ``Conv3d`` whose kernels are a few voxels wide, on a handful of channels (hamida, li), spends its CPU
time in the overhead of a direct 3D kernel (its weight gradient above all), not in arithmetic
(``benchmarks/profile_models.py`` measures it; docs/PERFORMANCE.md shows the table). Here such a layer
is im2col + one matrix product: each (input channel, kernel offset) becomes one row of a matrix whose
columns are the output voxels, and the kernels times that matrix give every output at once.

Activations travel between layers in the layout (C, N, H, W, D): channels outermost, bands innermost.
The product's output is already in that layout, and each window row is a copy of long runs of bands,
which is what makes the gathering fast; no transpose is needed between layers. The layer has its own
backward pass (:class:`MatmulConv3d`): it keeps only the layer's input and gathers the windows again
for the weight gradient, and each offset's input gradient is added into one buffer in place.

The ``nn.Conv3d`` modules keep their parameters, so checkpoints, initialisations and the dense
evaluation of :mod:`deephyperx.dense_eval` are unchanged; ``tests/test_spectral_unfold.py`` proves
outputs and gradients equal to ``Conv3d``'s within float32 rounding.
"""
from __future__ import annotations

from itertools import product
from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


def windows_of(x: torch.Tensor, kernel: tuple[int, int, int],
               stride: tuple[int, int, int]) -> tuple[torch.Tensor, torch.Size]:
    """im2col of a volume in the layout (C, N, H, W, D) for kernel (kd, kh, kw) and stride (sd, sh, sw):
    (C*kd*kh*kw, N*H'*W'*D'), contiguous, and the output's (N, H', W', D')."""
    (kd, kh, kw), (sd, sh, sw) = kernel, stride
    if kernel == (1, 1, 1):
        picked = x[:, :, ::sh, ::sw, ::sd]
        return picked.reshape(x.shape[0], -1), picked.shape[1:]
    windows = x.unfold(2, kh, sh).unfold(3, kw, sw).unfold(4, kd, sd)  # (C, N, H', W', D', kh, kw, kd)
    out_shape = windows.shape[1:5]
    return windows.permute(0, 7, 5, 6, 1, 2, 3, 4).reshape(-1, out_shape.numel()), out_shape


def fold_windows(rows: torch.Tensor, shape: torch.Size, kernel: tuple[int, int, int],
                 stride: tuple[int, int, int], out_shape: torch.Size) -> torch.Tensor:
    """The adjoint of :func:`windows_of`: each window row's values added back where they came from,
    into a zero volume of ``shape`` (C, N, H, W, D)."""
    (kd, kh, kw), (sd, sh, sw) = kernel, stride
    height, width, depth = out_shape[1:4]
    rows = rows.view(shape[0], kd, kh, kw, *out_shape)
    volume = rows.new_zeros(shape)
    for a, b, c in product(range(kd), range(kh), range(kw)):
        volume[:, :, b:b + sh * (height - 1) + 1:sh, c:c + sw * (width - 1) + 1:sw,
               a:a + sd * (depth - 1) + 1:sd] += rows[:, a, b, c]
    return volume


def padded(x: torch.Tensor, padding: tuple[int, int, int]) -> torch.Tensor:
    """``x`` (C, N, H, W, D) with ``padding`` (pd, ph, pw) zeros on both sides of D, H and W."""
    pd, ph, pw = padding
    return F.pad(x, (pd, pd, pw, pw, ph, ph)) if pd or ph or pw else x


class MatmulConv3d(torch.autograd.Function):
    """A Conv3d in the layout (C, N, H, W, D) as im2col + one matrix product.

    Only the layer's input is kept for the backward pass (usually the previous ReLU's output, which
    autograd keeps anyway); the windows, several times larger, are gathered again there for the weight
    gradient. That costs one more copy of them per step and spares a training step from holding every
    layer's windows at once: it about halves hamida's working set (``step_tensor_peak_mb`` of
    benchmarks/profile_models.py)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                kernel: tuple[int, int, int], stride: tuple[int, int, int],
                padding: tuple[int, int, int]) -> torch.Tensor:
        ctx.geometry = kernel, stride, padding
        ctx.save_for_backward(x, weight)
        rows, out_shape = windows_of(padded(x, padding), kernel, stride)
        ctx.out_shape = out_shape
        weight = weight.reshape(weight.shape[0], -1).to(rows.dtype)  # (C', C*kd*kh*kw): the rows' order
        out = weight @ rows if bias is None else torch.addmm(bias.to(rows.dtype).unsqueeze(1), weight, rows)
        return out.view(weight.shape[0], *out_shape)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        kernel, stride, padding = ctx.geometry
        grad = grad.reshape(grad.shape[0], -1)
        grad_x = grad_weight = grad_bias = None
        if ctx.needs_input_grad[1]:
            rows, _ = windows_of(padded(x, padding).to(grad.dtype), kernel, stride)
            grad_weight = (grad @ rows.t()).view_as(weight).to(weight.dtype)
            del rows
        if ctx.needs_input_grad[2]:
            grad_bias = grad.sum(1).to(weight.dtype)
        if ctx.needs_input_grad[0]:
            grad_rows = weight.reshape(weight.shape[0], -1).to(grad.dtype).t() @ grad
            pd, ph, pw = padding
            shape = (*x.shape[:2], x.shape[2] + 2 * ph, x.shape[3] + 2 * pw, x.shape[4] + 2 * pd)
            if kernel == (1, 1, 1):
                grad_x = grad_rows.new_zeros(shape)
                grad_x[:, :, ::stride[1], ::stride[2], ::stride[0]] = grad_rows.view(x.shape[0], *ctx.out_shape)
            else:
                grad_x = fold_windows(grad_rows, shape, kernel, stride, ctx.out_shape)
            del grad_rows
            grad_x = grad_x[:, :, ph:grad_x.shape[2] - ph, pw:grad_x.shape[3] - pw, pd:grad_x.shape[4] - pd]
            grad_x = grad_x.to(x.dtype)
        return grad_x, grad_weight, grad_bias, None, None, None


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
    return MatmulConv3d.apply(x, conv.weight, conv.bias, tuple(conv.kernel_size), tuple(conv.stride),
                              tuple(conv.padding))
