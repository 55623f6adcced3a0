"""Full-scene inference, tiled and batched so that memory stays bounded.

Centre-pixel models see one patch per pixel, a batch of pixels at a time, or, when they have an
exact fully convolutional form, one dense pass per tile (:mod:`deephyperx.dense_eval`).
Models with dense outputs (a label per patch pixel) are slid over the scene with a stride;
overlapping softmax outputs are averaged.

Each takes an optional ``progress(done, total)`` callback (:data:`~deephyperx.progress.ProgressCallback`),
called as the pixels (or windows) are done, for the console's time left.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.dense_eval import DEFAULT_TILE_BYTES, dense_centre_logits, supports_dense
from deephyperx.progress import ProgressCallback
from deephyperx.sampling import PatchSampler, patch_extent
from deephyperx.steps import logits_of


def mask_pixels(shape: tuple[int, int], mask: Optional[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Rows and columns of ``mask``'s pixels in np.nonzero order (all pixels, row-major, if None)."""
    height, width = shape
    if mask is None:
        return np.divmod(np.arange(height * width), width)
    return np.nonzero(mask)


@torch.no_grad()
def patch_logits(model: nn.Module, sampler: PatchSampler, batch_size: int, device: torch.device,
                 rows: np.ndarray, cols: np.ndarray, progress: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Float32 logits (n, K) on CPU of the pixels (rows, cols), one batch of patches at a time."""
    rows_t, cols_t = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
    parts = []
    for start in range(0, len(rows_t), batch_size):
        r, c = rows_t[start:start + batch_size], cols_t[start:start + batch_size]
        inputs = [x.to(device) for x in sampler.patches(r, c)]
        parts.append(logits_of(model(*inputs)).float().cpu())
        if progress is not None:
            progress(start + len(r), len(rows_t))
    return torch.cat(parts) if parts else torch.empty(0, 0)


@torch.no_grad()
def centre_logits(model: nn.Module, sampler: PatchSampler, batch_size: int, device: torch.device,
                  mask: Optional[np.ndarray] = None, *, dense: Optional[bool] = None,
                  tile_bytes: int = DEFAULT_TILE_BYTES, progress: Optional[ProgressCallback] = None) -> torch.Tensor:
    """Float32 logits (n, K) on CPU of ``mask``'s pixels in np.nonzero order (every pixel in
    row-major order when ``mask`` is None) by a centre-pixel model in eval mode.

    Models with an exact fully convolutional pass (:func:`deephyperx.dense_eval.supports_dense`)
    run it over tiles of the mask's bounding box, each tile's largest operation bounded by
    ``tile_bytes``; the others run batches of ``batch_size`` patches. ``dense`` forces one path
    (True on a model without a dense pass is an error); None picks the dense one when available."""
    model.eval()
    rows, cols = mask_pixels(sampler.shape, mask)
    use_dense = supports_dense(model) if dense is None else dense
    if use_dense and not supports_dense(model):
        raise ValueError(f"{type(model).__name__} has no exact dense evaluation; pass dense=None or False")
    if use_dense:
        return dense_centre_logits(model, sampler, device, rows, cols, tile_bytes, progress)
    return patch_logits(model, sampler, batch_size, device, rows, cols, progress)


@torch.no_grad()
def predict_centre(model: nn.Module, sampler: PatchSampler, batch_size: int, device: torch.device,
                   mask: Optional[np.ndarray] = None, progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Class of every pixel (or of ``mask``'s pixels; others get -1) by a centre-pixel model."""
    prediction = np.full(sampler.shape, -1, dtype=np.int64)
    rows, cols = mask_pixels(sampler.shape, mask)
    if len(rows):
        logits = centre_logits(model, sampler, batch_size, device, mask, progress=progress)
        prediction[rows, cols] = logits.argmax(1).numpy()
    return prediction


def window_centres(length: int, patch_size: int, stride: int) -> np.ndarray:
    """Centres of sliding windows along one axis so that every pixel is covered."""
    before, after = patch_extent(patch_size)
    stride = max(1, min(stride, patch_size))
    first, last = min(before, length - 1), max(length - 1 - after, 0)
    centres = np.arange(first, last + 1, stride)
    if len(centres) == 0 or centres[-1] != last:
        centres = np.append(centres, last)
    return centres


@torch.no_grad()
def predict_dense(model: nn.Module, sampler: PatchSampler, n_classes: int, batch_size: int,
                  device: torch.device, stride: int = 1, progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Class map of a dense model slid over the scene, averaging overlapping softmax outputs
    (summing them gives the same argmax, so no per-pixel count is kept)."""
    model.eval()
    height, width = sampler.shape
    p = sampler.patch_size
    before, _ = patch_extent(p)
    grid_r, grid_c = np.meshgrid(window_centres(height, p, stride), window_centres(width, p, stride), indexing="ij")
    centres_r, centres_c = torch.as_tensor(grid_r.ravel()), torch.as_tensor(grid_c.ravel())
    scores = torch.zeros(n_classes, height + p - 1, width + p - 1)
    offsets = torch.arange(p)
    for start in range(0, len(centres_r), batch_size):
        r, c = centres_r[start:start + batch_size], centres_c[start:start + batch_size]
        logits = logits_of(model(*[x.to(device) for x in sampler.patches(r, c)]))
        probs = F.softmax(logits.float(), dim=1).cpu()  # float32 sums, also under bfloat16 autocast
        rr = (r.view(-1, 1, 1) + offsets.view(1, p, 1)).expand(-1, p, p)
        cc = (c.view(-1, 1, 1) + offsets.view(1, 1, p)).expand(-1, p, p)
        for k in range(n_classes):
            scores[k].index_put_((rr, cc), probs[:, k], accumulate=True)
        if progress is not None:
            progress(start + len(r), len(centres_r))
    scores = scores[:, before:before + height, before:before + width]
    return scores.argmax(0).numpy().astype(np.int64)


def predict_pixels_sklearn(estimator: Any, cube: np.ndarray, rows_per_chunk: int = 64,
                           progress: Optional[ProgressCallback] = None) -> np.ndarray:
    """Class of every pixel by a scikit-learn estimator on spectra, a band of rows at a time."""
    height, width, bands = cube.shape
    prediction = np.empty((height, width), dtype=np.int64)
    for r in range(0, height, rows_per_chunk):
        block = np.asarray(cube[r:r + rows_per_chunk], dtype=np.float32)
        prediction[r:r + rows_per_chunk] = estimator.predict(block.reshape(-1, bands)).reshape(block.shape[:2])
        if progress is not None:
            progress(min(r + rows_per_chunk, height) * width, height * width)
    return prediction
