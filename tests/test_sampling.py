"""Patch sampling: vectorised patches equal a naive per-pixel cut, borders included; augmentations."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from deephyperx.errors import UserError
from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler, dihedral, patch_extent


def naive_patch(cube: np.ndarray, r: int, c: int, p: int) -> np.ndarray:
    """Reference: mirror-pad the whole cube and cut one patch with slices."""
    before, after = patch_extent(p)
    padded = np.pad(cube, ((before, after), (before, after), (0, 0)), mode="reflect")
    return padded[r:r + p, c:c + p].transpose(2, 0, 1)


@pytest.mark.parametrize("p", [1, 2, 3, 5, 8])
def test_patches_match_naive_cut_everywhere(p):
    rng = np.random.default_rng(1)
    cube = rng.standard_normal((11, 9, 4)).astype(np.float32)
    labels = rng.integers(-1, 3, (11, 9))
    sampler = PatchSampler([cube], labels, p)
    rows, cols = np.divmod(np.arange(11 * 9), 9)
    patches = sampler.patches(torch.as_tensor(rows), torch.as_tensor(cols))[0]
    assert patches.shape == (99, 4, p, p)
    for i in range(0, 99, 7):
        np.testing.assert_array_equal(patches[i].numpy(), naive_patch(cube, rows[i], cols[i], p))
    before, _ = patch_extent(p)
    centre = patches[:, :, before, before].numpy()
    np.testing.assert_array_equal(centre, cube[rows, cols])


def test_label_patches_pad_with_ignore_and_centre_label():
    labels = np.arange(25).reshape(5, 5)
    sampler = PatchSampler([np.zeros((5, 5, 1), np.float32)], labels, 3)
    lp = sampler.label_patches(torch.tensor([0]), torch.tensor([0]))[0]
    assert lp[0].tolist() == [-1, -1, -1] and lp[1].tolist() == [-1, 0, 1]
    assert sampler.centre_labels(torch.tensor([2, 4]), torch.tensor([3, 4])).tolist() == [13, 24]


def test_several_rasters_are_cut_at_the_same_place():
    cube = np.arange(6 * 6 * 3, dtype=np.float32).reshape(6, 6, 3)
    dsm = np.arange(36, dtype=np.float32).reshape(6, 6, 1) * 10
    sampler = PatchSampler([cube, dsm], np.zeros((6, 6), int), 3)
    a, b = sampler.patches(torch.tensor([3]), torch.tensor([2]))
    assert a.shape == (1, 3, 3, 3) and b.shape == (1, 1, 3, 3)
    assert b[0, 0, 1, 1] == dsm[3, 2, 0] and a[0, 0, 1, 1] == cube[3, 2, 0]


def test_patch_larger_than_scene_is_refused():
    with pytest.raises(UserError, match="larger than the scene"):
        PatchSampler([np.zeros((4, 4, 2), np.float32)], np.zeros((4, 4), int), 7)


def test_dihedral_covers_eight_distinct_transforms():
    x = torch.arange(9.0).view(1, 1, 3, 3).repeat(8, 1, 1, 1)
    out = dihedral(x, torch.arange(8))
    assert len({tuple(o.flatten().tolist()) for o in out}) == 8
    assert torch.equal(out[0], x[0])


def test_augmentations_are_seeded_and_change_some_samples():
    rng = np.random.default_rng(0)
    cube = rng.standard_normal((10, 10, 5)).astype(np.float32)
    labels = rng.integers(0, 2, (10, 10))
    sampler = PatchSampler([cube], labels, 3)
    rows, cols = np.nonzero(labels >= 0)
    maker = BatchMaker(sampler, rows, cols, dense=False, augmentation=Augmentation(True, True, True))
    index = torch.arange(len(maker))
    a = maker.make(index, torch.Generator().manual_seed(3), augment=True)
    b = maker.make(index, torch.Generator().manual_seed(3), augment=True)
    plain = maker.make(index)
    assert torch.equal(a.inputs[0], b.inputs[0])
    changed = (a.inputs[0] != plain.inputs[0]).flatten(1).any(1).float().mean()
    assert 0.3 < changed < 1.0  # flips (p=.5, 1/8 identity), radiation (.1) and mixture (.2) noise
    assert torch.equal(a.target, plain.target)


def test_dense_targets_follow_flips():
    labels = np.arange(16).reshape(4, 4) % 3
    cube = labels[..., None].astype(np.float32)
    sampler = PatchSampler([cube], labels, 3)
    maker = BatchMaker(sampler, *np.nonzero(labels >= 0), dense=True, augmentation=Augmentation(flip=True))
    batch = maker.make(torch.arange(16), torch.Generator().manual_seed(0), augment=True)
    inside = batch.target >= 0
    assert torch.equal(batch.inputs[0][:, 0][inside], batch.target[inside].float())


def test_a_sampler_with_other_labels_shares_the_rasters():
    cube = np.arange(5 * 5 * 2, dtype=np.float32).reshape(5, 5, 2)
    train = PatchSampler([cube], np.zeros((5, 5), int), 3)
    val = train.with_labels(np.ones((5, 5), int))
    assert val.padded[0] is train.padded[0]
    assert val.centre_labels(torch.tensor([2]), torch.tensor([2])).item() == 1
    assert train.centre_labels(torch.tensor([2]), torch.tensor([2])).item() == 0
