"""Segment-before-detect: connected components, CSV/GeoJSON output, object-level matching."""
from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from deephyperx.errors import UserError
from deephyperx.objects import (
    DetectedObject, detect, detect_command, extract_objects, geotiff_transform, match_objects, match_pairs,
    objects_from_labels, read_label_map, write_objects_csv, write_objects_geojson,
)
from deephyperx.scene import IGNORE

from conftest import SHARED_DATA

CAR, ROAD = 4, 0
AERIAL = SHARED_DATA / "aerial"


def drawn_map() -> np.ndarray:
    """A 10x12 road (class 0) with cars (class 4) drawn at known places, and an ignored row.

    * a 2x3 car at rows 1-2, cols 1-3;
    * two single pixels (6, 1) and (7, 2) touching only by a corner;
    * an L of 5 pixels: rows 5-7 at col 8, plus (7, 9) and (7, 10).
    """
    labels = np.full((10, 12), ROAD, dtype=np.int64)
    labels[1:3, 1:4] = CAR
    labels[6, 1] = CAR
    labels[7, 2] = CAR
    labels[5:8, 8] = CAR
    labels[7, 9:11] = CAR
    labels[9] = IGNORE
    return labels


def test_eight_connectivity_joins_diagonal_neighbours() -> None:
    objects = extract_objects(drawn_map(), CAR, connectivity=8)
    assert [(o.id, o.bbox, o.pixels) for o in objects] == [
        (1, (1, 1, 3, 4), 6), (2, (5, 8, 8, 11), 5), (3, (6, 1, 8, 3), 2)]
    assert objects[0].centroid == (1.5, 2.0)
    assert objects[1].centroid == pytest.approx(((5 + 6 + 7 + 7 + 7) / 5, (8 + 8 + 8 + 9 + 10) / 5))
    assert objects[2].centroid == (6.5, 1.5)
    assert all(o.class_id == CAR and o.score is None for o in objects)
    assert objects[1].mask.tolist() == [[True, False, False], [True, False, False], [True, True, True]]


def test_four_connectivity_splits_diagonal_neighbours() -> None:
    objects = extract_objects(drawn_map(), CAR, connectivity=4)
    assert [(o.bbox, o.pixels) for o in objects] == [
        ((1, 1, 3, 4), 6), ((5, 8, 8, 11), 5), ((6, 1, 7, 2), 1), ((7, 2, 8, 3), 1)]
    assert [o.id for o in objects] == [1, 2, 3, 4]


def test_min_pixels_drops_small_components_and_renumbers() -> None:
    objects = extract_objects(drawn_map(), CAR, min_pixels=3, connectivity=4)
    assert [(o.id, o.pixels) for o in objects] == [(1, 6), (2, 5)]
    assert extract_objects(drawn_map(), 3) == []  # a class that is absent


def test_scores_are_the_mean_class_probability_in_any_layout() -> None:
    labels = drawn_map()
    probability = np.zeros(labels.shape, dtype=np.float32)
    probability[1:3, 1:4] = [[0.9, 0.8, 0.7], [0.6, 0.5, 0.4]]
    probability[5:8, 8:11] = 0.2
    expected = [pytest.approx(0.65), pytest.approx(0.2), pytest.approx(0.0)]
    assert [o.score for o in extract_objects(labels, CAR, probability)] == expected
    stacked = np.stack([1 - probability] * 4 + [probability])  # (K, H, W)
    assert [o.score for o in extract_objects(labels, CAR, stacked)] == expected
    assert [o.score for o in extract_objects(labels, CAR, np.moveaxis(stacked, 0, -1))] == expected


def test_opening_separates_cars_joined_by_a_thin_bridge() -> None:
    labels = np.zeros((12, 20), dtype=np.int64)
    labels[3:8, 2:8] = CAR
    labels[3:8, 11:17] = CAR
    labels[5, 8:11] = CAR  # a one-pixel bridge
    assert len(extract_objects(labels, CAR)) == 1
    parts = extract_objects(labels, CAR, opening=1)
    # the bridge's end pixels stay (a cross centred on the car's edge covers them); its middle goes
    assert [o.bbox for o in parts] == [(3, 2, 8, 9), (3, 10, 8, 17)]
    assert [o.pixels for o in parts] == [27, 27]  # 30 - 4 rounded corners + 1 bridge end


@pytest.mark.parametrize("call, message", [
    (lambda m: extract_objects(m, CAR, connectivity=6), "connectivity 6"),
    (lambda m: extract_objects(m, CAR, min_pixels=0), "min_pixels 0"),
    (lambda m: extract_objects(m, CAR, np.zeros((3, 3))), "score map has shape (3, 3)"),
    (lambda m: extract_objects(m.astype(float), CAR), "integer class ids"),
    (lambda m: extract_objects(m[None], CAR), "2-D"),
])
def test_bad_input_is_one_clear_line(call, message) -> None:
    with pytest.raises(UserError, match=message.replace("(", r"\(").replace(")", r"\)")) as error:
        call(drawn_map())
    assert "\n" not in str(error.value)


def test_csv_round_trip(tmp_path: Path) -> None:
    labels = drawn_map()
    probability = (labels == CAR) * 0.75
    objects = extract_objects(labels, CAR, probability)
    path = write_objects_csv(tmp_path / "out" / "cars.csv", objects, class_names=["road", "", "", "", "car"])
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 3
    first = rows[0]
    assert (first["id"], first["class"], first["class_id"], first["pixels"]) == ("1", "car", "4", "6")
    assert tuple(int(first[k]) for k in ("row0", "col0", "row1", "col1")) == (1, 1, 3, 4)
    assert float(first["centroid_row"]) == 1.5 and float(first["centroid_col"]) == 2.0
    assert float(first["score"]) == pytest.approx(0.75)
    assert "centroid_x" not in first
    assert not list(tmp_path.joinpath("out").glob(".*"))  # no temporary file left behind


def test_csv_with_map_coordinates_and_unscored_objects(tmp_path: Path) -> None:
    transform = (0.5, 0.0, 1000.0, 0.0, -0.5, 2000.0)
    path = write_objects_csv(tmp_path / "cars.csv", objects_from_labels(drawn_map(), CAR), transform)
    with open(path, newline="") as handle:
        first = next(csv.DictReader(handle))
    assert first["class"] == "4" and first["score"] == ""
    # centroid (row 1.5, col 2.0) -> pixel-centre corner coordinates (2.5, 2.0)
    assert (float(first["centroid_x"]), float(first["centroid_y"])) == (1001.25, 1999.0)


def test_geojson_in_pixel_coordinates(tmp_path: Path) -> None:
    objects = extract_objects(drawn_map(), CAR, (drawn_map() == CAR) * 0.5)
    path = write_objects_geojson(tmp_path / "cars.geojson", objects, class_names=["road", "b", "c", "d", "car"])
    collection = json.loads(path.read_text())
    assert collection["type"] == "FeatureCollection" and "crs" not in collection
    assert len(collection["features"]) == 3
    feature = collection["features"][0]
    assert feature["properties"] == {"id": 1, "class": "car", "class_id": 4, "pixels": 6, "score": 0.5,
                                     "centroid": [2.5, 2.0]}
    ring = feature["geometry"]["coordinates"][0]
    assert feature["geometry"]["type"] == "Polygon" and ring[0] == ring[-1] and len(ring) == 5
    assert sorted(map(tuple, ring[:4])) == [(1, 1), (1, 3), (4, 1), (4, 3)]  # (col, row) box corners
    assert _signed_area(ring) > 0  # counterclockwise


def test_geojson_in_map_coordinates(tmp_path: Path) -> None:
    transform = (0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0)
    objects = objects_from_labels(drawn_map(), CAR)
    path = write_objects_geojson(tmp_path / "cars.geojson", objects, transform, crs="EPSG:32616")
    collection = json.loads(path.read_text())
    assert collection["crs"]["properties"]["name"] == "urn:ogc:def:crs:EPSG::32616"
    feature = collection["features"][0]
    assert feature["properties"]["class"] == 4 and feature["properties"]["score"] is None
    ring = feature["geometry"]["coordinates"][0]
    xs, ys = [p[0] for p in ring], [p[1] for p in ring]
    assert (min(xs), max(xs)) == (733601.5, 733603.0)  # cols 1..4
    assert (min(ys), max(ys)) == (3725137.5, 3725138.5)  # rows 1..3, y decreasing downwards
    assert _signed_area(ring) > 0


def _signed_area(ring: list) -> float:
    return 0.5 * sum(x0 * y1 - x1 * y0 for (x0, y0), (x1, y1) in zip(ring[:-1], ring[1:]))


def test_geotiff_transform_from_tags(tmp_path: Path) -> None:
    import tifffile

    path = tmp_path / "grid.tif"
    geokeys = (1, 1, 0, 2, 1024, 0, 1, 1, 3072, 0, 1, 32633)
    tifffile.imwrite(path, np.zeros((4, 5), np.uint8), extratags=[
        (33550, "d", 3, (10.0, 10.0, 0.0)), (33922, "d", 6, (0.0, 0.0, 0.0, 465180.0, 5080260.0, 0.0)),
        (34735, "H", len(geokeys), geokeys)])
    assert geotiff_transform(path) == ((10.0, 0.0, 465180.0, 0.0, -10.0, 5080260.0), "EPSG:32633")
    with pytest.raises(UserError, match="no such file"):
        geotiff_transform(tmp_path / "missing.tif")


def test_geotiff_transform_of_the_real_spacenet_tile() -> None:
    path = AERIAL / "spacenet4_atlanta_solaris" / "sample_geotiff.tif"
    if not path.is_file():
        pytest.skip(f"real aerial samples not found under {AERIAL} (set DEEPHYPERX_SHARED_DATA)")
    assert geotiff_transform(path) == ((0.5, 0.0, 733601.0, 0.0, -0.5, 3725139.0), "EPSG:32616")


# --- matching -------------------------------------------------------------------------------


def box(id_: int, row0: int, col0: int, row1: int, col1: int, score: float | None = None) -> DetectedObject:
    """A full rectangular object."""
    shape = (row1 - row0, col1 - col0)
    return DetectedObject(id_, CAR, (row0, col0, row1, col1), shape[0] * shape[1],
                          ((row0 + row1 - 1) / 2, (col0 + col1 - 1) / 2), score, np.ones(shape, bool))


TRUTH = [box(1, 0, 0, 4, 10), box(2, 10, 0, 14, 10), box(3, 20, 20, 24, 30)]


def test_perfect_detection() -> None:
    predicted = [box(7, 0, 0, 4, 10, 0.9), box(8, 10, 0, 14, 10, 0.8), box(9, 20, 20, 24, 30, 0.7)]
    assert match_objects(predicted, TRUTH) == {"precision": 1.0, "recall": 1.0, "f1": 1.0, "tp": 3, "fp": 0,
                                               "fn": 0, "predicted": 3, "truth": 3}
    assert match_pairs(predicted, TRUTH) == [(7, 1, 1.0), (8, 2, 1.0), (9, 3, 1.0)]


def test_one_missed_object() -> None:
    predicted = [box(1, 0, 0, 4, 10, 0.9), box(2, 10, 1, 14, 10, 0.8)]  # second one 36/40 of its truth
    scores = match_objects(predicted, TRUTH)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (2, 0, 1)
    assert scores["precision"] == 1.0 and scores["recall"] == pytest.approx(2 / 3)
    assert scores["f1"] == pytest.approx(0.8)


def test_one_false_alarm() -> None:
    predicted = [box(1, 0, 0, 4, 10), box(2, 10, 0, 14, 10), box(3, 20, 20, 24, 30), box(4, 40, 40, 44, 50)]
    scores = match_objects(predicted, TRUTH)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (3, 1, 0)
    assert scores["precision"] == 0.75 and scores["recall"] == 1.0


def test_a_split_object_counts_once() -> None:
    """A 4x12 vehicle predicted as two pieces (4x7 and 4x4, a gap between): the larger piece
    (IoU 28/48) matches, the smaller (16/48) is a false alarm."""
    truth = [box(1, 0, 0, 4, 12)]
    predicted = [box(1, 0, 0, 4, 7, 0.6), box(2, 0, 8, 4, 12, 0.9)]
    assert match_pairs(predicted, truth) == [(1, 1, pytest.approx(28 / 48))]
    scores = match_objects(predicted, truth)
    assert (scores["tp"], scores["fp"], scores["fn"]) == (1, 1, 0)
    assert scores["precision"] == 0.5 and scores["recall"] == 1.0


def test_greedy_matching_serves_the_highest_score_first() -> None:
    truth = [box(1, 0, 0, 10, 10)]
    worse, better = box(1, 0, 0, 10, 10, 0.3), box(2, 0, 0, 10, 9, 0.8)
    assert match_pairs([worse, better], truth) == [(2, 1, pytest.approx(0.9))]
    assert match_pairs([worse, better], truth, iou_threshold=0.95) == [(1, 1, 1.0)]


def test_pixel_overlap_differs_from_box_overlap() -> None:
    """Two diagonal lines have the same box but share no pixel."""
    labels = np.zeros((6, 6), dtype=np.int64)
    np.fill_diagonal(labels, CAR)
    other = np.fliplr(labels).copy()
    predicted, truth = extract_objects(labels, CAR), extract_objects(other, CAR)
    assert match_objects(predicted, truth, overlap="box")["tp"] == 1
    assert match_objects(predicted, truth, overlap="pixel")["tp"] == 0
    assert match_objects(predicted, predicted, overlap="pixel")["tp"] == 1
    with pytest.raises(UserError, match="use 'box' or 'pixel'"):
        match_objects(predicted, truth, overlap="centre")


def test_empty_sets() -> None:
    assert match_objects([], [])["f1"] == 1.0
    assert match_objects([], TRUTH) == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "tp": 0, "fp": 0, "fn": 3,
                                        "predicted": 0, "truth": 3}
    assert match_objects(TRUTH, [])["fp"] == 3
    with pytest.raises(UserError, match="IoU threshold 0"):
        match_objects(TRUTH, TRUTH, iou_threshold=0)


# --- one call and the command line -------------------------------------------------------------


def test_detect_writes_objects_and_scores(tmp_path: Path) -> None:
    truth = drawn_map()
    prediction = truth.copy()
    prediction[6:8, 1:3] = ROAD  # the diagonal pair is missed
    prediction[0, 10:12] = CAR  # a false alarm
    result = detect(prediction, CAR, tmp_path, truth=truth, min_pixels=1)
    assert (result["tp"], result["fp"], result["fn"], result["objects"]) == (2, 1, 1, 3)
    assert json.loads((tmp_path / "objects_scores.json").read_text())["tp"] == 2
    assert len(json.loads((tmp_path / "objects.geojson").read_text())["features"]) == 3
    assert (tmp_path / "objects.csv").read_text().count("\n") == 4


def test_detect_command_on_files(tmp_path: Path, capsys) -> None:
    from PIL import Image

    truth = drawn_map() + 1  # ISPRS-style values: 0 = boundary, classes from 1
    truth[truth < 0] = 0
    Image.fromarray(truth.astype(np.uint8)).save(tmp_path / "truth.png")
    np.save(tmp_path / "prediction.npy", np.where(drawn_map() < 0, ROAD, drawn_map()))
    status = detect_command(["--prediction", str(tmp_path / "prediction.npy"), "--class", "car",
                             "--truth", str(tmp_path / "truth.png"), "--truth-offset", "1",
                             "--out", str(tmp_path / "out")])
    assert status == 0
    assert "tp=3 fp=0 fn=0" in capsys.readouterr().out
    rows = (tmp_path / "out" / "objects.csv").read_text().splitlines()
    assert len(rows) == 4 and ",car," in rows[1]
    with pytest.raises(UserError, match="unknown class 'lorry'"):
        detect_command(["--prediction", str(tmp_path / "prediction.npy"), "--class", "lorry", "--out", "x"])
    with pytest.raises(UserError, match="required"):
        detect_command(["--class", "car"])


def test_read_label_map_rejects_colour_images(tmp_path: Path) -> None:
    from PIL import Image

    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(tmp_path / "rgb.png")
    with pytest.raises(UserError, match="one-channel map"):
        read_label_map(tmp_path / "rgb.png")


def test_vehicles_of_the_real_vaihingen_crop() -> None:
    """The eroded ISPRS ground truth keeps touching cars apart: each is one object of car size."""
    path = AERIAL / "isprs_vaihingen_mmseg" / "ann_dir" / "area1_0_0_512_512.png"
    if not path.is_file():
        pytest.skip(f"real aerial samples not found under {AERIAL} (set DEEPHYPERX_SHARED_DATA)")
    labels = read_label_map(path, offset=1)
    cars = objects_from_labels(labels, CAR, min_pixels=50)
    assert 10 <= len(cars) <= 60
    assert sum(o.pixels for o in cars) > 0.9 * np.count_nonzero(labels == CAR)
    assert np.median([o.pixels for o in cars]) > 100  # 9 cm pixels: a car covers hundreds of them
    assert match_objects(cars, cars, overlap="pixel")["f1"] == 1.0


def test_building_boxes_of_the_real_spacenet_mask_land_on_its_footprints(tmp_path: Path) -> None:
    """The 0/255 SpaceNet mask was rasterised from 43 footprint polygons: its components, written
    in map coordinates through the GeoTIFF's transform, must be those 43 footprints."""
    folder = AERIAL / "spacenet4_atlanta_solaris"
    if not (folder / "sample_fp_mask_from_geojson.tif").is_file():
        pytest.skip(f"real aerial samples not found under {AERIAL} (set DEEPHYPERX_SHARED_DATA)")
    mask = read_label_map(folder / "sample_fp_mask_from_geojson.tif")
    transform, crs = geotiff_transform(folder / "sample_geotiff.tif")
    buildings = extract_objects(mask, 255, min_pixels=20)
    path = write_objects_geojson(tmp_path / "buildings.geojson", buildings, transform, crs=crs)
    ours = json.loads(path.read_text())
    reference = json.loads((folder / "geotiff_labels.geojson").read_text())
    assert ours["crs"] == reference["crs"]
    assert len(ours["features"]) == len(reference["features"]) == 43
    for feature in reference["features"]:
        xs, ys = zip(*feature["geometry"]["coordinates"][0])
        centre = ((min(xs) + max(xs)) / 2, (min(ys) + max(ys)) / 2)
        boxes = [f["geometry"]["coordinates"][0] for f in ours["features"]]
        assert any(min(p[0] for p in b) <= centre[0] <= max(p[0] for p in b)
                   and min(p[1] for p in b) <= centre[1] <= max(p[1] for p in b) for b in boxes)
