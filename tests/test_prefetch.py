"""Prefetching batches in a background thread changes nothing but the timing: same batches in the
same order, same random draws, errors raised in place, early stops that never hang. And the
large-patch copy of the sampler cuts exactly what the gather cuts."""
from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest
import torch

from deephyperx import sampling
from deephyperx.prefetch import Prefetcher, patch_batches, prefetch, resolve_depth
from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler
from deephyperx.sampling import batches


def small_maker(patch_size: int = 3, dense: bool = False) -> BatchMaker:
    """A seeded 12x10 scene of 6 bands, 3 classes, every augmentation on."""
    rng = np.random.default_rng(0)
    cube = rng.standard_normal((12, 10, 6)).astype(np.float32)
    labels = rng.integers(-1, 3, (12, 10))
    sampler = PatchSampler([cube], labels, patch_size)
    rows, cols = np.nonzero(labels >= 0)
    return BatchMaker(sampler, rows, cols, dense=dense, augmentation=Augmentation(True, True, True, 0.5, 0.5, 0.5))


def epoch(maker: BatchMaker, depth: int) -> tuple[list, torch.Tensor]:
    """One augmented, shuffled epoch of batches of 7, and the generator's state after it."""
    generator = torch.Generator().manual_seed(3)
    made = list(prefetch(batches(maker, 7, generator, augment=True, shuffle=True, n_samples=40), depth))
    return made, generator.get_state()


@pytest.mark.parametrize("dense", [False, True])
@pytest.mark.parametrize("depth", [1, 3])
def test_prefetched_batches_equal_plain_ones_and_draw_the_same_numbers(dense, depth):
    maker = small_maker(dense=dense)
    plain, plain_state = epoch(maker, 0)
    ahead, ahead_state = epoch(maker, depth)
    assert len(plain) == len(ahead) == 6
    for a, b in zip(plain, ahead):
        assert torch.equal(a.inputs[0], b.inputs[0]) and torch.equal(a.target, b.target)
        assert torch.equal(a.rows, b.rows) and torch.equal(a.cols, b.cols)
    assert torch.equal(plain_state, ahead_state)


def failing(n: int):
    yield from range(n)
    raise ValueError("batch 3 is broken")


def test_an_error_is_raised_in_its_place_and_the_thread_ends():
    received = []
    stream = Prefetcher(failing(3), depth=2)
    with pytest.raises(ValueError, match="batch 3 is broken"):
        for item in stream:
            received.append(item)
    assert received == [0, 1, 2]
    assert not stream._thread.is_alive()
    with pytest.raises(StopIteration):
        next(stream)


class Counting:
    """An endless generator that counts the items made and notes its own cleanup."""

    def __init__(self) -> None:
        self.made = 0
        self.closed = threading.Event()

    def items(self):
        try:
            while True:
                self.made += 1
                yield self.made
        finally:
            self.closed.set()


def wait_for(condition, seconds: float = 5.0) -> bool:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.001)
    return condition()


@pytest.mark.parametrize("depth", [1, 2])
def test_at_most_depth_items_are_made_ahead(depth):
    source = Counting()
    with Prefetcher(source.items(), depth) as stream:
        assert next(stream) == 1
        assert wait_for(lambda: source.made == 1 + depth)
        time.sleep(0.05)  # the producer now waits for a slot: nothing more is made
        assert source.made == 1 + depth
    assert source.closed.is_set()


def test_closing_an_endless_stream_stops_its_thread():
    source = Counting()
    stream = Prefetcher(source.items(), 1)
    assert [next(stream) for _ in range(3)] == [1, 2, 3]
    stream.close()
    assert not stream._thread.is_alive() and source.closed.is_set()
    stream.close()  # closing twice is harmless


def test_breaking_out_of_a_for_loop_stops_the_thread():
    source = Counting()
    for item in prefetch(source.items(), 1):
        if item == 2:
            break
    gc.collect()
    assert wait_for(source.closed.is_set)
    assert not any(t.name == "deephyperx-prefetch" and t.is_alive() for t in threading.enumerate())


def test_depth_zero_is_the_plain_iterator_and_negative_is_refused():
    assert list(prefetch(range(4), 0)) == [0, 1, 2, 3]
    assert not isinstance(prefetch(range(4), 0), Prefetcher)
    with pytest.raises(ValueError, match="depth -1"):
        Prefetcher(range(4), -1)


def test_resolve_depth_prefetches_only_with_a_processor_to_spare():
    assert resolve_depth(2) == 2 and resolve_depth(0) == 0
    assert resolve_depth(None, threads_free=1) == 1
    assert resolve_depth(None, threads_free=0) == 0
    assert resolve_depth(None, torch.device("cuda", 0), threads_free=0) == 1  # the processors only feed it
    assert resolve_depth(None, torch.device("cpu"), threads_free=0) == 0


def test_patch_batches_cut_the_pixels_in_order():
    sampler = small_maker(patch_size=5).sampler
    rows, cols = torch.arange(12).repeat_interleave(10), torch.arange(10).repeat(12)
    got = list(prefetch(patch_batches(sampler, rows, cols, 32), 1))
    assert [len(r) for r, _, _ in got] == [32, 32, 32, 24]
    assert torch.equal(torch.cat([p[0] for _, _, p in got]), sampler.patches(rows, cols)[0])


def test_large_patches_are_cut_exactly_like_the_gather():
    rng = np.random.default_rng(2)
    cube = rng.standard_normal((40, 36, 40)).astype(np.float32)
    sampler = PatchSampler([cube], np.zeros((40, 36), int), 31)
    assert 31 * 31 * 40 >= sampling.LARGE_PATCH_VALUES  # the per-sample copy,
    assert 31 * 31 * 40 > sampling.SERIAL_COPY_VALUES  # in two blocks of channels
    rows, cols = torch.as_tensor(rng.integers(0, 40, 25)), torch.as_tensor(rng.integers(0, 36, 25))
    copied = sampler.patches(rows, cols)[0]
    r = rows.view(-1, 1, 1) + sampler._dy
    c = cols.view(-1, 1, 1) + sampler._dx
    gathered = sampler.padded[0][r, c].permute(0, 3, 1, 2).contiguous()
    assert copied.is_contiguous() and torch.equal(copied, gathered)
    assert sampler.patches(rows[:0], cols[:0])[0].shape == (0, 40, 31, 31)
