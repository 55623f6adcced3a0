"""benchmarks/results_row.py turns finished run folders into one classification.csv row: mean ± sample
standard deviation over the seeds, sizes, times and protocol; a seed given twice, or runs of different
settings, are refused with one line and exit status 2."""
from __future__ import annotations

import csv
import io
import json
import statistics
from pathlib import Path

import pytest

from benchmarks.results_row import main as results_row

PROTOCOL = {"label": "random 0.1, no validation", "split": "random"}


def write_run(folder: Path, seed: int, oa: float, **changes) -> None:
    metrics = {"seed": seed, "model": "SSFTT", "scene": "IndianPines", "epochs": 100, "overall_accuracy": oa,
               "average_accuracy": oa - 0.05, "kappa": oa - 0.01, "parameters": 153224, "n_train": 1027,
               "n_test": 9222, "train_seconds": 100.0 + seed, "inference_seconds": 10.0, "protocol": PROTOCOL,
               **changes}
    (folder / f"seed{seed}").mkdir(parents=True)
    (folder / f"seed{seed}" / "metrics.json").write_text(json.dumps(metrics))


def test_seeds_from_several_folders_make_one_row(tmp_path: Path, capsys):
    write_run(tmp_path / "a", 0, 0.97)
    write_run(tmp_path / "a", 1, 0.98)
    write_run(tmp_path / "b", 2, 0.96)
    assert results_row([str(tmp_path / "a"), str(tmp_path / "b"), "--group", "g", "--command", "python main.py x",
                        "--training_sample", "0.1"]) == 0
    line = capsys.readouterr().out
    with open(Path(__file__).resolve().parents[1] / "docs" / "results" / "classification.csv") as stream:
        columns = next(csv.reader(stream))
    row = next(csv.DictReader(io.StringIO(line), fieldnames=columns))
    assert row["seeds"] == "0-2" and row["model"] == "SSFTT" and row["protocol"] == "random"
    assert row["oa_mean"] == "97.00" and row["oa_std"] == f"{statistics.stdev([97.0, 98.0, 96.0]):.2f}"
    assert (row["oa_min"], row["oa_max"]) == ("96.00", "98.00")
    assert row["train_time_s"] == "101.0" and row["train_px"] == "1027" and row["test_px"] == "9222"
    assert row["note"] == PROTOCOL["label"] and row["command"] == "python main.py x"


@pytest.mark.parametrize("second, message", [
    ({"seed": 0}, "seed 0 is already in another folder"),
    ({"epochs": 50}, "the runs differ in epochs"),
    ({"protocol": {"label": "random 0.1, preprocessing fitted on the scene (leak)", "split": "random"}},
     "the runs differ in protocol"),
])
def test_mixed_runs_are_refused(tmp_path: Path, capsys, second, message):
    write_run(tmp_path / "a", 0, 0.97)
    seed = second.pop("seed", 1)
    write_run(tmp_path / "b", seed, 0.95, **second)
    assert results_row([str(tmp_path / "a"), str(tmp_path / "b"), "--group", "g", "--command", "c"]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1
