"""The bad-input corpus: every command line a careless user (or an attacker) might type, one row each.

Each row runs the real command line in this process (``main.main``), in a fresh folder holding the
crafted input files, and checks what the README promises of bad input: exit status 2, exactly one
line on stderr that starts with ``error:`` and names the offending value, no traceback, and
nothing written anywhere under the folder (no output folder, no empty folder, no stray file: the
folder's listing is the same before and after, to the byte and modification time). A few rows run
again as real processes, to prove the same of the installed entry point.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import scipy.io
import torch

import main
from deephyperx import checkpoint as ckpt

ROOT = Path(__file__).resolve().parents[1]


# ----- the crafted inputs ----------------------------------------------------------------------------

def write_inputs(folder: Path) -> None:
    """Every file the rows below refer to, written into ``folder``."""
    rng = np.random.default_rng(0)
    cube = rng.random((12, 10, 5)).astype(np.float32)
    labels = rng.choice([1, 2], size=(12, 10)).astype(np.uint8)
    np.save(folder / "cube.npy", cube)
    np.save(folder / "gt.npy", labels)
    np.save(folder / "gt_small.npy", labels[:6])
    np.save(folder / "gt_3bands.npy", np.stack([labels] * 3, axis=-1))
    np.save(folder / "gt_fraction.npy", labels + 0.5)
    np.save(folder / "gt_negative.npy", np.where(labels == 2, -1, labels.astype(np.int16)))
    np.save(folder / "gt_unknown.npy", np.where(labels == 2, 7, labels))
    nan_cube = cube.copy()
    nan_cube[3, 4, 1] = np.nan
    np.save(folder / "cube_nan.npy", nan_cube)
    np.save(folder / "cube_objects.npy", np.array([[{"a": 1}]], dtype=object), allow_pickle=True)
    scipy.io.savemat(folder / "gt.mat", {"gt": labels})
    (folder / "corrupt.npy").write_bytes(b"\x93NUMPY garbage that is not an array")
    (folder / "cube.xyz").write_bytes(b"unknown format")
    (folder / "notes.txt").write_text("not a checkpoint\n")
    (folder / "empty").mkdir()
    (folder / "a_file").write_text("a file, not a folder\n")

    texts = {
        "bad_utf8.yaml": b"lr: \xff\xfe\n",
        "invalid.yaml": b"lr: [0.1\n",
        "list.yaml": b"- lr\n- 0.1\n",
        "unknown_key.yaml": b"learning_rate: 0.1\n",
        "bad_model_args.yaml": b"model_args: {no_such_option: 3}\n",
        "int_keys.yaml": b"1: 2\n",
        "model_args_type.yaml": b"model_args: {dropout: many}\n",
        "out_nul.yaml": b'out: "o\\0ut"\n',
        "out_number.yaml": b"out: 5\n",
    }
    for name, data in texts.items():
        (folder / name).write_bytes(data)

    def scene(name: str, body: str) -> None:
        (folder / name).write_text(f"cube: {{file: cube.npy}}\nlabels: {{file: gt.npy}}\n{body}")

    scene("scene_dotdot.yaml", "name: ../../escaped\n")
    scene("scene_absolute.yaml", f"name: {folder / 'absolute' / 'escaped'}\n")
    scene("scene_nul.yaml", 'name: "in\\0side"\n')
    scene("scene_long.yaml", f"name: {'x' * 300}\n")
    scene("scene_hidden.yaml", "name: .hidden\n")
    scene("scene_unknown_key.yaml", "colour: red\n")
    scene("scene_names.yaml", "class_names: [only_one, two, three]\n")
    scene("scene_rgb.yaml", "rgb_bands: [0, 1, 99]\n")
    (folder / "scene_no_cube.yaml").write_text("labels: gt.npy\n")
    (folder / "scene_bad_utf8.yaml").write_bytes(b"name: \xff\ncube: cube.npy\nlabels: gt.npy\n")

    from PIL import Image

    image = (rng.random((64, 64, 3)) * 255).astype(np.uint8)
    Image.fromarray(image).save(folder / "tile.png")
    Image.fromarray(rng.choice([1, 2], size=(64, 64)).astype(np.uint8)).save(folder / "tile_gt.png")
    tileset = "images: [tile.png]\nlabels: [tile_gt.png]\nclass_names: [road, tree]\nlabel_values: [1, 2]\n"
    (folder / "tiles_dotdot.yaml").write_text(tileset + "name: ../../escaped\n")
    (folder / "tiles_absolute.yaml").write_text(tileset + f"name: {folder / 'absolute' / 'escaped'}\n")
    (folder / "tiles_no_images.yaml").write_text("labels: [tile_gt.png]\n")

    catalogue = ("class_names: [one, two]\nscenes:\n  - {name: s1, cube: cube.npy, labels: gt.npy}\n"
                 "  - {name: s2, cube: cube.npy, labels: gt.npy, role: test}\n")
    (folder / "catalogue_dotdot.yaml").write_text(catalogue + "name: ../../escaped\n")
    (folder / "catalogue_no_classes.yaml").write_text("scenes: []\n")

    ckpt.save_checkpoint(folder / "other_model.pt", {"config": {"model": "hamida", "dataset": "Elsewhere"},
                                                     "n_bands": 5, "class_names": ["a", "b"]})
    ckpt.save_checkpoint(folder / "other_scene.pt", {"config": {"model": "hu", "dataset": "Elsewhere"},
                                                     "n_bands": 99, "class_names": ["a", "b"]})
    torch.save({"weights": torch.zeros(2)}, folder / "foreign.pt")
    (folder / "lonely.skops").write_bytes(b"PK")


# ----- the rows --------------------------------------------------------------------------------------

CUSTOM = ["--cube", "{in}/cube.npy", "--gt", "{in}/gt.npy"]
HU = ["--model", "hu", "--dataset", "Synthetic", "--epoch", "1", "--out", "{out}"]
SVM = ["--model", "SVM", "--dataset", "Synthetic", "--out", "{out}"]
BENCH = ["bench", "--models", "nn", "--datasets", "Synthetic", "--epoch", "1", "--out", "{out}"]
GENERATE = ["generate", "--model", "cvae", "--dataset", "Synthetic", "--epoch", "1", "--runs_dir", "{out}"]
SEGMENT = ["segment", "--model", "segnet", "--dataset", "SyntheticAerial", "--epoch", "1", "--out", "{out}"]
CATALOGUE = ["catalogue", "--catalogue", "{in}/catalogue_dotdot.yaml", "--model", "hu", "--epoch", "1",
             "--out", "{out}"]

#: (id, argv, fragments the one error line must hold)
ROWS: list[tuple[str, list[str], tuple[str, ...]]] = [
    # --- naming the model and the scene
    ("unknown model", ["--model", "hamidaa", "--out", "{out}"], ("hamidaa",)),
    ("generator where a classifier goes", ["--model", "cgan", "--dataset", "Synthetic", "--out", "{out}"], ("cgan",)),
    ("unknown scene", ["--model", "hu", "--dataset", "IndianPine", "--out", "{out}"], ("IndianPine",)),
    ("scene files missing", ["--model", "hu", "--dataset", "IndianPines", "--folder", "{in}/empty",
                             "--out", "{out}"], ("IndianPines", "--download")),
    ("cube without labels", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.npy", "--out", "{out}"], ("--gt",)),
    ("labels without cube", ["--model", "hu", "--epoch", "1", "--gt", "{in}/gt.npy", "--out", "{out}"], ("--cube",)),
    ("cube file missing", ["--model", "hu", "--epoch", "1", "--cube", "{in}/nope.npy", "--gt", "{in}/gt.npy", "--out", "{out}"],
     ("nope.npy",)),
    ("corrupt cube", ["--model", "hu", "--epoch", "1", "--cube", "{in}/corrupt.npy", "--gt", "{in}/gt.npy", "--out", "{out}"],
     ("corrupt.npy",)),
    ("cube of Python objects", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube_objects.npy", "--gt",
                                "{in}/gt.npy", "--out", "{out}"], ("Python objects",)),
    ("unknown file type", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.xyz", "--gt", "{in}/gt.npy", "--out", "{out}"],
     (".xyz",)),
    ("cube folder as cube", ["--model", "hu", "--epoch", "1", "--cube", "{in}/empty", "--gt", "{in}/gt.npy", "--out", "{out}"],
     ("empty",)),
    ("cube and labels of other sizes", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.npy", "--gt", "{in}/gt_small.npy",
                                        "--out", "{out}"], ("gt_small.npy",)),
    ("NaN in the cube", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube_nan.npy", "--gt", "{in}/gt.npy", "--out", "{out}"],
     ("NaN",)),
    ("labels of three bands", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.npy", "--gt", "{in}/gt_3bands.npy",
                               "--out", "{out}"], ("gt_3bands.npy",)),
    ("fractional labels", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.npy", "--gt", "{in}/gt_fraction.npy",
                           "--out", "{out}"], ("fractional",)),
    ("negative labels", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.npy", "--gt", "{in}/gt_negative.npy",
                         "--out", "{out}"], ("negative", "-1")),
    ("MATLAB variable missing", ["--model", "hu", "--epoch", "1", "--cube", "{in}/cube.npy", "--gt", "{in}/gt.mat",
                                 "--gt_key", "nope", "--out", "{out}"], ("nope",)),
    # --- numbers
    ("patch larger than the scene", [*HU[:4], "--patch_size", "999", "--out", "{out}"], ("999",)),
    ("patch size 0", [*HU, "--patch_size", "0"], ("--patch_size", "0")),
    ("patch size negative", [*HU, "--patch_size", "-3"], ("--patch_size", "-3")),
    ("negative epochs", [*HU[:4], "--epoch", "-1", "--out", "{out}"], ("--epoch", "-1")),
    ("epoch not a number", [*HU[:4], "--epoch", "ten", "--out", "{out}"], ("ten",)),
    ("batch size 0", [*HU, "--batch_size", "0"], ("--batch_size", "0")),
    ("runs 0", [*HU, "--runs", "0"], ("--runs", "0")),
    ("learning rate 0", [*HU, "--lr", "0"], ("--lr",)),
    ("learning rate negative", [*HU, "--lr", "-0.1"], ("--lr", "-0.1")),
    ("learning rate NaN", [*HU, "--lr", "nan"], ("--lr", "nan")),
    ("learning rate infinite", [*HU, "--lr", "inf"], ("--lr", "inf")),
    ("weight decay negative", [*HU, "--weight_decay", "-1"], ("--weight_decay",)),
    ("weight decay NaN", [*HU, "--weight_decay", "nan"], ("--weight_decay", "nan")),
    ("training sample 0", [*HU, "--training_sample", "0"], ("--training_sample",)),
    ("training sample negative", [*HU, "--training_sample", "-0.5"], ("--training_sample",)),
    ("training sample NaN", [*HU, "--training_sample", "nan"], ("--training_sample", "nan")),
    ("training sample infinite", [*HU, "--training_sample", "inf"], ("--training_sample", "inf")),
    ("fractional pixel count", [*HU, "--training_sample", "2.5"], ("--training_sample", "2.5")),
    ("class too small for the split", [*HU, "--training_sample", "5000", "--sampling_mode", "fixed"], ("5000",)),
    ("unknown sampling mode", [*HU, "--sampling_mode", "bogus"], ("bogus",)),
    ("validation fraction 1", [*HU, "--val_fraction", "1"], ("--val_fraction",)),
    ("validation fraction NaN", [*HU, "--val_fraction", "nan"], ("--val_fraction", "nan")),
    ("validation fraction negative", [*HU, "--val_fraction", "-0.1"], ("--val_fraction",)),
    ("seed negative", [*HU, "--seed", "-1"], ("--seed", "-1")),
    ("seed too large", [*HU, "--seed", str(2 ** 32)], ("--seed", str(2 ** 32))),
    ("seed range too large", [*HU, "--seed", str(2 ** 32 - 1), "--runs", "2"], ("--seed",)),
    ("n_jobs 0", [*SVM, "--n_jobs", "0"], ("--n_jobs", "0")),
    ("n_jobs below -1", [*SVM, "--n_jobs", "-2"], ("--n_jobs", "-2")),
    ("GPU index below -1", [*HU, "--cuda", "-5"], ("--cuda", "-5")),
    ("test stride 0", [*HU, "--test_stride", "0"], ("--test_stride",)),
    ("unknown validation score", [*HU, "--keep_best", "accuracy"], ("accuracy",)),
    ("early stopping of 0 epochs", [*HU, "--early_stopping", "0"], ("--early_stopping", "0")),
    ("early stopping without validation", [*HU, "--early_stopping", "20", "--val_fraction", "0"],
     ("--early_stopping", "--val_fraction")),
    ("unknown optimiser", [*HU, "--optimizer", "bogus"], ("bogus",)),
    ("unknown normalisation", [*HU, "--normalization", "bogus"], ("bogus",)),
    ("whitening without PCA", [*HU, "--pca_whiten"], ("--pca",)),
    ("PCA of 0 components", [*HU, "--pca", "0"], ("0",)),
    ("PCA of more components than bands", ["--model", "SSFTT", *HU[2:], "--pca", "5000"], ("5000", "64")),
    ("patch too small for the model", ["--model", "SSFTT", *HU[2:], "--patch_size", "3"], ("SSFTT", "3x3")),
    ("spectral model given patches", [*SVM, "--patch_size", "5"], ("SVM",)),
    ("unknown flag", [*HU, "--learning_rate", "0.1"], ("--learning_rate",)),
    # --- split files
    ("train set without test set", [*HU, "--train_set", "{in}/gt.npy"], ("--test_set",)),
    ("split map of another size", [*HU[:2], *CUSTOM, "--epoch", "1", "--out", "{out}", "--train_set",
                                   "{in}/gt_small.npy", "--test_set", "{in}/gt.npy"], ("gt_small.npy",)),
    ("split map with unknown classes", [*HU[:2], *CUSTOM, "--epoch", "1", "--out", "{out}", "--train_set",
                                        "{in}/gt_unknown.npy", "--test_set", "{in}/gt.npy"], ("7",)),
    # --- settings files
    ("config missing", [*HU, "--config", "{in}/nope.yaml"], ("nope.yaml",)),
    ("config a folder", [*HU, "--config", "{in}/empty"], ("empty",)),
    ("config not UTF-8", [*HU, "--config", "{in}/bad_utf8.yaml"], ("bad_utf8.yaml", "UTF-8")),
    ("config invalid YAML", [*HU, "--config", "{in}/invalid.yaml"], ("invalid.yaml",)),
    ("config a list", [*HU, "--config", "{in}/list.yaml"], ("list.yaml",)),
    ("config with whole-number keys", [*HU, "--config", "{in}/int_keys.yaml"], ("int_keys.yaml",)),
    ("config unknown key", [*HU, "--config", "{in}/unknown_key.yaml"], ("learning_rate",)),
    ("config unknown model option", [*HU, "--config", "{in}/bad_model_args.yaml"], ("no_such_option",)),
    ("config output folder with NUL", [*HU[:-2], "--config", "{in}/out_nul.yaml"], ("--out", "x00")),
    ("config output folder a number", [*HU[:-2], "--config", "{in}/out_number.yaml"], ("--out", "5")),
    ("config model option of the wrong kind", ["--model", "nn", "--dataset", "Synthetic", "--epoch", "1", "--out",
                                               "{out}", "--config", "{in}/model_args_type.yaml"], ("many",)),
    # --- checkpoints
    ("restore missing", [*HU, "--restore", "{in}/nope.pt"], ("nope.pt",)),
    ("restore a text file", [*HU, "--restore", "{in}/notes.txt"], ("notes.txt",)),
    ("restore a plain torch file", [*HU, "--restore", "{in}/foreign.pt"], ("foreign.pt",)),
    ("restore another model's checkpoint", [*HU, "--restore", "{in}/other_model.pt"], ("hamida",)),
    ("restore another scene's checkpoint", [*HU, "--restore", "{in}/other_scene.pt"], ("99",)),
    ("restore skops without its description", [*SVM, "--restore", "{in}/lonely.skops"], ("lonely",)),
    # --- synthetic spectra
    ("synthetic file missing", [*HU, "--synthetic", "{in}/nope.h5"], ("nope.h5",)),
    ("synthetic spectra for a spatial model", ["--model", "hamida", "--dataset", "Synthetic", "--epoch", "1",
                                               "--out", "{out}", "--synthetic", "{in}/nope.h5"], ("hamida",)),
    ("synthetic ratio 0", [*HU, "--synthetic", "{in}/nope.h5", "--synthetic_ratio", "0"], ("--synthetic_ratio",)),
    ("synthetic ratio NaN", [*HU, "--synthetic", "{in}/nope.h5", "--synthetic_ratio", "nan"],
     ("--synthetic_ratio", "nan")),
    # --- output folders
    ("out is a file", [*HU[:-1], "{in}/a_file"], ("a_file", "file")),
    ("out under a file", [*HU[:-1], "{in}/a_file/sub"], ("a_file",)),
    # --- scene declarations: names that would leave the output folder
    ("scene name with ..", ["--model", "hu", "--dataset", "{in}/scene_dotdot.yaml", "--epoch", "1",
                            "--out", "{out}"], ("../../escaped",)),
    ("scene name absolute", ["--model", "hu", "--dataset", "{in}/scene_absolute.yaml", "--epoch", "1",
                             "--out", "{out}"], ("path separator",)),
    ("scene name with NUL", ["--model", "hu", "--dataset", "{in}/scene_nul.yaml", "--epoch", "1",
                             "--out", "{out}"], ("control character",)),
    ("scene name too long", ["--model", "hu", "--dataset", "{in}/scene_long.yaml", "--epoch", "1",
                             "--out", "{out}"], ("longer than",)),
    ("scene name hidden", ["--model", "hu", "--dataset", "{in}/scene_hidden.yaml", "--epoch", "1",
                           "--out", "{out}"], (".hidden",)),
    ("scene file unknown key", ["--model", "hu", "--epoch", "1", "--dataset", "{in}/scene_unknown_key.yaml", "--out", "{out}"],
     ("colour",)),
    ("scene file class-name count", ["--model", "hu", "--epoch", "1", "--dataset", "{in}/scene_names.yaml", "--out", "{out}"],
     ("class names",)),
    ("scene file RGB band out of range", ["--model", "hu", "--epoch", "1", "--dataset", "{in}/scene_rgb.yaml", "--out", "{out}"],
     ("99",)),
    ("scene file without cube", ["--model", "hu", "--epoch", "1", "--dataset", "{in}/scene_no_cube.yaml", "--out", "{out}"],
     ("cube",)),
    ("scene file not UTF-8", ["--model", "hu", "--epoch", "1", "--dataset", "{in}/scene_bad_utf8.yaml", "--out", "{out}"],
     ("UTF-8",)),
    ("scene file missing", ["--model", "hu", "--epoch", "1", "--dataset", "{in}/nope.yaml", "--out", "{out}"], ("nope.yaml",)),
    # --- downloads
    ("download unknown scene", ["--download", "Nowhere", "--folder", "{out}"], ("Nowhere",)),
    ("download needs registration", ["--download", "Houston2013", "--folder", "{out}"], ("Houston2013",)),
    ("mirror not a URL", ["--download", "SalinasA", "--folder", "{out}", "--mirror", "notaurl"], ("notaurl",)),
    ("mirror of an unknown scheme", ["--download", "SalinasA", "--folder", "{out}", "--mirror", "gopher://h/x"],
     ("gopher",)),
    ("download into a file", ["--download", "SalinasA", "--folder", "{in}/a_file"], ("a_file",)),
    # --- list
    ("list with an unknown flag", ["list", "--bogus"], ("--bogus",)),
    # --- bench
    ("bench without models", ["bench", "--datasets", "Synthetic", "--out", "{out}"], ("--models",)),
    ("bench unknown model", ["bench", "--models", "nn", "hamidaa", "--datasets", "Synthetic", "--out", "{out}"],
     ("hamidaa",)),
    ("bench generator model", ["bench", "--models", "cgan", "--datasets", "Synthetic", "--out", "{out}"], ("cgan",)),
    ("bench unknown scene", ["bench", "--models", "nn", "--datasets", "Nowhere", "--out", "{out}"], ("Nowhere",)),
    ("bench runs_for malformed", [*BENCH, "--runs_for", "nn:2"], ("nn:2",)),
    ("bench runs_for of another model", [*BENCH, "--runs_for", "hu=2"], ("hu=2",)),
    ("bench seed negative", [*BENCH, "--seed", "-1"], ("--seed", "-1")),
    ("bench n_jobs 0", [*BENCH, "--n_jobs", "0"], ("--n_jobs", "0")),
    ("bench out is a file", [*BENCH[:-1], "{in}/a_file"], ("a_file",)),
    ("bench config not UTF-8", [*BENCH, "--config", "{in}/bad_utf8.yaml"], ("UTF-8",)),
    # --- generate
    ("generate unknown model", ["generate", "--model", "vae2", "--dataset", "Synthetic", "--runs_dir", "{out}"],
     ("vae2",)),
    ("generate with a classifier", ["generate", "--model", "hu", "--dataset", "Synthetic", "--runs_dir", "{out}"],
     ("hu",)),
    ("generate 0 spectra per class", [*GENERATE, "--samples_per_class", "0"], ("--samples_per_class",)),
    ("generate unknown class", [*GENERATE, "--classes", "unicorns"], ("unicorns",)),
    ("generate out is a folder", [*GENERATE, "--out", "{in}/empty"], ("empty",)),
    ("generate runs_dir is a file", [*GENERATE[:-1], "{in}/a_file"], ("a_file",)),
    ("generate restore missing", [*GENERATE, "--restore", "{in}/nope.pt"], ("nope.pt",)),
    ("generate learning rate NaN", [*GENERATE, "--lr", "nan"], ("--lr", "nan")),
    ("generate seed negative", [*GENERATE, "--seed", "-1"], ("--seed", "-1")),
    # --- segment
    ("segment unknown model", ["segment", "--model", "segnett", "--dataset", "SyntheticAerial", "--out", "{out}"],
     ("segnett",)),
    ("segment crop not a multiple of 32", [*SEGMENT, "--crop", "100"], ("--crop", "100")),
    ("segment unknown tile set", ["segment", "--model", "segnet", "--dataset", "Nowhere", "--out", "{out}"],
     ("Nowhere",)),
    ("segment tile-set name with ..", ["segment", "--model", "segnet", "--dataset", "{in}/tiles_dotdot.yaml",
                                       "--out", "{out}"], ("../../escaped",)),
    ("segment tile-set name absolute", ["segment", "--model", "segnet", "--dataset", "{in}/tiles_absolute.yaml",
                                        "--out", "{out}"], ("path separator",)),
    ("segment tile set without images", ["segment", "--model", "segnet", "--dataset",
                                         "{in}/tiles_no_images.yaml", "--out", "{out}"], ("images",)),
    ("segment out is a file", [*SEGMENT[:-1], "{in}/a_file"], ("a_file",)),
    ("segment learning rate NaN", [*SEGMENT, "--lr", "nan"], ("--lr", "nan")),
    ("segment seed negative", [*SEGMENT, "--seed", "-1"], ("--seed", "-1")),
    ("segment model option of the wrong kind", [*SEGMENT, "--model_args", "width=abc"], ("width", "abc")),
    ("segment unknown model option", [*SEGMENT, "--model_args", "depth=3"], ("depth",)),
    ("segment restore missing", [*SEGMENT, "--restore", "{in}/nope.pt"], ("nope.pt",)),
    # --- map
    ("map restore missing", ["map", "--restore", "{in}/nope.pt", "--cube", "{in}/cube.npy", "--out",
                             "{out}/map.npy"], ("nope.pt",)),
    ("map restore a text file", ["map", "--restore", "{in}/notes.txt", "--cube", "{in}/cube.npy", "--out",
                                 "{out}/map.npy"], ("notes.txt",)),
    ("map out under a file", ["map", "--restore", "{in}/other_model.pt", "--cube", "{in}/cube.npy", "--out",
                              "{in}/a_file/map.npy"], ("a_file",)),
    ("map without a cube", ["map", "--restore", "{in}/other_model.pt", "--out", "{out}/map.npy"], ("--cube",)),
    # --- catalogue
    ("catalogue missing flag", ["catalogue", "--model", "hu", "--out", "{out}"], ("--catalogue",)),
    ("catalogue file missing", ["catalogue", "--catalogue", "{in}/nope.yaml", "--model", "hu", "--out", "{out}"],
     ("nope.yaml",)),
    ("catalogue name with ..", CATALOGUE, ("../../escaped",)),
    ("catalogue without classes", ["catalogue", "--catalogue", "{in}/catalogue_no_classes.yaml", "--model", "hu",
                                   "--out", "{out}"], ("class_names",)),
    ("catalogue file not UTF-8", ["catalogue", "--catalogue", "{in}/bad_utf8.yaml", "--model", "hu",
                                  "--out", "{out}"], ("UTF-8",)),
    # --- visdom
    ("visdom env_path is a file", ["visdom", "--env_path", "{in}/a_file"], ("a_file",)),
    ("visdom port out of range", ["visdom", "--port", "70000", "--env_path", "{out}"], ("70000",)),
]


def expand(argv: list[str], inputs: Path, out: Path) -> list[str]:
    return [a.replace("{in}", str(inputs)).replace("{out}", str(out)) for a in argv]


def listing(folder: Path) -> dict[str, tuple[int, int]]:
    """Every path under ``folder``, with the size and modification time of each file (a folder that a
    failed run made and removed again leaves its parent's time changed, not its listing)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) if p.is_file() else (-1, 0)
            for p in folder.rglob("*")}


def run_in_process(argv: list[str], capsys) -> tuple[int, str, str]:
    capsys.readouterr()
    status = main.main(argv)
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_refused(status: int, out: str, err: str, fragments: tuple[str, ...]) -> None:
    lines = [line for line in err.splitlines() if line.strip()]
    assert status == 2, (status, out, err)
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in out + err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture
def case_folder(tmp_path, monkeypatch) -> tuple[Path, Path]:
    """A fresh folder with the crafted inputs; the command runs from its ``work/`` subfolder."""
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_inputs(inputs)
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("DEEPHYPERX_DATA", str(inputs / "empty"))
    monkeypatch.delenv("DEEPHYPERX_MIRROR", raising=False)
    return inputs, work / "out"


@pytest.mark.parametrize("argv, fragments", [pytest.param(a, f, id=i) for i, a, f in ROWS])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(case_folder, capsys, argv, fragments):
    inputs, out = case_folder
    root = inputs.parent
    before = listing(root)
    status, stdout, stderr = run_in_process(expand(argv, inputs, out), capsys)
    assert_refused(status, stdout, stderr, fragments)
    assert listing(root) == before, sorted(set(listing(root)) ^ set(before))


def test_the_corpus_covers_every_command():
    """One row at least for each command of main.py, so a new command cannot slip past the corpus."""
    first = {argv[0] if argv[0] in (*main.MODULE_COMMANDS, "bench", "list") else "main" for _, argv, _ in ROWS}
    assert first == {"main", "bench", "list", *main.MODULE_COMMANDS}


@pytest.fixture
def read_only_folder(tmpfs) -> Path:
    """A folder on a real read-only file system."""
    with tmpfs("size=1m,ro") as folder:
        yield folder


@pytest.mark.parametrize("command", [HU, BENCH, GENERATE, SEGMENT])
def test_an_output_folder_on_a_read_only_file_system_is_refused(read_only_folder, capsys, command, tmp_path):
    argv = [a.replace("{out}", str(read_only_folder / "runs")) for a in command]
    status, stdout, stderr = run_in_process(argv, capsys)
    assert_refused(status, stdout, stderr, ("read-only",))
    assert not any(read_only_folder.iterdir())


@pytest.mark.parametrize("row", ["negative labels", "segment tile-set name with .."])
def test_the_installed_command_line_gives_the_same_line(tmp_path, row):
    """The same rows through a real ``python main.py`` process: status 2, one line, nothing written."""
    argv, fragments = next((a, f) for i, a, f in ROWS if i == row)
    inputs = tmp_path / "in"
    inputs.mkdir()
    write_inputs(inputs)
    before = listing(tmp_path)
    env = {**os.environ, "DEEPHYPERX_DATA": str(inputs / "empty")}
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), *expand(argv, inputs, tmp_path / "out")],
                            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env)
    assert_refused(result.returncode, result.stdout, result.stderr, fragments)
    assert listing(tmp_path) == before
