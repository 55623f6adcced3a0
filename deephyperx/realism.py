"""How realistic are synthetic spectra? Metrics that compare them with real ones, and a report.

Every metric is a pure, seeded function of labelled sets (``(N, B)`` spectra in original units
with ``(N,)`` class ids), so that tests can check it on cases whose answer is known:

* **Utility** (the rows of Audebert et al., IGARSS 2018): a linear SVM and an MLP trained on real
  spectra and tested on real ones (TRTR), trained on synthetic and tested on real (TSTR), trained
  on both (real + synthetic -> real), and trained on real but tested on synthetic. TSTR / TRTR
  near 1 means the synthetic set carries the class information of the real one. Every classifier
  standardises its input with the statistics of the *real* training spectra, so all rows see the
  same scaling.
* **Two-sample test**: a classifier, cross-validated on a set balanced per class, tries to tell
  real from synthetic (Lopez-Paz & Oquab, ICLR 2017). 50 % means it cannot: the ideal.
* **Spectral angles**: for each synthetic spectrum the angle to its nearest real training
  spectrum, against the same for real test spectra. Synthetic spectra much closer to the
  training set than unseen real spectra are means *memorisation*; a class whose synthetic spectra
  are much less diverse (mean pairwise angle) than its real ones means *mode collapse*.

:func:`write_realism_report` computes them all and writes ``realism.json``, ``realism.md``,
``realism.html`` and PNG figures (drawn by :mod:`deephyperx.realism_figures`) into a folder.
"""
from __future__ import annotations

import html
import math
import warnings
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from deephyperx.atomic import atomic_write_text
from deephyperx.errors import UserError
from deephyperx.metrics import confusion_matrix, format_percent, metrics_from_confusion

LabelledSet = tuple[np.ndarray, np.ndarray]

#: Classifiers of the utility rows (the paper's linear SVM and MLP).
CLASSIFIERS = ("linear_svm", "mlp")
#: At most this many spectra of one set train a utility classifier (drawn per class, seeded).
MAX_FIT_SAMPLES = 10_000
#: At most this many spectra of each source (real, synthetic) enter the two-sample test.
MAX_TWO_SAMPLE = 4_000
#: Folds of the two-sample test's cross-validation.
TWO_SAMPLE_FOLDS = 5
#: At most this many synthetic (and real test) spectra are matched to their nearest real one.
MAX_ANGLE_QUERIES = 5_000
#: At most this many spectra per class and source enter the pairwise-angle diversity.
MAX_DIVERSITY = 400
#: Memorisation is flagged when the synthetic spectra's median nearest angle is below this
#: share of the real test spectra's.
MEMORISATION_FACTOR = 0.5
#: Mode collapse is flagged for a class whose synthetic diversity is below this share of the real.
COLLAPSE_FACTOR = 0.5
#: Angles below this (radians) count as copies of a training spectrum.
COPY_ANGLE = 1e-6

FIGURES = {
    "class_spectra": "realism_class_spectra.png",
    "pca": "realism_pca.png",
    "angles": "realism_angles.png",
    "interpolation": "realism_interpolation.png",
}


# ----- input checks and sampling -------------------------------------------------------------------

def check_set(name: str, data: LabelledSet, n_classes: int, n_bands: Optional[int] = None) -> LabelledSet:
    """``(spectra, labels)`` as float64 (N, B) and int64 (N,), or a one-line :class:`UserError`."""
    spectra, labels = np.asarray(data[0], dtype=np.float64), np.asarray(data[1], dtype=np.int64)
    if spectra.ndim != 2 or labels.shape != (spectra.shape[0],):
        raise UserError(f"{name}: spectra {spectra.shape} and labels {labels.shape} do not form (N, bands) + (N,)")
    if n_bands is not None and spectra.shape[1] != n_bands:
        raise UserError(f"{name}: {spectra.shape[1]} bands, but the real spectra have {n_bands}")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise UserError(f"{name}: class ids outside 0..{n_classes - 1}")
    if not np.isfinite(spectra).all():
        raise UserError(f"{name}: spectra hold NaN or infinite values")
    return spectra, labels


def stratified_subsample(labels: np.ndarray, limit: int, rng: np.random.Generator) -> np.ndarray:
    """Sorted indices of at most ``limit`` samples, each class keeping its share (at least one)."""
    n = len(labels)
    if n <= limit:
        return np.arange(n)
    chosen = []
    for k in np.unique(labels):
        members = np.flatnonzero(labels == k)
        take = max(1, int(round(limit * len(members) / n)))
        chosen.append(rng.choice(members, size=min(take, len(members)), replace=False))
    return np.sort(np.concatenate(chosen))


def _subset(data: LabelledSet, limit: int, rng: np.random.Generator) -> LabelledSet:
    keep = stratified_subsample(data[1], limit, rng)
    return data[0][keep], data[1][keep]


def joined(a: LabelledSet, b: LabelledSet) -> LabelledSet:
    """Two labelled sets as one."""
    return np.concatenate([a[0], b[0]]), np.concatenate([a[1], b[1]])


def _rng(seed: int, *keys: int) -> np.random.Generator:
    """An independent generator per metric, so that one metric's draws never shift another's."""
    return np.random.default_rng([seed, *keys])


# ----- utility: train on one set, test on another --------------------------------------------------

class Standardiser:
    """Per-band standardisation with fixed statistics (those of the real training spectra)."""

    def __init__(self, reference: np.ndarray):
        self.mean = reference.mean(axis=0)
        std = reference.std(axis=0)
        self.scale = np.where(std > 1e-12, std, 1.0)

    def __call__(self, spectra: np.ndarray) -> np.ndarray:
        return (spectra - self.mean) / self.scale


def make_classifier(kind: str, standardiser: Standardiser, seed: int) -> Any:
    """A scikit-learn pipeline: the fixed standardisation, then a linear SVM or an MLP."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import FunctionTransformer
    from sklearn.svm import LinearSVC

    if kind == "linear_svm":
        model = LinearSVC(C=1.0, max_iter=5000, random_state=seed)
    elif kind == "mlp":
        model = MLPClassifier(hidden_layer_sizes=(256,), max_iter=200, early_stopping=True, random_state=seed)
    else:
        raise UserError(f"unknown realism classifier '{kind}'; choose one of: {', '.join(CLASSIFIERS)}")
    return make_pipeline(FunctionTransformer(standardiser), model)


def train_and_score(kind: str, train: LabelledSet, test: LabelledSet, n_classes: int,
                    standardiser: Standardiser, seed: int) -> dict[str, Any]:
    """Fit ``kind`` on ``train``, score on ``test``: overall and average accuracy (fractions)."""
    if len(train[1]) == 0 or len(test[1]) == 0:
        return {"overall_accuracy": None, "average_accuracy": None, "n_train": len(train[1]), "n_test": len(test[1])}
    if len(np.unique(train[1])) < 2:  # one class: every prediction is that class
        prediction = np.full(len(test[1]), train[1][0])
    else:
        classifier = make_classifier(kind, standardiser, seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence warnings: the scores say what they need to
            classifier.fit(train[0], train[1])
        prediction = classifier.predict(test[0])
    scores = metrics_from_confusion(confusion_matrix(test[1], prediction, n_classes),
                                    [str(k) for k in range(n_classes)])
    return {"overall_accuracy": scores["overall_accuracy"], "average_accuracy": scores["average_accuracy"],
            "n_train": int(len(train[1])), "n_test": int(len(test[1]))}


#: The utility experiments: (key, human name, training set, test set).
UTILITY_ROWS = (
    ("trtr", "real train -> real test (TRTR)", "real", "real_test"),
    ("tstr", "synthetic -> real test (TSTR)", "synthetic", "real_test"),
    ("real_plus_synthetic", "real + synthetic -> real test", "both", "real_test"),
    ("trts", "real train -> synthetic (TRTS)", "real", "synthetic"),
)


def utility_scores(real_train: LabelledSet, real_test: LabelledSet, synthetic: LabelledSet, n_classes: int,
                   seed: int, classifiers: tuple[str, ...] = CLASSIFIERS,
                   max_fit: int = MAX_FIT_SAMPLES, step_done: Optional[Callable[[str], None]] = None) -> dict[str, Any]:
    """The paper's rows for each classifier, and TSTR / TRTR (1.0: synthetic spectra teach as much
    as real ones). Training sets larger than ``max_fit`` are subsampled per class, seeded.
    ``step_done(name)`` hears of each classifier fitted and scored (``len(classifiers) x 4`` of them)."""
    standardiser = Standardiser(real_train[0])
    fit_real = _subset(real_train, max_fit, _rng(seed, 1))
    fit_synthetic = _subset(synthetic, max_fit, _rng(seed, 2))
    sets = {"real": fit_real, "synthetic": fit_synthetic, "real_test": real_test,
            "both": joined(fit_real, fit_synthetic)}
    result: dict[str, Any] = {}
    for kind in classifiers:
        rows = {}
        for key, name, train, test in UTILITY_ROWS:
            rows[key] = train_and_score(kind, sets[train], sets[test], n_classes, standardiser, seed)
            if step_done is not None:
                step_done(f"{kind}: {name}")
        trtr, tstr = rows["trtr"]["overall_accuracy"], rows["tstr"]["overall_accuracy"]
        rows["tstr_over_trtr"] = tstr / trtr if trtr and tstr is not None else None
        result[kind] = rows
    return result


# ----- two-sample test -----------------------------------------------------------------------------

def balanced_two_sample_set(real: LabelledSet, synthetic: LabelledSet, rng: np.random.Generator,
                            limit: int = MAX_TWO_SAMPLE,
                            min_per_class: int = TWO_SAMPLE_FOLDS) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spectra, source (0 real, 1 synthetic) and class of a set with as many real as synthetic
    spectra *in every class*, at most about ``limit`` per source: a classifier can then only win on
    the spectra themselves. Classes with fewer than ``min_per_class`` spectra in either source
    are left out (a cross-validation needs some of each in every fold)."""
    classes = np.intersect1d(np.unique(real[1]), np.unique(synthetic[1]))
    per_class = {k: min(int((real[1] == k).sum()), int((synthetic[1] == k).sum())) for k in classes}
    per_class = {k: m for k, m in per_class.items() if m >= min_per_class}
    total = sum(per_class.values())
    if total > limit:
        per_class = {k: max(min_per_class, int(limit * m / total)) for k, m in per_class.items()}
    spectra, source, labels = [], [], []
    for k, m in per_class.items():
        for flag, (x, y) in enumerate((real, synthetic)):
            pick = rng.choice(np.flatnonzero(y == k), size=m, replace=False)
            spectra.append(x[pick])
            source.append(np.full(m, flag))
            labels.append(np.full(m, k))
    if not spectra:
        return np.empty((0, real[0].shape[1])), np.empty(0, np.int64), np.empty(0, np.int64)
    return np.concatenate(spectra), np.concatenate(source).astype(np.int64), np.concatenate(labels).astype(np.int64)


def two_sample_test(real: LabelledSet, synthetic: LabelledSet, class_names: list[str], seed: int,
                    folds: int = TWO_SAMPLE_FOLDS, limit: int = MAX_TWO_SAMPLE) -> dict[str, Any]:
    """Cross-validated accuracy of a random forest telling real from synthetic spectra, overall and
    per class, with the one-sided binomial p-value of doing better than chance (50 %). Classes
    with fewer than ``folds`` spectra in either set are left out (and listed)."""
    from scipy.stats import binomtest
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    spectra, source, labels = balanced_two_sample_set(real, synthetic, _rng(seed, 3), limit, folds)
    present = np.union1d(np.unique(real[1]), np.unique(synthetic[1]))
    left_out = [class_names[k] for k in np.setdiff1d(present, labels)]
    if len(labels) == 0:
        return {"accuracy": None, "n_per_source": 0, "left_out": left_out,
                "note": f"no class has {folds} spectra in both sets, too few for a cross-validated test"}
    forest = RandomForestClassifier(n_estimators=100, random_state=seed, n_jobs=1)
    split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    predicted = cross_val_predict(forest, spectra, source, cv=split.split(spectra, labels * 2 + source))
    correct = predicted == source
    per_class = [{"class": class_names[k], "accuracy": float(correct[labels == k].mean()),
                  "n_per_source": int((labels == k).sum() // 2)} for k in np.unique(labels)]
    return {"accuracy": float(correct.mean()), "n_per_source": int(len(source) // 2), "folds": folds,
            "p_value": float(binomtest(int(correct.sum()), len(correct), 0.5, alternative="greater").pvalue),
            "classifier": "random forest (100 trees)", "per_class": per_class, "left_out": left_out}


# ----- spectral angles -----------------------------------------------------------------------------

def _unit(spectra: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(spectra, axis=1, keepdims=True)
    return spectra / np.where(norms > 0, norms, 1.0)


def angle_between(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spectral angles (radians) between matching rows of ``a`` and ``b``, exact near zero
    (computed from the chord between unit vectors rather than from an arccos)."""
    chord = np.linalg.norm(_unit(a) - _unit(b), axis=1)
    return 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))


def pairwise_angles(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Spectral angles (radians) between every row of ``a`` and every row of ``b``: (N, M)."""
    return np.arccos(np.clip(_unit(a) @ _unit(b).T, -1.0, 1.0))


def nearest_angles(queries: np.ndarray, reference: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """For each query spectrum, the spectral angle (radians) to its nearest reference spectrum."""
    if len(reference) == 0:
        return np.full(len(queries), np.nan)
    ref = _unit(reference)
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        part = queries[start:start + chunk]
        nearest = np.argmax(_unit(part) @ ref.T, axis=1)
        out[start:start + chunk] = angle_between(part, reference[nearest])
    return out


def _describe(angles: np.ndarray) -> dict[str, Optional[float]]:
    if len(angles) == 0:
        return {"mean": None, "median": None, "p5": None, "p95": None, "n": 0}
    return {"mean": float(angles.mean()), "median": float(np.median(angles)), "p5": float(np.percentile(angles, 5)),
            "p95": float(np.percentile(angles, 95)), "n": int(len(angles))}


def memorisation_summary(synthetic_nearest: np.ndarray, test_nearest: np.ndarray) -> dict[str, Any]:
    """Compare synthetic spectra's nearest angles to the training set with real test spectra's.

    ``median_ratio`` near 1: synthetic spectra are as far from the training spectra as unseen real
    ones; far below 1 (under :data:`MEMORISATION_FACTOR`): the generator reproduces its training
    set. ``share_below_test_p5`` is about 5 % when the two match.
    """
    synthetic, test = _describe(synthetic_nearest), _describe(test_nearest)
    ratio = synthetic["median"] / test["median"] if synthetic["median"] is not None and test["median"] else None
    below = float((synthetic_nearest < test["p5"]).mean()) \
        if test["p5"] is not None and len(synthetic_nearest) else None
    return {"synthetic": synthetic, "real_test": test, "median_ratio": ratio, "share_below_test_p5": below,
            "copies": int((synthetic_nearest < COPY_ANGLE).sum()),
            "memorised": bool(ratio is not None and ratio < MEMORISATION_FACTOR)}


def mean_pairwise_angle(spectra: np.ndarray) -> Optional[float]:
    """Mean spectral angle (radians) between distinct spectra of a set: its diversity (0 when
    every spectrum is the same); None for fewer than two spectra."""
    n = len(spectra)
    if n < 2:
        return None
    unit = _unit(spectra)
    chord = np.sqrt(np.clip(2.0 - 2.0 * (unit @ unit.T), 0.0, 4.0))
    angles = 2.0 * np.arcsin(np.clip(chord / 2.0, 0.0, 1.0))
    return float(angles[~np.eye(n, dtype=bool)].mean())


def diversity_by_class(real: LabelledSet, synthetic: LabelledSet, class_names: list[str], seed: int,
                       limit: int = MAX_DIVERSITY) -> list[dict[str, Any]]:
    """Per class: mean pairwise angle of real and of synthetic spectra, their ratio, and whether the
    synthetic class has collapsed (ratio under :data:`COLLAPSE_FACTOR`)."""
    rows = []
    for k, name in enumerate(class_names):
        rng = _rng(seed, 4, k)
        values = []
        for x, y in (real, synthetic):
            members = np.flatnonzero(y == k)
            if len(members) > limit:
                members = rng.choice(members, size=limit, replace=False)
            values.append(mean_pairwise_angle(x[members]))
        ratio = values[1] / values[0] if values[0] and values[1] is not None else None
        rows.append({"class": name, "real": values[0], "synthetic": values[1], "ratio": ratio,
                     "collapsed": bool(ratio is not None and ratio < COLLAPSE_FACTOR)})
    return rows


def angle_statistics(real_train: LabelledSet, real_test: LabelledSet, synthetic: LabelledSet,
                     class_names: list[str], seed: int,
                     max_queries: int = MAX_ANGLE_QUERIES) -> tuple[dict[str, Any], np.ndarray, np.ndarray]:
    """Memorisation and diversity statistics, with the nearest-angle arrays (for the histogram)."""
    queries = _subset(synthetic, max_queries, _rng(seed, 5))
    tests = _subset(real_test, max_queries, _rng(seed, 6))
    synthetic_nearest = nearest_angles(queries[0], real_train[0])
    test_nearest = nearest_angles(tests[0], real_train[0])
    diversity = diversity_by_class(joined(real_train, real_test), synthetic, class_names, seed)
    stats = {"nearest_to_real_train": memorisation_summary(synthetic_nearest, test_nearest),
             "diversity": diversity, "collapsed_classes": [row["class"] for row in diversity if row["collapsed"]],
             "unit": "radians"}
    return stats, synthetic_nearest, test_nearest


# ----- the report ----------------------------------------------------------------------------------

def class_mean_std(data: LabelledSet, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation spectra of each class, (K, B) each (NaN for an absent class)."""
    spectra, labels = data
    mean = np.full((n_classes, spectra.shape[1]), np.nan)
    std = np.full((n_classes, spectra.shape[1]), np.nan)
    for k in range(n_classes):
        members = spectra[labels == k]
        if len(members):
            mean[k], std[k] = members.mean(axis=0), members.std(axis=0)
    return mean, std


def set_counts(real_train: LabelledSet, real_test: LabelledSet, synthetic: LabelledSet,
               class_names: list[str]) -> dict[str, Any]:
    """How many spectra each set holds, in total and per class."""
    sets = {"real_train": real_train, "real_test": real_test, "synthetic": synthetic}
    return {"total": {key: int(len(data[1])) for key, data in sets.items()},
            "per_class": [{"class": name, **{key: int((data[1] == k).sum()) for key, data in sets.items()}}
                          for k, name in enumerate(class_names)]}


def check_report_inputs(real_train: LabelledSet, real_test: LabelledSet, synthetic: LabelledSet, n_classes: int,
                        wavelengths: Optional[np.ndarray],
                        interpolation: Optional[np.ndarray]) -> tuple[LabelledSet, LabelledSet, LabelledSet]:
    """The three sets checked and converted (:func:`check_set`), with the wavelengths and
    interpolation spectra checked against their band count; one-line errors."""
    real_train = check_set("real training spectra", real_train, n_classes)
    n_bands = real_train[0].shape[1]
    real_test = check_set("real test spectra", real_test, n_classes, n_bands)
    synthetic = check_set("synthetic spectra", synthetic, n_classes, n_bands)
    if len(real_train[1]) == 0 or len(synthetic[1]) == 0:
        raise UserError("the realism report needs real training spectra and synthetic spectra; one set is empty")
    if wavelengths is not None and len(wavelengths) != n_bands:
        raise UserError(f"{len(wavelengths)} wavelengths for {n_bands} bands")
    if interpolation is not None and (np.ndim(interpolation) != 2 or np.shape(interpolation)[1] != n_bands):
        raise UserError(f"interpolation spectra of shape {np.shape(interpolation)}; expected (steps, {n_bands})")
    return real_train, real_test, synthetic


def write_figures(out: Path, real_train: LabelledSet, real_test: LabelledSet, synthetic: LabelledSet,
                  class_names: list[str], wavelengths: Optional[np.ndarray], interpolation: Optional[np.ndarray],
                  angles: tuple[np.ndarray, np.ndarray, list[dict]], seed: int) -> dict[str, str]:
    """Draw the report's figures into ``out``; return {figure key: file name} of those drawn."""
    from deephyperx import realism_figures as figures

    out.mkdir(parents=True, exist_ok=True)
    n_classes = len(class_names)
    figures.save(figures.class_spectra_figure(wavelengths, class_mean_std(joined(real_train, real_test), n_classes),
                                              class_mean_std(synthetic, n_classes), class_names),
                 out / FIGURES["class_spectra"])
    figures.save(figures.pca_figure(real_train, synthetic, class_names, figures.class_colours(n_classes), seed),
                 out / FIGURES["pca"])
    figures.save(figures.angle_figure(*angles), out / FIGURES["angles"])
    shown = ["class_spectra", "pca", "angles"]
    if interpolation is not None and len(interpolation):
        figures.save(figures.interpolation_figure(wavelengths, np.asarray(interpolation, float)),
                     out / FIGURES["interpolation"])
        shown.append("interpolation")
    return {k: FIGURES[k] for k in shown}


def write_realism_report(out: Path, real_train: tuple[np.ndarray, np.ndarray], real_test: tuple[np.ndarray, np.ndarray],
                         synthetic: tuple[np.ndarray, np.ndarray], class_names: list[str],
                         wavelengths: Optional[np.ndarray], interpolation: Optional[np.ndarray], seed: int,
                         progress: Optional[Callable[[int, int, str], None]] = None) -> dict:
    """Compute every realism metric and write ``realism.json``, ``realism.md``, ``realism.html``
    and the figures into ``out``; return what ``realism.json`` holds. ``progress(done, total, step)``
    hears of each step done (angles, every utility classifier, the two-sample test, the figures)."""
    from deephyperx.reports import save_json

    out, n_classes = Path(out), len(class_names)
    real_train, real_test, synthetic = check_report_inputs(real_train, real_test, synthetic, n_classes,
                                                           wavelengths, interpolation)
    n_bands = real_train[0].shape[1]
    total, done = 3 + len(CLASSIFIERS) * len(UTILITY_ROWS), 0

    def step_done(name: str) -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total, name)

    angles, synthetic_nearest, test_nearest = angle_statistics(real_train, real_test, synthetic, class_names, seed)
    step_done("spectral angles")
    report = {
        "seed": seed, "class_names": list(class_names), "n_bands": n_bands,
        "counts": set_counts(real_train, real_test, synthetic, class_names),
        "utility": utility_scores(real_train, real_test, synthetic, n_classes, seed, step_done=step_done),
        "two_sample": two_sample_test(real_train, synthetic, class_names, seed),
        "angles": angles,
    }
    step_done("two-sample test")
    report["figures"] = write_figures(out, real_train, real_test, synthetic, class_names, wavelengths,
                                      interpolation, (synthetic_nearest, test_nearest, angles["diversity"]), seed)
    step_done("figures")
    save_json(out / "realism.json", report)
    atomic_write_text(out / "realism.md", realism_markdown(report))
    atomic_write_text(out / "realism.html", realism_html(report))
    return report


# ----- Markdown and HTML ---------------------------------------------------------------------------

def _pct(value: Optional[float]) -> str:
    return format_percent(value)


def _num(value: Optional[float], digits: int = 3) -> str:
    return "n/a" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def _p_value(p: float) -> str:
    return "< 1e-16" if p < 1e-16 else f"= {p:.2g}"


def utility_table(utility: dict[str, Any]) -> list[list[str]]:
    """Rows (experiment, OA per classifier) of the paper-style utility table, OA in percent."""
    kinds = list(utility)
    rows = [["experiment", *(f"{k} OA (%)" for k in kinds)]]
    for key, name, _, _ in UTILITY_ROWS:
        rows.append([name, *(_pct(utility[k][key]["overall_accuracy"]) for k in kinds)])
    rows.append(["TSTR / TRTR", *(_num(utility[k]["tstr_over_trtr"]) for k in kinds)])
    return rows


def verdicts(report: dict[str, Any]) -> list[str]:
    """One plain sentence per check: what the numbers say."""
    lines = []
    for kind, rows in report["utility"].items():
        ratio = rows["tstr_over_trtr"]
        lines.append(f"{kind}: trained on synthetic spectra it reaches {_num(ratio, 2)} of the accuracy it reaches "
                     "trained on real ones (1.00 = as useful as real spectra).")
    two = report["two_sample"]
    if two.get("accuracy") is not None:
        lines.append(f"A classifier tells real from synthetic with {_pct(two['accuracy'])} % accuracy "
                     f"(50 % = indistinguishable; p {_p_value(two['p_value'])} against chance)"
                     + (f"; classes with too few spectra left out: {', '.join(two['left_out'])}." if two["left_out"]
                        else "."))
    else:
        lines.append(f"No two-sample test: {two.get('note')}.")
    nearest = report["angles"]["nearest_to_real_train"]
    lines.append(("Memorisation suspected: " if nearest["memorised"] else "No memorisation: ")
                 + f"the median angle from a synthetic spectrum to its nearest training spectrum is "
                 f"{_num(nearest['median_ratio'], 2)} times that of a real test spectrum "
                 f"({nearest['copies']} exact copies).")
    collapsed = report["angles"]["collapsed_classes"]
    lines.append(f"Mode collapse in: {', '.join(collapsed)}." if collapsed
                 else "No mode collapse: every synthetic class is at least half as diverse as the real one.")
    return lines


def _md_table(rows: list[list[str]]) -> str:
    head, *body = rows
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in body])


def detail_tables(report: dict[str, Any]) -> dict[str, list[list[str]]]:
    """The report's tables as rows of text: utility, two-sample per class, angles, diversity."""
    nearest = report["angles"]["nearest_to_real_train"]
    tables = {"Utility (overall accuracy on the test set)": utility_table(report["utility"])}
    two = report["two_sample"]
    if two.get("per_class"):
        tables["Two-sample test per class (50 % = indistinguishable)"] = \
            [["class", "accuracy (%)", "spectra per source"]] + \
            [[row["class"], _pct(row["accuracy"]), str(row["n_per_source"])] for row in two["per_class"]]
    tables["Angle to the nearest real training spectrum (radians)"] = \
        [["spectra", "mean", "median", "5th percentile", "95th percentile", "n"]] + \
        [[name, *(_num(nearest[key][s]) for s in ("mean", "median", "p5", "p95")), str(nearest[key]["n"])]
         for name, key in (("synthetic", "synthetic"), ("real test (baseline)", "real_test"))]
    tables["Diversity: mean pairwise angle within each class (radians)"] = \
        [["class", "real", "synthetic", "synthetic / real", "collapsed"]] + \
        [[row["class"], _num(row["real"]), _num(row["synthetic"]), _num(row["ratio"], 2),
          "yes" if row["collapsed"] else "no"] for row in report["angles"]["diversity"]]
    counts = report["counts"]["per_class"]
    tables["Spectra per class"] = [["class", "real train", "real test", "synthetic"]] + \
        [[row["class"], str(row["real_train"]), str(row["real_test"]), str(row["synthetic"])] for row in counts]
    return tables


FIGURE_CAPTIONS = {
    "class_spectra": "Per-class mean ± std spectra, real (training and test) against synthetic",
    "pca": "Two principal components of the real training spectra, synthetic spectra projected into them",
    "angles": "Angle to the nearest real training spectrum (synthetic vs real test) and per-class diversity",
    "interpolation": "Spectra generated along a latent path between two classes",
}


def realism_markdown(report: dict[str, Any]) -> str:
    """The report as Markdown: verdicts, tables, figures."""
    total = report["counts"]["total"]
    parts = ["# Realism of synthetic spectra", "",
             f"{total['synthetic']} synthetic spectra against {total['real_train']} real training and "
             f"{total['real_test']} real test spectra; seed {report['seed']}.", ""]
    parts += [f"- {line}" for line in verdicts(report)] + [""]
    for title, rows in detail_tables(report).items():
        parts += [f"## {title}", "", _md_table(rows), ""]
    parts += ["## Figures", ""]
    parts += [f"![{FIGURE_CAPTIONS[k]}]({name})\n" for k, name in report["figures"].items()]
    return "\n".join(parts)


def realism_html(report: dict[str, Any]) -> str:
    """A self-contained HTML page of the same content (figures linked beside it)."""
    def table(rows: list[list[str]]) -> str:
        head, *body = rows
        cells = "<tr>" + "".join(f"<th>{html.escape(c)}</th>" for c in head) + "</tr>"
        cells += "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in body)
        return f"<table>{cells}</table>"

    sections = "".join(f"<h2>{html.escape(title)}</h2>{table(rows)}" for title, rows in detail_tables(report).items())
    items = "".join(f"<li>{html.escape(line)}</li>" for line in verdicts(report))
    figures = "".join(f'<figure><img src="{html.escape(name)}" alt="{html.escape(FIGURE_CAPTIONS[k])}">'
                      f"<figcaption>{html.escape(FIGURE_CAPTIONS[k])}</figcaption></figure>"
                      for k, name in report["figures"].items())
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>Realism of synthetic spectra</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1400px}}table{{border-collapse:collapse;margin:1em 0}}
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}td:first-child{{text-align:left}}
img{{max-width:100%;border:1px solid #eee}}figure{{margin:1.5em 0}}</style></head>
<body><h1>Realism of synthetic spectra</h1><ul>{items}</ul>{sections}<h2>Figures</h2>{figures}</body></html>
"""
