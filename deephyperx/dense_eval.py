"""Dense (fully convolutional) evaluation of centre-pixel models.

A centre-pixel classifier slid over a scene recomputes every feature of a pixel once for each
patch that contains it. When every spatial operation of the network is an unpadded convolution
or pooling, the network can instead run once over a whole tile and give, at each position, the
logits the patch starting there would get (the shift-and-stitch / "a trous" rewriting):

* a valid convolution stays a convolution over the tile;
* a layer of spatial stride s runs with stride 1, and every later spatial layer is dilated by s
  (dilations multiply down the network), so that all the shifted sub-grids are computed at once;
* the final flatten + Linear over a (C, [D,] k, k) map becomes a convolution of kernel k with the
  accumulated dilation, and later Linear layers become 1x1 convolutions;
* batch norm (eval mode), ReLU, dropout (eval mode) act per position and carry over unchanged.

Output position (i, j) of a tile read from ``sampler.padded`` at (r0, c0) is the patch whose top
left padded pixel is (r0 + i, c0 + j), i.e. the patch centred on scene pixel (r0 + i, c0 + j) for
odd and even patch sizes alike (see :func:`deephyperx.sampling.patch_extent`); because the tile is
cut from the same reflection-padded tensor as the patches, border pixels match too.

A model opts in with a method ``dense_logits(*tiles) -> (N, K, h, w)`` written with the helpers
below (and optionally ``dense_exact() -> bool`` when only some of its configurations qualify).
In the zoo: hamida (patches of at least 5x5), li, he, chen, sharma, HybridSN and liu (its
classifier branch) go dense. Models listed in :data:`NOT_DENSE` are evaluated patch by patch, in
batches, and say why: nn, hu, mou and boulch read single spectra and luo's first layer already
covers the whole patch (nothing to share), SSRN zero-pads inside the patch (not exact); lee is a
dense-output model and is slid over the scene by :func:`deephyperx.inference.predict_dense`.

Tiles are sized from the memory their pass keeps alive, measured on the meta device
(:func:`tile_bytes`), and :func:`mac_accounting` counts multiply-adds of both paths with
torch's FlopCounterMode, also on the meta device.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional, Sequence

import numpy as np
import torch
from torch import nn
from torch.func import functional_call
from torch.nn import functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten
from torch.utils.flop_counter import FlopCounterMode

from deephyperx.errors import UserError
from deephyperx.sampling import PatchSampler

#: Default bound on the estimated peak memory of one dense tile's activations (:func:`tile_bytes`), bytes.
DEFAULT_TILE_BYTES = 96 * 2 ** 20

#: Peak memory of a dense pass over the tensors it keeps alive, measured (maximum resident size on
#: CPU, oneDNN convolutions) at 1.0-1.8 for the zoo's models: oneDNN reorders inputs and outputs
#: into its blocked layouts. Planning with 2 keeps a tile within its budget.
SCRATCH_FACTOR = 2.0

_NOTHING_TO_SHARE = ("patch size 1: no neighbouring pixels, so no features to share; a batch of spectra "
                     "(one gather) already is the dense pass (ratio 1)")

#: Registered centre-pixel models evaluated patch by patch, and why a tile-wide pass cannot help
#: or cannot be exact.
NOT_DENSE: dict[str, str] = {
    "nn": _NOTHING_TO_SHARE,
    "hu": _NOTHING_TO_SHARE,
    "mou": _NOTHING_TO_SHARE,
    "boulch": _NOTHING_TO_SHARE,
    "luo": "Conv1 spans the whole PxP patch and leaves one spatial position per patch, so every layer "
           "after it works per pixel: a tile-wide pass computes exactly the patch path's multiply-adds "
           "(ratio 1), nothing is shared",
    "SSRN": "its spatial residual blocks zero-pad their 3x3 convolutions ('same') inside the patch, so a "
            "pixel's features depend on where the patch border falls (and the average pooling spans the "
            "padded maps); a tile-wide pass cannot reproduce the patch outputs",
    "SpectralFormer_pixel": _NOTHING_TO_SHARE,
}
#: Models that attend to, pool over or scan across every pixel of their patch: each feature depends on the
#: whole patch, so a tile-wide pass has nothing exact to share.
for _name in ("SSFTT", "A2S2K", "DBDA", "SpectralFormer", "GAHT", "MambaHSI"):
    NOT_DENSE[_name] = ("its attention, global pooling or state-space scan runs over every pixel of the patch, so "
                        "each feature depends on the whole patch: a tile-wide pass cannot reproduce the patch outputs")


# ----- layers rewritten for a tile --------------------------------------------------------------

def convolve(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor], stride: Sequence[int],
             padding: Sequence[int], dilation: Sequence[int], groups: int = 1) -> torch.Tensor:
    """A 2D or 3D convolution (explicit per-axis arguments). On CPU it calls oneDNN directly:
    PyTorch's dispatcher sends a one-sample, single-threaded convolution with 1x1 spatial kernels
    or small inputs to its native loop, several times slower on the large tiles of a dense pass."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() \
            and torch.backends.mkldnn.enabled:
        return torch.mkldnn_convolution(x, weight, bias, list(padding), list(stride), list(dilation), groups)
    conv = F.conv3d if x.dim() == 5 else F.conv2d
    return conv(x, weight, bias, tuple(stride), tuple(padding), tuple(dilation), groups)


def _spatial_stride(layer: nn.Module) -> int:
    stride = layer.stride if isinstance(layer.stride, tuple) else (layer.stride,) * 2
    if stride[-1] != stride[-2]:
        raise ValueError(f"{layer}: dense evaluation needs the same stride along rows and columns")
    return int(stride[-1])


def dense_conv(layer: nn.Conv2d | nn.Conv3d, x: torch.Tensor, dilation: int) -> tuple[torch.Tensor, int]:
    """``layer`` applied to a tile with spatial stride 1 and its spatial dilation multiplied by
    ``dilation``; returns the output and the dilation of the layers after it."""
    if isinstance(layer.padding, str) or any(layer.padding[-2:]) or layer.padding_mode != "zeros":
        raise ValueError(f"{layer}: a spatially padded convolution cannot be evaluated densely")
    stride = _spatial_stride(layer)
    dims = tuple(layer.dilation)
    spatial_dilation = (dims[-2] * dilation, dims[-1] * dilation)
    leading = len(dims) - 2  # the spectral axis of a Conv3d keeps its stride, padding and dilation
    y = convolve(x, layer.weight, layer.bias, (*layer.stride[:leading], 1, 1), (*layer.padding[:leading], 0, 0),
                 (*dims[:leading], *spatial_dilation), layer.groups)
    return y, dilation * stride


def dense_max_pool(layer: nn.MaxPool2d | nn.MaxPool3d, x: torch.Tensor, dilation: int) -> tuple[torch.Tensor, int]:
    """Max pooling ``layer`` over a tile with spatial stride 1 and dilation ``dilation``; returns the
    output and the dilation of the layers after it."""
    size = 3 if isinstance(layer, nn.MaxPool3d) else 2
    as_tuple = lambda v: tuple(v) if isinstance(v, (tuple, list)) else (v,) * size  # noqa: E731
    kernel, stride, padding, dil = (as_tuple(v) for v in (layer.kernel_size, layer.stride, layer.padding,
                                                             layer.dilation))
    if any(padding) or layer.ceil_mode or stride[-1] != stride[-2]:
        raise ValueError(f"{layer}: only unpadded, floor-mode, square-stride pooling can be evaluated densely")
    spatial = (dil[-2] * dilation, dil[-1] * dilation)
    y = separable_max(x, kernel, (*stride[:-2], 1, 1), (*dil[:-2], *spatial))
    return y, dilation * stride[-1]


def separable_max(x: torch.Tensor, kernel: Sequence[int], stride: Sequence[int],
                  dilation: Sequence[int]) -> torch.Tensor:
    """Unpadded max pooling over the last ``len(kernel)`` axes, one axis at a time, as the maximum of
    shifted strided views: the same values as max_pool, several times faster on CPU for the large
    dilated windows of a dense pass (a box maximum is separable)."""
    first = x.dim() - len(kernel)
    for axis, (k, s, e) in enumerate(zip(kernel, stride, dilation), start=first):
        count = (x.shape[axis] - (k - 1) * e - 1) // s + 1
        index = [slice(None)] * x.dim()
        out = None
        for j in range(k):
            index[axis] = slice(j * e, j * e + (count - 1) * s + 1, s)
            part = x[tuple(index)]
            out = part if out is None else torch.maximum(out, part)
        x = out
    return x


def dense_linear(layer: nn.Linear, x: torch.Tensor, dilation: int) -> torch.Tensor:
    """The flatten + ``layer`` that ends a patch network, as a convolution over the tile: the
    per-position features of ``x`` (N, C, [D,] H, W) meet a k x k kernel dilated by ``dilation``."""
    x = x.flatten(1, -3)
    features = x.shape[1]
    side = math.isqrt(layer.in_features // features)
    if features * side * side != layer.in_features:
        raise ValueError(f"{layer}: {layer.in_features} inputs are not {features} features on a square map")
    weight = layer.weight.view(layer.out_features, features, side, side)
    return convolve(x, weight, layer.bias, (1, 1), (0, 0), (dilation, dilation))


def pointwise_linear(layer: nn.Linear, x: torch.Tensor) -> torch.Tensor:
    """``layer`` applied at every position of a (N, C, H, W) map (a 1x1 convolution)."""
    return convolve(x, layer.weight[:, :, None, None], layer.bias, (1, 1), (0, 0), (1, 1))


# ----- which models go dense --------------------------------------------------------------------

def supports_dense(model: nn.Module) -> bool:
    """Whether ``model`` has an exact tile-wide pass (a ``dense_logits`` method, and
    ``dense_exact()`` true when the model defines it)."""
    if not callable(getattr(model, "dense_logits", None)):
        return False
    exact = getattr(model, "dense_exact", None)
    return bool(exact()) if callable(exact) else True


# ----- tiles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Tile:
    """Scene rows [row, row + height) and columns [col, col + width) evaluated in one dense pass."""

    row: int
    col: int
    height: int
    width: int


def tile_inputs(sampler: PatchSampler, tile: Tile) -> list[torch.Tensor]:
    """The (1, C, height + P - 1, width + P - 1) slices of every padded raster that ``tile``'s patches read."""
    extra = sampler.patch_size - 1
    return [p[tile.row:tile.row + tile.height + extra, tile.col:tile.col + tile.width + extra]
            .permute(2, 0, 1).unsqueeze(0).contiguous() for p in sampler.padded]


@torch.no_grad()
def dense_tile_logits(model: nn.Module, sampler: PatchSampler, tile: Tile, device: torch.device) -> torch.Tensor:
    """Float32 logits (K, height, width) on CPU of every pixel of ``tile`` in one dense pass."""
    out = model.dense_logits(*[x.to(device) for x in tile_inputs(sampler, tile)])
    if out.shape[-2] < tile.height or out.shape[-1] < tile.width:
        raise RuntimeError(f"{type(model).__name__}.dense_logits gave a {tuple(out.shape[-2:])} map for a "
                           f"{tile.height}x{tile.width} tile; its receptive field exceeds the patch")
    return out[0, :, :tile.height, :tile.width].float().cpu()


class _LiveBytes(TorchDispatchMode):
    """Track the bytes of the tensors that operations allocate while they are alive (Python frees
    them when their last reference goes) and record the peak: the activation memory of a pass.
    Views and in-place results allocate nothing; the model's parameters are not counted."""

    def __init__(self, start: int = 0) -> None:
        super().__init__()
        self.live = self.peak = start

    def _release(self, size: int) -> None:
        self.live -= size

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        if getattr(func, "is_view", False):
            return out
        inputs = {id(t) for t in tree_flatten((args, kwargs))[0] if isinstance(t, torch.Tensor)}
        for t in tree_flatten(out)[0]:
            if isinstance(t, torch.Tensor) and id(t) not in inputs:
                size = t.numel() * t.element_size()
                self.live += size
                weakref.finalize(t, self._release, size)
        self.peak = max(self.peak, self.live)
        return out


class _Method(nn.Module):
    """A module whose forward is another module's method (so that functional_call can swap its state)."""

    def __init__(self, model: nn.Module, method: str):
        super().__init__()
        self.model = model
        self.method = method

    def forward(self, *inputs: torch.Tensor) -> Any:
        return getattr(self.model, self.method)(*inputs)


def meta_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The model's parameters and buffers as meta tensors (shapes only), keyed for :func:`on_meta`."""
    return {f"model.{name}": torch.empty_like(t, device="meta")
            for name, t in [*model.named_parameters(), *model.named_buffers()]}


def on_meta(model: nn.Module, method: str, inputs: Sequence[torch.Tensor],
            state: Optional[dict[str, torch.Tensor]] = None) -> Any:
    """``model.<method>(*inputs)`` with parameters, buffers and inputs on the meta device: shapes and
    operations only, no arithmetic and no memory. ``state`` (from :func:`meta_state`) and meta
    ``inputs`` are used as they are, so that nothing is allocated besides the method's own work."""
    state = meta_state(model) if state is None else state
    inputs = [t if t.is_meta else torch.empty_like(t, device="meta") for t in inputs]
    with torch.no_grad():
        return functional_call(_Method(model, method), state, tuple(inputs))


def live_bytes(model: nn.Module, channels: Sequence[int], patch_size: int, height: int, width: int) -> int:
    """Peak bytes of the tensors alive during the dense pass over a height x width tile (its input
    slices included, the model's parameters left out), found by running it on the meta device and
    remembered per architecture (class and parameter shapes), tile and input."""
    key = (_architecture(model), tuple(channels), patch_size, height, width)
    if key not in _LIVE_BYTES:
        if len(_LIVE_BYTES) >= 4096:
            _LIVE_BYTES.clear()
        extra = patch_size - 1
        inputs = [torch.empty(1, c, height + extra, width + extra, device="meta") for c in channels]
        state = meta_state(model)
        with _LiveBytes(sum(t.numel() * t.element_size() for t in inputs)) as probe:
            on_meta(model, "dense_logits", inputs, state)
        _LIVE_BYTES[key] = probe.peak
    return _LIVE_BYTES[key]


_LIVE_BYTES: dict[tuple, int] = {}


def _architecture(model: nn.Module) -> tuple:
    """What a dense pass's memory depends on: the model's class and its parameters' and buffers' shapes."""
    return (type(model).__module__, type(model).__qualname__,
            tuple((name, tuple(t.shape), t.dtype) for name, t in [*model.named_parameters(), *model.named_buffers()]))


def tile_bytes(model: nn.Module, channels: Sequence[int], patch_size: int, height: int, width: int) -> int:
    """Estimated peak memory of the dense pass over a height x width tile, the quantity a tile budget
    (``tile_bytes`` of :func:`deephyperx.inference.centre_logits`) bounds: :func:`live_bytes` times
    :data:`SCRATCH_FACTOR` for the convolution backend's own copies."""
    return int(SCRATCH_FACTOR * live_bytes(model, channels, patch_size, height, width))


def plan_tiles(model: nn.Module, sampler: PatchSampler, box: tuple[int, int, int, int],
               budget: int = DEFAULT_TILE_BYTES) -> list[Tile]:
    """Tiles covering ``box`` (row0, row1, col0, col1) whose :func:`tile_bytes` fit in ``budget``.

    The whole box when it fits; otherwise the tile shape with the most pixels among the box's
    width, its half, its quarter... each as tall as the budget allows. Every tile re-reads a halo
    of P - 1 rows and columns, and its inner layers a halo of their receptive field, so tiles as
    large and as square as memory allows waste the least."""
    row0, row1, col0, col1 = box
    channels = [p.shape[-1] for p in sampler.padded]
    fits = lambda h, w: tile_bytes(model, channels, sampler.patch_size, h, w) <= budget  # noqa: E731
    height, width = _tile_shape(fits, row1 - row0, col1 - col0)
    if height == 0:
        need = tile_bytes(model, channels, sampler.patch_size, 1, 1)
        raise UserError(f"tile budget {budget} bytes is too small for even one pixel of dense evaluation "
                        f"(it needs {need}); raise the tile budget")
    height, width = _even(row1 - row0, height), _even(col1 - col0, width)
    return [Tile(r, c, min(height, row1 - r), min(width, col1 - c))
            for r in range(row0, row1, height) for c in range(col0, col1, width)]


def _even(length: int, size: int) -> int:
    """The smallest tile size that covers ``length`` in as few tiles as ``size`` does (even tiles)."""
    count = -(-length // size)
    return -(-length // count)


def _tile_shape(fits: Callable[[int, int], bool], height: int, width: int) -> tuple[int, int]:
    """(rows, columns) of the largest tile that ``fits`` among widths ``width``, ``width / 2``, ...
    ((0, 0) if not even one pixel fits); stops once halving the width no longer helps."""
    if fits(height, width):
        return height, width
    best = (0, 0)
    while True:
        rows = _largest(lambda h: fits(h, width), 1, height) if fits(1, width) else 0
        if rows * width < best[0] * best[1]:
            return best
        best = max(best, (rows, width), key=lambda shape: shape[0] * shape[1])
        if width == 1:
            return best
        width = (width + 1) // 2


def _largest(fits: Callable[[int], bool], low: int, high: int) -> int:
    """Largest n in [low, high] with fits(n), given fits(low) and monotone fits (binary search)."""
    while low < high:
        middle = (low + high + 1) // 2
        low, high = (middle, high) if fits(middle) else (low, middle - 1)
    return low


@torch.no_grad()
def dense_centre_logits(model: nn.Module, sampler: PatchSampler, device: torch.device, rows: np.ndarray,
                        cols: np.ndarray, budget: int = DEFAULT_TILE_BYTES,
                        progress: Optional[Callable[[int, int], None]] = None) -> torch.Tensor:
    """Float32 logits (n, K) on CPU of pixels (rows, cols), by dense passes over tiles of their
    bounding box (tiles holding none of the pixels are skipped). ``model`` must be in eval mode;
    ``progress(done, total)`` hears of the pixels done after each tile."""
    if len(rows) == 0:
        return torch.empty(0, 0)
    box = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
    position = np.full((box[1] - box[0], box[3] - box[2]), -1, dtype=np.int32 if len(rows) < 2 ** 31 else np.int64)
    position[rows - box[0], cols - box[2]] = np.arange(len(rows))
    out: Optional[torch.Tensor] = None
    done = 0
    for tile in plan_tiles(model, sampler, box, budget):
        r, c = tile.row - box[0], tile.col - box[2]
        index = position[r:r + tile.height, c:c + tile.width]
        keep = index >= 0
        if not keep.any():
            continue
        logits = dense_tile_logits(model, sampler, tile, device)
        if out is None:
            out = torch.empty(len(rows), logits.shape[0])
        out[torch.from_numpy(index[keep])] = logits[:, torch.from_numpy(keep)].T
        done += int(keep.sum())
        if progress is not None:
            progress(done, len(rows))
    return out


# ----- multiply-add accounting -------------------------------------------------------------------

def count_macs(call: Callable[[], Any]) -> int:
    """Multiply-adds of the convolutions and matrix products ``call()`` runs (FlopCounterMode's
    flops, which count a multiply-add as 2)."""
    with FlopCounterMode(display=False) as counter:
        call()
    return counter.get_total_flops() // 2


@dataclass(frozen=True)
class MacCount:
    """Multiply-adds per pixel of patch-by-patch and of dense evaluation, and their ratio."""

    macs_patch_per_pixel: float
    macs_dense_per_pixel: float
    mac_ratio: float
    dense: bool
    tile: tuple[int, int]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mac_accounting(model: nn.Module, n_bands: int, patch_size: int, height: int = 145,
                   width: int = 145) -> MacCount:
    """Multiply-adds per pixel of ``model`` (eval mode) evaluated patch by patch and densely over one
    height x width tile (Indian Pines' 145 x 145 by default; the tile's reflected border is counted,
    so the ratio is what a whole-scene pass gains). A model without an exact dense pass is
    evaluated patch by patch either way (ratio 1). Shapes only: runs on the meta device. For
    models whose forward takes the cube alone (every model of the zoo)."""
    was_training = model.training
    model.eval()
    try:
        patches = torch.empty(2, n_bands, patch_size, patch_size, device="meta")
        per_patch = count_macs(lambda: on_meta(model, "forward", [patches])) / 2
        dense = supports_dense(model)
        if dense:
            tile = torch.empty(1, n_bands, height + patch_size - 1, width + patch_size - 1, device="meta")
            per_pixel = count_macs(lambda: on_meta(model, "dense_logits", [tile])) / (height * width)
        else:
            per_pixel = per_patch
    finally:
        model.train(was_training)
    return MacCount(per_patch, per_pixel, per_patch / per_pixel if per_pixel else 1.0, dense, (height, width))
