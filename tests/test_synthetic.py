"""The embedded synthetic scene: deterministic, well formed, spatially coherent, learnable."""
from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from scipy import ndimage
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.preprocessing import StandardScaler

from deephyperx.errors import UserError
from deephyperx.scene import IGNORE, Scene
from deephyperx.synthetic import make_synthetic_scene

SEEDS = (0, 1, 2, 3)


def _linear_accuracy(features: np.ndarray, labels: np.ndarray, seed: int = 0) -> float:
    """Accuracy of logistic regression trained on a stratified 10 % and tested on the rest."""
    x_train, x_test, y_train, y_test = train_test_split(features, labels, train_size=0.1,
                                                        stratify=labels, random_state=seed)
    scaler = StandardScaler().fit(x_train)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = LogisticRegression(max_iter=1000).fit(scaler.transform(x_train), y_train)
    return float(model.score(scaler.transform(x_test), y_test))


def test_same_seed_gives_identical_arrays() -> None:
    first, second = make_synthetic_scene(seed=3), make_synthetic_scene(seed=3)
    assert np.array_equal(first.cube, second.cube)
    assert np.array_equal(first.labels, second.labels)
    assert np.array_equal(first.wavelengths, second.wavelengths)


def test_different_seeds_give_different_scenes() -> None:
    first, second = make_synthetic_scene(seed=0), make_synthetic_scene(seed=1)
    assert not np.array_equal(first.labels, second.labels)
    assert not np.allclose(first.cube, second.cube)


def test_default_shapes_dtypes_and_metadata() -> None:
    scene = make_synthetic_scene()
    assert isinstance(scene, Scene)
    assert scene.cube.shape == (72, 72, 64) and scene.cube.dtype == np.float32
    assert scene.labels.shape == (72, 72) and np.issubdtype(scene.labels.dtype, np.integer)
    assert np.isfinite(scene.cube).all() and scene.cube.min() >= 0.0 and scene.cube.max() <= 1.0
    assert scene.cube.mean() > 0.05, "reflectance-like values, not a near-zero cube"
    assert len(scene.class_names) == 6 == scene.n_classes
    assert len(set(scene.class_names)) == 6
    assert scene.labels.min() == IGNORE and scene.labels.max() == 5
    assert scene.wavelengths.shape == (64,)
    assert scene.wavelengths[0] == pytest.approx(400) and scene.wavelengths[-1] == pytest.approx(2500)
    assert np.all(np.diff(scene.wavelengths) > 0)
    red, green, blue = (scene.wavelengths[b] for b in scene.rgb_bands)
    assert 600 <= red <= 700 and 500 <= green <= 600 and 400 <= blue <= 500
    assert len(scene.palette) >= 6
    scene.validate()


def test_custom_sizes() -> None:
    scene = make_synthetic_scene(seed=5, rows=40, cols=56, n_bands=30, n_classes=4)
    assert scene.cube.shape == (40, 56, 30)
    assert scene.labels.shape == (40, 56)
    assert set(np.unique(scene.labels)) == {IGNORE, 0, 1, 2, 3}


@pytest.mark.parametrize("seed", SEEDS)
def test_every_class_has_enough_pixels_and_some_pixels_are_unlabelled(seed: int) -> None:
    scene = make_synthetic_scene(seed=seed)
    assert scene.class_counts().min() >= 30
    unlabelled = float((scene.labels == IGNORE).mean())
    assert 0.05 < unlabelled < 0.5


@pytest.mark.parametrize("seed", SEEDS)
def test_every_class_lies_in_two_separate_regions(seed: int) -> None:
    scene = make_synthetic_scene(seed=seed)
    for c in range(scene.n_classes):
        regions, _ = ndimage.label(scene.labels == c)
        sizes = np.bincount(regions.ravel())[1:]
        assert (sizes >= 10).sum() >= 2, f"class {c} has region sizes {sorted(sizes)}"


@pytest.mark.parametrize("seed", SEEDS)
def test_labels_are_spatially_coherent(seed: int) -> None:
    labels = make_synthetic_scene(seed=seed).labels
    same_as_right = labels[:, 1:] == labels[:, :-1]
    assert same_as_right.mean() > 0.75
    both_labelled = (labels[:, 1:] >= 0) & (labels[:, :-1] >= 0)
    assert same_as_right[both_labelled].mean() > 0.95


@pytest.mark.parametrize("seed", SEEDS)
def test_classes_are_learnable_but_not_trivial(seed: int) -> None:
    scene = make_synthetic_scene(seed=seed)
    labelled = scene.labels >= 0
    accuracy = _linear_accuracy(scene.cube[labelled], scene.labels[labelled], seed)
    assert 0.7 < accuracy < 0.97, accuracy


def test_spatial_context_helps() -> None:
    """Averaging 5x5 neighbourhoods (what a spatial model can learn) lifts accuracy above 90 %."""
    scene = make_synthetic_scene(seed=0)
    labelled = scene.labels >= 0
    smoothed = ndimage.uniform_filter(scene.cube, size=(5, 5, 1))
    spectral = _linear_accuracy(scene.cube[labelled], scene.labels[labelled])
    spatial = _linear_accuracy(smoothed[labelled], scene.labels[labelled])
    assert spatial > 0.9 and spatial > spectral


def test_fast() -> None:
    make_synthetic_scene(seed=0)
    start = time.perf_counter()
    make_synthetic_scene(seed=1)
    assert time.perf_counter() - start < 0.5


@pytest.mark.parametrize("kwargs", [dict(n_classes=1), dict(n_bands=2), dict(rows=6),
                                    dict(rows=10, cols=10, n_classes=12)])
def test_bad_arguments_raise_user_error(kwargs: dict) -> None:
    with pytest.raises(UserError) as caught:
        make_synthetic_scene(**kwargs)
    assert "\n" not in str(caught.value)
