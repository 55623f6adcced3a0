"""Mapping on Dask, for real: a LocalCluster of two worker processes gives the single-process map,
and a job whose workers die stops with one line, keeps its partial map and resumes.

These tests start one Dask LocalCluster (two worker processes that import torch and the zoo):
about 20-30 s together on an idle machine. Leave them out with ``pytest -k "not dask"``.
"""
from __future__ import annotations

import os
import signal
import time

import numpy as np
import pytest
import tifffile

distributed = pytest.importorskip("distributed")

import dask  # noqa: E402

from deephyperx.dask_mapping import dask_client, map_scene_dask  # noqa: E402
from deephyperx.errors import UserError  # noqa: E402
from deephyperx.tiled_mapping import map_scene  # noqa: E402
from test_tiled_mapping import in_memory_map, make_cube, save_model  # noqa: E402


@pytest.fixture(scope="module")
def scene(tmp_path_factory) -> dict:
    """A 23x19x10 cube and a hamida checkpoint on 3x3 patches (batches of patches in the workers)."""
    folder = tmp_path_factory.mktemp("dask_scene")
    cube = make_cube()
    np.save(folder / "cube.npy", cube)
    checkpoint = save_model(folder / "hamida3.pt", "hamida", cube, patch_size=3)
    reference = in_memory_map(checkpoint, cube)
    assert len(np.unique(reference)) > 1
    return {"path": folder / "cube.npy", "checkpoint": checkpoint, "reference": reference}


@pytest.fixture(scope="module")
def client():
    """A LocalCluster of two single-threaded worker processes started by ``--dask local``'s code, with
    no retry of a task whose worker dies (so that the death test fails fast)."""
    with dask.config.set({"distributed.scheduler.allowed-failures": 0}), dask_client("local", workers=2) as client:
        yield client


def test_dask_local_cluster_of_two_workers_gives_the_single_process_map(scene, client, tmp_path):
    """Dask test (the LocalCluster of 2 worker processes)."""
    assert len(client.scheduler_info()["workers"]) == 2
    single = map_scene(scene["checkpoint"], scene["path"], tmp_path / "single.npy", tile_side=6, probabilities=True,
                       progress=False)
    report = map_scene_dask(scene["checkpoint"], scene["path"], tmp_path / "dask.npy", tile_side=6, probabilities=True,
                            scheduler=client.scheduler.address, imports=("models",), progress=False)
    assert report.tiles == single.tiles == 16 and report.computed == 16
    np.testing.assert_array_equal(np.load(tmp_path / "dask.npy"), np.load(tmp_path / "single.npy"))
    np.testing.assert_array_equal(np.load(tmp_path / "dask.npy"), scene["reference"])
    np.testing.assert_array_equal(np.load(tmp_path / "dask.probabilities.npy"),
                                  np.load(tmp_path / "single.probabilities.npy"))


def test_an_unreachable_scheduler_is_one_line_and_writes_nothing(scene, tmp_path):
    with pytest.raises(UserError, match="cannot reach the Dask scheduler at tcp://127.0.0.1:9"):
        map_scene_dask(scene["checkpoint"], scene["path"], tmp_path / "map.npy", scheduler="tcp://127.0.0.1:9",
                       progress=False)
    assert list(tmp_path.iterdir()) == []


def test_dask_workers_that_die_stop_the_job_which_then_resumes(scene, client, tmp_path):
    """Dask test (runs last: it kills a worker of the cluster). Every tile is submitted at once; after
    the first tile is written, a worker process is killed while it maps another one; with no retry
    allowed that tile fails, the job stops with one line and no map, and a rerun (here in one
    process) resumes from the tiles already written."""
    out = tmp_path / "map.tif"
    address, victim = next(iter(client.run(os.getpid).items()))

    def kill_worker(index: int) -> None:
        if kill_worker.done:
            return
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not client.processing()[address]:
            time.sleep(0.002)
        os.kill(victim, signal.SIGKILL)
        kill_worker.done = True

    kill_worker.done = False
    with pytest.raises(UserError, match=r"worker died while mapping tile \d+ .* run the same command again") as error:
        map_scene_dask(scene["checkpoint"], scene["path"], out, tile_side=2, scheduler=client.scheduler.address,
                       imports=("models",), progress=False, on_tile=kill_worker, in_flight=120)
    assert "\n" not in str(error.value)
    assert not out.exists() and (tmp_path / "map.tif.partial").is_file()
    report = map_scene(scene["checkpoint"], scene["path"], out, tile_side=2, progress=False)
    assert report.skipped >= 1 and report.skipped + report.computed == report.tiles == 120
    np.testing.assert_array_equal(tifffile.imread(out), scene["reference"])
