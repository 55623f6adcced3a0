"""scikit-learn baselines on single-pixel spectra, as in DeepHyperX.

Spectra are normalised by the engine (per-band standardisation by default) before
they reach these estimators, so the SVM kernel widths of the grid are meaningful.
scikit-learn is imported when an estimator is built, not when the zoo registers: a neural run never
loads it (about 100 MB of resident memory and 3 s of start-up).
"""
from __future__ import annotations

from typing import Any

from deephyperx.registry import register_model

_CV_FOLDS = 3


def _class_weight(class_balancing: bool):
    return "balanced" if class_balancing else None


def _folds(seed: int) -> Any:
    from sklearn.model_selection import StratifiedKFold

    return StratifiedKFold(n_splits=_CV_FOLDS, shuffle=True, random_state=seed)


@register_model("SVM", family="sklearn", patch_size=1,
                citation="Melgani & Bruzzone, Classification of hyperspectral remote sensing images with support "
                         "vector machines, IEEE TGRS 42(8), 2004")
def linear_svm(*, seed: int = 0, class_balancing: bool = False, C: float = 1.0, **_):
    """Linear support vector machine (libsvm, one-vs-one)."""
    from sklearn.svm import SVC

    return SVC(kernel="linear", C=C, class_weight=_class_weight(class_balancing), random_state=seed)


@register_model("SVM_grid", family="sklearn", patch_size=1,
                citation="Melgani & Bruzzone, IEEE TGRS 42(8), 2004; grid as in DeepHyperX (Audebert et al., "
                         "IEEE GRSM 2019)")
def svm_grid(*, seed: int = 0, class_balancing: bool = False, n_jobs: int = 1, **_):
    """SVM with kernel and C/gamma chosen by 3-fold stratified cross-validation on the training pixels:
    RBF gamma {1e-1, 1e-2, 1e-3} x C {1, 10, 100, 1000}; linear C {0.1 .. 1000}; cubic polynomial."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.svm import SVC

    grid = [
        {"kernel": ["rbf"], "gamma": [1e-1, 1e-2, 1e-3], "C": [1, 10, 100, 1000]},
        {"kernel": ["linear"], "C": [0.1, 1, 10, 100, 1000]},
        {"kernel": ["poly"], "degree": [3], "gamma": [1e-1, 1e-2, 1e-3], "C": [1, 10, 100]},
    ]
    base = SVC(class_weight=_class_weight(class_balancing), random_state=seed)
    return GridSearchCV(base, grid, cv=_folds(seed), n_jobs=n_jobs)


@register_model("SGD", family="sklearn", patch_size=1,
                citation="Bottou, Large-scale machine learning with stochastic gradient descent, COMPSTAT 2010")
def sgd(*, seed: int = 0, class_balancing: bool = False, **_):
    """Linear SVM trained by stochastic gradient descent (hinge loss, averaged weights)."""
    from sklearn.linear_model import SGDClassifier

    return SGDClassifier(loss="hinge", learning_rate="optimal", tol=1e-3, average=10, max_iter=1000,
                         class_weight=_class_weight(class_balancing), random_state=seed)


@register_model("nearest", family="sklearn", patch_size=1,
                citation="Cover & Hart, Nearest neighbor pattern classification, IEEE Trans. Inf. Theory 13(1), 1967")
def nearest(*, seed: int = 0, n_jobs: int = 1, **_):
    """k-nearest neighbours, distance-weighted, k in {1, 3, 5, 10, 20} chosen by cross-validation."""
    from sklearn.model_selection import GridSearchCV
    from sklearn.neighbors import KNeighborsClassifier

    return GridSearchCV(KNeighborsClassifier(weights="distance"), {"n_neighbors": [1, 3, 5, 10, 20]},
                        cv=_folds(seed), n_jobs=n_jobs)


@register_model("RF", family="sklearn", patch_size=1,
                citation="Breiman, Random forests, Machine Learning 45, 2001")
def random_forest(*, seed: int = 0, class_balancing: bool = False, n_jobs: int = 1, n_estimators: int = 200, **_):
    """Random forest of 200 trees on spectra."""
    from sklearn.ensemble import RandomForestClassifier

    return RandomForestClassifier(n_estimators=n_estimators, class_weight=_class_weight(class_balancing),
                                  n_jobs=n_jobs, random_state=seed)
