"""Truncated signed distance maps of label maps, the regression target of the distance-transform
multitask model (Audebert, Boulch, Le Saux & Lefèvre, Distance transform regression for
spatially-aware deep semantic segmentation, CVIU 189, 102809, 2019).

For each class ``k`` and each labelled pixel, the map holds the Euclidean distance to the nearest
pixel on the other side of the class's boundary: positive inside class ``k`` (distance to the
nearest pixel labelled with another class), negative outside (distance to the nearest pixel of
class ``k``). A pixel next to the boundary is 1 pixel away. Distances are truncated at
``truncation`` pixels and divided by it, so maps lie in [-1, 1]. Pixels labelled
:data:`~deephyperx.scene.IGNORE` are unknown: they count as neither side (a crop's unlabelled
border does not make a class boundary) and their value is 0 (the loss leaves them out). When
the other side is absent from the image, distances saturate at the truncation.
"""
from __future__ import annotations

from typing import Union

import numpy as np
import torch
from scipy.ndimage import distance_transform_edt

from deephyperx.errors import UserError
from deephyperx.scene import IGNORE

LabelArray = Union[np.ndarray, torch.Tensor]


def _distance_to(targets: np.ndarray, truncation: float) -> np.ndarray:
    """Euclidean distance of every pixel to the nearest ``True`` pixel of ``targets`` (capped at
    ``truncation``; everywhere ``truncation`` when there is none)."""
    if not targets.any():
        return np.full(targets.shape, truncation, dtype=np.float64)
    return np.minimum(distance_transform_edt(~targets), truncation)


def image_distance_maps(labels: np.ndarray, n_classes: int, truncation: float) -> np.ndarray:
    """The (K, H, W) truncated signed distance maps of one (H, W) label map, in [-1, 1].

    One distance transform per class present: ``reach[k]`` is every pixel's distance to class k.
    Outside class k the map is ``-reach[k]``; inside, the distance to the nearest other labelled
    class is the smallest ``reach[j]`` over the classes j other than the pixel's own."""
    reach = np.stack([_distance_to(labels == k, truncation) for k in range(n_classes)])
    signed = -reach
    rows, cols = np.nonzero(labels != IGNORE)
    own = labels[rows, cols]
    others = reach[:, rows, cols]
    others[own, np.arange(len(own))] = np.inf
    signed[own, rows, cols] = np.minimum(others.min(0), truncation)
    signed[:, labels == IGNORE] = 0.0
    return signed / truncation


def signed_distance_maps(labels: LabelArray, n_classes: int, truncation: float) -> LabelArray:
    """Truncated signed distance maps (N, K, H, W) float32 in [-1, 1] of a batch of label maps
    (N, H, W) with ids 0..K-1 and IGNORE; a tensor in gives a tensor (on the same device) out."""
    if truncation <= 0:
        raise UserError(f"distance truncation {truncation} must be a positive number of pixels")
    as_tensor = isinstance(labels, torch.Tensor)
    array = labels.detach().cpu().numpy() if as_tensor else np.asarray(labels)
    if array.ndim != 3:
        raise ValueError(f"labels must be (N, H, W), not of shape {array.shape}")
    maps = np.zeros((array.shape[0], n_classes) + array.shape[1:], dtype=np.float32)
    for n, label_map in enumerate(array):
        maps[n] = image_distance_maps(label_map, n_classes, float(truncation))
    return torch.from_numpy(maps).to(labels.device) if as_tensor else maps
