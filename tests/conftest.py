"""Shared fixtures: where the real scenes are, and small seeded scenes made by code."""
from __future__ import annotations

import contextlib
import gc
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
torch.set_num_threads(1)  # tiny test models run faster on one thread, and the suite never oversubscribes

SHARED_DATA = Path(os.environ.get("DEEPHYPERX_SHARED_DATA", ROOT.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The folder of real scenes (``../shared/data``); tests needing it skip when it is absent."""
    if not (SHARED_DATA / "IndianPines" / "Indian_pines_gt.mat").is_file():
        pytest.skip(f"real scenes not found under {SHARED_DATA} (set DEEPHYPERX_SHARED_DATA)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def synthetic_scene():
    """The embedded synthetic scene (seed 0)."""
    from deephyperx.synthetic import make_synthetic_scene

    return make_synthetic_scene(seed=0)


@pytest.fixture
def small_scene():
    """A 24x20 scene of 3 classes in vertical stripes with 8 bands: each class a distinct spectrum."""
    from deephyperx.scene import Scene

    rng = np.random.default_rng(0)
    labels = np.repeat(np.array([0, 1, 2]), [8, 6, 6])[None, :].repeat(24, axis=0)
    labels[:2] = -1
    signatures = np.array([[1, 0, 0, 1, 0, 0, 1, 0], [0, 1, 0, 0, 1, 0, 0, 1], [0, 0, 1, 0, 0, 1, 0, 0]], float)
    cube = signatures[np.clip(labels, 0, None)] + 0.05 * rng.standard_normal((24, 20, 8))
    return Scene("Stripes", cube.astype(np.float32), labels.astype(np.int64), ["a", "b", "c"])


@pytest.fixture
def tmpfs(tmp_path):
    """Mount a small tmpfs, a real file system of a chosen size or a read-only one, for tests of full
    and read-only disks: ``with tmpfs("size=4m") as folder: ...`` (root only; the test skips otherwise)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")

    @contextlib.contextmanager
    def mount(options: str):
        folder = Path(tmp_path) / f"tmpfs{len(list(tmp_path.glob('tmpfs*')))}"
        folder.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True)
        try:
            yield folder
        finally:
            gc.collect()  # close what a failed in-process run left open there
            subprocess.run(["umount", "--lazy", str(folder)], check=True)

    return mount
