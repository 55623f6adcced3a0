"""Truncated signed distance maps (the distance-transform multitask target) on hand-made cases."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from deephyperx.distance import signed_distance_maps
from deephyperx.errors import UserError
from deephyperx.scene import IGNORE


def test_a_row_of_two_classes_by_hand():
    labels = np.array([[[0, 0, 0, 1, 1, 1]]])
    maps = signed_distance_maps(labels, 2, truncation=2)
    # class 0: inside, distances to the first class-1 pixel 3, 2, 1 -> truncated at 2 -> /2; outside -1, -2, -3
    np.testing.assert_allclose(maps[0, 0, 0], [1.0, 1.0, 0.5, -0.5, -1.0, -1.0])
    np.testing.assert_allclose(maps[0, 1, 0], [-1.0, -1.0, -0.5, 0.5, 1.0, 1.0])
    assert maps.shape == (1, 2, 1, 6) and maps.dtype == np.float32


def test_a_square_uses_euclidean_distances():
    labels = np.zeros((1, 5, 5), dtype=np.int64)
    labels[0, 1:4, 1:4] = 1
    maps = signed_distance_maps(labels, 2, truncation=4)[0, 1] * 4
    assert maps[2, 2] == pytest.approx(2.0)  # the centre: two steps to the background
    assert maps[1, 1] == pytest.approx(1.0) and maps[1, 2] == pytest.approx(1.0)  # the square's rim
    assert maps[0, 0] == pytest.approx(-math.sqrt(2))  # a corner: diagonal to the square's corner
    assert maps[0, 2] == pytest.approx(-1.0)


def test_ignored_pixels_are_zero_and_make_no_boundary():
    labels = np.array([[[0, 0, IGNORE, 1, 1]]])
    maps = signed_distance_maps(labels, 2, truncation=10) * 10
    assert maps[0, 0, 0, 2] == 0 and maps[0, 1, 0, 2] == 0
    # the labelled neighbours of the gap are two pixels apart: the unlabelled pixel is neither side
    np.testing.assert_allclose(maps[0, 0, 0], [3, 2, 0, -2, -3])
    # a crop whose border is unlabelled: class 0 touches nothing else, so it saturates
    border = np.full((1, 4, 4), IGNORE)
    border[0, 1:3, 1:3] = 0
    inner = signed_distance_maps(border, 1, truncation=3)[0, 0]
    assert (inner[1:3, 1:3] == 1).all() and (inner[border[0] == IGNORE] == 0).all()


def test_absent_and_everywhere_classes_saturate():
    labels = np.zeros((1, 3, 4), dtype=np.int64)
    maps = signed_distance_maps(labels, 3, truncation=5)
    assert (maps[0, 0] == 1).all() and (maps[0, 1] == -1).all() and (maps[0, 2] == -1).all()


def test_two_classes_without_ignored_pixels_are_opposite_and_bounded():
    labels = (np.random.default_rng(0).random((2, 16, 16)) > 0.6).astype(np.int64)
    maps = signed_distance_maps(labels, 2, truncation=3)
    np.testing.assert_allclose(maps[:, 0], -maps[:, 1])
    assert maps.min() >= -1 and maps.max() <= 1 and not (maps == 0).any()


def test_tensors_in_give_tensors_out():
    labels = torch.tensor([[[0, 1], [1, IGNORE]]])
    maps = signed_distance_maps(labels, 2, truncation=1)
    assert isinstance(maps, torch.Tensor) and maps.dtype == torch.float32 and maps.shape == (1, 2, 2, 2)
    assert maps[0, 0].tolist() == [[1.0, -1.0], [-1.0, 0.0]]


def test_a_non_positive_truncation_is_a_user_error():
    with pytest.raises(UserError, match="truncation 0"):
        signed_distance_maps(np.zeros((1, 2, 2), dtype=np.int64), 2, truncation=0)


def brute_force_maps(labels: np.ndarray, n_classes: int, truncation: float) -> np.ndarray:
    """The definition, pixel pair by pixel pair: signed distance to the nearest labelled pixel on
    the other side of each class's boundary, truncated and scaled."""
    height, width = labels.shape
    points = [(r, c) for r in range(height) for c in range(width)]
    maps = np.zeros((n_classes, height, width))
    for k in range(n_classes):
        for r, c in points:
            if labels[r, c] == IGNORE:
                continue
            inside = labels[r, c] == k
            opposite = [(i, j) for i, j in points
                        if (labels[i, j] not in (k, IGNORE) if inside else labels[i, j] == k)]
            distance = min([math.hypot(r - i, c - j) for i, j in opposite] + [truncation])
            maps[k, r, c] = distance / truncation if inside else -distance / truncation
    return maps


def test_random_label_maps_with_unlabelled_pixels_match_the_definition():
    rng = np.random.default_rng(3)
    labels = rng.integers(-1, 3, (2, 7, 9))
    labels[1, :, :4] = 0  # a large region, so that truncation matters
    maps = signed_distance_maps(labels, 4, truncation=2.5)  # class 3 is absent
    for n in range(2):
        np.testing.assert_allclose(maps[n], brute_force_maps(labels[n], 4, 2.5), atol=1e-6)
