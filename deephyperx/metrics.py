"""Classification metrics, all derived from one confusion matrix.

Conventions (the same in every report the toolbox writes):

* Values are fractions in [0, 1]; :func:`format_percent` turns them into percent for people.
* Rows of the confusion matrix are the truth, columns the prediction.
* A value that is undefined (0/0) is ``None``, never NaN, so that the dict is valid JSON as is:
  - a class with no test pixels has ``accuracy`` (recall) ``None`` and is left out of the
    average accuracy (AA); if the model never predicts it either, its precision, F1 and IoU
    are ``None`` too; if the model does predict it, precision, F1 and IoU are 0 (all wrong);
  - a class that is never predicted has ``precision`` ``None``; its F1 and IoU are 0 when it
    has test pixels.
* Mean F1 and mean IoU (mIoU), reported for segmentation, average the classes that have test
  pixels (a class absent from the test truth is left out, whether or not it is predicted).
* Kappa is Cohen's kappa; when chance agreement is 1 (truth and prediction are one and the same
  class everywhere) the agreement is perfect and kappa is defined as 1.
* Several runs (seeds) give mean and *sample* standard deviation (ddof=1), as the
  hyperspectral literature reports them; with one run the standard deviation is 0.
"""
from __future__ import annotations

import math
from typing import Any, Optional, Sequence

import numpy as np

from deephyperx.errors import UserError

#: Per-class metrics reported for each class, in table order.
PER_CLASS_METRICS = ("accuracy", "precision", "f1", "iou")
#: Scalar metrics reported for the whole test set.
OVERALL_METRICS = ("overall_accuracy", "average_accuracy", "kappa")
#: Class-averaged scores added by :func:`segmentation_metrics`.
CLASS_MEANS = ("mean_f1", "mean_iou")


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Count (truth, prediction) pairs into an (n_classes, n_classes) int64 matrix.

    Pixels whose truth is negative (unlabelled, IGNORE=-1) are skipped, so a whole label map
    and a whole predicted map can be passed directly.
    """
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.shape != y_pred.shape:
        raise UserError(f"confusion matrix: {y_true.size} true labels but {y_pred.size} predictions; "
                        "pass arrays of the same size")
    if n_classes < 1:
        raise UserError(f"confusion matrix: n_classes={n_classes}; give at least 1 class")
    keep = y_true >= 0
    truth = y_true[keep].astype(np.int64)
    pred = y_pred[keep].astype(np.int64)
    _check_range("true label", truth, n_classes)
    _check_range("predicted label", pred, n_classes)
    counts = np.bincount(truth * n_classes + pred, minlength=n_classes * n_classes)
    return counts.reshape(n_classes, n_classes).astype(np.int64)


def _check_range(what: str, values: np.ndarray, n_classes: int) -> None:
    """Raise if any class id lies outside 0..n_classes-1."""
    if values.size and (values.min() < 0 or values.max() >= n_classes):
        bad = values[(values < 0) | (values >= n_classes)][0]
        raise UserError(f"confusion matrix: {what} {int(bad)} is outside 0..{n_classes - 1}; "
                        "check the class count of the model and the scene")


def _ratio(num: float, den: float) -> Optional[float]:
    """num/den, or None when den is 0 (undefined)."""
    return float(num) / float(den) if den else None


def _kappa(cm: np.ndarray) -> float:
    """Cohen's kappa from a confusion matrix with at least one entry."""
    total = float(cm.sum())
    observed = np.trace(cm) / total
    expected = float((cm.sum(axis=1).astype(np.float64) @ cm.sum(axis=0).astype(np.float64)) / total ** 2)
    if expected >= 1.0:  # one class everywhere in truth and prediction: perfect agreement
        return 1.0
    return float((observed - expected) / (1.0 - expected))


def per_class_metrics(cm: np.ndarray, class_names: Sequence[str]) -> list[dict[str, Any]]:
    """Support, recall ("accuracy"), precision, F1 and IoU of each class (None where undefined)."""
    tp = np.diag(cm)
    support = cm.sum(axis=1)
    predicted = cm.sum(axis=0)
    rows = []
    for k, name in enumerate(class_names):
        union = support[k] + predicted[k] - tp[k]
        rows.append({
            "name": str(name),
            "support": int(support[k]),
            "accuracy": _ratio(tp[k], support[k]),
            "precision": _ratio(tp[k], predicted[k]),
            "f1": _ratio(2 * tp[k], support[k] + predicted[k]),
            "iou": _ratio(tp[k], union),
        })
    return rows


def metrics_from_confusion(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """OA, AA, kappa and per-class metrics of one confusion matrix (see the module notes)."""
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
        raise UserError(f"metrics: the confusion matrix has shape {cm.shape}; expected a square matrix")
    if cm.shape[0] != len(class_names):
        raise UserError(f"metrics: {len(class_names)} class names for a {cm.shape[0]}-class confusion matrix; "
                        "give one name per class")
    if (cm < 0).any():
        raise UserError("metrics: the confusion matrix holds negative counts; it must hold pixel counts")
    total = int(cm.sum())
    if total == 0:
        raise UserError("metrics: the test set is empty (confusion matrix of zeros); "
                        "check the split leaves test pixels")
    per_class = per_class_metrics(cm, class_names)
    recalls = [row["accuracy"] for row in per_class if row["accuracy"] is not None]
    return {
        "overall_accuracy": float(np.trace(cm)) / total,
        "average_accuracy": float(np.mean(recalls)),
        "kappa": _kappa(cm),
        "n_test": total,
        "per_class": per_class,
        "confusion_matrix": cm.astype(np.int64).tolist(),
    }


def class_means(per_class: Sequence[dict[str, Any]]) -> dict[str, Optional[float]]:
    """Mean F1 and mean IoU over the classes with test pixels (None when no class has any)."""
    present = [row for row in per_class if row["support"] > 0]
    if not present:
        return {"mean_f1": None, "mean_iou": None}
    return {"mean_f1": float(np.mean([row["f1"] for row in present])),
            "mean_iou": float(np.mean([row["iou"] for row in present]))}


def segmentation_metrics(cm: np.ndarray, class_names: Sequence[str]) -> dict[str, Any]:
    """:func:`metrics_from_confusion` plus ``mean_f1`` and ``mean_iou`` (see the module notes)."""
    metrics = metrics_from_confusion(cm, class_names)
    metrics.update(class_means(metrics["per_class"]))
    return metrics


def mean_and_std(values: Sequence[Optional[float]]) -> dict[str, Optional[float]]:
    """``{"mean", "std", "n"}`` of the defined values (sample std, 0 for one value), as the
    aggregate of several runs reports every statistic."""
    return _mean_std(values)


def _mean_std(values: Sequence[Optional[float]]) -> dict[str, Optional[float]]:
    """Mean and sample std (ddof=1; 0 for a single value) of the defined values; None if none."""
    defined = np.array([v for v in values if v is not None and not math.isnan(v)], dtype=np.float64)
    if defined.size == 0:
        return {"mean": None, "std": None, "n": 0}
    std = float(defined.std(ddof=1)) if defined.size > 1 else 0.0
    return {"mean": float(defined.mean()), "std": std, "n": int(defined.size)}


def _class_names_of(run: dict[str, Any]) -> list[str]:
    return [row["name"] for row in run["per_class"]]


def aggregate_runs(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Mean and sample standard deviation over runs of OA, AA, kappa and every per-class metric.

    Each run is a dict from :func:`metrics_from_confusion` (optionally with a ``"seed"`` key).
    Each statistic is ``{"mean", "std", "n"}`` where ``n`` counts the runs in which the value was
    defined (a class absent from one run's test set does not drag its mean to zero).
    """
    if not runs:
        raise UserError("aggregate: no runs given; pass the metrics of at least one run")
    names = _class_names_of(runs[0])
    for i, run in enumerate(runs[1:], start=1):
        if _class_names_of(run) != names:
            raise UserError(f"aggregate: run {i} has classes {_class_names_of(run)} but run 0 has {names}; "
                            "aggregate only runs on the same scene")
    result: dict[str, Any] = {"n_runs": len(runs)}
    seeds = [run["seed"] for run in runs if "seed" in run]
    if seeds:
        result["seeds"] = seeds
    for key in OVERALL_METRICS:
        result[key] = _mean_std([run[key] for run in runs])
    result["per_class"] = [
        {
            "name": name,
            "support": _mean_std([run["per_class"][k]["support"] for run in runs])["mean"],
            **{m: _mean_std([run["per_class"][k][m] for run in runs]) for m in PER_CLASS_METRICS},
        }
        for k, name in enumerate(names)
    ]
    return result


def format_percent(mean: Optional[float], std: Optional[float] = None) -> str:
    """Fractions as percent with two decimals: (0.853, 0.0121) -> "85.30 ± 1.21"; None -> "n/a"."""
    if mean is None or (isinstance(mean, float) and math.isnan(mean)):
        return "n/a"
    text = f"{100.0 * mean:.2f}"
    if std is None or (isinstance(std, float) and math.isnan(std)):
        return text
    return f"{text} ± {100.0 * std:.2f}"


def format_stat(stat: Optional[dict[str, Any]]) -> str:
    """A statistic over runs (``{"mean", "std", "n"}``, see :func:`aggregate_runs`) in percent:
    ``"85.30 ± 1.21"``, or the mean alone when one run defines it (its std of 0 says nothing of the
    spread); ``"n/a"`` when undefined. A statistic without ``n`` shows its std as given."""
    if not stat:
        return "n/a"
    n = stat.get("n")
    return format_percent(stat.get("mean"), None if n is not None and n < 2 else stat.get("std"))
