"""The scene catalogue and custom scenes: real scenes from shared/data, custom files written to tmp_path."""
from __future__ import annotations

import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.io

import datasets
from deephyperx.errors import DataNotFoundError, UserError
from deephyperx.readers import read_raster
from deephyperx.scene import IGNORE, Scene

SHARED = Path(os.environ.get("DEEPHYPERX_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
needs_shared = pytest.mark.skipif(not (SHARED / "IndianPines").is_dir(),
                                  reason=f"real scenes not found in {SHARED} (set DEEPHYPERX_SHARED_DATA)")

INDIAN_PINES_COUNTS = [46, 1428, 830, 237, 483, 730, 28, 478, 20, 972, 2455, 593, 205, 1265, 386, 93]
SALINAS_A_COUNTS = [391, 1343, 616, 1525, 674, 799]


# --- Real scenes ----------------------------------------------------------------------------


@needs_shared
def test_indian_pines_loads_with_published_counts() -> None:
    scene = datasets.load_scene("IndianPines", SHARED)
    assert scene.cube.shape == (145, 145, 200)
    assert scene.n_classes == 16 and scene.class_names[0] == "Alfalfa"
    assert scene.class_counts().tolist() == INDIAN_PINES_COUNTS
    assert int((scene.labels == IGNORE).sum()) == 10776
    assert scene.rgb_bands == (43, 21, 11)
    assert scene.wavelengths is not None and scene.wavelengths.shape == (200,)


@needs_shared
def test_salinas_a_labels_are_remapped_to_contiguous_ids() -> None:
    scene = datasets.load_scene("SalinasA", SHARED)
    assert scene.cube.shape == (83, 86, 204)
    assert scene.class_counts().tolist() == SALINAS_A_COUNTS
    assert set(np.unique(scene.labels).tolist()) == {IGNORE, 0, 1, 2, 3, 4, 5}
    assert scene.label_values == [1, 10, 11, 12, 13, 14]
    assert scene.class_names[1] == "Corn_senesced_green_weeds"
    raw = read_raster(SHARED / "SalinasA" / "SalinasA_gt.mat", "salinasA_gt")
    np.testing.assert_array_equal(scene.labels == 1, raw == 10)


@needs_shared
@pytest.mark.parametrize("name, cube_file", [("PaviaU", "PaviaU.mat"), ("Salinas", "Salinas_corrected.mat"),
                                             ("KSC", "KSC.mat")])
def test_label_only_folders_do_not_load_as_scenes(name: str, cube_file: str) -> None:
    folder = SHARED / "gt_only"
    with pytest.raises(DataNotFoundError) as info:
        datasets.load_scene(name, folder)
    message = str(info.value)
    assert "\n" not in message
    assert str(folder / name / cube_file) in message
    assert f"python main.py --download {name} --folder {folder}" in message


@needs_shared
@pytest.mark.parametrize("name, counts", [
    ("PaviaU", [6631, 18649, 2099, 3064, 1345, 5029, 1330, 3682, 947]),
    ("KSC", [761, 243, 256, 252, 161, 229, 105, 431, 520, 404, 419, 503, 927]),
])
def test_declared_label_values_match_real_label_maps(name: str, counts: list[int]) -> None:
    decl = datasets.CATALOGUE[name]
    raw = read_raster(SHARED / "gt_only" / name / decl.labels_file, decl.labels_key)
    ids = datasets.remap_labels(raw, decl.values, decl.ignored_labels, decl.labels_file)
    assert np.bincount(ids[ids != IGNORE], minlength=len(decl.class_names)).tolist() == counts


@needs_shared
def test_default_scene_is_indian_pines_when_present(tmp_path: Path) -> None:
    assert datasets.find_default_scene(SHARED) == "IndianPines"
    assert datasets.find_default_scene(tmp_path) == "Synthetic"


def test_synthetic_needs_no_files(tmp_path: Path) -> None:
    scene = datasets.load_scene("Synthetic", tmp_path / "nothing-here")
    assert isinstance(scene, Scene) and scene.n_classes > 1
    assert datasets.resolve_scene("synthetic", tmp_path).name == "Synthetic"


def test_unknown_scene_lists_the_choices() -> None:
    with pytest.raises(UserError, match=r"unknown scene 'Nowhere'.*IndianPines.*SalinasA.*Synthetic"):
        datasets.load_scene("Nowhere", ".")


def test_registration_scenes_say_how_to_get_them(tmp_path: Path) -> None:
    with pytest.raises(DataNotFoundError, match=r"2018_IEEE_GRSS_DFC_HSI_TR\.HDR.*GRSS") as info:
        datasets.load_scene("DFC2018", tmp_path)
    assert str(tmp_path / "DFC2018") in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(UserError, match="cannot be downloaded automatically.*GRSS"):
        datasets.download_scene("Houston2013", tmp_path)


# --- The catalogue's declarations -----------------------------------------------------------


@pytest.mark.parametrize("name", datasets.list_scenes())
def test_every_declaration_is_self_consistent(name: str) -> None:
    decl = datasets.CATALOGUE[name]
    assert decl.name == name
    assert len(decl.class_names) == len(decl.values) == len(set(decl.values))
    assert not set(decl.values) & set(decl.ignored_labels)
    if decl.rgb_bands is not None:
        assert len(decl.rgb_bands) == 3 and min(decl.rgb_bands) >= 0
        if decl.band_count is not None:
            assert max(decl.rgb_bands) < decl.band_count
    if decl.wavelengths is not None:
        assert len(decl.wavelengths) == decl.band_count
        assert all(a < b for a, b in zip(decl.wavelengths, decl.wavelengths[1:]))
    if decl.palette is not None:
        assert len(decl.palette) >= len(decl.class_names)
    if decl.embedded is None:
        assert decl.cube_file and decl.labels_file
        assert decl.files or decl.how_to_get, "a scene needs download URLs or instructions"
        assert {f.filename for f in decl.files} >= ({decl.cube_file, decl.labels_file} if decl.files else set())
        for remote in decl.files:
            assert remote.url and remote.url.startswith("https://www.ehu.eus/ccwintco/uploads/")
            assert remote.url.endswith("/" + remote.filename)
            assert remote.sha256 is None or len(remote.sha256) == 64
    datasets.check_declaration(decl)


def test_declare_scene_rejects_inconsistent_declarations() -> None:
    bad = datasets.SceneDeclaration(
        name="Broken", folder="Broken", cube_file="c.npy", cube_key=None, labels_file="l.npy",
        labels_key=None, class_names=("a", "b"), label_values=(1, 2, 3),
    )
    with pytest.raises(UserError, match="2 class names but 3 label values"):
        datasets.declare_scene(bad)
    assert "Broken" not in datasets.CATALOGUE
    with pytest.raises(UserError, match="already declared"):
        datasets.declare_scene(datasets.CATALOGUE["IndianPines"])


def test_declared_scene_with_unknown_label_values(tmp_path: Path) -> None:
    decl = datasets.SceneDeclaration(
        name="Tiny", folder="Tiny", cube_file="cube.npy", cube_key=None, labels_file="gt.npy",
        labels_key=None, class_names=("a", "b"),
    )
    (tmp_path / "Tiny").mkdir()
    np.save(tmp_path / "Tiny" / "cube.npy", np.ones((3, 4, 2), dtype=np.float32))
    np.save(tmp_path / "Tiny" / "gt.npy", np.array([[0, 1, 2, 7]] * 3, dtype=np.uint8))
    with pytest.raises(UserError, match=r"label values \[7\] are neither class values \[1, 2\]"):
        datasets.load_declared(decl, tmp_path)


# --- Custom scenes ---------------------------------------------------------------------------


def _tiny_scene_arrays(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """A 6x5x3 float cube and a label map with unlabelled 0 and classes 2, 5, 9."""
    rng = np.random.default_rng(seed)
    cube = rng.random((6, 5, 3)).astype(np.float32)
    labels = rng.choice(np.array([0, 2, 5, 9], dtype=np.uint8), size=(6, 5))
    labels[0, :4] = [0, 2, 5, 9]  # every value present whatever the draw
    return cube, labels


def _expected_ids(labels: np.ndarray) -> np.ndarray:
    lookup = {0: IGNORE, 2: 0, 5: 1, 9: 2}
    return np.vectorize(lookup.get)(labels)


def _write_pair(tmp_path: Path, fmt: str, cube: np.ndarray, labels: np.ndarray) -> tuple[Path, Path, dict]:
    """Write cube and labels in one format; return their paths and the keys to read them."""
    if fmt == "npy":
        np.save(tmp_path / "cube.npy", cube)
        np.save(tmp_path / "gt.npy", labels)
        return tmp_path / "cube.npy", tmp_path / "gt.npy", {}
    if fmt == "mat":
        scipy.io.savemat(tmp_path / "scene.mat", {"img": cube, "gt": labels})
        return tmp_path / "scene.mat", tmp_path / "scene.mat", {"cube_key": "img", "labels_key": "gt"}
    if fmt == "h5":
        with h5py.File(tmp_path / "scene.h5", "w") as handle:
            handle["cube"], handle["labels"] = cube, labels
        return tmp_path / "scene.h5", tmp_path / "scene.h5", {"cube_key": "cube", "labels_key": "labels"}
    from spectral.io import envi

    envi.save_image(str(tmp_path / "cube.hdr"), cube, dtype=np.float32)
    envi.save_image(str(tmp_path / "gt.hdr"), labels[:, :, None], dtype=np.uint8)
    return tmp_path / "cube.hdr", tmp_path / "gt.hdr", {}


@pytest.mark.parametrize("fmt", ["npy", "mat", "h5", "envi"])
def test_custom_scene_from_every_format(tmp_path: Path, fmt: str) -> None:
    cube, labels = _tiny_scene_arrays()
    cube_path, labels_path, keys = _write_pair(tmp_path, fmt, cube, labels)
    scene = datasets.load_custom_scene(cube_path, labels_path, name="Tiny", **keys)
    assert scene.name == "Tiny" and scene.cube.shape == (6, 5, 3)
    np.testing.assert_allclose(np.asarray(scene.cube), cube)
    np.testing.assert_array_equal(scene.labels, _expected_ids(labels))
    assert scene.label_values == [2, 5, 9]
    assert scene.class_names == ["class 2", "class 5", "class 9"]


def test_custom_scene_class_names_and_ignored_labels(tmp_path: Path) -> None:
    cube, labels = _tiny_scene_arrays()
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "gt.npy", labels)
    scene = datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy", ignored_labels=(0, 9),
                                       class_names=["grass", "road"])
    assert scene.name == "cube" and scene.class_names == ["grass", "road"]
    assert int((scene.labels == IGNORE).sum()) == int(np.isin(labels, [0, 9]).sum())
    with pytest.raises(UserError, match=r"2 class names given but the labels hold 3 classes \(values \[2, 5, 9\]\)"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy", class_names=["grass", "road"])
    with pytest.raises(UserError, match=r"label values \[9\] are neither"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy", label_values=[2, 5],
                                   class_names=["grass", "road"])


def test_custom_scene_size_mismatch(tmp_path: Path) -> None:
    cube, labels = _tiny_scene_arrays()
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "gt.npy", labels[:, :4])
    with pytest.raises(UserError, match="are 6x4 but cube .* is 6x5"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy")


def test_custom_scene_nan_in_cube(tmp_path: Path) -> None:
    cube, labels = _tiny_scene_arrays()
    cube[2, 3, 1] = np.nan
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "gt.npy", labels)
    with pytest.raises(UserError, match="1 NaN or infinite"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy")


def test_custom_scene_bad_metadata(tmp_path: Path) -> None:
    cube, labels = _tiny_scene_arrays()
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "gt.npy", labels.astype(np.float32) + 0.5)
    with pytest.raises(UserError, match="fractional"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy")
    np.save(tmp_path / "gt.npy", labels)
    with pytest.raises(UserError, match=r"rgb_bands \[0, 1, 3\] must lie in 0..2"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy", rgb_bands=[0, 1, 3])
    with pytest.raises(UserError, match="2 wavelengths for a cube of 3 bands"):
        datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy", wavelengths=[500, 600])


# --- YAML scene files -----------------------------------------------------------------------


def _write_yaml_scene(tmp_path: Path) -> Path:
    cube, labels = _tiny_scene_arrays()
    data = tmp_path / "data"
    data.mkdir()
    np.save(data / "cube.npy", cube)
    scipy.io.savemat(data / "gt.mat", {"gt": labels, "other": labels})
    path = tmp_path / "my_scene.yaml"
    path.write_text(
        "name: MyScene\n"
        "cube: {file: data/cube.npy}\n"
        "labels: {file: data/gt.mat, key: gt}\n"
        "class_names: [grass, road, roof]\n"
        "ignored_labels: [0]\n"
        "rgb_bands: [2, 1, 0]\n"
        "wavelengths: [450, 550, 650.5]\n"
    )
    return path


def test_yaml_scene_file(tmp_path: Path) -> None:
    path = _write_yaml_scene(tmp_path)
    scene = datasets.load_scene_file(path)
    _, labels = _tiny_scene_arrays()
    assert scene.name == "MyScene" and scene.class_names == ["grass", "road", "roof"]
    assert scene.rgb_bands == (2, 1, 0)
    np.testing.assert_allclose(scene.wavelengths, [450, 550, 650.5])
    np.testing.assert_array_equal(scene.labels, _expected_ids(labels))
    assert datasets.resolve_scene(str(path), "/unused").name == "MyScene"


def test_yaml_scene_file_errors(tmp_path: Path) -> None:
    path = _write_yaml_scene(tmp_path)
    text = path.read_text()
    path.write_text(text + "colour: red\n")
    with pytest.raises(UserError, match=r"unknown entries \['colour'\]"):
        datasets.load_scene_file(path)
    path.write_text(text.replace("labels: {file: data/gt.mat, key: gt}\n", ""))
    with pytest.raises(UserError, match="missing 'labels' entry"):
        datasets.load_scene_file(path)
    path.write_text(text.replace("key: gt", "key: gtx"))
    with pytest.raises(UserError, match=r"no MATLAB variable named 'gtx'.*'gt'.*'other'"):
        datasets.load_scene_file(path)
    path.write_text("cube: [unclosed\n")
    with pytest.raises(UserError, match="not valid YAML"):
        datasets.load_scene_file(path)
    with pytest.raises(UserError, match="scene file .*absent.yml does not exist"):
        datasets.resolve_scene(str(tmp_path / "absent.yml"), tmp_path)
