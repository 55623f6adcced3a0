"""Train/test splits: invariants for every mode on random label maps and on Indian Pines."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage

from deephyperx.errors import UserError
from deephyperx.splits import (MODES, default_block_size, split_from_label_maps, split_pixels, split_summary,
                               split_warnings, validation_split)

SEEDS = (0, 1, 2)
#: A training_sample every mode accepts, per mode.
SAMPLE = {"random": 0.2, "fixed": 5, "disjoint": 0.5, "blocks": 0.3}


def _shared_data() -> Path:
    """The shared data folder: $DEEPHYPERX_SHARED_DATA, else ../shared/data beside the repository."""
    override = os.environ.get("DEEPHYPERX_SHARED_DATA")
    return Path(override) if override else Path(__file__).resolve().parents[2] / "shared" / "data"


def _indian_pines_labels() -> np.ndarray:
    """Indian Pines ground truth with 0 (unlabelled) as -1 and classes 0..15."""
    from scipy.io import loadmat

    path = _shared_data() / "IndianPines" / "Indian_pines_gt.mat"
    if not path.exists():
        pytest.skip(f"Indian Pines labels not found at {path}; set DEEPHYPERX_SHARED_DATA to the shared data folder")
    return loadmat(path)["indian_pines_gt"].astype(np.int64) - 1


def _blobs(seed: int, shape: tuple[int, int] = (60, 50), n_classes: int = 5, sigma: float = 3.0) -> np.ndarray:
    """Spatially coherent random labels: quantiles of a smoothed noise field, lowest band unlabelled."""
    rng = np.random.default_rng(seed)
    field = ndimage.gaussian_filter(rng.standard_normal(shape), sigma)
    edges = np.quantile(field, np.linspace(0, 1, n_classes + 2)[1:-1])
    return np.digitize(field, edges).astype(np.int64) - 1


def _speckle(seed: int, shape: tuple[int, int] = (40, 40), n_classes: int = 4) -> np.ndarray:
    """Pixel-wise random labels, a fifth unlabelled."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, n_classes, shape)
    labels[rng.random(shape) < 0.2] = -1
    return labels


LABEL_MAPS = {
    "blobs": lambda: _blobs(11),
    "speckle": lambda: _speckle(12),
    "indian_pines": _indian_pines_labels,
}


@pytest.fixture(params=sorted(LABEL_MAPS))
def labels(request: pytest.FixtureRequest) -> np.ndarray:
    return LABEL_MAPS[request.param]()


def _class_counts(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return np.bincount(labels[mask & (labels >= 0)], minlength=int(labels.max()) + 1)


def _assert_valid_masks(labels: np.ndarray, train: np.ndarray, test: np.ndarray) -> None:
    """Boolean, the label map's shape, disjoint, only on labelled pixels, both non-empty."""
    for mask in (train, test):
        assert mask.dtype == bool and mask.shape == labels.shape
        assert not (mask & (labels < 0)).any(), "a split mask covers an unlabelled pixel"
        assert mask.any()
    assert not (train & test).any(), "train and test share a pixel"


def _round_half_up(x: float) -> int:
    return int(np.floor(x + 0.5))


def _disjoint_reference(labels: np.ndarray, training_sample: float) -> np.ndarray:
    """The disjoint rule, row by row in plain Python, as the docs state it."""
    train = np.zeros(labels.shape, dtype=bool)
    for c in np.unique(labels[labels >= 0]):
        mask = labels == c
        total = mask.sum()
        for x in range(labels.shape[0] + 1):
            if mask[:x].sum() / total > 0.9 * training_sample:
                break
        train[:x] |= mask[:x]
    return train


def _guard_holds(train: np.ndarray, test: np.ndarray, guard: int) -> bool:
    """Brute force: no test pixel has a training pixel within Chebyshev distance ``guard``."""
    for r, c in zip(*np.nonzero(test)):
        if train[max(r - guard, 0):r + guard + 1, max(c - guard, 0):c + guard + 1].any():
            return False
    return True


# --- invariants shared by every mode -------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", MODES)
def test_masks_are_disjoint_and_on_labelled_pixels(labels: np.ndarray, mode: str, seed: int) -> None:
    train, test = split_pixels(labels, mode, SAMPLE[mode], seed=seed)
    _assert_valid_masks(labels, train, test)


@pytest.mark.parametrize("mode", MODES)
def test_same_seed_same_masks(labels: np.ndarray, mode: str) -> None:
    first = split_pixels(labels, mode, SAMPLE[mode], seed=7)
    second = split_pixels(labels, mode, SAMPLE[mode], seed=7)
    assert np.array_equal(first[0], second[0]) and np.array_equal(first[1], second[1])


@pytest.mark.parametrize("mode", ["random", "fixed", "blocks"])
def test_different_seed_different_masks(labels: np.ndarray, mode: str) -> None:
    first, _ = split_pixels(labels, mode, SAMPLE[mode], seed=0)
    second, _ = split_pixels(labels, mode, SAMPLE[mode], seed=1)
    assert not np.array_equal(first, second)


# --- random and fixed ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fraction", [0.01, 0.1, 0.5, 0.9])
def test_random_fraction_per_class(labels: np.ndarray, fraction: float, seed: int) -> None:
    train, test = split_pixels(labels, "random", fraction, seed=seed)
    counts = _class_counts(labels, labels >= 0)
    expected = [min(max(_round_half_up(fraction * n), 1), n - 1) if n else 0 for n in counts]
    assert list(_class_counts(labels, train)) == expected
    assert np.array_equal(_class_counts(labels, test), counts - expected), "every other labelled pixel is test"


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("mode", ["fixed", "random"])
def test_count_gives_exactly_n_per_class(labels: np.ndarray, mode: str, seed: int) -> None:
    n = 7
    train, test = split_pixels(labels, mode, n, seed=seed)
    counts = _class_counts(labels, labels >= 0)
    assert all(t == (n if c else 0) for t, c in zip(_class_counts(labels, train), counts))
    assert np.array_equal(_class_counts(labels, test), np.where(counts > 0, counts - n, 0))


def test_count_as_float_is_whole_number(labels: np.ndarray) -> None:
    """A command line hands 10 over as 10.0: it still means 10 pixels per class."""
    as_float = split_pixels(labels, "fixed", 10.0, seed=0)
    as_int = split_pixels(labels, "fixed", 10, seed=0)
    assert np.array_equal(as_float[0], as_int[0])


def test_random_selection_is_spread_over_the_class() -> None:
    """Training pixels are drawn at random, not taken from the top of each class."""
    labels = _blobs(3, shape=(100, 100), n_classes=2)
    train, _ = split_pixels(labels, "random", 0.2, seed=0)
    for c in range(2):
        rows = np.nonzero(labels == c)[0]
        train_rows = np.nonzero(train & (labels == c))[0]
        assert abs(train_rows.mean() - rows.mean()) < 0.2 * (rows.max() - rows.min() + 1)


# --- disjoint ------------------------------------------------------------------------------------

@pytest.mark.parametrize("fraction", [0.05, 0.3, 0.5, 0.8])
def test_disjoint_follows_the_row_rule(labels: np.ndarray, fraction: float) -> None:
    train, test = split_pixels(labels, "disjoint", fraction, seed=0)
    assert np.array_equal(train, _disjoint_reference(labels, fraction))
    assert np.array_equal(test, (labels >= 0) & ~train)


def test_disjoint_cuts_each_class_by_a_row(labels: np.ndarray) -> None:
    train, test = split_pixels(labels, "disjoint", 0.5, seed=0)
    for c in np.unique(labels[labels >= 0]):
        train_rows = np.nonzero(train & (labels == c))[0]
        test_rows = np.nonzero(test & (labels == c))[0]
        assert train_rows.size, f"class {c} has no training pixel"
        if test_rows.size:
            assert train_rows.max() < test_rows.min()


def test_disjoint_ignores_the_seed(labels: np.ndarray) -> None:
    assert np.array_equal(split_pixels(labels, "disjoint", 0.3, seed=0)[0],
                          split_pixels(labels, "disjoint", 0.3, seed=99)[0])


def test_disjoint_on_indian_pines_keeps_every_class_on_both_sides() -> None:
    labels = _indian_pines_labels()
    train, test = split_pixels(labels, "disjoint", 0.5, seed=0)
    assert (_class_counts(labels, train) > 0).all() and (_class_counts(labels, test) > 0).all()


# --- blocks --------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("patch_size", [1, 5, 9])
def test_blocks_guard_band_holds(patch_size: int, seed: int) -> None:
    labels = _blobs(seed, shape=(48, 40), n_classes=3, sigma=4.0)
    train, test = split_pixels(labels, "blocks", 0.3, seed=seed, patch_size=patch_size, block_size=12)
    _assert_valid_masks(labels, train, test)
    assert _guard_holds(train, test, patch_size // 2)
    if patch_size > 1:
        guard = patch_size // 2
        assert not _guard_holds(train, (labels >= 0) & ~train, guard), "the band actually removed pixels"


@pytest.mark.parametrize("guard", [0, 2, 6])
def test_blocks_explicit_guard(guard: int) -> None:
    labels = _blobs(4, shape=(50, 50), n_classes=3, sigma=4.0)
    train, test = split_pixels(labels, "blocks", 0.3, seed=0, patch_size=1, guard=guard, block_size=10)
    assert _guard_holds(train, test, guard)
    if guard == 0:
        assert np.array_equal(test, (labels >= 0) & ~train)


@pytest.mark.parametrize("seed", SEEDS)
def test_blocks_train_whole_blocks(seed: int) -> None:
    """Every block is wholly training or wholly not: the split is spatial, not per pixel."""
    labels = _blobs(seed, shape=(60, 50))
    size = 7
    train, _ = split_pixels(labels, "blocks", 0.3, seed=seed, block_size=size)
    for r in range(0, labels.shape[0], size):
        for c in range(0, labels.shape[1], size):
            block = (slice(r, r + size), slice(c, c + size))
            in_train = train[block][labels[block] >= 0]
            assert in_train.all() or not in_train.any()


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_blocks_share_close_to_asked_on_random_maps(fraction: float, seed: int) -> None:
    labels = _blobs(seed, shape=(150, 150), n_classes=4, sigma=5.0)
    train, test = split_pixels(labels, "blocks", fraction, seed=seed)
    counts = _class_counts(labels, labels >= 0)
    shares = _class_counts(labels, train) / counts
    assert np.abs(shares - fraction).max() < 0.1, shares
    assert (_class_counts(labels, test) > 0).all()


@pytest.mark.parametrize("patch_size", [1, 5])
@pytest.mark.parametrize("fraction", [0.1, 0.3, 0.5])
def test_blocks_share_close_to_asked_on_indian_pines(fraction: float, patch_size: int) -> None:
    labels = _indian_pines_labels()
    for seed in SEEDS:
        train, test = split_pixels(labels, "blocks", fraction, seed=seed, patch_size=patch_size)
        _assert_valid_masks(labels, train, test)
        shares = _class_counts(labels, train) / _class_counts(labels, labels >= 0)
        assert abs(train.sum() / (labels >= 0).sum() - fraction) < 0.05
        assert abs(np.median(shares) - fraction) < 0.05
        assert (shares > 0).sum() >= 14, "all but the most concentrated classes get training pixels"


def test_blocks_count_target() -> None:
    labels = _blobs(5, shape=(150, 150), n_classes=4, sigma=5.0)
    train, _ = split_pixels(labels, "blocks", 500, seed=0)
    assert np.abs(_class_counts(labels, train) - 500).max() < 250


def test_default_block_size() -> None:
    assert default_block_size((145, 145), 1) == 9
    assert default_block_size((145, 145), 9) == 18
    assert default_block_size((10, 10), 1) == 2
    # large patches: capped at a sixth of the shorter side, so the image keeps about 36 blocks
    assert default_block_size((145, 145), 12) == 24
    assert default_block_size((145, 145), 25) == 24
    assert default_block_size((145, 145), 64) == 24
    assert default_block_size((10, 10), 5) == 2


def test_blocks_with_large_patches_stay_near_the_asked_share_on_indian_pines() -> None:
    """HybridSN's 25-px patches: 50-px blocks (9 in all) put about half the labelled pixels in
    training for a 10% split; the capped 24-px blocks keep it between 10% and 25% in every seed."""
    labels = _indian_pines_labels()
    for seed in SEEDS:
        train, test = split_pixels(labels, "blocks", 0.1, seed=seed, patch_size=25)
        _assert_valid_masks(labels, train, test)
        assert 0.1 <= train.sum() / (labels >= 0).sum() <= 0.25
        assert test.sum() > 2000
    wide, _ = split_pixels(labels, "blocks", 0.1, seed=0, patch_size=25, block_size=50)
    assert wide.sum() / (labels >= 0).sum() > 0.4


def test_split_warnings_name_missing_classes_and_a_share_far_from_asked() -> None:
    labels = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [2, 2, -1, -1]])
    train = labels == 0
    test = labels == 1
    lines = split_warnings(labels, train, test, 0.1, ["soil", "corn", "oats"])
    assert lines == ['2 of 3 classes have no training pixel: class "corn", class "oats"',
                     '2 of 3 classes have no test pixel: class "soil", class "oats"',
                     "training pixels are 40.0% of the labelled pixels, where training_sample=0.1 asked for 10%"]
    unnamed = split_warnings(labels, train, test, 0.4)  # 40% asked: the share is right
    assert unnamed == ["2 of 3 classes have no training pixel: class 1, class 2",
                       "2 of 3 classes have no test pixel: class 0, class 2"]
    columns = np.arange(4)[None, :] % 2
    assert split_warnings(labels, (labels >= 0) & (columns == 0), (labels >= 0) & (columns == 1), 0.5) == []
    assert split_warnings(labels, train, test, 5) == unnamed  # counts are not checked as a share


# --- fixed label maps ----------------------------------------------------------------------------

def test_split_from_label_maps() -> None:
    labels = _blobs(0)
    train_labels = np.where(np.arange(labels.shape[0])[:, None] < 30, labels, -1)
    test_labels = np.where(np.arange(labels.shape[0])[:, None] >= 30, labels, -1)
    train, test = split_from_label_maps(train_labels, test_labels)
    _assert_valid_masks(labels, train, test)
    assert np.array_equal(train | test, labels >= 0)


def test_split_from_overlapping_label_maps_names_the_overlap() -> None:
    train_labels = np.full((10, 10), -1)
    test_labels = np.full((10, 10), -1)
    train_labels[:5] = 0
    test_labels[3:] = 1
    with pytest.raises(UserError, match="20 pixels"):
        split_from_label_maps(train_labels, test_labels)


def test_split_from_label_maps_of_different_sizes() -> None:
    with pytest.raises(UserError, match="same size"):
        split_from_label_maps(np.zeros((4, 4), int), np.zeros((4, 5), int))


# --- validation ----------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("fraction", [0.1, 0.25, 0.5])
def test_validation_split_is_disjoint_and_stratified(labels: np.ndarray, fraction: float, seed: int) -> None:
    train, _ = split_pixels(labels, "random", 0.3, seed=seed)
    new_train, val = validation_split(train, labels, fraction, seed=seed)
    assert not (new_train & val).any()
    assert np.array_equal(new_train | val, train)
    n = _class_counts(labels, train)
    expected = [min(max(_round_half_up(fraction * k), 1), k - 1) if k >= 2 else 0 for k in n]
    assert list(_class_counts(labels, val)) == expected
    again = validation_split(train, labels, fraction, seed=seed)
    assert np.array_equal(again[1], val)


def test_validation_keeps_tiny_classes_in_train() -> None:
    labels = np.array([[0, 0, 0, 0, 1, 2, 2]])
    train = labels >= 0
    new_train, val = validation_split(train, labels, 0.5, seed=0)
    assert new_train[0, 4] and not val[0, 4], "a class with one training pixel keeps it"
    assert val[0, 5:].sum() == 1 and val[0, :4].sum() == 2


def test_validation_fraction_zero_is_empty() -> None:
    labels = _blobs(1)
    train, _ = split_pixels(labels, "random", 0.3, seed=0)
    new_train, val = validation_split(train, labels, 0.0, seed=0)
    assert not val.any() and np.array_equal(new_train, train)


# --- summary -------------------------------------------------------------------------------------

def test_split_summary_counts() -> None:
    labels = _blobs(2)
    train, test = split_pixels(labels, "blocks", 0.3, seed=0, patch_size=5)
    names = [f"c{k}" for k in range(5)]
    rows = split_summary(labels, train, test, names)
    assert [r["name"] for r in rows] == names
    assert sum(r["train"] for r in rows) == train.sum()
    assert sum(r["test"] for r in rows) == test.sum()
    for row in rows:
        assert row["labelled"] == (labels == row["class"]).sum()
        assert row["train"] + row["test"] + row["unused"] == row["labelled"]
        assert row["train_share"] == pytest.approx(row["train"] / row["labelled"])


# --- bad input -----------------------------------------------------------------------------------

def _oats_labels() -> np.ndarray:
    """Three classes; class 2 ("Oats") has 20 pixels."""
    labels = np.full((30, 30), -1)
    labels[:10] = 0
    labels[10:20] = 1
    labels[25, :20] = 2
    return labels


def _raises_one_line(match: str, call, *args, **kwargs) -> str:
    with pytest.raises(UserError, match=match) as caught:
        call(*args, **kwargs)
    message = str(caught.value)
    assert "\n" not in message
    return message


def test_unknown_mode_lists_the_choices() -> None:
    message = _raises_one_line("unknown split mode 'stripes'", split_pixels, _blobs(0), "stripes", 0.1, seed=0)
    assert all(mode in message for mode in MODES)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("sample", [0, -0.5, -3, float("nan"), 10_000])
def test_training_sample_out_of_range(mode: str, sample: float) -> None:
    _raises_one_line("training_sample", split_pixels, _blobs(0), mode, sample, seed=0)


def test_training_sample_neither_fraction_nor_whole() -> None:
    _raises_one_line("2.5", split_pixels, _blobs(0), "random", 2.5, seed=0)


def test_fixed_refuses_a_fraction() -> None:
    _raises_one_line("0.1", split_pixels, _blobs(0), "fixed", 0.1, seed=0)


@pytest.mark.parametrize("mode", ["fixed", "random", "blocks", "disjoint"])
def test_too_few_pixels_in_a_class_names_it(mode: str) -> None:
    names = ["Corn", "Woods", "Oats"]
    message = _raises_one_line("Oats", split_pixels, _oats_labels(), mode, 50, seed=0, class_names=names)
    assert "20" in message and "fraction" in message


def test_class_of_one_pixel_cannot_be_split() -> None:
    labels = _oats_labels()
    labels[25, 1:20] = -1
    _raises_one_line("only 1", split_pixels, labels, "random", 0.5, seed=0)


def test_blocks_guard_too_wide_for_any_test_pixel() -> None:
    labels = _blobs(0, shape=(30, 30), n_classes=2)
    _raises_one_line("guard", split_pixels, labels, "blocks", 0.3, seed=0, patch_size=41, block_size=10)


def test_blocks_refuses_bad_patch_guard_and_block_sizes() -> None:
    labels = _blobs(0)
    _raises_one_line("patch_size", split_pixels, labels, "blocks", 0.3, seed=0, patch_size=0)
    _raises_one_line("guard", split_pixels, labels, "blocks", 0.3, seed=0, guard=-1)
    _raises_one_line("block_size", split_pixels, labels, "blocks", 0.3, seed=0, block_size=0)


def test_no_labelled_pixel() -> None:
    _raises_one_line("no labelled pixel", split_pixels, np.full((5, 5), -1), "random", 0.5, seed=0)


def test_label_map_must_be_2d() -> None:
    _raises_one_line("2-D", split_pixels, np.zeros((3, 3, 3), int), "random", 0.5, seed=0)


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5])
def test_validation_fraction_out_of_range(fraction: float) -> None:
    labels = _blobs(0)
    _raises_one_line("validation fraction", validation_split, labels >= 0, labels, fraction, seed=0)


# --- speed ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("mode", MODES)
def test_megapixel_label_map_is_fast(mode: str) -> None:
    labels = _blobs(0, shape=(1000, 1000), n_classes=16, sigma=20.0)
    sample = 50 if mode == "fixed" else 0.1
    start = time.perf_counter()
    train, test = split_pixels(labels, mode, sample, seed=0, patch_size=9)
    validation_split(train, labels, 0.1, seed=0)
    assert time.perf_counter() - start < 2.0, "generous bound: vectorised code takes well under a second"
    assert train.any() and test.any()
