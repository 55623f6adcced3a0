"""Multi-source tile sets: windowed and memory-mapped reads, label decoding, eroded ground truth,
and the one-line errors of TileSet.check(). Rasters are small seeded arrays written to tmp_path."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from deephyperx.errors import UserError
from deephyperx.scene import IGNORE
from deephyperx.tiles import (ColourDecoder, Region, Tile, TileSet, ValueDecoder, disc, encode_colours,
                              erode_boundaries, open_raster, raster_info)

ISPRS = [(255, 255, 255), (0, 0, 255), (0, 255, 255), (0, 255, 0), (255, 255, 0), (255, 0, 0)]
WINDOWS = [(0, 13, 0, 11), (2, 9, 3, 10), (12, 13, 10, 11), (5, 6, 0, 11)]


def _cube(channels: int, dtype=np.uint8, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    shape = (13, 11) if channels == 0 else (13, 11, channels)
    return rng.integers(0, 250, size=shape).astype(dtype)


def _write(path: Path, array: np.ndarray, **tiff_options) -> str:
    """Write ``array`` in the format of ``path``'s extension; return the path as text."""
    suffix = path.suffix
    if suffix == ".npy":
        np.save(path, array)
    elif suffix == ".tif":
        tifffile.imwrite(path, array, **tiff_options)
    else:
        Image.fromarray(array).save(path)
    return str(path)


def _tileset(tiles: dict[str, Tile], channels: dict[str, int], decoder=None, **options) -> TileSet:
    return TileSet(name="T", tiles=tiles, class_names=["a", "b", "c"], palette=[(1, 1, 1)] * 3,
                   source_channels=channels, train=[Region(t) for t in tiles], test=[],
                   label_decoder=decoder or ValueDecoder([1, 2, 3], ignored=[0]), **options)


# --- Reading windows ------------------------------------------------------------------------------

FORMATS = [
    ("a.npy", _cube(3), {}, True),
    ("b.npy", _cube(0, np.float32), {}, True),
    ("c.tif", _cube(3), {"photometric": "rgb"}, True),
    ("d.tif", np.moveaxis(_cube(3), 2, 0).copy(), {"photometric": "rgb", "planarconfig": "separate"}, True),
    ("e.tif", _cube(0, np.float32), {}, True),
    ("f.tif", np.moveaxis(_cube(4, np.uint16), 2, 0).copy(), {"photometric": "minisblack"}, True),
    ("g.tif", _cube(3), {"photometric": "rgb", "compression": "zlib"}, False),
    ("h.png", _cube(3), {}, False),
    ("i.png", _cube(0), {}, False),
]


@pytest.mark.parametrize("filename, array, options, mapped", FORMATS, ids=[f[0] for f in FORMATS])
def test_windows_equal_slices_of_the_whole_raster(tmp_path: Path, filename: str, array: np.ndarray,
                                                  options: dict, mapped: bool) -> None:
    path = _write(tmp_path / filename, array, **options)
    expected = array if array.ndim == 2 or array.shape[0] == 13 else np.moveaxis(array, 0, 2)
    expected = expected.reshape(13, 11, -1).astype(np.float32)
    channels = expected.shape[2]
    tileset = _tileset({"t": Tile("t", {"image": path})}, {"image": channels})
    tileset.check()
    whole = tileset.read_source("t", "image")
    assert whole.dtype == np.float32 and whole.shape == (13, 11, channels)
    np.testing.assert_array_equal(whole, expected)
    for r0, r1, c0, c1 in WINDOWS:
        np.testing.assert_array_equal(tileset.read_source("t", "image", (r0, r1, c0, c1)), whole[r0:r1, c0:c1])
    assert open_raster(path).memory_mapped is mapped
    assert raster_info(path).shape == (13, 11) and raster_info(path).channels == channels


def test_memory_mapped_sources_hold_no_pixels_in_memory(tmp_path: Path) -> None:
    big = np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype=np.uint8, shape=(2000, 1500, 3))
    big[1000:1010, 700:720] = 7
    big.flush()
    del big
    tifffile.imwrite(tmp_path / "big.tif", np.zeros((2000, 1500), np.float32))
    tileset = _tileset({"t": Tile("t", {"image": str(tmp_path / "big.npy"), "dsm": str(tmp_path / "big.tif")})},
                       {"image": 3, "dsm": 1})
    tileset.check()
    window = tileset.read_source("t", "image", (995, 1015, 690, 730))
    assert window.shape == (20, 40, 3) and window[5:15, 10:30].min() == 7 and window.sum() == 7 * 10 * 20 * 3
    assert tileset.read_source("t", "dsm", (0, 4, 0, 4)).shape == (4, 4, 1)
    held = [raster for _, raster in tileset._rasters._rasters.values()]
    assert len(held) == 2 and all(r.memory_mapped and r.resident_bytes == 0 for r in held)


def test_decoded_rasters_are_cached_until_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "x.png"
    _write(path, _cube(3))
    tileset = _tileset({"t": Tile("t", {"image": str(path)})}, {"image": 3})
    first = tileset.read_source("t", "image", (0, 2, 0, 2))
    assert tileset._rasters.raster(str(path)) is tileset._rasters.raster(str(path))
    _write(path, _cube(3, seed=1))
    import os

    os.utime(path, ns=(1, 1))  # a different modification time: the raster is reopened
    assert not np.array_equal(tileset.read_source("t", "image", (0, 2, 0, 2)), first)


def test_source_bands_pick_and_repeat_channels(tmp_path: Path) -> None:
    cube = _cube(5)
    path = _write(tmp_path / "cube.npy", cube)
    tileset = _tileset({"t": Tile("t", {"pan": path, "swir": path})}, {"pan": 3, "swir": 2},
                       source_bands={"pan": (0, 0, 0), "swir": (3, 4)})
    tileset.check()
    np.testing.assert_array_equal(tileset.read_source("t", "pan")[..., 2], cube[..., 0])
    np.testing.assert_array_equal(tileset.read_source("t", "swir", (1, 3, 1, 3)), cube[1:3, 1:3, 3:5])


def test_a_window_outside_the_tile_is_one_line(tmp_path: Path) -> None:
    tileset = _tileset({"t": Tile("t", {"image": _write(tmp_path / "a.npy", _cube(3))})}, {"image": 3})
    with pytest.raises(UserError, match=r"outside tile 't' of 13x11") as info:
        tileset.read_source("t", "image", (5, 20, 0, 4))
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="no source 'dsm'"):
        tileset.read_source("t", "dsm")


def test_tile_set_pickles_without_its_open_rasters(tmp_path: Path) -> None:
    tileset = _tileset({"t": Tile("t", {"image": _write(tmp_path / "a.npy", _cube(3))})}, {"image": 3})
    before = tileset.read_source("t", "image")
    copy = pickle.loads(pickle.dumps(tileset))
    assert not copy._rasters._rasters
    np.testing.assert_array_equal(copy.read_source("t", "image"), before)


# --- Label decoding ---------------------------------------------------------------------------------


def test_isprs_colour_labels_decode_to_ids() -> None:
    ids = np.array([[0, 1, 2, 3], [4, 5, IGNORE, 0]])
    colours = encode_colours(ids, ISPRS)
    assert tuple(colours[1, 2]) == (0, 0, 0)
    decoder = ColourDecoder(ISPRS)
    np.testing.assert_array_equal(decoder(colours), ids)
    noisy = colours.astype(np.int64)
    noisy[0, 0] = (250, 252, 249)  # lossy white is still impervious surfaces
    noisy[0, 1] = (3, 1, 240)  # and a lossy blue still a building
    noisy[1, 3] = (255, 0, 255)  # magenta is no ISPRS class
    decoded = decoder(noisy.astype(np.uint8))
    assert decoded[0, 0] == 0 and decoded[0, 1] == 1 and decoded[1, 3] == IGNORE
    rgba = np.concatenate([colours, np.full((2, 4, 1), 255, np.uint8)], axis=2)
    np.testing.assert_array_equal(decoder(rgba), ids)


def test_colour_labels_with_arbitrary_palette_match_exactly() -> None:
    palette = [(10, 20, 30), (200, 100, 50)]
    image = np.array([[[10, 20, 30], [200, 100, 50], [10, 20, 31]]], dtype=np.uint8)
    np.testing.assert_array_equal(ColourDecoder(palette)(image), [[0, 1, IGNORE]])
    with pytest.raises(UserError, match="repeats a colour"):
        ColourDecoder([(1, 2, 3), (1, 2, 3)])


def test_mmseg_value_labels_decode_zero_as_ignored() -> None:
    decoder = ValueDecoder(range(1, 7), ignored=(0,))
    raw = np.array([[0, 1, 2], [3, 4, 6]], dtype=np.uint8)
    np.testing.assert_array_equal(decoder(raw), [[IGNORE, 0, 1], [2, 3, 5]])
    np.testing.assert_array_equal(decoder(raw[:, :, None].astype(np.float32)), decoder(raw))
    with pytest.raises(UserError, match=r"label values \[7, 300\] are neither") as info:
        decoder(np.array([[1, 7], [300, 0]], dtype=np.uint16))
    assert "\n" not in str(info.value)
    with pytest.raises(UserError, match="non-whole"):
        decoder(np.array([[1.5]]))


# --- Eroded ground truth ------------------------------------------------------------------------------


def _drawn(picture: str) -> np.ndarray:
    """A label map from rows of characters: digits are classes, '.' is IGNORE."""
    rows = [line.strip() for line in picture.strip().splitlines()]
    return np.array([[IGNORE if ch == "." else int(ch) for ch in row] for row in rows])


def test_erosion_matches_a_drawn_case() -> None:
    labels = _drawn("""
        0000111
        0000111
        0000111
        2222...
        2222...
    """)
    expected_radius_1 = _drawn("""
        000..11
        000..11
        .....11
        .......
        2222...
    """)
    np.testing.assert_array_equal(erode_boundaries(labels, 1), expected_radius_1)
    expected_radius_2 = _drawn("""
        00....1
        ......1
        ......1
        .......
        .......
    """)
    np.testing.assert_array_equal(erode_boundaries(labels, 2), expected_radius_2)
    np.testing.assert_array_equal(erode_boundaries(labels, 0), labels)


def test_erosion_disc_ignores_diagonal_neighbours_at_radius_one() -> None:
    labels = _drawn("""
        00
        01
    """)
    # the two off-diagonal 0s touch the 1 side by side; the corner 0 only diagonally
    np.testing.assert_array_equal(erode_boundaries(labels, 1), _drawn("""
        0.
        ..
    """))
    assert disc(1).sum() == 5 and disc(3).sum() == 29


def test_eroded_reads_fall_back_to_eroding_the_full_labels(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    blocks = rng.integers(1, 4, size=(6, 5)).repeat(7, axis=0).repeat(6, axis=1)[:40, :29]
    labels = _write(tmp_path / "labels.png", blocks.astype(np.uint8))
    image = _write(tmp_path / "image.npy", np.zeros((40, 29, 3), np.uint8))
    tileset = _tileset({"t": Tile("t", {"image": image}, labels=labels)}, {"image": 3})
    full = tileset.read_labels("t")
    np.testing.assert_array_equal(full, blocks - 1)
    eroded_whole = erode_boundaries(full, 3)
    assert (eroded_whole == IGNORE).any()
    np.testing.assert_array_equal(tileset.read_labels("t", eroded=True), eroded_whole)
    for r0, r1, c0, c1 in [(5, 20, 4, 17), (0, 3, 0, 29), (33, 40, 20, 29)]:
        np.testing.assert_array_equal(tileset.read_labels("t", (r0, r1, c0, c1), eroded=True),
                                      eroded_whole[r0:r1, c0:c1])


def test_an_eroded_file_is_read_as_is(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.npy", np.zeros((4, 4, 3), np.uint8))
    full = _write(tmp_path / "full.npy", np.full((4, 4), 1, np.uint8))
    eroded = _write(tmp_path / "eroded.npy", np.array([[0, 1, 1, 1]] * 4, np.uint8))
    tileset = _tileset({"t": Tile("t", {"image": image}, labels=full, eroded_labels=eroded)}, {"image": 3})
    assert (tileset.read_labels("t") == 0).all()
    np.testing.assert_array_equal(tileset.read_labels("t", eroded=True)[0], [IGNORE, 0, 0, 0])


def test_regions_apply_their_window_and_mask(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.npy", np.zeros((6, 8, 3), np.uint8))
    labels = _write(tmp_path / "labels.npy", np.full((6, 8), 2, np.uint8))
    mask = np.zeros((6, 8), bool)
    mask[1:3, 2:5] = True
    np.save(tmp_path / "mask.npy", mask)
    tileset = _tileset({"t": Tile("t", {"image": image}, labels=labels)}, {"image": 3})
    region = Region("t", (1, 4, 2, 8), str(tmp_path / "mask.npy"))
    tileset.train = [region]
    tileset.check()
    assert tileset.region_window(Region("t")) == (0, 6, 0, 8)
    np.testing.assert_array_equal(tileset.region_mask(region), mask[1:4, 2:8])
    got = tileset.region_labels(region)
    assert got.shape == (3, 6) and (got == 1).sum() == 6 and (got == IGNORE).sum() == 12


# --- check() -----------------------------------------------------------------------------------------


def _one_line(error: pytest.ExceptionInfo) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


def test_check_names_both_sizes_of_mismatched_rasters(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.png", _cube(3))
    dsm = _write(tmp_path / "dsm.tif", np.zeros((12, 11), np.float32))
    tileset = _tileset({"t": Tile("t", {"image": image, "dsm": dsm})}, {"image": 3, "dsm": 1})
    with pytest.raises(UserError) as info:
        tileset.check()
    message = _one_line(info)
    assert "13x11" in message and "12x11" in message and "dsm" in message and "tile 't'" in message
    labels = _write(tmp_path / "labels.png", np.zeros((13, 10), np.uint8))
    tileset = _tileset({"t": Tile("t", {"image": image}, labels=labels)}, {"image": 3})
    with pytest.raises(UserError, match=r"image is 13x11 .* labels is 13x10"):
        tileset.check()


def test_check_reports_a_missing_file(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.png", _cube(3))
    missing = tmp_path / "nowhere" / "dsm.tif"
    tileset = _tileset({"t": Tile("t", {"image": image, "dsm": str(missing)})}, {"image": 3, "dsm": 1})
    with pytest.raises(UserError) as info:
        tileset.check()
    assert str(missing) in _one_line(info) and "not found" in str(info.value)
    tileset = _tileset({"t": Tile("t", {"image": image})}, {"image": 3, "dsm": 1})
    with pytest.raises(UserError, match="has no 'dsm' raster"):
        tileset.check()


def test_check_reports_a_wrong_channel_count(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.tif", _cube(4), photometric="minisblack", planarconfig="contig")
    tileset = _tileset({"t": Tile("t", {"image": image})}, {"image": 3})
    with pytest.raises(UserError) as info:
        tileset.check()
    message = _one_line(info)
    assert "source 'image' has 4 channels" in message and "expects 3" in message
    tileset = _tileset({"t": Tile("t", {"image": image})}, {"image": 3}, source_bands={"image": (0, 1, 9)})
    with pytest.raises(UserError, match="picks channels"):
        tileset.check()


def test_check_reports_regions_outside_tiles_and_short_palettes(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.npy", _cube(3))
    tileset = _tileset({"t": Tile("t", {"image": image})}, {"image": 3})
    tileset.test = [Region("t", (0, 14, 0, 2))]
    with pytest.raises(UserError, match="outside tile 't'"):
        tileset.check()
    tileset.test = [Region("u")]
    with pytest.raises(UserError, match="no tile named 'u'"):
        tileset.check()
    tileset.test, tileset.palette = [], [(0, 0, 0)]
    with pytest.raises(UserError, match="3 classes but 1 colours"):
        tileset.check()
    np.save(tmp_path / "mask.npy", np.ones((4, 4), bool))
    tileset.palette, tileset.test = [(0, 0, 0)] * 3, [Region("t", mask=str(tmp_path / "mask.npy"))]
    with pytest.raises(UserError, match=r"mask .* has shape \(4, 4\)"):
        tileset.check()


def test_missing_labels_and_unreadable_rasters_are_one_line(tmp_path: Path) -> None:
    image = _write(tmp_path / "image.npy", _cube(3))
    tileset = _tileset({"t": Tile("t", {"image": image})}, {"image": 3})
    with pytest.raises(UserError, match="has no labels"):
        tileset.read_labels("t")
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    with pytest.raises(UserError) as info:
        open_raster(broken)
    assert "cannot read" in _one_line(info)
