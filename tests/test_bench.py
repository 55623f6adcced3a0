"""The benchmark command: every model on every scene, one table, resumable."""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def bench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "bench", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=600, env={**os.environ, "PYTHONHASHSEED": "0"})


ARGS = ("--models", "SVM", "hu", "--datasets", "Synthetic", "--runs", "2", "--epoch", "2", "--out", "b")


def test_bench_writes_one_table_and_resumes(tmp_path):
    first = bench(*ARGS, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    out = tmp_path / "b"
    for name in ("bench.md", "bench.csv", "bench.json", "bench.png"):
        assert (out / name).is_file(), name
    rows = json.loads((out / "bench.json").read_text())
    assert [(r["scene"], r["model"]) for r in rows] == [("Synthetic", "SVM"), ("Synthetic", "hu")]
    assert rows[1]["parameters"] > 0 and rows[1]["train_seconds"] > 0 and rows[1]["epochs"] == 2
    assert rows[0]["epochs"] is None and set(rows[0]["f1_per_class"]) == {f"Class {k}" for k in range(1, 7)}
    table = (out / "bench.md").read_text()
    assert "| Synthetic | hu | random 0.1 | 2 | 2 |" in table and "F1 per class" in table
    # the split's pixels beside the scores (blocks give models of other patch sizes other splits)
    hu_seed0 = json.loads(next(out.glob("Synthetic_hu_*/seed0/metrics.json")).read_text())
    assert rows[1]["train_pixels"] == hu_seed0["n_train"] + hu_seed0["n_validation"] > 0
    assert rows[1]["test_pixels"] == hu_seed0["n_test"] > 0
    assert f"| {rows[1]['train_pixels']:,.0f} / {rows[1]['test_pixels']:,.0f} |" in table
    assert len(list(csv.DictReader((out / "bench.csv").open()))) == 2
    assert Image.open(out / "bench.png").format == "PNG"

    hu_runs = sorted(out.glob("Synthetic_hu_*/seed*"))
    kept = hu_runs[0] / "metrics.json"
    stamp = kept.stat().st_mtime_ns
    lost = hu_runs[1]
    os.rename(lost, lost.with_name(lost.name + ".partial"))  # as if interrupted during that run
    second = bench(*ARGS, cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert kept.stat().st_mtime_ns == stamp  # finished runs are read back, not run again
    assert (lost / "metrics.json").is_file()
    assert json.loads((out / "bench.json").read_text())[1]["overall_accuracy"] == rows[1]["overall_accuracy"]


def test_bench_bad_input_is_one_line(tmp_path):
    result = bench("--models", "SVM", "hamidaa", "--datasets", "Synthetic", "--out", "b", cwd=tmp_path)
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "hamidaa" in result.stderr
    result = bench("--models", "SVM", "--datasets", "Atlantis", "--out", "b", cwd=tmp_path)
    assert result.returncode == 2 and "Atlantis" in result.stderr
    assert not (tmp_path / "b").exists()


def test_runs_for_gives_some_models_fewer_seeds_in_the_same_table(tmp_path):
    result = bench("--models", "SVM", "hu", "--datasets", "Synthetic", "--runs", "3", "--runs_for", "hu=1",
                   "--epoch", "2", "--out", "b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    rows = {r["model"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())}
    assert rows["SVM"]["seeds"] == [0, 1, 2] and rows["hu"]["seeds"] == [0]
    assert "| Synthetic | hu | random 0.1 | 1 | 2 |" in (tmp_path / "b" / "bench.md").read_text()
    assert sorted(p.name for p in (tmp_path / "b").glob("Synthetic_hu_*/seed*")) == ["seed0"]


def test_runs_for_refuses_a_model_not_benchmarked_or_a_bad_count(tmp_path):
    for item, fragment in (("SSRN=1", "not among --models"), ("hu=0", "MODEL=N"), ("hu", "MODEL=N")):
        result = bench("--models", "SVM", "hu", "--datasets", "Synthetic", "--runs_for", item, "--out", "b",
                       cwd=tmp_path)
        assert result.returncode == 2 and result.stderr.count("\n") == 1 and fragment in result.stderr, result.stderr
    assert not (tmp_path / "b").exists()


def test_seeds_run_by_separate_processes_gather_into_one_table_without_training(tmp_path):
    """Parallel bench processes (one per seed, as on a many-core or GPU machine) fill the same
    experiment folder; ``--finished_only`` then builds the table from what finished, training nothing."""
    common = ("--models", "SVM", "hu", "--datasets", "Synthetic", "--epoch", "2", "--out", "b")
    processes = [subprocess.Popen([sys.executable, str(ROOT / "main.py"), "bench", *common, "--seed", str(seed),
                                   "--runs", "1"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                                  stderr=subprocess.PIPE, text=True) for seed in (0, 2)]
    for process in processes:
        assert process.wait(timeout=600) == 0, process.stderr.read()
    table = bench(*common, "--runs", "3", "--finished_only", cwd=tmp_path)
    assert table.returncode == 0, table.stderr
    rows = {r["model"]: r for r in json.loads((tmp_path / "b" / "bench.json").read_text())}
    assert rows["hu"]["seeds"] == [0, 2] and rows["SVM"]["seeds"] == [0, 2]  # seed 1 was never trained
    assert rows["hu"]["devices"] == "cpu x2"
    assert not list((tmp_path / "b").glob("*/seed1*"))
    assert "| Synthetic | hu | random 0.1 | 2 | 2 |" in (tmp_path / "b" / "bench.md").read_text()

    nothing = bench("--models", "hu", "--datasets", "Synthetic", "--epoch", "3", "--out", "c", "--finished_only",
                    cwd=tmp_path)
    assert nothing.returncode == 0 and "no finished seed" in nothing.stdout
    assert not list((tmp_path / "c").glob("*/seed*"))


def test_a_diverging_model_becomes_a_marked_row_and_is_not_retrained(tmp_path):
    """A learning rate that overflows the weights: the pair's every seed diverges at epoch 1; the
    table keeps the other models, marks the pair, and a second command reads the divergence back."""
    (tmp_path / "unstable.yaml").write_text("lr: 1.0e+37\n")
    args = ("--models", "SVM", "hu", "--datasets", "Synthetic", "--runs", "2", "--epoch", "2", "--config",
            "unstable.yaml", "--out", "b")
    first = bench(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "hu on Synthetic: every seed diverged (seed 0 at epoch 1 (loss inf); seed 1 at epoch 1" in first.stdout
    out = tmp_path / "b"
    rows = {r["model"]: r for r in json.loads((out / "bench.json").read_text())}
    assert rows["SVM"]["runs"] == 2 and rows["SVM"]["diverged"] == []
    assert rows["hu"]["runs"] == 0 and rows["hu"]["overall_accuracy"] is None
    assert [(d["seed"], d["epoch"], d["loss"]) for d in rows["hu"]["diverged"]] == [(0, 1, "inf"), (1, 1, "inf")]
    table = (out / "bench.md").read_text()
    assert "| Synthetic | hu | random 0.1 | 0; diverged: seed 0 (epoch 1), 1 (epoch 1) | 2 | - | diverged |" in table
    assert {r["model"]: r["diverged_seeds"] for r in csv.DictReader((out / "bench.csv").open())} == \
        {"SVM": "", "hu": "0 1"}
    assert Image.open(out / "bench.png").format == "PNG"
    markers = sorted(out.glob("Synthetic_hu_*/seed*.diverged.json"))
    assert [m.name for m in markers] == ["seed0.diverged.json", "seed1.diverged.json"]
    assert not list(out.glob("Synthetic_hu_*/seed*.partial"))  # nothing finite was ever checkpointed
    stamps = [m.stat().st_mtime_ns for m in markers]

    again = bench(*args, "--finished_only", cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert [m.stat().st_mtime_ns for m in markers] == stamps
    assert "0; diverged: seed 0 (epoch 1), 1 (epoch 1)" in (out / "bench.md").read_text()


def test_runs_cell_names_the_seeds_left_out():
    from deephyperx.bench import runs_cell

    assert runs_cell({"runs": 5, "diverged": []}) == "5"
    assert runs_cell({"runs": 4, "diverged": [{"seed": 3, "epoch": 12, "loss": "nan"}]}) == \
        "4; diverged: seed 3 (epoch 12)"
