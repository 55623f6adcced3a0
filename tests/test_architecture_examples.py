"""The worked examples of docs/ARCHITECTURE.md ("Add a model", "Add a scene") run as written, in a
process of their own (their registrations must not leak into the other tests' registry)."""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def example(title: str) -> str:
    """The first Python block under the section ``## title`` of docs/ARCHITECTURE.md."""
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text()
    section = text.split(f"## {title}\n", 1)[1].split("\n## ", 1)[0]
    return re.search(r"```python\n(.*?)```", section, re.DOTALL).group(1)


def run(code: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=cwd, capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "OMP_NUM_THREADS": "1"})


def test_the_add_a_model_example_trains_by_name(tmp_path):
    code = example("Add a model") + (
        "\nimport main\n"
        f"status = main.main(['--model', 'tiny_mlp', '--dataset', 'Synthetic', '--out', {str(tmp_path / 'out')!r}, "
        "'--no_visdom', '--model_args', 'width=16'])\n"
        "assert status == 0, status\n"
        "from deephyperx.registry import get_spec\n"
        "assert get_spec('tiny_mlp').training_defaults()['epoch'] == 5\n")
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "tiny_mlp on Synthetic, 1 run(s): OA" in done.stdout
    (metrics,) = (tmp_path / "out").glob("Synthetic_tiny_mlp_*/seed0/metrics.json")
    assert '"epochs": 5' in metrics.read_text()


def test_the_add_a_scene_example_loads_by_name(tmp_path):
    folder = tmp_path / "data" / "TinyFarm"
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    labels = np.repeat([[1] * 6 + [2] * 6], 10, axis=0).astype(np.uint8)
    np.save(folder / "farm.npy", (rng.random((10, 12, 4)) + labels[..., None]).astype(np.float32))
    np.save(folder / "farm_gt.npy", labels)
    code = example("Add a scene") + (
        "\nimport main\n"
        f"status = main.main(['--model', 'SVM', '--dataset', 'TinyFarm', '--folder', {str(tmp_path / 'data')!r}, "
        f"'--out', {str(tmp_path / 'out')!r}, '--training_sample', '0.5'])\n"
        "assert status == 0, status\n")
    done = run(code, tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "SVM on TinyFarm, 1 run(s): OA" in done.stdout
