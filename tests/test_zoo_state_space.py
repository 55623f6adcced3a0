"""The selective scan against a step-by-step loop, the Mamba layer, and MambaHSI on patches: shapes, limits,
parameter count, the registered protocol, and a fit through the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

import models.state_space  # noqa: F401  (registers MambaHSI)
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.registry import get_spec
from deephyperx.runner import ClassifyTask
from deephyperx.synthetic import make_synthetic_scene
from models.state_space import (Mamba, linear_scan, linear_scan_reference, selective_scan,
                                selective_scan_reference)
from zoo_support import build, n_parameters

LENGTHS = [1, 2, 3, 4, 7, 16, 17, 81]


def scan_inputs(length: int, dtype=torch.float32, strong_decay: bool = False, seed: int = 0):
    """u, delta (2, L, 6), A (6, 5), B, C (2, L, 5), D (6), as Mamba makes them (delta > 0, A < 0)."""
    g = torch.Generator().manual_seed(seed)
    scale = 30.0 if strong_decay else 1.0
    return [torch.randn(2, length, 6, generator=g, dtype=dtype),
            F.softplus(torch.randn(2, length, 6, generator=g, dtype=dtype)) * scale,
            -torch.arange(1, 6, dtype=dtype).repeat(6, 1) * torch.rand(6, 1, generator=g, dtype=dtype),
            torch.randn(2, length, 5, generator=g, dtype=dtype), torch.randn(2, length, 5, generator=g, dtype=dtype),
            torch.randn(6, generator=g, dtype=dtype)]


@pytest.mark.parametrize("length", LENGTHS)
def test_linear_scan_equals_the_step_by_step_recurrence(length):
    g = torch.Generator().manual_seed(length)
    a, b = torch.rand(3, length, 4, 5, generator=g), torch.randn(3, length, 4, 5, generator=g)
    a_before, b_before = a.clone(), b.clone()
    torch.testing.assert_close(linear_scan(a, b), linear_scan_reference(a, b), rtol=1e-5, atol=1e-5)
    assert torch.equal(a, a_before) and torch.equal(b, b_before)  # the scan writes into copies


@pytest.mark.parametrize("length", LENGTHS)
def test_selective_scan_and_its_gradients_equal_the_sequential_loop_in_float32(length):
    inputs = [x.requires_grad_() for x in scan_inputs(length)]
    ours, reference = selective_scan(*inputs), selective_scan_reference(*inputs)
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    weights = torch.randn_like(ours)
    for mine, theirs in zip(torch.autograd.grad((ours * weights).sum(), inputs),
                            torch.autograd.grad((reference * weights).sum(), inputs)):
        torch.testing.assert_close(mine, theirs, rtol=1e-4, atol=1e-4)


def test_selective_scan_gradients_pass_gradcheck_in_float64():
    inputs = [x.requires_grad_() for x in scan_inputs(10, dtype=torch.float64)]
    assert torch.autograd.gradcheck(selective_scan, inputs)


def test_strong_decay_over_long_sequences_stays_finite_and_exact():
    inputs = [x.requires_grad_() for x in scan_inputs(200, strong_decay=True)]  # exp(delta A) down to e^-600
    ours, reference = selective_scan(*inputs), selective_scan_reference(*inputs)
    assert torch.isfinite(ours).all()
    torch.testing.assert_close(ours, reference, rtol=1e-5, atol=1e-5)
    grads = torch.autograd.grad(ours.sum(), inputs)
    assert all(torch.isfinite(g).all() for g in grads)


def test_mamba_layer_is_causal_and_initialised_as_mamba_ssm():
    torch.manual_seed(0)
    layer = Mamba(32).eval()
    torch.testing.assert_close(-torch.exp(layer.A_log), -torch.arange(1.0, 17.0).repeat(64, 1))  # S4D-real
    assert torch.equal(layer.D, torch.ones(64))
    steps = F.softplus(layer.dt_proj.bias)
    assert steps.min() >= 1e-4 and steps.max() <= 0.1 + 1e-6  # delta starts log-uniform in [0.001, 0.1]
    x = torch.randn(2, 12, 32)
    later_changed = x.clone()
    later_changed[:, 7:] = torch.randn(2, 5, 32)
    with torch.no_grad():
        torch.testing.assert_close(layer(x)[:, :7], layer(later_changed)[:, :7])
        assert not torch.allclose(layer(x)[:, 7:], layer(later_changed)[:, 7:])


@pytest.mark.parametrize("n_bands", [30, 103, 200])
def test_mambahsi_builds_for_any_band_count_at_two_patch_sizes(n_bands):
    for patch in (9, 5):
        with torch.no_grad():
            logits = build("MambaHSI", n_bands, patch)(torch.randn(2, n_bands, patch, patch))
        assert logits.shape == (2, 16) and torch.isfinite(logits).all()


def test_mambahsi_output_is_the_centre_of_the_bilinearly_upsampled_logit_map():
    model = build("MambaHSI", 12, 9)
    x = torch.randn(3, 12, 9, 9)
    with torch.no_grad():
        small = model.head(model.blocks(model.embedding(x)))  # 9x9 -> 4x4 -> 2x2
        assert small.shape[-2:] == (2, 2)
        torch.testing.assert_close(model(x), small.mean(dim=(2, 3)))  # align_corners: the middle of a 2x2 map


def test_mambahsi_gradients_reach_every_parameter_and_are_finite():
    model = build("MambaHSI", 30, 9).train()
    loss = F.cross_entropy(model(torch.randn(4, 30, 9, 9)), torch.tensor([0, 1, 2, 3]))
    loss.backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key
        assert parameter.grad.abs().sum() > 0, key


def test_too_small_patch_or_bad_groups_are_one_line_user_errors():
    with pytest.raises(UserError, match=r"MambaHSI needs patches of at least 4x4") as error:
        build("MambaHSI", 30, 3)
    assert "\n" not in str(error.value) and "3x3" in str(error.value)
    with pytest.raises(UserError, match="groups 3 must divide hidden 128"):
        build("MambaHSI", 30, 9, groups=3)
    with pytest.raises(UserError, match="tokens 0 must be a whole number"):
        build("MambaHSI", 30, 9, tokens=0)


def test_parameter_count_on_indian_pines_and_registered_protocol():
    # hidden 128 as the authors train it: three blocks of 126,914 (spatial Mamba 116,480, spectral Mamba
    # 9,920, two GroupNorms, 2 fusion weights), embedding 25,984, head 18,832; the patch size does not count
    assert n_parameters(build("MambaHSI", 200, 9)) == n_parameters(build("MambaHSI", 200, 5)) == 425_558
    defaults = get_spec("MambaHSI").training_defaults()
    assert (defaults["patch_size"], defaults["optimizer"], defaults["lr"], defaults["weight_decay"],
            defaults["epoch"], defaults["batch_size"], defaults["scheduler"]) == (9, "adam", 3e-4, 0.0, 200, 64,
                                                                                  {"name": "none"})


def test_mambahsi_fits_a_small_synthetic_scene_through_the_engine(tmp_path):
    scene = make_synthetic_scene(seed=0, rows=24, cols=24, n_bands=16, n_classes=3)
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.3, "val_fraction": 0.1}
    config = resolve_config(get_spec("MambaHSI"), {**base, "patch_size": 5, "epoch": 6, "batch_size": 32,
                                                   "lr": 3e-3, "model_args": {"hidden": 16}})
    Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / "MambaHSI")
    train = np.load(tmp_path / "MambaHSI" / "split.npz")["train"]
    prediction = np.load(tmp_path / "MambaHSI" / "prediction.npy")
    assert (prediction[train] == scene.labels[train]).mean() > 0.9
