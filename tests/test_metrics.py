"""Metrics from one confusion matrix: hand-computed examples, edge cases, and agreement with scikit-learn."""
from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score, f1_score, jaccard_score, precision_score, recall_score

from deephyperx.errors import UserError
from deephyperx.metrics import aggregate_runs, confusion_matrix, format_percent, metrics_from_confusion

NAMES3 = ["a", "b", "c"]

# Hand-worked 3-class example (rows = truth, columns = prediction):
#        pred a  pred b  pred c | support
#   a       5       1       0   |   6
#   b       2       3       1   |   6
#   c       0       0       4   |   4
#   predicted 7     4       5   |  N = 16
HAND_CM = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])


def _pairs_from_cm(cm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Expand a confusion matrix into (truth, prediction) label vectors."""
    truth, pred = [], []
    for i in range(cm.shape[0]):
        for j in range(cm.shape[1]):
            truth += [i] * int(cm[i, j])
            pred += [j] * int(cm[i, j])
    return np.array(truth), np.array(pred)


def test_confusion_matrix_counts_pairs_from_hand_example():
    truth, pred = _pairs_from_cm(HAND_CM)
    rng = np.random.default_rng(0)
    order = rng.permutation(truth.size)
    cm = confusion_matrix(truth[order], pred[order], 3)
    assert cm.dtype == np.int64
    np.testing.assert_array_equal(cm, HAND_CM)


def test_hand_computed_metrics():
    m = metrics_from_confusion(HAND_CM, NAMES3)
    # OA = trace / N = (5 + 3 + 4) / 16 = 12/16
    assert m["overall_accuracy"] == pytest.approx(0.75)
    # recalls 5/6, 3/6, 4/4 -> AA = (0.833333 + 0.5 + 1) / 3 = 7/9
    assert m["average_accuracy"] == pytest.approx(0.7777777778)
    # p_e = (6*7 + 6*4 + 4*5) / 16^2 = 86/256 = 0.3359375
    # kappa = (0.75 - 0.3359375) / (1 - 0.3359375) = 0.4140625 / 0.6640625 = 106/170
    assert m["kappa"] == pytest.approx(0.6235294118)
    assert m["n_test"] == 16
    assert m["confusion_matrix"] == HAND_CM.tolist()
    rows = {row["name"]: row for row in m["per_class"]}
    assert [rows[n]["support"] for n in NAMES3] == [6, 6, 4]
    # precision = tp / predicted: 5/7, 3/4, 4/5
    assert [rows[n]["precision"] for n in NAMES3] == pytest.approx([0.7142857143, 0.75, 0.8])
    # F1 = 2 tp / (support + predicted): 10/13, 6/10, 8/9
    assert [rows[n]["f1"] for n in NAMES3] == pytest.approx([0.7692307692, 0.6, 0.8888888889])
    # IoU = tp / (support + predicted - tp): 5/8, 3/7, 4/5
    assert [rows[n]["iou"] for n in NAMES3] == pytest.approx([0.625, 0.4285714286, 0.8])


def test_perfect_prediction_scores_one():
    truth = np.repeat(np.arange(4), [3, 5, 1, 7])
    m = metrics_from_confusion(confusion_matrix(truth, truth, 4), list("wxyz"))
    assert m["overall_accuracy"] == m["average_accuracy"] == m["kappa"] == 1.0
    assert all(row["f1"] == row["iou"] == row["precision"] == row["accuracy"] == 1.0 for row in m["per_class"])


def test_single_class_perfect_prediction_has_kappa_one():
    cm = confusion_matrix(np.zeros(5, int), np.zeros(5, int), 2)
    assert metrics_from_confusion(cm, ["x", "y"])["kappa"] == 1.0


def test_ignored_labels_are_skipped_whatever_was_predicted():
    truth = np.array([[0, -1, 1], [-1, 2, 2]])
    pred = np.array([[0, 2, 1], [-1, 2, 0]])  # predictions at ignored pixels (even -1) do not count
    cm = confusion_matrix(truth, pred, 3)
    assert cm.sum() == 4
    np.testing.assert_array_equal(cm, [[1, 0, 0], [0, 1, 0], [1, 0, 1]])


def test_class_absent_from_test_set_is_none_and_left_out_of_average_accuracy():
    # class "c" has no test pixels and is never predicted; class "d" has none but is predicted once
    cm = np.array([[3, 1, 0, 0], [0, 2, 0, 1], [0, 0, 0, 0], [0, 0, 0, 0]])
    m = metrics_from_confusion(cm, list("abcd"))
    c, d = m["per_class"][2], m["per_class"][3]
    assert c == {"name": "c", "support": 0, "accuracy": None, "precision": None, "f1": None, "iou": None}
    assert d["accuracy"] is None and d["precision"] == 0.0 and d["f1"] == 0.0 and d["iou"] == 0.0
    # AA over the classes with test pixels only: (3/4 + 2/3) / 2
    assert m["average_accuracy"] == pytest.approx((0.75 + 2 / 3) / 2)
    json.dumps(m, allow_nan=False)  # undefined values are JSON null, never NaN


def test_never_predicted_class_has_undefined_precision_and_zero_f1():
    m = metrics_from_confusion(np.array([[2, 0], [1, 0]]), ["a", "b"])
    b = m["per_class"][1]
    assert b["accuracy"] == 0.0 and b["precision"] is None and b["f1"] == 0.0 and b["iou"] == 0.0


def test_agrees_with_scikit_learn_on_random_data():
    rng = np.random.default_rng(42)
    n_classes = 6
    truth = rng.integers(0, n_classes, 2000)
    # a better-than-chance classifier: keep the truth 60% of the time
    pred = np.where(rng.random(2000) < 0.6, truth, rng.integers(0, n_classes, 2000))
    m = metrics_from_confusion(confusion_matrix(truth, pred, n_classes), [str(k) for k in range(n_classes)])
    labels = list(range(n_classes))
    assert m["kappa"] == pytest.approx(cohen_kappa_score(truth, pred))
    assert m["overall_accuracy"] == pytest.approx(np.mean(truth == pred))
    rows = m["per_class"]
    assert [r["f1"] for r in rows] == pytest.approx(f1_score(truth, pred, average=None, labels=labels))
    assert [r["iou"] for r in rows] == pytest.approx(jaccard_score(truth, pred, average=None, labels=labels))
    assert [r["precision"] for r in rows] == pytest.approx(precision_score(truth, pred, average=None, labels=labels))
    recall = recall_score(truth, pred, average=None, labels=labels)
    assert [r["accuracy"] for r in rows] == pytest.approx(recall)
    assert m["average_accuracy"] == pytest.approx(recall.mean())


def test_confusion_matrix_rejects_bad_input():
    with pytest.raises(UserError, match="outside 0..2"):
        confusion_matrix(np.array([0, 1]), np.array([0, 3]), 3)
    with pytest.raises(UserError, match="same size"):
        confusion_matrix(np.array([0, 1]), np.array([0]), 3)
    with pytest.raises(UserError, match="test set is empty"):
        metrics_from_confusion(np.zeros((2, 2), int), ["a", "b"])
    with pytest.raises(UserError, match="one name per class"):
        metrics_from_confusion(np.eye(2, dtype=int), ["a"])


def _run(oa: float, aa: float, kappa: float, f1_a: float | None, seed: int) -> dict:
    """A run dict in the shape metrics_from_confusion returns, with chosen numbers."""
    return {
        "seed": seed, "overall_accuracy": oa, "average_accuracy": aa, "kappa": kappa, "n_test": 10,
        "per_class": [
            {"name": "a", "support": 4, "accuracy": oa, "precision": oa, "f1": f1_a, "iou": f1_a},
            {"name": "b", "support": 6, "accuracy": 1.0, "precision": 1.0, "f1": 1.0, "iou": 1.0},
        ],
    }


def test_aggregate_mean_and_sample_std_on_known_numbers():
    runs = [_run(0.80, 0.70, 0.60, 0.5, 0), _run(0.90, 0.80, 0.70, None, 1), _run(0.85, 0.75, 0.65, 0.7, 2)]
    agg = aggregate_runs(runs)
    assert agg["n_runs"] == 3 and agg["seeds"] == [0, 1, 2]
    # mean(0.80, 0.90, 0.85) = 0.85; sample std = sqrt((0.05^2 + 0.05^2 + 0) / 2) = 0.05
    assert agg["overall_accuracy"]["mean"] == pytest.approx(0.85)
    assert agg["overall_accuracy"]["std"] == pytest.approx(0.05)
    assert agg["average_accuracy"]["mean"] == pytest.approx(0.75)
    assert agg["kappa"]["std"] == pytest.approx(0.05)
    f1_a = agg["per_class"][0]["f1"]
    # undefined in run 1, so over 2 runs: mean(0.5, 0.7) = 0.6; std = sqrt((0.1^2 + 0.1^2) / 1) = 0.141421
    assert f1_a["mean"] == pytest.approx(0.6) and f1_a["std"] == pytest.approx(0.1414213562) and f1_a["n"] == 2
    assert agg["per_class"][1]["accuracy"] == {"mean": 1.0, "std": 0.0, "n": 3}
    assert agg["per_class"][0]["support"] == 4


def test_aggregate_single_run_has_zero_std_and_rejects_mixed_scenes():
    agg = aggregate_runs([_run(0.8, 0.7, 0.6, 0.5, 7)])
    assert agg["overall_accuracy"] == {"mean": 0.8, "std": 0.0, "n": 1}
    other = _run(0.8, 0.7, 0.6, 0.5, 8)
    other["per_class"][1]["name"] = "z"
    with pytest.raises(UserError, match="same scene"):
        aggregate_runs([_run(0.8, 0.7, 0.6, 0.5, 7), other])
    with pytest.raises(UserError, match="no runs"):
        aggregate_runs([])


def test_aggregate_of_real_metrics_runs():
    rng = np.random.default_rng(3)
    runs = []
    for seed in range(3):
        truth = rng.integers(0, 3, 300)
        pred = np.where(rng.random(300) < 0.7, truth, rng.integers(0, 3, 300))
        runs.append({**metrics_from_confusion(confusion_matrix(truth, pred, 3), NAMES3), "seed": seed})
    agg = aggregate_runs(runs)
    oas = [r["overall_accuracy"] for r in runs]
    assert agg["overall_accuracy"]["mean"] == pytest.approx(np.mean(oas))
    assert agg["overall_accuracy"]["std"] == pytest.approx(np.std(oas, ddof=1))


def test_format_percent():
    assert format_percent(0.853, 0.0121) == "85.30 ± 1.21"
    assert format_percent(1.0, 0.0) == "100.00 ± 0.00"
    assert format_percent(0.5) == "50.00"
    assert format_percent(None, None) == "n/a"
    assert format_percent(float("nan"), 0.1) == "n/a"
