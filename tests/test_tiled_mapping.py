"""Out-of-core mapping: tiles much smaller than the scene give the in-memory map (borders
included) for centre-pixel and dense-output models and every cube and map format; the memory
budget sets the tiles or refuses clearly; an interrupted job leaves no map and resumes."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, Optional

import h5py
import numpy as np
import pytest
import spectral.io.envi as envi
import tifffile
import torch

import main  # the command line: its plugins (and the zoo)
from deephyperx.checkpoint import save_checkpoint
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.inference import centre_logits, predict_centre, predict_dense
from deephyperx.mapping_cli import command
from deephyperx.preprocessing import fit_normaliser, fit_pca
from deephyperx.registry import create_model, get_spec
from deephyperx.runner import run_experiment
from deephyperx.sampling import PatchSampler
from deephyperx.scene import IGNORE
from deephyperx.seeding import seed_everything
from deephyperx.sizes import parse_size
from deephyperx.tiled_mapping import TilePlan, load_mapping_model, map_scene, plan_mapping, prepare_job
from deephyperx.lazy_cube import open_lazy_cube

ROOT = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
GEO_TAGS = [(33550, "d", 3, (30.0, 30.0, 0.0), True),
            (33922, "d", 6, (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0), True),
            (34735, "H", 8, (1, 1, 0, 1, 3072, 0, 1, 32631), True)]


# ----- helpers (also used by test_dask_mapping) --------------------------------------------------

def make_cube(height: int = 23, width: int = 19, bands: int = 10, seed: int = 0) -> np.ndarray:
    """A seeded cube with spatial structure (smooth blobs plus noise) in sensor-like units."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:height, 0:width]
    signal = np.stack([np.sin(rows / (2 + b) + b) + np.cos(cols / (3 + b)) for b in range(bands)], axis=-1)
    return (500 + 200 * signal + 50 * rng.standard_normal((height, width, bands))).astype(np.float32)


def save_model(path: Path, model: str, cube: np.ndarray, n_classes: int = 4, pca: Optional[int] = None,
               **settings: Any) -> Path:
    """A checkpoint of the same shape as a run's model.pt: a registered model's seeded weights,
    its resolved configuration and normalisation (and PCA) fitted on the cube."""
    layer = {"seed": 1, **settings}
    if pca:
        layer["reduction"] = {"name": "pca", "components": pca}
    config = resolve_config(get_spec(model), layer)
    every = np.ones(cube.shape[:2], dtype=bool)
    normaliser = fit_normaliser(cube, every, "standard")
    projection = fit_pca(normaliser.apply(cube), every, pca) if pca else None
    seed_everything(config["seed"])  # as a run does: the weights depend on the seed only
    network = create_model(model, n_bands=pca or cube.shape[2], n_classes=n_classes,
                           patch_size=config["patch_size"], seed=config["seed"], **config["model_args"])
    save_checkpoint(path, {"model_state": network.state_dict(), "config": config,
                           "normalisers": {"cube": normaliser.state_dict()},
                           "projection": projection.state_dict() if projection else None,
                           "n_bands": cube.shape[2], "class_names": [f"c{k}" for k in range(n_classes)],
                           "scene": "test"})
    return path


def in_memory_map(checkpoint: Path, cube: np.ndarray) -> np.ndarray:
    """The whole-scene prediction, as a run makes it: one PatchSampler over the normalised cube."""
    model = load_mapping_model(checkpoint)
    sampler = PatchSampler([model.features(cube)], np.full(cube.shape[:2], IGNORE), model.patch_size)
    if model.dense:
        return predict_dense(model.network, sampler, model.n_classes, 64, CPU, model.stride)
    return predict_centre(model.network, sampler, 64, CPU)


def read_map(path: Path, name: str = "classes") -> np.ndarray:
    if path.suffix == ".npy":
        return np.load(path)
    if path.suffix in (".h5", ".hdf5"):
        with h5py.File(path, "r") as handle:
            return handle[name][()]
    return tifffile.imread(path)


def write_cube(folder: Path, cube: np.ndarray, kind: str) -> Path:
    if kind == "npy":
        np.save(folder / "cube.npy", cube)
        return folder / "cube.npy"
    if kind == "h5":
        with h5py.File(folder / "cube.h5", "w") as handle:
            handle.create_dataset("cube", data=cube, chunks=(7, 7, cube.shape[2]), compression="gzip")
        return folder / "cube.h5"
    if kind == "envi":
        envi.save_image(str(folder / "cube.hdr"), cube, interleave="bil", force=True)
        return folder / "cube.hdr"
    tifffile.imwrite(folder / "cube.tif", cube, photometric="minisblack", planarconfig="contig", extratags=GEO_TAGS,
                     **({"compression": "zlib", "tile": (16, 16)} if kind == "tif_tiled" else {}))
    return folder / "cube.tif"


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """A 23x19x10 cube on disk, a hamida checkpoint (patch 5, dense pass) and its in-memory map."""
    folder = tmp_path_factory.mktemp("scene")
    cube = make_cube()
    checkpoint = save_model(folder / "hamida.pt", "hamida", cube)
    reference = in_memory_map(checkpoint, cube)
    assert len(np.unique(reference)) > 1  # a map worth comparing
    return {"cube": cube, "path": write_cube(folder, cube, "npy"), "checkpoint": checkpoint, "reference": reference}


# ----- tiles and budget --------------------------------------------------------------------------

def test_memory_sizes_are_read_like_dask():
    assert parse_size("2GB") == 2 * 10 ** 9
    assert parse_size("500 MB") == 500 * 10 ** 6
    assert parse_size("1.5GiB") == 3 * 2 ** 29
    assert parse_size(1000) == 1000
    for bad in ("lots", "2 GBs", "-1MB", "0"):
        with pytest.raises(UserError, match="size"):
            parse_size(bad)


def test_tiles_cover_the_scene_and_their_halo_is_the_scene_padding(scene):
    cube = scene["cube"]
    padded = np.pad(cube, ((2, 2), (2, 2), (0, 0)), mode="reflect")  # PatchSampler's padding for patch 5
    plan = TilePlan(23, 19, 6, 2, 2, "reflect")
    cover = np.zeros((23, 19), dtype=int)
    for index, (r0, r1, c0, c1) in enumerate(plan.windows):
        cover[r0:r1, c0:c1] += 1
        read, rows, cols = plan.source(index)
        block = cube[read[0]:read[1], read[2]:read[3]][np.ix_(rows, cols)]
        np.testing.assert_array_equal(block, padded[r0:r1 + 4, c0:c1 + 4])
    assert len(plan) == 16 and (cover == 1).all()


@pytest.mark.parametrize("kind", ["npy", "h5", "envi", "tif", "tif_tiled"])
def test_tiled_map_equals_the_in_memory_map_for_every_cube_format(scene, tmp_path, kind):
    path = write_cube(tmp_path, scene["cube"], kind)
    report = map_scene(scene["checkpoint"], path, tmp_path / "map.npy", tile_side=5, progress=False)
    assert report.tiles == 20 and report.computed == 20  # 5x4 tiles of at most 5x5 on a 23x19 scene
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), scene["reference"])


@pytest.mark.parametrize("out", ["map.npy", "map.h5", "map.tif"])
def test_every_map_format_holds_the_map_and_probabilities(scene, tmp_path, out):
    report = map_scene(scene["checkpoint"], scene["path"], tmp_path / out, tile_side=7, probabilities=True,
                       progress=False)
    target = tmp_path / out
    np.testing.assert_array_equal(read_map(target), scene["reference"])
    probabilities_path = target if target.suffix == ".h5" else tmp_path / f"map.probabilities{target.suffix}"
    probabilities = read_map(probabilities_path, "probabilities")
    assert probabilities.dtype == np.float16 and probabilities.shape == (23, 19, 4)
    model = load_mapping_model(scene["checkpoint"])
    sampler = PatchSampler([model.features(scene["cube"])], np.full((23, 19), IGNORE), 5)
    expected = torch.softmax(centre_logits(model.network, sampler, 64, CPU), 1).view(23, 19, 4).numpy()
    np.testing.assert_allclose(probabilities.astype(np.float32), expected, atol=2e-3)
    description = json.loads((tmp_path / "map.json").read_text())
    assert description["classes"] == {"0": "c0", "1": "c1", "2": "c2", "3": "c3"}
    assert sorted(p.name for p in report.files) == sorted({target.name, probabilities_path.name})
    assert not list(tmp_path.glob("*.partial*"))


def test_patch_by_patch_models_and_pca_map_alike(tmp_path):
    """hamida on 3x3 patches has no exact dense pass (batches of patches); PCA features too."""
    cube = make_cube(17, 21, 12, seed=1)
    np.save(tmp_path / "cube.npy", cube)
    checkpoint = save_model(tmp_path / "h3.pt", "hamida", cube, patch_size=3, pca=6)
    report = map_scene(checkpoint, tmp_path / "cube.npy", tmp_path / "map.npy", tile_side=4, batch_size=7,
                       progress=False)
    assert not report.dense_pass and report.batch_size == 7
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), in_memory_map(checkpoint, cube))


@pytest.mark.parametrize("stride", [1, 2])
def test_dense_output_model_maps_like_predict_dense(tmp_path, stride):
    cube = make_cube(19, 17, 8, seed=2)
    np.save(tmp_path / "cube.npy", cube)
    checkpoint = save_model(tmp_path / "lee.pt", "lee", cube, test_stride=stride, model_args={"width": 8})
    reference = in_memory_map(checkpoint, cube)
    assert len(np.unique(reference)) > 1
    map_scene(checkpoint, tmp_path / "cube.npy", tmp_path / "map.npy", tile_side=4, probabilities=True,
              progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), reference)
    probabilities = np.load(tmp_path / "map.probabilities.npy").astype(np.float32)
    np.testing.assert_allclose(probabilities.sum(-1), 1.0, atol=5e-3)


def test_a_small_budget_forces_many_tiles_within_it(tmp_path):
    cube = make_cube(64, 48, 10)
    np.save(tmp_path / "cube.npy", cube)
    checkpoint = save_model(tmp_path / "hamida.pt", "hamida", cube)
    model, lazy = load_mapping_model(checkpoint), open_lazy_cube(tmp_path / "cube.npy")
    budget = parse_size("500KB")
    plan, _, memory = plan_mapping(model, lazy, budget)
    assert memory.total <= budget and len(plan) >= 9
    assert len(plan_mapping(model, lazy, parse_size("1GB"))[0]) == 1  # a roomy budget: one tile
    report = map_scene(checkpoint, tmp_path / "cube.npy", tmp_path / "map.npy", memory_budget="500KB",
                       progress=False)
    assert report.tiles == len(plan) and report.estimated_peak <= budget
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), in_memory_map(checkpoint, cube))


def test_a_budget_below_one_tile_is_refused_before_anything_is_written(scene, tmp_path):
    with pytest.raises(UserError) as error:
        map_scene(scene["checkpoint"], scene["path"], tmp_path / "map.tif", memory_budget="10KB", progress=False)
    message = str(error.value)
    needed = message.split("needs ")[1].split(")")[0]
    assert message.startswith("memory budget 10.0 kB cannot hold one 16x16 tile of 10 bands for model hamida")
    assert f"raise --memory_budget to at least {needed}" in message
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(UserError, match="cannot hold"):
        map_scene(scene["checkpoint"], scene["path"], tmp_path / "map.tif", progress=False,
                  memory_budget=str(parse_size(needed) - 1000))
    map_scene(scene["checkpoint"], scene["path"], tmp_path / "map.tif", memory_budget=needed, progress=False)


def test_an_interrupted_job_leaves_no_map_and_resumes_where_it_stopped(scene, tmp_path):
    out = tmp_path / "map.tif"

    def stop_after_three(index: int) -> None:
        if stop_after_three.seen == 2:
            raise KeyboardInterrupt
        stop_after_three.seen += 1

    stop_after_three.seen = 0
    with pytest.raises(KeyboardInterrupt):
        map_scene(scene["checkpoint"], scene["path"], out, tile_side=6, probabilities=True, progress=False,
                  on_tile=stop_after_three)
    assert not out.exists() and not (tmp_path / "map.probabilities.tif").exists()
    manifest = json.loads((tmp_path / "map.tif.partial.json").read_text())
    assert len(manifest["done"]) == 3 and (tmp_path / "map.tif.partial").is_file()

    with pytest.raises(UserError, match="belongs to another mapping job.*same options"):
        map_scene(scene["checkpoint"], scene["path"], out, tile_side=5, probabilities=True, progress=False)

    report = map_scene(scene["checkpoint"], scene["path"], out, tile_side=6, probabilities=True, progress=False)
    assert (report.skipped, report.computed, report.tiles) == (3, 13, 16)
    np.testing.assert_array_equal(tifffile.imread(out), scene["reference"])
    assert not (tmp_path / "map.tif.partial").exists() and not (tmp_path / "map.tif.partial.json").exists()


def test_a_job_that_fails_before_its_first_tile_leaves_no_trace(scene, tmp_path):
    bad = tmp_path / "bad.npy"
    np.save(bad, scene["cube"][:, :, :3])
    with pytest.raises(UserError, match="has 3 bands but checkpoint .* expects 10"):
        map_scene(scene["checkpoint"], bad, tmp_path / "map.npy", progress=False)
    job = prepare_job(scene["checkpoint"], scene["path"], tmp_path / "map.npy", tile_side=8)
    with pytest.raises(RuntimeError):
        job.run(iter([]), progress=False)  # no tile came: finish refuses, nothing is kept
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.npy"]


def test_an_unreadable_chunk_stops_the_job_with_one_line_and_no_map(scene, tmp_path):
    path = write_cube(tmp_path, scene["cube"], "h5")
    with h5py.File(path, "r") as handle:
        info = handle["cube"].id.get_chunk_info(8)  # chunk (1, 2): rows 7:14, cols 14:19, near the middle
    with open(path, "r+b") as handle:
        handle.seek(info.byte_offset)
        handle.write(b"\xff" * info.size)
    with pytest.raises(UserError, match=r"cube.h5: cannot read window rows \d+:\d+, cols \d+:\d+") as error:
        map_scene(scene["checkpoint"], path, tmp_path / "map.npy", tile_side=8, progress=False)
    assert "\n" not in str(error.value)
    assert not (tmp_path / "map.npy").exists()


def test_geotiff_georeferencing_is_carried_to_the_map(scene, tmp_path):
    path = write_cube(tmp_path, scene["cube"], "tif_tiled")
    map_scene(scene["checkpoint"], path, tmp_path / "map.tif", tile_side=8, probabilities=True, progress=False)
    for name in ("map.tif", "map.probabilities.tif"):
        with tifffile.TiffFile(tmp_path / name) as tif:
            tags = tif.pages[0].tags
            assert tags[33550].value == (30.0, 30.0, 0.0)
            assert tags[33922].value == (0.0, 0.0, 0.0, 500000.0, 4000000.0, 0.0)
            assert tags[34735].value == (1, 1, 0, 1, 3072, 0, 1, 32631)
    description = json.loads((tmp_path / "map.json").read_text())
    assert description["georeference"]["geotiff"]["ModelPixelScaleTag"] == [30.0, 30.0, 0.0]


def test_a_checkpoint_written_by_a_run_maps_to_the_runs_own_prediction(small_scene, tmp_path):
    config = resolve_config(get_spec("hamida"), {"epoch": 1, "out": str(tmp_path / "runs"), "training_sample": 0.5,
                                                 "val_fraction": 0.0})
    config["dataset"] = "Stripes"
    folder = Path(run_experiment(small_scene, config)["folder"]) / "seed0"
    np.save(tmp_path / "cube.npy", small_scene.cube)
    map_scene(folder / "model.pt", tmp_path / "cube.npy", tmp_path / "map.npy", tile_side=6, progress=False)
    np.testing.assert_array_equal(np.load(tmp_path / "map.npy"), np.load(folder / "prediction.npy"))


# ----- command line ------------------------------------------------------------------------------

def test_the_command_line_maps_a_scene(scene, tmp_path, capsys):
    assert command(["--restore", str(scene["checkpoint"]), "--cube", str(scene["path"]), "--out",
                    str(tmp_path / "map.h5"), "--memory_budget", "50MB", "--no_progress"], main.plugins()) == 0
    np.testing.assert_array_equal(read_map(tmp_path / "map.h5"), scene["reference"])
    assert "map 23x19 written to" in capsys.readouterr().err


@pytest.mark.parametrize("argv, pattern", [
    (["--cube", "c.npy", "--out", "m.tif"], "required: --restore"),
    (["--restore", "m.pt", "--cube", "c.npy", "--out", "m.tif", "--bogus"], "unrecognized arguments: --bogus"),
    (["--restore", "m.pt", "--cube", "c.npy", "--out", "m.tif", "--batch_size", "many"], "invalid int value"),
    (["--restore", "{ckpt}", "--cube", "{cube}", "--out", "m.png"], "unknown map format '.png'"),
    (["--restore", "{ckpt}", "--cube", "{cube}", "--out", "m.tif", "--memory_budget", "lots"], "not a size"),
    (["--restore", "{ckpt}", "--cube", "missing.npy", "--out", "m.tif"], "no such file"),
    (["--restore", "missing.pt", "--cube", "{cube}", "--out", "m.tif"], "does not exist"),
    (["--restore", "{ckpt}", "--cube", "{cube}", "--out", "m.tif", "--dask", "somewhere"], "neither 'local'"),
    (["--restore", "{ckpt}", "--cube", "{cube}", "--out", "{cube}"], "would overwrite .*cube.npy, an input"),
])
def test_bad_command_lines_are_one_line_errors(scene, tmp_path, monkeypatch, argv, pattern):
    monkeypatch.chdir(tmp_path)
    argv = [a.format(ckpt=scene["checkpoint"], cube=scene["path"]) for a in argv]
    with pytest.raises(UserError, match=pattern) as error:
        command(argv, main.plugins())
    assert "\n" not in str(error.value)
    assert not list(tmp_path.glob("m.*"))


def test_a_bad_command_line_exits_with_status_2_and_one_line(tmp_path):
    result = subprocess.run([sys.executable, "main.py", "map", "--restore", "m.pt", "--cube",
                             str(tmp_path / "none.npy"), "--out", str(tmp_path / "m.tif"), "--workers", "two"],
                            cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: argument --workers: invalid int")


@pytest.mark.parametrize("text", ["2G", "2GB", "2 gb", "2000M", "2000MB", "2e9", 2_000_000_000])
def test_every_way_of_writing_two_gigabytes_is_read_alike(text):
    assert parse_size(text) == 2 * 10 ** 9
    assert parse_size("2GiB") == parse_size("2048MiB") == 2 * 2 ** 30
