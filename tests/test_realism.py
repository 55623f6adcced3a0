"""Realism metrics on cases whose answer is known (same distribution, copies of the training set,
disjoint sets, a collapsed generator), and the report's files."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from PIL import Image

from deephyperx import realism
from deephyperx.errors import UserError

N_BANDS, N_CLASSES = 24, 3
NAMES = ["soil", "grass", "water"]


def class_signatures() -> np.ndarray:
    """Smooth positive spectra, one per class, that overlap enough to make classification non-trivial."""
    x = np.linspace(0, 1, N_BANDS)
    return np.stack([1.0 + 0.5 * np.sin(2 * np.pi * (x + shift)) for shift in (0.0, 0.08, 0.16)])


def draw(rng: np.random.Generator, per_class: int, noise: float = 0.15,
         signatures=None) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` spectra of each class: the class signature, a brightness factor, band noise."""
    signatures = class_signatures() if signatures is None else signatures
    labels = np.repeat(np.arange(N_CLASSES), per_class)
    brightness = rng.uniform(0.8, 1.2, size=(len(labels), 1))
    return signatures[labels] * brightness + noise * rng.standard_normal((len(labels), N_BANDS)), labels


@pytest.fixture(scope="module")
def sets():
    rng = np.random.default_rng(0)
    return {"train": draw(rng, 120), "test": draw(rng, 120), "synthetic": draw(rng, 120)}


@pytest.fixture(scope="module")
def small_sets():
    """Fewer spectra, for the report's files (the metrics are checked on ``sets``)."""
    rng = np.random.default_rng(2)
    return {"train": draw(rng, 30), "test": draw(rng, 30), "synthetic": draw(rng, 40)}


# ----- pure geometry ------------------------------------------------------------------------------

def test_spectral_angles_of_known_pairs():
    a = np.array([[1.0, 0.0, 0.0], [1.0, 1.0, 0.0], [2.0, 4.0, 6.0]])
    b = np.array([[0.0, 3.0, 0.0], [1.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    np.testing.assert_allclose(realism.angle_between(a, b), [math.pi / 2, math.pi / 4, 0.0], atol=1e-12)
    np.testing.assert_allclose(realism.pairwise_angles(a[:1], b[:2]), [[math.pi / 2, 0.0]], atol=1e-7)
    np.testing.assert_allclose(realism.nearest_angles(a, b), [0.0, math.pi / 4, 0.0], atol=1e-12)
    assert realism.mean_pairwise_angle(np.array([[1.0, 0.0], [0.0, 1.0]])) == pytest.approx(math.pi / 2)
    assert realism.mean_pairwise_angle(np.ones((5, 3))) == 0.0
    assert realism.mean_pairwise_angle(np.ones((1, 3))) is None


def test_stratified_subsample_keeps_every_class_and_its_share():
    labels = np.repeat([0, 1, 2], [900, 90, 10])
    keep = realism.stratified_subsample(labels, 100, np.random.default_rng(0))
    assert np.bincount(labels[keep]).tolist() == [90, 9, 1]
    assert len(np.unique(keep)) == len(keep)
    assert realism.stratified_subsample(labels[:50], 100, np.random.default_rng(0)).tolist() == list(range(50))


# ----- known answers ------------------------------------------------------------------------------

def test_a_sample_of_the_same_distribution_looks_real(sets):
    """Synthetic spectra drawn like the real ones: chance-level two-sample test, TSTR = TRTR,
    nearest angles like the real test set's, diversity like the real one's."""
    two = realism.two_sample_test(sets["train"], sets["synthetic"], NAMES, seed=0)
    assert 0.4 <= two["accuracy"] <= 0.6 and two["p_value"] > 0.01
    assert two["n_per_source"] == 360 and [row["class"] for row in two["per_class"]] == NAMES
    utility = realism.utility_scores(sets["train"], sets["test"], sets["synthetic"], N_CLASSES, seed=0)
    for kind in realism.CLASSIFIERS:
        assert 0.9 <= utility[kind]["tstr_over_trtr"] <= 1.1, utility[kind]
        assert utility[kind]["trtr"]["overall_accuracy"] > 0.6
    stats, _, _ = realism.angle_statistics(sets["train"], sets["test"], sets["synthetic"], NAMES, seed=0)
    nearest = stats["nearest_to_real_train"]
    assert 0.8 <= nearest["median_ratio"] <= 1.25 and not nearest["memorised"] and nearest["copies"] == 0
    assert 0.01 <= nearest["share_below_test_p5"] <= 0.15
    assert all(0.8 <= row["ratio"] <= 1.25 for row in stats["diversity"]) and stats["collapsed_classes"] == []


def test_a_copy_of_the_training_set_is_memorised_and_teaches_exactly_as_much(sets):
    train = sets["train"]
    utility = realism.utility_scores(train, sets["test"], (train[0].copy(), train[1].copy()), N_CLASSES, seed=0)
    for kind in realism.CLASSIFIERS:
        assert utility[kind]["tstr"] == utility[kind]["trtr"] and utility[kind]["tstr_over_trtr"] == 1.0
    stats, synthetic_nearest, _ = realism.angle_statistics(train, sets["test"], train, NAMES, seed=0)
    nearest = stats["nearest_to_real_train"]
    assert np.all(synthetic_nearest == 0.0) and nearest["copies"] == len(train[1])
    assert nearest["median_ratio"] == 0.0 and nearest["memorised"] and nearest["share_below_test_p5"] == 1.0


def test_the_real_test_set_as_synthetic_has_the_baseline_angle_statistics(sets):
    test = sets["test"]
    summary = realism.memorisation_summary(realism.nearest_angles(test[0], sets["train"][0]),
                                           realism.nearest_angles(test[0], sets["train"][0]))
    assert summary["synthetic"] == summary["real_test"] and summary["median_ratio"] == 1.0
    assert not summary["memorised"]


def test_disjoint_sets_are_told_apart(sets):
    rng = np.random.default_rng(1)
    flat = np.tile(np.linspace(0.5, 1.5, N_BANDS), (N_CLASSES, 1))  # another material altogether
    two = realism.two_sample_test(sets["train"], draw(rng, 120, signatures=flat), NAMES, seed=0)
    assert two["accuracy"] >= 0.97 and two["p_value"] < 1e-10
    assert all(row["accuracy"] >= 0.95 for row in two["per_class"])


def test_a_collapsed_generator_has_no_diversity(sets):
    train = sets["train"]
    one_each = np.stack([train[0][train[1] == k][0] for k in range(N_CLASSES)])
    labels = np.repeat(np.arange(N_CLASSES), 50)
    rows = realism.diversity_by_class(train, (one_each[labels], labels), NAMES, seed=0)
    for row in rows:
        assert row["synthetic"] == pytest.approx(0.0, abs=1e-7) and row["real"] > 0.05
        assert row["collapsed"]


def test_classes_missing_from_the_synthetic_set_are_left_out_of_the_two_sample_test(sets):
    train, synthetic = sets["train"], sets["synthetic"]
    only = synthetic[1] != 2
    two = realism.two_sample_test(train, (synthetic[0][only], synthetic[1][only]), NAMES, seed=0)
    assert [row["class"] for row in two["per_class"]] == NAMES[:2] and two["n_per_source"] == 240
    assert two["left_out"] == ["water"]
    rare = np.concatenate([np.flatnonzero(train[1] != 2), np.flatnonzero(train[1] == 2)[:3]])
    two = realism.two_sample_test((train[0][rare], train[1][rare]), synthetic, NAMES, seed=0)
    assert two["left_out"] == ["water"] and two["accuracy"] is not None  # 3 real spectra: too few for 5 folds
    rows = realism.diversity_by_class(train, (synthetic[0][only], synthetic[1][only]), NAMES, seed=0)
    assert rows[2]["synthetic"] is None and rows[2]["ratio"] is None and not rows[2]["collapsed"]


# ----- the report ---------------------------------------------------------------------------------

def test_the_report_writes_its_files_and_repeats_exactly(small_sets, tmp_path):
    sets = small_sets
    wavelengths = np.linspace(400, 2500, N_BANDS)
    walk = np.linspace(sets["train"][0][0], sets["train"][0][-1], 7)
    args = (sets["train"], sets["test"], sets["synthetic"], NAMES, wavelengths, walk, 3)
    report = realism.write_realism_report(tmp_path / "a", *args)
    files = {p.name for p in (tmp_path / "a").iterdir()}
    assert files == {"realism.json", "realism.md", "realism.html", *realism.FIGURES.values()}
    for name in realism.FIGURES.values():
        with Image.open(tmp_path / "a" / name) as image:
            assert image.width > 400 and image.height > 250
    saved = json.loads((tmp_path / "a" / "realism.json").read_text())
    assert saved["counts"]["total"] == {"real_train": 90, "real_test": 90, "synthetic": 120}
    assert set(saved["utility"]) == set(realism.CLASSIFIERS) and saved["two_sample"]["accuracy"] is not None
    assert saved["utility"]["mlp"]["tstr_over_trtr"] == pytest.approx(report["utility"]["mlp"]["tstr_over_trtr"])
    markdown = (tmp_path / "a" / "realism.md").read_text()
    assert "TSTR / TRTR" in markdown and "real + synthetic -> real test" in markdown
    assert "realism_pca.png" in markdown and "memorisation" in markdown
    realism.write_realism_report(tmp_path / "b", *args)
    assert (tmp_path / "b" / "realism.json").read_text() == (tmp_path / "a" / "realism.json").read_text()


def test_the_report_without_interpolation_or_wavelengths(small_sets, tmp_path):
    sets = small_sets
    report = realism.write_realism_report(tmp_path, sets["train"], sets["test"], sets["synthetic"], NAMES,
                                          None, None, 0)
    assert "interpolation" not in report["figures"]
    assert not (tmp_path / realism.FIGURES["interpolation"]).exists()


def test_the_report_refuses_mismatched_sets_before_writing(small_sets, tmp_path):
    sets = small_sets
    synthetic = (sets["synthetic"][0][:, :10], sets["synthetic"][1])
    with pytest.raises(UserError, match="10 bands"):
        realism.write_realism_report(tmp_path / "r", sets["train"], sets["test"], synthetic, NAMES, None, None, 0)
    with pytest.raises(UserError, match="class ids"):
        realism.write_realism_report(tmp_path / "r", sets["train"], sets["test"], sets["synthetic"], NAMES[:2],
                                     None, None, 0)
    assert not (tmp_path / "r").exists()
