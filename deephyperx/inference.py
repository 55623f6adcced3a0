"""Full-scene inference, tiled and batched so that memory stays bounded.

Centre-pixel models see one patch per pixel, a batch of pixels at a time. Dense models
are slid over the scene with a stride; overlapping softmax outputs are averaged.
"""
from __future__ import annotations

from typing import Any, Optional

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from deephyperx.sampling import PatchSampler, patch_extent
from deephyperx.steps import logits_of


@torch.no_grad()
def predict_centre(model: nn.Module, sampler: PatchSampler, batch_size: int, device: torch.device,
                   mask: Optional[np.ndarray] = None) -> np.ndarray:
    """Class of every pixel (or of ``mask``'s pixels; others get -1) by a centre-pixel model."""
    model.eval()
    height, width = sampler.shape
    prediction = np.full((height, width), -1, dtype=np.int64)
    rows, cols = np.nonzero(mask) if mask is not None else np.divmod(np.arange(height * width), width)
    rows_t, cols_t = torch.as_tensor(rows), torch.as_tensor(cols)
    for start in range(0, len(rows), batch_size):
        r, c = rows_t[start:start + batch_size], cols_t[start:start + batch_size]
        inputs = [x.to(device) for x in sampler.patches(r, c)]
        prediction[r.numpy(), c.numpy()] = logits_of(model(*inputs)).argmax(1).cpu().numpy()
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
                  device: torch.device, stride: int = 1) -> np.ndarray:
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
        probs = F.softmax(logits_of(model(*[x.to(device) for x in sampler.patches(r, c)])), dim=1).cpu()
        rr = (r.view(-1, 1, 1) + offsets.view(1, p, 1)).expand(-1, p, p)
        cc = (c.view(-1, 1, 1) + offsets.view(1, 1, p)).expand(-1, p, p)
        for k in range(n_classes):
            scores[k].index_put_((rr, cc), probs[:, k], accumulate=True)
    scores = scores[:, before:before + height, before:before + width]
    return scores.argmax(0).numpy().astype(np.int64)


def predict_pixels_sklearn(estimator: Any, cube: np.ndarray, rows_per_chunk: int = 64) -> np.ndarray:
    """Class of every pixel by a scikit-learn estimator on spectra, a band of rows at a time."""
    height, width, bands = cube.shape
    prediction = np.empty((height, width), dtype=np.int64)
    for r in range(0, height, rows_per_chunk):
        block = np.asarray(cube[r:r + rows_per_chunk], dtype=np.float32)
        prediction[r:r + rows_per_chunk] = estimator.predict(block.reshape(-1, bands)).reshape(block.shape[:2])
    return prediction
