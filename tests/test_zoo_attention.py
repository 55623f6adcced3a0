"""SSFTT, A2S2K-ResNet and DBDA: shapes, size limits, parameter counts against the authors' code, the
attention blocks' behaviour, and short fits through the engine."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models.attention as attention
from deephyperx import checkpoint as ckpt
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.registry import create_model, get_spec
from deephyperx.runner import ClassifyTask
from deephyperx.synthetic import make_synthetic_scene
from zoo_support import build, n_parameters

#: For each model: the paper's patch size and another valid one.
PATCHES = {"SSFTT": (13, 7), "A2S2K": (7, 5), "DBDA": (9, 5)}
#: The largest patch each model refuses (DBDA's convolutions are all padded: it takes any patch).
TOO_SMALL_PATCH = {"SSFTT": 4, "A2S2K": 2}
#: The largest band count each model refuses.
TOO_FEW_BANDS = {"SSFTT": 2, "A2S2K": 6, "DBDA": 6}


@pytest.mark.parametrize("name", sorted(PATCHES))
@pytest.mark.parametrize("n_bands", [30, 103, 200])
def test_builds_for_any_band_count_at_two_patch_sizes(name, n_bands):
    for patch in PATCHES[name]:
        with torch.no_grad():
            logits = build(name, n_bands, patch)(torch.randn(3, n_bands, patch, patch))
        assert logits.shape == (3, 16) and torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(TOO_SMALL_PATCH))
def test_too_small_patch_is_a_one_line_user_error(name):
    too_small = TOO_SMALL_PATCH[name]
    with pytest.raises(UserError, match=rf"{name} needs patches of at least {too_small + 1}x{too_small + 1}") as error:
        build(name, 30, too_small)
    assert "\n" not in str(error.value) and f"not {too_small}x{too_small}" in str(error.value)
    build(name, 30, too_small + 1)  # the smallest patch it takes


def test_dbda_takes_even_a_single_pixel():
    with torch.no_grad():
        assert build("DBDA", 30, 1)(torch.randn(2, 30, 1, 1)).shape == (2, 16)


@pytest.mark.parametrize("name", sorted(TOO_FEW_BANDS))
def test_too_few_bands_is_a_one_line_user_error(name):
    bands = TOO_FEW_BANDS[name]
    with pytest.raises(UserError, match=rf"{name} needs at least {bands + 1} bands or PCA components, "
                                        rf"not {bands};") as error:
        build(name, bands, PATCHES[name][0])
    assert "\n" not in str(error.value)
    build(name, bands + 1, PATCHES[name][0])


@pytest.mark.parametrize("name, options, message", [
    ("SSFTT", {"dropout": 1.5}, "dropout 1.5 must lie in"),
    ("DBDA", {"dropout": -0.1}, "dropout -0.1 must lie in"),
    ("SSFTT", {"dim": 60}, "dim 60 must be a multiple of heads 8"),
    ("SSFTT", {"tokens": 0}, "tokens 0 must be a whole number >= 1"),
])
def test_bad_options_are_user_errors(name, options, message):
    with pytest.raises(UserError, match=message):
        create_model(name, n_bands=30, n_classes=4, patch_size=PATCHES[name][0], **options)


def test_parameter_counts_on_indian_pines_against_the_authors_code():
    # SSFTT, 13x13x30 PCA components: 153,224, exactly the authors' SSFTTnet (conv3d 224, BN 16,
    # conv2d 129,088, BN 128, tokenizer 256 + 4,096, class token 64, positions 320, encoder 17,992,
    # classifier 1,040).
    assert n_parameters(build("SSFTT", 30, 13)) == 153_224
    # A2S2K, 7x7x200: 373,160. The authors' S3KAIResNet has 370,856: one excitation shared by both
    # kernel sizes (-2,424), 96 unused batch-norm weights and 3x3 EFR kernels (+6 x 4 never-used weights).
    assert n_parameters(build("A2S2K", 200, 7)) == 373_160
    assert n_parameters(build("A2S2K", 200, 7, shared_excitation=True)) == 370_856 - 96 - 24
    # DBDA, 9x9x200: 382,328; the authors' DBDA_network_MISH has 382,347, 19 in a convolution never called.
    assert n_parameters(build("DBDA", 200, 9)) == 382_328


def test_registered_defaults_are_the_authors_protocols():
    expected = {"SSFTT": (13, "adam", 1e-3, 64, 100, 0.0), "A2S2K": (7, "adam", 1e-3, 16, 200, 0.0),
                "DBDA": (9, "adam", 5e-4, 16, 200, 0.0)}
    for name, protocol in expected.items():
        spec = get_spec(name).training_defaults()
        got = tuple(spec[k] for k in ("patch_size", "optimizer", "lr", "batch_size", "epoch", "weight_decay"))
        assert got == protocol, name
        assert spec["scheduler"] == {"name": "none"}  # none of the authors' runs decays its rate (docstrings)
        assert spec["val_fraction"] == 0.0  # every training pixel trains (A2S2K/DBDA validated on test pixels)
    assert get_spec("SSFTT").training_defaults()["reduction"] == {"name": "pca", "components": 30, "whiten": True}
    assert get_spec("A2S2K").training_defaults()["reduction"] is None  # bands kept: no PCA
    assert get_spec("DBDA").training_defaults()["reduction"] is None


@pytest.mark.parametrize("name", sorted(PATCHES))
def test_every_parameter_gets_a_finite_gradient(name):
    patch = PATCHES[name][1]
    model = build(name, 30, patch).train()
    with torch.no_grad():  # DBDA's attention gains start at 0, which keeps its queries, keys and values still
        for param_name, param in model.named_parameters():
            if param_name.endswith("gamma"):
                param.fill_(0.5)
    x, y = torch.randn(4, 30, patch, patch), torch.tensor([0, 1, 2, 3])
    torch.nn.functional.cross_entropy(model(x), y).backward()
    for param_name, param in model.named_parameters():
        assert param.grad is not None and torch.isfinite(param.grad).all(), param_name
    assert sum(bool(p.grad.abs().sum() > 0) for p in model.parameters()) == len(list(model.parameters()))


def test_a2s2k_selects_between_kernel_sizes_unless_the_excitation_is_shared():
    wide, narrow = torch.randn(5, 24, 12, 3, 3), torch.randn(5, 24, 12, 3, 3)
    torch.manual_seed(0)
    shared = attention.A2S2KResNet(30, 4, 5, shared_excitation=True)
    # the authors' single excitation gives both kernel sizes weight 1/2, whatever the input
    assert torch.allclose(shared.select(wide, narrow), (wide + narrow) / 2, atol=1e-6)
    learnt = build("A2S2K", 30, 5)
    fused = learnt.select(wide, narrow)
    share = (fused - narrow) / (wide - narrow)  # the weight given to the wide kernels, per channel
    assert not torch.allclose(share, torch.full_like(share, 0.5), atol=1e-3)
    assert ((share > -1e-4) & (share < 1 + 1e-4)).float().mean() > 0.99  # a convex combination


def test_efr_scales_each_channel_by_a_weight_in_zero_one():
    efr = attention._EFR()
    x = torch.rand(2, 24, 5, 5) + 0.1
    weights = efr(x) / x
    assert torch.allclose(weights, weights[:, :, :1, :1].expand_as(weights))  # one weight per channel
    assert ((weights > 0) & (weights < 1)).all()


def test_dbda_attention_blocks_start_as_the_identity_and_learn_a_mixture():
    x = torch.randn(3, 60, 5, 5)
    channel, position = attention._ChannelAttention(), attention._PositionAttention(60)
    assert torch.equal(channel(x), x) and torch.equal(position(x), x)  # gamma starts at 0
    with torch.no_grad():
        channel.gamma.fill_(1.0)
        position.gamma.fill_(1.0)
        mixed = channel(x) - x  # each channel becomes a convex combination of all channels, pixel by pixel
    assert (mixed >= x.amin(dim=1, keepdim=True) - 1e-5).all() and (mixed <= x.amax(dim=1, keepdim=True) + 1e-5).all()
    assert not torch.allclose(mixed, x)
    assert torch.allclose((channel(torch.ones_like(x)) - 1), torch.ones_like(x))
    assert torch.allclose(position(torch.ones_like(x)) - 1, position.value(torch.ones_like(x)))


def test_ssftt_tokens_are_weighted_means_over_the_pixels():
    model = build("SSFTT", 30, 7)
    pixels = torch.randn(2, 9, 64)
    tokens = model.tokenize(pixels)
    assert tokens.shape == (2, 4, 64)
    same = pixels[:, :1].expand(-1, 9, -1)  # every pixel alike: each token is that pixel's projection
    assert torch.allclose(model.tokenize(same), (same[:, :1] @ model.token_wV[0]).expand(-1, 4, -1), atol=1e-5)


def fit(name, scene, tmp_path, **overrides):
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.3}
    config = resolve_config(get_spec(name), {**base, **overrides})
    Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / name)
    return tmp_path / name


@pytest.mark.parametrize("name, bands, patch", [("SSFTT", 36, 7), ("A2S2K", 16, 5), ("DBDA", 16, 5)])
def test_fits_a_small_synthetic_scene_through_the_engine(name, bands, patch, tmp_path):
    scene = make_synthetic_scene(seed=0, rows=20, cols=20, n_bands=bands, n_classes=3)
    folder = fit(name, scene, tmp_path, patch_size=patch, epoch=2)
    saved = ckpt.load_checkpoint(folder / "model.pt")
    assert saved["config"]["epoch"] == 2 and saved["config"]["val_fraction"] == 0.0
    prediction = np.load(folder / "prediction.npy")
    assert prediction.shape == scene.labels.shape and set(np.unique(prediction)) <= {0, 1, 2}
    train = np.load(folder / "split.npz")["train"]
    # after 2 epochs: SSFTT 0.95, A2S2K 0.78, DBDA 0.92; always guessing the largest class would score 0.54
    assert (prediction[train] == scene.labels[train]).mean() > 0.7
    if name == "SSFTT":  # the 2-D layer reads 8 maps per band left by the 3x3x3 kernels of the 30 PCA components
        assert saved["model_state"]["spatial.0.weight"].shape[1] == 8 * (30 - 2)
