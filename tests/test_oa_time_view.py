"""The zoo's OA against CPU training time: which time each model gets (its rows' own CPU runs, else
registered epochs x the measured seconds per epoch), the points file and figure the results pages write,
and benchmarks/epoch_times.py, which measures the seconds per epoch on a real engine run."""
from __future__ import annotations

import csv
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.results_pages import (EPOCH_TIMES, TIME_FIGURE, TIME_POINTS, load_epoch_times, read_time_points,
                                      zoo_time_points)
from deephyperx.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "docs" / "results"


def row(group: str, model: str, **values: str) -> dict[str, str]:
    base = {"group": group, "model": model, "variant": "", "scene": "IndianPines", "protocol": "random",
            "training_sample": "0.1", "epochs": "100", "oa_mean": "90.00", "oa_std": "", "train_time_s": "",
            "device": "CPU 2 cores"}
    return {**base, **values}


def test_a_model_gets_its_own_cpu_time_else_epochs_times_seconds_per_epoch():
    rows = [
        row("zoo_modern_ip_random10", "SSFTT", variant="leak-free", oa_mean="97.22", oa_std="0.41",
            train_time_s="153.8"),
        row("zoo_modern_ip_random10", "SSFTT", variant="--fit_preprocessing scene (leak)", oa_mean="97.10",
            train_time_s="148.5"),  # the paper protocol's row is not the model's point
        row("zoo_ip_random10", "SSFTT", oa_mean="50.00", train_time_s="1.0"),  # an earlier table's row loses
        row("zoo_modern_ip_random10", "A2S2K", variant="leak-free, early stopping 20", epochs="55", oa_mean="97.00",
            train_time_s="1100.0"),
        row("zoo_ip_random10", "hu", epochs="1500", device="CPU 2 cores and NVIDIA H100 (by seed)",
            train_time_s="99.0"),  # a time partly on a GPU is not a CPU time
        row("zoo_ip_random10", "li", epochs="", oa_mean="89.63"),
        row("zoo_ip_random10", "mou", oa_mean="49.72"),  # no epoch time measured
        row("zoo_ip_random10", "liu", protocol="disjoint-blocks", train_time_s="5.0"),  # another protocol
        row("engine_ip", "SVM_grid", epochs="", oa_mean="79.48", train_time_s="10.1"),
    ]
    epoch_times = {"hu": {"seconds_per_epoch": 0.5, "registered_epochs": 1500},
                   "li": {"seconds_per_epoch": 2.0, "registered_epochs": 200}}
    points, untimed = zoo_time_points(rows, epoch_times)
    by_model = {p.model: p for p in points}
    assert [p.model for p in points] == ["SVM_grid", "SSFTT", "li", "hu", "A2S2K"]  # sorted by time
    assert by_model["SSFTT"].measured and by_model["SSFTT"].seconds == 153.8 and by_model["SSFTT"].oa_mean == 97.22
    assert not by_model["hu"].measured and by_model["hu"].seconds == 750.0  # 1500 epochs x 0.5 s
    assert by_model["li"].seconds == 400.0 and by_model["li"].epochs == 200  # no epochs in the row: registered
    assert untimed == ["mou"]


def test_the_committed_points_are_the_pages_and_the_figure_exists():
    points = read_time_points(RESULTS / TIME_POINTS)
    assert points and all(p.seconds > 0 for p in points)
    assert (RESULTS / TIME_FIGURE).read_text(encoding="utf-8").lstrip().startswith("<?xml")
    page = (RESULTS / "classification.md").read_text(encoding="utf-8")
    assert f"]({TIME_FIGURE})" in page
    for p in points:
        assert f"| `{p.model}` | {p.oa_mean:.2f}" in page


def test_a_damaged_epoch_times_file_is_one_line_and_status_2(tmp_path):
    data = tmp_path / "results"
    shutil.copytree(RESULTS, data)
    (data / EPOCH_TIMES).write_text('{"rows": [{"model": "hu"}]}', encoding="utf-8")
    with pytest.raises(UserError, match="is not an epoch-times report"):
        load_epoch_times(data)
    before = {p.name: p.read_bytes() for p in data.iterdir()}
    done = subprocess.run([sys.executable, "benchmarks/results_pages.py", "--data", str(data)], cwd=ROOT,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 2 and done.stderr.count("\n") == 1 and "Traceback" not in done.stderr
    assert {p.name: p.read_bytes() for p in data.iterdir()} == before  # nothing written


def test_new_points_redraw_the_figure(tmp_path):
    data = tmp_path / "results"
    shutil.copytree(RESULTS, data)
    (data / TIME_FIGURE).unlink()
    with open(data / "classification.csv", newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        header, table = reader.fieldnames, list(reader)
    ssftt = next(r for r in table if r["group"] == "zoo_modern_ip_random10" and r["variant"] == "leak-free")
    ssftt["train_time_s"] = "600.0"
    with open(data / "classification.csv", "w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=header, lineterminator="\n")
        writer.writeheader()
        writer.writerows(table)
    done = subprocess.run([sys.executable, "benchmarks/results_pages.py", "--data", str(data)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert (data / TIME_FIGURE).is_file()
    assert next(p for p in read_time_points(data / TIME_POINTS) if p.model == "SSFTT").seconds == 600.0


def test_epoch_times_trains_real_epochs_and_projects_the_schedule(tmp_path):
    out = tmp_path / "times.json"
    done = subprocess.run([sys.executable, "benchmarks/epoch_times.py", "--models", "hu", "--epochs", "2",
                           "--dataset", "Synthetic", "--json", str(out)], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(out.read_text(encoding="utf-8"))
    (timed,) = report["rows"]
    assert timed["model"] == "hu" and timed["epochs_timed"] == 2 and timed["registered_epochs"] == 1500
    assert timed["seconds_per_epoch"] > 0
    assert timed["projected_schedule_s"] == pytest.approx(timed["train_seconds"] / 2 * 1500, rel=0.02)
    assert report["command"].startswith("python benchmarks/epoch_times.py --models hu")
    bad = subprocess.run([sys.executable, "benchmarks/epoch_times.py", "--models", "SVM", "--dataset", "Synthetic",
                          "--json", str(tmp_path / "svm.json")], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "SVM is a sklearn model" in bad.stderr and "Traceback" not in bad.stderr
