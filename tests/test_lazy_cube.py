"""Lazy cubes: every backend reads the same windows as the array it was written from, keeps the
georeferencing, and turns a damaged file into a one-line error naming the file and window."""
from __future__ import annotations

import h5py
import numpy as np
import pytest
import scipy.io
import spectral.io.envi as envi
import tifffile

from deephyperx.errors import UserError
from deephyperx.lazy_cube import (ArrayCube, HDF5Cube, RawCube, MappedCube, TiffSegmentCube, envi_placement,
                                  open_lazy_cube)

GEO_TAGS = [(33550, "d", 3, (30.0, 30.0, 0.0), True),
            (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), True),
            (34735, "H", 8, (1, 1, 0, 1, 3072, 0, 1, 32631), True)]
MAP_INFO = "{UTM, 1.000, 1.000, 500000.0, 4000000.0, 30.0, 30.0, 31, North, WGS-84, units=Meters}"
WINDOWS = [(0, 37, 0, 29), (3, 30, 5, 27), (36, 37, 28, 29), (10, 20, 0, 29)]


@pytest.fixture(scope="module")
def cube() -> np.ndarray:
    return (np.random.default_rng(0).random((37, 29, 6)) * 1000).astype(np.float32)


def write_cube(folder, cube: np.ndarray, kind: str):
    """Write ``cube`` in the format ``kind``; return the path to open and the backend expected."""
    if kind == "npy":
        np.save(folder / "c.npy", cube)
        return folder / "c.npy", RawCube
    if kind == "h5":
        with h5py.File(folder / "c.h5", "w") as handle:
            handle.create_dataset("group/cube", data=cube, chunks=(8, 8, 6), compression="gzip")
        return folder / "c.h5", HDF5Cube
    if kind == "mat73":  # MATLAB v7.3 stores arrays column-major: h5py sees them transposed
        with h5py.File(folder / "c.mat", "w") as handle:
            handle.create_dataset("X", data=cube.T, chunks=(6, 8, 8))
        return folder / "c.mat", HDF5Cube
    if kind == "mat5":
        scipy.io.savemat(folder / "c.mat", {"X": cube})
        return folder / "c.mat", ArrayCube
    if kind.startswith("envi"):
        interleave = kind.split("_")[1]
        envi.save_image(str(folder / "c.hdr"), cube, metadata={"map info": MAP_INFO}, interleave=interleave,
                        force=True)
        return folder / "c.hdr", RawCube
    if kind == "tif":
        tifffile.imwrite(folder / "c.tif", cube, photometric="minisblack", planarconfig="contig", extratags=GEO_TAGS)
        return folder / "c.tif", RawCube
    if kind == "tif_planar":
        tifffile.imwrite(folder / "c.tif", np.moveaxis(cube, 2, 0), photometric="minisblack", planarconfig="separate")
        return folder / "c.tif", RawCube
    if kind == "tif_4d":  # bands along two axes (e.g. 2 x 3), stored contiguously
        tifffile.imwrite(folder / "c.tif", np.moveaxis(cube, 2, 0).reshape(2, 3, *cube.shape[:2]),
                         photometric="minisblack")
        return folder / "c.tif", MappedCube
    if kind == "tif_tiled_zlib":
        tifffile.imwrite(folder / "c.tif", cube, photometric="minisblack", planarconfig="contig",
                         compression="zlib", tile=(16, 16), extratags=GEO_TAGS)
        return folder / "c.tif", TiffSegmentCube
    if kind == "tif_planar_strips":
        tifffile.imwrite(folder / "c.tif", np.moveaxis(cube, 2, 0), photometric="minisblack",
                         planarconfig="separate", compression="zlib", rowsperstrip=5)
        return folder / "c.tif", TiffSegmentCube
    if kind == "tif_pages":
        tifffile.imwrite(folder / "c.tif", np.moveaxis(cube, 2, 0), photometric="minisblack", compression="zlib",
                         rowsperstrip=7)
        return folder / "c.tif", TiffSegmentCube
    raise ValueError(kind)


KINDS = ["npy", "h5", "mat73", "mat5", "envi_bsq", "envi_bil", "envi_bip", "tif", "tif_planar", "tif_4d",
         "tif_tiled_zlib", "tif_planar_strips", "tif_pages"]


@pytest.mark.parametrize("kind", KINDS)
def test_every_backend_reads_the_windows_of_the_array(tmp_path, cube, kind):
    path, backend = write_cube(tmp_path, cube, kind)
    lazy = open_lazy_cube(path)
    assert isinstance(lazy, backend)
    assert lazy.shape == cube.shape
    for window in WINDOWS:
        r0, r1, c0, c1 = window
        block = lazy.read(window)
        assert block.dtype == np.float32
        np.testing.assert_array_equal(block, cube[r0:r1, c0:c1])


@pytest.mark.parametrize("kind", KINDS + ["npy_fortran", "png"])
def test_one_opener_serves_scenes_tiles_and_windows_alike(tmp_path, cube, kind):
    """The whole raster (scene loading: ``read_raster``), the tile reader (``tiles.open_raster``) and the
    windows (out-of-core mapping, catalogues) all come from ``open_lazy_cube`` and agree."""
    from deephyperx.readers import read_raster
    from deephyperx.tiles import open_raster

    data = cube
    if kind == "npy_fortran":  # column-major: read through a memory map, not refused
        np.save(tmp_path / "c.npy", np.asfortranarray(cube))
        path = tmp_path / "c.npy"
    elif kind == "png":
        data = (cube[:, :, :3] % 256).astype(np.uint8)
        from PIL import Image

        Image.fromarray(data).save(tmp_path / "c.png")
        path = tmp_path / "c.png"
    else:
        path, _ = write_cube(tmp_path, cube, kind)
    whole = read_raster(path)
    np.testing.assert_array_equal(whole, data)
    np.testing.assert_array_equal(open_raster(path).read(), data)
    lazy = open_lazy_cube(path)
    for window in WINDOWS:
        r0, r1, c0, c1 = window
        np.testing.assert_array_equal(lazy.read(window), data[r0:r1, c0:c1].astype(np.float32))


def test_a_label_plane_is_read_back_as_a_plane(tmp_path):
    labels = np.arange(12, dtype=np.int16).reshape(3, 4)
    np.save(tmp_path / "gt.npy", labels)
    tifffile.imwrite(tmp_path / "gt.tif", labels)
    from deephyperx.readers import read_raster

    for name in ("gt.npy", "gt.tif"):
        got = read_raster(tmp_path / name)
        assert got.shape == (3, 4) and got.dtype == np.int16
        np.testing.assert_array_equal(got, labels)
    assert open_lazy_cube(tmp_path / "gt.npy").shape == (3, 4, 1)


def test_integer_cubes_are_read_as_float32(tmp_path, cube):
    np.save(tmp_path / "u16.npy", cube.astype(np.uint16))
    lazy = open_lazy_cube(tmp_path / "u16.npy")
    assert lazy.dtype == np.uint16 and lazy.resident_bytes == 0
    block = lazy.read((2, 5, 3, 9))
    assert block.dtype == np.float32
    np.testing.assert_array_equal(block, cube.astype(np.uint16)[2:5, 3:9].astype(np.float32))


def test_single_band_rasters_are_cubes_of_one_band(tmp_path, cube):
    np.save(tmp_path / "band.npy", cube[:, :, 0])
    lazy = open_lazy_cube(tmp_path / "band.npy")
    assert lazy.shape == (37, 29, 1)
    np.testing.assert_array_equal(lazy.read((1, 4, 2, 6))[:, :, 0], cube[1:4, 2:6, 0])


def test_geotiff_tags_are_kept(tmp_path, cube):
    path, _ = write_cube(tmp_path, cube, "tif_tiled_zlib")
    georeference = open_lazy_cube(path).georeference
    tags = {code: value for code, _, _, value, _ in georeference.tiff_tags()}
    assert tags[33550] == (30.0, 30.0, 0.0)
    assert tags[33922] == (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0)
    assert tags[34735] == (1, 1, 0, 1, 3072, 0, 1, 32631)
    assert georeference.as_dict()["geotiff"]["ModelPixelScaleTag"] == [30.0, 30.0, 0.0]


def test_envi_map_info_is_kept_and_gives_tiff_placement(tmp_path, cube):
    path, _ = write_cube(tmp_path, cube, "envi_bsq")
    georeference = open_lazy_cube(path).georeference
    assert georeference.envi["map info"][0] == "UTM"
    tags = {code: value for code, _, _, value, _ in georeference.tiff_tags()}
    assert tags[33550] == (30.0, 30.0, 0.0)
    assert tags[33922] == (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0)  # ENVI's reference pixel (1, 1) is 0-based (0, 0)
    assert envi_placement("{UTM, 1, 1, 5, 6, 30, 30, 31, North, WGS-84, rotation=10}") is None


def test_files_without_georeferencing_have_none(tmp_path, cube):
    path, _ = write_cube(tmp_path, cube, "npy")
    assert open_lazy_cube(path).georeference is None


def test_a_damaged_hdf5_chunk_names_the_file_and_window(tmp_path, cube):
    path, _ = write_cube(tmp_path, cube, "h5")
    with h5py.File(path, "r") as handle:
        chunk = handle["group/cube"].id.get_chunk_info(0)  # the chunk at rows 0:8, cols 0:8
    with open(path, "r+b") as handle:
        handle.seek(chunk.byte_offset)
        handle.write(b"\x00garbage" * (chunk.size // 8))
    lazy = open_lazy_cube(path)
    np.testing.assert_array_equal(lazy.read((8, 16, 8, 16)), cube[8:16, 8:16])  # other chunks still read
    with pytest.raises(UserError) as error:
        lazy.read((0, 4, 0, 4))
    message = str(error.value)
    assert str(path) in message and "rows 0:4, cols 0:4" in message and "\n" not in message


def test_a_truncated_envi_data_file_is_refused_with_one_line(tmp_path, cube):
    path, _ = write_cube(tmp_path, cube, "envi_bil")
    data = (tmp_path / "c.img").read_bytes()
    (tmp_path / "c.img").write_bytes(data[:-100])
    with pytest.raises(UserError, match="c.img: .* bytes but its header c.hdr describes .*truncated"):
        open_lazy_cube(path)


def test_a_truncated_npy_is_refused_with_one_line(tmp_path, cube):
    np.save(tmp_path / "c.npy", cube)
    data = (tmp_path / "c.npy").read_bytes()
    (tmp_path / "c.npy").write_bytes(data[:len(data) // 2])
    with pytest.raises(UserError, match="c.npy: cannot"):
        open_lazy_cube(tmp_path / "c.npy").read((0, 37, 0, 29))


@pytest.mark.parametrize("name, content, pattern", [
    ("missing.npy", None, "no such file"),
    ("c.xyz", b"x", "unknown file type"),
    ("c.png", b"x", "cannot read this file"),
    ("c.npy", b"not numpy", "no NumPy .npy header"),
])
def test_unusable_files_are_refused_with_one_line(tmp_path, name, content, pattern):
    if content is not None:
        (tmp_path / name).write_bytes(content)
    with pytest.raises(UserError, match=pattern):
        open_lazy_cube(tmp_path / name)


def test_a_four_dimensional_array_is_no_cube(tmp_path):
    np.save(tmp_path / "c.npy", np.zeros((2, 3, 4, 5), np.float32))
    with pytest.raises(UserError, match="is no cube"):
        open_lazy_cube(tmp_path / "c.npy")


def test_hdf5_with_several_datasets_needs_a_key(tmp_path, cube):
    with h5py.File(tmp_path / "two.h5", "w") as handle:
        handle["a"] = cube
        handle["b"] = cube[:, :, :2]
    with pytest.raises(UserError, match="several arrays"):
        open_lazy_cube(tmp_path / "two.h5")
    assert open_lazy_cube(tmp_path / "two.h5", key="b").shape == (37, 29, 2)


def test_windows_outside_the_cube_are_refused(tmp_path, cube):
    path, _ = write_cube(tmp_path, cube, "npy")
    with pytest.raises(UserError, match="lies outside"):
        open_lazy_cube(path).read((30, 40, 0, 5))


@pytest.mark.parametrize("userblock", [0, 512, 1024, 4096])
def test_the_hdf5_signature_check_agrees_with_h5py(tmp_path, cube: np.ndarray, userblock: int):
    from deephyperx.lazy_cube import is_hdf5_file

    hdf5 = tmp_path / "a.mat"
    with h5py.File(hdf5, "w", userblock_size=userblock) as handle:
        handle.create_dataset("X", data=cube.T)
    mat5, short, empty = tmp_path / "b.mat", tmp_path / "c.mat", tmp_path / "d.mat"
    scipy.io.savemat(mat5, {"X": cube})
    short.write_bytes(b"\x89HDF")
    empty.write_bytes(b"")
    for path in (hdf5, mat5, short, empty):
        assert is_hdf5_file(path) == h5py.is_hdf5(str(path)), path.name
    assert is_hdf5_file(hdf5) and not is_hdf5_file(mat5)
