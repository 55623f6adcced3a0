"""benchmarks/out_of_core.py at a small size: it builds a cube on disk, maps it tile by tile under the
budget in a child process and reports the measured peak; and it refuses a model that cannot map."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "out_of_core.py"


def run_script(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(SCRIPT), *args], cwd=ROOT, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_a_small_cube_is_mapped_in_several_tiles_and_measured(tmp_path):
    """At this size the process's own noise dwarfs a 1 MB budget, so the measured peak is only
    checked for consistency; the planner's estimate must respect the budget."""
    report = tmp_path / "report.json"
    done = run_script("--height", "60", "--width", "48", "--bands", "12", "--budget", "1MB", "--model", "li",
                      "--threads", "1", "--folder", str(tmp_path), "--out", str(report))
    assert done.returncode == 0, done.stderr
    result = json.loads(report.read_text())
    assert result["scene"]["bytes_on_disk"] >= 60 * 48 * 12 * 4
    assert result["model"]["name"] == "li" and result["model"]["patch_size"] == 5
    assert result["speed"]["tiles"] > 1 and result["speed"]["dense_pass"] is True
    assert result["speed"]["pixels_per_second"] > 0
    memory = result["memory"]
    assert memory["budget_bytes"] == 1_000_000 and memory["estimated_peak_bytes"] <= memory["budget_bytes"]
    assert memory["peak_rss_bytes"] >= memory["baseline_rss_bytes"] > 0
    assert memory["peak_above_baseline_bytes"] == memory["peak_rss_bytes"] - memory["baseline_rss_bytes"]
    assert "--model li" in result["commands"]["benchmark"]
    assert not (tmp_path / "map_60x48x12.npy").exists()  # the map is deleted unless --keep_map


def test_a_model_that_cannot_map_a_cube_is_refused_in_one_line(tmp_path):
    for model in ("segnet", "nope"):
        done = run_script("--model", model, "--folder", str(tmp_path))
        assert done.returncode == 2
        assert done.stderr.startswith(f"error: --model '{model}'") and done.stderr.count("\n") == 1
    assert not list(tmp_path.iterdir())
