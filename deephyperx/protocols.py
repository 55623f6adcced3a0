"""The evaluation protocol of a run, by name: split, validation and the leakage switches.

Papers differ in how they split a scene, where their validation pixels come from and what their
preprocessing sees; numbers are only comparable under the same protocol. :func:`protocol_label`
names a run's protocol in one short line (bench tables, reports), :func:`protocol_record` describes it
in full for ``metrics.json``, and :func:`check_protocol_settings` refuses combinations that cannot work.

The settings (declared in :mod:`deephyperx.shared_settings` and :mod:`deephyperx.config`):

* ``sampling_mode``/``training_sample``, or fixed maps ``train_set``/``test_set``;
* ``val_fraction`` (share of the training pixels held out), or ``val_per_class`` M: M pixels of each
  class drawn from the labelled pixels outside training (N + M per class, e.g. MambaHSI's 30 + 10);
* ``validation_from: test``: validation drawn from the test pixels, which stay scored (a leak:
  early stopping on the test set, as A2S2K-ResNet and DBDA did);
* ``fit_preprocessing: scene``: normalisation and PCA fitted on every pixel of the scene, test pixels
  included (a leak many papers made);
* ``early_stopping``: training ends once the validation loss has not fallen for that many epochs
  (with ``validation_from: test``, the stopping point is chosen on test pixels).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

from deephyperx.errors import UserError
from deephyperx.shared_settings import Validation

#: Values of ``fit_preprocessing`` (None means ``train``).
FIT_PREPROCESSING = ("train", "scene")
#: Values of ``validation_from`` (None means ``train``).
VALIDATION_FROM = ("train", "test")


def validation_source(validation_from: Optional[str], per_class: Optional[int]) -> str:
    """Where a run's validation pixels come from: ``train`` (carved out of the training pixels),
    ``outside_train`` (``per_class`` pixels of each class among the labelled pixels outside training,
    taken out of the test set) or ``test`` (test pixels, which stay scored: a leak)."""
    if (validation_from or "train") == "test":
        return "test"
    return "outside_train" if per_class is not None else "train"


def check_protocol_settings(config: dict[str, Any]) -> None:
    """Refuse protocol settings that cannot work, with one line naming the value."""
    per_class = config.get("val_per_class")
    if per_class is not None and (isinstance(per_class, bool) or not isinstance(per_class, int) or per_class < 1):
        raise UserError(f"--val_per_class {per_class!r} must be a whole number of validation pixels per class "
                        "(at least 1), e.g. 10")
    for key, allowed in (("fit_preprocessing", FIT_PREPROCESSING), ("validation_from", VALIDATION_FROM)):
        if config.get(key) is not None and config[key] not in allowed:
            raise UserError(f"--{key} {config[key]!r} is unknown; choose one of: {', '.join(allowed)}")
    if per_class is not None and config.get("train_set") and config.get("validation_from") != "test":
        raise UserError(f"--val_per_class {per_class} draws validation pixels from outside the training set, but "
                        "with --train_set/--test_set those are the fixed test map's; use --val_fraction, or "
                        "--validation_from test to reproduce early stopping on the test pixels")


def protocol_label(config: dict[str, Any]) -> str:
    """The protocol in one line, e.g. ``random 0.1``, ``fixed 30 + 10 val/class`` or
    ``maps Indian_pines_TR.mat / Indian_pines_TE.mat, val 5% of test (leak), preprocessing fitted on the
    scene (leak)``; the default validation (5% of the training pixels) is not named."""
    if config.get("train_set"):
        parts = [f"maps {Path(config['train_set']).name} / {Path(str(config.get('test_set'))).name}"]
    else:
        parts = [f"{config['sampling_mode']} {config['training_sample']}"]
        if config["sampling_mode"] == "blocks":
            parts[0] += "".join(f" {key} {config[key]}" for key in ("block_size", "guard") if config.get(key))
    per_class, fraction = config.get("val_per_class"), config.get("val_fraction")
    if config.get("validation_from") == "test":
        parts.append(f"val {per_class}/class of test (leak)" if per_class is not None
                     else f"val {fraction:.0%} of test (leak)")
    elif per_class is not None:
        parts[0] += f" + {per_class} val/class"
    elif fraction != Validation.val_fraction:
        parts.append(f"val {fraction:.0%} of train" if fraction else "no validation")
    if config.get("early_stopping"):
        parts.append(f"early stopping {config['early_stopping']}")
    if config.get("fit_preprocessing") == "scene":
        parts.append("preprocessing fitted on the scene (leak)")
    return ", ".join(parts)


def protocol_record(config: dict[str, Any], maps: Optional[dict] = None) -> dict[str, Any]:
    """The protocol of a run for its ``metrics.json``: its label, the split, where validation came
    from, what preprocessing was fitted on, the leaks it reproduces, and for fixed maps their pixels
    (``unlabelled_in_scene``: those the scene's label file leaves unlabelled, whose class is the map's).
    The sample and the validation share are in the label and the run's config (no number is added to
    the metrics of a run under the default protocol)."""
    source = validation_source(config.get("validation_from"), config.get("val_per_class"))
    leaks = [name for name, on in (("validation_from_test", source == "test"),
                                   ("preprocessing_fitted_on_scene", config.get("fit_preprocessing") == "scene"))
             if on]
    record: dict[str, Any] = {
        "label": protocol_label(config),
        "split": "maps" if config.get("train_set") else config["sampling_mode"],
        "validation": {"from": source, "per_class": config.get("val_per_class")},
        "fit_preprocessing": config.get("fit_preprocessing") or "train",
        "leaks": leaks,
    }
    if config.get("early_stopping"):
        record["early_stopping"] = int(config["early_stopping"])
    if config.get("train_set"):
        record["maps"] = {side: {"file": str(config.get(f"{side}_set")), **(maps or {}).get(side, {})}
                          for side in ("train", "test")}
    return record
