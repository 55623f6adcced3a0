"""Report files: PNG figures that open, JSON that round-trips, Markdown with the expected numbers,
and nothing left behind when writing fails."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import yaml
from matplotlib.figure import Figure
from PIL import Image

from deephyperx.errors import UserError
from deephyperx.metrics import aggregate_runs, confusion_matrix, metrics_from_confusion
from deephyperx.reports import (
    aggregate_markdown,
    load_json,
    run_summary_markdown,
    save_confusion_png,
    save_json,
    save_label_map_png,
    save_map_comparison_png,
    save_markdown,
    save_rgb_png,
)
from deephyperx.scene import default_palette

from conftest import SHARED_DATA

RED, BLUE = (255, 0, 0), (0, 0, 255)
HAND_CM = np.array([[5, 1, 0], [2, 3, 1], [0, 0, 4]])
NAMES3 = ["Corn", "Wheat", "Woods"]


def _open_png(path: Path) -> np.ndarray:
    """Open a written PNG with PIL (checking its format) and return its RGB pixels."""
    with Image.open(path) as image:
        assert image.format == "PNG"
        return np.asarray(image.convert("RGB"))


def _count_colour(pixels: np.ndarray, colour: tuple[int, int, int]) -> int:
    return int((pixels == np.array(colour, dtype=np.uint8)).all(axis=-1).sum())


def _only_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


# --------------------------------------------------------------------------- JSON

def test_json_round_trip_with_numpy_scalars_arrays_and_nan(tmp_path):
    obj = {
        "oa": np.float32(0.5), "n": np.int64(7), "flag": np.bool_(True), "nan": float("nan"),
        "np_nan": np.float64("nan"), "inf": float("inf"), "cm": np.arange(4).reshape(2, 2),
        "bands": (43, 21, 11), np.int64(3): "numpy key", "path": Path("/tmp/x"),
    }
    path = tmp_path / "sub" / "metrics.json"
    save_json(path, obj)
    back = load_json(path)
    assert back == {"oa": 0.5, "n": 7, "flag": True, "nan": None, "np_nan": None, "inf": None,
                    "cm": [[0, 1], [2, 3]], "bands": [43, 21, 11], "3": "numpy key", "path": "/tmp/x"}
    assert "NaN" not in path.read_text()
    assert _only_files(path.parent) == ["metrics.json"]


def test_json_of_real_metrics_round_trips(tmp_path):
    metrics = metrics_from_confusion(np.array([[3, 0, 0], [1, 2, 0], [0, 0, 0]]), NAMES3)
    save_json(tmp_path / "m.json", metrics)
    assert load_json(tmp_path / "m.json") == metrics


def test_failed_json_write_leaves_no_file_and_keeps_old_one(tmp_path):
    # the object fails to encode half-way through streaming: a partial temp file existed
    with pytest.raises(TypeError):
        save_json(tmp_path / "bad.json", {"a": list(range(1000)), "z": object()})
    assert _only_files(tmp_path) == []
    save_json(tmp_path / "good.json", {"v": 1})
    with pytest.raises(TypeError):
        save_json(tmp_path / "good.json", {"v": 2, "w": {1, 2}})
    assert load_json(tmp_path / "good.json") == {"v": 1}
    assert _only_files(tmp_path) == ["good.json"]


def test_load_json_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match="missing.json: no such file"):
        load_json(tmp_path / "missing.json")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(UserError, match="broken.json: not valid JSON"):
        load_json(tmp_path / "broken.json")


# --------------------------------------------------------------------------- PNG figures

@pytest.mark.parametrize("normalise", [True, False])
def test_confusion_png_is_written(tmp_path, normalise):
    path = tmp_path / "confusion.png"
    save_confusion_png(HAND_CM, NAMES3, path, normalise=normalise)
    pixels = _open_png(path)
    assert 250 < pixels.shape[0] < 1500 and 250 < pixels.shape[1] < 1500
    assert _only_files(tmp_path) == ["confusion.png"]


def test_confusion_png_grows_with_sixteen_classes(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 16, 3000)
    pred = np.where(rng.random(3000) < 0.8, truth, rng.integers(0, 16, 3000))
    names = [f"Soybean-mintill {k}" for k in range(16)]
    save_confusion_png(confusion_matrix(truth, pred, 16), names, tmp_path / "c16.png")
    save_confusion_png(HAND_CM, NAMES3, tmp_path / "c3.png")
    big, small = _open_png(tmp_path / "c16.png"), _open_png(tmp_path / "c3.png")
    # about 0.6 inch (60 px) per class so that 16 names and cell numbers stay legible
    assert big.shape[0] > 16 * 55 and big.shape[0] > small.shape[0]


def test_confusion_png_rejects_mismatched_names(tmp_path):
    with pytest.raises(UserError, match="one name per class"):
        save_confusion_png(HAND_CM, ["a", "b"], tmp_path / "c.png")
    assert _only_files(tmp_path) == []


def test_label_map_png_shows_palette_colours_crisply(tmp_path):
    label_map = np.zeros((10, 10), dtype=np.int64)
    label_map[:, 5:] = 1
    label_map[0, :] = -1  # one unlabelled row, drawn black
    path = tmp_path / "map.png"
    save_label_map_png(label_map, [RED, BLUE], ["Corn", "Wheat"], path, title="Toy scene")
    pixels = _open_png(path)
    # a 10x10 map is enlarged 58x (ceil(580 / 10)): class 0 covers 9 x 5 map pixels -> 9*58 x 5*58 screen pixels
    expected = 9 * 58 * 5 * 58
    assert expected * 0.97 < _count_colour(pixels, RED) < expected * 1.05
    assert expected * 0.97 < _count_colour(pixels, BLUE) < expected * 1.05
    assert _count_colour(pixels, (0, 0, 0)) >= 58 * 10 * 58 * 0.97
    # the figure holds the enlarged map plus a legend to its right
    assert pixels.shape[0] >= 580 and pixels.shape[1] > 580 + 40


def test_label_map_png_rejects_out_of_range_ids(tmp_path):
    with pytest.raises(UserError, match="expected -1..1"):
        save_label_map_png(np.array([[0, 2]]), [RED, BLUE], ["a", "b"], tmp_path / "m.png")
    with pytest.raises(UserError, match="one colour per class"):
        save_label_map_png(np.array([[0, 1]]), [RED], ["a", "b"], tmp_path / "m.png")
    assert _only_files(tmp_path) == []


def test_map_comparison_png_draws_both_maps(tmp_path):
    truth = np.zeros((20, 30), dtype=np.int64)
    pred = np.ones((20, 30), dtype=np.int64)
    path = tmp_path / "compare.png"
    save_map_comparison_png(truth, pred, [RED, BLUE], ["Corn", "Wheat"], path)
    pixels = _open_png(path)
    scale = math.ceil(580 / 30)  # 20 screen pixels per map pixel
    expected = 20 * 30 * scale ** 2
    assert expected * 0.97 < _count_colour(pixels, RED) < expected * 1.05
    assert expected * 0.97 < _count_colour(pixels, BLUE) < expected * 1.05
    assert pixels.shape[1] > 2 * 30 * scale
    with pytest.raises(UserError, match="predict the whole scene"):
        save_map_comparison_png(truth, pred[:10], [RED, BLUE], ["Corn", "Wheat"], tmp_path / "x.png")


def test_rgb_png_stretches_each_band(tmp_path):
    rng = np.random.default_rng(1)
    cube = rng.normal(1000.0, 50.0, size=(40, 50, 6)).astype(np.float32)
    cube[:, :, 4] = 7.0  # a constant band becomes mid-grey, not a division by zero
    path = tmp_path / "rgb.png"
    save_rgb_png(cube, (0, 2, 4), path)
    pixels = _open_png(path)
    assert pixels.shape == (40 * 12, 50 * 12, 3)  # enlarged by ceil(580 / 50) = 12
    red = pixels[:, :, 0]
    # 2-98 % stretch: about 2 % of pixels saturate at each end
    assert 0.01 < (red == 0).mean() < 0.04 and 0.01 < (red == 255).mean() < 0.04
    assert (pixels[:, :, 2] == 128).all()
    with pytest.raises(UserError, match="do not name 3 bands"):
        save_rgb_png(cube, (0, 2, 6), tmp_path / "bad.png")


def test_failed_png_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "map.png"
    target.mkdir()  # a folder already sits where the figure should go: the final rename fails
    with pytest.raises(OSError):
        save_label_map_png(np.zeros((4, 4), int), [RED], ["Corn"], target)
    assert _only_files(tmp_path) == ["map.png"] and target.is_dir()


def test_failure_while_drawing_leaves_no_file(tmp_path, monkeypatch):
    def half_written_savefig(self, fname, **kwargs):
        Path(fname).write_bytes(b"\x89PNG\r\n")  # a partial file, then the renderer fails
        raise RuntimeError("renderer failed")

    monkeypatch.setattr(Figure, "savefig", half_written_savefig)
    with pytest.raises(RuntimeError):
        save_confusion_png(HAND_CM, NAMES3, tmp_path / "confusion.png")
    assert _only_files(tmp_path) == []


def test_real_indian_pines_ground_truth_map(tmp_path):
    gt_file = SHARED_DATA / "IndianPines" / "Indian_pines_gt.mat"
    if not gt_file.exists():
        pytest.skip(f"real data absent: {gt_file} (set DEEPHYPERX_SHARED_DATA; see shared/data/README.md)")
    from scipy.io import loadmat

    labels = loadmat(gt_file)["indian_pines_gt"].astype(np.int64) - 1  # 0 background -> -1
    names = [f"class {k}" for k in range(16)]
    palette = default_palette(16)
    path = tmp_path / "indian_pines_gt.png"
    save_label_map_png(labels, palette, names, path, title="Indian Pines")
    pixels = _open_png(path)
    scale = math.ceil(580 / 145)  # 4 screen pixels per map pixel
    assert pixels.shape[0] >= 145 * scale
    woods = int((labels == 13).sum())  # 1,265 pixels of Woods
    assert _count_colour(pixels, palette[13]) >= woods * scale ** 2


# --------------------------------------------------------------------------- Markdown

def test_run_summary_markdown_numbers_and_config(tmp_path):
    metrics = metrics_from_confusion(HAND_CM, NAMES3)
    config = {"model": "hamida", "patch_size": np.int64(5), "lr": 0.01, "rgb_bands": (43, 21, 11)}
    text = run_summary_markdown("hamida on IndianPines", metrics, config, extra={"training time (s)": 12.5})
    assert text.startswith("# hamida on IndianPines\n")
    assert "| Overall accuracy (OA, %) | 75.00 |" in text
    assert "| Average accuracy (AA, %) | 77.78 |" in text
    assert "| Kappa (× 100) | 62.35 |" in text
    assert "| training time (s) | 12.5 |" in text
    # Corn: recall 5/6, F1 10/13, IoU 5/8
    assert "| Corn | 6 | 83.33 | 76.92 | 62.50 |" in text
    block = text.split("```yaml\n")[1].split("```")[0]
    assert yaml.safe_load(block) == {"model": "hamida", "patch_size": 5, "lr": 0.01, "rgb_bands": [43, 21, 11]}
    save_markdown(tmp_path / "summary.md", text)
    assert (tmp_path / "summary.md").read_text() == text


def test_run_summary_gives_the_split_and_its_warnings():
    metrics = {**metrics_from_confusion(HAND_CM, NAMES3), "n_train": 95, "n_validation": 5, "n_test": 12,
               "split_warnings": ['1 of 3 classes have no training pixel: class "Oats"']}
    text = run_summary_markdown("t", metrics, {})
    assert "| Training pixels (+ validation) | 95 (+ 5) |\n| Test pixels | 12 |" in text
    assert '**The split is weak:**\n\n- 1 of 3 classes have no training pixel: class "Oats"\n' in text
    sound = run_summary_markdown("t", {**metrics, "split_warnings": []}, {})
    assert "weak" not in sound


def test_run_summary_marks_undefined_values_and_escapes_pipes():
    metrics = metrics_from_confusion(np.array([[2, 0], [0, 0]]), ["Grass|Trees", "Oats"])
    text = run_summary_markdown("t", metrics, {})
    assert "| Grass\\|Trees | 2 | 100.00 | 100.00 | 100.00 |" in text
    assert "| Oats | 0 | n/a | n/a | n/a |" in text


def _run(oa: float, seed: int) -> dict:
    return {"seed": seed, "overall_accuracy": oa, "average_accuracy": oa - 0.1, "kappa": oa - 0.2, "n_test": 10,
            "per_class": [{"name": "Corn", "support": 10, "accuracy": oa, "precision": oa, "f1": oa, "iou": oa}]}


def test_aggregate_markdown_mean_and_std():
    agg = aggregate_runs([_run(0.80, 0), _run(0.90, 1), _run(0.85, 2)])
    text = aggregate_markdown("hamida, 3 seeds", agg, ["Corn"], commands=["python main.py --model hamida --seed 0"])
    assert "3 runs (seeds 0, 1, 2)" in text
    # mean 0.85, sample std 0.05
    assert "| Overall accuracy (OA) | 85.00 ± 5.00 |" in text
    assert "| Average accuracy (AA) | 75.00 ± 5.00 |" in text
    assert "| Kappa (× 100) | 65.00 ± 5.00 |" in text
    assert "| Corn | 85.00 ± 5.00 | 85.00 ± 5.00 | 85.00 ± 5.00 |" in text
    assert "```bash\npython main.py --model hamida --seed 0\n```" in text
    with pytest.raises(UserError, match="one name per class"):
        aggregate_markdown("x", agg, ["Corn", "Oats"])


def test_reports_are_readable_like_normal_files_and_secrets_are_not(tmp_path):
    import os

    from deephyperx.atomic import atomic_write_text

    atomic_write_text(tmp_path / "report.md", "x")
    atomic_write_text(tmp_path / "secret", "y", private=True)
    umask = os.umask(0)
    os.umask(umask)
    assert (tmp_path / "report.md").stat().st_mode & 0o777 == 0o666 & ~umask
    assert (tmp_path / "secret").stat().st_mode & 0o077 == 0
