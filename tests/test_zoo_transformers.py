"""SpectralFormer (patch- and pixel-wise) and GAHT: shapes, limits, tokens, parameter counts against the
authors' networks, the registered protocols, and fits through the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models.transformers  # noqa: F401  (registers SpectralFormer, SpectralFormer_pixel and GAHT)
from deephyperx import checkpoint as ckpt
from deephyperx.errors import UserError
from deephyperx.registry import get_spec
from deephyperx.synthetic import make_synthetic_scene
from deephyperx.training import build_scheduler
from models.transformers import group_wise_spectral_embedding
from zoo_support import build, fit, n_parameters, training_accuracy

#: For each model: the paper's patch size and another valid one (None: the model takes single spectra only).
PATCHES = {"SpectralFormer": (7, 5), "SpectralFormer_pixel": (1, None), "GAHT": (7, 9)}


@pytest.mark.parametrize("name", sorted(PATCHES))
@pytest.mark.parametrize("n_bands", [30, 103, 200])
def test_builds_for_any_band_count_at_two_patch_sizes(name, n_bands):
    for patch in [p for p in PATCHES[name] if p is not None]:
        with torch.no_grad():
            logits = build(name, n_bands, patch)(torch.randn(2, n_bands, patch, patch))
        assert logits.shape == (2, 16) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_gradients_reach_every_parameter_and_are_finite(name):
    patch = PATCHES[name][0]
    model = build(name, 30, patch).train()
    loss = torch.nn.functional.cross_entropy(model(torch.randn(4, 30, patch, patch)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key
        assert parameter.grad.abs().sum() > 0, key


def test_group_wise_spectral_embedding_groups_each_band_with_its_wrapped_neighbours():
    x = torch.arange(5 * 4, dtype=torch.float32).view(1, 5, 2, 2)  # 5 bands, 2x2 pixels: band b holds 4b..4b+3
    tokens = group_wise_spectral_embedding(x, 3)
    assert tokens.shape == (1, 5, 12)
    for band in range(5):
        expected = torch.cat([x[0, (band + offset) % 5].flatten() for offset in (-1, 0, 1)])
        assert torch.equal(tokens[0, band], expected)
    assert torch.equal(group_wise_spectral_embedding(x, 1), x.flatten(2))


def test_too_few_bands_an_even_band_group_or_a_patch_for_the_pixel_model_are_one_line_user_errors():
    with pytest.raises(UserError, match=r"SpectralFormer needs at least band_patch = 3 bands") as error:
        build("SpectralFormer", 2, 7)
    assert "\n" not in str(error.value) and "not 2" in str(error.value)
    with pytest.raises(UserError, match="band_patch 4 must be odd"):
        build("SpectralFormer", 30, 7, band_patch=4)
    with pytest.raises(UserError, match="SpectralFormer_pixel classifies single spectra, not 7x7"):
        build("SpectralFormer_pixel", 30, 7)
    with pytest.raises(UserError, match="dropout"):
        build("SpectralFormer", 30, 7, dropout=1.0)
    with pytest.raises(UserError, match=r"groups 3 and heads 8 must divide the stage width 256") as error:
        build("GAHT", 30, 7, groups=3)
    assert "\n" not in str(error.value)
    with pytest.raises(UserError, match="same length"):
        build("GAHT", 30, 7, depths=[1, 1])


def test_gaht_takes_any_band_count_by_repeating_the_last_band_up_to_a_multiple_of_the_groups():
    model = build("GAHT", 3, 3)  # 3 bands -> 16 (16 groups), 3x3 patches: no limit of its own
    assert model.stages[0].embedding.conv.in_channels == 16
    x = torch.randn(2, 3, 3, 3)
    with torch.no_grad():
        padded = torch.cat([x, x[:, -1:].expand(-1, 13, -1, -1)], dim=1)
        assert torch.equal(model(x), model.head(model.stages[2](
            model.stages[1](model.stages[0](padded).transpose(1, 2).reshape(2, -1, 3, 3))
            .transpose(1, 2).reshape(2, -1, 3, 3)).mean(dim=1)))


def test_parameter_counts_on_indian_pines_match_the_authors_networks():
    # The authors' trained Indian Pines weights (danfenghong/IEEE_TGRS_SpectralFormer, log/*.pt) hold
    # 355,577 (patch-wise: 7x7, 3 bands a token) and 346,361 (pixel-wise) numbers; every tensor of
    # both loads into ours by name, shape for shape.
    assert n_parameters(build("SpectralFormer", 200, 7)) == 355_577
    assert n_parameters(build("SpectralFormer_pixel", 200, 1)) == 346_361
    # the three CAF token mixtures: 3 x (201 x 201 x 2 + 201); without them the paper's ViT baseline
    assert n_parameters(build("SpectralFormer", 200, 7, fusion=False)) == 355_577 - 243_009
    # GAHT with the authors' Salinas configuration (16 groups, depths 2, 1, 1) on 208 padded bands
    assert n_parameters(build("GAHT", 200, 7)) == 972_624


def test_registered_defaults_are_the_authors_protocols():
    patch = get_spec("SpectralFormer").training_defaults()
    assert (patch["patch_size"], patch["optimizer"], patch["lr"], patch["weight_decay"], patch["batch_size"],
            patch["epoch"], patch["val_fraction"]) == (7, "adam", 5e-4, 5e-3, 64, 300, 0.0)
    # StepLR(step_size=30, gamma=0.9) stepped before each epoch: epochs 30, 60, ... (1-based) start decayed
    assert patch["scheduler"] == {"name": "multistep", "gamma": 0.9, "milestones": list(range(29, 300, 30))}
    pixel = get_spec("SpectralFormer_pixel").training_defaults()
    assert (pixel["patch_size"], pixel["epoch"], pixel["weight_decay"]) == (1, 290, 0.0)
    assert pixel["scheduler"]["milestones"] == list(range(28, 290, 29))
    gaht = get_spec("GAHT").training_defaults()
    assert (gaht["patch_size"], gaht["optimizer"], gaht["lr"], gaht["momentum"], gaht["weight_decay"],
            gaht["batch_size"], gaht["epoch"], gaht["scheduler"]) == (7, "sgd", 1e-3, 0.9, 1e-4, 64, 300,
                                                                       {"name": "none"})
    assert gaht.get("val_fraction") is None  # the engine's: the authors' half-and-half split is a command-line choice


def test_the_multistep_schedule_decays_the_rate_as_the_authors_steplr():
    model = torch.nn.Linear(2, 2)
    spec = get_spec("SpectralFormer").training_defaults()["scheduler"]
    optimizer = torch.optim.SGD(model.parameters(), lr=5e-4)
    scheduler = build_scheduler(optimizer, spec, 300)
    ours = []
    for _ in range(300):
        ours.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    theirs_optimizer = torch.optim.SGD(torch.nn.Linear(2, 2).parameters(), lr=5e-4)
    theirs = torch.optim.lr_scheduler.StepLR(theirs_optimizer, step_size=30, gamma=0.9)
    reference = []
    for _ in range(300):  # the authors call scheduler.step() at the start of each epoch
        theirs_optimizer.step()
        theirs.step()
        reference.append(theirs_optimizer.param_groups[0]["lr"])
    assert np.allclose(ours, reference, rtol=1e-12)


@pytest.mark.parametrize("name, overrides", [
    ("SpectralFormer", {"patch_size": 3, "lr": 3e-3, "epoch": 6}),
    ("SpectralFormer_pixel", {"lr": 3e-3, "epoch": 10}),
    ("GAHT", {"patch_size": 5, "lr": 0.01, "epoch": 6}),
])
def test_fits_a_small_synthetic_scene_through_the_engine(tmp_path, name, overrides):
    scene = make_synthetic_scene(seed=0, rows=24, cols=24, n_bands=16, n_classes=3)
    folder = fit(name, scene, tmp_path, batch_size=32, **overrides)
    assert training_accuracy(folder, scene) > 0.9
    saved = ckpt.load_checkpoint(folder / "model.pt")
    assert saved["config"]["model"] == name
