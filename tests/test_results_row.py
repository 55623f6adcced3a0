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


def test_early_stopped_seeds_make_one_row_with_their_epochs(tmp_path: Path, capsys):
    stopping = {"label": "random 0.1, val 11% of test (leak), early stopping 20", "split": "random",
                "early_stopping": 20, "validation": {"from": "test", "per_class": None}}
    write_run(tmp_path / "a", 0, 0.97, epochs=61, best_epoch=41, stopped_early=True, protocol=stopping,
              n_validation=1013)
    write_run(tmp_path / "a", 1, 0.98, epochs=200, best_epoch=190, protocol=stopping)  # never stalled
    assert results_row([str(tmp_path / "a"), "--group", "g", "--command", "c"]) == 0
    line = capsys.readouterr().out
    with open(Path(__file__).resolve().parents[1] / "docs" / "results" / "classification.csv") as stream:
        columns = next(csv.reader(stream))
    row = next(csv.DictReader(io.StringIO(line), fieldnames=columns))
    assert row["epochs"] == "130"  # mean of 61 and 200, rounded
    assert row["train_px"] == "1027"  # validation pixels taken from the test set are not training pixels
    assert row["note"] == (stopping["label"] + "; seed 0: 61 epochs, weights of epoch 41; seed 1: 200 epochs "
                           "(the whole schedule), weights of epoch 190")


def test_split_overlap_counts_test_pixels_inside_training_patches(tmp_path: Path, capsys):
    import numpy as np

    from benchmarks.split_overlap import main as split_overlap

    train, test = np.zeros((9, 9), np.uint8), np.zeros((9, 9), np.uint8)
    train[4, 4] = 1
    test[4, 5] = test[4, 7] = test[0, 0] = 2  # at distances 1, 3 and 4 from the training pixel
    np.save(tmp_path / "tr.npy", train)
    np.save(tmp_path / "te.npy", test)
    assert split_overlap(["--train", str(tmp_path / "tr.npy"), "--test", str(tmp_path / "te.npy"), "--patch",
                          "1", "3", "7", "9", "--json", str(tmp_path / "o.json")]) == 0
    result = json.loads((tmp_path / "o.json").read_text())
    assert result["train_px"] == 1 and result["test_px"] == 3 and result["both"] == 0
    assert result["test_share_inside_a_training_patch"] == {"1": 0.0, "3": round(1 / 3, 4), "7": round(2 / 3, 4),
                                                            "9": 1.0}
    np.save(tmp_path / "small.npy", np.zeros((5, 9), np.uint8))
    with pytest.raises(SystemExit) as stop:
        split_overlap(["--train", str(tmp_path / "small.npy"), "--test", str(tmp_path / "te.npy")])
    assert stop.value.code == 2 and "5x9" in capsys.readouterr().err
