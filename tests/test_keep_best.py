"""``keep_best``: a run keeps the weights of its best validation epoch (as the SSRN authors' code
does) instead of the last epoch's, through resume, into model.pt and the metrics; ``early_stopping``
ends training once the lowest validation loss is that many epochs old (as A2S2K-ResNet's and DBDA's
authors do) and keeps that epoch's weights."""
from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models  # noqa: F401
from deephyperx import checkpoint as ckpt
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.monitor import Monitor
from deephyperx.registry import create_model, get_spec
from deephyperx.runner import ClassifyTask
from deephyperx.sampling import BatchMaker, PatchSampler
from deephyperx.scene import Scene
from deephyperx.steps import get_step
from deephyperx.training import Trainer, TrainingData, is_better

ROOT = Path(__file__).resolve().parents[1]
#: A learning rate high enough that the validation scores of this tiny scene swing between epochs.
SWINGING = {"epoch": 12, "lr": 0.5, "optimizer": "sgd", "scheduler": None}


def config_for(scene: Scene, tmp_path, **overrides):
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.5, "val_fraction": 0.3, **SWINGING}
    return resolve_config(get_spec("hu"), {**base, **overrides})


def trainer_for(scene: Scene, config: dict, checkpoint_path=None) -> Trainer:
    """hu on the scene's left half (training) with its right half as validation."""
    half = scene.shape[1] // 2
    columns = np.arange(scene.shape[1])[None, :].repeat(scene.shape[0], axis=0)
    labelled = scene.labels >= 0
    train, validation = labelled & (columns < half), labelled & (columns >= half)
    makers = [BatchMaker(PatchSampler([scene.cube], np.where(mask, scene.labels, -1), config["patch_size"]),
                         *np.nonzero(mask), dense=False) for mask in (train, validation)]
    torch.manual_seed(config["seed"])
    model = create_model("hu", n_bands=scene.n_bands, n_classes=scene.n_classes, patch_size=config["patch_size"])
    return Trainer(model, get_step(config["supervision"]), TrainingData(makers[0], makers[1], scene.n_classes),
                   config, Monitor(), torch.device("cpu"), checkpoint_path=checkpoint_path)


@pytest.fixture
def noisy_scene(small_scene):
    """The stripes scene with stronger noise, so that validation accuracy is not 1 at once."""
    rng = np.random.default_rng(1)
    cube = small_scene.cube + 0.6 * rng.standard_normal(small_scene.cube.shape).astype(np.float32)
    return Scene("NoisyStripes", cube, small_scene.labels, small_scene.class_names)


def test_is_better_prefers_higher_accuracy_then_lower_loss_then_earlier_epoch():
    best = {"val_oa": 0.8, "val_loss": 0.5}
    assert is_better({"val_oa": 0.8, "val_loss": 0.5}, None, "val_oa")
    assert is_better({"val_oa": 0.9, "val_loss": 0.9}, best, "val_oa")
    assert not is_better({"val_oa": 0.7, "val_loss": 0.1}, best, "val_oa")
    assert is_better({"val_oa": 0.8, "val_loss": 0.4}, best, "val_oa")  # a tie goes to the lower loss
    assert not is_better({"val_oa": 0.8, "val_loss": 0.5}, best, "val_oa")  # a full tie keeps the earlier epoch
    assert is_better({"val_oa": 0.1, "val_loss": 0.4}, best, "val_loss")
    assert not is_better({"val_oa": 0.99, "val_loss": 0.6}, best, "val_loss")
    assert not is_better({"val_oa": math.nan, "val_loss": 0.1}, None, "val_oa")


def test_the_model_ends_with_the_best_epochs_weights(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, keep_best="val_oa")
    kept = trainer_for(noisy_scene, config)
    kept.fit()
    history = kept.state.history
    scores = [(r["val_oa"], -r["val_loss"], -i) for i, r in enumerate(history)]
    best_epoch = max(range(len(history)), key=lambda i: scores[i]) + 1
    assert kept.state.best_epoch == best_epoch
    assert best_epoch < len(history), "the swinging schedule should peak before its last epoch"
    assert history[best_epoch - 1]["val_oa"] > history[-1]["val_oa"]
    # keep_best changes no random draw: training again for best_epoch epochs gives those weights
    plain = trainer_for(noisy_scene, {**config, "keep_best": None, "epoch": best_epoch})
    plain.fit()
    assert plain.state.history == history[:best_epoch]
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, kept.model.state_dict()[name]), name
    last = trainer_for(noisy_scene, {**config, "keep_best": None})
    last.fit()
    assert any(not torch.equal(a, b) for a, b in zip(last.model.state_dict().values(),
                                                     kept.model.state_dict().values()))


def test_an_interrupted_run_keeps_the_same_best_weights(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, keep_best="val_loss")
    whole = trainer_for(noisy_scene, config)
    whole.fit()
    first = trainer_for(noisy_scene, config, checkpoint_path=tmp_path / "c.pt")
    first.fit(stop_after_epoch=whole.state.best_epoch + 1)
    second = trainer_for(noisy_scene, config, checkpoint_path=tmp_path / "c.pt")
    second.load_state_dict(ckpt.load_checkpoint(tmp_path / "c.pt"))
    second.fit()
    assert second.state.best_epoch == whole.state.best_epoch
    for a, b in zip(whole.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    saved = ckpt.load_checkpoint(tmp_path / "c.pt")  # the checkpoint that becomes model.pt
    assert saved["best"]["epoch"] == whole.state.best_epoch
    for name, value in saved["model_state"].items():
        assert torch.equal(value, whole.model.state_dict()[name]), name


def test_a_run_reports_its_best_epoch_and_saves_those_weights(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, keep_best="val_oa")
    result = Experiment(ClassifyTask(noisy_scene, config)).run_seed(0, tmp_path / "run")
    assert 1 <= result["best_epoch"] <= config["epoch"]
    saved = ckpt.load_checkpoint(tmp_path / "run" / "model.pt")
    assert saved["best"]["epoch"] == result["best_epoch"]
    for name, value in saved["best"]["model_state"].items():
        assert torch.equal(value, saved["model_state"][name]), name
    without = Experiment(ClassifyTask(noisy_scene, config_for(noisy_scene, tmp_path))).run_seed(0, tmp_path / "plain")
    assert "best_epoch" not in without


def test_keep_best_needs_validation_pixels(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, keep_best="val_oa", val_fraction=0.0)
    with pytest.raises(UserError, match="--keep_best val_oa selects weights on validation pixels"):
        Experiment(ClassifyTask(noisy_scene, config)).run_seed(0, tmp_path / "run")


def test_an_unknown_score_is_one_line_and_status_2(tmp_path):
    with pytest.raises(UserError, match="--keep_best 'accuracy' is not a validation score"):
        resolve_config(get_spec("hu"), {"keep_best": "accuracy"})
    for command in (["--model", "hu"], ["bench", "--models", "hu", "--datasets", "Synthetic"]):
        done = subprocess.run([sys.executable, "main.py", *command, "--keep_best", "val_acc", "--out", str(tmp_path)],
                              cwd=ROOT, capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert done.stderr.strip().count("\n") == 0 and "--keep_best 'val_acc'" in done.stderr
        assert "Traceback" not in done.stderr


def stale_epochs(history: list[dict], upto: int) -> int:
    """Epochs since the lowest validation loss among the first ``upto`` epochs."""
    losses = [r["val_loss"] for r in history[:upto]]
    return upto - 1 - losses.index(min(losses))


def test_early_stopping_ends_when_the_lowest_validation_loss_is_old(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, early_stopping=2, epoch=60)
    stopped = trainer_for(noisy_scene, config)
    stopped.fit()
    history = stopped.state.history
    assert stopped.state.stopped_early and len(history) < 60, "the swinging schedule should stall within 60 epochs"
    assert stale_epochs(history, len(history)) == 2
    assert all(stale_epochs(history, k) < 2 for k in range(1, len(history))), "it stopped at the first chance"
    lowest = min(range(len(history)), key=lambda i: history[i]["val_loss"])
    assert stopped.state.best_epoch == lowest + 1  # the weights of the lowest validation loss are kept
    plain = trainer_for(noisy_scene, {**config, "early_stopping": None, "epoch": lowest + 1})
    plain.fit()
    assert plain.state.history == history[:lowest + 1]
    for name, value in plain.model.state_dict().items():
        assert torch.equal(value, stopped.model.state_dict()[name]), name


def test_an_early_stopped_run_resumes_to_the_same_end(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, early_stopping=2, epoch=60)
    whole = trainer_for(noisy_scene, config)
    whole.fit()
    first = trainer_for(noisy_scene, config, checkpoint_path=tmp_path / "c.pt")
    first.fit(stop_after_epoch=len(whole.state.history) - 1)
    assert not first.state.stopped_early
    second = trainer_for(noisy_scene, config, checkpoint_path=tmp_path / "c.pt")
    second.load_state_dict(ckpt.load_checkpoint(tmp_path / "c.pt"))
    second.fit()
    assert second.state.history == whole.state.history and second.state.stopped_early
    for a, b in zip(whole.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    finished = trainer_for(noisy_scene, config, checkpoint_path=tmp_path / "c.pt")  # stopped: nothing more to train
    finished.load_state_dict(ckpt.load_checkpoint(tmp_path / "c.pt"))
    finished.fit()
    assert finished.state.history == whole.state.history


def test_an_early_stopped_run_reports_its_epochs(noisy_scene, tmp_path):
    config = config_for(noisy_scene, tmp_path, early_stopping=2, epoch=60)
    result = Experiment(ClassifyTask(noisy_scene, config)).run_seed(0, tmp_path / "run")
    assert result["stopped_early"] is True and result["epochs"] < 60
    assert 1 <= result["best_epoch"] == result["epochs"] - 2
    saved = ckpt.load_checkpoint(tmp_path / "run" / "model.pt")
    assert saved["stopped_early"] and saved["best"]["epoch"] == result["best_epoch"]
    for name, value in saved["best"]["model_state"].items():
        assert torch.equal(value, saved["model_state"][name]), name


def test_early_stopping_needs_whole_epochs_and_validation_pixels(noisy_scene, tmp_path):
    for value in (0, -3, 2.5, True):
        with pytest.raises(UserError, match="--early_stopping .* must be a whole number"):
            config_for(noisy_scene, tmp_path, early_stopping=value)
    with pytest.raises(UserError, match="--early_stopping 20 watches the validation loss but this run holds no "
                                        "validation pixels"):
        config_for(noisy_scene, tmp_path, early_stopping=20, val_fraction=0.0)
