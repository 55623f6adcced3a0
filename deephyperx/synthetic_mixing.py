"""Training on real and synthetic spectra: mix generated spectra into a classifier's training set.

``--synthetic FILE.h5`` draws spectra from a file written by ``main.py generate``
(:mod:`deephyperx.spectra_file`); ``--synthetic MODEL.pt`` samples them on the fly from a
generator checkpoint. ``--synthetic_ratio R`` (default 1) asks for R synthetic spectra per real
training pixel, shared between classes in proportion to the real class counts and drawn under
the run seed. The synthetic spectra are normalised (and PCA-projected) like the real pixels,
with statistics fitted on the real training pixels only, and join the training batches alone:
validation and test never see them.

Only models that classify one spectrum at a time (patch size 1, a single cube input, one label
per sample) can take a synthetic spectrum, which has no spatial neighbourhood; scikit-learn
baselines are refused too, since their cross-validation would validate on synthetic spectra.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

import numpy as np
import torch

from deephyperx.errors import UserError
from deephyperx.hashing import file_sha256
from deephyperx.preprocessing import Normaliser, PCAProjection
from deephyperx.sampling import Batch, BatchMaker
from deephyperx.scene import Scene
from deephyperx.seeding import derived_seed, torch_generator

#: Random stream (a key under the run seed) of the synthetic draw.
DRAW_STREAM = 71
#: Spectra sampled per forward pass of a generator.
CHUNK = 4096
#: Suffixes of generator checkpoints; anything else is read as a spectra file.
CHECKPOINT_SUFFIXES = (".pt", ".pth")


# ----- settings ------------------------------------------------------------------------------------

def check_model_takes_spectra(config: dict[str, Any], family: str) -> None:
    """Refuse ``--synthetic`` for a model that does not classify single spectra, with one line."""
    model = config["model"]
    if family != "neural":
        raise UserError(f"--synthetic: model {model} is a {family} model; synthetic spectra train neural "
                        "single-spectrum classifiers only (e.g. --model nn or --model hu)")
    if config["patch_size"] != 1 or list(config.get("inputs", ["cube"])) != ["cube"] or config.get("output") == "dense":
        raise UserError(f"--synthetic: model {model} reads {config['patch_size']}x{config['patch_size']} patches "
                        f"of {', '.join(config.get('inputs', ['cube']))}; synthetic spectra have no neighbourhood, "
                        "so use a single-spectrum model (patch_size 1, e.g. nn or hu)")


def synthetic_path(config: dict[str, Any], seed: Optional[int] = None) -> Optional[str]:
    """The synthetic source of a run. A path holding ``{seed}`` is a per-seed template (each seed's
    classifier takes the spectra of a generator trained on that seed's own training pixels, so no
    test pixel of that seed ever reached the generator); it is None at the experiment level."""
    source = config.get("synthetic")
    if source and "{seed}" in str(source):
        return None if seed is None else str(source).replace("{seed}", str(seed))
    return source


def resolve_synthetic_settings(config: dict[str, Any], family: str, seed: Optional[int] = None) -> dict[str, Any]:
    """Check the synthetic settings of a run config and complete them: the ratio (default 1) and
    the source's checksum (``synthetic_sha256``, so that the experiment's identity changes when
    the file does; for a ``{seed}`` template, each run's checksum is recorded by that run). A
    config without ``synthetic`` is returned unchanged. One-line errors."""
    source, ratio = config.get("synthetic"), config.get("synthetic_ratio")
    if not source:
        if ratio is not None:
            raise UserError(f"--synthetic_ratio {ratio} needs --synthetic FILE.h5 (or a generator's model.pt)")
        return config
    if ratio is None:
        ratio = 1.0
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not np.isfinite(ratio) or ratio <= 0:
        raise UserError(f"--synthetic_ratio {ratio!r} must be a positive number (synthetic spectra per real "
                        "training pixel, e.g. 0.5 or 2)")
    check_model_takes_spectra(config, family)
    resolved = synthetic_path(config, seed)
    if resolved is None:  # a per-seed template: each run checks its own file
        return {**config, "synthetic_ratio": float(ratio)}
    path = Path(resolved)
    if not path.is_file():
        raise UserError(f"--synthetic {resolved}: no such file; give a spectra file written by `main.py generate` "
                        "(synthetic.h5) or a generator checkpoint (model.pt)")
    digest = file_sha256(path)
    saved = config.get("synthetic_sha256")
    if saved and saved != digest:
        raise UserError(f"--synthetic {resolved} has changed since synthetic_sha256 {saved[:12]}... was recorded; "
                        "drop synthetic_sha256 from the config to use the file as it is now")
    return {**config, "synthetic_ratio": float(ratio), "synthetic_sha256": digest}


# ----- how many of each class ----------------------------------------------------------------------

def class_quotas(real_counts: np.ndarray, ratio: float) -> np.ndarray:
    """Synthetic spectra per class: ``round(ratio * real total)`` in all, shared in proportion to
    the real class counts (largest remainders get the leftover units); classes without real
    training pixels get none."""
    real_counts = np.asarray(real_counts, dtype=np.int64)
    total = int(round(ratio * int(real_counts.sum())))
    if total == 0 or real_counts.sum() == 0:
        return np.zeros_like(real_counts)
    exact = total * real_counts / real_counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    leftover = total - int(quotas.sum())
    order = np.lexsort((np.arange(len(exact)), -(exact - quotas)))  # largest remainder first, then class id
    quotas[order[:leftover]] += 1
    return quotas


def draw_indices(labels: np.ndarray, quotas: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Indices into a pool of labelled spectra giving ``quotas[k]`` spectra of each class k: without
    replacement while the pool lasts, then with replacement. Also returns, per class, how many
    were drawn a second time (0 when the pool was large enough)."""
    chosen, reused = [], np.zeros(len(quotas), dtype=np.int64)
    for k, quota in enumerate(quotas):
        members = np.flatnonzero(labels == k)
        if quota == 0 or len(members) == 0:
            continue
        first = rng.permutation(members)[:quota]
        extra = rng.choice(members, size=quota - len(first), replace=True) if quota > len(first) else members[:0]
        reused[k] = len(extra)
        chosen.append(np.concatenate([first, extra]))
    return (np.concatenate(chosen) if chosen else np.zeros(0, dtype=np.int64)), reused


# ----- the synthetic spectra -----------------------------------------------------------------------

@dataclass
class SyntheticDraw:
    """Synthetic spectra in the scene's original units with their class ids, and how they were drawn."""

    spectra: np.ndarray  # (M, B) float32
    labels: np.ndarray  # (M,) int64
    info: dict[str, Any] = field(default_factory=dict)


def _from_file(path: Path, scene: Scene, quotas: np.ndarray, rng: np.random.Generator) -> SyntheticDraw:
    from deephyperx.spectra_file import read_spectra_file

    data = read_spectra_file(path, n_bands=scene.n_bands, class_names=list(scene.class_names))
    index, reused = draw_indices(data.labels, quotas, rng)
    available = np.bincount(data.labels, minlength=scene.n_classes)
    missing = [scene.class_names[k] for k in range(scene.n_classes) if quotas[k] and not available[k]]
    return SyntheticDraw(data.spectra[index], data.labels[index],
                         {"kind": "file", "pool": int(len(data.labels)), "generator": data.model or None,
                          "reused": {scene.class_names[k]: int(r) for k, r in enumerate(reused) if r},
                          "classes_without_spectra": missing})


def load_generator(path: Path, scene: Scene) -> tuple[torch.nn.Module, Normaliser, str]:
    """A generator checkpoint written by ``main.py generate``: the model (weights loaded, eval mode),
    the normalisation that maps its [0, 1] outputs back to the scene's units, and its name."""
    from deephyperx import checkpoint as ckpt
    from deephyperx.registry import create_model, get_spec

    data = ckpt.load_checkpoint(path)
    name = data.get("config", {}).get("model")
    spec = get_spec(name) if isinstance(name, str) else None
    if spec is None or spec.family != "generator":
        raise UserError(f"--synthetic {path} is a checkpoint of model '{name}', not of a spectrum generator; "
                        "give the model.pt of a `main.py generate` run or its synthetic.h5")
    ckpt.check_compatible(data, model=name, n_bands=scene.n_bands, class_names=list(scene.class_names), path=path)
    if "cube" not in data.get("normalisers", {}):
        raise UserError(f"--synthetic {path} holds no normalisation statistics; give a checkpoint written by "
                        "`main.py generate`")
    model = create_model(name, n_bands=scene.n_bands, n_classes=scene.n_classes, seed=0,
                         **data["config"].get("model_args", {}))
    model.load_state_dict(data["model_state"])
    return model.eval(), Normaliser.from_state_dict(data["normalisers"]["cube"]), name


@torch.no_grad()
def _from_checkpoint(path: Path, scene: Scene, quotas: np.ndarray, seed: int) -> SyntheticDraw:
    model, normaliser, name = load_generator(path, scene)
    labels = torch.as_tensor(np.repeat(np.arange(scene.n_classes), quotas))
    generator = torch_generator(seed, DRAW_STREAM)
    parts = [model.sample(labels[i:i + CHUNK], generator).cpu() for i in range(0, len(labels), CHUNK)]
    spectra = torch.cat(parts).numpy() if parts else np.zeros((0, scene.n_bands), np.float32)
    return SyntheticDraw(normaliser.invert(spectra).astype(np.float32), labels.numpy().astype(np.int64),
                         {"kind": "checkpoint", "generator": name, "reused": {}, "classes_without_spectra": []})


def draw_synthetic(config: dict[str, Any], scene: Scene, train: np.ndarray, seed: int) -> SyntheticDraw:
    """The synthetic spectra of one run: ``synthetic_ratio`` x the real training pixels (``train``
    mask), per class in proportion to them, from the file or generator of ``config['synthetic']``."""
    path = Path(synthetic_path(config, seed))
    real_counts = np.bincount(scene.labels[train & (scene.labels >= 0)], minlength=scene.n_classes)
    quotas = class_quotas(real_counts, float(config["synthetic_ratio"]))
    if path.suffix.lower() in CHECKPOINT_SUFFIXES:
        draw = _from_checkpoint(path, scene, quotas, seed)
    else:
        draw = _from_file(path, scene, quotas, np.random.default_rng(derived_seed(seed, DRAW_STREAM)))
    counts = np.bincount(draw.labels, minlength=scene.n_classes)
    draw.info.update({"source": str(path), "sha256": config.get("synthetic_sha256"),
                      "ratio": float(config["synthetic_ratio"]), "n_real_train": int(real_counts.sum()),
                      "n_synthetic": int(len(draw.labels)),
                      "per_class": {name: int(counts[k]) for k, name in enumerate(scene.class_names)}})
    return draw


def to_model_space(spectra: np.ndarray, normaliser: Normaliser, projection: Optional[PCAProjection]) -> np.ndarray:
    """Spectra (M, B) in original units -> (M, C) as the model sees the real pixels: the run's
    normalisation, then its PCA projection if any."""
    values = normaliser.apply(spectra[:, None, :])
    if projection is not None:
        values = projection.apply(values)
    return values[:, 0, :]


# ----- batches -------------------------------------------------------------------------------------

class SyntheticMixing:
    """A training batch maker over the real pixels of ``real`` followed by synthetic spectra.

    Positions ``0 .. len(real)-1`` are real pixels (made by ``real``, with its augmentation);
    the next ``len(labels)`` positions are synthetic spectra (already normalised; not augmented),
    given as (N, C, 1, 1) like real single-pixel patches, with row and column -1.
    """

    def __init__(self, real: BatchMaker, spectra: np.ndarray, labels: np.ndarray):
        if real.dense or real.sampler.patch_size != 1 or len(real.sampler.padded) != 1:
            raise UserError("synthetic spectra join only single-spectrum training (patch_size 1, one cube input)")
        channels = int(real.sampler.padded[0].shape[-1])
        if spectra.ndim != 2 or spectra.shape[1] != channels or len(labels) != len(spectra):
            raise UserError(f"synthetic spectra of shape {spectra.shape} with {len(labels)} labels do not match "
                            f"the {channels} values of a real pixel")
        self.real = real
        self.spectra = torch.from_numpy(np.ascontiguousarray(spectra, dtype=np.float32)).view(-1, channels, 1, 1)
        self.labels = torch.as_tensor(np.asarray(labels), dtype=torch.long)

    @property
    def n_real(self) -> int:
        return len(self.real)

    @property
    def n_synthetic(self) -> int:
        return len(self.labels)

    def __len__(self) -> int:
        return self.n_real + self.n_synthetic

    def make(self, index: torch.Tensor, generator: Optional[torch.Generator] = None, augment: bool = False) -> Batch:
        """The batch of the samples at ``index``, in that order (real and synthetic interleaved)."""
        index = torch.as_tensor(index, dtype=torch.long)
        is_real = index < self.n_real
        real_at, synthetic_at = torch.nonzero(is_real).flatten(), torch.nonzero(~is_real).flatten()
        inputs = torch.empty((len(index), *self.spectra.shape[1:]), dtype=torch.float32)
        target = torch.empty(len(index), dtype=torch.long)
        rows = torch.full((len(index),), -1, dtype=torch.long)
        cols = torch.full((len(index),), -1, dtype=torch.long)
        if len(real_at):
            real = self.real.make(index[real_at], generator=generator, augment=augment)
            inputs[real_at], target[real_at] = real.inputs[0], real.target
            rows[real_at], cols[real_at] = real.rows, real.cols
        if len(synthetic_at):
            chosen = index[synthetic_at] - self.n_real
            inputs[synthetic_at], target[synthetic_at] = self.spectra[chosen], self.labels[chosen]
        return Batch([inputs], target, rows, cols)


def mixing_maker(real: BatchMaker, draw: SyntheticDraw, normaliser_state: dict[str, Any],
                 projection_state: Optional[dict[str, Any]]) -> SyntheticMixing:
    """The training maker of an augmented run: ``draw`` brought to model space with the run's
    normalisation (and projection) state, after the real pixels of ``real``."""
    normaliser = Normaliser.from_state_dict(normaliser_state)
    projection = PCAProjection.from_state_dict(projection_state) if projection_state is not None else None
    return SyntheticMixing(real, to_model_space(draw.spectra, normaliser, projection), draw.labels)


def summary_lines(info: dict[str, Any]) -> dict[str, Any]:
    """What a run's summary says about its synthetic spectra (flat, for the report's table)."""
    lines = {"synthetic source": f"{info['source']} ({info['kind']})", "synthetic ratio": info["ratio"],
             "synthetic spectra": f"{info['n_synthetic']} for {info['n_real_train']} real training pixels",
             "synthetic per class": ", ".join(f"{k}: {v}" for k, v in info["per_class"].items())}
    if info.get("reused"):
        lines["synthetic drawn twice"] = ", ".join(f"{k}: {v}" for k, v in info["reused"].items())
    if info.get("classes_without_spectra"):
        lines["classes absent from the file"] = ", ".join(info["classes_without_spectra"])
    return lines
