"""The command line, run as a user would (a real subprocess): the main job, listing, determinism,
kill-and-resume, and every bad input giving one line, exit status 2 and no half-written run."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import scipy.io

from deephyperx.run_environment import read_environment

ROOT = Path(__file__).resolve().parents[1]


def cli(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEEPHYPERX_DATA": str(cwd / "no-data-here"), "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=env)


def metrics_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if " OA " in line]


def test_list_shows_models_and_scenes(tmp_path):
    result = cli("list", cwd=tmp_path)
    assert result.returncode == 0
    for name in ("SVM_grid", "hu", "nn", "RF", "IndianPines", "SalinasA", "PaviaU", "Houston2013", "Synthetic"):
        assert name in result.stdout


def test_main_job_runs_on_the_embedded_scene_and_repeats_exactly(tmp_path):
    args = ("--model", "hu", "--epoch", "3", "--runs", "2", "--out", "out")
    first = cli(*args, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "embedded Synthetic scene" in first.stderr
    line = metrics_lines(first.stdout)
    assert line and "2 run(s)" in line[0] and "±" in line[0]
    folder = next((tmp_path / "out").iterdir())
    assert {p.name for p in folder.iterdir()} >= {"seed0", "seed1", "results.json", "results.md"}
    results = json.loads((folder / "results.json").read_text())
    assert results["n_runs"] == 2 and results["seeds"] == [0, 1]
    second = cli(*args, cwd=tmp_path)
    assert metrics_lines(second.stdout) == line


def test_sklearn_baseline_from_a_yaml_config(tmp_path):
    (tmp_path / "exp.yaml").write_text("model: SVM_grid\ndataset: Synthetic\ntraining_sample: 0.05\nn_jobs: 1\n")
    result = cli("--config", "exp.yaml", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(next((tmp_path / "o").glob("*/seed0/metrics.json")).read_text())
    assert metrics["overall_accuracy"] > 0.8 and "kernel" in metrics["selected_parameters"]


def test_killed_run_resumes_and_ends_with_the_same_metrics(tmp_path):
    args = ["--model", "hu", "--dataset", "Synthetic", "--epoch", "12", "--flip_augmentation"]
    reference = cli(*args, "--out", "ref", cwd=tmp_path)
    assert reference.returncode == 0, reference.stderr
    env = {**os.environ, "PYTHONHASHSEED": "0", "DEEPHYPERX_DATA": str(tmp_path / "elsewhere")}
    process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args, "--out", "killed"], cwd=tmp_path,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.time() + 120
    checkpoint = None
    while time.time() < deadline and checkpoint is None:
        found = list((tmp_path / "killed").glob("*/seed0.partial/checkpoint.pt"))
        checkpoint = found[0] if found else None
        time.sleep(0.05)
    assert checkpoint is not None, "no checkpoint appeared"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list((tmp_path / "killed").glob("*/seed0/metrics.json")), "the run finished before it was killed"
    resumed = cli(*args, "--out", "killed", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    assert metrics_lines(resumed.stdout) == metrics_lines(reference.stdout)
    ref = json.loads(next((tmp_path / "ref").glob("*/seed0/metrics.json")).read_text())
    got = json.loads(next((tmp_path / "killed").glob("*/seed0/metrics.json")).read_text())
    assert got["confusion_matrix"] == ref["confusion_matrix"]
    log = [json.loads(line) for line in next((tmp_path / "killed").glob("*/seed0/metrics.jsonl")).read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == list(range(12))
    steps = [r["step"] for r in log if r["kind"] == "iteration"]
    assert steps == list(range(1, len(steps) + 1))
    started, resumed_with = read_environment(next((tmp_path / "killed").glob("*/seed0")))
    assert started["resumed_from_epoch"] is None and 0 <= resumed_with["resumed_from_epoch"] < 12
    assert started["torch_threads"] == resumed_with["torch_threads"] >= 1
    assert "warning: this run went on with" not in resumed.stderr
    assert len(read_environment(next((tmp_path / "ref").glob("*/seed0")))) == 1


def test_download_from_a_local_mirror(tmp_path, shared_data):
    import functools
    import http.server
    import threading

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(shared_data))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        mirror = f"http://127.0.0.1:{server.server_address[1]}"
        result = cli("--download", "SalinasA", "--folder", "data", "--mirror", mirror, cwd=tmp_path)
        assert result.returncode == 0, result.stderr
        assert (tmp_path / "data" / "SalinasA" / "SalinasA_corrected.mat").is_file()
        bad = cli("--download", "IndianPines", "--folder", "data", "--mirror", mirror, cwd=tmp_path)
        assert bad.returncode == 2 and "Traceback" not in bad.stderr  # the progress bar shares stderr
        last = bad.stderr.strip().splitlines()[-1]
        assert last.startswith("error: ") and "Indian_pines_corrected.mat" in last and "checksum" in last
        assert not (tmp_path / "data" / "IndianPines" / "Indian_pines_corrected.mat").exists()
    finally:
        server.shutdown()
    trained = cli("--model", "SVM", "--dataset", "SalinasA", "--folder", "data", "--training_sample", "0.05",
                  "--out", "o", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    assert "SVM on SalinasA" in trained.stdout


# ----- bad input -------------------------------------------------------------------------------------

def write_custom_scene(folder: Path, rows=12, cols=10, label_rows=None, nan=False, classes=(1, 2)) -> tuple[str, str]:
    rng = np.random.default_rng(0)
    cube = rng.random((rows, cols, 5)).astype(np.float32)
    if nan:
        cube[3, 4, 1] = np.nan
    labels = rng.choice(classes, size=(label_rows or rows, cols)).astype(np.uint8)
    np.save(folder / "cube.npy", cube)
    scipy.io.savemat(folder / "gt.mat", {"gt": labels})
    return str(folder / "cube.npy"), str(folder / "gt.mat")


def assert_one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, (result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_nothing_written(folder: Path) -> None:
    out = folder / "o"
    assert not out.exists() or not any(out.rglob("*")), list(out.rglob("*"))


def test_unknown_model_lists_choices(tmp_path):
    assert_one_line_error(cli("--model", "hamidaa", "--out", "o", cwd=tmp_path), "hamidaa", "SVM_grid")
    assert_nothing_written(tmp_path)


def test_unknown_scene_lists_choices(tmp_path):
    assert_one_line_error(cli("--model", "hu", "--dataset", "IndianPine", "--out", "o", cwd=tmp_path),
                          "IndianPine", "IndianPines")


def test_missing_scene_files_say_where_and_how(tmp_path):
    result = cli("--model", "hu", "--dataset", "PaviaU", "--folder", str(tmp_path / "data"), "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "PaviaU.mat", "--download PaviaU")
    assert_nothing_written(tmp_path)


def test_corrupt_file(tmp_path):
    (tmp_path / "cube.mat").write_bytes(b"MATLAB 5.0 but truncated")
    _, gt = write_custom_scene(tmp_path)
    result = cli("--model", "SVM", "--cube", str(tmp_path / "cube.mat"), "--gt", gt, "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "cube.mat")
    assert_nothing_written(tmp_path)


def test_cube_and_labels_of_different_sizes(tmp_path):
    cube, gt = write_custom_scene(tmp_path, label_rows=11)
    assert_one_line_error(cli("--model", "SVM", "--cube", cube, "--gt", gt, "--out", "o", cwd=tmp_path), "12x10", "11x10")
    assert_nothing_written(tmp_path)


def test_nan_in_the_cube(tmp_path):
    cube, gt = write_custom_scene(tmp_path, nan=True)
    assert_one_line_error(cli("--model", "SVM", "--cube", cube, "--gt", gt, "--out", "o", cwd=tmp_path), "NaN")
    assert_nothing_written(tmp_path)


def test_patch_larger_than_the_scene(tmp_path):
    result = cli("--model", "hu", "--dataset", "Synthetic", "--patch_size", "500", "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "--patch_size 500")
    assert_nothing_written(tmp_path)


def test_class_with_too_few_pixels_for_the_split(tmp_path):
    result = cli("--model", "SVM", "--dataset", "Synthetic", "--sampling_mode", "fixed", "--training_sample", "5000",
                 "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "5000")
    assert_nothing_written(tmp_path)


def test_label_file_with_unknown_classes(tmp_path):
    cube, gt = write_custom_scene(tmp_path)
    train = np.zeros((12, 10), np.uint8)
    train[0, :5], train[1, :5] = 1, 2
    test = np.zeros((12, 10), np.uint8)
    test[5, :5], test[6, :5] = 2, 99
    scipy.io.savemat(tmp_path / "train.mat", {"train": train})
    scipy.io.savemat(tmp_path / "test.mat", {"test": test})
    result = cli("--model", "SVM", "--cube", cube, "--gt", gt, "--train_set", str(tmp_path / "train.mat"),
                 "--test_set", str(tmp_path / "test.mat"), "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "99")
    assert_nothing_written(tmp_path)


def test_fixed_train_and_test_files_work(tmp_path):
    cube, gt = write_custom_scene(tmp_path)
    labels = scipy.io.loadmat(gt)["gt"]
    train = np.where(np.arange(12)[:, None] < 6, labels, 0).astype(np.uint8)
    test = np.where(np.arange(12)[:, None] >= 6, labels, 0).astype(np.uint8)
    scipy.io.savemat(tmp_path / "train.mat", {"train": train})
    scipy.io.savemat(tmp_path / "test.mat", {"test": test})
    result = cli("--model", "SVM", "--cube", cube, "--gt", gt, "--train_set", str(tmp_path / "train.mat"),
                 "--test_set", str(tmp_path / "test.mat"), "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(next((tmp_path / "o").glob("*/seed0/metrics.json")).read_text())
    assert metrics["n_test"] == int((test > 0).sum())


def test_a_weak_split_is_warned_about_and_recorded(tmp_path):
    """Blocks too large for the scene put far more than the asked share in training: the run goes
    on, says so in one warning line, and records it beside the metrics."""
    result = cli("--model", "nearest", "--sampling_mode", "blocks", "--block_size", "40", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stderr.splitlines() if "is weak" in line]
    assert warnings == ["warning: [nearest Synthetic seed 0] the split is weak: training pixels are 28.6% of the "
                        "labelled pixels, where training_sample=0.1 asked for 10%"]
    metrics = json.loads(next((tmp_path / "o").glob("*/seed0/metrics.json")).read_text())
    assert metrics["split_warnings"] == [warnings[0].split("is weak: ")[1]]
    sound = cli("--model", "nearest", "--out", "o2", cwd=tmp_path)
    assert sound.returncode == 0 and "is weak" not in sound.stderr
    assert json.loads(next((tmp_path / "o2").glob("*/seed0/metrics.json")).read_text())["split_warnings"] == []


def test_checkpoint_of_another_scene_or_not_a_checkpoint(tmp_path):
    trained = cli("--model", "hu", "--dataset", "Synthetic", "--epoch", "1", "--out", "t", cwd=tmp_path)
    assert trained.returncode == 0, trained.stderr
    model = next((tmp_path / "t").glob("*/seed0/model.pt"))
    cube, gt = write_custom_scene(tmp_path)
    result = cli("--model", "hu", "--cube", cube, "--gt", gt, "--restore", str(model), "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "bands")
    (tmp_path / "fake.pt").write_text("hello")
    result = cli("--model", "hu", "--dataset", "Synthetic", "--restore", str(tmp_path / "fake.pt"), "--out", "o",
                 cwd=tmp_path)
    assert_one_line_error(result, "fake.pt", "not a deephyperx checkpoint")
    assert_nothing_written(tmp_path)


@pytest.mark.parametrize("args, fragment", [
    (("--model", "hu", "--epoch", "many"), "--epoch"),
    (("--model", "hu", "--training_sample", "2.5"), "2.5"),
    (("--model", "hu", "--sampling_mode", "diagonal"), "diagonal"),
    (("--model", "hu", "--config", "missing.yaml"), "missing.yaml"),
    (("--model", "SVM", "--patch_size", "5"), "single spectra"),
    (("--model", "hu", "--pca_whiten"), "--pca_whiten needs --pca N"),
    ((), "no --model"),
])
def test_bad_flags(tmp_path, args, fragment):
    assert_one_line_error(cli(*args, "--out", "o", cwd=tmp_path), fragment)
    assert_nothing_written(tmp_path)


def test_spectral_model_refuses_patches(tmp_path):
    result = cli("--model", "hu", "--dataset", "Synthetic", "--patch_size", "5", "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "single spectra", "5x5")
    assert_nothing_written(tmp_path)


def test_an_error_found_during_the_run_leaves_no_partial_folder(tmp_path):
    result = cli("--model", "hu", "--dataset", "Synthetic", "--pca", "500", "--out", "o", cwd=tmp_path)
    assert_one_line_error(result, "PCA to 500 components")
    assert_nothing_written(tmp_path)


def test_a_diverging_run_is_one_line_naming_the_learning_rate(tmp_path):
    result = cli("--model", "hu", "--dataset", "Synthetic", "--epoch", "2", "--lr", "1e37", "--out", "o",
                 cwd=tmp_path)
    plan, *error = result.stderr.splitlines()  # training started (its plan said so), then diverged: one line
    assert plan == "[hu Synthetic seed 0] hu on Synthetic: 2 epochs x 4 batches of 100 a seed, 1 seed"
    result.stderr = "\n".join(error) + "\n"
    assert_one_line_error(result, "every seed diverged", "epoch 1 (loss inf)", "lower --lr (now 1e+37)")
    folder = next((tmp_path / "o").glob("Synthetic_hu_*"))
    assert [p.name for p in folder.iterdir()] == ["seed0.diverged.json"]  # the record only: no half-run
