"""Patch sampling by vectorised indexing into one padded tensor per raster.

Every pixel, border pixels included, can be the centre of a patch: rasters are padded
by mirror reflection once, and a batch of small patches is one advanced-indexing gather,
with no per-sample Python in the hot path; large patches (e.g. 64x64x200) are copied
sample by sample from a sliding-window view, where the loop costs microseconds against
each copy (:func:`cut_patches`). Augmentations act on whole batches.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np
import torch

from deephyperx.errors import UserError
from deephyperx.scene import IGNORE


@dataclass
class Batch:
    """What a training step receives: the model's inputs, the targets, and the centre pixels."""

    inputs: list[torch.Tensor]
    target: torch.Tensor
    rows: torch.Tensor
    cols: torch.Tensor
    unlabelled: Optional[list[torch.Tensor]] = None

    def to(self, device: torch.device) -> "Batch":
        move = lambda ts: None if ts is None else [t.to(device, non_blocking=True) for t in ts]  # noqa: E731
        return Batch(move(self.inputs), self.target.to(device), self.rows, self.cols, move(self.unlabelled))


def patch_extent(patch_size: int) -> tuple[int, int]:
    """Pixels before and after the centre covered by a patch (odd sizes are centred;
    an even size has one pixel more before the centre than after)."""
    before = patch_size // 2
    return before, patch_size - 1 - before


#: Patches of at least this many values (P x P x C) are copied one by one from a sliding-window
#: view; smaller ones by one advanced-indexing gather. Measured on 1 thread: the gather and its
#: channel-first copy cost two passes and two fresh allocations, which dominates for large patches
#: (27x27x200: 1.6x slower, 64x64x200: 1.8x), while the per-sample Python loop dominates for small
#: ones (5x5x200: 2.5x slower); the two cross between 9x9x200 and 11x11x200.
LARGE_PATCH_VALUES = 1 << 14

#: Most values one copy of the per-sample path moves: torch splits larger copies among its intra-op
#: threads (at::internal::GRAIN_SIZE), and thousands of small thread-team launches cost more than
#: they gain, badly so on a busy machine (64x64x200 patches: 4x slower with 2 threads than with 1).
SERIAL_COPY_VALUES = 1 << 15


def cut_patches(padded: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, dy: torch.Tensor,
                dx: torch.Tensor) -> torch.Tensor:
    """Contiguous (N, C, P, P) patches of one padded (H + P - 1, W + P - 1, C) raster, centred on
    the scene pixels (rows, cols), i.e. whose top-left corners in the padded raster are (rows,
    cols); ``dy`` (1, P, 1) and ``dx`` (1, 1, P) are the offsets 0..P-1.

    Small patches: one gather of (N, P, P, C), then one channel-first copy. Large patches
    (:data:`LARGE_PATCH_VALUES`): each sample is copied straight from a sliding-window view into its
    place in the output, in blocks of channels of at most :data:`SERIAL_COPY_VALUES` values: one pass
    and one allocation instead of two, on the calling thread alone; the Python loop costs
    microseconds against copies of tens of KiB."""
    size, channels = dy.shape[1], padded.shape[-1]
    if size * size * channels < LARGE_PATCH_VALUES:
        return padded[rows.view(-1, 1, 1) + dy, cols.view(-1, 1, 1) + dx].permute(0, 3, 1, 2).contiguous()
    windows = padded.unfold(0, size, 1).unfold(1, size, 1)  # (H, W, C, P, P) view: no copy
    out = torch.empty((rows.numel(), channels, size, size), dtype=padded.dtype, device=padded.device)
    block = max(1, SERIAL_COPY_VALUES // (size * size))
    for i, (r, c) in enumerate(zip(rows.reshape(-1).tolist(), cols.reshape(-1).tolist())):
        window, target = windows[r, c], out[i]
        for k in range(0, channels, block):
            target[k:k + block].copy_(window[k:k + block])
    return out


class PatchSampler:
    """Cut (N, C, P, P) patches of several co-registered rasters around given centres.

    ``rasters`` are (H, W, C) float arrays (the normalised cube, then extra rasters);
    ``labels`` is (H, W) with :data:`IGNORE` where the target is unknown to training
    (pass only the training labels here, so that dense targets never leak test labels).
    """

    def __init__(self, rasters: Sequence[np.ndarray], labels: np.ndarray, patch_size: int):
        height, width = labels.shape
        if patch_size < 1:
            raise UserError(f"patch_size {patch_size} must be at least 1")
        if patch_size > min(height, width):
            raise UserError(f"patch_size {patch_size} is larger than the scene ({height}x{width}); "
                            f"choose a patch of at most {min(height, width)}")
        self.patch_size = patch_size
        self.shape = (height, width)
        before, after = patch_extent(patch_size)
        pad = ((before, after), (before, after))
        mode = "reflect" if min(height, width) > patch_size else "symmetric"
        self.padded = [torch.from_numpy(np.ascontiguousarray(np.pad(r, pad + ((0, 0),), mode=mode), dtype=np.float32))
                       for r in rasters]
        self.padded_labels = torch.from_numpy(np.pad(labels.astype(np.int64), pad, constant_values=IGNORE))
        offsets = torch.arange(patch_size)
        self._dy = offsets.view(1, patch_size, 1)
        self._dx = offsets.view(1, 1, patch_size)

    def with_labels(self, labels: np.ndarray) -> "PatchSampler":
        """A sampler over the same padded rasters (shared, not copied) with other target labels,
        e.g. the validation pixels'."""
        twin = object.__new__(PatchSampler)
        twin.__dict__.update(self.__dict__)
        before, after = patch_extent(self.patch_size)
        twin.padded_labels = torch.from_numpy(np.pad(labels.astype(np.int64), ((before, after), (before, after)),
                                                     constant_values=IGNORE))
        return twin

    def patches(self, rows: torch.Tensor, cols: torch.Tensor) -> list[torch.Tensor]:
        """Patches (N, C, P, P) of every raster centred on pixels (rows, cols) of the unpadded
        scene (padded index ``i`` is scene index ``i - before``), contiguous, one raster at a time
        by :func:`cut_patches`."""
        return [cut_patches(p, rows, cols, self._dy, self._dx) for p in self.padded]

    def label_patches(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        """Label patches (N, P, P) centred on (rows, cols)."""
        return self.padded_labels[rows.view(-1, 1, 1) + self._dy, cols.view(-1, 1, 1) + self._dx]

    def centre_labels(self, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
        before, _ = patch_extent(self.patch_size)
        return self.padded_labels[rows + before, cols + before]


@dataclass
class Augmentation:
    """DeepHyperX's augmentations, applied per sample with their usual probabilities."""

    flip: bool = False
    radiation: bool = False
    mixture: bool = False
    flip_probability: float = 0.5
    radiation_probability: float = 0.1
    mixture_probability: float = 0.2
    noise_std: float = 1.0 / 25

    @property
    def active(self) -> bool:
        return self.flip or self.radiation or self.mixture


def dihedral(batch: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
    """Apply one of the 8 flips/rotations per sample (code 0 = identity) on the last two axes."""
    out = batch.clone()
    for code in codes.unique().tolist():
        if code == 0:
            continue
        sel = codes == code
        part = batch[sel]
        if code >= 4:
            part = part.flip(-1)
        out[sel] = torch.rot90(part, k=code % 4, dims=(-2, -1))
    return out


class BatchMaker:
    """Turn centre indices into :class:`Batch` objects, with augmentation for training.

    ``dense`` targets are label patches (N, P, P); otherwise the centre label (N,).
    Mixture noise blends each patch with a patch of another training pixel of the same
    class, drawn by vectorised indexing into a class-sorted index.
    """

    def __init__(self, sampler: PatchSampler, rows: np.ndarray, cols: np.ndarray, dense: bool,
                 augmentation: Augmentation | None = None):
        self.sampler = sampler
        self.rows = torch.as_tensor(rows, dtype=torch.long)
        self.cols = torch.as_tensor(cols, dtype=torch.long)
        self.dense = dense
        self.augmentation = augmentation or Augmentation()
        before, _ = patch_extent(sampler.patch_size)
        self.labels = sampler.padded_labels[self.rows + before, self.cols + before]
        order = torch.argsort(self.labels, stable=True)
        self._by_class = order
        counts = torch.bincount(self.labels.clamp(min=0), minlength=int(self.labels.max()) + 1 if len(self.labels) else 1)
        self._class_start = torch.cumsum(counts, 0) - counts
        self._class_count = counts

    def __len__(self) -> int:
        return len(self.rows)

    def make(self, index: torch.Tensor, generator: torch.Generator | None = None, augment: bool = False) -> Batch:
        """The batch of the samples at positions ``index``."""
        rows, cols = self.rows[index], self.cols[index]
        inputs = self.sampler.patches(rows, cols)
        target = self.sampler.label_patches(rows, cols) if self.dense else self.labels[index]
        if augment and self.augmentation.active:
            inputs, target = self._augment(inputs, target, index, generator)
        return Batch(inputs, target, rows, cols)

    def _augment(self, inputs: list[torch.Tensor], target: torch.Tensor, index: torch.Tensor,
                 gen: torch.Generator | None) -> tuple[list[torch.Tensor], torch.Tensor]:
        aug, n = self.augmentation, len(index)
        if aug.flip:
            codes = torch.randint(0, 8, (n,), generator=gen)
            codes[torch.rand(n, generator=gen) >= aug.flip_probability] = 0
            inputs = [dihedral(x, codes) for x in inputs]
            if self.dense:
                target = dihedral(target, codes)
        cube = inputs[0]
        if aug.radiation:
            chosen = torch.rand(n, generator=gen) < aug.radiation_probability
            alpha = torch.empty(n).uniform_(0.9, 1.1, generator=gen).view(-1, 1, 1, 1)
            noise = torch.randn(cube.shape, generator=gen) * aug.noise_std
            cube = torch.where(chosen.view(-1, 1, 1, 1), alpha * cube + noise, cube)
        if aug.mixture:
            chosen = torch.rand(n, generator=gen) < aug.mixture_probability
            labels = self.labels[index].clamp(min=0)
            offset = (torch.rand(n, generator=gen) * self._class_count[labels]).long()
            partner = self._by_class[self._class_start[labels] + offset]
            partner_cube = self.sampler.patches(self.rows[partner], self.cols[partner])[0]
            a1 = torch.empty(n).uniform_(0.01, 1.0, generator=gen).view(-1, 1, 1, 1)
            a2 = torch.empty(n).uniform_(0.01, 1.0, generator=gen).view(-1, 1, 1, 1)
            noise = torch.randn(cube.shape, generator=gen) * aug.noise_std
            mixed = (a1 * cube + a2 * partner_cube) / (a1 + a2) + noise
            cube = torch.where(chosen.view(-1, 1, 1, 1), mixed, cube)
        return [cube, *inputs[1:]], target


# ----- passes over a maker's samples --------------------------------------------------------------

def sample_order(n: int, generator: Optional[torch.Generator] = None, shuffle: bool = False,
                 n_samples: Optional[int] = None) -> torch.Tensor:
    """The sample indices of one epoch: ``0..n-1`` (shuffled if asked), or, with ``n_samples``,
    ``n_samples`` indices drawn as successive shuffled passes."""
    if n_samples is None:
        return torch.randperm(n, generator=generator) if shuffle else torch.arange(n)
    if n == 0:
        return torch.arange(0)
    passes = -(-n_samples // n)
    return torch.cat([torch.randperm(n, generator=generator) for _ in range(passes)])[:n_samples]


def batches(maker: BatchMaker, batch_size: int, generator: Optional[torch.Generator] = None,
            augment: bool = False, shuffle: bool = False, n_samples: Optional[int] = None):
    """Yield the batches of one pass over ``maker``'s samples, or, with ``n_samples``, of
    ``n_samples`` samples drawn as successive shuffled passes (an epoch defined by a sample count,
    for models whose schedule is counted in iterations: GANs, tile samplers)."""
    order = sample_order(len(maker), generator, shuffle, n_samples)
    for start in range(0, len(order), batch_size):
        yield maker.make(order[start:start + batch_size], generator=generator, augment=augment)
