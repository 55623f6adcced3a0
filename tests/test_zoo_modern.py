"""SSRN and HybridSN: shapes, size limits, parameter counts against the papers, and fits through the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models.modern  # noqa: F401  (registers SSRN and HybridSN)
from deephyperx import checkpoint as ckpt
from deephyperx.errors import UserError
from deephyperx.registry import create_model, get_spec
from deephyperx.synthetic import make_synthetic_scene
from zoo_support import build, fit, n_parameters, training_accuracy

#: For each model: the paper's patch size, another valid one, and one too small.
PATCHES = {"SSRN": (7, 5, 2), "HybridSN": (25, 11, 8)}


@pytest.mark.parametrize("name", sorted(PATCHES))
@pytest.mark.parametrize("n_bands", [30, 103, 200])
def test_builds_for_any_band_count_at_two_patch_sizes(name, n_bands):
    for patch in PATCHES[name][:2]:
        with torch.no_grad():
            logits = build(name, n_bands, patch)(torch.randn(3, n_bands, patch, patch))
        assert logits.shape == (3, 16) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_too_small_patch_or_too_few_bands_is_a_one_line_user_error(name):
    too_small = PATCHES[name][2]
    with pytest.raises(UserError, match=rf"{name} needs patches of at least") as error:
        build(name, 30, too_small)
    assert "\n" not in str(error.value) and f"{too_small}x{too_small}" in str(error.value)
    with pytest.raises(UserError, match=rf"{name} needs at least \d+ bands"):
        build(name, 6, PATCHES[name][0])
    with pytest.raises(UserError, match="dropout"):
        create_model(name, n_bands=30, n_classes=4, patch_size=PATCHES[name][0], dropout=1.5)


def test_parameter_counts_on_indian_pines_match_the_references():
    # SSRN, 7x7x200, 16 classes, two spectral + two spatial residual blocks (the paper's Fig.):
    # 364,168. The authors' repository trains build_resnet_8 (one block of each): 346,144
    # trainable Keras parameters by hand (C1 192, spectral block 8,112, C128 298,112,
    # C3x3x128 27,672, spatial block 10,416 + a 600-weight 1x1x1 shortcut conv, dense 400,
    # BN gammas/betas 640 incl. two BN pairs in a row after each stack); our blocks=1 has
    # 345,448 = 346,144 - 600 (identity shortcut, as the paper says) - 96 (no doubled BN).
    assert n_parameters(build("SSRN", 200, 7)) == 364_168
    assert n_parameters(create_model("SSRN", n_bands=200, n_classes=16, patch_size=7, blocks=1)) == 345_448
    # HybridSN on Indian Pines sees 30 PCA components at 25x25: 5,122,176, exactly the paper's
    # "total number of trainable weight parameters" and the authors' model.summary().
    assert n_parameters(build("HybridSN", 30, 25)) == 5_122_176


def test_registered_defaults_are_the_papers_protocols():
    ssrn = get_spec("SSRN").training_defaults()
    assert (ssrn["patch_size"], ssrn["optimizer"], ssrn["lr"], ssrn["batch_size"], ssrn["epoch"]) == \
        (7, "rmsprop", 3e-4, 16, 200)
    hybrid = get_spec("HybridSN").training_defaults()
    assert (hybrid["patch_size"], hybrid["optimizer"], hybrid["lr"], hybrid["batch_size"], hybrid["epoch"]) == \
        (25, "adam", 1e-3, 256, 100)
    assert hybrid["reduction"] == {"name": "pca", "components": 30, "whiten": True}  # the notebook's PCA(whiten=True)
    assert hybrid["val_fraction"] == 0.0  # every training pixel trains, as in the notebook
    assert ssrn.get("val_fraction") is None  # a run setting only where the paper fixes it


def test_ssrn_fits_a_small_synthetic_scene(tmp_path):
    scene = make_synthetic_scene(seed=0, rows=24, cols=24, n_bands=16, n_classes=3)
    folder = fit("SSRN", scene, tmp_path, epoch=6, batch_size=32, lr=3e-3)
    assert training_accuracy(folder, scene) > 0.9


def test_hybridsn_trains_on_pca_components_inside_the_pipeline(tmp_path):
    scene = make_synthetic_scene(seed=0, rows=24, cols=24, n_bands=36, n_classes=3)
    folder = fit("HybridSN", scene, tmp_path, patch_size=9, epoch=6, batch_size=32)
    assert training_accuracy(folder, scene) > 0.9
    saved = ckpt.load_checkpoint(folder / "model.pt")
    assert saved["config"]["reduction"] == {"name": "pca", "components": 30, "whiten": True}
    assert np.asarray(saved["projection"]["components"]).shape == (30, scene.n_bands)
    # the 2-D convolution reads 32 maps per remaining band: 32 * (30 - 12) = 576 means 30 input bands, not 36
    assert saved["model_state"]["spatial.0.weight"].shape[1] == 32 * (30 - 12)
