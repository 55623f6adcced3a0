"""``python main.py generate``: a run on a tiny custom scene end to end, restoring its generator,
and every bad input giving one line, exit status 2 and nothing written."""
from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main
import models.generators  # noqa: F401  (registers cgan and cvae)
from deephyperx.checkpoint import save_checkpoint
from deephyperx.spectra_file import read_spectra_file
from deephyperx.synthetic import make_synthetic_scene

ROOT = Path(__file__).resolve().parents[1]
HAS_REALISM = importlib.util.find_spec("deephyperx.realism") is not None
SMALL = "epoch_samples: 320\nmodel_args:\n  width: 16\n"


def write_scene(folder: Path, n_bands: int = 16, prefix: str = "") -> list[str]:
    """A 40x40 custom scene of 4 classes as .npy files; the flags that name it."""
    scene = make_synthetic_scene(seed=1, rows=40, cols=40, n_bands=n_bands, n_classes=4)
    np.save(folder / f"{prefix}cube.npy", scene.cube)
    np.save(folder / f"{prefix}gt.npy", (scene.labels + 1).astype(np.int16))
    return ["--cube", f"{prefix}cube.npy", "--gt", f"{prefix}gt.npy"]


def generate(args: list[str], folder: Path, capsys) -> tuple[int, str]:
    """Run ``main.py generate`` in-process from ``folder``; the exit status and standard error."""
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = main.main(["generate", *args])
    finally:
        os.chdir(cwd)
    return code, capsys.readouterr().err


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """One complete run of the command: (folder, scene flags)."""
    folder = tmp_path_factory.mktemp("generate")
    flags = write_scene(folder)
    (folder / "small.yaml").write_text(SMALL)
    args = ["--model", "cvae", *flags, "--epoch", "1", "--batch_size", "32", "--config", "small.yaml",
            "--samples_per_class", "10", "--out", "syn.h5", "--runs_dir", "runs"]
    if not HAS_REALISM:
        args.append("--no_report")
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        code = main.main(["generate", *args])
    finally:
        os.chdir(cwd)
    assert code == 0
    return folder, flags


def test_command_writes_spectra_and_a_run_folder(finished):
    folder, _ = finished
    data = read_spectra_file(folder / "syn.h5", n_bands=16, class_names=[f"class {k}" for k in range(1, 5)])
    assert data.spectra.shape == (40, 16) and np.bincount(data.labels).tolist() == [10] * 4
    assert data.model == "cvae" and data.config["epoch_samples"] == 320
    run = next((folder / "runs").glob("*/seed0"))
    assert (run / "model.pt").is_file() and (run / "config.yaml").is_file()
    assert (run / "realism" / "realism.json").is_file() == HAS_REALISM


def test_tensorboard_follows_the_generator_as_it_trains(tmp_path, capsys):
    """The monitoring flags of ``main.py`` work for ``generate`` too: the losses and validation
    scores of each epoch reach TensorBoard's event files."""
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    flags = write_scene(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    code, err = generate(["--model", "cvae", *flags, "--epoch", "2", "--batch_size", "32", "--config", "small.yaml",
                          "--samples_per_class", "5", "--out", "syn.h5", "--runs_dir", "runs", "--no_report",
                          "--no_visdom", "--tensorboard", "tb"], tmp_path, capsys)
    assert code == 0, err
    events = EventAccumulator(str(next(p.parent for p in (tmp_path / "tb").rglob("events.out.tfevents*"))))
    events.Reload()
    tags = events.Tags()["scalars"]
    assert any("loss" in tag for tag in tags), tags
    assert any("val_" in tag for tag in tags), tags


def test_restored_generator_makes_chosen_classes(finished, capsys):
    folder, flags = finished
    model = str(next((folder / "runs").glob("*/seed0/model.pt")))
    code, err = generate(["--model", "cvae", *flags, "--restore", model, "--classes", "class 2", "--no_report",
                          "--samples_per_class", "3", "--out", "two.h5", "--runs_dir", "runs2"], folder, capsys)
    assert code == 0, err
    data = read_spectra_file(folder / "two.h5")
    assert data.labels.tolist() == [1, 1, 1]


def test_checkpoint_of_another_band_count_is_refused(finished, capsys):
    folder, _ = finished
    model = str(next((folder / "runs").glob("*/seed0/model.pt")))
    other = write_scene(folder, n_bands=12, prefix="b12_")
    before = sorted(p.name for p in folder.iterdir())
    code, err = generate(["--model", "cvae", *other, "--restore", model, "--out", "x.h5", "--runs_dir", "runs3"],
                         folder, capsys)
    assert code == 2 and err.startswith("error: ") and err.count("\n") == 1 and "expects 16 bands" in err
    assert sorted(p.name for p in folder.iterdir()) == before


@pytest.fixture
def scene_folder(tmp_path):
    flags = write_scene(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    normaliser = {"method": "minmax", "shift": [0.0] * 8, "scale": [1.0] * 8}
    save_checkpoint(tmp_path / "bands8.pt", {"config": {"model": "cvae"}, "n_bands": 8, "model_state": {},
                                             "class_names": [f"class {k}" for k in range(1, 5)],
                                             "normalisers": {"cube": normaliser}})
    save_checkpoint(tmp_path / "no_weights.pt", {"config": {"model": "cvae"}, "n_bands": 16, "model_state": {},
                                                 "class_names": [f"class {k}" for k in range(1, 5)],
                                                 "normalisers": {"cube": {**normaliser, "shift": [0.0] * 16,
                                                                          "scale": [1.0] * 16}}})
    save_checkpoint(tmp_path / "classifier.pt", {"config": {"model": "hu"}, "n_bands": 16, "model_state": {},
                                                 "class_names": [f"class {k}" for k in range(1, 5)]})
    return tmp_path, flags


BAD = [
    (["--classes", "class 9"], "'class 9' is not a class"),
    (["--samples_per_class", "0"], "--samples_per_class 0"),
    (["--samples_per_class", "-4"], "--samples_per_class -4"),
    (["--model", "hu"], "does not run"),
    (["--model", "no_such_model"], "unknown model"),
    (["--restore", "bands8.pt"], "expects 8 bands"),
    (["--restore", "classifier.pt"], "neural model 'hu'"),
    (["--restore", "no_weights.pt"], "does not hold cvae weights"),
    (["--restore", "missing.pt"], "does not exist"),
    (["--training_sample", "0"], "--training_sample"),
    (["--epcoh", "3"], "unrecognized arguments"),
    (["--out", "."], "is a folder"),
]


@pytest.mark.parametrize("extra, message", BAD)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(extra, message, scene_folder, capsys):
    folder, flags = scene_folder
    before = sorted(p.name for p in folder.iterdir())
    args = ["--model", "cvae", *flags, "--config", "small.yaml", "--epoch", "1", "--out", "x.h5",
            "--runs_dir", "runs", *extra]
    code, err = generate(args, folder, capsys)
    assert code == 2
    assert err.startswith("error: ") and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in folder.iterdir()) == before


def test_missing_model_and_scene_are_named(scene_folder, capsys):
    folder, flags = scene_folder
    code, err = generate([*flags], folder, capsys)
    assert code == 2 and "no --model" in err and "cgan" in err
    code, err = generate(["--model", "cgan"], folder, capsys)
    assert code == 2 and "no --dataset" in err


REGISTERED = "generators" in (ROOT / "models" / "__init__.py").read_text()


@pytest.mark.skipif(not REGISTERED, reason="models/__init__.py does not import models.generators yet")
def test_command_line_as_a_user_runs_it(tmp_path):
    flags = write_scene(tmp_path)
    (tmp_path / "small.yaml").write_text(SMALL)
    command = [sys.executable, str(ROOT / "main.py"), "generate", "--model", "cgan", *flags, "--epoch", "1",
               "--config", "small.yaml", "--runs_dir", "runs", "--no_report", "--samples_per_class", "4", "--out", "s.h5"]
    ok = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert np.bincount(read_spectra_file(tmp_path / "s.h5").labels).tolist() == [4] * 4


@pytest.mark.skipif(not HAS_REALISM, reason="needs the realism report")
def test_realism_summary_averages_the_seeds_reports(finished, capsys, tmp_path):
    """benchmarks/realism_summary.py: mean ± sample std over the seeds' own realism reports."""
    import json

    folder, flags = finished
    code, err = generate(["--model", "cvae", *flags, "--epoch", "1", "--batch_size", "32", "--config", "small.yaml",
                          "--samples_per_class", "10", "--seed", "1", "--out", "syn1.h5", "--runs_dir", "runs"],
                         folder, capsys)
    assert code == 0, err
    script = ROOT / "benchmarks" / "realism_summary.py"
    done = subprocess.run([sys.executable, str(script), str(folder), "--out", str(tmp_path / "summary")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    (row,) = json.loads((tmp_path / "summary" / "realism_summary.json").read_text())
    assert row["seeds"] == [0, 1] and row["generator"] == "cvae" and row["scene"] == "cube"
    reports = [json.loads(p.read_text()) for p in sorted((folder / "runs").glob("*/seed*/realism/realism.json"))]
    tstr = [100 * r["utility"]["linear_svm"]["tstr"]["overall_accuracy"] for r in reports]
    assert row["stats"]["linear_svm_tstr"]["mean"] == pytest.approx(np.mean(tstr))
    assert row["stats"]["linear_svm_tstr"]["std"] == pytest.approx(np.std(tstr, ddof=1))
    two_sample = [100 * r["two_sample"]["accuracy"] for r in reports]
    assert row["stats"]["two_sample"]["mean"] == pytest.approx(np.mean(two_sample))
    threads = torch.get_num_threads()  # both seeds ran in this process
    assert row["torch_threads"] == [[threads], [threads]]
    table = (tmp_path / "summary" / "realism_summary.md").read_text()
    assert f"| cube | random 0.1 | cvae | 0, 1 | {threads}, {threads} |" in table
    for seed, value in enumerate(tstr):  # each seed's own row, after the summary
        assert f"| cube | random 0.1 | cvae | {seed} | {threads} | " in table.split("## Each seed")[1]
        assert row["per_seed"][seed]["linear_svm_tstr"] == pytest.approx(value)
        assert f" | {value:.2f} | " in table.split(f"| cvae | {seed} | {threads} | ")[1].split("\n")[0]
    next((folder / "runs").glob("*/seed1/environment.jsonl")).unlink()  # a run from before the record
    again = subprocess.run([sys.executable, str(script), str(folder), "--out", str(tmp_path / "summary")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0, again.stderr
    assert f"| 0, 1 | {threads}, ? |" in (tmp_path / "summary" / "realism_summary.md").read_text()

    empty = subprocess.run([sys.executable, str(script), str(tmp_path / "nothing"), "--out", str(tmp_path / "x")],
                           capture_output=True, text=True, timeout=120)
    assert empty.returncode == 2 and empty.stderr.count("\n") == 1 and "nothing" in empty.stderr
    assert not (tmp_path / "x").exists()
