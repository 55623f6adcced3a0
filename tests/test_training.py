"""The training loop: fitting, dense-output and two-input models, resume, checkpoints, determinism."""
from __future__ import annotations


import numpy as np
import pytest
import torch
from torch import nn

import models  # noqa: F401
from deephyperx import checkpoint as ckpt
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.monitor import Monitor
from deephyperx.registry import get_spec, register_model
from deephyperx.runner import ClassifyTask
from deephyperx.sampling import BatchMaker, PatchSampler
from deephyperx.scene import Scene
from deephyperx.steps import get_step
from deephyperx.training import Trainer, TrainingData, build_scheduler, inverse_median_frequency


@register_model("test_dense", patch_size=5, epoch=15, batch_size=16, optimizer="adam", lr=0.02, output="dense",
                citation="test-only dense-output model: a 1x1 convolution labelling every pixel of the patch")
class TinyDense(nn.Module):
    """Labels every pixel of a patch (the shape of Lee & Kwon's or SegNet's outputs)."""

    def __init__(self, n_bands: int, n_classes: int):
        super().__init__()
        self.conv = nn.Conv2d(n_bands, n_classes, 1)

    def forward(self, x):
        return self.conv(x)


@register_model("test_fusion", patch_size=3, epoch=25, batch_size=16, optimizer="adam", lr=0.05,
                inputs=["cube", "dsm"],
                citation="test-only two-input model: an image branch and a height branch summed (FuseNet's shape)")
class TinyFusion(nn.Module):
    """Two inputs, an image and a height raster, each through its own branch."""

    def __init__(self, n_bands: int, n_classes: int, patch_size: int):
        super().__init__()
        self.image = nn.Linear(n_bands * patch_size ** 2, n_classes)
        self.height = nn.Linear(patch_size ** 2, n_classes)

    def forward(self, image, height):
        return self.image(image.flatten(1)) + self.height(height.flatten(1))


class Recorder(Monitor):
    def __init__(self):
        self.steps, self.epochs = [], []

    def iteration(self, step, logs):
        self.steps.append(step)

    def epoch_ended(self, epoch, logs):
        self.epochs.append(logs)


def config_for(model: str, scene: Scene, tmp_path, **overrides):
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.5, "val_fraction": 0.1}
    return resolve_config(get_spec(model), {**base, **overrides})


def trainer_for(scene: Scene, config: dict, checkpoint_path=None) -> Trainer:
    train = scene.labels >= 0
    sampler = PatchSampler([scene.cube], np.where(train, scene.labels, -1), config["patch_size"])
    data = TrainingData(BatchMaker(sampler, *np.nonzero(train), dense=False), None, scene.n_classes)
    from deephyperx.registry import create_model
    torch.manual_seed(config["seed"])
    model = create_model(config["model"], n_bands=scene.n_bands, n_classes=scene.n_classes,
                         patch_size=config["patch_size"])
    return Trainer(model, get_step(config["supervision"]), data, config, Recorder(), torch.device("cpu"),
                   checkpoint_path=checkpoint_path, checkpoint_extra=lambda: {"n_bands": scene.n_bands})


def test_hu_fits_a_small_scene(small_scene, tmp_path):
    config = config_for("hu", small_scene, tmp_path, epoch=40, lr=0.1)
    result = Experiment(ClassifyTask(small_scene, config)).run_seed(0, tmp_path / "run")
    assert result["overall_accuracy"] > 0.9
    files = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"config.yaml", "metrics.json", "summary.md", "confusion.png", "map.png", "map_full.png", "prediction.npy",
            "model.pt", "metrics.jsonl", "split.npz", "environment.jsonl"} <= files
    assert not (tmp_path / "run.partial").exists()


def test_dense_output_model_trains_and_maps_the_scene(small_scene, tmp_path):
    config = config_for("test_dense", small_scene, tmp_path, test_stride=2)
    result = Experiment(ClassifyTask(small_scene, config)).run_seed(0, tmp_path / "dense")
    assert result["overall_accuracy"] > 0.9
    prediction = np.load(tmp_path / "dense" / "prediction.npy")
    assert prediction.shape == small_scene.shape and prediction.min() >= 0


def test_two_input_model_uses_its_second_raster(tmp_path):
    rng = np.random.default_rng(0)
    labels = (np.arange(20)[None, :] // 7).repeat(18, axis=0)  # 3 vertical bands of classes
    cube = rng.standard_normal((18, 20, 4)).astype(np.float32)  # uninformative image
    dsm = (labels[..., None] * 5.0 + rng.standard_normal((18, 20, 1))).astype(np.float32)  # height tells the class
    scene = Scene("Heights", cube, labels, ["ground", "low", "tall"], extras={"dsm": dsm})
    config = config_for("test_fusion", scene, tmp_path)
    result = Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / "fusion")
    assert result["overall_accuracy"] > 0.9
    without = Scene("NoDsm", cube, labels, ["ground", "low", "tall"])
    with pytest.raises(UserError, match="'dsm' raster"):
        Experiment(ClassifyTask(without, config_for("test_fusion", without, tmp_path))).run_seed(0, tmp_path / "nodsm")


def test_resumed_training_ends_exactly_like_an_uninterrupted_one(small_scene, tmp_path):
    config = config_for("hu", small_scene, tmp_path, epoch=6, flip_augmentation=True, radiation_augmentation=True)
    whole = trainer_for(small_scene, config)
    whole.fit()
    first = trainer_for(small_scene, config, checkpoint_path=tmp_path / "c.pt")
    first.fit(stop_after_epoch=3)
    second = trainer_for(small_scene, config)
    torch.manual_seed(1234)  # a different global state must not matter
    second.load_state_dict(ckpt.load_checkpoint(tmp_path / "c.pt"))
    second.fit()
    for a, b in zip(whole.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)
    assert whole.state.history == second.state.history


def test_same_seed_same_numbers_other_seed_other_numbers(small_scene, tmp_path):
    config = config_for("hu", small_scene, tmp_path, epoch=3)
    a = Experiment(ClassifyTask(small_scene, config)).run_seed(4, tmp_path / "a")
    b = Experiment(ClassifyTask(small_scene, config)).run_seed(4, tmp_path / "b")
    c = Experiment(ClassifyTask(small_scene, config)).run_seed(5, tmp_path / "c")
    assert a["confusion_matrix"] == b["confusion_matrix"] and a["kappa"] == b["kappa"]
    assert np.load(tmp_path / "a" / "split.npz")["train"].tolist() != np.load(tmp_path / "c" / "split.npz")["train"].tolist()
    assert c["seed"] == 5


def test_monitor_sees_every_iteration_and_epoch(small_scene, tmp_path):
    config = config_for("hu", small_scene, tmp_path, epoch=2, batch_size=50)
    trainer = trainer_for(small_scene, config)
    trainer.fit()
    n_train = int((small_scene.labels >= 0).sum())
    assert trainer.monitor.steps == list(range(1, 2 * -(-n_train // 50) + 1))
    assert len(trainer.monitor.epochs) == 2 and "lr" in trainer.monitor.epochs[0]


def test_restore_evaluates_a_saved_model_and_refuses_foreign_ones(small_scene, tmp_path):
    config = config_for("hu", small_scene, tmp_path, epoch=20, lr=0.1)
    trained = Experiment(ClassifyTask(small_scene, config)).run_seed(0, tmp_path / "t")
    saved = str(tmp_path / "t" / "model.pt")
    again = Experiment(ClassifyTask(small_scene, config_for("hu", small_scene, tmp_path, epoch=0, restore=saved))
                       ).run_seed(0, tmp_path / "r")
    assert again["confusion_matrix"] == trained["confusion_matrix"]
    other = Scene("Other", small_scene.cube, small_scene.labels, ["x", "y", "z"])
    with pytest.raises(UserError, match="trained on classes"):
        Experiment(ClassifyTask(other, config_for("hu", other, tmp_path, epoch=0, restore=saved))
                   ).run_seed(0, tmp_path / "o")
    with pytest.raises(UserError, match="of model 'hu', not 'nn'"):
        Experiment(ClassifyTask(small_scene, config_for("nn", small_scene, tmp_path, epoch=0, restore=saved))
                   ).run_seed(0, tmp_path / "n")
    assert not (tmp_path / "o").exists() and not (tmp_path / "o.partial").exists()


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_checkpoints_never_execute_code_and_refuse_other_files(tmp_path, capsys):
    evil = tmp_path / "evil.pt"
    torch.save({"format": ckpt.FORMAT, "x": Payload()}, evil)
    with pytest.raises(UserError, match="not a deephyperx checkpoint that can be loaded safely"):
        ckpt.load_checkpoint(evil)
    assert "this must never run" not in capsys.readouterr().out
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"not a checkpoint at all")
    with pytest.raises(UserError, match="not a deephyperx checkpoint"):
        ckpt.load_checkpoint(junk)
    plain = tmp_path / "plain.pt"
    torch.save({"weights": torch.zeros(2)}, plain)
    with pytest.raises(UserError, match="no 'deephyperx-checkpoint' marker"):
        ckpt.load_checkpoint(plain)
    with pytest.raises(UserError, match="does not exist"):
        ckpt.load_checkpoint(tmp_path / "missing.pt")


def test_sklearn_model_round_trips_safely(small_scene, tmp_path):
    config = config_for("SVM", small_scene, tmp_path)
    result = Experiment(ClassifyTask(small_scene, config)).run_seed(0, tmp_path / "svm")
    assert result["overall_accuracy"] > 0.95
    estimator, meta = ckpt.load_sklearn(tmp_path / "svm" / "model.skops")
    assert meta["class_names"] == ["a", "b", "c"] and hasattr(estimator, "predict")
    again = config_for("SVM", small_scene, tmp_path, restore=str(tmp_path / "svm" / "model.skops"))
    restored = Experiment(ClassifyTask(small_scene, again)).run_seed(0, tmp_path / "r")
    assert restored["confusion_matrix"] == result["confusion_matrix"]


def test_inverse_median_frequency_by_hand():
    labels = torch.tensor([0] * 10 + [1] * 30 + [2] * 20 + [-1] * 5)
    weights = inverse_median_frequency(labels, 4)
    # frequencies 1/6, 1/2, 1/3 (class 3 absent); median 1/3 -> weights 2, 2/3, 1, 0
    assert torch.allclose(weights, torch.tensor([2.0, 2 / 3, 1.0, 0.0]))


def test_schedulers():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    assert build_scheduler(opt, {"name": "none"}, 10) is None
    plateau = build_scheduler(opt, {"name": "plateau", "factor": 0.1, "patience_fraction": 0.25}, 100)
    assert plateau.patience == 25
    multistep = build_scheduler(opt, {"name": "multistep", "milestones": [2], "gamma": 0.5}, 10)
    for _ in range(3):
        opt.step()
        multistep.step()
    assert opt.param_groups[0]["lr"] == 0.5
    with pytest.raises(UserError, match="unknown scheduler"):
        build_scheduler(opt, {"name": "warp"}, 10)


# ----- later supervision kinds fit the same loop -------------------------------------------------

from deephyperx.steps import TrainingStep, build_optimizer, classification_loss, register_step  # noqa: E402


@register_step("test_reconstruction")
class ReconstructionStep(TrainingStep):
    """Cross-entropy on labelled pixels + MSE reconstruction of unlabelled ones (Liu/Boulch's shape)."""

    needs_unlabelled = True
    seen_unlabelled: list[int] = []

    def loss(self, model, batch, ctx):
        logits, _ = model(*batch.inputs)
        _, reconstruction = model(*batch.unlabelled)
        ReconstructionStep.seen_unlabelled.append(len(batch.unlabelled[0]))
        mse = torch.nn.functional.mse_loss(reconstruction, batch.unlabelled[0].flatten(1))
        return classification_loss(logits, batch.target, ctx) + mse, {"reconstruction": float(mse.detach())}


@register_model("test_semi", patch_size=1, epoch=30, batch_size=32, optimizer="adam", lr=0.05,
                supervision="test_reconstruction",
                citation="test-only semi-supervised model: a classifier and a decoder sharing an encoder")
class TinySemi(nn.Module):
    def __init__(self, n_bands: int, n_classes: int):
        super().__init__()
        self.encoder = nn.Linear(n_bands, 8)
        self.classifier = nn.Linear(8, n_classes)
        self.decoder = nn.Linear(8, n_bands)

    def forward(self, x):
        code = torch.tanh(self.encoder(x.flatten(1)))
        return self.classifier(code), self.decoder(code)


def test_semi_supervised_step_gets_unlabelled_pixels(small_scene, tmp_path):
    ReconstructionStep.seen_unlabelled.clear()
    config = config_for("test_semi", small_scene, tmp_path)
    result = Experiment(ClassifyTask(small_scene, config)).run_seed(0, tmp_path / "semi")
    assert result["overall_accuracy"] > 0.9  # inference took the logits out of the (logits, reconstruction) tuple
    assert ReconstructionStep.seen_unlabelled and min(ReconstructionStep.seen_unlabelled) > 0
    log = (tmp_path / "semi" / "metrics.jsonl").read_text()
    assert '"reconstruction"' in log


@register_step("test_two_players")
class TwoPlayerStep(TrainingStep):
    """Alternating updates of two sub-networks with their own optimisers (a GAN's shape)."""

    def build_optimizers(self, model, config):
        return {"critic": build_optimizer(model.critic.parameters(), config),
                "generator": build_optimizer(model.generator.parameters(), config)}

    def __call__(self, model, batch, optimizers, ctx):
        real = batch.inputs[0].flatten(1)
        fake = model.generator(torch.randn(len(real), 4))
        optimizers["critic"].zero_grad()
        critic_loss = model.critic(fake.detach()).mean() - model.critic(real).mean()
        critic_loss.backward()
        optimizers["critic"].step()
        optimizers["generator"].zero_grad()
        generator_loss = -model.critic(model.generator(torch.randn(len(real), 4))).mean()
        generator_loss.backward()
        optimizers["generator"].step()
        return {"loss": float(critic_loss.detach()), "generator_loss": float(generator_loss.detach())}

    def evaluate(self, model, batch, ctx):
        return 0.0, torch.zeros(len(batch.target), ctx.n_classes)


@register_model("test_two_players", patch_size=1, epoch=4, batch_size=32, optimizer="rmsprop", lr=1e-3,
                supervision="test_two_players", scheduler={"name": "none"},
                citation="test-only two-player model: a generator and a critic trained against each other")
class TinyTwoPlayers(nn.Module):
    def __init__(self, n_bands: int, n_classes: int):
        super().__init__()
        self.generator = nn.Linear(4, n_bands)
        self.critic = nn.Linear(n_bands, 1)

    def forward(self, x):
        return self.critic(x.flatten(1))


def test_adversarial_step_with_two_optimisers_checkpoints_and_resumes(small_scene, tmp_path):
    config = config_for("test_two_players", small_scene, tmp_path)
    whole = trainer_for(small_scene, config)
    whole.fit()
    first = trainer_for(small_scene, config, checkpoint_path=tmp_path / "gan.pt")
    first.fit(stop_after_epoch=2)
    saved = ckpt.load_checkpoint(tmp_path / "gan.pt")
    assert set(saved["optimizer_states"]) == {"critic", "generator"}
    second = trainer_for(small_scene, config)
    second.load_state_dict(saved)
    second.fit()
    for a, b in zip(whole.model.state_dict().values(), second.model.state_dict().values()):
        assert torch.equal(a, b)


def test_pca_reduction_inside_the_pipeline_and_restored_with_the_model(small_scene, tmp_path):
    config = config_for("hu", small_scene, tmp_path, epoch=30, lr=0.1, reduction={"name": "pca", "components": 3})
    result = Experiment(ClassifyTask(small_scene, config)).run_seed(0, tmp_path / "pca")
    assert result["overall_accuracy"] > 0.9
    saved = ckpt.load_checkpoint(tmp_path / "pca" / "model.pt")
    assert np.asarray(saved["projection"]["components"]).shape == (3, small_scene.n_bands)
    again = config_for("hu", small_scene, tmp_path, epoch=0, restore=str(tmp_path / "pca" / "model.pt"),
                       reduction={"name": "pca", "components": 3})
    restored = Experiment(ClassifyTask(small_scene, again)).run_seed(0, tmp_path / "r")
    assert restored["confusion_matrix"] == result["confusion_matrix"]


def test_epoch_of_a_sample_count_draws_shuffled_passes():
    """``n_samples`` makes an epoch of that many samples: whole shuffled passes, then a part."""
    from deephyperx.sampling import batches

    class Counter:
        def __len__(self):
            return 7

        def make(self, index, generator=None, augment=False):
            return index

    drawn = torch.cat(list(batches(Counter(), 4, torch.Generator().manual_seed(0), n_samples=17)))
    assert len(drawn) == 17
    assert sorted(drawn[:7].tolist()) == list(range(7)) and sorted(drawn[7:14].tolist()) == list(range(7))
    assert set(drawn[14:].tolist()) <= set(range(7))


def test_a_non_finite_loss_stops_training_before_its_epoch_is_checkpointed(small_scene, tmp_path):
    from deephyperx.errors import TrainingDiverged

    config = config_for("hu", small_scene, tmp_path, epoch=3, lr=1e37)
    trainer = trainer_for(small_scene, config, checkpoint_path=tmp_path / "c.pt")
    with pytest.raises(TrainingDiverged, match=r"hu diverged at epoch 1: the training loss is (inf|nan) .*--lr \(now 1e\+37\)") \
            as caught:
        trainer.fit()
    record = caught.value.as_record()
    assert record["epoch"] == 1 and record["loss"] in ("inf", "nan") and record["lr"] == record["lr_at_epoch"] == 1e37
    assert not (tmp_path / "c.pt").exists() and trainer.state.epoch == 0 and trainer.state.history == []


def test_divergence_names_the_runs_learning_rate_not_only_the_scheduled_one():
    from deephyperx.errors import TrainingDiverged

    error = TrainingDiverged("sharma", 16, float("nan"), 0.05, 0.005, 3.372953086253749e30)
    assert str(error) == ("sharma diverged at epoch 16 at the scheduled rate 0.005: the training loss is nan "
                          "(epoch 15: 3.373e+30) and the weights cannot recover; lower --lr (now 0.05) or choose "
                          "another --optimizer")
    assert error.as_record() == {"epoch": 16, "loss": "nan", "lr": 0.05, "lr_at_epoch": 0.005}


def test_weights_overflowed_by_the_last_step_stop_training_even_with_a_finite_loss(small_scene, tmp_path):
    from deephyperx.errors import TrainingDiverged

    config = config_for("hu", small_scene, tmp_path, epoch=2)
    trainer = trainer_for(small_scene, config)
    trainer._stop_if_diverged({"train_loss": 3.4e30, "lr": config["lr"]})  # large but finite: goes on
    with torch.no_grad():
        next(trainer.model.parameters()).view(-1)[0] = float("nan")
    with pytest.raises(TrainingDiverged, match=r"epoch 1: its weights are no longer finite \(training loss 3\.4e\+30\)"):
        trainer._stop_if_diverged({"train_loss": 3.4e30, "lr": config["lr"]})
