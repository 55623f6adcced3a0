"""read_raster: small real files of every format written to tmp_path and read back; bad files give UserError."""
from __future__ import annotations

import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

from deephyperx.errors import UserError
from deephyperx.readers import read_raster, supported_extensions


@pytest.fixture
def cube() -> np.ndarray:
    """A small (rows, cols, bands) cube with distinct values, so any transposition shows."""
    return np.random.default_rng(0).integers(0, 1000, size=(7, 5, 4)).astype(np.uint16)


def test_mat_v5_single_variable_needs_no_key(tmp_path: Path, cube: np.ndarray) -> None:
    path = tmp_path / "cube.mat"
    scipy.io.savemat(path, {"data": cube}, do_compression=True)
    out = read_raster(path)
    assert out.shape == (7, 5, 4) and out.dtype == np.uint16
    np.testing.assert_array_equal(out, cube)


def test_mat_v5_several_variables_need_a_key(tmp_path: Path, cube: np.ndarray) -> None:
    path = tmp_path / "two.mat"
    scipy.io.savemat(path, {"data": cube, "gt": cube[:, :, 0]})
    with pytest.raises(UserError, match=r"several arrays.*'data'.*'gt'"):
        read_raster(path)
    np.testing.assert_array_equal(read_raster(path, "gt"), cube[:, :, 0])
    with pytest.raises(UserError, match=r"no MATLAB variable named 'nope'.*'data'"):
        read_raster(path, "nope")


def test_mat_v73_is_read_in_matlab_orientation(tmp_path: Path, cube: np.ndarray) -> None:
    # A MATLAB v7.3 file is HDF5 with a 512-byte user block; MATLAB writes column-major, so
    # HDF5 sees the array with its axes reversed.
    path = tmp_path / "v73.mat"
    with h5py.File(path, "w", userblock_size=512) as handle:
        handle.create_dataset("cube", data=cube.T)
        handle.create_dataset("gt", data=cube[:, :, 0].T, compression="gzip")
    with open(path, "r+b") as raw:
        raw.write(b"MATLAB 7.3 MAT-file, written by a test")
    np.testing.assert_array_equal(read_raster(path, "cube"), cube)
    np.testing.assert_array_equal(read_raster(path, "gt"), cube[:, :, 0])
    with pytest.raises(UserError, match="several arrays"):
        read_raster(path)


def test_npy_is_memory_mapped(tmp_path: Path, cube: np.ndarray) -> None:
    path = tmp_path / "cube.npy"
    np.save(path, cube)
    out = read_raster(path)
    assert isinstance(out, np.memmap)
    np.testing.assert_array_equal(out, cube)


def test_h5_by_key_memory_mapped_when_contiguous(tmp_path: Path, cube: np.ndarray) -> None:
    path = tmp_path / "scene.h5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("cube", data=cube)
        handle.create_dataset("group/gt", data=cube[:, :, 1], compression="gzip")
    plain = read_raster(path, "cube")
    assert isinstance(plain, np.memmap)
    np.testing.assert_array_equal(plain, cube)
    np.testing.assert_array_equal(read_raster(path, "group/gt"), cube[:, :, 1])
    with pytest.raises(UserError, match=r"'cube'.*'group/gt'"):
        read_raster(path)


def test_hdf5_extension_single_dataset(tmp_path: Path, cube: np.ndarray) -> None:
    path = tmp_path / "only.hdf5"
    with h5py.File(path, "w") as handle:
        handle.create_dataset("x", data=cube.astype(np.float32))
    np.testing.assert_array_equal(read_raster(path), cube.astype(np.float32))


@pytest.mark.parametrize("interleave", ["bsq", "bil", "bip"])
def test_envi_every_interleave(tmp_path: Path, cube: np.ndarray, interleave: str) -> None:
    from spectral.io import envi

    header = tmp_path / f"cube_{interleave}.hdr"
    envi.save_image(str(header), cube, interleave=interleave, dtype=np.uint16)
    out = read_raster(header)
    assert out.shape == cube.shape
    np.testing.assert_array_equal(out, cube)


def test_tiff_multiband_and_single_band(tmp_path: Path, cube: np.ndarray) -> None:
    tifffile = pytest.importorskip("tifffile", reason="GeoTIFF reading needs tifffile or rasterio")
    separate = tmp_path / "planar.tif"
    tifffile.imwrite(separate, np.moveaxis(cube, -1, 0), planarconfig="separate", photometric="minisblack")
    np.testing.assert_array_equal(read_raster(separate), cube)
    labels = tmp_path / "gt.tiff"
    tifffile.imwrite(labels, cube[:, :, 2].astype(np.uint8))
    out = read_raster(labels)
    assert out.shape == (7, 5)
    np.testing.assert_array_equal(out, cube[:, :, 2].astype(np.uint8))


def test_tiff_without_a_tiff_package_says_what_to_install(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "x.tif"
    path.write_bytes(b"II*\x00")
    monkeypatch.setitem(sys.modules, "rasterio", None)  # None in sys.modules makes import fail
    monkeypatch.setitem(sys.modules, "tifffile", None)
    with pytest.raises(UserError, match="pip install tifffile"):
        read_raster(path)


def test_truncated_mat_is_a_user_error(tmp_path: Path, cube: np.ndarray) -> None:
    good = tmp_path / "good.mat"
    scipy.io.savemat(good, {"data": cube}, do_compression=True)
    bad = tmp_path / "bad.mat"
    data = good.read_bytes()
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(UserError, match=r"bad\.mat.*truncated or corrupt"):
        read_raster(bad)


@pytest.mark.parametrize("name", ["junk.npy", "junk.h5", "junk.mat", "junk.hdr"])
def test_garbage_files_are_user_errors(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"this is not a raster\n" * 8)
    with pytest.raises(UserError, match="junk"):
        read_raster(path)


def test_missing_file_and_unknown_extension(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"absent\.mat: no such file"):
        read_raster(tmp_path / "absent.mat")
    other = tmp_path / "cube.xyz"
    other.write_bytes(b"1")
    with pytest.raises(UserError, match=r"unknown file type '\.xyz'.*\.npy"):
        read_raster(other)
    assert {".mat", ".npy", ".h5", ".hdf5", ".hdr", ".tif", ".tiff", ".png", ".jpg", ".jpeg", ".bmp"} == \
        set(supported_extensions())


def test_user_errors_are_one_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.npy"
    path.write_bytes(b"\x93NUMPY garbage\nmore garbage\n")
    with pytest.raises(UserError) as info:
        read_raster(path)
    assert "\n" not in str(info.value)
