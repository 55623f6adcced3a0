"""Sliding-window inference: equal to one full-image pass where that is exact, correct averaging
at borders and on sizes that windows do not divide, and memory bounded on a big raster on disk."""
from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import torch
from torch import nn

from deephyperx.errors import UserError
from deephyperx.sliding_window import (array_reader, averaged_logit_bands, check_window, coverage, predict_tile,
                                       window_starts)

CPU = torch.device("cpu")


def conv_net(channels: int, n_classes: int, kernel: int, seed: int = 0) -> nn.Module:
    """A small dense net without pooling (3x3 convolutions see neighbours; 1x1 ones do not)."""
    torch.manual_seed(seed)
    pad = kernel // 2
    return nn.Sequential(nn.Conv2d(channels, 8, kernel, padding=pad), nn.ReLU(),
                         nn.Conv2d(8, n_classes, kernel, padding=pad)).eval()


class TwoInputs(nn.Module):
    """A pointwise net over two sources (as a fusion model is called: ``forward(image, dsm)``)."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.image, self.dsm = nn.Conv2d(3, 4, 1), nn.Conv2d(1, 4, 1)

    def forward(self, image, dsm):
        return self.image(image) + self.dsm(dsm)


class PositionLogits(nn.Module):
    """Logits that depend on the position inside the window (and on the input), so that
    averaging must weight each window's pixels exactly as a naive full-size accumulation does."""

    def forward(self, x):
        n, _, h, w = x.shape
        ys = torch.arange(h, dtype=torch.float32).view(1, 1, h, 1)
        xs = torch.arange(w, dtype=torch.float32).view(1, 1, 1, w)
        k = torch.arange(3, dtype=torch.float32).view(1, 3, 1, 1)
        return (k + 1) * ys - k * xs + x.mean(1, keepdim=True)


def full_pass(model: nn.Module, *rasters: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        inputs = [torch.from_numpy(r.transpose(2, 0, 1)[None].copy()) for r in rasters]
        return model(*inputs)[0].numpy()


def softmax(logits: np.ndarray, k: int) -> np.ndarray:
    e = np.exp(logits - logits.max(0))
    return e[k] / e.sum(0)


def stitched_logits(model, rasters, shape, n_classes, window, stride, batch_size=4) -> np.ndarray:
    bands = list(averaged_logit_bands(model, array_reader(*rasters), shape, n_classes, window, stride,
                                      batch_size, CPU))
    rows = [row for row, _ in bands]
    assert rows == sorted(rows) and rows[0] == 0
    return np.concatenate([logits for _, logits in bands], axis=1)


def test_a_tile_that_fits_one_window_equals_the_full_pass_of_a_3x3_conv_net():
    rng = np.random.default_rng(0)
    image = rng.standard_normal((32, 32, 3)).astype(np.float32)
    model = conv_net(3, 5, kernel=3)
    expected = full_pass(model, image)
    probabilities = np.zeros((32, 32), np.float32)
    labels = predict_tile(model, array_reader(image), (32, 32), 5, window=32, stride=16, batch_size=2, device=CPU,
                          probabilities=probabilities, probability_class=2)
    np.testing.assert_array_equal(labels, expected.argmax(0))
    np.testing.assert_allclose(probabilities, softmax(expected, 2), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape, window, stride", [((70, 53), 32, 12), ((64, 96), 32, 32), ((45, 33), 16, 16),
                                                   ((40, 41), 16, 1)])
def test_overlapping_and_border_windows_average_to_the_full_pass_of_a_pointwise_net(shape, window, stride):
    rng = np.random.default_rng(1)
    image = rng.standard_normal((*shape, 3)).astype(np.float32)
    model = conv_net(3, 4, kernel=1)
    expected = full_pass(model, image)
    logits = stitched_logits(model, [image], shape, 4, window, stride)
    np.testing.assert_allclose(logits, expected, rtol=1e-5, atol=1e-5)
    labels = predict_tile(model, array_reader(image), shape, 4, window, stride, 3, CPU)
    np.testing.assert_array_equal(labels, expected.argmax(0))


def test_two_sources_are_read_and_fed_in_order():
    rng = np.random.default_rng(2)
    image = rng.standard_normal((50, 37, 3)).astype(np.float32)
    dsm = rng.standard_normal((50, 37)).astype(np.float32)  # a 2-D raster is read as one channel
    model = TwoInputs()
    expected = full_pass(model, image, dsm[..., None])
    np.testing.assert_allclose(stitched_logits(model, [image, dsm], (50, 37), 4, 16, 6), expected,
                               rtol=1e-5, atol=1e-5)


def naive_average(model: nn.Module, image: np.ndarray, window: int, stride: int, n_classes: int) -> np.ndarray:
    """Reference: full-size sums and counts, windows clamped to the tile, written the plain way."""
    height, width = image.shape[:2]
    total = np.zeros((n_classes, height, width))
    count = np.zeros((height, width))
    for r in window_starts(height, window, stride):
        for c in window_starts(width, window, stride):
            total[:, r:r + window, c:c + window] += full_pass(model, image[r:r + window, c:c + window])
            count[r:r + window, c:c + window] += 1
    return total / count


def test_position_dependent_logits_are_averaged_like_a_naive_full_size_accumulation():
    rng = np.random.default_rng(3)
    image = rng.standard_normal((45, 77, 2)).astype(np.float32)
    logits = stitched_logits(PositionLogits(), [image], (45, 77), 3, window=16, stride=5)
    np.testing.assert_allclose(logits, naive_average(PositionLogits(), image, 16, 5, 3), rtol=1e-5, atol=1e-4)


def test_a_tile_smaller_than_the_window_is_mirrored_up_and_cropped_back():
    rng = np.random.default_rng(4)
    image = rng.standard_normal((20, 9, 3)).astype(np.float32)
    model = conv_net(3, 4, kernel=1)
    labels = predict_tile(model, array_reader(image), (20, 9), 4, window=32, stride=16, batch_size=1, device=CPU)
    assert labels.shape == (20, 9)
    np.testing.assert_array_equal(labels, full_pass(model, image).argmax(0))


def test_window_positions_cover_every_pixel_and_stay_inside_the_tile():
    for length, window, stride in [(100, 32, 10), (64, 32, 32), (65, 32, 32), (10, 32, 8), (33, 32, 1)]:
        starts = window_starts(length, window, stride)
        assert starts[0] == 0 and (starts + window <= max(length, window)).all()
        assert np.all(np.diff(starts) <= stride) and np.all(np.diff(starts) > 0)
        assert (coverage(length, window, starts)[:length] >= 1).all()
    np.testing.assert_array_equal(window_starts(65, 32, 32), [0, 32, 33])
    np.testing.assert_array_equal(coverage(65, 32, np.array([0, 32, 33]))[[0, 31, 32, 33, 64]], [1, 1, 1, 2, 1])


@pytest.mark.parametrize("window, stride", [(32, 0), (32, 33), (0, 1)])
def test_a_stride_that_cannot_tile_is_refused_in_one_line(window, stride):
    with pytest.raises(UserError) as error:
        check_window(window, stride)
    assert "\n" not in str(error.value)


def test_a_big_memory_mapped_raster_is_predicted_within_one_band_of_memory(tmp_path):
    height = width = 2000
    n_classes, window, stride = 6, 128, 96
    path = tmp_path / "big.npy"
    raster = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(height, width, 3))
    rng = np.random.default_rng(5)
    for row in range(0, height, 250):
        raster[row:row + 250] = rng.standard_normal((250, width, 3), dtype=np.float32)
    raster.flush()
    del raster
    on_disk = np.load(path, mmap_mode="r")
    model = conv_net(3, n_classes, kernel=1)
    labels = np.zeros((height, width), np.int16)  # the output is the caller's, allocated before counting
    tracemalloc.start()
    try:
        predict_tile(model, array_reader(on_disk), (height, width), n_classes, window, stride, 8, CPU, out=labels)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    full_logits = n_classes * height * width * 4
    band = n_classes * window * width * 4
    assert peak < 5 * band < full_logits / 3, f"peak {peak / 2**20:.1f} MiB"
    check = slice(1000, 1100)  # a stripe checked against the full pass of the same pixels
    expected = full_pass(model, np.asarray(on_disk[check])).argmax(0)
    np.testing.assert_array_equal(labels[check], expected)
