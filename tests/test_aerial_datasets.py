"""The aerial tile-set catalogue: real samples from shared/data/aerial, the full benchmarks on
small fake tiles written to tmp_path in their expected layout, and custom tile sets."""
from __future__ import annotations

import functools
import http.server
import os
import threading
from pathlib import Path

import numpy as np
import pytest
import tifffile
import yaml
from PIL import Image

import aerial_datasets as A
from deephyperx.download import sha256_of
from deephyperx.errors import DataNotFoundError, UserError
from deephyperx.scene import IGNORE
from deephyperx.tiles import Region, TileSet, encode_colours

SHARED = Path(os.environ.get("DEEPHYPERX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_aerial = pytest.mark.skipif(not (SHARED / "aerial").is_dir(),
                                  reason=f"aerial samples not found in {SHARED / 'aerial'} (set DEEPHYPERX_SHARED_DATA)")
needs_indian_pines = pytest.mark.skipif(not (SHARED / "IndianPines" / "Indian_pines_gt.mat").is_file(),
                                        reason=f"Indian Pines not found in {SHARED} (set DEEPHYPERX_SHARED_DATA)")

# Class pixel counts published in shared/data/aerial/README.md (IGNORE count last).
REAL_SAMPLES = {
    "VaihingenCrop": ({"image": 3}, [(512, 512)], [135362, 79847, 16532, 4908, 4212, 0], 21283),
    "PotsdamCrop": ({"image": 3}, [(512, 512)], [100557, 64023, 34357, 30670, 7841, 0], 24696),
    "LoveDA": ({"image": 3}, [(1024, 1024)] * 3,
               [142441 + 226400 + 8244, 14427 + 3503, 19208 + 2485, 3888 + 244616 + 29109, 0, 43126 + 914057,
                868612 + 528446 + 97166], 0),
    "SpaceNetAtlanta": ({"image": 3}, [(900, 900)], [776182, 33818], 0),
    "Sentinel2Slovenia": ({"image": 13, "dem": 1}, [(101, 100)], [11, 7601, 1777, 358, 198], 155),
}
INDIAN_PINES_COUNTS = [46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265, 386, 93]


def _one_line(info: pytest.ExceptionInfo) -> str:
    message = str(info.value)
    assert "\n" not in message
    return message


def _counts(tileset: TileSet) -> tuple[np.ndarray, int]:
    counts, ignored = np.zeros(tileset.n_classes, np.int64), 0
    for tile in tileset.tiles:
        labels = tileset.read_labels(tile)
        counts += np.bincount(labels[labels != IGNORE], minlength=tileset.n_classes)
        ignored += int((labels == IGNORE).sum())
    return counts, ignored


def _coverage(tileset: TileSet, regions: list[Region]) -> dict[str, np.ndarray]:
    """Per tile, a boolean map of the pixels the regions count."""
    covered = {tile: np.zeros(tileset.tile_shape(tile), bool) for tile in tileset.tiles}
    for region in regions:
        r0, r1, c0, c1 = tileset.region_window(region)
        covered[region.tile][r0:r1, c0:c1] |= tileset.region_mask(region)
    return covered


# --- Real samples -------------------------------------------------------------------------------------


@needs_aerial
@pytest.mark.parametrize("name", list(REAL_SAMPLES))
def test_real_samples_load_with_published_shapes_and_counts(name: str, tmp_path: Path) -> None:
    channels, shapes, counts, ignored = REAL_SAMPLES[name]
    tileset = A.get_tileset(name, SHARED, cache=tmp_path)
    assert tileset.source_channels == channels
    assert [tileset.tile_shape(t) for t in tileset.tiles] == shapes
    assert tileset.n_classes == len(counts) == len(tileset.palette)
    got, got_ignored = _counts(tileset)
    assert got.tolist() == counts and got_ignored == ignored
    for tile in tileset.tiles:
        for source, n in channels.items():
            data = tileset.read_source(tile, source, (0, 16, 0, 16))
            assert data.shape == (16, 16, n) and data.dtype == np.float32 and np.isfinite(data).all()
    train, test = _coverage(tileset, tileset.train), _coverage(tileset, tileset.test)
    assert any(m.any() for m in train.values()) and any(m.any() for m in test.values())
    assert not any((train[t] & test[t]).any() for t in tileset.tiles)


@needs_aerial
def test_crop_splits_keep_every_class_of_the_crop_on_both_sides(tmp_path: Path) -> None:
    for name in ("VaihingenCrop", "PotsdamCrop"):
        tileset = A.get_tileset(name, SHARED)
        present = [np.unique(tileset.region_labels(r)) for r in (tileset.train[0], tileset.test[0])]
        assert set(present[0]) == set(present[1]) == {IGNORE, 0, 1, 2, 3, 4}
        assert tileset.read_labels(tileset.train[0].tile, eroded=True).shape == (512, 512)


@needs_aerial
def test_spacenet_replicates_the_pan_band_and_sentinel2_takes_a_clear_frame(tmp_path: Path) -> None:
    spacenet = A.get_tileset("SpaceNetAtlanta", SHARED)
    pan = tifffile.imread(SHARED / "aerial" / "spacenet4_atlanta_solaris" / "sample_geotiff.tif")
    image = spacenet.read_source("sample_geotiff", "image", (100, 110, 200, 230))
    for channel in range(3):
        np.testing.assert_array_equal(image[..., channel], pan[100:110, 200:230])
    s2 = A.get_tileset("Sentinel2Slovenia", SHARED, cache=tmp_path)
    frames = np.load(SHARED / "aerial" / "sentinel2_eolearn_slovenia" / "REFERENCE_SCENES.npy")
    np.testing.assert_array_equal(s2.read_source("TestEOPatch", "image"), frames[A.S2_FRAME])
    assert s2.read_source("TestEOPatch", "dem").min() > 600
    assert list((tmp_path / "Sentinel2Slovenia").glob("*.npy"))


@needs_aerial
def test_declared_checksums_match_the_shared_files() -> None:
    for name in REAL_SAMPLES:
        decl = A.get_declaration(name)
        for remote, path in zip(decl.files, A.tileset_files(decl, SHARED)):
            assert path.stat().st_size == remote.size and sha256_of(path) == remote.sha256, path


@needs_aerial
def test_download_from_a_mirror_fetches_and_checks_the_files(tmp_path: Path) -> None:
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(SHARED))
    handler.log_message = lambda *args: None  # type: ignore[attr-defined]
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}"
        paths = A.download_tileset("VaihingenCrop", tmp_path, mirror=mirror, progress=False)
    finally:
        server.shutdown()
        server.server_close()
    assert [p.relative_to(tmp_path).as_posix() for p in paths] == [
        "aerial/isprs_vaihingen_mmseg/img_dir/area1_0_0_512_512.png",
        "aerial/isprs_vaihingen_mmseg/ann_dir/area1_0_0_512_512.png"]
    assert A.get_tileset("VaihingenCrop", tmp_path).tile_shape("area1_0_0_512_512") == (512, 512)
    with pytest.raises(UserError, match="cannot be downloaded automatically"):
        A.download_tileset("Vaihingen", tmp_path)


def test_missing_real_samples_name_the_file_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        A.get_tileset("PotsdamCrop", tmp_path)
    message = _one_line(info)
    assert str(tmp_path / "aerial" / "isprs_potsdam_mmseg" / "img_dir" / "2_10_0_0_512_512.png") in message
    assert "(and 1 more)" in message and "download_tileset('PotsdamCrop'" in message


@needs_indian_pines
def test_indian_pines_two_sensors_split_bands_by_wavelength(tmp_path: Path) -> None:
    import datasets

    tileset = A.get_tileset("IndianPinesTwoSensors", SHARED, seed=0, cache=tmp_path)
    scene = datasets.load_scene("IndianPines", SHARED)
    assert tileset.source_channels == {"vnir": 63, "swir": 137}
    assert scene.wavelengths[62] < 1000 <= scene.wavelengths[63]
    stacked = np.concatenate([tileset.read_source("IndianPines", s) for s in ("vnir", "swir")], axis=2)
    np.testing.assert_array_equal(stacked, np.asarray(scene.cube, dtype=np.float32))
    assert _counts(tileset)[0].tolist() == INDIAN_PINES_COUNTS
    train, test = (tileset.region_mask(r) for r in (tileset.train[0], tileset.test[0]))
    assert train.any() and test.any() and not (train & test).any()
    assert (scene.labels[train] != IGNORE).all() and (scene.labels[test] != IGNORE).all()
    near_train = np.zeros_like(train)
    for dr in range(-2, 3):
        for dc in range(-2, 3):
            near_train |= np.roll(np.roll(train, dr, axis=0), dc, axis=1)
    assert not (near_train & test).any()  # the guard band of half a 5-pixel patch


@needs_indian_pines
def test_indian_pines_split_masks_are_deterministic_per_seed(tmp_path: Path) -> None:
    def masks(seed: int, cache: Path) -> np.ndarray:
        tileset = A.get_tileset("IndianPinesTwoSensors", SHARED, seed=seed, cache=cache)
        return tileset.region_mask(tileset.train[0])

    first = masks(0, tmp_path / "a")
    np.testing.assert_array_equal(first, masks(0, tmp_path / "b"))
    np.testing.assert_array_equal(first, masks(0, tmp_path / "a"))  # read back from the cache
    assert not np.array_equal(first, masks(1, tmp_path / "a"))


def test_synthetic_aerial_is_generated_into_the_cache(tmp_path: Path) -> None:
    pytest.importorskip("deephyperx.synthetic_aerial", reason="deephyperx/synthetic_aerial.py is not written yet")
    tileset = A.get_tileset("SyntheticAerial", tmp_path / "no-data", seed=0, cache=tmp_path)
    assert {"image", "dsm"} <= set(tileset.source_channels) and tileset.train and tileset.test
    tile = next(iter(tileset.tiles))
    assert tileset.read_source(tile, "image").shape[:2] == tileset.tile_shape(tile)
    assert str(tmp_path) in tileset.tiles[tile].sources["image"]


def test_unknown_names_list_the_catalogue() -> None:
    with pytest.raises(UserError) as info:
        A.get_tileset("Vaihingan", ".")
    assert "VaihingenCrop" in _one_line(info) and "yaml" in str(info.value)
    assert A.get_declaration("vaihingencrop").name == "VaihingenCrop"
    assert {"Vaihingen", "Potsdam", "InriaAerial", "LoveDA", "IndianPinesTwoSensors",
            "SyntheticAerial"} <= set(A.list_tilesets())


# --- Full benchmarks on fake tiles in their expected layout ---------------------------------------------


def _fake_isprs_tile(base: Path, image: str, labels: str, eroded: str, rng: np.random.Generator,
                     shape: tuple[int, int] = (12, 10)) -> np.ndarray:
    """An RGB image, colour-coded labels and eroded labels (black boundaries) at the given paths."""
    ids = rng.integers(0, 6, size=(shape[0] // 3, shape[1] // 2)).repeat(3, axis=0).repeat(2, axis=1)
    for path, data in ((image, rng.integers(0, 255, (*shape, 3), dtype=np.uint8)),
                       (labels, encode_colours(ids, A.ISPRS_PALETTE)),
                       (eroded, encode_colours(np.where(ids % 2 == 0, ids, IGNORE), A.ISPRS_PALETTE))):
        (base / path).parent.mkdir(parents=True, exist_ok=True)
        tifffile.imwrite(base / path, data, photometric="rgb")
    return ids


def _fake_vaihingen(root: Path, ids=A._VAIHINGEN_LABELLED, dsm: bool = True) -> dict[str, np.ndarray]:
    base, rng, truth = root / "Vaihingen", np.random.default_rng(0), {}
    for tile in ids:
        truth[tile] = _fake_isprs_tile(base, f"top/top_mosaic_09cm_area{tile}.tif",
                                       f"gts_for_participants/top_mosaic_09cm_area{tile}.tif",
                                       f"gts_eroded_for_participants/top_mosaic_09cm_area{tile}_noBoundary.tif", rng)
        if dsm:
            (base / "dsm").mkdir(exist_ok=True)
            tifffile.imwrite(base / "dsm" / f"dsm_09cm_matching_area{tile}.tif", rng.random((12, 10), np.float32))
    return truth


def test_vaihingen_benchmark_reads_the_authors_split(tmp_path: Path) -> None:
    truth = _fake_vaihingen(tmp_path)
    tileset = A.get_tileset("Vaihingen", tmp_path)
    assert [r.tile for r in tileset.train] == ["1", "3", "23", "26", "7", "11", "13", "28", "17", "32", "34", "37"]
    assert [r.tile for r in tileset.test] == ["5", "21", "15", "30"]
    assert tileset.source_channels == {"image": 3, "dsm": 1} and tileset.n_classes == 6
    np.testing.assert_array_equal(tileset.read_labels("21"), truth["21"])
    eroded = tileset.read_labels("21", (3, 9, 2, 8), eroded=True)
    np.testing.assert_array_equal(eroded, np.where(truth["21"] % 2 == 0, truth["21"], IGNORE)[3:9, 2:8])
    assert tileset.read_source("5", "dsm", (0, 2, 0, 2)).shape == (2, 2, 1)


def test_benchmark_without_dsm_folder_has_no_dsm_source_and_erodes_itself(tmp_path: Path) -> None:
    _fake_vaihingen(tmp_path, dsm=False)
    for path in (tmp_path / "Vaihingen" / "gts_eroded_for_participants").iterdir():
        path.unlink()
    tileset = A.get_tileset("Vaihingen", tmp_path)
    assert tileset.sources == ["image"] and tileset.tiles["1"].eroded_labels is None
    full = tileset.read_labels("1")
    from deephyperx.tiles import erode_boundaries

    np.testing.assert_array_equal(tileset.read_labels("1", eroded=True), erode_boundaries(full, 3))


def test_missing_benchmark_folder_and_files_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError) as info:
        A.get_tileset("Vaihingen", tmp_path)
    message = _one_line(info)
    assert f"folder {tmp_path / 'Vaihingen'} not found" in message and "isprs.org" in message
    _fake_vaihingen(tmp_path)
    (tmp_path / "Vaihingen" / "dsm" / "dsm_09cm_matching_area30.tif").unlink()
    with pytest.raises(DataNotFoundError) as info:
        A.get_tileset("Vaihingen", tmp_path)
    assert "dsm_09cm_matching_area30.tif" in _one_line(info)
    tifffile.imwrite(tmp_path / "Vaihingen" / "dsm" / "dsm_09cm_matching_area30.tif", np.zeros((12, 10), np.float32))
    with pytest.raises(DataNotFoundError) as info:  # the 17 official test tiles are absent: image, dsm, labels
        A.get_tileset("VaihingenOfficial", tmp_path)
    assert "top/top_mosaic_09cm_area2.tif (and 50 more files)" in _one_line(info)
    with pytest.raises(DataNotFoundError) as info:
        A.get_tileset("InriaAerial", tmp_path)
    assert "AerialImageDataset" in _one_line(info) and "project.inria.fr" in str(info.value)


def test_benchmark_rasters_of_different_sizes_are_refused(tmp_path: Path) -> None:
    _fake_vaihingen(tmp_path)
    tifffile.imwrite(tmp_path / "Vaihingen" / "dsm" / "dsm_09cm_matching_area7.tif", np.zeros((12, 9), np.float32))
    with pytest.raises(UserError) as info:
        A.get_tileset("Vaihingen", tmp_path)
    message = _one_line(info)
    assert "tile '7'" in message and "12x10" in message and "12x9" in message


def test_potsdam_benchmark_pads_dsm_names_and_accepts_participant_labels(tmp_path: Path) -> None:
    base, rng = tmp_path / "Potsdam", np.random.default_rng(1)
    for tile in A._POTSDAM_LABELLED:
        _fake_isprs_tile(base, f"2_Ortho_RGB/top_potsdam_{tile}_RGB.tif",
                         f"5_Labels_for_participants/top_potsdam_{tile}_label.tif",
                         f"5_Labels_for_participants_no_Boundary/top_potsdam_{tile}_label_noBoundary.tif", rng)
        row, col = (int(v) for v in tile.split("_"))
        (base / "1_DSM").mkdir(exist_ok=True)
        tifffile.imwrite(base / "1_DSM" / f"dsm_potsdam_{row:02d}_{col:02d}.tif", np.zeros((12, 10), np.float32))
    tileset = A.get_tileset("Potsdam", tmp_path)
    assert [r.tile for r in tileset.test] == ["2_11", "7_12", "3_11", "5_12", "7_10"]
    assert len(tileset.train) == 19 and not {r.tile for r in tileset.train} & {r.tile for r in tileset.test}
    assert tileset.tiles["6_7"].sources["dsm"].endswith("1_DSM/dsm_potsdam_06_07.tif")
    assert tileset.source_channels == {"image": 3, "dsm": 1}
    with pytest.raises(DataNotFoundError, match="2_13"):
        A.get_tileset("PotsdamOfficial", tmp_path)


def test_inria_benchmark_validates_on_the_first_five_tiles_of_each_city(tmp_path: Path) -> None:
    base = tmp_path / "AerialImageDataset" / "train"
    (base / "images").mkdir(parents=True)
    (base / "gt").mkdir()
    mask = np.zeros((8, 6), np.uint8)
    mask[2:5, 1:4] = 255
    for city in A._INRIA_CITIES:
        for n in range(1, 37):
            tifffile.imwrite(base / "images" / f"{city}{n}.tif", np.full((8, 6, 3), n, np.uint8), photometric="rgb")
            tifffile.imwrite(base / "gt" / f"{city}{n}.tif", mask)
    tileset = A.get_tileset("InriaAerial", tmp_path)
    assert len(tileset.train) == 155 and len(tileset.test) == 25
    assert {r.tile for r in tileset.test} == {f"{c}{n}" for c in A._INRIA_CITIES for n in range(1, 6)}
    assert int(tileset.read_labels("vienna3").sum()) == 9 and tileset.class_names == ["background", "building"]
    assert tileset.read_source("kitsap36", "image", (0, 1, 0, 1)).item(0) == 36.0


# --- Custom tile sets ---------------------------------------------------------------------------------------


def _custom_files(root: Path, n: int = 3, label_value_offset: int = 1) -> tuple[list[Path], list[Path], list[Path]]:
    rng = np.random.default_rng(2)
    images, labels, dsms = [], [], []
    for i in range(n):
        images.append(root / f"city_{i}.png")
        Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8)).save(images[-1])
        labels.append(root / f"city_{i}_gt.png")
        values = rng.integers(0, 3, (10, 12)).astype(np.uint8) + label_value_offset
        values[0, 0] = 0
        Image.fromarray(values).save(labels[-1])
        dsms.append(root / f"city_{i}_dsm.npy")
        np.save(dsms[-1], rng.random((10, 12), dtype=np.float32))
    return images, labels, dsms


def test_custom_tileset_from_paths(tmp_path: Path) -> None:
    images, labels, dsms = _custom_files(tmp_path)
    tileset = A.custom_tileset(images, labels, {"dsm": dsms}, name="City")
    assert tileset.name == "City" and list(tileset.tiles) == ["city_0", "city_1", "city_2"]
    assert tileset.source_channels == {"image": 3, "dsm": 1}
    assert tileset.class_names == ["class 1", "class 2", "class 3"]
    assert [r.tile for r in tileset.train] == ["city_0", "city_1"] and [r.tile for r in tileset.test] == ["city_2"]
    raw = np.asarray(Image.open(labels[1]))
    np.testing.assert_array_equal(tileset.read_labels("city_1"), np.where(raw == 0, IGNORE, raw.astype(int) - 1))
    np.testing.assert_array_equal(tileset.read_source("city_2", "dsm")[..., 0], np.load(dsms[2]))
    single = A.custom_tileset(images[:1], labels[:1], class_names=["a", "b", "c"], train=None)
    assert single.train == [Region("city_0", (0, 7, 0, 12))] and single.test == [Region("city_0", (7, 10, 0, 12))]
    chosen = A.custom_tileset(images, labels, test=["city_0", {"tile": "city_1", "window": [0, 5, 0, 12]}])
    assert [r.tile for r in chosen.train] == ["city_2"] and chosen.test[1].window == (0, 5, 0, 12)


def test_custom_tileset_errors_are_one_line(tmp_path: Path) -> None:
    images, labels, dsms = _custom_files(tmp_path)
    cases = [
        (lambda: A.custom_tileset(images, labels[:2]), "3 images but 2 label files"),
        (lambda: A.custom_tileset(images, labels, {"dsm": dsms[:1]}), "3 images but 1 'dsm' files"),
        (lambda: A.custom_tileset(images, labels, class_names=["a", "b"]), "2 class names for the label values"),
        (lambda: A.custom_tileset(images, labels, train=["rome"]), "tile 'rome'"),
        (lambda: A.custom_tileset(images, labels, label_values=[1, 2]), r"label values \[3\] are neither"),
        (lambda: A.custom_tileset(images, images), "colour-coded labels need a palette"),
    ]
    for build, pattern in cases:
        with pytest.raises(UserError, match=pattern) as info:
            build().read_labels("city_0")
        _one_line(info)
    np.save(dsms[1], np.zeros((9, 12), np.float32))
    with pytest.raises(UserError, match=r"image is 10x12 .* dsm is 9x12"):
        A.custom_tileset(images, labels, {"dsm": dsms})


def test_custom_tileset_with_colour_labels(tmp_path: Path) -> None:
    ids = np.array([[0, 1, 2, 2], [IGNORE, 1, 0, 0]])
    Image.fromarray(encode_colours(ids, A.ISPRS_PALETTE[:3])).save(tmp_path / "gt.png")
    Image.fromarray(np.zeros((2, 4, 3), np.uint8)).save(tmp_path / "img.png")
    tileset = A.custom_tileset([tmp_path / "img.png"], [tmp_path / "gt.png"], palette=A.ISPRS_PALETTE[:3],
                               class_names=["road", "building", "grass"], train=["img"], test=[])
    np.testing.assert_array_equal(tileset.read_labels("img"), ids)


def test_tileset_from_yaml(tmp_path: Path) -> None:
    (tmp_path / "data").mkdir()
    images, labels, dsms = _custom_files(tmp_path / "data", n=2)
    spec = {
        "name": "YamlCity",
        "images": [f"data/{p.name}" for p in images],
        "labels": [f"data/{p.name}" for p in labels],
        "extras": {"dsm": [f"data/{p.name}" for p in dsms]},
        "class_names": ["low", "mid", "high"],
        "label_values": [1, 2, 3],
        "ignored_labels": [0],
        "train": ["city_1"],
        "test": [{"tile": "city_0", "window": [0, 5, 0, 12]}],
    }
    path = tmp_path / "city.yaml"
    path.write_text(yaml.safe_dump(spec))
    tileset = A.resolve_tileset(str(path), "unused")
    assert tileset.name == "YamlCity" and tileset.class_names == ["low", "mid", "high"]
    assert tileset.source_channels == {"image": 3, "dsm": 1}
    assert tileset.train == [Region("city_1")] and tileset.test == [Region("city_0", (0, 5, 0, 12))]
    assert tileset.region_labels(tileset.test[0]).shape == (5, 12)
    path.write_text(yaml.safe_dump({**spec, "bands": [1]}))
    with pytest.raises(UserError, match=r"unknown entries \['bands'\]"):
        A.load_tileset_file(path)
    path.write_text("images: [a.png\n")
    with pytest.raises(UserError, match="not valid YAML") as info:
        A.load_tileset_file(path)
    _one_line(info)
    with pytest.raises(UserError, match="tile-set file .* does not exist"):
        A.load_tileset_file(tmp_path / "none.yaml")
