"""The 3D CNN family (hamida, lee, chen, li, he): shapes, refused sizes, parameter counts, fitting."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import models.cnn3d  # noqa: F401  (registers the family)
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.registry import get_spec
from deephyperx.runner import ClassifyTask
from deephyperx.synthetic import make_synthetic_scene
from zoo_support import build, n_parameters as parameter_count

FAMILY = ("hamida", "lee", "chen", "li", "he")
#: A second valid patch size per model, besides the paper's.
OTHER_PATCH = {"hamida": 3, "lee": 7, "chen": 25, "li": 7, "he": 5}
#: A patch size each model must refuse (hamida and lee take any size).
TOO_SMALL_PATCH = {"chen": 23, "li": 3, "he": 4}
#: A band count each model must refuse (lee and chen take any count).
TOO_FEW_BANDS = {"hamida": 4, "li": 8, "he": 22}


def paper_patch(name: str) -> int:
    return get_spec(name).training_defaults()["patch_size"]


@pytest.mark.parametrize("n_bands", [30, 103, 200])
@pytest.mark.parametrize("name", FAMILY)
def test_builds_and_gives_logits_of_the_right_shape(name, n_bands):
    dense = get_spec(name).training_defaults()["output"] == "dense"
    for patch in (paper_patch(name), OTHER_PATCH[name]):
        with torch.no_grad():
            logits = build(name, n_bands, patch)(torch.randn(2, n_bands, patch, patch))
        assert logits.shape == ((2, 16, patch, patch) if dense else (2, 16))
        assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", sorted(TOO_SMALL_PATCH))
def test_too_small_patch_is_refused_in_one_line(name):
    patch = TOO_SMALL_PATCH[name]
    with pytest.raises(UserError, match=f"model {name} needs patches of at least") as error:
        build(name, 103, patch)
    assert f"{patch}x{patch}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name", sorted(TOO_FEW_BANDS))
def test_too_few_bands_are_refused_in_one_line(name):
    bands = TOO_FEW_BANDS[name]
    with pytest.raises(UserError, match=f"model {name} needs at least .* spectral bands") as error:
        build(name, bands, paper_patch(name))
    assert f"not {bands}" in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("name, expected", [
    # DeepHyperX: 45,196. Same layers, but its conv1 has no spectral padding and its last 1x1x2 layer
    # pads by 1, so 26 spectral positions reach the classifier instead of our 25 (authors' Caffe files).
    ("hamida", 44_636),
    # DeepHyperX: 390,288 (IGARSS bank: 1x1xB and 3x3xB, 128 each). The TIP bank adds 128 5x5xB
    # kernels (+640,128) and its layer 2 reads 384 instead of 256 channels (+16,384).
    ("lee", 1_046_800),
    # DeepHyperX: 1,119,856, the same: three 32-kernel 4x4x32 layers, 32x107 features, 16 classes.
    ("chen", 1_119_856),
    # DeepHyperX: 115,248 with 16 kernels and spectral padding (32x196 features). The paper's 2 kernels
    # and valid convolutions: 128 + 220 + (4x192 + 1) x 16 = 12,652.
    ("li", 12_652),
    # DeepHyperX: 269,024, its classifier reading 16x62x4x4 because its pooling layer is never applied.
    # With the pooling: 16x20x2x2 = 1,280 features, 20,496 of the 35,552 parameters.
    ("he", 35_552),
])
def test_parameter_count_on_indian_pines(name, expected):
    assert parameter_count(build(name, 200, paper_patch(name))) == expected


def test_li_planes_option_gives_deephyperx_width():
    model = build("li", 200, 5, n_planes=16)
    assert model.conv1.out_channels == 16 and model.conv2.out_channels == 32
    assert model.fc.in_features == 32 * 192  # valid convolutions, unlike DeepHyperX's 32 x 196


def test_chen_kernel_depth_shrinks_only_when_the_bands_are_too_few():
    assert build("chen", 200, 27).conv1.kernel_size == (32, 4, 4)
    assert build("chen", 94, 27).conv1.kernel_size == (32, 4, 4)  # 94 - 3 x 31 = 1 band left
    assert build("chen", 30, 27).conv1.kernel_size == (10, 4, 4)  # 30 - 3 x 9 = 3 bands left
    weights = build("chen", 103, 27, init_std=0.001).conv2.weight
    assert abs(float(weights.detach().std()) - 0.001) < 1e-4  # the paper's initialisation on request


def test_he_applies_its_pooling_layer():
    assert build("he", 200, 7).fc.in_features == 16 * 20 * 2 * 2


def test_lee_centre_pixel_is_the_paper_network_on_its_5x5_neighbourhood():
    model = build("lee", 30, 7)
    patch = torch.randn(3, 30, 7, 7)
    with torch.no_grad():
        wide = model(patch)[:, :, 3, 3]
        narrow = model(patch[:, :, 1:6, 1:6])[:, :, 2, 2]
    assert torch.allclose(wide, narrow, atol=1e-5)  # padding at the patch border never reaches the centre


# ----- fitting through the real engine ------------------------------------------------------------

def training_accuracy(model: str, scene, tmp_path, **overrides) -> float:
    """Run ``model`` through the experiment skeleton and score its map on the run's own training pixels."""
    base = {"dataset": scene.name, "out": str(tmp_path), "training_sample": 0.5, "val_fraction": 0.1}
    config = resolve_config(get_spec(model), {**base, **overrides})
    Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / model)
    train = np.load(tmp_path / model / "split.npz")["train"]
    prediction = np.load(tmp_path / model / "prediction.npy")
    return float((prediction[train] == scene.labels[train]).mean())


def test_hamida_fits(small_scene, tmp_path):
    assert training_accuracy("hamida", small_scene, tmp_path, epoch=6, lr=0.05) > 0.9


def test_lee_fits_densely(small_scene, tmp_path):
    assert training_accuracy("lee", small_scene, tmp_path, epoch=4, test_stride=5) > 0.9


def test_li_fits(tmp_path):
    scene = make_synthetic_scene(rows=24, cols=24, n_bands=20, n_classes=3)
    assert training_accuracy("li", scene, tmp_path, epoch=15) > 0.9


def test_he_fits(tmp_path):
    scene = make_synthetic_scene(rows=24, cols=24, n_bands=30, n_classes=3)
    assert training_accuracy("he", scene, tmp_path, epoch=6) > 0.9


def test_chen_fits_at_its_smallest_patch(tmp_path):
    # Patch 25 (the smallest that fits), 10 bands and 8 kernels per layer without dropout keep the
    # 3D convolutions over 25x25 neighbourhoods to a few seconds; the layers are the default ones.
    scene = make_synthetic_scene(rows=28, cols=28, n_bands=10, n_classes=3)
    accuracy = training_accuracy("chen", scene, tmp_path, patch_size=25, epoch=10, lr=0.03,
                                 scheduler={"name": "none"}, model_args={"n_planes": 8, "dropout": 0.0})
    assert accuracy > 0.9
