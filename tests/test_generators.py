"""Conditional spectrum generators (cgan, cvae), their training steps, the generation pipeline
(train on a tiny synthetic scene, generate, write HDF5, resume, restore) and the spectra file."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

import models.generators as generators
from deephyperx.checkpoint import load_checkpoint
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.generation import GenerationRequest, generate, latent_walk, run_folder, walk_classes
from deephyperx.monitor import Monitor
from deephyperx.preprocessing import Normaliser, fit_normaliser
from deephyperx.registry import get_spec, list_models
from deephyperx.run_environment import read_environment
from deephyperx.sampling import Batch
from deephyperx.scene import IGNORE, class_spectra
from deephyperx.seeding import torch_generator
from deephyperx.spectra_file import LabelledSpectra, read_spectra_file, write_spectra_file
from deephyperx.steps import StepContext, get_step
from deephyperx.synthetic import make_synthetic_scene

MODELS = ("cgan", "cvae")
HAS_REALISM = importlib.util.find_spec("deephyperx.realism") is not None
#: Training long enough for class-faithful spectra on the tiny scene (steps of 32 spectra).
TRAINED = {"cgan": {"epoch": 2, "epoch_samples": 32 * 300}, "cvae": {"epoch": 2, "epoch_samples": 32 * 500}}


@pytest.fixture(scope="module")
def scene():
    """40x40 pixels, 16 bands, 4 classes: small enough to train a generator in seconds."""
    return make_synthetic_scene(seed=1, rows=40, cols=40, n_bands=16, n_classes=4)


def config_for(model: str, scene, out: Path, **overrides) -> dict:
    settings = {"epoch": 2, "lr": 2e-3, "batch_size": 32, "epoch_samples": 32 * 7, "out": str(out),
                "training_sample": 0.2, "normalization": "minmax", "model_args": {"width": 32},
                "dataset": scene.name, **overrides}
    return resolve_config(get_spec(model), settings)


def class_means(spectra: np.ndarray, labels: np.ndarray, n_classes: int) -> np.ndarray:
    return np.stack([spectra[labels == k].mean(0) for k in range(n_classes)])


# ----- normaliser and spectra file ----------------------------------------------------------------

@pytest.mark.parametrize("method", ["standard", "minmax"])
def test_normaliser_invert_undoes_apply(method, scene):
    train = scene.labels != IGNORE
    normaliser = fit_normaliser(scene.cube, train, method)
    normalised = normaliser.apply(scene.cube)
    np.testing.assert_allclose(normaliser.invert(normalised), scene.cube, rtol=1e-5, atol=1e-6)
    restored = Normaliser.from_state_dict(json.loads(json.dumps(normaliser.state_dict())))
    np.testing.assert_allclose(restored.invert(normalised), scene.cube, rtol=1e-5, atol=1e-6)
    if method == "minmax":  # training pixels land in [0, 1], the generators' range
        assert normalised[train].min() == pytest.approx(0, abs=1e-6)
        assert normalised[train].max() == pytest.approx(1, abs=1e-6)


def labelled_spectra(wavelengths=True) -> LabelledSpectra:
    rng = np.random.default_rng(0)
    return LabelledSpectra(rng.random((10, 5)).astype(np.float32), np.repeat([0, 1], 5), ["water", "trees"],
                           np.linspace(400, 900, 5) if wavelengths else None, "Scene", "cgan",
                           {"lr": 5e-5, "model_args": {"latent_dim": 30}, "path": Path("/x")})


@pytest.mark.parametrize("wavelengths", [True, False])
def test_spectra_file_round_trips(tmp_path, wavelengths):
    data = labelled_spectra(wavelengths)
    path = tmp_path / "s.h5"
    write_spectra_file(path, data)
    back = read_spectra_file(path, n_bands=5, class_names=["water", "trees"])
    np.testing.assert_array_equal(back.spectra, data.spectra)
    np.testing.assert_array_equal(back.labels, data.labels)
    assert back.spectra.dtype == np.float32 and back.labels.dtype == np.int64
    assert back.class_names == data.class_names and (back.scene, back.model) == ("Scene", "cgan")
    assert back.config == {"lr": 5e-5, "model_args": {"latent_dim": 30}, "path": "/x"}
    if wavelengths:
        np.testing.assert_array_equal(back.wavelengths, data.wavelengths)
    else:
        assert back.wavelengths is None
    with h5py.File(path) as handle:
        assert handle.attrs["n_bands"] == 5
    assert [p.name for p in tmp_path.iterdir()] == ["s.h5"]  # no temporary file left


def test_spectra_file_errors_are_one_line(tmp_path):
    path = tmp_path / "s.h5"
    write_spectra_file(path, labelled_spectra())
    (tmp_path / "text.h5").write_text("not hdf5")
    with h5py.File(tmp_path / "empty.h5", "w") as handle:
        handle.create_dataset("labels", data=np.zeros(3, np.int64))
    cases = [(tmp_path / "missing.h5", {}, "does not exist"), (tmp_path / "text.h5", {}, "not an HDF5"),
             (tmp_path / "empty.h5", {}, "lacks spectra"), (path, {"n_bands": 6}, "has 5 bands"),
             (path, {"class_names": ["water", "soil"]}, "not this scene's")]
    for file, kwargs, message in cases:
        with pytest.raises(UserError, match=message) as error:
            read_spectra_file(file, **kwargs)
        assert "\n" not in str(error.value)


def test_spectra_file_refuses_inconsistent_data(tmp_path):
    data = labelled_spectra()
    data.labels = np.repeat([0, 2], 5)
    with pytest.raises(UserError, match="class ids outside"):
        write_spectra_file(tmp_path / "s.h5", data)
    assert not list(tmp_path.iterdir())


# ----- the models and steps -----------------------------------------------------------------------

@pytest.mark.parametrize("name", MODELS)
def test_generators_are_registered_with_a_citation(name):
    spec = get_spec(name)
    assert spec.family == "generator" and name in list_models("generator")
    assert len(spec.citation) > 20 and spec.defaults["supervision"] in ("wgan_gp_ac", "cvae")


@pytest.mark.parametrize("name", MODELS)
def test_sample_and_decode_shapes_range_and_seeding(name):
    model = get_spec(name).factory(12, 3, 0, width=16)
    twin = get_spec(name).factory(12, 3, 0, width=16)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), twin.state_dict().values()))
    labels = torch.tensor([0, 1, 2, 2])
    first = model.sample(labels, torch_generator(3, 1))
    assert first.shape == (4, 12) and float(first.min()) >= 0 and float(first.max()) <= 1
    assert torch.equal(first, model.sample(labels, torch_generator(3, 1)))
    mixed = torch.tensor([[0.5, 0.5, 0.0], [0.0, 0.2, 0.8]])
    assert model.decode(torch.zeros(2, model.latent_dim), mixed).shape == (2, 12)
    walk = latent_walk(model, 0, 2, seed=0, steps=5)
    assert walk.shape == (5, 12)


@pytest.mark.parametrize("options", [{"width": 0}, {"latent_dim": -1}])
@pytest.mark.parametrize("name", MODELS)
def test_bad_options_are_user_errors(name, options):
    with pytest.raises(UserError, match=name):
        get_spec(name).factory(12, 3, 0, **options)


def batch_of(n: int, bands: int, classes: int) -> Batch:
    gen = torch.Generator().manual_seed(0)
    target = torch.arange(n) % classes
    return Batch([torch.rand(n, bands, 1, 1, generator=gen)], target, target, target)


@pytest.mark.parametrize("conditional", [True, False])
def test_gan_step_updates_the_generator_every_fifth_call(conditional):
    model = generators.ConditionalWGAN(12, 3, 0, width=16, conditional_critic=conditional)
    step = get_step("wgan_gp_ac")
    config = {"optimizer": "rmsprop", "lr": 1e-3, "seed": 0}
    optimizers = step.build_optimizers(model, config)
    assert set(optimizers) == {"critic", "classifier", "generator"}
    ctx = StepContext(3, None, config, torch.device("cpu"))
    before = [p.clone() for p in model.generator.parameters()]
    torch.manual_seed(0)
    logs = [step(model, batch_of(9, 12, 3), optimizers, ctx) for _ in range(5)]
    assert all({"loss", "wasserstein", "gradient_penalty", "classifier_loss"} <= set(log) for log in logs)
    assert ["generator_loss" in log for log in logs] == [False] * 4 + [True]
    assert int(model.critic_updates) == 5
    assert all(p.requires_grad for p in model.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.generator.parameters()))


def test_vae_step_logs_the_elbo_terms():
    model = generators.ConditionalVAE(12, 3, 0, width=16)
    step = get_step("cvae")
    config = {"optimizer": "adam", "lr": 1e-3, "seed": 0}
    optimizers = step.build_optimizers(model, config)
    logs = step(model, batch_of(9, 12, 3), optimizers, StepContext(3, None, config, torch.device("cpu")))
    assert logs["loss"] == pytest.approx(logs["reconstruction"] + logs["kl"], rel=1e-5)
    assert logs["kl"] >= 0 and logs["mse"] >= 0


class RecordingMonitor(Monitor):
    """Keeps the spectra events it receives."""

    def __init__(self):
        self.spectra_events = []

    def spectra(self, name, wavelengths, mean, std, class_names):
        self.spectra_events.append((name, wavelengths, mean, std, list(class_names)))


@pytest.mark.parametrize("name", MODELS)
def test_validation_scores_and_monitor_spectra(name):
    from deephyperx.generation import GenerationData, SpectraMaker

    model = get_spec(name).factory(12, 3, 0, width=16)
    step = get_step(get_spec(name).defaults["supervision"])
    rng = np.random.default_rng(0)
    maker = SpectraMaker(rng.random((30, 12)), np.arange(30) % 3, np.zeros(30), np.zeros(30))
    ctx = StepContext(3, None, {"seed": 0, "epoch": 10, "batch_size": 8}, torch.device("cpu"))
    scores = step.validate(model, maker, ctx, 8)
    expected = {"cgan": {"val_classifier_oa", "val_synthetic_oa", "val_wasserstein"},
                "cvae": {"val_loss", "val_reconstruction", "val_kl", "val_mse"}}[name]
    assert set(scores) == expected and all(np.isfinite(v) for v in scores.values())
    assert scores == step.validate(model, maker, ctx, 8)  # fixed noise: the same scores twice
    data = GenerationData(maker, None, 3, class_names=["a", "b", "c"], wavelengths=np.arange(12.0))
    monitor = RecordingMonitor()
    step.epoch_ended(model, 0, data, ctx, monitor)  # epoch 1 of 10: not a showing epoch
    assert monitor.spectra_events == []
    step.epoch_ended(model, 1, data, ctx, monitor)
    names = [event[0] for event in monitor.spectra_events]
    assert names == [f"{name}_real_spectra", f"{name}_synthetic_spectra"]
    for _, wavelengths, mean, std, class_names in monitor.spectra_events:
        assert mean.shape == std.shape == (3, 12) and class_names == ["a", "b", "c"]
        assert wavelengths.shape == (12,)
    np.testing.assert_allclose(monitor.spectra_events[0][2][1], maker.spectra.numpy()[1::3].mean(0), rtol=1e-5)


def test_latent_walk_joins_the_two_most_different_classes():
    spectra = np.array([[1.0, 0.0, 0.0], [0.9, 0.1, 0.0], [0.0, 0.0, 1.0], [0.7, 0.7, 0.0]])
    labels = np.array([0, 1, 3, 4])
    assert walk_classes(spectra, labels, [0, 1, 3, 4]) == (0, 3)
    assert walk_classes(spectra, labels, [4, 1]) == (4, 1)  # in the order asked, the earlier one first
    assert walk_classes(spectra, labels, [1]) is None


# ----- the pipeline: trained generators -----------------------------------------------------------

@pytest.fixture(scope="module", params=MODELS)
def trained(request, scene, tmp_path_factory):
    """A generator trained on the tiny scene and 200 spectra of each class."""
    name = request.param
    out = tmp_path_factory.mktemp(name)
    config = config_for(name, scene, out / "runs", **TRAINED[name])
    summary = generate(scene, config, GenerationRequest(200, out_file=out / "synthetic.h5", report=False))
    return name, config, summary, out


def test_generated_file_has_the_right_shape_classes_and_range(trained, scene):
    name, config, summary, out = trained
    data = read_spectra_file(out / "synthetic.h5", n_bands=scene.n_bands, class_names=scene.class_names)
    assert data.spectra.shape == (800, scene.n_bands) and data.model == name and data.scene == scene.name
    assert np.bincount(data.labels).tolist() == [200] * 4
    np.testing.assert_array_equal(data.wavelengths, scene.wavelengths)
    low, high = float(scene.cube[scene.labels != IGNORE].min()), float(scene.cube.max())
    assert data.spectra.min() >= low - 1e-5 and data.spectra.max() <= high + 1e-5  # original units
    assert data.spectra.std() > 0
    assert data.config["model"] == name and data.config["generation"]["samples_per_class"] == 200
    (trained_with,) = data.config["generation"]["environment"]  # one start, no resume
    assert trained_with["torch_threads"] == torch.get_num_threads() and trained_with["resumed_from_epoch"] is None
    folder = Path(summary["run_folder"])
    assert (folder / "model.pt").is_file() and not folder.with_name(folder.name + ".partial").exists()
    assert json.loads((folder / "generation.json").read_text())["n_spectra"] == 800


def test_generated_class_means_are_nearest_their_own_class(trained, scene):
    _, _, _, out = trained
    data = read_spectra_file(out / "synthetic.h5")
    real, _ = class_spectra(scene)
    synthetic = class_means(data.spectra, data.labels, scene.n_classes)
    distances = ((synthetic[:, None] - real[None]) ** 2).sum(-1)
    assert distances.argmin(1).tolist() == list(range(scene.n_classes))


def test_checkpoint_knows_its_scene_and_the_gan_classifier_learnt(trained, scene):
    name, config, summary, _ = trained
    saved = load_checkpoint(Path(summary["run_folder"]) / "model.pt")
    assert saved["n_bands"] == scene.n_bands and saved["class_names"] == scene.class_names
    assert saved["config"]["model"] == name and saved["epoch"] == config["epoch"]
    last = saved["history"][-1]
    assert {"cgan": "val_classifier_oa", "cvae": "val_loss"}[name] in last
    if name != "cgan":
        return
    model = get_spec(name).factory(scene.n_bands, scene.n_classes, 0, **config["model_args"])
    model.load_state_dict(saved["model_state"])
    normaliser = Normaliser.from_state_dict(saved["normalisers"]["cube"])
    labelled = scene.labels != IGNORE
    spectra = torch.from_numpy(normaliser.apply(scene.cube)[labelled])
    with torch.no_grad():
        accuracy = float((model.classifier(spectra).argmax(1).numpy() == scene.labels[labelled]).mean())
    assert accuracy > 0.7


def test_restored_generator_gives_the_same_spectra_without_training(trained, scene, tmp_path):
    name, config, summary, out = trained
    restore = {**config, "restore": str(Path(summary["run_folder"]) / "model.pt"), "epoch": 0,
               "out": str(tmp_path / "runs")}
    again = generate(scene, restore, GenerationRequest(200, out_file=tmp_path / "again.h5", report=False))
    assert again["epochs"] == 0
    np.testing.assert_array_equal(read_spectra_file(tmp_path / "again.h5").spectra,
                                  read_spectra_file(out / "synthetic.h5").spectra)
    some = generate(scene, restore, GenerationRequest(5, class_names=["class 3", "Class 1"],
                                                      out_file=tmp_path / "some.h5", report=False))
    assert some["classes"] == ["Class 1", "Class 3"]
    assert np.bincount(read_spectra_file(tmp_path / "some.h5").labels).tolist() == [5, 0, 5]


def test_restoring_a_checkpoint_of_another_scene_fails_before_writing(trained, tmp_path):
    name, config, summary, _ = trained
    other = make_synthetic_scene(seed=1, rows=40, cols=40, n_bands=12, n_classes=4)
    restore = {**config, "restore": str(Path(summary["run_folder"]) / "model.pt"), "epoch": 0,
               "out": str(tmp_path / "runs")}
    with pytest.raises(UserError, match="expects 16 bands") as error:
        generate(other, restore, GenerationRequest(5, out_file=tmp_path / "x.h5"))
    assert "\n" not in str(error.value)
    five = make_synthetic_scene(seed=1, rows=40, cols=40, n_bands=16, n_classes=5)
    with pytest.raises(UserError, match="trained on classes"):
        generate(five, restore, GenerationRequest(5, out_file=tmp_path / "x.h5"))
    assert not list(tmp_path.iterdir())


# ----- resume and bad requests --------------------------------------------------------------------

def test_interrupted_run_resumes_to_identical_spectra(scene, tmp_path):
    """7 steps per epoch (not a multiple of the GAN's 5 critic steps): the resumed run must keep the
    rhythm and the random streams of the uninterrupted one (the GAN is the harder case: three
    optimisers, mixup and a step counter)."""
    name = "cgan"
    whole = config_for(name, scene, tmp_path / "a")
    generate(scene, whole, GenerationRequest(20, out_file=tmp_path / "a.h5", report=False))
    cut = config_for(name, scene, tmp_path / "b")
    request = GenerationRequest(20, out_file=tmp_path / "b.h5", report=False)
    assert generate(scene, cut, request, stop_after_epoch=1) is None
    partial = run_folder(cut, scene).with_name(f"seed{cut['seed']}.partial")
    assert (partial / "checkpoint.pt").is_file() and not (tmp_path / "b.h5").exists()
    assert not run_folder(cut, scene).exists()
    summary = generate(scene, cut, request)
    assert summary["epochs"] == 2 and not partial.exists()
    np.testing.assert_array_equal(read_spectra_file(tmp_path / "b.h5").spectra,
                                  read_spectra_file(tmp_path / "a.h5").spectra)
    log = [json.loads(line) for line in (run_folder(cut, scene) / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log if r["kind"] == "epoch"] == [0, 1]
    started, resumed = read_environment(run_folder(cut, scene))  # what the run ran on, start and resume
    assert started["resumed_from_epoch"] is None and resumed["resumed_from_epoch"] in (0, 1)


@pytest.mark.parametrize("request_args, message", [
    ({"samples_per_class": 0}, "samples_per_class"),
    ({"samples_per_class": -3}, "samples_per_class"),
    ({"samples_per_class": 5, "class_names": ["Class 9"]}, "'Class 9' is not a class"),
    ({"samples_per_class": 5, "class_names": []}, "without any class name"),
])
def test_bad_requests_fail_before_writing(request_args, message, scene, tmp_path):
    config = config_for("cvae", scene, tmp_path / "runs")
    with pytest.raises(UserError, match=message):
        generate(scene, config, GenerationRequest(out_file=tmp_path / "x.h5", **request_args))
    assert not list(tmp_path.iterdir())


def test_a_classifier_cannot_generate(scene, tmp_path):
    import models.fully_connected  # noqa: F401  (a neural classifier to refuse)

    name = next(n for n in list_models("neural"))
    config = resolve_config(get_spec(name), {"out": str(tmp_path)})
    with pytest.raises(UserError, match="does not run"):
        generate(scene, config, GenerationRequest(5))
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not HAS_REALISM, reason="deephyperx.realism is not there yet")
def test_realism_report_is_written_with_the_run(scene, tmp_path):
    config = config_for("cvae", scene, tmp_path / "runs", epoch=1)
    summary = generate(scene, config, GenerationRequest(30, report=True))
    folder = Path(summary["run_folder"])
    report = json.loads((folder / "realism" / "realism.json").read_text())
    assert (folder / "realism" / "realism.md").is_file() and (folder / "synthetic.h5").is_file()
    assert summary["realism"]["class_names"] == scene.class_names == report["class_names"]
    assert summary["spectra_file"] == str(folder / "synthetic.h5")
    assert len(summary["interpolation_classes"]) == 2
