"""Patches across the scenes of a catalogue with a bounded cache: train one centre-pixel model
on more scenes than memory holds.

* **Blocks.** Every scene is cut into blocks of whole rows (``block_rows`` rows, or the whole
  scene when its files cannot be read by rows). A loaded block is the normalised cube of its rows
  plus a halo of ``patch_size // 2`` rows each side, held by a
  :class:`~deephyperx.sampling.PatchSampler`: inside a scene the halo supplies the neighbours, and
  at the scene's top, bottom, left and right edges the sampler's mirror padding is the padding it
  would apply to the whole scene, so a patch cut from a block equals the patch the in-memory
  sampler cuts from the whole scene (blocks keep at least ``patch_size + 1`` rows to ensure it).
* **Index.** :func:`build_index` streams the label files once, a block at a time, and keeps
  only the count of training, validation and test pixels of each class in each block. The
  positions of a block's pixels are found again from its labels when the block is loaded, so
  the index costs a few numbers per block, whatever the number of pixels.
* **Cache.** :class:`BlockCache` keeps loaded blocks up to ``max_bytes`` and drops the least
  recently used; it counts hits, misses and the peak of resident bytes.
* **Sampling with locality.** An epoch (:class:`CatalogueMaker`, given the epoch's generator) is
  a sequence of *visits* to blocks. When the epoch is one pass over the training pixels, every
  block is visited once, in a shuffled order, and gives each of its pixels once. When the epoch is
  a number of samples (``epoch_samples``), visits go to blocks drawn with probability proportional
  to their training pixels and each cuts ``visit_samples`` patches at uniform positions of the
  block (by default a quarter of a block's pixels, so that reading a block is paid for by many
  patches), so every training pixel is equally likely. Visits are taken a *group* at a time, a
  group being as many blocks as the cache holds, and a group's samples are shuffled together: a
  batch mixes pixels of several blocks and scenes, and a block is read once per visit. Everything
  is drawn from the epoch's generator, so an epoch is the same whenever it runs (a resumed run
  continues exactly). The group size depends on the cache bound, so the bound is part of an
  experiment's identity.
* **Normalisation.** :func:`fit_catalogue_normaliser` streams the training pixels of every
  scene through pooled moments (Chan et al.), a block at a time.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Optional

import numpy as np
import torch
from torch import nn

from deephyperx.errors import UserError
from deephyperx.preprocessing import METHODS, Normaliser
from deephyperx.sampling import Augmentation, Batch, PatchSampler, dihedral, patch_extent
from deephyperx.scene import IGNORE
from deephyperx.scene_catalogue import ROLE_CODES, TEST, TRAIN, VAL, Catalogue
from deephyperx.sizes import format_size

#: Fewest blocks the automatic block size lets the cache hold (a batch mixes about this many blocks).
TARGET_GROUP = 8
#: Largest automatic block, in rows.
MAX_BLOCK_ROWS = 256
#: A visit to a block cuts, by default, this fraction (1 / VISIT_SHARE) of a block's pixels as patches.
VISIT_SHARE = 4
#: Training pixels whose moments are computed at once while fitting the normalisation.
MOMENT_CHUNK = 1 << 14
ROLES = (TRAIN, VAL, TEST)


def role_code(role: str | int) -> int:
    """TRAIN/VAL/TEST from 'train'/'val'/'test' (or the code itself)."""
    if isinstance(role, int) and role in ROLES:
        return role
    if role not in ROLE_CODES:
        raise UserError(f"role {role!r}: choose train, val or test")
    return ROLE_CODES[role]


# ----- blocks and the index -----------------------------------------------------------------------

@dataclass
class BlockIndex:
    """The blocks of a catalogue and how many pixels of each role and class each holds.

    Block ``b`` covers rows ``row0[b]:row1[b]`` of scene ``scene[b]`` and is loaded with rows
    ``top[b]:bottom[b]`` (its halo). ``counts[b, role - 1, k]`` counts pixels of class ``k``.
    """

    patch_size: int
    block_rows: int
    scene: np.ndarray
    row0: np.ndarray
    row1: np.ndarray
    top: np.ndarray
    bottom: np.ndarray
    width: np.ndarray
    counts: np.ndarray  # (n_blocks, 3, n_classes) int64

    def __len__(self) -> int:
        return len(self.scene)

    def role_counts(self, role: str | int) -> np.ndarray:
        """Pixels of ``role`` in each block, (n_blocks,)."""
        return self.counts[:, role_code(role) - 1].sum(axis=1)

    def class_counts(self, role: str | int) -> np.ndarray:
        """Pixels of ``role`` of each class over the catalogue, (n_classes,)."""
        return self.counts[:, role_code(role) - 1].sum(axis=0)

    def scene_counts(self, role: str | int, n_scenes: int) -> np.ndarray:
        """Pixels of ``role`` in each scene, (n_scenes,)."""
        return np.bincount(self.scene, weights=self.role_counts(role), minlength=n_scenes).astype(np.int64)

    def block_bytes(self, b: int, n_bands: int) -> int:
        """Bytes a loaded block holds (what :class:`BlockEntry` reports), known before loading."""
        return entry_bytes(int(self.bottom[b] - self.top[b]), int(self.row1[b] - self.row0[b]), int(self.width[b]),
                           n_bands, self.patch_size, int(self.counts[b].sum()))


def entry_bytes(halo_rows: int, rows: int, width: int, n_bands: int, patch_size: int, n_pixels: int) -> int:
    """Bytes of a loaded block: the padded normalised cube (float32) and labels (int64) of the
    sampler, the class ids (int16) of its rows and the positions (int32) of its labelled pixels."""
    padded = (halo_rows + patch_size - 1) * (width + patch_size - 1)
    return padded * (4 * n_bands + 8) + rows * width * 2 + n_pixels * 4


def choose_block_rows(catalogue: Catalogue, patch_size: int, cache_bytes: int,
                      block_rows: Optional[int] = None) -> int:
    """Rows per block: ``block_rows`` if given, else as many (up to :data:`MAX_BLOCK_ROWS`) as let
    the cache hold :data:`TARGET_GROUP` blocks of the widest scene. Refuses, before anything is
    read, a cache that cannot hold the largest block."""
    minimum = patch_size + 1
    bands = catalogue.n_bands
    if block_rows is None:
        width = max(s.cube.cols for s in catalogue.scenes)
        per_row = (width + patch_size - 1) * (4 * bands + 8) + width * 6
        rows = ((cache_bytes // TARGET_GROUP) // per_row - patch_size) // 2  # blocks hold < 2 x block_rows rows
        block_rows = int(min(MAX_BLOCK_ROWS, max(minimum, rows)))
    elif block_rows < minimum:
        raise UserError(f"--block_rows {block_rows} is too few for patch_size {patch_size}; give at least {minimum}")
    for scene in catalogue.scenes:
        height, width = scene.shape
        rows = max(b - a for a, b in block_bounds(height, block_rows, scene.windowed))
        need = entry_bytes(min(height, rows + patch_size - 1), rows, width, bands, patch_size, rows * width)
        if need <= cache_bytes:
            continue
        if not scene.windowed:
            raise UserError(f"scene '{scene.name}' is read whole ({scene.cube.path.suffix} / "
                            f"{scene.labels.path.suffix} files) and needs {format_size(need)} in the cache; raise "
                            "--cache_bytes above that or convert its files to .npy or .h5 (read by rows)")
        raise UserError(f"--cache_bytes {format_size(cache_bytes)} cannot hold a block of {rows} rows of scene "
                        f"'{scene.name}' ({width} columns x {bands} bands, about {format_size(need)}); raise "
                        "--cache_bytes or lower --block_rows")
    return block_rows


def block_bounds(rows: int, block_rows: int, windowed: bool) -> list[tuple[int, int]]:
    """Row ranges of a scene's blocks: equal bands of at least ``block_rows`` rows (less than twice
    that), or the whole scene."""
    n = max(1, rows // block_rows) if windowed else 1
    edges = np.linspace(0, rows, n + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(edges[:-1], edges[1:])]


def build_index(catalogue: Catalogue, patch_size: int, block_rows: int) -> BlockIndex:
    """Cut every scene into blocks and count each block's pixels per role and class, reading the
    label files a block at a time (a label value that is not declared raises a UserError here)."""
    before, after = patch_extent(patch_size)
    columns: dict[str, list[int]] = {k: [] for k in ("scene", "row0", "row1", "top", "bottom", "width")}
    counts = []
    for s, scene in enumerate(catalogue.scenes):
        rows, width = scene.shape
        for row0, row1 in block_bounds(rows, block_rows, scene.windowed):
            classes = catalogue.classes(s, row0, row1)
            roles = catalogue.roles(s, row0, row1, classes)
            counts.append([np.bincount(classes[roles == r], minlength=catalogue.n_classes) for r in ROLES])
            for key, value in (("scene", s), ("row0", row0), ("row1", row1), ("top", max(0, row0 - before)),
                               ("bottom", min(rows, row1 + after)), ("width", width)):
                columns[key].append(value)
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in columns.items()}
    return BlockIndex(patch_size, block_rows, counts=np.asarray(counts, dtype=np.int64), **arrays)


# ----- normalisation ------------------------------------------------------------------------------

class _PooledMoments:
    """Per-band count, mean and sum of squared deviations, merged chunk by chunk (Chan et al.), and
    the global minimum and maximum."""

    def __init__(self, n_bands: int):
        self.count, self.mean, self.m2 = 0, np.zeros(n_bands), np.zeros(n_bands)
        self.low, self.high = np.inf, -np.inf

    def add(self, pixels: np.ndarray) -> None:
        n = len(pixels)
        if not n:
            return
        chunk_mean = pixels.mean(axis=0)
        chunk_m2 = ((pixels - chunk_mean) ** 2).sum(axis=0)
        delta, total = chunk_mean - self.mean, self.count + n
        self.mean = self.mean + delta * n / total
        self.m2 = self.m2 + chunk_m2 + delta ** 2 * self.count * n / total
        self.count = total
        self.low, self.high = min(self.low, float(pixels.min())), max(self.high, float(pixels.max()))


def fit_catalogue_normaliser(catalogue: Catalogue, index: BlockIndex, method: str = "standard") -> Normaliser:
    """:func:`deephyperx.preprocessing.fit_normaliser` over the training pixels of every scene,
    streamed a block at a time (the same statistics, up to float rounding)."""
    if method not in METHODS:
        raise UserError(f"unknown normalization '{method}'; choose one of: {', '.join(METHODS)}")
    bands = catalogue.n_bands
    if method == "none":
        return Normaliser(method, np.zeros(bands, np.float32), np.ones(bands, np.float32))
    moments = _PooledMoments(bands)
    for b in np.flatnonzero(index.role_counts(TRAIN)):
        s, row0, row1 = int(index.scene[b]), int(index.row0[b]), int(index.row1[b])
        classes = catalogue.classes(s, row0, row1)
        train = catalogue.roles(s, row0, row1, classes) == TRAIN
        pixels = catalogue.read_cube(s, row0, row1)[train]
        for start in range(0, len(pixels), MOMENT_CHUNK):  # float64 copies of a few MB at a time
            chunk = pixels[start:start + MOMENT_CHUNK].astype(np.float64)
            if not np.isfinite(chunk).all():
                raise UserError(f"catalogue {catalogue.name}: scene '{catalogue.scenes[s].name}' holds NaN or "
                                f"infinite values in rows {row0}-{row1}; fill or mask them before training")
            moments.add(chunk)
    if moments.count == 0:
        raise UserError(f"catalogue {catalogue.name}: no training pixels to fit the normalisation on; check the split")
    if method == "standard":
        std = np.sqrt(moments.m2 / moments.count)
        std[std < 1e-12] = 1.0
        return Normaliser(method, moments.mean.astype(np.float32), (1.0 / std).astype(np.float32))
    span = moments.high - moments.low if moments.high > moments.low else 1.0
    return Normaliser(method, np.full(bands, moments.low, np.float32), np.full(bands, 1.0 / span, np.float32))


# ----- the cache ----------------------------------------------------------------------------------

@dataclass
class BlockEntry:
    """A loaded block: a sampler over its rows and halo, its rows' class ids, its pixels by role."""

    sampler: PatchSampler
    top: int
    row0: int
    row1: int
    classes: np.ndarray  # (row1 - row0, width) int16
    pixels: dict[int, np.ndarray]  # role -> flat positions (int32) within rows row0:row1, row-major

    @property
    def nbytes(self) -> int:
        held = sum(int(t.numel() * t.element_size()) for t in self.sampler.padded)
        held += int(self.sampler.padded_labels.numel() * self.sampler.padded_labels.element_size())
        return held + int(self.classes.nbytes) + int(sum(p.nbytes for p in self.pixels.values()))


class BlockCache:
    """Loaded blocks by key, at most ``max_bytes`` of them; the least recently used go first.

    Room is made *before* a block is loaded, so resident blocks never exceed the bound (the block
    being loaded and its raw rows are transient on top). ``hits``, ``misses``, ``evictions`` and
    ``peak_bytes`` (the most ever resident) are counted for reports and tests.
    """

    def __init__(self, max_bytes: int):
        if max_bytes < 1:
            raise UserError(f"cache size {max_bytes} bytes must be positive")
        self.max_bytes = int(max_bytes)
        self._entries: collections.OrderedDict[Any, tuple[int, Any]] = collections.OrderedDict()
        self.hits = self.misses = self.evictions = 0
        self.resident_bytes = self.peak_bytes = 0

    def get(self, key: Any, size: int, load: Callable[[], Any]) -> Any:
        """The entry of ``key``, loaded with ``load()`` (which must give ``size`` bytes) on a miss."""
        held = self._entries.get(key)
        if held is not None:
            self.hits += 1
            self._entries.move_to_end(key)
            return held[1]
        if size > self.max_bytes:
            raise UserError(f"a block of {format_size(size)} does not fit in the cache of "
                            f"{format_size(self.max_bytes)}; raise --cache_bytes or lower --block_rows")
        self.misses += 1
        while self._entries and self.resident_bytes + size > self.max_bytes:
            _, (dropped, _) = self._entries.popitem(last=False)
            self.resident_bytes -= dropped
            self.evictions += 1
        entry = load()
        self._entries[key] = (size, entry)
        self.resident_bytes += size
        self.peak_bytes = max(self.peak_bytes, self.resident_bytes)
        return entry

    def __contains__(self, key: Any) -> bool:
        return key in self._entries

    def stats(self) -> dict[str, Any]:
        lookups = self.hits + self.misses
        return {"max_bytes": self.max_bytes, "peak_bytes": self.peak_bytes, "resident_bytes": self.resident_bytes,
                "entries": len(self._entries), "hits": self.hits, "misses": self.misses,
                "evictions": self.evictions, "hit_rate": self.hits / lookups if lookups else None}


# ----- patches from blocks --------------------------------------------------------------------------

class CatalogueSource:
    """Normalised blocks of a catalogue through a bounded cache, and patches cut from them."""

    def __init__(self, catalogue: Catalogue, index: BlockIndex, normaliser: Normaliser, cache: BlockCache):
        self.catalogue, self.index, self.normaliser, self.cache = catalogue, index, normaliser, cache
        self.patch_size = index.patch_size
        self.n_bands = catalogue.n_bands
        self._sizes = np.array([index.block_bytes(b, self.n_bands) for b in range(len(index))], dtype=np.int64)
        training = self._sizes[index.role_counts(TRAIN) > 0]
        largest = int(training.max()) if len(training) else 1
        #: Blocks visited together while sampling: as many as the cache holds.
        self.group_size = max(1, cache.max_bytes // largest)

    def entry(self, b: int) -> BlockEntry:
        """Block ``b``, from the cache or loaded into it."""
        return self.cache.get(b, int(self._sizes[b]), lambda: self._load(b))

    def _load(self, b: int) -> BlockEntry:
        index, catalogue = self.index, self.catalogue
        s, top, bottom = int(index.scene[b]), int(index.top[b]), int(index.bottom[b])
        row0, row1 = int(index.row0[b]), int(index.row1[b])
        cube = catalogue.read_cube(s, top, bottom).astype(np.float32, copy=False)  # a fresh array: ours to change
        cube -= self.normaliser.shift  # Normaliser.apply, in place (the same float32 operations)
        cube *= self.normaliser.scale
        if not np.isfinite(cube).all():
            raise UserError(f"catalogue {catalogue.name}: scene '{catalogue.scenes[s].name}' holds NaN or infinite "
                            f"values in rows {top}-{bottom}; fill or mask them before training")
        classes = catalogue.classes(s, top, bottom)
        roles = catalogue.roles(s, top, bottom, classes)
        sampler = PatchSampler([cube], np.where(roles == TRAIN, classes, IGNORE), self.patch_size)
        del cube
        inner = slice(row0 - top, row1 - top)
        pixels = {r: np.flatnonzero(roles[inner] == r).astype(np.int32) for r in ROLES}
        expected = self.index.counts[b].sum(axis=1)
        if [len(pixels[r]) for r in ROLES] != expected.tolist():
            raise UserError(f"catalogue {catalogue.name}: the labels of scene '{catalogue.scenes[s].name}' changed "
                            "since training started; start the run again")
        return BlockEntry(sampler, top, row0, row1, classes[inner].astype(np.int16), pixels)

    def cut(self, blocks: np.ndarray, ranks: np.ndarray, role: int) -> Batch:
        """Patches (N, B, P, P) and centre classes of the ``ranks[i]``-th ``role`` pixel of block
        ``blocks[i]`` (row-major order in the block). The batch lists the samples block by block,
        blocks in order of first appearance (so a batch that ends one group of blocks and starts the
        next finishes with the old blocks before loading new ones); each block costs one gather into
        its slice of the batch."""
        n, p, bands = len(blocks), self.patch_size, self.n_bands
        sequence = batch_order(blocks)
        blocks, ranks = blocks[sequence], ranks[sequence]
        changes = np.flatnonzero(blocks[1:] != blocks[:-1]) + 1
        bounds = np.concatenate(([0], changes, [n])) if n else np.zeros(1, dtype=np.int64)
        gathered = torch.empty((n, p, p, bands), dtype=torch.float32)  # channels last, one slice per block
        flat_out = gathered.view(n * p * p, bands)
        target, rows, cols = (np.empty(n, dtype=np.int64) for _ in range(3))
        offsets = np.arange(p)
        for at, stop in zip(bounds[:-1], bounds[1:]):
            part = slice(at, stop)
            entry = self.entry(int(blocks[at]))
            width = entry.classes.shape[1]
            flat = entry.pixels[role][ranks[part]].astype(np.int64)
            rows[part], cols[part] = np.divmod(flat, width)
            rows[part] += entry.row0
            target[part] = entry.classes.ravel()[flat]
            padded = entry.sampler.padded[0]
            padded_width = padded.shape[1]
            window = ((rows[part] - entry.top)[:, None, None] + offsets[None, :, None]) * padded_width \
                + cols[part][:, None, None] + offsets[None, None, :]
            torch.index_select(padded.view(-1, bands), 0, torch.from_numpy(window.reshape(-1)),
                               out=flat_out[at * p * p:stop * p * p])
        inputs = gathered.permute(0, 3, 1, 2).contiguous()
        return Batch([inputs], torch.from_numpy(target), torch.from_numpy(rows), torch.from_numpy(cols))


def batch_order(blocks: np.ndarray) -> np.ndarray:
    """The order :meth:`CatalogueSource.cut` lists samples in: grouped by block, blocks in order of
    first appearance, samples of a block in their given order."""
    order = np.argsort(blocks, kind="stable")
    ordered = blocks[order]
    starts = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1]))) if len(blocks) else order
    stops = np.append(starts[1:], len(blocks))
    visit = np.argsort(order[starts], kind="stable")
    return np.concatenate([order[starts[k]:stops[k]] for k in visit]) if len(blocks) else order


# ----- the maker ------------------------------------------------------------------------------------

class CatalogueMaker:
    """A :class:`deephyperx.sampling.BatchMaker`-compatible maker of centre-pixel patches of one
    role (train, val or test) across a catalogue.

    ``len()`` is the samples of an epoch: ``epoch_samples`` if given, else every pixel of the role
    once. With a generator (training), ``make(index, generator)`` takes the next ``len(index)``
    samples of the epoch's plan of visits (see the module notes; the values of ``index`` are not
    used, only its length); a new generator starts a new epoch. ``visit_samples`` (default: a
    quarter of the mean training pixels of a block) is lowered where needed so that an epoch has at
    least a group of visits. Without a generator (validation), sample ``i`` is the ``i``-th pixel
    of the role in block order, so a pass loads each block once.
    Augmentation: flips/rotations and radiation noise as :class:`deephyperx.sampling.BatchMaker`
    applies them (mixture noise needs same-class partners drawn from the whole training set and
    is not offered).
    """

    def __init__(self, source: CatalogueSource, role: str | int = "train", epoch_samples: Optional[int] = None,
                 augmentation: Optional[Augmentation] = None, visit_samples: Optional[int] = None):
        self.source = source
        self.role = role_code(role)
        self.counts = source.index.role_counts(self.role)
        self.total = int(self.counts.sum())
        self.augmentation = augmentation or Augmentation()
        if self.augmentation.mixture:
            raise UserError("mixture augmentation is not available across a catalogue (it mixes same-class pixels "
                            "of the whole training set); use flip or radiation augmentation")
        if epoch_samples is not None and epoch_samples < 1:
            raise UserError(f"--epoch_samples {epoch_samples} must be at least 1")
        self.epoch_samples = int(epoch_samples) if epoch_samples and self.total else self.total
        if visit_samples is not None and visit_samples < 1:
            raise UserError(f"--visit_samples {visit_samples} must be at least 1")
        holding = self.counts[self.counts > 0]
        #: Patches cut per visit to a block when an epoch is a sample count.
        self.visit_samples = int(visit_samples) if visit_samples else \
            max(1, int(holding.mean()) // VISIT_SHARE if len(holding) else 1)
        self._starts = np.cumsum(self.counts) - self.counts
        self._generator: Optional[torch.Generator] = None
        self._rng = np.random.default_rng(0)
        self._plan: Iterator[tuple[np.ndarray, np.ndarray]] = iter(())
        self._buffer = (np.zeros(0, np.int64), np.zeros(0, np.int64))
        self._position = 0

    def __len__(self) -> int:
        return self.epoch_samples

    # --- which pixels -----------------------------------------------------------------------------
    def draw(self, index: torch.Tensor, generator: Optional[torch.Generator] = None) -> tuple[np.ndarray, np.ndarray]:
        """(blocks, ranks) of the samples ``index`` (see the class notes)."""
        index = torch.as_tensor(index).reshape(-1)
        if not self.total:
            raise UserError("no pixels of this role in the catalogue to draw from; check the split")
        if generator is None:
            flat = index.numpy().astype(np.int64) % self.total
            blocks = np.searchsorted(np.cumsum(self.counts), flat, side="right")
            return blocks, flat - self._starts[blocks]
        if generator is not self._generator:  # a new epoch
            self._generator = generator
            self._rng = np.random.default_rng(int(torch.randint(0, 2 ** 62, (1,), generator=generator)))
            self._plan = self.epoch_plan(self._rng)
            self._buffer, self._position = (np.zeros(0, np.int64), np.zeros(0, np.int64)), 0
        return self._take(len(index))

    def _take(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        blocks, ranks = [], []
        while n > 0:
            if self._position >= len(self._buffer[0]):
                group = next(self._plan, None)
                if group is None:  # asked past the epoch's samples: go on with a further plan
                    self._plan = self.epoch_plan(self._rng)
                    group = next(self._plan)
                self._buffer, self._position = group, 0
            stop = min(len(self._buffer[0]), self._position + n)
            blocks.append(self._buffer[0][self._position:stop])
            ranks.append(self._buffer[1][self._position:stop])
            n -= stop - self._position
            self._position = stop
        return np.concatenate(blocks), np.concatenate(ranks)

    def epoch_plan(self, rng: np.random.Generator) -> Iterator[tuple[np.ndarray, np.ndarray]]:
        """The (blocks, ranks) of one epoch, a group of blocks at a time (see the class notes); each
        group's samples are shuffled together."""
        group_size = self.source.group_size
        if self.epoch_samples == self.total:  # one pass: every block once, each pixel once
            visits = np.flatnonzero(self.counts)
            visits = visits[rng.permutation(len(visits))]
            sizes = self.counts[visits]
        else:
            per_visit = min(self.visit_samples, -(-self.epoch_samples // group_size))  # at least a group of visits
            n_visits = -(-self.epoch_samples // per_visit)
            visits = rng.choice(len(self.counts), size=n_visits, p=self.counts / self.total)
            sizes = np.full(n_visits, per_visit)
            sizes[-1] = self.epoch_samples - per_visit * (n_visits - 1)
        full = self.epoch_samples == self.total
        for start in range(0, len(visits), group_size):
            group, counts = visits[start:start + group_size], sizes[start:start + group_size]
            blocks = np.repeat(group, counts)
            ranks = np.concatenate([rng.permutation(self.counts[b]) if full else rng.integers(0, self.counts[b], k)
                                    for b, k in zip(group, counts)])
            shuffle = rng.permutation(len(blocks))
            yield blocks[shuffle], ranks[shuffle].astype(np.int64)

    # --- batches --------------------------------------------------------------------------------------
    def make(self, index: torch.Tensor, generator: Optional[torch.Generator] = None, augment: bool = False) -> Batch:
        """The batch of ``len(index)`` samples (see the class notes), listed block by block
        (:func:`batch_order`)."""
        blocks, ranks = self.draw(index, generator)
        batch = self.source.cut(blocks, ranks, self.role)
        if augment and self.augmentation.active:
            batch.inputs = [self._augment(batch.inputs[0], generator)]
        return batch

    def scenes_of(self, blocks: np.ndarray) -> np.ndarray:
        """Scene index of each block."""
        return self.source.index.scene[blocks]

    def _augment(self, cube: torch.Tensor, gen: Optional[torch.Generator]) -> torch.Tensor:
        aug, n = self.augmentation, len(cube)
        if aug.flip:
            codes = torch.randint(0, 8, (n,), generator=gen)
            codes[torch.rand(n, generator=gen) >= aug.flip_probability] = 0
            cube = dihedral(cube, codes)
        if aug.radiation:
            chosen = torch.rand(n, generator=gen) < aug.radiation_probability
            alpha = torch.empty(n).uniform_(0.9, 1.1, generator=gen).view(-1, 1, 1, 1)
            noise = torch.randn(cube.shape, generator=gen) * aug.noise_std
            cube = torch.where(chosen.view(-1, 1, 1, 1), alpha * cube + noise, cube)
        return cube


# ----- scoring --------------------------------------------------------------------------------------

@torch.no_grad()
def score_catalogue(model: nn.Module, source: CatalogueSource, batch_size: int, device: torch.device,
                    role: str | int = "test",
                    progress: Optional[Callable[[int, int], None]] = None) -> np.ndarray:
    """Confusion matrices (n_scenes, K, K) of ``model`` on the ``role`` pixels of every scene, block by
    block through the cache (:func:`deephyperx.inference.predict_centre` on each block's sampler);
    ``progress(done, total)`` hears of the pixels scored after each block."""
    from deephyperx.inference import predict_centre
    from deephyperx.metrics import confusion_matrix

    role, catalogue = role_code(role), source.catalogue
    k = catalogue.n_classes
    matrices = np.zeros((len(catalogue.scenes), k, k), dtype=np.int64)
    counts = source.index.role_counts(role)
    total, done = int(counts.sum()), 0
    for b in np.flatnonzero(counts):
        entry = source.entry(int(b))
        width = entry.classes.shape[1]
        mask = np.zeros(entry.sampler.shape, dtype=bool)
        flat = entry.pixels[role].astype(np.int64)
        mask.ravel()[(entry.row0 - entry.top) * width + flat] = True
        prediction = predict_centre(model, entry.sampler, batch_size, device, mask)
        truth = entry.classes.ravel()[flat].astype(np.int64)
        matrices[source.index.scene[b]] += confusion_matrix(truth, prediction[mask], k)
        done += int(counts[b])
        if progress is not None:
            progress(done, total)
    return matrices


def class_weights(counts: np.ndarray) -> torch.Tensor:
    """Inverse median frequency weights from per-class pixel counts (0 for absent classes), as
    :func:`deephyperx.training.inverse_median_frequency` computes them from a label map."""
    freq = counts / max(int(counts.sum()), 1)
    present = freq > 0
    weights = np.zeros(len(counts))
    weights[present] = np.median(freq[present]) / freq[present]
    return torch.as_tensor(weights, dtype=torch.float32)
