"""Dense (fully convolutional) evaluation of centre-pixel models equals patch-by-patch evaluation.

Driven by the registry: every registered neural centre-pixel model either has an exact dense pass,
checked against the batched patch path (border pixels, masks, several tiles, even patch sizes), or
is listed in NOT_DENSE with a reason and falls back to the patch path.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import models  # noqa: F401  (registers the zoo)
from deephyperx.dense_eval import NOT_DENSE, Tile, mac_accounting, plan_tiles, supports_dense, tile_bytes
from deephyperx.errors import UserError
from deephyperx.inference import centre_logits, patch_logits, predict_centre
from deephyperx.registry import create_model, get_spec, list_models
from deephyperx.sampling import PatchSampler
from models.spectral_2d import SHARMA_MIN_PATCH

CPU = torch.device("cpu")
DATA = Path("/work/shared/data")

#: Smallest patch size and a small band count each model accepts, and options that shrink it.
SMALL: dict[str, tuple[int, int, dict]] = {
    "nn": (1, 5, {}), "hu": (1, 10, {}), "mou": (1, 4, {"hidden": 4}), "boulch": (1, 8, {}),
    "luo": (3, 8, {"kernels": 4, "fc_units": 8}), "SSRN": (3, 7, {}),
    "hamida": (5, 8, {}), "li": (5, 9, {}), "he": (5, 23, {}), "liu": (4, 6, {"planes": 4}),
    "HybridSN": (9, 13, {}), "chen": (25, 4, {"n_planes": 3}), "sharma": (SHARMA_MIN_PATCH, 2, {}),
}
#: Models whose patch path over a whole test scene would take seconds: checked on corner blocks.
HEAVY = {"chen", "sharma"}


def centre_models() -> list[str]:
    """The zoo's centre-pixel models (models that other test files register on the fly are not the zoo's)."""
    return [n for n in list_models("neural") if get_spec(n).training_defaults()["output"] == "center"
            and get_spec(n).factory.__module__.startswith("models.")]


def small_config(name: str) -> tuple[int, int, dict]:
    """SMALL's entry, or the registry's patch size with 32 bands for a model added later."""
    return SMALL.get(name, (get_spec(name).training_defaults()["patch_size"], 32, {}))


def build(name: str, patch_size: int | None = None) -> tuple[torch.nn.Module, int, int]:
    size, bands, options = small_config(name)
    size = patch_size or size
    torch.manual_seed(0)
    model = create_model(name, n_bands=bands, n_classes=5, patch_size=size, **options).eval()
    return model, size, bands


def scene_sampler(patch_size: int, bands: int, seed: int = 0) -> PatchSampler:
    """A random 11x13 scene (larger when the patch needs it), reflection-padded for ``patch_size``."""
    height, width = max(11, patch_size + 1), max(13, patch_size + 3)
    cube = np.random.default_rng(seed).standard_normal((height, width, bands)).astype(np.float32)
    return PatchSampler([cube], np.zeros((height, width), dtype=np.int64), patch_size)


def border_mask(shape: tuple[int, int], seed: int = 1) -> np.ndarray:
    """Every border pixel and about a fifth of the others."""
    mask = np.random.default_rng(seed).random(shape) < 0.2
    mask[[0, -1]] = True
    mask[:, [0, -1]] = True
    return mask


def corner_masks(shape: tuple[int, int]) -> list[np.ndarray]:
    """3x3 blocks at the top-left and bottom-right corners (border pixels, small dense tiles)."""
    first, last = np.zeros(shape, dtype=bool), np.zeros(shape, dtype=bool)
    first[:3, :3] = True
    last[-3:, -3:] = True
    return [first, last]


def assert_close(dense: torch.Tensor, patches: torch.Tensor) -> None:
    assert dense.shape == patches.shape and dense.dtype == torch.float32
    scale = max(1.0, float(patches.abs().max()))
    assert float((dense - patches).abs().max()) <= 1e-4 * scale


def check_equal(model: torch.nn.Module, sampler: PatchSampler, mask: np.ndarray | None, **kwargs) -> None:
    rows, cols = np.nonzero(mask) if mask is not None else np.divmod(np.arange(np.prod(sampler.shape)),
                                                                      sampler.shape[1])
    expected = patch_logits(model, sampler, 64, CPU, rows, cols)
    assert_close(centre_logits(model, sampler, 64, CPU, mask, dense=True, **kwargs), expected)


DENSE = [n for n in centre_models() if n not in NOT_DENSE]
FALLBACK = [n for n in centre_models() if n in NOT_DENSE]


def test_every_centre_model_goes_dense_or_says_why():
    for name in centre_models():
        model = build(name)[0]
        assert supports_dense(model) != (name in NOT_DENSE), name
    assert set(NOT_DENSE) <= set(centre_models())
    assert {"hamida", "li", "he", "chen", "sharma", "HybridSN", "liu"} <= set(DENSE)


@pytest.mark.parametrize("name", [n for n in DENSE if n not in HEAVY])
def test_dense_equals_patches_on_every_pixel(name):
    model, size, bands = build(name)
    sampler = scene_sampler(size, bands)
    check_equal(model, sampler, None)
    check_equal(model, sampler, border_mask(sampler.shape))


@pytest.mark.parametrize("name", [n for n in DENSE if n not in HEAVY])
def test_dense_equals_patches_over_many_tiles(name):
    """Budgets that fit a third of the rows (row tiles), then a third of a row (column tiles too)."""
    model, size, bands = build(name)
    sampler = scene_sampler(size, bands)
    height, width = sampler.shape
    for rows, cols in ((height // 3, width), (1, width // 3)):
        budget = tile_bytes(model, [bands], size, rows, cols)
        tiles = plan_tiles(model, sampler, (0, height, 0, width), budget)
        shapes = {(t.height, t.width) for t in tiles}
        assert len(tiles) > 1 and all(tile_bytes(model, [bands], size, h, w) <= budget for h, w in shapes)
        if cols < width:
            assert max(w for _, w in shapes) < width
        check_equal(model, sampler, border_mask(sampler.shape, seed=2), tile_bytes=budget)


@pytest.mark.parametrize("name", sorted(HEAVY & set(DENSE)))
def test_dense_equals_patches_on_corner_blocks(name):
    model, size, bands = build(name)
    sampler = scene_sampler(size, bands)
    for mask in corner_masks(sampler.shape):
        check_equal(model, sampler, mask)


@pytest.mark.parametrize("name,patch_size", [("hamida", 6), ("li", 6), ("he", 6), ("liu", 8), ("HybridSN", 10)])
def test_even_patch_sizes(name, patch_size):
    """An even patch has one more pixel before its centre than after: the dense map must follow."""
    model, size, bands = build(name, patch_size)
    assert supports_dense(model)
    check_equal(model, scene_sampler(size, bands, seed=3), None)


@pytest.mark.parametrize("name", FALLBACK)
def test_fallback_models_use_batched_patches(name):
    model, size, bands = build(name)
    sampler = scene_sampler(size, bands)
    mask = border_mask(sampler.shape)
    expected = patch_logits(model, sampler, 64, CPU, *np.nonzero(mask))
    assert torch.equal(centre_logits(model, sampler, 64, CPU, mask), expected)
    with pytest.raises(ValueError, match="no exact dense evaluation"):
        centre_logits(model, sampler, 64, CPU, mask, dense=True)


def test_hamida_on_small_patches_falls_back():
    """Below 5x5 hamida pads its 3x3 convolutions inside the patch: not dense, same logits."""
    for size in (3, 4):
        model = build("hamida", size)[0]
        assert not supports_dense(model)
        sampler = scene_sampler(size, 8)
        assert torch.equal(centre_logits(model, sampler, 64, CPU),
                           patch_logits(model, sampler, 64, CPU, *np.divmod(np.arange(11 * 13), 13)))


def test_predict_centre_is_the_argmax_in_mask_order():
    model, size, bands = build("li")
    sampler = scene_sampler(size, bands)
    mask = border_mask(sampler.shape, seed=4)
    logits = centre_logits(model, sampler, 16, CPU, mask)
    assert logits.shape == (mask.sum(), 5)
    prediction = predict_centre(model, sampler, 16, CPU, mask)
    assert np.array_equal(prediction[mask], logits.argmax(1).numpy())
    assert (prediction[~mask] == -1).all()
    rows, cols = np.nonzero(mask)
    one = patch_logits(model, sampler, 1, CPU, rows[7:8], cols[7:8])
    assert_close(logits[7:8], one)


def test_training_mode_model_is_evaluated_in_eval_mode():
    model, size, bands = build("liu")
    sampler = scene_sampler(size, bands)
    model.train()
    dense = centre_logits(model, sampler, 64, CPU)
    assert not model.training
    assert_close(dense, patch_logits(model, sampler, 64, CPU, *np.divmod(np.arange(11 * 13), 13)))


def test_tiles_cover_the_box_once():
    model, size, bands = build("he")
    sampler = scene_sampler(size, bands)
    box = (2, 10, 1, 12)
    tiles = plan_tiles(model, sampler, box, 2 ** 20)
    count = np.zeros(sampler.shape, dtype=int)
    for t in tiles:
        assert isinstance(t, Tile)
        count[t.row:t.row + t.height, t.col:t.col + t.width] += 1
    assert (count[2:10, 1:12] == 1).all() and count.sum() == 8 * 11


def test_too_small_a_tile_budget_is_refused():
    model, size, bands = build("hamida")
    sampler = scene_sampler(size, bands)
    with pytest.raises(UserError, match="tile budget 100 bytes is too small"):
        centre_logits(model, sampler, 64, CPU, tile_bytes=100)


@pytest.mark.parametrize("name", centre_models())
def test_mac_ratio(name):
    """Dense evaluation shares work wherever a model reads a spatial patch; the fallbacks share none."""
    model, size, bands = build(name)
    count = mac_accounting(model, bands, size, 16, 16)
    assert count.macs_patch_per_pixel > 0
    if name in NOT_DENSE:
        assert count.mac_ratio == 1.0 and not count.dense
    else:
        assert count.dense and count.mac_ratio > 1.0


def test_mac_ratios_at_default_sizes_on_indian_pines_shape():
    """Small for hamida, large for chen and sharma (200 bands, 145 x 145, the registry's patch sizes)."""
    ratios = {}
    for name in ("hamida", "chen", "sharma"):
        size = get_spec(name).training_defaults()["patch_size"]
        torch.manual_seed(0)
        model = create_model(name, n_bands=200, n_classes=16, patch_size=size)
        ratios[name] = mac_accounting(model, 200, size).mac_ratio
    assert 1.2 < ratios["hamida"] < 3 < 20 < ratios["chen"] < ratios["sharma"]


@pytest.mark.skipif(not (DATA / "IndianPines" / "Indian_pines_corrected.mat").is_file(),
                    reason="Indian Pines is not in /work/shared/data/IndianPines")
@pytest.mark.parametrize("name", ["hamida", "li"])
def test_dense_equals_patches_on_real_indian_pines_crop(name):
    from datasets import load_scene

    scene = load_scene("IndianPines", DATA)
    crop = np.asarray(scene.cube[:20, :24], dtype=np.float32)
    crop = (crop - crop.mean((0, 1))) / crop.std((0, 1))
    torch.manual_seed(0)
    model = create_model(name, n_bands=200, n_classes=16, patch_size=5).eval()
    check_equal(model, PatchSampler([crop], np.zeros(crop.shape[:2], dtype=np.int64), 5), None)
