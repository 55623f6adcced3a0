"""``main.py segment`` as a user runs it: a tiny tile set written to disk, a narrow SegNet trained
for a few crops, reports, determinism, kill-and-resume, and bad input giving one line, exit
status 2 and nothing written."""
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
import torch
import yaml
from PIL import Image

from deephyperx.run_environment import read_environment

ROOT = Path(__file__).resolve().parents[1]
#: A narrow network and a short schedule: seconds on a CPU.
TINY = ("--crop", "32", "--stride", "16", "--batch_size", "4", "--model_args", "width=0.125")
#: The reference run's training and detection settings.
SCHEDULE = ("--epoch", "6", "--epoch_samples", "16", "--val_fraction", "0.25", "--predict_train", "--detect", "building",
            "--focus_class", "building")


def write_tiles(folder: Path, size: int = 64, dsm_size: int | None = None) -> dict[str, list[str]]:
    """Two tiles 'a' (train) and 'b' (test): RGB PNG, a DSM .npy and class-value labels (0 = unknown,
    1 road, 2 building (tall), 3 tree) in blocks, with colours that tell the classes apart."""
    folder.mkdir(parents=True, exist_ok=True)
    files: dict[str, list[str]] = {"images": [], "labels": [], "dsm": []}
    colours = np.array([[0, 0, 0], [120, 120, 120], [200, 60, 60], [40, 160, 40]], float)
    for i, name in enumerate(("a", "b")):
        rng = np.random.default_rng(i)
        blocks = rng.integers(1, 4, (size // 8, size // 8))
        labels = np.kron(blocks, np.ones((8, 8), int)).astype(np.uint8)
        labels[:2, :2] = 0
        image = np.clip(colours[labels] + rng.normal(0, 10, (size, size, 3)), 0, 255).astype(np.uint8)
        dsm = (labels == 2) * 8.0 + rng.normal(0, 0.2, (size, size))
        if dsm_size is not None:
            dsm = np.resize(dsm, (dsm_size, dsm_size))
        Image.fromarray(image).save(folder / f"{name}.png")
        Image.fromarray(labels).save(folder / f"{name}_gt.png")
        np.save(folder / f"{name}_dsm.npy", dsm.astype(np.float32))
        files["images"].append(str(folder / f"{name}.png"))
        files["labels"].append(str(folder / f"{name}_gt.png"))
        files["dsm"].append(str(folder / f"{name}_dsm.npy"))
    return files


def custom_args(files: dict[str, list[str]]) -> list[str]:
    return ["--images", *files["images"], "--labels", *files["labels"], "--extra", "dsm=" + ",".join(files["dsm"]),
            "--class_names", "road", "building", "tree", "--test_tiles", "b"]


def segment(*args: str, cwd: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "DEEPHYPERX_CACHE": str(cwd / "cache"),
           "DEEPHYPERX_DATA": str(cwd / "no-data-here")}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "segment", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict[str, list[str]], subprocess.CompletedProcess]:
    """One complete run of segnet on the two-source custom tile set, with detection of buildings."""
    folder = tmp_path_factory.mktemp("segment")
    files = write_tiles(folder / "tiles")
    result = segment("--model", "segnet", *custom_args(files), "--sources", "image", "dsm", *TINY, *SCHEDULE,
                     "--out", "ref", "--tensorboard", "tb", cwd=folder)
    return folder, files, result


def test_a_custom_two_source_tile_set_trains_predicts_scores_and_reports(reference):
    folder, _, result = reference
    assert result.returncode == 0, result.stderr
    assert "segnet on a, 1 run(s): OA" in result.stdout and "eroded GT" in result.stdout
    assert "objects of class building: precision" in result.stdout
    experiment = next((folder / "ref").iterdir())
    run = experiment / "seed0"
    assert {"results.json", "results.md", "seed0"} <= {p.name for p in experiment.iterdir()}
    for name in ("metrics.json", "summary.md", "model.pt", "config.yaml", "confusion.png", "confusion_eroded.png",
                 "map.png", "report.html", "metrics.jsonl", "predictions/b.npy", "predictions/b.png",
                 "predictions/b_comparison.png", "predictions/b_building_probability.npy",
                 "objects/b_building.csv", "objects/b_building.geojson"):
        assert (run / name).is_file(), name
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["sources"] == ["image", "dsm"] and metrics["epochs"] == 6
    config = yaml.safe_load((run / "config.yaml").read_text())
    assert config["focus_class"] == "building" and config["focus_fraction"] == 0.5  # half the crops on buildings
    assert metrics["n_test"] == 64 * 64 - 4  # every labelled pixel of the test tile b (its 2x2 corner is unknown)
    assert {"mean_f1", "mean_iou", "kappa"} <= set(metrics) and metrics["eroded"]["n_test"] < metrics["n_test"]
    assert [row["name"] for row in metrics["per_class"]] == ["road", "building", "tree"]
    assert metrics["regions"][0]["name"] == "b"
    assert metrics["n_validation_regions"] == 1 and 0 <= metrics["train"]["overall_accuracy"] <= 1
    epochs = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert all("val_oa" in record for record in epochs if record["kind"] == "epoch")
    prediction = np.load(run / "predictions" / "b.npy")
    assert prediction.shape == (64, 64) and prediction.min() >= 0 and prediction.max() <= 2
    probability = np.load(run / "predictions" / "b_building_probability.npy")
    assert ((probability >= 0) & (probability <= 1)).all()
    detection = metrics["detection"]
    assert detection["class"] == "building" and detection["tp"] + detection["fn"] > 0
    geojson = json.loads((run / "objects" / "b_building.geojson").read_text())
    assert len(geojson["features"]) == detection["objects"]
    assert list((folder / "tb" / "a_segnet_seed0").glob("events.out.tfevents.*"))  # the optional monitors of main.py
    checkpoint = torch.load(run / "model.pt", weights_only=True)
    assert checkpoint["channels"] == [3, 1] and set(checkpoint["normalisers"]) == {"image", "dsm"}
    aggregate = json.loads((experiment / "results.json").read_text())
    assert aggregate["n_runs"] == 1 and aggregate["mean_iou"]["mean"] == pytest.approx(metrics["mean_iou"])


def test_a_restored_model_only_evaluates_with_zero_epochs_and_gives_the_same_scores(reference):
    folder, files, result = reference
    assert result.returncode == 0, result.stderr
    model = next((folder / "ref").glob("*/seed0/model.pt"))
    again = segment("--model", "segnet", *custom_args(files), "--sources", "image", "dsm", *TINY, "--epoch", "0",
                    "--restore", str(model), "--out", "restored", cwd=folder)
    assert again.returncode == 0, again.stderr
    first = json.loads(next((folder / "ref").glob("*/seed0/metrics.json")).read_text())
    second = json.loads(next((folder / "restored").glob("*/seed0/metrics.json")).read_text())
    assert second["epochs"] == 0
    assert second["confusion_matrix"] == first["confusion_matrix"]


def test_reuse_finished_reads_a_complete_seed_back_instead_of_training_it_again(reference):
    folder, files, result = reference
    assert result.returncode == 0, result.stderr
    model = next((folder / "ref").glob("*/seed0/model.pt"))
    stamp = model.stat().st_mtime_ns
    before = json.loads(next((folder / "ref").glob("*/results.json")).read_text())
    again = segment("--model", "segnet", *custom_args(files), "--sources", "image", "dsm", *TINY, *SCHEDULE,
                    "--out", "ref", "--reuse_finished", cwd=folder)
    assert again.returncode == 0, again.stderr
    assert "epoch 1/6" not in again.stdout + again.stderr  # nothing trained
    assert model.stat().st_mtime_ns == stamp
    after = json.loads(next((folder / "ref").glob("*/results.json")).read_text())
    assert after["mean_iou"] == before["mean_iou"] and after["runs"] == before["runs"]


def test_a_killed_run_resumes_from_its_checkpoint_and_ends_with_the_same_metrics(reference):
    folder, files, result = reference
    assert result.returncode == 0, result.stderr
    args = ["--model", "segnet", *custom_args(files), "--sources", "image", "dsm", *TINY, *SCHEDULE, "--out", "killed"]
    env = {**os.environ, "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1", "DEEPHYPERX_CACHE": str(folder / "cache")}
    process = subprocess.Popen([sys.executable, str(ROOT / "main.py"), "segment", *args], cwd=folder,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline, checkpoint = time.time() + 120, None
    while time.time() < deadline and checkpoint is None:
        found = list((folder / "killed").glob("*/seed0.partial/checkpoint.pt"))
        checkpoint = found[0] if found else None
        time.sleep(0.02)
    assert checkpoint is not None, "no checkpoint appeared"
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not list((folder / "killed").glob("*/seed0/metrics.json")), "the run finished before it was killed"
    resumed = segment(*args, cwd=folder)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stderr
    first = json.loads(next((folder / "ref").glob("*/seed0/metrics.json")).read_text())
    second = json.loads(next((folder / "killed").glob("*/seed0/metrics.json")).read_text())
    assert second["confusion_matrix"] == first["confusion_matrix"]
    assert second["detection"] == first["detection"]
    epochs = [json.loads(line)["epoch"] for line in
              next((folder / "killed").glob("*/seed0/metrics.jsonl")).read_text().splitlines()
              if json.loads(line)["kind"] == "epoch"]
    assert epochs == list(range(6))  # the resumed log reads as one uninterrupted run
    records = read_environment(next((folder / "killed").glob("*/seed0")))
    assert [r["omp_num_threads"] for r in records] == ["1", "1"]
    assert records[0]["resumed_from_epoch"] is None and records[1]["resumed_from_epoch"] in range(6)


def test_bad_input_exits_2_with_one_line_through_a_real_process(tmp_path):
    files = write_tiles(tmp_path / "tiles")
    result = segment("--model", "fusenet", "--images", *files["images"], "--labels", *files["labels"],
                     "--out", "o", cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "has no 'dsm'" in result.stderr
    assert not (tmp_path / "o").exists()


def bad_cases(tmp_path: Path) -> list[tuple[list[str], str]]:
    files = write_tiles(tmp_path / "tiles")
    other = write_tiles(tmp_path / "odd", dsm_size=48)
    torch.save({"conv.weight": torch.zeros(8, 3, 3, 3), "bn.weight": torch.zeros(8)}, tmp_path / "vgg.pth")
    base = custom_args(files)
    return [
        (["--model", "segnet", "--dataset", "NoSuchSet", "--folder", str(tmp_path)], "unknown tile set"),
        (["--model", "nosuchmodel", *base], "unknown model"),
        (["--model", "hu", *base], "does not run"),
        (["--model", "segnet", *custom_args(other), "--sources", "image", "dsm"], "same size"),
        (["--model", "fusenet", "--images", *files["images"], "--labels", *files["labels"]], "has no 'dsm'"),
        (["--model", "segnet", *base, "--sources", "image", "ndsm"], "has no 'ndsm'"),
        (["--model", "segnet", *base, "--crop", "48"], "multiple of 32"),
        (["--model", "segnet", *base, "--stride", "64", "--crop", "32"], "stride"),
        (["--model", "segnet", *base, "--model_args", f"vgg_weights={tmp_path / 'vgg.pth'}"], "vgg_weights"),
        (["--model", "segnet", *base, "--model_args", "depth=3"], "no option"),
        (["--model", "segnet", *base, "--detect", "boat"], "no such class"),
        (["--model", "segnet", *base, "--focus_class", "boat"], "--focus_class boat: no such class"),
        (["--model", "segnet", *base, "--focus_fraction", "0.3"], "needs --focus_class"),
        (["--model", "segnet", *base, "--focus_class", "1", "--focus_fraction", "0"], "must be a number in (0, 1]"),
        (["--model", "segnet", "--images", *files["images"], "--extra", "dsm"], "SOURCE=FILE"),
        (["--model", "segnet", *base, "--restore", str(tmp_path / "missing.pt")], "does not exist"),
        (["--model", "segnet", "--labels", *files["labels"]], "give --images"),
    ]


def test_every_bad_input_gives_one_line_status_2_and_writes_nothing(tmp_path, capsys, monkeypatch):
    import main

    monkeypatch.setenv("DEEPHYPERX_CACHE", str(tmp_path / "cache"))
    for args, expected in bad_cases(tmp_path):
        out = tmp_path / "out"
        status = main.main(["segment", *args, "--out", str(out)])
        captured = capsys.readouterr()
        assert status == 2, (args, captured)
        assert captured.err.startswith("error: ") and captured.err.count("\n") == 1, captured.err
        assert expected in captured.err, (expected, captured.err)
        assert not out.exists(), args


def test_list_shows_the_segmentation_models_and_tile_sets(capsys):
    import main

    assert main.main(["segment", "list"]) == 0
    shown = capsys.readouterr().out
    for name in ("segnet", "fusenet", "vfusenet", "segnet_rc", "segnet_dt", "VaihingenCrop", "SyntheticAerial"):
        assert name in shown
    assert "hu " not in shown  # only the segmentation family


def test_segment_detect_runs_the_object_extraction_on_files(tmp_path, capsys):
    import main

    prediction = np.zeros((20, 30), np.int64)
    prediction[2:6, 3:9] = 2
    prediction[10:14, 20:25] = 2
    np.save(tmp_path / "prediction.npy", prediction)
    status = main.main(["segment", "detect", "--prediction", str(tmp_path / "prediction.npy"), "--class", "car",
                        "--class-names", "road", "building", "car", "--out", str(tmp_path / "objects")])
    assert status == 0, capsys.readouterr().err
    rows = (tmp_path / "objects" / "objects.csv").read_text().splitlines()
    assert len(rows) == 3 and "objects=2" in capsys.readouterr().out
