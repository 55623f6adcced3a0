"""The Python API as users call it: the zoo, scenes, train -> load -> predict, generate; and the same
numbers as the command line for the same seed."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import deephyperx as dhx
from deephyperx.errors import UserError
from deephyperx.metrics import confusion_matrix, metrics_from_confusion
from deephyperx.scene import IGNORE

import main


def test_list_models_and_scenes_need_no_import():
    """A fresh interpreter, in another folder: the zoo and the catalogue come from the installed package."""
    code = "import deephyperx as d; print(d.list_models()); print(d.list_scenes())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="/",
                         env={**os.environ, "PYTHONPATH": ""}).stdout.splitlines()
    models = eval(out[0])  # a printed list of names
    assert {"hamida", "hu", "SVM", "cvae", "segnet", "SSRN"} <= set(models)
    assert "IndianPines" in out[1] and "Synthetic" in out[1]


def test_create_model_keeps_the_paper_defaults():
    net = dhx.create_model("hamida", n_bands=200, n_classes=16)
    assert sum(p.numel() for p in net.parameters()) == 44_636  # Hamida et al.'s network on 5x5 patches
    same = dhx.create_model("hamida", n_bands=200, n_classes=16, seed=0)
    for a, b in zip(net.state_dict().values(), same.state_dict().values()):
        assert np.array_equal(a.numpy(), b.numpy())  # seeded: the same initial weights
    wider = dhx.create_model("hamida", n_bands=200, n_classes=16, patch_size=7)
    assert sum(p.numel() for p in wider.parameters()) != sum(p.numel() for p in net.parameters())
    svm = dhx.create_model("SVM", n_classes=16)
    assert hasattr(svm, "fit") and hasattr(svm, "predict")


@pytest.mark.parametrize("call, message", [
    (lambda: dhx.create_model("hamida"), "needs n_bands and n_classes"),
    (lambda: dhx.create_model("hamida", n_bands=200, n_classes=16, dropout_rate=0.5), "has no option 'dropout_rate'"),
    (lambda: dhx.create_model("nosuchnet", n_bands=3, n_classes=2), "unknown model 'nosuchnet'"),
    (lambda: dhx.load_scene("NoSuchScene"), "NoSuchScene"),
    (lambda: dhx.train("cvae", "Synthetic"), "deephyperx.generate"),
    (lambda: dhx.train("hu", "Synthetic", epochs=1, lerning_rate=0.1), "lerning_rate"),
    (lambda: dhx.load("missing/model.pt"), "does not exist"),
])
def test_bad_calls_are_one_clear_error(call, message):
    with pytest.raises(UserError, match=message):
        call()


def test_scene_from_files(tmp_path):
    rng = np.random.default_rng(0)
    cube = rng.normal(size=(20, 24, 5)).astype(np.float32)
    labels = rng.choice([0, 3, 7], size=(20, 24))
    np.save(tmp_path / "cube.npy", cube)
    np.save(tmp_path / "labels.npy", labels)
    scene = dhx.Scene.from_files(tmp_path / "cube.npy", tmp_path / "labels.npy", class_names=["grass", "roof"])
    assert scene.name == "cube" and scene.n_classes == 2 and scene.label_values == [3, 7]
    assert np.array_equal(scene.labels == IGNORE, labels == 0)
    assert np.array_equal(scene.labels[labels == 7], np.ones((labels == 7).sum()))


def test_train_load_predict_on_the_embedded_scene(tmp_path):
    scene = dhx.load_scene("Synthetic")
    result = dhx.train("hamida", scene, training_sample=0.2, seed=1, epochs=1, out=tmp_path / "runs")
    assert result.folder == result.experiment_folder / "seed1" and (result.folder / "model.pt").is_file()
    assert result.summary["n_runs"] == 1 and result.metrics["seed"] == 1
    assert int(result.split.train.sum()) == result.metrics["n_train"]
    assert not (result.split.train & result.split.test).any()
    classifier = dhx.load(result.folder / "model.pt")
    assert classifier.name == "hamida" and classifier.class_names == scene.class_names
    assert np.array_equal(classifier.predict(scene), result.prediction)
    # a file mapped tile by tile under a small memory budget, into a map file: the same map
    np.save(tmp_path / "cube.npy", np.asarray(scene.cube))
    mapped = classifier.predict(tmp_path / "cube.npy", out=tmp_path / "map.npy", memory_budget="64MB")
    assert (tmp_path / "map.npy").is_file() and np.array_equal(np.asarray(mapped), result.prediction)
    with pytest.raises(UserError, match="bands"):
        classifier.predict(np.zeros((20, 20, 3), np.float32))


def test_scikit_learn_models_round_trip(tmp_path):
    result = dhx.train("SVM", "Synthetic", training_sample=0.2, seed=0, out=tmp_path)
    classifier = dhx.load(result.folder / "model.skops")
    assert np.array_equal(classifier.predict(dhx.load_scene("Synthetic").cube), result.prediction)


def test_several_seeds_give_mean_and_std(tmp_path):
    result = dhx.train("SVM", "Synthetic", training_sample=0.1, seed=3, runs=2, out=tmp_path)
    assert [s.seed for s in result.seeds] == [3, 4]
    oa = [s.metrics["overall_accuracy"] for s in result.seeds]
    assert result.summary["overall_accuracy"]["mean"] == pytest.approx(np.mean(oa))


def test_generate_labelled_spectra(tmp_path):
    scene = dhx.load_scene("Synthetic")
    made = dhx.generate("cvae", scene, training_sample=0.2, seed=0, epochs=1, samples_per_class=5,
                        classes=scene.class_names[1:3], report=False, out=tmp_path)
    assert made.spectra.shape == (10, scene.n_bands)
    assert sorted(set(made.labels.tolist())) == [1, 2]
    assert made.file.is_file() and made.class_names == scene.class_names


def test_same_numbers_as_the_command_line_on_indian_pines(tmp_path, shared_data):
    """Train on real Indian Pines through the API and through main.py with the same seed: the same OA;
    the saved model, loaded and mapped over the whole scene, gives the same map and the same OA."""
    flags = ["--model", "hu", "--dataset", "IndianPines", "--folder", str(shared_data), "--training_sample", "0.1",
             "--epoch", "3", "--seed", "0"]
    assert main.main([*flags, "--out", str(tmp_path / "cli")]) == 0
    (cli_results,) = (tmp_path / "cli").glob("*/results.json")
    cli_oa = json.loads(cli_results.read_text())["overall_accuracy"]["mean"]

    scene = dhx.load_scene("IndianPines", folder=shared_data)
    result = dhx.train("hu", scene, training_sample=0.1, seed=0, epochs=3, out=tmp_path / "api")
    assert result.metrics["overall_accuracy"] == cli_oa

    mapped = dhx.load(result.folder / "model.pt").predict(scene.cube)
    assert mapped.shape == scene.shape and np.array_equal(mapped, result.prediction)
    truth = np.where(result.split.test, scene.labels, IGNORE)
    oa = metrics_from_confusion(confusion_matrix(truth.ravel(), mapped.ravel(), scene.n_classes),
                                scene.class_names)["overall_accuracy"]
    assert oa == cli_oa
