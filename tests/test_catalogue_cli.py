"""``main.py catalogue``: a centre-pixel model (hu) trained on the training tiles of a catalogue
through a cache far smaller than the catalogue scores over 90 % on held-out tiles; the run folder
holds the reports and a model.pt that ``main.py --restore`` maps a single scene with; an
interrupted run resumes to exactly the uninterrupted result; bad input exits with status 2 and one
line, leaving nothing behind."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import main as main_py
from deephyperx import checkpoint as ckpt
from deephyperx.catalogue_cli import CatalogueTask, experiment_id, file_sha256
from deephyperx.experiment import Experiment
from deephyperx.scene_catalogue import load_catalogue, write_catalogue
from test_scene_catalogue import TEST_TILES, write_tiles


def command(argv: list[str]) -> int:
    """``main.py catalogue ARGV`` in this process."""
    return main_py.main(["catalogue", *argv])


ROOT = Path(__file__).resolve().parents[1]
CLASSES = ["class 1", "class 2", "class 3"]  # the names main.py gives a custom scene's classes
CACHE = "300kB"
TRAIN_FLAGS = ["--model", "hu", "--epoch", "2", "--epoch_samples", "2000", "--batch_size", "32", "--lr", "0.05",
               "--cache_bytes", CACHE, "--seed", "0"]


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory) -> Path:
    """12 tiles of an easily separable synthetic acquisition (3 classes), 3 of them held out."""
    folder = tmp_path_factory.mktemp("catalogue")
    entries = write_tiles(folder, seed=4, n_classes=3)
    return write_catalogue(folder / "tiles.yaml", entries, CLASSES, name="tiles", split={"test_scenes": TEST_TILES})


@pytest.fixture(scope="module")
def trained(catalogue, tmp_path_factory) -> Path:
    """The run folder of one training run through the command line."""
    out = tmp_path_factory.mktemp("runs")
    assert command(["--catalogue", str(catalogue), *TRAIN_FLAGS, "--out", str(out)]) == 0
    (folder,) = [p for p in out.glob("tiles_hu_*/seed0")]
    return folder


def test_hu_trained_on_a_catalogue_scores_held_out_scenes(trained, catalogue):
    assert not list(trained.parent.glob("*.partial"))
    for name in ("metrics.json", "scenes.md", "summary.md", "confusion.png", "model.pt", "config.yaml",
                 "metrics.jsonl", "report.html"):
        assert (trained / name).is_file(), name
    metrics = json.loads((trained / "metrics.json").read_text())
    assert metrics["overall_accuracy"] > 0.9 and metrics["epochs"] == 2 and metrics["samples_trained"] == 4000
    scored = {row["scene"]: row for row in metrics["scenes"] if "overall_accuracy" in row}
    assert sorted(scored) == TEST_TILES and all(row["n_train"] == 0 for row in scored.values())
    assert sum(row["n_test"] for row in metrics["scenes"]) == metrics["n_test"]
    cache = metrics["cache"]
    assert cache["peak_bytes"] <= cache["max_bytes"] == 300_000 < metrics["catalogue_float32_bytes"] / 2
    assert all(epoch["misses"] <= metrics["blocks"] for epoch in cache["per_epoch"])
    table = (trained / "scenes.md").read_text()
    assert all(f"| {name} | test |" in table for name in TEST_TILES)


def test_model_pt_has_the_runner_format_and_maps_a_single_scene(trained, catalogue, tmp_path):
    """main.py --restore model.pt --epoch 0 on one held-out tile: the checkpoint carries what the
    single-scene runner needs (model, bands, classes, normaliser, no projection)."""

    data = ckpt.load_checkpoint(trained / "model.pt")
    assert data["config"]["model"] == "hu" and data["n_bands"] == 16 and data["class_names"] == CLASSES
    assert set(data["normalisers"]) == {"cube"} and data["projection"] is None and "model_state" in data
    tile = catalogue.parent / "t10"
    assert sorted(np.unique(np.load(f"{tile}_gt.npy"))) == [0, 1, 2, 3]
    status = main_py.main(["--model", "hu", "--cube", f"{tile}.npy", "--gt", f"{tile}_gt.npy", "--restore",
                           str(trained / "model.pt"), "--epoch", "0", "--out", str(tmp_path), "--no_visdom"])
    assert status == 0
    (metrics,) = tmp_path.glob("t10_hu_*/seed0/metrics.json")
    assert json.loads(metrics.read_text())["overall_accuracy"] > 0.9


def test_an_interrupted_run_resumes_to_the_uninterrupted_result(trained, catalogue, tmp_path):
    from deephyperx.catalogue_cli import build_parser, cli_settings, resolve_catalogue_config
    from deephyperx.registry import get_spec

    argv = ["--catalogue", str(catalogue), *TRAIN_FLAGS, "--out", str(tmp_path)]
    config = resolve_catalogue_config(get_spec("hu"), cli_settings(build_parser().parse_args(argv)))
    loaded = load_catalogue(catalogue)
    config.update(dataset=loaded.name, catalogue_sha256=file_sha256(catalogue))
    final = tmp_path / f"tiles_hu_{experiment_id(config)}" / "seed0"
    experiment = Experiment(CatalogueTask(loaded, config))
    assert experiment.folder == final.parent
    assert experiment.run_seed(0, stop_after_epoch=1) is None
    partial = final.with_name("seed0.partial")
    assert (partial / "checkpoint.pt").is_file() and not final.exists()
    assert command(argv) == 0  # the same command resumes from epoch 1
    resumed = json.loads((final / "metrics.json").read_text())
    assert resumed["resumed_from_epoch"] == 1 and not partial.exists()
    uninterrupted = json.loads((trained / "metrics.json").read_text())
    assert resumed["confusion_matrix"] == uninterrupted["confusion_matrix"]
    weights = [ckpt.load_checkpoint(f / "model.pt")["model_state"] for f in (final, trained)]
    assert all(torch.equal(weights[0][k], weights[1][k]) for k in weights[0])


def _bad_label_catalogue(catalogue: Path) -> Path:
    labels = np.load(catalogue.parent / "t01_gt.npy")
    labels[0, 0] = 7
    np.save(catalogue.parent / "seven_gt.npy", labels)
    text = catalogue.read_text().replace("labels: t01_gt.npy", "labels: seven_gt.npy")
    path = catalogue.with_name("seven.yaml")
    path.write_text(text)
    return path


@pytest.mark.parametrize("case, expected", [
    ("missing catalogue", "does not exist"),
    ("undeclared label", "label values [7]"),
    ("dense model", "predicts dense label patches"),
    ("segmentation model", "does not run"),
    ("cache too small", "raise --cache_bytes"),
    ("bad size", "--cache_bytes"),
])
def test_bad_input_exits_2_with_one_line_and_leaves_nothing(case, expected, catalogue, tmp_path, capsys):
    path = {"missing catalogue": tmp_path / "none.yaml",
            "undeclared label": _bad_label_catalogue(catalogue)}.get(case, catalogue)
    flags = {"dense model": ["--model", "lee"], "segmentation model": ["--model", "segnet"],
             "cache too small": ["--cache_bytes", "10kB"], "bad size": ["--cache_bytes", "lots"]}.get(case, [])
    argv = ["--catalogue", str(path), *TRAIN_FLAGS, "--out", str(tmp_path / "out"), *flags]
    assert command(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and expected in err and "\n" not in err
    assert not (tmp_path / "out").exists()


def test_the_command_line_exits_2_on_a_bad_catalogue(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("class_names: [a, b]\nscenes: [{cube: missing.npy, labels: missing_gt.npy}]\n")
    done = subprocess.run([sys.executable, "main.py", "catalogue", "--catalogue", str(bad), "--model", "hu"],
                          cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert done.stderr.strip().count("\n") == 0 and "missing.npy: no such file" in done.stderr
