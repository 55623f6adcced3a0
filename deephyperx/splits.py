"""Train/test splits of a label map, as boolean masks.

Every split returns ``(train_mask, test_mask)``: boolean arrays of the label map's shape that
never overlap and lie only on labelled pixels (labels >= 0). Randomness comes from
``np.random.default_rng(seed)`` alone, so the same seed always gives the same masks.

``training_sample`` follows DeepHyperX: a value in (0, 1) is the share of each class used for
training; a whole number >= 1 is a number of training pixels per class.

Modes of :func:`split_pixels`:

* ``random``: stratified random pixels of each class.
* ``fixed``: exactly N random pixels of each class (N a whole number).
* ``disjoint``: DeepHyperX's disjoint mode; each class is cut by a horizontal line, training
  above, test below.
* ``blocks``: square blocks dealt to train or test, with a guard band removed from the test set
  so that no training patch sees a test pixel.

Fixed train/test label maps (DeepHyperX's ``--train_set``/``--test_set``) go through
:func:`split_from_label_maps`, and :func:`map_truth` takes their classes as the truth on their pixels.
:func:`choose_validation` then picks the validation pixels (from training, from the pixels outside
training, or, reproducing a leak of some papers, from the test pixels).
"""
from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
from scipy import ndimage

from deephyperx.errors import UserError

#: Split modes accepted by :func:`split_pixels`.
MODES = ("random", "fixed", "disjoint", "blocks")
#: Disjoint mode cuts a class at the first row where the training share exceeds this times the ask.
DISJOINT_SHARE_FACTOR = 0.9

Masks = tuple[np.ndarray, np.ndarray]


def split_pixels(labels: np.ndarray, mode: str, training_sample: float, seed: int, patch_size: int = 1,
                 guard: Optional[int] = None, block_size: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None) -> Masks:
    """Split the labelled pixels of ``labels`` into train and test masks according to ``mode``.

    Modes are described by :func:`random_split`, :func:`disjoint_split` and :func:`blocks_split`;
    ``patch_size``, ``guard`` and ``block_size`` are used by ``blocks`` only; ``class_names``
    only makes error messages name classes.
    """
    if mode not in MODES:
        raise UserError(f"unknown split mode '{mode}'; choose one of: {', '.join(MODES)}")
    if mode in ("random", "fixed"):
        return random_split(labels, training_sample, seed, class_names, whole_only=mode == "fixed")
    if mode == "disjoint":
        return disjoint_split(labels, training_sample, class_names)
    return blocks_split(labels, training_sample, seed, patch_size, guard, block_size, class_names)


def random_split(labels: np.ndarray, training_sample: float, seed: int,
                 class_names: Optional[Sequence[str]] = None, whole_only: bool = False) -> Masks:
    """Stratified random split (modes ``random`` and, with ``whole_only``, ``fixed``).

    A fraction f takes round-half-up(f * n) random pixels of each class of n pixels, at least 1
    and at most n - 1; a whole number N takes exactly N of each class. The rest is test.
    """
    labels = _check_inputs(labels, training_sample)
    if whole_only and training_sample < 1:
        raise UserError(f"split mode 'fixed' needs a whole number of training pixels per class, not "
                        f"training_sample={training_sample}; give e.g. 50, or use mode 'random' for a fraction")
    return _stratified_random(labels, training_sample, np.random.default_rng(seed), _Names(class_names))


def disjoint_split(labels: np.ndarray, training_sample: float,
                   class_names: Optional[Sequence[str]] = None) -> Masks:
    """DeepHyperX's disjoint mode: for each class, training pixels are those above a row cut.

    For each class independently, rows are scanned from the top; the cut x is the first row
    index at which the share of the class's pixels lying in rows < x exceeds
    ``0.9 * training_sample`` (for a count N, at which their number exceeds ``0.9 * N``). The
    class's pixels in rows < x are training, the rest test. No randomness: the seed plays no
    part. A class lying on few rows may end with no test pixel.
    """
    labels = _check_inputs(labels, training_sample)
    classes, counts = _class_counts(labels)
    if training_sample >= 1:
        _check_enough_pixels(classes, counts, int(training_sample), _Names(class_names))
    n_classes = int(classes.max()) + 1
    rows = np.nonzero(labels >= 0)[0]
    per_row = np.zeros((n_classes, labels.shape[0]), dtype=np.int64)
    np.add.at(per_row, (labels[labels >= 0], rows), 1)
    above = np.cumsum(per_row, axis=1)  # above[c, r]: pixels of class c in rows <= r
    totals = np.maximum(above[:, -1:], 1)
    share = above / totals if training_sample < 1 else above.astype(np.float64)
    exceeded = share > DISJOINT_SHARE_FACTOR * training_sample
    cut = np.where(exceeded.any(axis=1), exceeded.argmax(axis=1) + 1, labels.shape[0])  # rows < cut
    train = (labels >= 0) & (np.arange(labels.shape[0])[:, None] < cut[np.maximum(labels, 0)])
    test = (labels >= 0) & ~train
    _check_non_empty(train, test, "disjoint")
    return train, test


def default_block_size(shape: tuple[int, int], patch_size: int) -> int:
    """Side of the blocks of the ``blocks`` mode: max(2 * patch_size, min(H, W) // 15, 1), but at
    most max(min(H, W) // 6, 2).

    A fifteenth of the shorter side gives a couple of hundred blocks, enough to balance classes
    (on Indian Pines and Pavia University it balanced better than a tenth); two patches wide
    means a test block ringed by training blocks still keeps a quarter of its pixels after the
    guard band of half a patch. The cap keeps at least about 36 blocks for large patches: on
    Indian Pines (145 px) HybridSN's 25-px patches would get 50-px blocks, 9 in all, and a "10%"
    split put 49% of the labelled pixels in training; 24-px blocks bring it back near 10%.
    """
    shorter = min(shape)
    return min(max(2 * patch_size, shorter // 15, 1), max(shorter // 6, 2))


def split_warnings(labels: np.ndarray, train: np.ndarray, test: np.ndarray, training_sample: float,
                   class_names: Optional[Sequence[str]] = None) -> list[str]:
    """What makes a split a weak test of what was asked, one line each (none for a sound split):
    classes with no training or no test pixel, and, for a fractional ``training_sample``, a
    training share of the labelled pixels under half or over twice the fraction asked."""
    labels = _check_labels(labels)
    valid = labels >= 0
    names = _Names(class_names)
    classes, _ = _class_counts(labels)
    lines = []
    for mask, side in ((train, "training"), (test, "test")):
        per_class = np.bincount(labels[valid & mask], minlength=int(classes.max()) + 1)
        missing = [names(int(c)) for c in classes if per_class[c] == 0]
        if missing:
            lines.append(f"{len(missing)} of {len(classes)} classes have no {side} pixel: {', '.join(missing)}")
    if 0 < training_sample < 1:
        share = float((train & valid).sum() / max(int(valid.sum()), 1))
        if not training_sample / 2 <= share <= 2 * training_sample:
            lines.append(f"training pixels are {share:.1%} of the labelled pixels, where "
                         f"training_sample={training_sample} asked for {training_sample:.0%}")
    return lines


def blocks_split(labels: np.ndarray, training_sample: float, seed: int, patch_size: int = 1,
                 guard: Optional[int] = None, block_size: Optional[int] = None,
                 class_names: Optional[Sequence[str]] = None) -> Masks:
    """Spatially disjoint split: whole square blocks go to train, with a guard band around them.

    The rule, exactly:

    1. The image is tiled into squares of ``block_size`` pixels (default
       :func:`default_block_size`), starting at the top-left corner; edge blocks may be smaller.
    2. Each class c gets a training target: ``training_sample * n_c`` pixels for a fraction,
       ``N`` for a count N.
    3. Blocks are chosen greedily to lower ``sum_c ((target_c - train_c) / n_c) ** 2`` (relative
       error, so rare classes count as much as common ones), with randomness from ``seed``: first
       each class, rarest first, that has no training pixel yet gets one block holding it (drawn
       among the three that keep the error lowest); then blocks are visited in random order and
       added when that lowers the error; then training blocks are visited in random order and
       dropped when that lowers it. No step puts all of a class's pixels in training or takes
       away a class's last training block, so every class spread over two blocks or more has
       pixels on both sides (before the guard band).
    4. Training pixels are the labelled pixels of training blocks. Test pixels are the labelled
       pixels of the other blocks, minus every pixel within Chebyshev distance ``guard``
       (default ``patch_size // 2``) of a training pixel, so that no training patch of side
       ``patch_size`` covers a test pixel.
    """
    labels = _check_inputs(labels, training_sample)
    patch_size, guard, block_size = _check_block_arguments(labels.shape, patch_size, guard, block_size)
    classes, counts = _class_counts(labels)
    if training_sample >= 1:
        _check_enough_pixels(classes, counts, int(training_sample), _Names(class_names))
    block_of = _block_ids(labels.shape, block_size)
    n_blocks = int(block_of.max()) + 1
    n_classes = int(classes.max()) + 1
    valid = labels >= 0
    per_block = np.bincount(block_of[valid] * n_classes + labels[valid],
                            minlength=n_blocks * n_classes).reshape(n_blocks, n_classes).astype(np.float64)
    totals = per_block.sum(axis=0)
    targets = training_sample * totals if training_sample < 1 else np.where(totals > 0, training_sample, 0.0)
    chosen = _balance_blocks(per_block, targets, np.maximum(totals, 1), np.random.default_rng(seed))

    train = valid & chosen[block_of]
    near_train = ndimage.maximum_filter(train.astype(np.uint8), size=2 * guard + 1, mode="constant", cval=0) > 0
    test = valid & ~chosen[block_of] & ~near_train
    if not test.any():
        raise UserError(f"split mode 'blocks': no test pixel is left after the guard band of {guard} pixels "
                        f"(patch size {patch_size}, block size {block_size}); give a smaller patch size or "
                        f"guard, a larger block size, or a smaller training_sample")
    if not train.any():
        raise UserError(f"split mode 'blocks': no block was chosen for training with training_sample="
                        f"{training_sample}; give a larger training_sample or a smaller block size")
    return train, test


def split_from_label_maps(train_labels: np.ndarray, test_labels: np.ndarray) -> Masks:
    """Masks from fixed train and test label maps (class ids, -1 unlabelled); they must not overlap."""
    train_labels, test_labels = _check_labels(train_labels), _check_labels(test_labels)
    if train_labels.shape != test_labels.shape:
        raise UserError(f"the train label map is {train_labels.shape[0]}x{train_labels.shape[1]} but the test "
                        f"label map is {test_labels.shape[0]}x{test_labels.shape[1]}; give maps of the same size")
    train, test = train_labels >= 0, test_labels >= 0
    overlap = int((train & test).sum())
    if overlap:
        raise UserError(f"the train and test label maps overlap on {overlap} pixels; "
                        "label each pixel in at most one of them")
    _check_non_empty(train, test, "file")
    return train, test


def validation_split(train_mask: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> Masks:
    """Carve a stratified validation set out of the training pixels: ``(train_mask, val_mask)``.

    Each class with at least 2 training pixels gives ``round(fraction * n)`` of them (at least 1,
    at most n - 1) to validation; classes with fewer keep all of theirs in training.
    """
    labels = _check_labels(labels)
    train_mask = np.asarray(train_mask, dtype=bool)
    if train_mask.shape != labels.shape:
        raise UserError(f"the training mask is {train_mask.shape} but the labels are {labels.shape}; "
                        "give a mask of the label map's shape")
    if not 0 <= fraction < 1:
        raise UserError(f"validation fraction {fraction} is outside [0, 1); give e.g. 0.1, or 0 for none")
    if fraction == 0:
        return train_mask.copy(), np.zeros_like(train_mask)
    pool = np.where(train_mask, labels, -1)
    _, counts = _class_counts(pool, allow_empty=True)
    n_val = np.where(counts >= 2, np.clip(_round_half_up(fraction * counts), 1, counts - 1), 0)
    val = _pick_per_class(pool, n_val, np.random.default_rng(seed))
    return train_mask & ~val, val


def map_truth(labels: np.ndarray, train_labels: np.ndarray, test_labels: np.ndarray) -> tuple[np.ndarray, dict]:
    """The class of every pixel under fixed train/test maps, and how the maps depart from ``labels``.

    A map's class is the truth on its pixels (as DeepHyperX took it): published maps such as Indian
    Pines' 695 / 9,671 split label pixels that the scene's label file leaves unlabelled. Returns the
    scene's labels overridden by the maps' classes, and per set (``train``, ``test``) the pixels the
    map labels (``pixels``), those unlabelled in ``labels`` (``unlabelled_in_scene``) and those of
    another class there (``other_class_in_scene``)."""
    labels = _check_labels(labels)
    truth = labels.copy()
    counts = {}
    for side, ids in (("train", _check_labels(train_labels)), ("test", _check_labels(test_labels))):
        if ids.shape != labels.shape:
            raise UserError(f"the {side} label map is {ids.shape[0]}x{ids.shape[1]} but the scene's labels are "
                            f"{labels.shape[0]}x{labels.shape[1]}; give maps of the scene's size")
        marked = ids >= 0
        truth[marked] = ids[marked]
        counts[side] = {"pixels": int(marked.sum()), "unlabelled_in_scene": int((marked & (labels < 0)).sum()),
                        "other_class_in_scene": int((marked & (labels >= 0) & (labels != ids)).sum())}
    return truth, counts


def choose_validation(train: np.ndarray, test: np.ndarray, labels: np.ndarray, seed: int, fraction: float = 0.0,
                      per_class: Optional[int] = None, source: str = "train",
                      class_names: Optional[Sequence[str]] = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The validation pixels of a split: ``(train, validation, test)``.

    ``source`` says where they come from:

    * ``train``: carved out of the training pixels (:func:`validation_split`, ``fraction`` of each
      class); with ``per_class`` M instead, M pixels of each class are drawn from the labelled
      pixels outside training and leave the test set (N training plus M validation per class, the
      protocol of e.g. MambaHSI; :func:`deephyperx.protocols.validation_source` calls it ``outside_train``).
    * ``test``: drawn from the test pixels, which keep them (``per_class`` of each class, or
      ``fraction`` of each class's test pixels): model selection then sees test pixels, the leak
      of papers that early-stop on the test set (A2S2K-ResNet, DBDA). Training keeps all its pixels.
    """
    labels = _check_labels(labels)
    if source not in ("train", "test"):
        raise UserError(f"validation source {source!r} is unknown; choose train or test")
    if per_class is not None and (int(per_class) != per_class or per_class < 1):
        raise UserError(f"validation pixels per class {per_class!r} must be a whole number of at least 1")
    rng = np.random.default_rng([seed, 1])  # apart from the split's own draw
    if source == "train" and per_class is None:
        train, validation = validation_split(train, labels, fraction, seed)
        return train, validation, test
    pool = np.where(test, labels, -1)
    _, counts = _class_counts(pool, allow_empty=True)
    if source == "test":
        n_val = np.minimum(counts, per_class) if per_class is not None else \
            np.where(counts > 0, np.clip(_round_half_up(fraction * counts), 1 if fraction > 0 else 0, counts), 0)
        return train, _pick_per_class(pool, n_val, rng), test
    short = np.flatnonzero((counts > 0) & (counts <= per_class))
    if short.size:
        c = int(short[np.argmin(counts[short])])
        raise UserError(f"{_Names(class_names)(c)} has only {counts[c]} labelled pixels outside training, too few "
                        f"for {per_class} validation pixels per class plus a test pixel; give at most "
                        f"{counts[c] - 1} validation pixels per class or fewer training pixels")
    validation = _pick_per_class(pool, np.minimum(counts, per_class), rng)
    return train, validation, test & ~validation


def split_summary(labels: np.ndarray, train: np.ndarray, test: np.ndarray,
                  class_names: Sequence[str]) -> list[dict]:
    """Per-class pixel counts of a split, for reports: one dict per class name."""
    labels = _check_labels(labels)
    n = len(class_names)
    valid = (labels >= 0) & (labels < n)

    def count(mask: np.ndarray) -> np.ndarray:
        return np.bincount(labels[valid & mask], minlength=n)

    labelled, n_train, n_test = count(np.ones_like(valid)), count(train), count(test)
    return [{"class": k, "name": str(class_names[k]), "labelled": int(labelled[k]), "train": int(n_train[k]),
             "test": int(n_test[k]), "unused": int(labelled[k] - n_train[k] - n_test[k]),
             "train_share": float(n_train[k] / labelled[k]) if labelled[k] else 0.0}
            for k in range(n)]


class _Names:
    """Class names for messages: the given name if any, else 'class <id>'."""

    def __init__(self, names: Optional[Sequence[str]]) -> None:
        self.names = list(names) if names is not None else []

    def __call__(self, class_id: int) -> str:
        if 0 <= class_id < len(self.names):
            return f'class "{self.names[class_id]}"'
        return f"class {class_id}"


def _check_labels(labels: np.ndarray) -> np.ndarray:
    """The label map as a 2-D integer array; a :class:`UserError` otherwise."""
    labels = np.asarray(labels)
    if labels.ndim != 2:
        raise UserError(f"the label map has shape {labels.shape}; give a 2-D (rows, cols) array of class ids")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.all(np.isfinite(labels)) or not np.all(labels == np.round(labels)):
            raise UserError(f"the label map holds non-integer values (dtype {labels.dtype}); give class ids")
        labels = labels.astype(np.int64)
    return labels


def _check_inputs(labels: np.ndarray, training_sample: float) -> np.ndarray:
    """The label map as a 2-D integer array with labelled pixels, and a valid training_sample."""
    labels = _check_labels(labels)
    n_labelled = int((labels >= 0).sum())
    if n_labelled == 0:
        raise UserError("the label map has no labelled pixel (all are < 0); give a label map with classes")
    _check_training_sample(training_sample, n_labelled)
    return labels


def _check_training_sample(training_sample: float, n_labelled: int) -> None:
    """A fraction in (0, 1) or a whole number of pixels per class below the number labelled."""
    if isinstance(training_sample, bool) or not isinstance(training_sample, (int, float, np.number)):
        raise UserError(f"training_sample={training_sample!r} is not a number; give a fraction such as 0.1 "
                        "or a number of pixels per class such as 50")
    if not np.isfinite(training_sample) or training_sample <= 0 or training_sample >= n_labelled:
        raise UserError(f"training_sample={training_sample} is out of range; give a fraction in (0, 1) or a "
                        f"whole number of pixels per class below the {n_labelled} labelled pixels")
    if training_sample >= 1 and training_sample != int(training_sample):
        raise UserError(f"training_sample={training_sample} is neither a fraction in (0, 1) nor a whole number "
                        f"of pixels per class; give e.g. 0.1 or {int(training_sample)}")


def _check_block_arguments(shape: tuple[int, int], patch_size: int, guard: Optional[int],
                           block_size: Optional[int]) -> tuple[int, int, int]:
    """Validated (patch_size, guard, block_size) with their defaults filled in."""
    if int(patch_size) != patch_size or patch_size < 1:
        raise UserError(f"patch_size={patch_size} must be a whole number >= 1")
    patch_size = int(patch_size)
    guard = patch_size // 2 if guard is None else guard
    if int(guard) != guard or guard < 0:
        raise UserError(f"guard={guard} must be a whole number of pixels >= 0 (default patch_size // 2)")
    block_size = default_block_size(shape, patch_size) if block_size is None else block_size
    if int(block_size) != block_size or block_size < 1:
        raise UserError(f"block_size={block_size} must be a whole number of pixels >= 1")
    return patch_size, int(guard), int(block_size)


def _class_counts(labels: np.ndarray, allow_empty: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(ids of classes present, pixel count of every class id 0..max)."""
    valid = labels[labels >= 0]
    if valid.size == 0:
        if allow_empty:
            return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.int64)
        raise UserError("the label map has no labelled pixel (all are < 0); give a label map with classes")
    counts = np.bincount(valid)
    return np.flatnonzero(counts), counts


def _check_enough_pixels(classes: np.ndarray, counts: np.ndarray, per_class: int, names: _Names) -> None:
    """Every class present needs more pixels than the per-class training count (one left to test)."""
    short = classes[counts[classes] <= per_class]
    if short.size:
        c = int(short[np.argmin(counts[short])])
        raise UserError(f"{names(c)} has only {counts[c]} labelled pixels, too few for {per_class} training "
                        f"pixels per class plus a test pixel; give at most {counts[c] - 1} pixels per class "
                        "or a fraction such as 0.1")


def _stratified_random(labels: np.ndarray, training_sample: float, rng: np.random.Generator,
                       names: _Names) -> Masks:
    """Random training pixels per class; round-half-up of the share, at least 1 train and 1 test."""
    classes, counts = _class_counts(labels)
    single = classes[counts[classes] < 2]
    if single.size:
        c = int(single[0])
        raise UserError(f"{names(c)} has only {counts[c]} labelled pixel, too few for a train and a test "
                        "pixel; relabel it as unlabelled (-1) or merge it with another class")
    if training_sample >= 1:
        _check_enough_pixels(classes, counts, int(training_sample), names)
        n_train = np.where(counts > 0, int(training_sample), 0)
    else:
        n_train = np.where(counts > 0, np.clip(_round_half_up(training_sample * counts), 1, counts - 1), 0)
    train = _pick_per_class(labels, n_train, rng)
    return train, (labels >= 0) & ~train


def _pick_per_class(labels: np.ndarray, n_pick: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Mask of ``n_pick[c]`` random pixels of each class c, without a Python loop over pixels."""
    flat = labels.ravel()
    index = np.flatnonzero(flat >= 0)
    classes = flat[index]
    order = rng.permutation(index.size)
    order = order[np.argsort(classes[order], kind="stable")]  # grouped by class, random inside
    sorted_classes = classes[order]
    first = np.searchsorted(sorted_classes, sorted_classes)  # start of each pixel's class group
    rank = np.arange(index.size) - first
    picked = np.zeros(flat.size, dtype=bool)
    picked[index[order[rank < n_pick[sorted_classes]]]] = True
    return picked.reshape(labels.shape)


def _round_half_up(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, halves up (0.5 -> 1), as integers."""
    return np.floor(np.asarray(values, dtype=np.float64) + 0.5).astype(np.int64)


def _block_ids(shape: tuple[int, int], block_size: int) -> np.ndarray:
    """Block index of every pixel, blocks numbered row by row from the top-left corner."""
    block_rows = np.arange(shape[0]) // block_size
    block_cols = np.arange(shape[1]) // block_size
    n_block_cols = -(-shape[1] // block_size)
    return block_rows[:, None] * n_block_cols + block_cols[None, :]


def _balance_blocks(per_block: np.ndarray, targets: np.ndarray, totals: np.ndarray,
                    rng: np.random.Generator) -> np.ndarray:
    """Greedy choice of training blocks so that each class's training count approaches its target.

    First every class spread over two or more blocks gets one training block (rarest class
    first, one of the three blocks that best keep the error low, at random); then blocks are
    added in random order while that lowers the error, then dropped in random order while
    that lowers it. No step takes a class's last test block or its only training block.
    """
    balance = _BlockBalance(per_block, targets, totals)
    for c in np.argsort(totals, kind="stable"):
        if balance.current[c] == 0 and targets[c] > 0:
            candidates = [b for b in np.flatnonzero(per_block[:, c]) if balance.can_add(b)]
            if candidates:
                best = sorted(candidates, key=lambda b: balance.error_with(b, +1))[:3]
                balance.flip(int(rng.choice(best)), +1)
    for block in rng.permutation(len(per_block)):
        if balance.can_add(block) and balance.error_with(block, +1) < balance.error():
            balance.flip(block, +1)
    for block in rng.permutation(np.flatnonzero(balance.chosen)):
        if balance.can_drop(block) and balance.error_with(block, -1) < balance.error():
            balance.flip(block, -1)
    return balance.chosen


class _BlockBalance:
    """Training blocks chosen so far and the per-class counts they give, for :func:`_balance_blocks`."""

    def __init__(self, per_block: np.ndarray, targets: np.ndarray, totals: np.ndarray) -> None:
        self.per_block, self.targets, self.totals = per_block, targets, totals
        self.chosen = np.zeros(len(per_block), dtype=bool)
        self.current = np.zeros(per_block.shape[1])

    def error(self, counts: Optional[np.ndarray] = None) -> float:
        """Sum over classes of the squared relative gap between training count and target."""
        counts = self.current if counts is None else counts
        return float((((self.targets - counts) / self.totals) ** 2).sum())

    def error_with(self, block: int, sign: int) -> float:
        """The error if ``block`` were added (+1) or dropped (-1)."""
        return self.error(self.current + sign * self.per_block[block])

    def can_add(self, block: int) -> bool:
        """A free block holding labelled pixels, whose addition leaves every class a test pixel."""
        pixels = self.per_block[block]
        return (not self.chosen[block] and pixels.any()
                and not np.any((pixels > 0) & (self.current + pixels >= self.totals)))

    def can_drop(self, block: int) -> bool:
        """A chosen block whose removal leaves every class it holds some training pixel."""
        pixels = self.per_block[block]
        return not np.any((pixels > 0) & (self.current - pixels <= 0))

    def flip(self, block: int, sign: int) -> None:
        """Add (+1) or drop (-1) ``block``."""
        self.chosen[block] = sign > 0
        self.current += sign * self.per_block[block]


def _check_non_empty(train: np.ndarray, test: np.ndarray, mode: str) -> None:
    """Refuse a split with no training or no test pixel."""
    for name, mask in (("training", train), ("test", test)):
        if not mask.any():
            raise UserError(f"split mode '{mode}' gives no {name} pixel; change training_sample or the label maps")
