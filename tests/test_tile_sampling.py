"""Random crops across tiles: area-weighted regions, uniform positions, labels only inside the
region and its mask, one flip/rotation for every source and the labels, normalisation fitted on
training regions only, determinism under the generator."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch

from deephyperx import tile_sampling
from deephyperx.errors import UserError
from deephyperx.scene import IGNORE
from deephyperx.tiles import Region, Tile, TileSet, ValueDecoder
from deephyperx.tile_sampling import (RandomCrops, TileReader, fit_source_normalisers, hold_out_rows,
                                      resolve_region)
from deephyperx.sampling import batches


class RecordingTileSet(TileSet):
    """The real tile set, remembering the windows it is asked for (to show what is read from disk)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        self.requests: list[tuple] = []

    def read_source(self, tile, source, window=None):
        self.requests.append((tile, source, window))
        return super().read_source(tile, source, window)


def make_tileset(folder: Path, sources: dict[str, np.ndarray], labels: np.ndarray) -> RecordingTileSet:
    """One tile 'a' of .npy rasters; labels are written as values 1..3 with 0 = unknown."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for name, array in sources.items():
        paths[name] = str(folder / f"{name}.npy")
        np.save(paths[name], array.astype(np.float32))
    np.save(folder / "labels.npy", (labels + 1).astype(np.uint8))
    tileset = RecordingTileSet("Coded", {"a": Tile("a", paths, str(folder / "labels.npy"))}, ["x", "y", "z"],
                               [(255, 0, 0), (0, 255, 0), (0, 0, 255)],
                               {k: (v.shape[2] if v.ndim == 3 else 1) for k, v in sources.items()},
                               [Region("a")], [], ValueDecoder([1, 2, 3], ignored=[0]))
    tileset.check()
    return tileset


def identity_normalisers(tiles: TileSet) -> dict:
    return fit_source_normalisers(tiles, [], list(tiles.source_channels), method="none")


def coded_tiles(folder: Path, height: int = 40, width: int = 50) -> RecordingTileSet:
    """Image channel 0 = row * 1000 + col (so a crop says where it came from), a 'dsm' of 10 x the
    labels, labels = (row + col) % 3 with an IGNORE corner."""
    rows, cols = np.indices((height, width))
    labels = (rows + col_shift(cols)) % 3
    labels[:3, :3] = IGNORE
    image = np.stack([rows * 1000.0 + cols, labels.astype(float), np.ones((height, width))], axis=-1)
    return make_tileset(folder, {"image": image, "dsm": 10.0 * labels}, labels)


def col_shift(cols: np.ndarray) -> np.ndarray:
    return cols // 2


def decode(image: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    code = image[0].numpy().round().astype(np.int64)
    return code // 1000, code % 1000


def test_crops_come_from_the_tile_inside_the_region_with_its_labels(tmp_path):
    tiles = coded_tiles(tmp_path)
    crops = RandomCrops(tiles, [Region("a", (5, 35, 10, 45))], ["image", "dsm"], 16, identity_normalisers(tiles))
    batch = crops.make(torch.arange(20), generator=torch.Generator().manual_seed(0), augment=False)
    assert [tuple(x.shape) for x in batch.inputs] == [(20, 3, 16, 16), (20, 1, 16, 16)]
    assert batch.target.shape == (20, 16, 16) and batch.target.dtype == torch.int64
    for i in range(20):
        rows, cols = decode(batch.inputs[0][i])
        assert rows.min() >= 5 and rows.max() < 35 and cols.min() >= 10 and cols.max() < 45
        assert rows[0, 0] == batch.rows[i] and cols[0, 0] == batch.cols[i]
        truth = tiles.read_labels("a")[rows, cols]
        np.testing.assert_array_equal(batch.target[i].numpy(), truth)
        np.testing.assert_array_equal(batch.inputs[1][i, 0].numpy(), 10.0 * truth)


def test_a_region_narrower_than_the_crop_reads_nothing_outside_it(tmp_path):
    tiles = coded_tiles(tmp_path)
    crops = RandomCrops(tiles, [Region("a", (10, 20, 4, 44))], ["image"], 16, identity_normalisers(tiles))
    batch = crops.make(torch.arange(30), generator=torch.Generator().manual_seed(1))
    for i in range(30):
        row0, col0 = int(batch.rows[i]), int(batch.cols[i])
        inside = np.zeros((16, 16), bool)
        rows, cols = np.indices((16, 16)) + np.array([row0, col0])[:, None, None]
        inside[(rows >= 10) & (rows < 20) & (cols >= 4) & (cols < 44)] = True
        assert inside[:, :].any(axis=1).sum() == 10  # the crop covers the region's 10 rows
        assert (batch.target[i].numpy()[~inside] == IGNORE).all()
        assert (batch.inputs[0][i, 2].numpy()[~inside] == 0).all()  # the constant channel: 1 inside, 0 outside
        assert (batch.inputs[0][i, 2].numpy()[inside] == 1).all()


def test_a_tile_smaller_than_the_crop_is_padded_with_ignored_labels(tmp_path):
    tiles = coded_tiles(tmp_path, 12, 9)
    crops = RandomCrops(tiles, [Region("a")], ["image"], 16, identity_normalisers(tiles))
    batch = crops.make(torch.arange(4), generator=torch.Generator().manual_seed(2))
    assert batch.target.shape == (4, 16, 16)
    assert ((batch.target != IGNORE).sum(dim=(1, 2)) == (12 * 9 - 9)).all()  # every labelled pixel, every time


def test_masked_regions_label_only_mask_pixels_and_every_crop_holds_some(tmp_path):
    tiles = coded_tiles(tmp_path)
    mask = np.zeros((40, 50), bool)
    mask[30:33, 40:42] = True
    mask[5, 5] = True
    np.save(tmp_path / "mask.npy", mask)  # a region mask of the tile
    crops = RandomCrops(tiles, [Region("a", None, str(tmp_path / "mask.npy"))], ["image"], 8,
                        identity_normalisers(tiles))
    assert len(crops) == 1  # 7 labelled pixels: one 8x8 crop's worth
    batch = crops.make(torch.arange(40), generator=torch.Generator().manual_seed(3))
    for i in range(40):
        rows, cols = decode(batch.inputs[0][i])
        labelled = batch.target[i].numpy() != IGNORE
        assert labelled.any()
        assert mask[rows[labelled], cols[labelled]].all()


def test_regions_are_chosen_in_proportion_to_their_area_and_positions_are_uniform(tmp_path):
    tiles = coded_tiles(tmp_path, 40, 40)
    small, big = Region("a", (0, 10, 0, 40)), Region("a", (10, 40, 0, 40))  # areas 400 and 1200
    crops = RandomCrops(tiles, [small, big], ["image"], 4, identity_normalisers(tiles))
    assert len(crops) == 25 + 75
    batch = crops.make(torch.arange(4000), generator=torch.Generator().manual_seed(4), augment=False)
    in_small = (batch.rows < 10).float().mean().item()
    assert abs(in_small - 0.25) < 0.03
    small_rows = batch.rows[batch.rows < 10]
    assert Counter(small_rows.tolist()).keys() == set(range(7))  # every start 0..10-4 is drawn
    assert (batch.rows[batch.rows >= 10] <= 36).all()
    assert abs(batch.cols.float().mean().item() - 18.0) < 0.6  # uniform over 0..36


def test_one_flip_or_rotation_moves_every_source_and_the_labels_together(tmp_path):
    tiles = coded_tiles(tmp_path)
    crops = RandomCrops(tiles, [Region("a")], ["image", "dsm"], 12, identity_normalisers(tiles))
    plain = crops.make(torch.arange(64), generator=torch.Generator().manual_seed(5), augment=False)
    turned = crops.make(torch.arange(64), generator=torch.Generator().manual_seed(5), augment=True)
    torch.testing.assert_close(turned.rows, plain.rows)
    changed = 0
    for i in range(64):
        label_channel = turned.inputs[0][i, 1].numpy()
        target = turned.target[i].numpy()
        known = target != IGNORE
        np.testing.assert_array_equal(label_channel[known], target[known])
        np.testing.assert_array_equal(turned.inputs[1][i, 0].numpy()[known], 10.0 * target[known])
        changed += not torch.equal(turned.inputs[0][i], plain.inputs[0][i])
        # the turned crop is one of the 8 dihedral images of the plain one
        views = [torch.rot90(v, k, (-2, -1)) for v in (plain.inputs[0][i], plain.inputs[0][i].flip(-1)) for k in range(4)]
        assert any(torch.equal(turned.inputs[0][i], v) for v in views)
    assert changed > 40  # 7 of 8 codes change a crop


def test_crops_are_deterministic_under_the_generator_and_validation_crops_are_fixed(tmp_path):
    tiles = coded_tiles(tmp_path)
    crops = RandomCrops(tiles, [Region("a")], ["image"], 8, identity_normalisers(tiles), seed=7)
    first = crops.make(torch.arange(10), generator=torch.Generator().manual_seed(11), augment=True)
    again = crops.make(torch.arange(10), generator=torch.Generator().manual_seed(11), augment=True)
    other = crops.make(torch.arange(10), generator=torch.Generator().manual_seed(12), augment=True)
    torch.testing.assert_close(first.inputs[0], again.inputs[0])
    torch.testing.assert_close(first.target, again.target)
    assert not torch.equal(first.rows, other.rows) or not torch.equal(first.cols, other.cols)
    fixed = crops.make(torch.tensor([3, 1, 4]))
    again = crops.make(torch.tensor([4, 3]))
    torch.testing.assert_close(fixed.inputs[0][[2, 0]], again.inputs[0])


def test_an_epoch_of_a_sample_count_draws_that_many_crops(tmp_path):
    tiles = coded_tiles(tmp_path)
    crops = RandomCrops(tiles, [Region("a")], ["image"], 8, identity_normalisers(tiles))
    sizes = [len(b.target) for b in batches(crops, 7, torch.Generator().manual_seed(0), augment=True,
                                            shuffle=True, n_samples=30)]
    assert sizes == [7, 7, 7, 7, 2]


def test_normalisers_are_fitted_on_training_regions_only_and_streamed_exactly(monkeypatch, tmp_path):
    rng = np.random.default_rng(6)
    image = rng.normal(5.0, 2.0, (60, 40, 3))
    image[:, 30:] += 1000.0  # the test part: very different values that must not leak
    dsm = rng.normal(-3.0, 0.5, (60, 40))
    mask = np.zeros((60, 40), bool)
    mask[40:, :20] = True
    np.save(tmp_path / "m.npy", mask)
    tiles = make_tileset(tmp_path / "tiles", {"image": image, "dsm": dsm}, np.zeros((60, 40), np.int64))
    train = [Region("a", (0, 30, 0, 30)), Region("a", None, str(tmp_path / "m.npy"))]
    monkeypatch.setattr(tile_sampling, "STATISTICS_CHUNK_PIXELS", 100)  # many small bands
    normalisers = fit_source_normalisers(tiles, train, ["image", "dsm"])
    pixels = np.concatenate([image[:30, :30].reshape(-1, 3), image[mask]])
    np.testing.assert_allclose(normalisers["image"].shift, pixels.mean(0), rtol=1e-5)
    np.testing.assert_allclose(1 / normalisers["image"].scale, pixels.std(0), rtol=1e-5)
    heights = np.concatenate([dsm[:30, :30].ravel(), dsm[mask]])
    np.testing.assert_allclose(normalisers["dsm"].shift, [heights.mean()], rtol=1e-5)
    assert all(window is not None and (window[1] - window[0]) * (window[3] - window[2]) <= 100
               for _, _, window in tiles.requests)


def test_the_reader_caches_small_tiles_and_reads_big_ones_by_windows(tmp_path):
    tiles = coded_tiles(tmp_path)
    normalisers = fit_source_normalisers(tiles, [Region("a")], ["image"])
    cached = TileReader(tiles, ["image"], normalisers)
    on_disk = TileReader(tiles, ["image"], normalisers, cache_bytes=0)
    window = (3, 17, 8, 30)
    np.testing.assert_allclose(cached.read("a", window)[0], on_disk.read("a", window)[0], rtol=1e-6)
    np.testing.assert_array_equal(cached.labels("a", window), on_disk.labels("a", window))
    tiles.requests.clear()
    on_disk.read("a", window)
    cached.read("a", (0, 5, 0, 5))
    assert tiles.requests == [("a", "image", window)]
    reader = on_disk.window_reader("a", (10, 30, 20, 50))
    np.testing.assert_array_equal(reader(0, 2, 0, 3)[0], on_disk.read("a", (10, 12, 20, 23))[0])


def test_held_out_rows_make_spatially_disjoint_validation_regions(tmp_path):
    tiles = coded_tiles(tmp_path)
    train, validation = hold_out_rows(tiles, [Region("a"), Region("a", (0, 1, 0, 10))], 0.25)
    assert train == [Region("a", (0, 30, 0, 50)), Region("a", (0, 1, 0, 10))]
    assert validation == [Region("a", (30, 40, 0, 50))]


def test_bad_regions_are_refused_in_one_line(tmp_path):
    tiles = coded_tiles(tmp_path)
    np.save(tmp_path / "small.npy", np.ones((4, 4), bool))
    for region in (Region("b"), Region("a", (0, 41, 0, 10)), Region("a", None, str(tmp_path / "small.npy")),
                   Region("a", None, str(tmp_path / "missing.npy"))):
        with pytest.raises(UserError) as error:
            resolve_region(tiles, region)
        assert "\n" not in str(error.value)
    with pytest.raises(UserError):
        RandomCrops(tiles, [], ["image"], 8, identity_normalisers(tiles))


class PointwiseFusion(torch.nn.Module):
    """A per-pixel classifier of the stacked sources (enough for colour-coded classes)."""

    def __init__(self, channels: int, n_classes: int):
        super().__init__()
        self.net = torch.nn.Sequential(torch.nn.Conv2d(channels, 16, 1), torch.nn.ReLU(),
                                       torch.nn.Conv2d(16, n_classes, 1))

    def forward(self, *sources):
        return self.net(torch.cat(sources, 1))


def test_crops_train_a_net_through_the_trainer_and_the_sliding_window_maps_the_test_tile(tmp_path):
    from deephyperx.monitor import Monitor
    from deephyperx.sliding_window import predict_tile
    from deephyperx.steps import get_step
    from deephyperx.training import Trainer, TrainingData

    rng = np.random.default_rng(8)
    labels = np.kron(rng.integers(0, 3, (8, 8)), np.ones((6, 6), int))
    colours = np.array([[0.2, 0.5, 0.1], [0.6, 0.6, 0.6], [0.9, 0.2, 0.2]])
    image = colours[labels] * 255 + rng.normal(0, 8, labels.shape + (3,))
    dsm = 5.0 * (labels == 1) + rng.normal(0, 0.3, labels.shape)
    tiles = make_tileset(tmp_path, {"image": image, "dsm": dsm}, labels)
    train, test = Region("a", (0, 32, 0, 48)), Region("a", (32, 48, 0, 48))
    normalisers = fit_source_normalisers(tiles, [train], ["image", "dsm"])
    reader = TileReader(tiles, ["image", "dsm"], normalisers)
    crops = RandomCrops(tiles, [train], ["image", "dsm"], 16, normalisers, reader=reader)
    torch.manual_seed(0)
    config = {"seed": 0, "epoch": 8, "batch_size": 8, "epoch_samples": 32, "optimizer": "adam", "lr": 0.05,
              "scheduler": None}
    trainer = Trainer(PointwiseFusion(4, 3), get_step("supervised"), TrainingData(crops, None, 3), config, Monitor(),
                      torch.device("cpu"))
    trainer.fit()
    predicted = predict_tile(trainer.model, reader.window_reader("a", test.window), (16, 48), 3, 16, 8, 4,
                             torch.device("cpu"))
    truth = tiles.read_labels("a", test.window)
    known = truth != IGNORE
    assert (predicted[known] == truth[known]).mean() > 0.95


def test_class_counts_for_balancing_cover_the_regions_and_their_masks(tmp_path):
    tiles = coded_tiles(tmp_path)
    mask = np.zeros((40, 50), bool)
    mask[20:, 25:] = True
    np.save(tmp_path / "mask.npy", mask)
    crops = RandomCrops(tiles, [Region("a", (0, 10, 0, 50)), Region("a", None, str(tmp_path / "mask.npy"))],
                        ["image"], 8, identity_normalisers(tiles))
    labels = tiles.read_labels("a")
    expected = np.bincount(np.concatenate([labels[:10].ravel(), labels[mask]]) + 1, minlength=4)[1:]
    np.testing.assert_array_equal(crops.labelled_counts(3), expected)


def rare_class_tiles(folder: Path) -> RecordingTileSet:
    """A 60x60 tile of class 0 with two 2x2 patches of class 2 (the rare class) and one of class 1."""
    rows, cols = np.indices((60, 60))
    labels = np.zeros((60, 60), np.int64)
    labels[10:12, 10:12] = 2
    labels[50:52, 40:42] = 2
    labels[30:32, 30:32] = 1
    image = np.stack([rows * 1000.0 + cols, np.ones((60, 60))], axis=-1)
    return make_tileset(folder, {"image": image}, labels)


def test_focused_crops_hold_the_rare_class_in_the_asked_share(tmp_path):
    tiles = rare_class_tiles(tmp_path)
    crops = RandomCrops(tiles, [Region("a")], ["image"], 8, identity_normalisers(tiles), focus=(2, 0.5))
    batch = crops.make(torch.arange(2000), generator=torch.Generator().manual_seed(5), augment=False)
    holds_rare = (batch.target == 2).flatten(1).any(1).float()
    # half the crops are centred on a rare pixel; an unfocused 8x8 crop holds one with p about 0.05
    assert 0.5 <= holds_rare.mean().item() <= 0.6
    rare_rows = batch.rows[(batch.target == 2).flatten(1).any(1)]
    near_first = (rare_rows < 30).float().mean().item()
    assert abs(near_first - 0.5) < 0.06  # both patches (4 pixels each) are drawn equally
    unfocused = RandomCrops(tiles, [Region("a")], ["image"], 8, identity_normalisers(tiles))
    plain = unfocused.make(torch.arange(2000), generator=torch.Generator().manual_seed(5), augment=False)
    assert (plain.target == 2).flatten(1).any(1).float().mean().item() < 0.1


def test_every_crop_holds_the_focus_class_at_fraction_one_and_only_inside_the_region(tmp_path):
    tiles = rare_class_tiles(tmp_path)
    region = Region("a", (0, 40, 0, 60))  # holds the first rare patch only
    crops = RandomCrops(tiles, [region], ["image"], 8, identity_normalisers(tiles), focus=(2, 1.0))
    batch = crops.make(torch.arange(300), generator=torch.Generator().manual_seed(6))
    assert (batch.target == 2).flatten(1).any(1).all()
    assert (batch.rows <= 11).all() and (batch.rows >= 3).all()  # crops of 8 holding rows 10-11
    again = crops.make(torch.arange(300), generator=torch.Generator().manual_seed(6))
    assert torch.equal(batch.rows, again.rows) and torch.equal(batch.cols, again.cols)


def test_focus_on_a_class_absent_from_training_or_a_bad_share_is_refused(tmp_path):
    tiles = rare_class_tiles(tmp_path)
    with pytest.raises(UserError, match="--focus_class z: no training pixel"):
        RandomCrops(tiles, [Region("a", (0, 5, 0, 60))], ["image"], 8, identity_normalisers(tiles), focus=(2, 0.5))
    with pytest.raises(UserError, match=r"--focus_fraction 1.5 must be in \(0, 1\]"):
        RandomCrops(tiles, [Region("a")], ["image"], 8, identity_normalisers(tiles), focus=(2, 1.5))
