"""The field's protocols by name: fixed maps labelling pixels the scene leaves unlabelled, N + M
pixels per class, and the leakage switches (validation from test, preprocessing fitted on the scene),
through the real command line, the real Indian Pines maps and small crafted maps."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deephyperx.config import ClassifySettings, experiment_id
from deephyperx.errors import UserError
from deephyperx.protocols import protocol_label
from deephyperx.runner import ClassifyTask, make_split
from deephyperx.settings import defaults

ROOT = Path(__file__).resolve().parents[1]
MAPS = ("splits/IndianPines/Indian_pines_TR.mat", "splits/IndianPines/Indian_pines_TE.mat")


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEEPHYPERX_DATA": str(cwd / "no-data-here"), "PYTHONHASHSEED": "0"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, env=env)


def config(**given) -> dict:
    """The resolved settings of a run of SVM (the declared defaults), with ``given`` on top."""
    return {**defaults(ClassifySettings), "model": "SVM", "model_args": {}, **given}


def one_line_error(result: subprocess.CompletedProcess, *fragments: str) -> None:
    assert result.returncode == 2, result.stderr
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    for fragment in fragments:
        assert fragment in result.stderr, result.stderr


# ----- fixed maps whose pixels the scene leaves unlabelled ---------------------------------------------

def test_indian_pines_standard_maps_score_the_pixels_the_label_file_leaves_unlabelled(tmp_path, shared_data):
    """The 695 / 9,671 maps of SpectralFormer and miniGCN: 26 training and 230 test pixels are 0 in
    Indian_pines_gt.mat. The run says so per set, trains on all 695, scores all 9,671 with the maps'
    classes, and records the counts and the protocol in metrics.json."""
    train_map, test_map = (str(shared_data / m) for m in MAPS)
    result = cli("--model", "SVM", "--dataset", "IndianPines", "--folder", str(shared_data), "--train_set", train_map,
                 "--test_set", test_map, "--val_fraction", "0", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    warned = [line for line in result.stderr.splitlines() if "unlabelled in the label file" in line]
    assert warned == ["warning: [SVM IndianPines seed 0] 26 training pixels of Indian_pines_TR.mat are unlabelled in "
                      "the label file of IndianPines; their class is the map's",
                      "warning: [SVM IndianPines seed 0] 230 test pixels of Indian_pines_TE.mat are unlabelled in "
                      "the label file of IndianPines; their class is the map's"]
    metrics = json.loads(next((tmp_path / "o").glob("IndianPines_SVM_file*/seed0/metrics.json")).read_text())
    assert (metrics["n_train"], metrics["n_validation"], metrics["n_test"]) == (695, 0, 9671)
    assert int(np.sum(metrics["confusion_matrix"])) == 9671  # every test pixel scored, with the map's class
    per_class_test = [c["test"] for c in metrics["split"]]
    assert per_class_test == [39, 1384, 784, 184, 447, 697, 11, 439, 5, 918, 2418, 564, 162, 1244, 330, 45]
    assert sum(c["train"] for c in metrics["split"]) == 695
    protocol = metrics["protocol"]
    assert protocol["label"] == "maps Indian_pines_TR.mat / Indian_pines_TE.mat, no validation"
    assert protocol["maps"]["train"]["unlabelled_in_scene"] == 26 and protocol["maps"]["train"]["pixels"] == 695
    assert protocol["maps"]["test"]["unlabelled_in_scene"] == 230 and protocol["maps"]["test"]["pixels"] == 9671
    assert protocol["maps"]["train"]["other_class_in_scene"] == protocol["maps"]["test"]["other_class_in_scene"] == 0
    assert protocol["leaks"] == [] and metrics["overall_accuracy"] > 0.5


def test_a_map_of_another_size_or_with_a_class_the_scene_lacks_is_one_line(tmp_path, shared_data):
    train_map, test_map = (str(shared_data / m) for m in MAPS)
    result = cli("--model", "SVM", "--dataset", "Synthetic", "--train_set", train_map, "--test_set", test_map,
                 "--out", "o", cwd=tmp_path)
    one_line_error(result, "Indian_pines_TR.mat", "145x145", "72x72")
    bad = np.zeros((145, 145), np.uint8)
    bad[0, 0], bad[0, 1] = 2, 17  # Indian Pines has classes 1..16
    np.save(tmp_path / "bad.npy", bad)
    result = cli("--model", "SVM", "--dataset", "IndianPines", "--folder", str(shared_data), "--train_set",
                 str(tmp_path / "bad.npy"), "--test_set", test_map, "--out", "o", cwd=tmp_path)
    one_line_error(result, "bad.npy", "[17]")
    assert not (tmp_path / "o").exists()


def crafted_maps(scene, folder: Path) -> tuple[str, str, tuple[int, int], tuple[int, int]]:
    """Maps of the scene's top and bottom halves, each labelling one pixel the scene leaves
    unlabelled (the scene's label value 3, i.e. class id 2) and the test map one pixel of another
    class than the scene's."""
    raw = np.zeros(scene.shape, np.uint8)
    raw[scene.labels >= 0] = np.asarray(scene.label_values)[scene.labels[scene.labels >= 0]]
    half = scene.shape[0] // 2
    train, test = raw.copy(), raw.copy()
    train[half:], test[:half] = 0, 0
    blank_top = tuple(int(v) for v in np.argwhere(scene.labels[:half] < 0)[0])
    blank_bottom = tuple(int(v) for v in np.argwhere(scene.labels[half:] < 0)[0] + [half, 0])
    train[blank_top], test[blank_bottom] = 3, 3
    other = tuple(int(v) for v in np.argwhere(scene.labels[half:] == 0)[0] + [half, 0])
    test[other] = 2  # the scene says class id 0, the map class id 1
    np.save(folder / "train.npy", train)
    np.save(folder / "test.npy", test)
    return str(folder / "train.npy"), str(folder / "test.npy"), blank_top, blank_bottom


def test_crafted_maps_give_their_class_where_the_scene_has_none(tmp_path, synthetic_scene, capsys):
    train_file, test_file, blank_top, blank_bottom = crafted_maps(synthetic_scene, tmp_path)
    split = make_split(synthetic_scene, config(train_set=train_file, test_set=test_file, val_fraction=0.0), seed=0)
    truth = split.truth(synthetic_scene)
    assert split.train[blank_top] and split.test[blank_bottom]
    assert truth[blank_top] == truth[blank_bottom] == 2  # label value 3 is class id 2
    assert synthetic_scene.labels[blank_top] == -1  # the scene itself is left as it was
    assert split.maps["train"]["unlabelled_in_scene"] == 1 and split.maps["test"]["unlabelled_in_scene"] == 1
    assert split.maps["test"]["other_class_in_scene"] == 1 and split.maps["train"]["other_class_in_scene"] == 0
    lines = capsys.readouterr().err.splitlines()
    assert sum("1 training pixels of train.npy are unlabelled" in line for line in lines) == 1
    assert sum("1 test pixels of test.npy are of another class" in line for line in lines) == 1


def test_crafted_maps_train_and_score_through_the_command_line(tmp_path, synthetic_scene):
    train_file, test_file, _, _ = crafted_maps(synthetic_scene, tmp_path)
    result = cli("--model", "SVM", "--dataset", "Synthetic", "--train_set", train_file, "--test_set", test_file,
                 "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(next((tmp_path / "o").glob("*/seed0/metrics.json")).read_text())
    test_pixels = int((np.load(test_file) > 0).sum())
    assert metrics["n_test"] == int(np.sum(metrics["confusion_matrix"])) == test_pixels
    assert metrics["protocol"]["maps"]["test"]["unlabelled_in_scene"] == 1


# ----- N training + M validation pixels per class -------------------------------------------------------

def test_n_plus_m_per_class(synthetic_scene):
    split = make_split(synthetic_scene, config(sampling_mode="fixed", training_sample=30, val_per_class=10), seed=3)
    labels = synthetic_scene.labels
    for c in range(synthetic_scene.n_classes):
        assert (split.train & (labels == c)).sum() == 30 and (split.validation & (labels == c)).sum() == 10
    assert not (split.train & split.validation).any() and not ((split.train | split.validation) & split.test).any()
    assert ((split.train | split.validation | split.test) == (labels >= 0)).all()  # the rest is test
    assert split.validation_source == "outside_train" and (split.fitted() == split.train).all()
    again = make_split(synthetic_scene, config(sampling_mode="fixed", training_sample=30, val_per_class=10), seed=3)
    assert (again.validation == split.validation).all()
    assert protocol_label(config(sampling_mode="fixed", training_sample=30, val_per_class=10)) == \
        "fixed 30 + 10 val/class"


def test_n_plus_m_refuses_a_class_too_small(synthetic_scene):
    with pytest.raises(UserError, match="Class 6.*300 labelled pixels outside training.*at most 299"):
        make_split(synthetic_scene, config(sampling_mode="fixed", training_sample=5, val_per_class=300), seed=0)


def test_n_plus_m_from_the_command_line_and_its_bad_values(tmp_path):
    result = cli("--model", "SVM", "--dataset", "Synthetic", "--sampling_mode", "fixed", "--training_sample", "30",
                 "--val_per_class", "10", "--out", "o", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    metrics = json.loads(next((tmp_path / "o").glob("*/seed0/metrics.json")).read_text())
    assert (metrics["n_train"], metrics["n_validation"]) == (180, 60)
    assert metrics["n_test"] == 3784 - 240
    assert metrics["protocol"]["validation"] == {"from": "outside_train", "per_class": 10}
    for flag, value, fragment in (("--val_per_class", "0", "--val_per_class 0"),
                                  ("--val_per_class", "1000", "at most")):
        result = cli("--model", "SVM", "--dataset", "Synthetic", "--sampling_mode", "fixed", "--training_sample",
                     "30", flag, value, "--out", "bad", cwd=tmp_path)
        one_line_error(result, fragment)
    np.save(tmp_path / "m.npy", np.ones((72, 72), np.uint8))
    result = cli("--model", "SVM", "--dataset", "Synthetic", "--train_set", "m.npy", "--test_set", "m.npy",
                 "--val_per_class", "5", "--out", "bad", cwd=tmp_path)
    one_line_error(result, "--val_per_class 5", "--validation_from test")
    assert not (tmp_path / "bad").exists()


# ----- leakage switches ----------------------------------------------------------------------------------

def test_validation_from_test_stays_in_the_test_set(synthetic_scene):
    fair = make_split(synthetic_scene, config(val_fraction=0.0), seed=1)
    leaky = make_split(synthetic_scene, config(validation_from="test", val_per_class=4), seed=1)
    assert (leaky.train == fair.train).all() and (leaky.test == fair.test).all()
    assert (leaky.validation <= leaky.test).all() and leaky.validation_source == "test"
    assert np.bincount(synthetic_scene.labels[leaky.validation]).tolist() == [4] * 6
    share = make_split(synthetic_scene, config(validation_from="test", val_fraction=0.1), seed=1)
    assert (share.validation <= share.test).all()
    assert abs(share.validation.sum() - 0.1 * share.test.sum()) <= synthetic_scene.n_classes
    assert (share.fitted() == share.train).all()  # scikit-learn never fits test pixels


def test_preprocessing_fitted_on_the_scene(synthetic_scene):
    split = make_split(synthetic_scene, config(), seed=0)
    task = ClassifyTask(synthetic_scene, config())
    cube = np.asarray(synthetic_scene.cube, np.float64).reshape(-1, synthetic_scene.n_bands)
    pca = {"name": "pca", "components": 3}
    _, fair = task.features(config(reduction=pca), split.train, None, ["cube"])
    _, leaky = task.features(config(reduction=pca, fit_preprocessing="scene"), split.train, None, ["cube"])
    assert np.allclose(leaky["normalisers"]["cube"]["shift"], cube.mean(axis=0), rtol=1e-5)
    assert np.allclose(fair["normalisers"]["cube"]["shift"], cube[split.train.ravel()].mean(axis=0), rtol=1e-5)
    assert not np.allclose(fair["normalisers"]["cube"]["shift"], leaky["normalisers"]["cube"]["shift"])
    # PCA too: the leaky components are the principal axes of the whole standardised scene
    scaled = (cube - cube.mean(axis=0)) / cube.std(axis=0)
    axes = np.linalg.svd(scaled - scaled.mean(axis=0), full_matrices=False)[2][:3]
    assert np.allclose(np.abs(leaky["projection"]["components"]), np.abs(axes), atol=1e-4)
    assert not np.allclose(np.abs(fair["projection"]["components"]), np.abs(axes), atol=1e-3)


def test_the_switches_join_the_identity_only_when_set():
    base = experiment_id(config())
    assert experiment_id(config(fit_preprocessing=None, validation_from=None, val_per_class=None)) == base
    changed = {experiment_id(config(**{key: value})) for key, value in
               (("fit_preprocessing", "scene"), ("validation_from", "test"), ("val_per_class", 10))}
    assert len(changed) == 3 and base not in changed


def test_protocol_labels():
    assert protocol_label(config()) == "random 0.1"
    assert protocol_label(config(val_fraction=0.2)) == "random 0.1, val 20% of train"
    assert protocol_label(config(validation_from="test", fit_preprocessing="scene")) == \
        "random 0.1, val 5% of test (leak), preprocessing fitted on the scene (leak)"
    assert protocol_label(config(sampling_mode="blocks", block_size=12)) == "blocks 0.1 block_size 12"
    assert protocol_label(config(validation_from="test", val_fraction=0.5, early_stopping=20)) == \
        "random 0.1, val 50% of test (leak), early stopping 20"


def test_bench_takes_the_protocol_flags_and_names_the_protocol(tmp_path):
    result = cli("bench", "--models", "SVM", "--datasets", "Synthetic", "--sampling_mode", "fixed",
                 "--training_sample", "20", "--val_per_class", "5", "--validation_from", "test",
                 "--fit_preprocessing", "scene", "--out", "b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    label = "fixed 20, val 5/class of test (leak), preprocessing fitted on the scene (leak)"
    rows = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert rows[0]["protocol"] == label and rows[0]["train_pixels"] == 120
    assert f"| Synthetic | SVM | {label} | 1 |" in (tmp_path / "b" / "bench.md").read_text()
    assert label in (tmp_path / "b" / "bench.csv").read_text()
    metrics = json.loads(next((tmp_path / "b").glob("*/seed0/metrics.json")).read_text())
    assert metrics["protocol"]["leaks"] == ["validation_from_test", "preprocessing_fitted_on_scene"]
    assert metrics["protocol"]["fit_preprocessing"] == "scene"


def test_bench_takes_early_stopping_and_names_it(tmp_path):
    result = cli("bench", "--models", "hu", "--datasets", "Synthetic", "--validation_from", "test", "--val_fraction",
                 "0.1", "--early_stopping", "2", "--epoch", "3", "--out", "b", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    label = "random 0.1, val 10% of test (leak), early stopping 2"
    assert json.loads((tmp_path / "b" / "bench.json").read_text())[0]["protocol"] == label
    metrics = json.loads(next((tmp_path / "b").glob("*/seed0/metrics.json")).read_text())
    assert metrics["protocol"]["early_stopping"] == 2 and 1 <= metrics["epochs"] <= 3
