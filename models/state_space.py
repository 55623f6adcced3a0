"""A selective state-space model (Mamba's S6) in plain PyTorch, and MambaHSI on patches (Li et al., 2024).

The selective scan runs the recurrence ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t``,
``y_t = C_t h_t + D u_t`` for every sequence, channel and state at once: :func:`scan_chunks`
solves ``h_t = a_t h_{t-1} + b_t`` as a blocked parallel scan (about sqrt(L) chunks scanned
together, then the chunks' carries; O(L) work, only products of factors in (0, 1], so it is as
stable as the sequential loop), and :class:`_SelectiveScan` gives the whole S6 step a hand-written
backward pass (the adjoint recurrence is the same scan run from the end) that keeps one (L, batch,
channels, states) tensor per scan instead of autograd's many. Plain tensor operations, no CUDA-only
package (``mamba_ssm``'s fused kernel computes the same function).
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.errors import UserError
from deephyperx.registry import register_model


def linear_scan_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = 0``) along axis 1, one step at a time (the test oracle)."""
    h = torch.zeros_like(b[:, 0])
    out = []
    for t in range(a.shape[1]):
        h = a[:, t] * h + b[:, t]
        out.append(h)
    return torch.stack(out, dim=1)


def _chunking(length: int) -> tuple[int, int]:
    """Steps per chunk and chunks for a sequence of ``length``: about sqrt(length) each."""
    steps = math.isqrt(length - 1) + 1 if length > 1 else 1
    return steps, -(-length // steps)


def to_chunks(x: torch.Tensor, steps: int, chunks: int, fill: float = 0.0) -> torch.Tensor:
    """(batch, L, ...) -> a new (steps, batch, chunks, ...) tensor, padded with ``fill`` to ``steps *
    chunks``: position ``c * steps + t`` goes to ``[t, :, c]``, so that one step of every chunk is one
    contiguous slice."""
    pad = steps * chunks - x.shape[1]
    if pad:
        x = torch.cat([x, x.new_full((x.shape[0], pad, *x.shape[2:]), fill)], dim=1)
    return x.reshape(x.shape[0], chunks, steps, *x.shape[2:]).movedim(2, 0).clone(memory_format=torch.contiguous_format)


def from_chunks(x: torch.Tensor, length: int) -> torch.Tensor:
    """The inverse of :func:`to_chunks`: (steps, batch, chunks, ...) -> (batch, length, ...)."""
    steps, batch, chunks = x.shape[:3]
    return x.movedim(0, 2).reshape(batch, steps * chunks, *x.shape[3:])[:, :length]


def scan_chunks(a: torch.Tensor, b: torch.Tensor, reverse: bool = False) -> torch.Tensor:
    """The scan ``h = a h_before + b`` of sequences laid out by :func:`to_chunks`, written over ``b``
    (``h_before``: the previous position, or with ``reverse`` the next one; zero before the start).

    A blocked parallel scan: (1) all chunks are scanned from a zero state at once, one step after
    the other (a Python loop of about sqrt(L) steps over whole (batch, chunks, ...) slices), keeping
    the running product of their factors; (2) the chunks' end states carry from chunk to chunk (about
    sqrt(L) small steps); (3) one vectorised update adds each chunk's incoming state times the
    running products. Only products of the given factors are formed, so it is as stable as the
    step-by-step loop."""
    order = list(range(a.shape[0]))[::-1] if reverse else list(range(a.shape[0]))
    h, running = b, torch.empty_like(a)
    running[order[0]] = a[order[0]]
    for before, t in zip(order, order[1:]):
        torch.addcmul(h[t], a[t], h[before], out=h[t])
        torch.mul(a[t], running[before], out=running[t])
    last, chunks = order[-1], a.shape[2]
    incoming = torch.zeros_like(h[0])  # (batch, chunks, ...): the state entering each chunk
    carried = torch.zeros_like(h[0, :, 0])
    for c in (range(chunks - 1, -1, -1) if reverse else range(chunks)):
        incoming[:, c] = carried
        carried = torch.addcmul(h[last, :, c], running[last, :, c], carried)
    return h.addcmul_(running, incoming.unsqueeze(0))


def linear_scan(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """All states of ``h_t = a_t h_{t-1} + b_t`` (``h_{-1} = 0``) along axis 1 of same-shaped tensors
    (no gradient: :class:`_SelectiveScan` has its own backward pass)."""
    steps, chunks = _chunking(a.shape[1])
    h = scan_chunks(to_chunks(a, steps, chunks, fill=1.0), to_chunks(b, steps, chunks))  # padding keeps the state
    return from_chunks(h, a.shape[1])


def _next(x: torch.Tensor) -> torch.Tensor:
    """In the :func:`to_chunks` layout, the value at the next position (zero after the last)."""
    out = torch.empty_like(x)
    out[:-1] = x[1:]
    out[-1, :, :-1] = x[0, :, 1:]
    out[-1, :, -1] = 0.0
    return out


class _SelectiveScan(torch.autograd.Function):
    """:func:`selective_scan` with a hand-written backward pass. The adjoint ``g_t = dL/dh_t + a_{t+1}
    g_{t+1}`` is the same scan run from the end; ``dL/d(delta_t A) = g_t a_t h_{t-1}``, where
    ``a_t h_{t-1} = h_t - delta_t B_t u_t``; every other gradient is a product or a contraction. Only
    the states h (one (L, batch, channels, states) tensor per scan) are kept for the backward pass,
    instead of the many full-size intermediates autograd would keep."""

    @staticmethod
    def forward(ctx: Any, u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
        length = u.shape[1]
        steps, chunks = _chunking(length)
        u_, delta_, B_, C_ = (to_chunks(t, steps, chunks) for t in (u, delta, B, C))  # padding: delta = 0
        decay = torch.exp(delta_.unsqueeze(-1) * A)  # (steps, batch, chunks, channels, states)
        h = scan_chunks(decay, (delta_ * u_).unsqueeze(-1) * B_.unsqueeze(-2))
        y = (h @ C_.unsqueeze(-1)).squeeze(-1) + u_ * D
        ctx.save_for_backward(u_, delta_, A, B_, C_, D, h)
        ctx.length = length
        return from_chunks(y, length)

    @staticmethod
    def backward(ctx: Any, grad_y: torch.Tensor) -> tuple[torch.Tensor, ...]:
        u_, delta_, A, B_, C_, D, h = ctx.saved_tensors
        length = ctx.length
        gy = to_chunks(grad_y, delta_.shape[0], delta_.shape[2])
        grad_C = (gy.unsqueeze(-2) @ h).squeeze(-2)
        decay_next = torch.exp(_next(delta_).unsqueeze(-1) * A)
        decay_next[-1, :, -1] = 0.0  # nothing after the last position
        g = scan_chunks(decay_next, gy.unsqueeze(-1) * C_.unsqueeze(-2), reverse=True)
        du = delta_ * u_
        grad_du = (g @ B_.unsqueeze(-1)).squeeze(-1)
        grad_B = (du.unsqueeze(-2) @ g).squeeze(-2)
        drive = du.unsqueeze(-1) * B_.unsqueeze(-2)
        w = g.mul_(torch.sub(h, drive, out=drive))  # dL/d(delta A), per channel and state
        grad_delta = (w * A).sum(-1) + grad_du * u_
        grad_A = w.mul_(delta_.unsqueeze(-1)).sum(dim=(0, 1, 2))
        grad_u = grad_du * delta_ + gy * D
        grad_D = (gy * u_).sum(dim=(0, 1, 2))
        return (from_chunks(grad_u, length), from_chunks(grad_delta, length), grad_A,
                from_chunks(grad_B, length), from_chunks(grad_C, length), grad_D)


def selective_scan_reference(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                             C: torch.Tensor, D: torch.Tensor) -> torch.Tensor:
    """:func:`selective_scan` one step at a time (the test oracle)."""
    h = u.new_zeros(u.shape[0], u.shape[2], A.shape[1])
    ys = []
    for t in range(u.shape[1]):
        h = torch.exp(delta[:, t, :, None] * A) * h + (delta[:, t] * u[:, t])[:, :, None] * B[:, t, None, :]
        ys.append((h * C[:, t, None, :]).sum(-1) + D * u[:, t])
    return torch.stack(ys, dim=1)


def selective_scan(u: torch.Tensor, delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor,
                   D: torch.Tensor) -> torch.Tensor:
    """S6 (Gu & Dao, 2023), zero-order hold for A and Euler for B as in Mamba: for inputs ``u`` and
    steps ``delta`` (batch, L, channels), ``A`` (channels, states), ``B``, ``C`` (batch, L, states) and
    skip ``D`` (channels), ``h_t = exp(delta_t A) h_{t-1} + delta_t B_t u_t`` and ``y_t = C_t h_t + D u_t``."""
    return _SelectiveScan.apply(u, delta, A, B, C, D)


class Mamba(nn.Module):
    """One Mamba block (Gu & Dao, 2023; the ``mamba_ssm`` 1.x ``Mamba`` layer MambaHSI uses): input
    projection to ``expand * d_model`` channels and a gate, causal depthwise convolution of width
    ``d_conv``, SiLU, input-dependent ``delta`` (rank ``ceil(d_model / 16)``), ``B`` and ``C``, the
    selective scan with ``d_state`` states, gate ``SiLU(z)``, output projection. Initialised as
    ``mamba_ssm`` does: ``A = -(1..d_state)`` (S4D-real), ``D = 1``, ``delta`` biased to lie
    log-uniformly in [0.001, 0.1] at the start. Input and output (batch, L, d_model)."""

    def __init__(self, d_model: int, d_state: int = 16, d_conv: int = 4, expand: int = 2):
        super().__init__()
        inner = expand * d_model
        self.rank = math.ceil(d_model / 16)
        self.d_state = d_state
        self.in_proj = nn.Linear(d_model, 2 * inner, bias=False)
        self.conv1d = nn.Conv1d(inner, inner, d_conv, groups=inner, padding=d_conv - 1)
        self.x_proj = nn.Linear(inner, self.rank + 2 * d_state, bias=False)
        self.dt_proj = nn.Linear(self.rank, inner)
        self.A_log = nn.Parameter(torch.log(torch.arange(1, d_state + 1, dtype=torch.float32)).repeat(inner, 1))
        self.D = nn.Parameter(torch.ones(inner))
        self.out_proj = nn.Linear(inner, d_model, bias=False)
        nn.init.uniform_(self.dt_proj.weight, -self.rank ** -0.5, self.rank ** -0.5)
        dt = torch.exp(torch.rand(inner) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        with torch.no_grad():
            self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))  # softplus(bias) = dt

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        length = x.shape[1]
        u, z = self.in_proj(x).chunk(2, dim=-1)
        u = F.silu(self.conv1d(u.transpose(1, 2))[..., :length].transpose(1, 2))  # causal: drop the look-ahead
        dt, B, C = self.x_proj(u).split([self.rank, self.d_state, self.d_state], dim=-1)
        delta = F.softplus(self.dt_proj(dt))
        y = selective_scan(u, delta, -torch.exp(self.A_log), B, C, self.D)
        return self.out_proj(y * F.silu(z))


class _SpatialMamba(nn.Module):
    """MambaHSI's spatial block: Mamba over the pixels of each map in raster order, GroupNorm, SiLU, plus
    the input."""

    def __init__(self, channels: int, groups: int):
        super().__init__()
        self.mamba = Mamba(channels)
        self.norm = nn.GroupNorm(groups, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        sequence = self.mamba(x.flatten(2).transpose(1, 2))  # (N, h*w, C)
        return x + F.silu(self.norm(sequence.transpose(1, 2).reshape(n, c, h, w)))


class _SpectralMamba(nn.Module):
    """MambaHSI's spectral block: each pixel's channels cut into ``tokens`` groups (zero-padded to a
    multiple), Mamba over that sequence of groups, GroupNorm, SiLU, plus the input."""

    def __init__(self, channels: int, tokens: int, groups: int):
        super().__init__()
        self.tokens = tokens
        self.width = math.ceil(channels / tokens)
        self.mamba = Mamba(self.width)
        self.norm = nn.GroupNorm(groups, self.width * tokens)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        padded = F.pad(x, (0, 0, 0, 0, 0, self.tokens * self.width - c))
        pixels = padded.permute(0, 2, 3, 1).reshape(n * h * w, self.tokens, self.width)
        mixed = self.mamba(pixels).reshape(n, h, w, -1).permute(0, 3, 1, 2)
        return x + F.silu(self.norm(mixed))[:, :c]


class _SpatialSpectralMamba(nn.Module):
    """MambaHSI's spatial-spectral block: softmax-weighted sum of the two branches, plus the input."""

    def __init__(self, channels: int, tokens: int, groups: int):
        super().__init__()
        self.spatial = _SpatialMamba(channels, groups)
        self.spectral = _SpectralMamba(channels, tokens, groups)
        self.weights = nn.Parameter(torch.full((2,), 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = torch.softmax(self.weights, dim=0)
        return x + w[0] * self.spatial(x) + w[1] * self.spectral(x)


def _check_mambahsi(patch_size: int, hidden: int, tokens: int, groups: int) -> None:
    """Two 2x2 average poolings need a patch of at least 4x4; GroupNorm needs groups dividing the widths."""
    if patch_size < MambaHSI.MIN_PATCH:
        raise UserError(f"MambaHSI needs patches of at least {MambaHSI.MIN_PATCH}x{MambaHSI.MIN_PATCH} (two 2x2 "
                        f"average poolings), not {patch_size}x{patch_size}; use --patch_size 9 (ours) or any size "
                        f">= {MambaHSI.MIN_PATCH}")
    for name, value in (("hidden", hidden), ("tokens", tokens), ("groups", groups)):
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise UserError(f"MambaHSI: {name} {value!r} must be a whole number >= 1 (the paper: hidden 128, "
                            "tokens 4, groups 4)")
    width = math.ceil(hidden / tokens) * tokens
    if hidden % groups or width % groups or MambaHSI.HEAD % groups:
        raise UserError(f"MambaHSI: groups {groups} must divide hidden {hidden}, its padded spectral width {width} "
                        f"and the head's {MambaHSI.HEAD} channels (GroupNorm); e.g. groups 4")


@register_model("MambaHSI", patch_size=9, epoch=200, batch_size=64, optimizer="adam", lr=3e-4,
                scheduler={"name": "none"},
                citation="Li, Luo, Zhang, Wang & Du, MambaHSI: spatial-spectral Mamba for hyperspectral image "
                         "classification, IEEE TGRS 62, 2024, doi:10.1109/TGRS.2024.3430985")
class MambaHSI(nn.Module):
    """Spatial-spectral Mamba (MambaHSI) run on PxP patches instead of the whole image (Indian Pines: 9x9x200).

    Embedding: 1x1 convolution to ``hidden`` (128) channels, GroupNorm (4 groups), SiLU. Three
    spatial-spectral blocks with 2x2 average pooling between them (9x9 -> 4x4 -> 2x2). Each block
    adds to its input the softmax-weighted sum of a spatial branch (a Mamba layer, d_state 16,
    d_conv 4, expand 2, scanning the map's pixels in raster order, then GroupNorm, SiLU and a
    residual) and a spectral branch (each pixel's 128 channels cut into 4 tokens of 32, a Mamba
    layer scanning those 4 tokens, GroupNorm, SiLU, residual). Head: 1x1 convolution to 128,
    GroupNorm, SiLU, 1x1 convolution to the classes; the logit map is upsampled bilinearly
    (align_corners) to PxP as the authors upsample theirs to the image, and the centre pixel's
    logits are the output.

    Departures. (1) The authors classify the whole image in one pass (their spatial Mamba scans
    every pixel of the scene, one optimiser step per epoch on all training pixels); the engine
    classifies patches, so the spatial scan runs over each patch's pixels in raster order and the
    receptive field is the patch instead of the scene (9x9, our choice: an epoch on Indian Pines
    10% took 2 minutes on 2 busy CPU cores; 11x11 costs about 1.4 times as much). (2) An epoch is
    therefore a pass over the training pixels in batches of 64 (the authors: 200 full-image steps;
    here 200 epochs of smaller steps at the same Adam 3e-4, no weight decay, no schedule). (3) The
    Mamba layer is ours in plain PyTorch (the S6 scan as a blocked parallel scan), not
    ``mamba_ssm``'s fused CUDA kernel: same function, same initialisation. (4) The authors stretch
    each band between its 2nd and 98th percentiles over the whole image and quantise it to 8 bits;
    the engine standardises each band on the training pixels. (5) Their protocol, 30 training and
    10 validation pixels per class and the weights of the best validation OA, is a command-line
    choice: ``--sampling_mode fixed --training_sample 30 --val_per_class 10 --keep_best val_oa``.

    Parameters on Indian Pines (200 bands, 16 classes): 425,558, independent of the patch size, the
    same as the authors' network at hidden 128 (by hand: three blocks of 126,914 = spatial Mamba
    116,480 + spectral Mamba 9,920 + two GroupNorms 512 + 2 fusion weights; embedding 25,984; head
    18,832); the paper's own count was not seen here.
    """

    MIN_PATCH = 4
    HEAD = 128

    def __init__(self, n_bands: int, n_classes: int, patch_size: int = 9, *, hidden: int = 128, tokens: int = 4,
                 groups: int = 4):
        super().__init__()
        _check_mambahsi(patch_size, hidden, tokens, groups)
        self.patch_size = patch_size
        self.embedding = nn.Sequential(nn.Conv2d(n_bands, hidden, 1), nn.GroupNorm(groups, hidden), nn.SiLU())
        self.blocks = nn.Sequential(
            _SpatialSpectralMamba(hidden, tokens, groups), nn.AvgPool2d(2),
            _SpatialSpectralMamba(hidden, tokens, groups), nn.AvgPool2d(2),
            _SpatialSpectralMamba(hidden, tokens, groups),
        )
        self.head = nn.Sequential(nn.Conv2d(hidden, self.HEAD, 1), nn.GroupNorm(groups, self.HEAD), nn.SiLU(),
                                  nn.Conv2d(self.HEAD, n_classes, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        logits = self.head(self.blocks(self.embedding(x)))  # (N, K, P // 4, P // 4)
        side = x.shape[-1]
        full = F.interpolate(logits, size=(side, side), mode="bilinear", align_corners=True)
        return full[:, :, side // 2, side // 2]
