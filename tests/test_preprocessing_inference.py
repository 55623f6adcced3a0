"""Normalisation fitted on training pixels only; whole-scene inference, centre-pixel and dense."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.neighbors import KNeighborsClassifier
from torch import nn

from deephyperx.errors import UserError
from deephyperx.inference import predict_centre, predict_dense, predict_pixels_sklearn, window_centres
from deephyperx.preprocessing import Normaliser, fit_normaliser
from deephyperx.sampling import PatchSampler


@pytest.fixture
def cube_and_mask():
    rng = np.random.default_rng(0)
    cube = rng.normal(5.0, 2.0, (10, 12, 4)).astype(np.float32)
    train = np.zeros((10, 12), bool)
    train[:5] = True
    return cube, train


def test_statistics_come_from_training_pixels_only(cube_and_mask):
    cube, train = cube_and_mask
    spoiled = cube.copy()
    spoiled[~train] = 1e6  # test pixels must not move the statistics
    a, b = fit_normaliser(cube, train, "standard"), fit_normaliser(spoiled, train, "standard")
    np.testing.assert_allclose(a.shift, b.shift)
    np.testing.assert_allclose(a.scale, b.scale)
    normalised = a.apply(cube)[train]
    np.testing.assert_allclose(normalised.mean(0), 0, atol=1e-5)
    np.testing.assert_allclose(normalised.std(0), 1, atol=1e-4)


def test_minmax_none_inverse_and_state_round_trip(cube_and_mask):
    cube, train = cube_and_mask
    minmax = fit_normaliser(cube, train, "minmax")
    scaled = minmax.apply(cube)[train]
    assert scaled.min() == pytest.approx(0, abs=1e-6) and scaled.max() == pytest.approx(1, abs=1e-6)
    np.testing.assert_allclose(fit_normaliser(cube, train, "none").apply(cube), cube)
    restored = Normaliser.from_state_dict(minmax.state_dict())
    np.testing.assert_allclose(restored.invert(restored.apply(cube)), cube, rtol=1e-5)
    with pytest.raises(UserError, match="unknown normalization 'zscore'"):
        fit_normaliser(cube, train, "zscore")


def test_constant_band_does_not_divide_by_zero(cube_and_mask):
    cube, train = cube_and_mask
    cube[..., 2] = 7.0
    assert np.isfinite(fit_normaliser(cube, train).apply(cube)).all()


class CentreSpectrum(nn.Module):
    """Logits = the centre pixel's values (the class is the arg-max band)."""

    def forward(self, x):
        p = x.shape[-1]
        return x[:, :, p // 2, p // 2]


class EveryPixel(nn.Module):
    """Dense logits = the input itself (one channel per class)."""

    def forward(self, x):
        return 10 * x


def one_hot_scene(rows=13, cols=11, classes=4, seed=0):
    labels = np.random.default_rng(seed).integers(0, classes, (rows, cols))
    return labels, np.eye(classes, dtype=np.float32)[labels]


@pytest.mark.parametrize("patch", [1, 3, 4])
def test_centre_prediction_maps_every_pixel(patch):
    labels, cube = one_hot_scene()
    sampler = PatchSampler([cube], labels, patch)
    prediction = predict_centre(CentreSpectrum(), sampler, batch_size=17, device=torch.device("cpu"))
    np.testing.assert_array_equal(prediction, labels)
    mask = labels == 2
    partial = predict_centre(CentreSpectrum(), sampler, batch_size=5, device=torch.device("cpu"), mask=mask)
    assert (partial[mask] == 2).all() and (partial[~mask] == -1).all()


@pytest.mark.parametrize("patch, stride", [(5, 1), (5, 3), (4, 4), (7, 20)])
def test_dense_sliding_window_stitches_the_scene_exactly(patch, stride):
    labels, cube = one_hot_scene()
    sampler = PatchSampler([cube], labels, patch)
    prediction = predict_dense(EveryPixel(), sampler, 4, batch_size=8, device=torch.device("cpu"), stride=stride)
    np.testing.assert_array_equal(prediction, labels)


@pytest.mark.parametrize("length, patch, stride", [(13, 5, 1), (13, 5, 3), (10, 4, 4), (6, 6, 2), (9, 3, 50)])
def test_windows_cover_every_pixel(length, patch, stride):
    centres = window_centres(length, patch, stride)
    before = patch // 2
    covered = np.zeros(length, bool)
    for c in centres:
        covered[max(c - before, 0):c - before + patch] = True
    assert covered.all()


def test_sklearn_prediction_in_row_chunks_equals_one_call():
    labels, cube = one_hot_scene(rows=30)
    noisy = cube + np.random.default_rng(1).normal(0, 0.2, cube.shape).astype(np.float32)
    knn = KNeighborsClassifier(3).fit(noisy.reshape(-1, 4)[::3], labels.ravel()[::3])
    chunked = predict_pixels_sklearn(knn, noisy, rows_per_chunk=7)
    np.testing.assert_array_equal(chunked, knn.predict(noisy.reshape(-1, 4)).reshape(labels.shape))


def test_pca_is_fitted_on_training_pixels_and_matches_numpy(cube_and_mask):
    from deephyperx.preprocessing import PCAProjection, fit_pca

    cube, train = cube_and_mask
    spoiled = cube.copy()
    spoiled[~train] = 1e6
    a, b = fit_pca(cube, train, 2), fit_pca(spoiled, train, 2)
    np.testing.assert_allclose(a.components, b.components, atol=1e-6)
    pixels = cube[train].astype(np.float64)
    eigenvalues, eigenvectors = np.linalg.eigh(np.cov(pixels - pixels.mean(0), rowvar=False))
    top = eigenvectors[:, ::-1][:, :2].T
    np.testing.assert_allclose(np.abs(a.components @ top.T), np.eye(2), atol=1e-4)
    projected = a.apply(cube)
    assert projected.shape == (10, 12, 2)
    assert projected[train].var(0)[0] >= projected[train].var(0)[1]
    again = PCAProjection.from_state_dict(a.state_dict()).apply(cube)
    np.testing.assert_allclose(again, projected, rtol=1e-5)
    with pytest.raises(UserError, match="PCA to 9 components"):
        fit_pca(cube, train, 9)


def test_whitened_pca_gives_unit_variance_uncorrelated_bands_on_training_pixels_only(cube_and_mask):
    from deephyperx.preprocessing import fit_pca

    cube, train = cube_and_mask
    plain, white = fit_pca(cube, train, 3), fit_pca(cube, train, 3, whiten=True)
    projected = white.apply(cube)[train].astype(np.float64)
    np.testing.assert_allclose(np.cov(projected, rowvar=False), np.eye(3), atol=1e-4)
    # same directions as the plain projection, each scaled by its standard deviation
    scale = plain.apply(cube)[train].std(0, ddof=1)
    np.testing.assert_allclose(white.components * scale[:, None], plain.components, rtol=1e-3, atol=1e-6)
    spoiled = cube.copy()
    spoiled[~train] = 1e6
    np.testing.assert_allclose(fit_pca(spoiled, train, 3, whiten=True).components, white.components, rtol=1e-5)
    flat = np.repeat(cube[..., :1], cube.shape[2], axis=2)  # one direction of variance only
    with pytest.raises(UserError, match="component 2 has no variance"):
        fit_pca(flat, train, 2, whiten=True)
