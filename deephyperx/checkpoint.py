"""Self-describing checkpoints, written atomically and loaded without executing code.

A neural checkpoint is a ``torch.save`` dictionary holding weights, optimiser and
scheduler states, the epoch, RNG states, the resolved configuration, the class names,
the band count and the normalisation statistics; it is loaded with
``torch.load(weights_only=True)``, which refuses anything but tensors and plain data (and
only under torch 2.6 or later: older releases could be made to run code, CVE-2025-32434).
A scikit-learn model is saved with skops beside a JSON description; loading one reads the
description and the skops schema first, and builds the estimator only when every type the
schema names is one that deephyperx itself writes (:data:`TRUSTED_SKOPS_TYPES`), unless the
user vouches for the file (``--trust_checkpoint``).
"""
from __future__ import annotations

import json
import re
import zipfile
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch

from deephyperx.atomic import atomic_path, atomic_write_text
from deephyperx.errors import UserError

FORMAT = "deephyperx-checkpoint"
VERSION = 1

#: The oldest torch whose ``torch.load(weights_only=True)`` runs no code from a crafted file:
#: earlier releases could be made to execute code through it (CVE-2025-32434).
SAFE_TORCH = (2, 6, 0)

#: Every type a ``model.skops`` written by deephyperx names, by full name (never a prefix): the
#: scikit-learn models of ``models/baselines.py`` (SVM, SVM_grid, SGD, nearest, RF) with what they
#: hold once fitted (decision trees, the k-d tree of nearest neighbours and its metric, the SGD
#: loss, the grid search's splitter and scorer), NumPy arrays and scalars, and skops' containers.
#: Found by fitting each model and listing the types of its skops schema; tests/test_malicious_files.py
#: restores every registered scikit-learn model through main.py without --trust_checkpoint.
#: A file naming any other type is refused before anything is built from it, unless the user
#: vouches for it with --trust_checkpoint.
TRUSTED_SKOPS_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.str", "builtins.tuple",
    "numpy.ndarray", "numpy.ma.MaskedArray", "numpy.float64", "numpy.int64",
    "sklearn.svm._classes.SVC",
    "sklearn.linear_model._stochastic_gradient.SGDClassifier", "sklearn.linear_model._sgd_fast.Hinge",
    "sklearn.neighbors._classification.KNeighborsClassifier", "sklearn.neighbors._kd_tree.KDTree",
    "sklearn.metrics._dist_metrics.EuclideanDistance64",
    "sklearn.ensemble._forest.RandomForestClassifier", "sklearn.tree._classes.DecisionTreeClassifier",
    "sklearn.tree._tree.Tree",
    "sklearn.model_selection._search.GridSearchCV", "sklearn.model_selection._split.StratifiedKFold",
    "sklearn.metrics._scorer._PassthroughScorer",
})

#: The kinds of skops node those files are made of: containers, JSON values, type names, arrays,
#: objects restored from their attributes, the two kinds rebuilt by a constructor that skops fixes
#: (a tree, an SGD loss) and references to a node read before. Functions, methods, partials and
#: objects built by calling a constructor named in the file are never among them.
TRUSTED_SKOPS_NODES = frozenset({"DictNode", "ListNode", "TupleNode", "JsonNode", "TypeNode", "NdArrayNode",
                                 "MaskedArrayNode", "ObjectNode", "TreeNode", "LossNode", "CachedNode"})


def save_checkpoint(path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (tensors and plain data) as a checkpoint at ``path``, atomically."""
    path = Path(path)
    with atomic_path(path, expected_bytes=tensor_bytes(payload)) as tmp:
        torch.save({"format": FORMAT, "version": VERSION, **payload}, tmp)
    return path


def tensor_bytes(value: Any) -> int:
    """The bytes of the tensors in ``value`` (nested dicts, lists and tuples): about a checkpoint's size."""
    if isinstance(value, torch.Tensor):
        return value.numel() * value.element_size()
    if isinstance(value, dict):
        return sum(tensor_bytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(tensor_bytes(v) for v in value)
    return 0


def torch_version_is_safe(version: str) -> bool:
    """Whether torch ``version`` (e.g. ``2.13.0+cpu``) is :data:`SAFE_TORCH` or later, as pip orders
    versions: a pre-release of 2.6.0 (``2.6.0rc1``, ``2.6.0a0+git...``) comes before it."""
    match = re.match(r"(\d+)\.(\d+)(?:\.(\d+))?(.*)", str(version).strip())
    if match is None:
        return False
    release = tuple(int(part or 0) for part in match.group(1, 2, 3))
    suffix = match.group(4).split("+")[0]  # a local label (+cpu, +cu124) names a build, not a release
    pre_release = bool(suffix) and not suffix.startswith((".post", "post"))
    return release > SAFE_TORCH or (release == SAFE_TORCH and not pre_release)


def require_safe_torch(version: Optional[str] = None) -> None:
    """Refuse to load any checkpoint under a torch older than :data:`SAFE_TORCH` (one line)."""
    version = str(torch.__version__ if version is None else version)
    if not torch_version_is_safe(version):
        raise UserError(f"torch {version} can be made to run code hidden in a checkpoint file (CVE-2025-32434), "
                        f"so deephyperx loads none with it; install torch {'.'.join(map(str, SAFE_TORCH[:2]))} or "
                        "later (pip install -U torch)")


def _refusal_detail(error: Exception) -> str:
    """The line of a ``torch.load`` failure that says what was refused (e.g. the global a pickle names)."""
    lines = [" ".join(line.split()) for line in str(error).splitlines() if line.strip()]
    generic = ("Weights only load failed", "Please file an issue", "Check the documentation")
    telling = [line for line in lines if not line.startswith(generic)]
    return (telling or lines or [type(error).__name__])[0][:160]


def load_checkpoint(path: str | Path) -> dict[str, Any]:
    """Load a checkpoint of ours; one-line :class:`UserError` for anything else. Only tensors and
    plain data are unpickled (``weights_only``), and only under a torch that enforces it safely."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} does not exist; give the path of a .pt file written by a run")
    require_safe_torch()
    try:
        data = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # torch raises many kinds (UnpicklingError, KeyError, RuntimeError, ...)
        raise UserError(f"{path} is not a deephyperx checkpoint that can be loaded safely "
                        f"({_refusal_detail(error)}); nothing in it was run") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise UserError(f"{path} is not a deephyperx checkpoint (no '{FORMAT}' marker); "
                        "give a checkpoint.pt or model.pt written by main.py")
    return data


def check_compatible(data: dict[str, Any], *, model: str, n_bands: int, class_names: list[str], path: str | Path) -> None:
    """Refuse a checkpoint trained for another model, band count or class list."""
    config = data.get("config", {})
    if not isinstance(config, dict):
        raise UserError(f"checkpoint {path} holds no configuration mapping; give a checkpoint written by main.py")
    if config.get("model") != model:
        raise UserError(f"checkpoint {path} is of model '{config.get('model')}', not '{model}'; "
                        f"use --model {config.get('model')} or another checkpoint")
    if data.get("n_bands") != n_bands:
        raise UserError(f"checkpoint {path} expects {data.get('n_bands')} bands but the scene has {n_bands}; "
                        "restore it on a scene of the same sensor")
    if list(data.get("class_names", [])) != list(class_names):
        raise UserError(f"checkpoint {path} was trained on classes {data.get('class_names')} "
                        f"({config.get('dataset')}), not on this scene's {len(class_names)} classes")


# ----- scikit-learn models -------------------------------------------------------------------

def save_sklearn(path: str | Path, estimator: Any, meta: dict[str, Any]) -> Path:
    """Save an estimator with skops and its description as JSON beside it (``.json``)."""
    import skops.io as sio

    path = Path(path)
    with atomic_path(path) as tmp:
        sio.dump(estimator, tmp)
    atomic_write_text(path.with_suffix(".json"), json.dumps({"format": FORMAT, "version": VERSION, **meta}, indent=2))
    return path


def read_sklearn_meta(path: str | Path) -> dict[str, Any]:
    """The description (``model.json``) beside a ``model.skops`` written by :func:`save_sklearn`."""
    path = Path(path)
    meta_path = path.with_suffix(".json")
    if not path.is_file() or not meta_path.is_file():
        raise UserError(f"{path} (with {meta_path.name} beside it) not found; give a model.skops written by a run")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as error:
        raise UserError(f"{meta_path} is not a readable model description ({type(error).__name__}); "
                        "give the model.json written beside the model.skops") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise UserError(f"{meta_path} is not a deephyperx model description")
    return meta


def foreign_skops_types(path: str | Path) -> list[str]:
    """The types named by the skops file ``path`` that deephyperx does not write (not in
    :data:`TRUSTED_SKOPS_TYPES`, or read through a node kind outside :data:`TRUSTED_SKOPS_NODES`),
    in the order they appear. Only the file's schema (JSON) is read: nothing is imported or built."""
    try:
        with zipfile.ZipFile(path) as archive:
            schema = json.loads(archive.read("schema.json").decode("utf-8"))
    except (OSError, KeyError, UnicodeDecodeError, ValueError, RecursionError, zipfile.BadZipFile) as error:
        raise UserError(f"{path} is not a readable skops model ({type(error).__name__}); re-run training") from None
    foreign: dict[str, None] = {}
    stack = [schema]
    while stack:
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
            continue
        if not isinstance(item, dict):
            continue
        if "__loader__" in item:  # a node: skops imports __module__.__class__ to build it
            name, kind = f"{item.get('__module__')}.{item.get('__class__')}", str(item.get("__loader__"))
            if name not in TRUSTED_SKOPS_TYPES:
                foreign[name] = None
            elif kind not in TRUSTED_SKOPS_NODES:
                foreign[f"{name} ({kind})"] = None
        stack.extend(reversed(list(item.values())))
    return list(foreign)


def load_sklearn(path: str | Path, trusted: bool = False,
                 check: Optional[Callable[[dict[str, Any]], None]] = None) -> tuple[Any, dict[str, Any]]:
    """Load an estimator saved by :func:`save_sklearn` and its description.

    The description is read first and given to ``check`` (which raises :class:`UserError` for a
    model of another kind, scene or sensor), then the skops schema: a file naming any type outside
    :data:`TRUSTED_SKOPS_TYPES` is refused before anything is built from it, unless ``trusted``
    (the user vouches for the file, ``--trust_checkpoint``)."""
    import skops.io as sio

    path = Path(path)
    meta = read_sklearn_meta(path)
    if check is not None:
        check(meta)
    foreign = foreign_skops_types(path)
    if foreign and not trusted:
        more = f" and {len(foreign) - 3} more" if len(foreign) > 3 else ""
        raise UserError(f"{path} names types that deephyperx does not write ({', '.join(foreign[:3])}{more}), "
                        "which could run code when loaded; it was not loaded. Pass --trust_checkpoint only if "
                        "you trust where the file came from")
    try:
        accepted = sio.get_untrusted_types(file=path) if trusted else sorted(TRUSTED_SKOPS_TYPES)
        estimator = sio.load(path, trusted=accepted)
    except Exception as error:  # skops and numpy raise many kinds on a damaged file
        detail = " ".join(str(error).split())[:160] or type(error).__name__
        raise UserError(f"{path} could not be loaded as a scikit-learn model ({detail}); re-run training") from None
    if not trusted:
        check_tree_links(estimator, path)
    return estimator, meta


def check_tree_links(estimator: Any, path: str | Path) -> None:
    """Refuse decision trees (a random forest's) whose node links or feature indices point outside
    the tree or the input: scikit-learn follows them without bounds checks, so a crafted file could
    make prediction read memory it does not own or loop forever. Trees written by scikit-learn
    always pass: a node's children come after it, and it splits on one of the model's features."""
    members = [estimator, getattr(estimator, "best_estimator_", None), *(getattr(estimator, "estimators_", None) or [])]
    width = getattr(estimator, "n_features_in_", None)  # what predict checks the input against
    for member in members:
        tree = getattr(member, "tree_", None)
        if tree is None:
            continue
        count = int(tree.node_count)
        sound = 0 < count <= int(tree.capacity) and int(tree.n_features) == width
        if sound:  # children and features are read only once the count is known to fit the storage
            ids, left, right, feature = np.arange(count), tree.children_left, tree.children_right, tree.feature
            leaf = left == -1
            sound = bool(np.all(right[leaf] == -1) and np.all(feature[leaf] < 0)
                         and np.all((left[~leaf] > ids[~leaf]) & (left[~leaf] < count))
                         and np.all((right[~leaf] > ids[~leaf]) & (right[~leaf] < count))
                         and np.all((feature[~leaf] >= 0) & (feature[~leaf] < width)))
        if not sound:
            raise UserError(f"{path} holds a decision tree whose nodes point outside it, which scikit-learn "
                            "would follow into memory it does not own; it was not used. Re-run training, or "
                            "pass --trust_checkpoint only if you trust where the file came from")
