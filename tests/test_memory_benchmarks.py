"""The memory benchmarks measure what they say: benchmarks/peak_rss_models.py reports each run's peak
resident size from the kernel for a real main.py process, and deephyperx.tensor_peak.TensorPeak counts the
tensors alive at once (kept ones until freed, temporaries only while they live)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import torch

from benchmarks.peak_rss_models import main as peak_rss_models
from deephyperx.tensor_peak import TensorPeak


def test_peak_rss_of_real_runs(tmp_path: Path):
    out = tmp_path / "peak.json"
    assert peak_rss_models(["--models", "hu", "SVM", "--runs", "1", "--json", str(out), "--", "--dataset",
                            "Synthetic", "--epoch", "1", "--n_jobs", "1"]) == 0
    result = json.loads(out.read_text())
    assert result["python"] == sys.executable and set(result["models"]) == {"hu", "SVM"}
    for entry in result["models"].values():
        assert len(entry["runs_mb"]) == 1 and entry["min_mb"] == entry["median_mb"] == entry["max_mb"]
        assert 150 < entry["median_mb"] < 4000  # a Python process with torch loaded, not this one's size


def test_a_folder_without_main_py_is_refused(tmp_path: Path, capsys):
    with pytest.raises(SystemExit) as stop:
        peak_rss_models(["--models", "hu", "--checkout", str(tmp_path), "--json", str(tmp_path / "x.json")])
    assert stop.value.code == 2 and "no main.py" in capsys.readouterr().err
    assert not (tmp_path / "x.json").exists()


def test_tensor_peak_counts_live_tensors():
    megabyte = 2**20 // 4  # float32 elements
    with TensorPeak() as tensors:
        kept = torch.ones(25 * megabyte)
        for _ in range(5):
            temporary = torch.ones(10 * megabyte) * 2  # ones (10 MB) and the product (10 MB) live together
        live = tensors.live
        del kept, temporary
    assert live == 35 * 2**20  # the kept tensor and the last product
    assert tensors.peak == 55 * 2**20  # kept + previous product + a new ones + its product
    assert tensors.live == 0
