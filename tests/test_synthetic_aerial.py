"""The embedded synthetic aerial scene: structure, determinism, files on disk, and that height decides."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from scipy import ndimage
from sklearn.metrics import balanced_accuracy_score
from sklearn.tree import DecisionTreeClassifier

from deephyperx.errors import UserError
from deephyperx.objects import extract_objects
from deephyperx.synthetic_aerial import (
    BUILDING, CAR, CLASS_NAMES, IMPERVIOUS, LOW_VEGETATION, PALETTE, TREE, make_synthetic_aerial, normalised_dsm,
    synthesise_tile, write_synthetic_tiles,
)

SIZE = 128


@pytest.fixture(scope="module")
def tiles() -> list[tuple[np.ndarray, np.ndarray, np.ndarray]]:
    """Four 128x128 tiles drawn as make_synthetic_aerial draws them (seed 0)."""
    return [synthesise_tile(np.random.default_rng([0, i]), SIZE) for i in range(4)]


@pytest.fixture(scope="module")
def tileset(tmp_path_factory):
    return make_synthetic_aerial(tmp_path_factory.mktemp("aerial"), seed=0, size=SIZE, n_tiles=4)


def test_shapes_dtypes_and_every_class_in_every_tile(tiles) -> None:
    for image, dsm, labels in tiles:
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert dsm.shape == (SIZE, SIZE) and dsm.dtype == np.float32 and np.isfinite(dsm).all()
        assert labels.shape == (SIZE, SIZE) and labels.dtype == np.uint8
        counts = np.bincount(labels.ravel(), minlength=len(CLASS_NAMES))
        assert len(counts) == len(CLASS_NAMES) and (counts > 0).all()
        assert 0.1 < counts[BUILDING] / labels.size < 0.35 and counts[CAR] / labels.size < 0.06
        assert image.std() > 20  # a real-looking image, not flat colour


def test_the_default_size_holds_every_class() -> None:
    _, _, labels = synthesise_tile(np.random.default_rng([0, 0]))
    assert labels.shape == (256, 256) and (np.bincount(labels.ravel(), minlength=5) > 0).all()


def test_deterministic_under_the_seed(tiles) -> None:
    again = synthesise_tile(np.random.default_rng([0, 1]), SIZE)
    for first, second in zip(tiles[1], again):
        np.testing.assert_array_equal(first, second)
    assert not np.array_equal(tiles[0][2], tiles[1][2])


def test_cars_lie_on_impervious_surfaces(tiles) -> None:
    """Every car, with the pixel ring around it, sits on road or car park, and has a car's size."""
    for _, _, labels in tiles:
        cars = extract_objects(labels, CAR, connectivity=8)
        assert cars
        car_mask = labels == CAR
        ring = ndimage.binary_dilation(car_mask, structure=np.ones((3, 3), bool)) & ~car_mask
        assert np.all(labels[ring] == IMPERVIOUS)
        for car in cars:
            rows, cols = car.bbox[2] - car.bbox[0], car.bbox[3] - car.bbox[1]
            assert sorted((rows, cols)) in [[w, n] for w in (4, 5) for n in (9, 10, 11)]
            assert car.pixels == rows * cols  # a full rectangle


def test_heights_above_ground_follow_the_classes(tiles) -> None:
    """The DSM carries a terrain trend bigger than the houses; the nDSM removes it."""
    ground = [dsm[(labels == IMPERVIOUS) | (labels == LOW_VEGETATION)] for _, dsm, labels in tiles]
    assert max(g.max() for g in ground) - min(g.min() for g in ground) > 20  # metres
    for _, dsm, labels in tiles:
        height = normalised_dsm(dsm)
        assert np.median(height[labels == IMPERVIOUS]) < 0.3
        assert np.percentile(height[labels == LOW_VEGETATION], 90) < 1.0
        assert np.percentile(height[labels == BUILDING], 5) > 3.0
        assert np.median(height[labels == TREE]) > 4.0
        assert 0.8 < np.median(height[labels == CAR]) < 2.0


def test_roofs_are_coloured_like_roads_so_height_decides(tileset) -> None:
    """A per-pixel decision tree trained on the training tiles and scored on the test tile: on
    colour alone it cannot tell roofs from roads and car parks; with the nDSM it can."""
    def pixels(regions, sources):
        features, targets = [], []
        for region in regions:
            labels = tileset.read_labels(region.tile).ravel()
            keep = (labels == IMPERVIOUS) | (labels == BUILDING)
            stacked = np.concatenate([tileset.read_source(region.tile, s) for s in sources], axis=-1)
            features.append(stacked.reshape(labels.size, -1)[keep])
            targets.append(labels[keep])
        return np.concatenate(features), np.concatenate(targets)

    scores = {}
    for sources in (("image",), ("image", "ndsm")):
        train_x, train_y = pixels(tileset.train, sources)
        test_x, test_y = pixels(tileset.test, sources)
        tree = DecisionTreeClassifier(max_depth=6, min_samples_leaf=20, random_state=0).fit(train_x, train_y)
        scores[sources] = balanced_accuracy_score(test_y, tree.predict(test_x))
    assert scores[("image",)] < 0.75
    assert scores[("image", "ndsm")] > 0.95


def test_colour_distributions_of_roofs_and_roads_overlap(tiles) -> None:
    image = np.concatenate([t[0].reshape(-1, 3) for t in tiles]).astype(float)
    labels = np.concatenate([t[2].ravel() for t in tiles])
    roof, road = image[labels == BUILDING], image[labels == IMPERVIOUS]
    for channel in range(3):
        assert abs(np.median(roof[:, channel]) - np.median(road[:, channel])) < 25
        assert np.percentile(roof[:, channel], 10) < np.median(road[:, channel]) < np.percentile(roof[:, channel], 90)


def test_the_tileset_on_disk(tileset) -> None:
    tileset.check()
    assert tileset.name == "SyntheticAerial"
    assert tileset.class_names == CLASS_NAMES and tileset.palette == PALETTE
    assert tileset.palette[BUILDING] == (0, 0, 255) and tileset.palette[CAR] == (255, 255, 0)
    assert tileset.source_channels == {"image": 3, "dsm": 1, "ndsm": 1}
    assert [r.tile for r in tileset.train] == ["tile0", "tile1", "tile2"]
    assert [(r.tile, r.window) for r in tileset.test] == [("tile3", None)]
    assert tileset.tile_shape("tile3") == (SIZE, SIZE)
    image, dsm = tileset.read_source("tile1", "image"), tileset.read_source("tile1", "dsm", (10, 20, 30, 50))
    assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.float32 and dsm.shape == (10, 20, 1)
    expected_image, expected_dsm, expected_labels = synthesise_tile(np.random.default_rng([0, 1]), SIZE)
    np.testing.assert_array_equal(image, expected_image)
    np.testing.assert_array_equal(dsm[:, :, 0], expected_dsm[10:20, 30:50])
    np.testing.assert_array_equal(tileset.read_labels("tile1"), expected_labels)
    np.testing.assert_allclose(tileset.read_source("tile1", "ndsm")[:, :, 0], normalised_dsm(expected_dsm))
    eroded = tileset.read_labels("tile1", eroded=True)
    assert (eroded == -1).any() and set(np.unique(eroded)) <= {-1, 0, 1, 2, 3, 4}


def test_tiles_are_written_once(tmp_path: Path) -> None:
    paths = write_synthetic_tiles(tmp_path, seed=3, size=96, n_tiles=2)
    stamps = {p: p.stat().st_mtime_ns for files in paths.values() for p in files.values()}
    assert set(paths) == {"tile0", "tile1"} and len(stamps) == 8
    write_synthetic_tiles(tmp_path, seed=3, size=96, n_tiles=2)
    assert {p: p.stat().st_mtime_ns for p in stamps} == stamps  # up to date: nothing rewritten
    paths[("tile1")]["labels"].unlink()
    write_synthetic_tiles(tmp_path, seed=3, size=96, n_tiles=2)
    assert paths["tile1"]["labels"].is_file()
    other = write_synthetic_tiles(tmp_path, seed=4, size=96, n_tiles=2)
    assert other["tile0"]["labels"].stat().st_mtime_ns != stamps[paths["tile0"]["labels"]]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_bad_arguments_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="tile size 64 is too small"):
        synthesise_tile(np.random.default_rng(0), 64)
    with pytest.raises(UserError, match="n_tiles 1 is too few"):
        make_synthetic_aerial(tmp_path, n_tiles=1)
