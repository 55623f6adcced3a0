"""The experiment skeleton (``deephyperx/experiment.py``) driving a task of this test's own: a
nearest-centroid classifier of the Synthetic scene's spectra, fitted one class per epoch. The task
only splits, fits, scores and writes ``metrics.json``; the seeds and their claims, the resumable
``.partial`` folder, the monitors, ``model.pt``, ``results.json`` over seeds, the cleanup after bad
input and the diverged seeds all come from the skeleton. (The "Add a task" example of
docs/ARCHITECTURE.md.)"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np
import pytest
import torch

from deephyperx import checkpoint as ckpt
from deephyperx.errors import TrainingDiverged, UserError
from deephyperx.experiment import EverySeedDiverged, Experiment, SeedRun, Task
from deephyperx.experiment_lock import owner_path
from deephyperx.metrics import confusion_matrix, metrics_from_confusion
from deephyperx.monitor import Monitor
from deephyperx.reports import save_json
from deephyperx.scene import IGNORE, Scene
from deephyperx.splits import split_pixels


class CentroidTask(Task):
    """Nearest class centroid: epoch ``k`` fits class ``k``'s mean training spectrum."""

    def __init__(self, scene: Scene, config: dict[str, Any]):
        self.scene, self.config = scene, config
        self.name, self.model, self.class_names = scene.name, config["model"], scene.class_names
        self.fail_in_reports = False  # test hooks: a failure once the folder exists, diverging seeds
        self.diverging: set[int] = set()

    def experiment_folder(self) -> Path:
        return Path(self.config["out"]) / f"{self.name}_{self.model}"

    def prepare(self, run: SeedRun) -> tuple[np.ndarray, np.ndarray]:
        share = run.config["training_sample"]
        if not 0 < share < 1:
            raise UserError(f"--training_sample {share} must be in (0, 1)")
        return split_pixels(self.scene.labels, "random", share, run.seed)

    def fit_and_report(self, run: SeedRun) -> Optional[dict[str, Any]]:
        (train, test), scene = run.parts, self.scene
        done = run.resume["epoch"] if run.resume else 0
        centroids = run.resume["centroids"] if run.resume else torch.zeros(scene.n_classes, scene.n_bands)
        for k in range(done, run.config["epoch"]):
            if run.seed in self.diverging:
                raise TrainingDiverged(self.model, k + 1, float("nan"), 0.1, 0.1)
            centroids[k] = torch.from_numpy(scene.cube[train & (scene.labels == k)].mean(0))
            run.monitor.epoch_ended(k, {"train_loss": float(k)})
            ckpt.save_checkpoint(run.checkpoint, {"epoch": k + 1, "step": k + 1, "centroids": centroids})
            if run.stop_after_epoch == k + 1:
                return None
        if self.fail_in_reports:
            raise UserError("the reports cannot be written")
        prediction = ((scene.cube[..., None, :] - centroids.numpy()) ** 2).sum(-1).argmin(-1)
        cm = confusion_matrix(np.where(test, scene.labels, IGNORE).ravel(), prediction.ravel(), scene.n_classes)
        metrics = {**metrics_from_confusion(cm, self.class_names), "seed": run.seed, "resumed_from_epoch": done}
        save_json(run.partial / "metrics.json", metrics)
        return metrics


class Recorder(Monitor):
    """Records what a run tells its monitors, and whether its seed was claimed when it started."""

    def __init__(self, folder: Path):
        self.folder, self.events, self.claimed = folder, [], None

    def run_started(self, info):
        self.events.append(("started", info["seed"]))
        self.claimed = owner_path(self.folder, info["seed"]).is_file()

    def epoch_ended(self, epoch, logs):
        self.events.append(("epoch", epoch))

    def run_ended(self, summary):
        self.events.append(("ended", summary["seed"]))


def centroids(scene: Scene, out: Path, **settings) -> CentroidTask:
    config = {"model": "centroid", "out": str(out), "seed": 0, "runs": 1, "epoch": scene.n_classes,
              "training_sample": 0.1, **settings}
    return CentroidTask(scene, config)


def test_seeds_run_into_their_folders_and_results_json_aggregates_them(synthetic_scene, tmp_path):
    task = centroids(synthetic_scene, tmp_path, runs=2)
    folder = task.experiment_folder()
    recorders: dict[int, Recorder] = {}
    aggregate = Experiment(task).run("a test", lambda seed: [recorders.setdefault(seed, Recorder(folder))])
    assert aggregate["seeds"] == [0, 1] and aggregate["overall_accuracy"]["mean"] > 0.5
    for seed in (0, 1):
        run = folder / f"seed{seed}"
        assert {"metrics.json", "metrics.jsonl", "config.yaml", "identity.txt", "environment.jsonl", "report.html",
                "model.pt"} <= {p.name for p in run.iterdir()}
        assert not (run / "checkpoint.pt").exists() and not run.with_name(f"seed{seed}.partial").exists()
        assert recorders[seed].claimed and not owner_path(folder, seed).exists()  # claimed while it ran
        n = synthetic_scene.n_classes
        assert recorders[seed].events == [("started", seed), *[("epoch", k) for k in range(n)], ("ended", seed)]
    splits = [json.loads((folder / f"seed{s}" / "metrics.json").read_text())["confusion_matrix"] for s in (0, 1)]
    assert splits[0] != splits[1]  # each seed its own split
    results = json.loads((folder / "results.json").read_text())
    assert results["n_runs"] == 2 and [r["seed"] for r in results["runs"]] == [0, 1]
    assert results["overall_accuracy"] == aggregate["overall_accuracy"] and results["commands"] == ["a test"]
    assert "centroid on Synthetic" in (folder / "results.md").read_text()


def test_an_interrupted_seed_resumes_from_its_checkpoint(synthetic_scene, tmp_path):
    whole = Experiment(centroids(synthetic_scene, tmp_path / "whole")).run()
    experiment = Experiment(centroids(synthetic_scene, tmp_path / "cut"))
    assert experiment.run_seed(0, stop_after_epoch=2) is None
    partial = experiment.folder / "seed0.partial"
    assert (partial / "checkpoint.pt").is_file() and not (experiment.folder / "seed0").exists()
    resumed = experiment.run()
    assert resumed["runs"][0]["overall_accuracy"] == whole["runs"][0]["overall_accuracy"]
    metrics = json.loads((experiment.folder / "seed0" / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == 2 and not partial.exists()
    log = [json.loads(line) for line in (experiment.folder / "seed0" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == list(range(synthetic_scene.n_classes))


def test_bad_input_leaves_nothing_written(synthetic_scene, tmp_path):
    with pytest.raises(UserError, match="--training_sample 1.5"):
        Experiment(centroids(synthetic_scene, tmp_path / "out", training_sample=1.5)).run()
    assert not (tmp_path / "out").exists()


def test_a_failure_keeps_the_partial_folder_only_when_it_can_resume(synthetic_scene, tmp_path):
    task = centroids(synthetic_scene, tmp_path / "out")
    task.fail_in_reports = True  # fails after training: the checkpoint stays, to resume from
    with pytest.raises(UserError, match="cannot be written"):
        Experiment(task).run()
    partial = task.experiment_folder() / "seed0.partial"
    assert (partial / "checkpoint.pt").is_file() and not (partial / "model.pt").exists()
    task.fail_in_reports = False
    assert Experiment(task).run()["runs"][0]["seed"] == 0
    metrics = json.loads((partial.with_name("seed0") / "metrics.json").read_text())
    assert metrics["resumed_from_epoch"] == synthetic_scene.n_classes
    fresh = centroids(synthetic_scene, tmp_path / "fresh", epoch=0)  # nothing trained, nothing to resume
    fresh.fail_in_reports = True
    with pytest.raises(UserError, match="cannot be written"):
        Experiment(fresh).run()
    assert not (tmp_path / "fresh").exists()


def test_diverged_seeds_are_recorded_and_left_out(synthetic_scene, tmp_path, capsys):
    task = centroids(synthetic_scene, tmp_path, runs=2)
    task.diverging = {1}
    aggregate = Experiment(task).run()
    assert aggregate["n_runs"] == 1 and [d["seed"] for d in aggregate["diverged"]] == [1]
    folder = task.experiment_folder()
    assert (folder / "seed1.diverged.json").is_file() and "seed1.diverged.json" in capsys.readouterr().err
    assert "training diverged in seed 1" in (folder / "results.md").read_text()
    again = Experiment(task).run(reuse_finished=True)  # read back: nothing trained again
    assert again["n_runs"] == 1 and [d["seed"] for d in again["diverged"]] == [1]
    every = centroids(synthetic_scene, tmp_path / "every")
    every.diverging = {0}
    with pytest.raises(EverySeedDiverged, match="every seed diverged"):
        Experiment(every).run()
    assert Experiment(centroids(synthetic_scene, tmp_path / "empty")).run(finished_only=True) is None
