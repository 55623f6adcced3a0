"""Synthetic spectra in classification training: per-class counts, batches, determinism, the run's
normalisation, no contact with validation or test pixels, the command line, its refusals, the
generator-checkpoint source, and the gain table of benchmarks/augmentation_gain.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import models.fully_connected  # noqa: F401  (registers nn)
import models.generators  # noqa: F401  (registers cgan, cvae)
import models.hu  # noqa: F401  (registers hu)
from deephyperx.config import experiment_id, resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.preprocessing import fit_normaliser
from deephyperx.registry import get_spec
from deephyperx.runner import ClassifyTask, run_experiment
from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler
from deephyperx.scene import IGNORE, Scene, class_spectra
from deephyperx.spectra_file import LabelledSpectra, read_spectra_file, write_spectra_file
from deephyperx.steps import TrainingStep, register_step
from deephyperx.synthetic_mixing import (SyntheticMixing, class_quotas, draw_indices, draw_synthetic,
                                         resolve_synthetic_settings, to_model_space)

ROOT = Path(__file__).resolve().parents[1]


def spectra_file(path: Path, scene: Scene, per_class: int = 30, seed: int = 0, n_bands=None, class_names=None) -> Path:
    """A spectra file of the scene's class means plus noise (what a very plain generator would give)."""
    mean, std = class_spectra(scene)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(scene.n_classes), per_class)
    spectra = mean[labels] + 0.5 * std[labels] * rng.standard_normal((len(labels), scene.n_bands))
    spectra = spectra[:, :n_bands] if n_bands else spectra
    write_spectra_file(path, LabelledSpectra(spectra.astype(np.float32), labels,
                                             list(class_names or scene.class_names), None, scene.name, "means", {}))
    return path


# ----- how many ------------------------------------------------------------------------------------

def test_quotas_follow_the_real_class_counts_and_the_ratio():
    assert class_quotas(np.array([10, 30, 60]), 0.5).tolist() == [5, 15, 30]
    assert class_quotas(np.array([10, 30, 60]), 2).tolist() == [20, 60, 120]
    assert class_quotas(np.array([4, 0, 6]), 1.5).tolist() == [6, 0, 9]
    odd = class_quotas(np.array([1, 1, 1]), 1 / 3)
    assert odd.sum() == 1 and odd.tolist() == [1, 0, 0]  # the leftover unit goes to the first tied class
    counts = np.array([7, 13, 29, 1])
    for ratio in (0.1, 0.37, 1.0, 2.5):
        assert class_quotas(counts, ratio).sum() == round(ratio * counts.sum())


def test_draws_take_distinct_spectra_first_and_repeat_only_when_the_pool_is_short():
    labels = np.repeat([0, 1, 2], [5, 100, 20])
    index, reused = draw_indices(labels, np.array([8, 10, 0]), np.random.default_rng(0))
    assert np.bincount(labels[index], minlength=3).tolist() == [8, 10, 0]
    assert reused.tolist() == [3, 0, 0]
    assert set(index[labels[index] == 0]) == set(range(5))  # all five once before any repeat
    assert len(set(index[labels[index] == 1])) == 10
    again, _ = draw_indices(labels, np.array([8, 10, 0]), np.random.default_rng(0))
    assert again.tolist() == index.tolist()


# ----- batches -------------------------------------------------------------------------------------

def real_maker(scene: Scene, mask: np.ndarray, augmentation=None) -> BatchMaker:
    sampler = PatchSampler([scene.cube], np.where(mask, scene.labels, IGNORE), 1)
    return BatchMaker(sampler, *np.nonzero(mask), dense=False, augmentation=augmentation)


def test_mixed_batches_keep_order_shapes_and_targets(small_scene):
    train = small_scene.labels >= 0
    real = real_maker(small_scene, train)
    spectra = np.arange(5 * 8, dtype=np.float32).reshape(5, 8)
    mixing = SyntheticMixing(real, spectra, np.array([2, 0, 1, 1, 2]))
    assert len(mixing) == int(train.sum()) + 5 and mixing.n_synthetic == 5
    n = len(real)
    index = torch.tensor([n + 1, 0, n + 4, 3, n])
    batch = mixing.make(index)
    assert batch.inputs[0].shape == (5, 8, 1, 1) and batch.inputs[0].dtype == torch.float32
    assert batch.target.tolist() == [0, int(real.labels[0]), 2, int(real.labels[3]), 2]
    assert torch.equal(batch.inputs[0][0, :, 0, 0], torch.from_numpy(spectra[1]))
    reference = real.make(torch.tensor([0, 3]))
    assert torch.equal(batch.inputs[0][[1, 3]], reference.inputs[0])
    assert batch.rows.tolist()[::2] == [-1, -1, -1] and batch.rows.tolist()[1::2] == reference.rows.tolist()
    assert mixing.make(torch.tensor([n, n + 2])).target.tolist() == [2, 1]  # synthetic only
    assert mixing.make(torch.tensor([1, 2])).rows.min() >= 0  # real only


def test_mixed_batches_are_deterministic_under_a_generator(small_scene):
    train = small_scene.labels >= 0
    real = real_maker(small_scene, train, Augmentation(radiation=True, mixture=True, radiation_probability=0.5))
    mixing = SyntheticMixing(real, np.ones((6, 8), np.float32), np.arange(6) % 3)
    index = torch.randperm(len(mixing), generator=torch.Generator().manual_seed(0))[:40]
    first = mixing.make(index, torch.Generator().manual_seed(5), augment=True)
    second = mixing.make(index, torch.Generator().manual_seed(5), augment=True)
    assert torch.equal(first.inputs[0], second.inputs[0]) and torch.equal(first.target, second.target)
    synthetic = first.rows == -1
    assert torch.all(first.inputs[0][synthetic] == 1.0)  # synthetic spectra are not augmented


def test_mixing_refuses_patches_and_mismatched_spectra(small_scene):
    train = small_scene.labels >= 0
    patches = BatchMaker(PatchSampler([small_scene.cube], np.where(train, small_scene.labels, IGNORE), 3),
                         *np.nonzero(train), dense=False)
    with pytest.raises(UserError, match="single-spectrum"):
        SyntheticMixing(patches, np.zeros((2, 8), np.float32), np.zeros(2))
    with pytest.raises(UserError, match="do not match"):
        SyntheticMixing(real_maker(small_scene, train), np.zeros((2, 5), np.float32), np.zeros(2))


def test_synthetic_spectra_are_normalised_like_the_real_pixels(small_scene):
    train = np.zeros(small_scene.shape, bool)
    train[5:15] = True
    normaliser = fit_normaliser(small_scene.cube, train, "standard")
    spectra = small_scene.cube[2:4, 3].astype(np.float32)  # two pixels, as if they were synthetic
    expected = normaliser.apply(small_scene.cube)[2:4, 3]
    np.testing.assert_allclose(to_model_space(spectra, normaliser, None), expected, rtol=1e-6)


# ----- settings ------------------------------------------------------------------------------------

def hu_config(out: Path, **settings) -> dict:
    config = resolve_config(get_spec("hu"), {"epoch": 1, "out": str(out), "training_sample": 0.3, **settings})
    config["dataset"] = "Stripes"
    return config


def test_settings_join_the_identity_and_bad_ones_are_refused(small_scene, tmp_path):
    path = spectra_file(tmp_path / "s.h5", small_scene)
    plain = hu_config(tmp_path)
    assert resolve_synthetic_settings(plain, "neural") is plain
    one = resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(path)), "neural")
    two = resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(path), synthetic_ratio=2.0), "neural")
    assert one["synthetic_ratio"] == 1.0 and len(one["synthetic_sha256"]) == 64
    assert len({experiment_id(plain), experiment_id(one), experiment_id(two)}) == 3
    spectra_file(path, small_scene, seed=1)  # same path, other content: another experiment
    changed = resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(path)), "neural")
    assert experiment_id(changed) != experiment_id(one)
    with pytest.raises(UserError, match="has changed"):
        resolve_synthetic_settings({**one, "synthetic_ratio": 1.0}, "neural")
    for bad, message in (({"synthetic_ratio": 0.0}, "positive"), ({"synthetic_ratio": -1.0}, "positive"),
                         ({"synthetic": str(tmp_path / "none.h5")}, "no such file")):
        with pytest.raises(UserError, match=message):
            resolve_synthetic_settings(hu_config(tmp_path, **{"synthetic": str(path), **bad}), "neural")
    with pytest.raises(UserError, match="needs --synthetic"):
        resolve_synthetic_settings(hu_config(tmp_path, synthetic_ratio=2.0), "neural")
    with pytest.raises(UserError, match="single-spectrum"):
        resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(path), patch_size=3), "neural")
    with pytest.raises(UserError, match="sklearn"):
        resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(path)), "sklearn")


# ----- a run ---------------------------------------------------------------------------------------

@register_step("recording_for_tests")
class RecordingStep(TrainingStep):
    """The supervised step, noting which samples each training batch and validation pass holds."""

    batches: list = []
    validated: list = []

    def __call__(self, model, batch, optimizers, ctx):
        RecordingStep.batches.append((batch.inputs[0].cpu().clone(), batch.target.cpu().clone(),
                                      batch.rows.clone(), batch.cols.clone()))
        return super().__call__(model, batch, optimizers, ctx)

    def validate(self, model, maker, ctx, batch_size):
        RecordingStep.validated.append(maker)
        return super().validate(model, maker, ctx, batch_size)


def test_a_run_trains_on_real_and_synthetic_spectra_and_validates_on_real_ones_only(small_scene, tmp_path):
    path = spectra_file(tmp_path / "s.h5", small_scene, per_class=40)
    RecordingStep.batches.clear()
    RecordingStep.validated.clear()
    config = hu_config(tmp_path / "out", synthetic=str(path), synthetic_ratio=1.5, supervision="recording_for_tests",
                       val_fraction=0.2, epoch=2)
    result = run_experiment(small_scene, config)
    folder = Path(result["folder"]) / "seed0"
    split = np.load(folder / "split.npz")
    n_train = int(split["train"].sum())
    metrics = json.loads((folder / "metrics.json").read_text())
    info = metrics["synthetic"]
    assert info["n_real_train"] == n_train and info["n_synthetic"] == round(1.5 * n_train)
    real_counts = np.bincount(small_scene.labels[split["train"]], minlength=3)
    assert list(info["per_class"].values()) == class_quotas(real_counts, 1.5).tolist()

    epoch_one = RecordingStep.batches[:len(RecordingStep.batches) // 2]
    inputs, target, rows, cols = (torch.cat(part) for part in zip(*epoch_one))
    synthetic = rows == -1
    assert int(synthetic.sum()) == info["n_synthetic"] and int((~synthetic).sum()) == n_train
    assert split["train"][rows[~synthetic], cols[~synthetic]].all()  # real samples: training pixels only
    assert np.bincount(target[synthetic], minlength=3).tolist() == list(info["per_class"].values())
    normaliser = fit_normaliser(small_scene.cube, split["train"], "standard")  # real training pixels only
    file_spectra = to_model_space(read_spectra_file(path).spectra, normaliser, None)
    seen = inputs[synthetic][:, :, 0, 0].numpy()
    distances = np.abs(seen[:, None, :] - file_spectra[None]).max(axis=2).min(axis=1)
    assert distances.max() < 1e-5  # every synthetic input is a file spectrum, normalised by the run

    validation = RecordingStep.validated[0]
    assert isinstance(validation, BatchMaker) and len(validation) == int(split["validation"].sum())
    assert split["validation"][validation.rows.numpy(), validation.cols.numpy()].all()
    assert metrics["n_validation"] == int(split["validation"].sum()) and metrics["n_test"] == int(split["test"].sum())
    summary = (folder / "summary.md").read_text()
    assert "synthetic ratio | 1.5" in summary and "synthetic_sha256" in summary


def test_the_same_seed_draws_the_same_synthetic_spectra_and_another_seed_others(small_scene, tmp_path):
    path = spectra_file(tmp_path / "s.h5", small_scene, per_class=60)
    config = resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(path), synthetic_ratio=0.5), "neural")
    train = small_scene.labels >= 0
    first, again = (draw_synthetic(config, small_scene, train, seed=4) for _ in range(2))
    other = draw_synthetic(config, small_scene, train, seed=5)
    assert np.array_equal(first.spectra, again.spectra) and np.array_equal(first.labels, again.labels)
    assert not np.array_equal(first.spectra, other.spectra)
    assert np.array_equal(np.bincount(first.labels), np.bincount(other.labels))


def test_a_seed_template_gives_each_run_the_spectra_of_its_own_generator(small_scene, tmp_path):
    """``--synthetic gen/seed{seed}.h5``: seed s reads seed s's file (a generator trained on that
    seed's split); the experiment's identity holds the template, each run records its file's checksum."""
    for seed, offset in ((3, 0.0), (4, 100.0)):
        path = spectra_file(tmp_path / f"seed{seed}.h5", small_scene, per_class=20, seed=seed)
        from deephyperx.spectra_file import read_spectra_file as read
        data = read(path)
        write_spectra_file(path, LabelledSpectra(data.spectra + offset, data.labels, data.class_names, None,
                                                 data.scene, data.model, {}))
    template = str(tmp_path / "seed{seed}.h5")
    experiment = resolve_synthetic_settings(hu_config(tmp_path, synthetic=template), "neural")
    assert experiment["synthetic"] == template and experiment.get("synthetic_sha256") is None
    train = small_scene.labels >= 0
    runs = {seed: resolve_synthetic_settings(experiment, "neural", seed) for seed in (3, 4)}
    assert runs[3]["synthetic_sha256"] != runs[4]["synthetic_sha256"]
    low, high = (draw_synthetic(runs[s], small_scene, train, seed=s) for s in (3, 4))
    assert high.spectra.mean() - low.spectra.mean() == pytest.approx(100.0, abs=1e-3)
    assert low.info["source"].endswith("seed3.h5") and high.info["source"].endswith("seed4.h5")
    with pytest.raises(UserError, match="seed5.h5"):
        resolve_synthetic_settings(experiment, "neural", 5)


def test_a_bad_synthetic_file_stops_the_run_before_anything_is_written(small_scene, tmp_path):
    wrong_bands = spectra_file(tmp_path / "bands.h5", small_scene, n_bands=5)
    with pytest.raises(UserError, match="5 bands"):
        task = ClassifyTask(small_scene, hu_config(tmp_path / "out", synthetic=str(wrong_bands)))
        Experiment(task).run_seed(0, tmp_path / "out" / "run" / "seed0")
    assert not (tmp_path / "out").exists()


# ----- a generator checkpoint as the source --------------------------------------------------------

@pytest.fixture(scope="module")
def generator_run(tmp_path_factory):
    """A tiny conditional VAE trained for one short epoch by the generation pipeline (its model.pt)."""
    from deephyperx.generation import GenerationRequest, generate
    from deephyperx.synthetic import make_synthetic_scene

    scene = make_synthetic_scene(0, rows=30, cols=30, n_bands=16, n_classes=3)
    out = tmp_path_factory.mktemp("generator")
    config = resolve_config(get_spec("cvae"), {"epoch": 1, "epoch_samples": 512, "out": str(out),
                                               "training_sample": 0.3, "model_args": {"width": 64}})
    config["dataset"] = scene.name
    summary = generate(scene, config, GenerationRequest(samples_per_class=5, report=False))
    return scene, Path(summary["run_folder"]) / "model.pt"


def test_a_generator_checkpoint_is_sampled_on_the_fly(generator_run, tmp_path):
    scene, checkpoint = generator_run
    config = resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(checkpoint), synthetic_ratio=0.75), "neural")
    train = scene.labels >= 0
    draw = draw_synthetic(config, scene, train, seed=0)
    real_counts = np.bincount(scene.labels[train], minlength=3)
    assert np.bincount(draw.labels, minlength=3).tolist() == class_quotas(real_counts, 0.75).tolist()
    assert draw.spectra.shape == (len(draw.labels), 16) and draw.info["kind"] == "checkpoint"
    pixels = scene.cube[train]  # back in the scene's units: inside the min-max range of the training pixels
    assert draw.spectra.min() >= pixels.min() - 1e-5 and draw.spectra.max() <= pixels.max() + 1e-5
    assert np.array_equal(draw.spectra, draw_synthetic(config, scene, train, seed=0).spectra)
    result = run_experiment(scene, {**hu_config(tmp_path / "out", synthetic=str(checkpoint)), "dataset": scene.name})
    assert result["overall_accuracy"]["mean"] is not None


def test_a_classifier_checkpoint_is_not_a_generator(small_scene, tmp_path):
    run_experiment(small_scene, hu_config(tmp_path / "first"))
    classifier = next((tmp_path / "first").glob("*/seed0/model.pt"))
    config = resolve_synthetic_settings(hu_config(tmp_path, synthetic=str(classifier)), "neural")
    with pytest.raises(UserError, match="not of a spectrum generator"):
        draw_synthetic(config, small_scene, small_scene.labels >= 0, seed=0)


# ----- the command line ----------------------------------------------------------------------------

def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "DEEPHYPERX_DATA": str(cwd / "no-data-here"), "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


@pytest.fixture(scope="module")
def synthetic_scene_file(synthetic_scene, tmp_path_factory) -> Path:
    return spectra_file(tmp_path_factory.mktemp("files") / "synthetic.h5", synthetic_scene, per_class=50)


def test_the_command_line_trains_with_synthetic_spectra_and_reports_them(synthetic_scene_file, tmp_path):
    result = cli("--model", "hu", "--dataset", "Synthetic", "--epoch", "1", "--training_sample", "0.05",
                 "--synthetic", str(synthetic_scene_file), "--synthetic_ratio", "0.5", "--out", "out", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "synthetic spectra" in result.stderr and " OA " in result.stdout
    folder = next((tmp_path / "out").glob("*/seed0"))
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["synthetic"]["n_synthetic"] == round(0.5 * metrics["n_train"])
    assert "synthetic_ratio: 0.5" in (folder / "config.yaml").read_text()
    assert "synthetic source" in (folder / "summary.md").read_text()
    results = json.loads((folder.parent / "results.json").read_text())
    assert results["config"]["synthetic_sha256"] == metrics["synthetic"]["sha256"]


def bad_input_case(case: str, scene: Scene, folder: Path) -> list[str]:
    """Command-line arguments of one kind of bad synthetic input (writing the file it needs)."""
    path = folder / "s.h5"
    if case == "bands":
        spectra_file(path, scene, per_class=3, n_bands=10)
    elif case == "classes":
        spectra_file(path, scene, per_class=3, class_names=[f"other {k}" for k in range(scene.n_classes)])
    elif case != "missing":
        spectra_file(path, scene, per_class=3)
    model = "he" if case == "patches" else "hu"  # he reads 7x7 patches
    args = ["--model", model, "--dataset", "Synthetic", "--epoch", "1", "--synthetic", str(path),
            "--out", str(folder / "out")]
    return args + (["--synthetic_ratio", "0"] if case == "ratio" else [])


BAD_INPUT_MESSAGES = {"missing": "no such file", "bands": "10 bands", "classes": "classes", "ratio": "positive",
                      "patches": "single-spectrum"}


@pytest.mark.parametrize("case", ["bands", "ratio"])
def test_bad_synthetic_input_gives_one_line_and_exit_2(case, synthetic_scene, tmp_path):
    result = cli(*bad_input_case(case, synthetic_scene, tmp_path), cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in result.stderr
    assert BAD_INPUT_MESSAGES[case] in lines[0]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("case", ["missing", "classes", "patches"])
def test_more_bad_synthetic_input_through_main_in_process(case, synthetic_scene, tmp_path, capsys):
    """The same entry point as above without a process start each (faster): main.main(argv)."""
    import main

    assert main.main(bad_input_case(case, synthetic_scene, tmp_path)) == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and BAD_INPUT_MESSAGES[case] in lines[0]
    assert not (tmp_path / "out").exists()


# ----- the gain table ------------------------------------------------------------------------------

def bench_row(scene: str, model: str, mean: float, std: float, runs: int = 3) -> dict:
    stat = {"mean": mean, "std": std}
    return {"scene": scene, "model": model, "split": "random 0.1", "runs": runs, "seeds": list(range(runs)),
            "epochs": 10, "overall_accuracy": stat, "average_accuracy": stat, "kappa": stat,
            "f1_per_class": {}, "parameters": 1.0, "train_seconds": 1.0, "inference_seconds": 1.0,
            "folder": "nowhere"}


def test_the_gain_table_compares_real_only_and_augmented_benchmarks(tmp_path):
    real = [bench_row("IndianPines", "nn", 0.80, 0.01), bench_row("IndianPines", "hu", 0.70, 0.02),
            bench_row("SalinasA", "nn", 0.90, 0.0)]
    augmented = [bench_row("IndianPines", "hu", 0.7250, 0.01), bench_row("IndianPines", "nn", 0.79, 0.03)]
    (tmp_path / "real.json").write_text(json.dumps(real))
    (tmp_path / "aug.json").write_text(json.dumps(augmented))
    script = ROOT / "benchmarks" / "augmentation_gain.py"
    result = subprocess.run([sys.executable, str(script), str(tmp_path / "real.json"), str(tmp_path / "aug.json"),
                             "--out", str(tmp_path / "gain")], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    table = json.loads((tmp_path / "gain" / "augmentation_gain.json").read_text())
    rows = {(r["scene"], r["model"]): r for r in table["rows"]}
    assert set(rows) == {("IndianPines", "nn"), ("IndianPines", "hu")}
    assert rows[("IndianPines", "hu")]["gain_points"] == pytest.approx(2.5)
    assert rows[("IndianPines", "nn")]["gain_points"] == pytest.approx(-1.0)
    assert table["only_in_one"] == [{"scene": "SalinasA", "model": "nn", "in": "real-only"}]
    markdown = (tmp_path / "gain" / "augmentation_gain.md").read_text()
    assert "| IndianPines | hu | 70.00 ± 2.00 | 72.50 ± 1.00 | +2.50 |" in markdown
    missing = subprocess.run([sys.executable, str(script), str(tmp_path / "none.json"), str(tmp_path / "aug.json"),
                              "--out", str(tmp_path / "g2")], capture_output=True, text=True, timeout=60)
    assert missing.returncode == 2 and len(missing.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "g2").exists()


def experiment_with_seeds(folder: Path, scene: str, model: str, oa_by_seed: dict[int, float]) -> dict:
    """A bench row whose experiment folder holds a results.json with one run per seed (as bench writes)."""
    folder.mkdir(parents=True)
    runs = [{"seed": s, "overall_accuracy": oa, "average_accuracy": oa - 0.1} for s, oa in oa_by_seed.items()]
    (folder / "results.json").write_text(json.dumps({"runs": runs}))
    values = np.array(list(oa_by_seed.values()))
    row = bench_row(scene, model, float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                    runs=len(values))
    return dict(row, seeds=list(oa_by_seed), folder=str(folder))


def test_the_gain_compares_only_the_seeds_both_benchmarks_ran(tmp_path):
    from benchmarks.augmentation_gain import gain_rows

    real = [experiment_with_seeds(tmp_path / "real", "IndianPines", "nn", {0: 0.70, 1: 0.80, 2: 0.90})]
    heavy = [experiment_with_seeds(tmp_path / "aug", "IndianPines", "nn", {0: 0.75})]  # seed 0 only
    rows, only = gain_rows(real, heavy)
    assert not only and rows[0]["seeds"] == [0]
    assert rows[0]["oa_real_only"]["mean"] == pytest.approx(0.70)  # not the three-seed mean 0.80
    assert rows[0]["gain_points"] == pytest.approx(5.0) and rows[0]["aa_gain_points"] == pytest.approx(5.0)
    assert rows[0]["runs"] == {"real_only": 1, "augmented": 1}
    other = [experiment_with_seeds(tmp_path / "other", "IndianPines", "nn", {7: 0.75})]
    with pytest.raises(UserError, match="share no seed"):
        gain_rows(real, other)
