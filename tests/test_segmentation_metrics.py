"""Segmentation scores from one confusion matrix: IoU per class, mean F1 and mIoU over the classes
that have test pixels, checked by hand; the classification outputs stay as they were."""
from __future__ import annotations

import numpy as np
import pytest

from deephyperx.metrics import (CLASS_MEANS, aggregate_runs, class_means, mean_and_std, metrics_from_confusion,
                                segmentation_metrics)
from deephyperx.segmentation_run import aggregate_segmentation, pooled_detection

NAMES = ["road", "building", "car"]
#: rows = truth, columns = prediction; 'car' has no test pixels but is predicted twice.
CM = np.array([[8, 2, 0],
               [1, 6, 2],
               [0, 0, 0]])


def test_iou_f1_and_their_means_by_hand():
    scores = segmentation_metrics(CM, NAMES)
    road, building, car = scores["per_class"]
    assert road["iou"] == pytest.approx(8 / (10 + 9 - 8)) and road["f1"] == pytest.approx(16 / 19)
    assert building["iou"] == pytest.approx(6 / (9 + 8 - 6)) and building["f1"] == pytest.approx(12 / 17)
    assert car["support"] == 0 and car["iou"] == 0.0 and car["f1"] == 0.0  # predicted, never true
    assert scores["mean_iou"] == pytest.approx((8 / 11 + 6 / 11) / 2)  # car is left out: no test pixels
    assert scores["mean_f1"] == pytest.approx((16 / 19 + 12 / 17) / 2)
    assert scores["overall_accuracy"] == pytest.approx(14 / 19)


def test_classification_outputs_are_unchanged():
    plain = metrics_from_confusion(CM, NAMES)
    assert not set(CLASS_MEANS) & set(plain)
    extended = segmentation_metrics(CM, NAMES)
    assert {k: v for k, v in extended.items() if k not in CLASS_MEANS} == plain


def test_class_means_of_a_test_set_without_any_class_are_undefined():
    assert class_means([{"support": 0, "f1": None, "iou": None}]) == {"mean_f1": None, "mean_iou": None}


def test_runs_aggregate_to_mean_and_sample_std_on_full_and_eroded_ground_truth():
    runs = []
    for seed, diagonal in ((0, 8), (1, 6)):
        cm = np.array([[diagonal, 10 - diagonal, 0], [1, 8, 0], [0, 1, 3]])
        run = segmentation_metrics(cm, NAMES)
        run.update(seed=seed, eroded=segmentation_metrics(cm + np.eye(3, dtype=int), NAMES))
        run["detection"] = pooled_detection([{"class": "car", "class_id": 2, "tp": 2 + seed, "fp": 1, "fn": 1,
                                              "objects": 3 + seed, "iou_threshold": 0.5}])
        runs.append(run)
    aggregate = aggregate_segmentation(runs)
    assert aggregate["mean_iou"] == mean_and_std([runs[0]["mean_iou"], runs[1]["mean_iou"]])
    assert aggregate["mean_iou"]["std"] > 0 and aggregate["n_runs"] == 2
    assert aggregate["eroded"]["mean_f1"]["mean"] == pytest.approx(
        np.mean([r["eroded"]["mean_f1"] for r in runs]))
    assert aggregate["overall_accuracy"] == aggregate_runs(runs)["overall_accuracy"]
    assert aggregate["detection"]["precision"]["mean"] == pytest.approx((2 / 3 + 3 / 4) / 2)


def test_object_scores_pool_counts_over_regions():
    pooled = pooled_detection([{"class": "car", "class_id": 4, "tp": 3, "fp": 1, "fn": 2, "objects": 4},
                               {"class": "car", "class_id": 4, "tp": 1, "fp": 0, "fn": 0, "objects": 1}])
    assert (pooled["tp"], pooled["fp"], pooled["fn"], pooled["objects"]) == (4, 1, 2, 5)
    assert pooled["precision"] == pytest.approx(4 / 5) and pooled["recall"] == pytest.approx(4 / 6)
    assert pooled_detection([{"class": "car", "class_id": 4, "tp": 0, "fp": 0, "fn": 0, "objects": 0}])["f1"] == 1.0


def test_reduced_views_of_big_windows_are_read_band_by_band():
    from deephyperx.segmentation_run import strided_read

    tile = np.arange(90 * 70).reshape(90, 70)
    windows = []

    def read(window):
        windows.append(window)
        r0, r1, c0, c1 = window
        return tile[r0:r1, c0:c1]
    view = strided_read(read, (5, 88, 3, 61), step=4, chunk_pixels=600)
    np.testing.assert_array_equal(view, tile[5:88:4, 3:61:4])
    assert len(windows) > 1 and all((w[1] - w[0]) * (w[3] - w[2]) <= 600 for w in windows)
