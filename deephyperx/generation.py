"""Synthetic spectra from a conditional generator: train it on a scene's training pixels, draw
spectra of each class, bring them back to the scene's units, write them and a realism report.

:class:`GenerateTask` is the generation part of the experiment skeleton (:mod:`deephyperx.experiment`):
the same split as a classification run (:mod:`deephyperx.runner`), a min-max normalisation to [0, 1]
fitted on training pixels only (the generators end in a sigmoid), the engine's
:class:`~deephyperx.training.Trainer` with a checkpoint after every epoch; the skeleton writes the
folder as ``<name>.partial``, renames it when complete and resumes it when the same command is given
again. ``restore`` starts from a generator checkpoint (by default without training more).
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np
import torch

from deephyperx import checkpoint as ckpt
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment, SeedRun, Task
from deephyperx.file_monitor import FileMonitor
from deephyperx.monitor import Monitor
from deephyperx.preprocessing import Normaliser, fit_normaliser
from deephyperx.registry import ModelSpec, create_model, get_spec, list_models, require_family
from deephyperx.reports import save_json
from deephyperx.run_environment import read_environment
from deephyperx.runner import Split, make_split, resolve_device, run_folder_names, with_input_checksums
from deephyperx.sampling import Batch
from deephyperx.scene import Scene
from deephyperx.seeding import torch_generator
from deephyperx.spectra_file import LabelledSpectra, write_spectra_file
from deephyperx.steps import get_step
from deephyperx.training import Trainer, TrainingData

#: Random streams (keys under the run seed) of the generated spectra and of the latent walk.
SAMPLES_STREAM, WALK_STREAM = 11, 12
#: Spectra along the latent walk between two classes.
WALK_STEPS = 11
#: Spectra generated per forward pass.
CHUNK = 4096


# ----- data --------------------------------------------------------------------------------------

@dataclass
class GenerationData(TrainingData):
    """Training data that also knows the class names and wavelengths (for the monitor's spectra)."""

    class_names: list[str] = field(default_factory=list)
    wavelengths: Optional[np.ndarray] = None


class SpectraMaker:
    """Batches of single spectra held in memory: ``inputs[0]`` is (N, B), ``target`` the class ids.
    Only the pixels of one split are kept, not the whole cube."""

    def __init__(self, spectra: np.ndarray, labels: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        self.spectra = torch.from_numpy(np.ascontiguousarray(spectra, dtype=np.float32))
        self.labels = torch.as_tensor(labels, dtype=torch.long)
        self.rows = torch.as_tensor(rows, dtype=torch.long)
        self.cols = torch.as_tensor(cols, dtype=torch.long)

    def __len__(self) -> int:
        return len(self.labels)

    def make(self, index: torch.Tensor, generator: Optional[torch.Generator] = None, augment: bool = False) -> Batch:
        return Batch([self.spectra[index]], self.labels[index], self.rows[index], self.cols[index])


def pixels(scene: Scene, mask: np.ndarray, classes: Optional[Sequence[int]] = None) -> tuple[np.ndarray, ...]:
    """Spectra (N, B) float32 in the scene's units, class ids, rows and columns of the pixels of
    ``mask`` (of ``classes`` only, when given)."""
    if classes is not None:
        mask = mask & np.isin(scene.labels, list(classes))
    rows, cols = np.nonzero(mask)
    spectra = np.asarray(scene.cube[rows, cols], dtype=np.float32) if len(rows) else \
        np.zeros((0, scene.n_bands), np.float32)
    return spectra, scene.labels[rows, cols].astype(np.int64), rows, cols


def maker_of(scene: Scene, mask: np.ndarray, normaliser: Normaliser) -> SpectraMaker:
    spectra, labels, rows, cols = pixels(scene, mask)
    return SpectraMaker((spectra - normaliser.shift) * normaliser.scale, labels, rows, cols)


# ----- what to generate ---------------------------------------------------------------------------

@dataclass
class GenerationRequest:
    """How many spectra of which classes, where to write them, and whether to report on them."""

    samples_per_class: int
    class_names: Optional[list[str]] = None  # None: every class with training pixels
    out_file: Optional[Path] = None  # None: synthetic.h5 in the run folder
    report: bool = True


def class_ids(scene: Scene, names: Optional[Sequence[str]]) -> Optional[list[int]]:
    """Class ids of ``names`` (exact, else case-insensitive match); one-line error for an unknown name."""
    if names is None:
        return None
    lowered = {n.lower(): i for i, n in enumerate(scene.class_names)}
    ids = []
    for name in names:
        if name in scene.class_names:
            ids.append(scene.class_names.index(name))
        elif name.lower() in lowered:
            ids.append(lowered[name.lower()])
        else:
            raise UserError(f"--classes: '{name}' is not a class of {scene.name}; "
                            f"its classes: {', '.join(scene.class_names)}")
    if not ids:
        raise UserError("--classes was given without any class name; name at least one class or drop the flag")
    return sorted(set(ids))


def check_samples(samples_per_class: Any) -> int:
    if isinstance(samples_per_class, bool) or not isinstance(samples_per_class, int) or samples_per_class < 1:
        raise UserError(f"--samples_per_class {samples_per_class!r} must be a whole number of at least 1")
    return samples_per_class


def chosen_classes(scene: Scene, train: np.ndarray, wanted: Optional[list[int]]) -> list[int]:
    """The classes to generate: those asked for (each must have training pixels), or every class
    that has some."""
    counts = np.bincount(scene.labels[train & (scene.labels >= 0)], minlength=scene.n_classes)
    if wanted is None:
        present = [k for k in range(scene.n_classes) if counts[k]]
        if not present:
            raise UserError(f"the split of {scene.name} has no training pixels; raise --training_sample")
        return present
    empty = [scene.class_names[k] for k in wanted if not counts[k]]
    if empty:
        raise UserError(f"classes {empty} have no training pixels in this split, so no generator can learn them; "
                        "raise --training_sample or drop them from --classes")
    return list(wanted)


# ----- drawing spectra ----------------------------------------------------------------------------

@torch.no_grad()
def synthesise(model: torch.nn.Module, classes: Sequence[int], per_class: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``per_class`` spectra of each class in model units, (N, B), with their class ids; the same
    seed gives the same spectra."""
    model.eval()
    labels = torch.as_tensor(np.repeat(np.asarray(classes, dtype=np.int64), per_class))
    generator = torch_generator(seed, SAMPLES_STREAM)
    parts = [model.sample(labels[i:i + CHUNK], generator).cpu() for i in range(0, len(labels), CHUNK)]
    return torch.cat(parts).numpy().astype(np.float32), labels.numpy()


@torch.no_grad()
def latent_walk(model: torch.nn.Module, first: int, second: int, seed: int, steps: int = WALK_STEPS) -> np.ndarray:
    """Spectra (steps, B) in model units decoded from one fixed latent code while the class weights
    move linearly from class ``first`` to class ``second``."""
    model.eval()
    device = next(model.parameters()).device
    z = torch.randn(1, model.latent_dim, generator=torch_generator(seed, WALK_STREAM)).to(device)
    t = torch.linspace(0, 1, steps, device=device).unsqueeze(1)
    start = torch.zeros(1, model.n_classes, device=device)
    end = torch.zeros(1, model.n_classes, device=device)
    start[0, first], end[0, second] = 1.0, 1.0
    return model.decode(z.expand(steps, -1), (1 - t) * start + t * end).cpu().numpy()


def walk_classes(spectra: np.ndarray, labels: np.ndarray, classes: Sequence[int]) -> Optional[tuple[int, int]]:
    """The two chosen classes whose mean real spectra are furthest apart in angle (the most telling
    walk); None with fewer than two classes."""
    if len(classes) < 2:
        return None
    means = np.stack([spectra[labels == k].mean(0) for k in classes]).astype(np.float64)
    units = means / np.maximum(np.linalg.norm(means, axis=1, keepdims=True), 1e-12)
    angles = np.arccos(np.clip(units @ units.T, -1.0, 1.0))
    first, second = np.unravel_index(int(np.argmax(angles)), angles.shape)
    return int(classes[min(first, second)]), int(classes[max(first, second)])


# ----- a run --------------------------------------------------------------------------------------

class CurvesMonitor(FileMonitor):
    """The file monitor of a generator run: curves and spectra figures, and no classification
    report page (the realism report stands for it)."""

    def run_ended(self, summary: dict[str, Any]) -> None:
        if self.epochs:
            self._draw_curves()


def run_folder(config: dict[str, Any], scene: Scene) -> Path:
    """``<runs_dir>/<scene>_<model>_<mode><sample>_<hash>/seed<seed>``."""
    return run_folder_names(config, scene) / f"seed{config['seed']}"


@dataclass
class GenerationParts:
    """What a generator run builds before any folder exists."""

    split: Split
    classes: list[int]
    restored: Optional[dict]
    model: torch.nn.Module


class GenerateTask(Task):
    """Train (or restore) one generator on ``scene`` under ``config`` and generate what ``request``
    asks for: spectra of the chosen classes and their realism report."""

    def __init__(self, scene: Scene, config: dict[str, Any], request: GenerationRequest):
        self.scene, self.config, self.request = scene, config, request
        self.spec: ModelSpec = get_spec(config["model"])
        require_family(self.spec, ("generator",), "main.py generate")
        self.name, self.model, self.class_names = scene.name, self.spec.name, scene.class_names

    def experiment_folder(self) -> Path:
        return run_folder_names(self.config, self.scene)

    def prepare(self, run: SeedRun) -> GenerationParts:
        check_samples(self.request.samples_per_class)
        wanted = class_ids(self.scene, self.request.class_names)
        split = make_split(self.scene, run.config, run.seed)  # bad input fails before any folder exists
        classes = chosen_classes(self.scene, split.train, wanted)
        restored = self._restored_checkpoint(run.config)
        model = self._build_model(run, restored)
        out = self.request.out_file
        if out is not None and Path(out).is_dir():
            raise UserError(f"--out {out} is a folder; give a file name such as {Path(out) / 'synthetic.h5'}")
        return GenerationParts(split, classes, restored, model)

    def monitors(self, run: SeedRun) -> list[Monitor]:
        return [CurvesMonitor(run.partial)]

    # --- before any folder ---------------------------------------------------------------------
    def _restored_checkpoint(self, config: dict[str, Any]) -> Optional[dict]:
        path = config.get("restore")
        if not path:
            return None
        data = ckpt.load_checkpoint(path)
        saved = data.get("config", {}).get("model")
        if saved in list_models() and get_spec(saved).family != "generator":
            raise UserError(f"checkpoint {path} is of the {get_spec(saved).family} model '{saved}'; give a "
                            "checkpoint written by `main.py generate`")
        ckpt.check_compatible(data, model=self.spec.name, n_bands=self.scene.n_bands,
                              class_names=self.scene.class_names, path=path)
        if "cube" not in data.get("normalisers", {}):
            raise UserError(f"checkpoint {path} holds no normalisation statistics; give one written by `main.py generate`")
        return data

    def _build_model(self, run: SeedRun, restored: Optional[dict]) -> torch.nn.Module:
        if restored is not None:  # the weights decide the architecture
            run.config["model_args"] = dict(restored["config"].get("model_args", {}))
        model = create_model(self.spec.name, n_bands=self.scene.n_bands, n_classes=self.scene.n_classes,
                             seed=run.seed, **run.config["model_args"])
        if restored is not None:
            try:
                model.load_state_dict(restored["model_state"])
            except (RuntimeError, KeyError, TypeError) as error:
                first = (str(error).strip().splitlines() or [type(error).__name__])[0]
                raise UserError(f"checkpoint {run.config['restore']} does not hold {self.spec.name} weights for "
                                f"this scene ({first[:120]}); give a model.pt written by `main.py generate`") from None
        return model

    # --- the run ---------------------------------------------------------------------------------
    def fit_and_report(self, run: SeedRun) -> Optional[dict[str, Any]]:
        parts, scene = run.parts, self.scene
        normaliser = Normaliser.from_state_dict(parts.restored["normalisers"]["cube"]) if parts.restored is not None \
            else fit_normaliser(scene.cube, parts.split.train, "minmax")
        trainer = self._trainer(run, normaliser)
        state = run.train(trainer)
        if state is None:
            return None
        run.keep_model(trainer)
        summary = self._generate(run, normaliser, trainer.model)
        summary.update({"train_seconds": state.train_seconds, "epochs": state.epoch,
                        "parameters": sum(p.numel() for p in parts.model.parameters())})
        save_json(run.partial / "generation.json", summary)
        return summary

    def _trainer(self, run: SeedRun, normaliser: Normaliser) -> Trainer:
        scene, cfg, split = self.scene, run.config, run.parts.split
        validation = maker_of(scene, split.validation, normaliser) if split.validation.any() else None
        data = GenerationData(maker_of(scene, split.train, normaliser), validation, scene.n_classes,
                              class_names=list(scene.class_names), wavelengths=scene.wavelengths)
        describe = {"n_bands": scene.n_bands, "class_names": list(scene.class_names), "scene": scene.name,
                    "normalisers": {"cube": normaliser.state_dict()}, "projection": None}
        return Trainer(run.parts.model, get_step(cfg["supervision"]), data, cfg, run.monitor,
                       resolve_device(cfg["cuda"]), checkpoint_path=run.checkpoint, checkpoint_extra=lambda: describe)

    def _generate(self, run: SeedRun, normaliser: Normaliser, model: torch.nn.Module) -> dict[str, Any]:
        """Draw the spectra, report on their realism, then write them (original units); the summary.
        The spectra file comes last, so that a run that fails leaves none."""
        scene, request, classes = self.scene, self.request, run.parts.classes
        started = time.perf_counter()
        spectra, labels = synthesise(model, classes, request.samples_per_class, run.seed)
        spectra = normaliser.invert(spectra).astype(np.float32)
        generate_seconds = time.perf_counter() - started
        out_file = Path(request.out_file) if request.out_file is not None else run.partial / "synthetic.h5"
        shown_out = out_file if request.out_file is not None else run.final / "synthetic.h5"
        generation = {"samples_per_class": request.samples_per_class,
                      "classes": [scene.class_names[k] for k in classes], "run_folder": str(run.final)}
        summary = {"scene": scene.name, "model": self.spec.name, "seed": run.seed, "spectra_file": str(shown_out),
                   "n_spectra": int(len(labels)), "generate_seconds": generate_seconds, **generation}
        if request.report:
            summary["realism"], summary["interpolation_classes"] = self._report(run, normaliser, model,
                                                                                (spectra, labels))
        # the file's provenance: the configuration, the request and what the generator trained on (threads)
        provenance = {**run.config, "generation": {**generation, "environment": read_environment(run.partial)}}
        write_spectra_file(out_file, LabelledSpectra(spectra, labels, list(scene.class_names), scene.wavelengths,
                                                     scene.name, self.spec.name, provenance))
        return summary

    def _report(self, run: SeedRun, normaliser: Normaliser, model: torch.nn.Module,
                synthetic: tuple[np.ndarray, np.ndarray]) -> tuple[dict[str, Any], Optional[list[str]]]:
        """Compare the synthetic spectra with the real ones of the same classes (realism report, with a
        latent walk between the two most different classes); the report and the walk's two classes."""
        from deephyperx.realism import write_realism_report

        split, classes = run.parts.split, run.parts.classes
        real_train = pixels(self.scene, split.train, classes)[:2]
        real_test = pixels(self.scene, split.test, classes)[:2]
        pair = walk_classes(*real_train, classes)
        walk = normaliser.invert(latent_walk(model, *pair, run.seed)).astype(np.float32) if pair else None
        report = write_realism_report(run.partial / "realism", real_train, real_test, synthetic,
                                      list(self.scene.class_names), self.scene.wavelengths, walk, run.seed,
                                      lambda done, total, step: run.monitor.progress("realism report", done, total,
                                                                                     f"{step} done", "steps"))
        return report, [self.scene.class_names[k] for k in pair] if pair else None


def generate(scene: Scene, config: dict[str, Any], request: GenerationRequest,
             extra_monitors: Optional[list[Monitor]] = None, stop_after_epoch: Optional[int] = None
             ) -> Optional[dict[str, Any]]:
    """Train (or restore) ``config['model']`` on ``scene`` and generate per ``request``; the run
    folder is :func:`run_folder`, its seed claimed for the time of the run (another process running it
    stops this one with one line naming it). Returns the run's summary (None when stopped early)."""
    config = with_input_checksums(config, scene)  # a custom scene's content joins the identity
    experiment = Experiment(GenerateTask(scene, config, request))
    summary = experiment.run_claimed(int(config["seed"]), flags="--seed or --runs_dir", extra_monitors=extra_monitors,
                                     stop_after_epoch=stop_after_epoch)
    if summary is not None:
        print(f"{summary['n_spectra']} spectra of {len(summary['classes'])} classes written to "
              f"{summary['spectra_file']}; run folder {summary['run_folder']}", file=sys.stderr)
    return summary
