"""Liu's ladder-style CNN and Boulch's autoencoder: shapes, size limits, parameter counts, and the
semi-supervised step really learning from the scene's unlabelled pixels."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch

import models.semi_supervised  # noqa: F401  (registers the step, liu and boulch)
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.registry import get_spec
from deephyperx.runner import ClassifyTask
from deephyperx.sampling import Batch
from deephyperx.steps import StepContext, get_step
from zoo_support import build, n_parameters

#: For each model: the paper's patch size, another valid one, and an invalid one.
PATCHES = {"liu": (9, 5, 3), "boulch": (1, None, 3)}
STEP = "semi_supervised_reconstruction"


@pytest.mark.parametrize("name", sorted(PATCHES))
@pytest.mark.parametrize("n_bands", [30, 103, 200])
def test_builds_for_any_band_count_and_reconstructs_its_input(name, n_bands):
    for patch in [p for p in PATCHES[name][:2] if p is not None]:
        x = torch.randn(2, n_bands, patch, patch)
        with torch.no_grad():
            logits, reconstruction = build(name, n_bands, patch)(x)
        assert logits.shape == (2, 16) and reconstruction.shape == x.shape
        assert torch.isfinite(logits).all() and torch.isfinite(reconstruction).all()


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_invalid_patch_size_is_a_one_line_user_error(name):
    invalid = PATCHES[name][2]
    with pytest.raises(UserError, match=rf"{name}\b") as error:
        build(name, 30, invalid)
    assert "\n" not in str(error.value) and f"{invalid}x{invalid}" in str(error.value)


def test_boulch_builds_for_tiny_spectra_and_codes_each_pixel_in_three_values():
    for n_bands in (1, 2, 3, 5):  # DeepHyperX's builder fails below 4 bands
        model = build("boulch", n_bands, 1)
        assert model.encode(torch.randn(2, n_bands, 1, 1)).shape == (2, 3)


def test_liu_corrupts_its_input_only_while_training():
    model = build("liu", 12, 9, n_classes=3)
    x = torch.randn(4, 12, 9, 9)
    with torch.no_grad():
        assert torch.equal(model(x)[0], model(x)[0])  # evaluation: deterministic
        model.train()
        assert not torch.equal(model(x)[1], model(x)[1])  # training: Gaussian noise on the patch


def test_parameter_counts_on_indian_pines_match_the_references():
    # Liu: conv 3x3x200 -> 80: 144,080 + BN 160 + classifier 720 -> 16: 11,536 + top-down 16 -> 720: 12,240
    # + transposed conv 80 -> 200: 144,200 = 312,216. DeepHyperX's LiuEtAl by hand: conv 144,080, BN 160,
    # fc_enc 11,536, then a fully connected decoder to the centre spectrum: 720->720 519,120 (+ an unused
    # BN 1,440), 720->720 519,120 + BN 1,440, 720->3920 2,826,320 + BN 7,840, 3920->200 784,200: 4,815,256.
    assert n_parameters(build("liu", 200, 9)) == 312_216
    # Boulch: seven blocks for 200 bands (conv 1->32 128 + BN 64, conv 32->16 1,552 + BN 32, five times
    # conv 16->16 784 + BN 32), conv 16->3 147, classifier 3->16 64, decoder 3->200 800 = 6,867:
    # DeepHyperX's BoulchEtAl by hand gives the same 6,867.
    assert n_parameters(build("boulch", 200, 1)) == 6_867


def test_registered_defaults_are_the_papers_protocols():
    # liu: the paper's lr and epochs; Adam at a constant rate is our reading (see its docstring);
    # boulch: Adam where DeepHyperX's SGD barely trains (see its docstring)
    for name, patch, epochs, optimizer in (("liu", 9, 40, "adam"), ("boulch", 1, 100, "adam")):
        spec = get_spec(name).training_defaults()
        assert (spec["patch_size"], spec["epoch"], spec["batch_size"], spec["optimizer"], spec["lr"]) == \
            (patch, epochs, 100, optimizer, 1e-3)
        assert spec["supervision"] == STEP
    assert get_step(STEP).needs_unlabelled


def step_batch(n_bands: int, unlabelled: torch.Tensor | None) -> Batch:
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(6, n_bands, 1, 1, generator=generator)
    target = torch.tensor([0, 1, 2, 0, 1, 2])
    return Batch([x], target, torch.zeros(6, dtype=torch.long), torch.zeros(6, dtype=torch.long),
                 None if unlabelled is None else [unlabelled])


def test_the_step_backpropagates_the_reconstruction_of_unlabelled_pixels():
    model = build("boulch", 8, 1, n_classes=3)  # evaluation mode: batch norm uses fixed statistics
    ctx = StepContext(3, None, {}, torch.device("cpu"))
    unlabelled = torch.randn(5, 8, 1, 1, generator=torch.Generator().manual_seed(1), requires_grad=True)
    loss, logs = get_step(STEP).loss(model, step_batch(8, unlabelled), ctx)
    loss.backward()
    assert unlabelled.grad is not None and unlabelled.grad.abs().sum() > 0
    assert logs["unlabelled_pixels"] == 5
    with torch.no_grad():
        expected = (model(unlabelled)[1] - unlabelled).pow(2).mean()
    assert logs["reconstruction_unlabelled"] == pytest.approx(float(expected), rel=1e-5)
    alone, alone_logs = get_step(STEP).loss(model, step_batch(8, None), ctx)  # a scene with no unlabelled pixel
    assert alone_logs["unlabelled_pixels"] == 0 and "reconstruction_unlabelled" not in alone_logs
    assert alone.item() != pytest.approx(loss.item())


def fit(name: str, scene, tmp_path, **overrides):
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.5, "val_fraction": 0.1}
    config = resolve_config(get_spec(name), {**base, **overrides})
    Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / name)
    return tmp_path / name


def training_accuracy(folder, scene) -> float:
    """Accuracy of the saved map on the run's own training pixels."""
    train = np.load(folder / "split.npz")["train"]
    prediction = np.load(folder / "prediction.npy")
    return float((prediction[train] == scene.labels[train]).mean())


def iteration_logs(folder) -> list[dict]:
    records = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    return [r for r in records if r["kind"] == "iteration"]


@pytest.mark.parametrize("name, epochs", [("liu", 8), ("boulch", 20)])
def test_fits_a_small_scene_while_learning_to_reconstruct_its_unlabelled_pixels(name, epochs, small_scene, tmp_path):
    folder = fit(name, small_scene, tmp_path, epoch=epochs, lr=0.05)
    assert training_accuracy(folder, small_scene) > 0.9
    logs = iteration_logs(folder)
    n_unlabelled = int((small_scene.labels < 0).sum())  # the top two rows: 40 pixels
    assert all(r["unlabelled_pixels"] == n_unlabelled for r in logs)  # batch 100 > 40: all of them each step
    per_epoch = len(logs) // epochs
    first = np.mean([r["reconstruction_unlabelled"] for r in logs[:per_epoch]])
    last = np.mean([r["reconstruction_unlabelled"] for r in logs[-per_epoch:]])
    assert last < 0.8 * first
