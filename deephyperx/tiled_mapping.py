"""Mapping a scene larger than memory, tile by tile, from a trained checkpoint.

The scene is cut into tiles (:class:`TilePlan`); each tile is read from the lazily opened cube with
a halo of the model's patch extent on every side, normalised (and projected) as in training, and
classified; only its inner pixels are kept. At the scene's borders the halo is the reflection
:class:`~deephyperx.sampling.PatchSampler` pads a whole scene with, so the tiled map equals the
in-memory one. Dense-output models (``lee``) average their softmax over the same sliding windows as
:func:`~deephyperx.inference.predict_dense`, whose centres are fixed on the scene's grid.

The tile side comes from a memory budget (:func:`plan_mapping`), which counts the raw tile and
its normalised/projected/padded copies, the patch batches or dense passes, the logits,
probabilities and classes, and the model's parameters (not the Python interpreter and libraries,
which every process has). :class:`MapWriter` writes each finished tile into ``<out>.partial``
files and records it in a manifest; a rerun of the same job resumes from it, and only a complete
map is renamed to its final path.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence, Union

import numpy as np
import torch
from torch import nn

from deephyperx import checkpoint as ckpt
from deephyperx.atomic import atomic_write_text
from deephyperx.config import model_band_count
from deephyperx.allocator import return_freed_memory
from deephyperx.errors import UserError
from deephyperx.hashing import file_sha256
from deephyperx.inference import centre_logits, window_centres
from deephyperx.lazy_cube import Georeference, LazyCube, open_lazy_cube
from deephyperx.preprocessing import Normaliser, PCAProjection
from deephyperx.registry import ModelSpec, create_model, get_spec
from deephyperx.sampling import PatchSampler, patch_extent
from deephyperx.scene import IGNORE
from deephyperx.sizes import format_size, parse_size, rounded_up
from deephyperx.steps import logits_of
from deephyperx.tiles import Window

PathLike = Union[str, Path]

#: Smallest tile side the budget must hold (a smaller one would spend most of its reads on the halo).
MIN_TILE_SIDE = 16
#: Batch of patches when neither --batch_size nor the checkpoint gives a larger one (as the runner).
MIN_BATCH = 256
#: Chunks of rows a window is normalised (and projected) in, bounding the temporaries.
FEATURE_CHUNKS = 16
#: Peak bytes of a dense pass per byte of its largest operation (inputs and output of one layer).
DENSE_PASS_FACTOR = 1.6
#: Margin on the largest phase of a tile for the memory allocator (freed blocks it keeps, fragments).
ALLOCATOR_MARGIN = 1.25
#: Output formats by suffix.
FORMATS = {".npy": "npy", ".tif": "tiff", ".tiff": "tiff", ".h5": "hdf5", ".hdf5": "hdf5"}
#: Marker of a mapping job's manifest.
MANIFEST_FORMAT = "deephyperx-map-job"

# ----- the model --------------------------------------------------------------------------------

@dataclass
class MappingModel:
    """A trained network with the preprocessing of its training: what a tile needs to be classified."""

    name: str
    checkpoint: Path
    network: nn.Module
    config: dict[str, Any]
    normaliser: Normaliser
    projection: Optional[PCAProjection]
    n_bands: int
    class_names: list[str]

    @property
    def patch_size(self) -> int:
        return int(self.config["patch_size"])

    @property
    def dense(self) -> bool:
        """True for dense-output models (a label per patch pixel)."""
        return self.config.get("output") == "dense"

    @property
    def stride(self) -> int:
        """Stride of the sliding windows of a dense-output model (the run's ``test_stride``)."""
        return int(self.config.get("test_stride") or 1)

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @property
    def channels(self) -> int:
        """Channels the network reads (PCA components, or the bands)."""
        return model_band_count(self.config, self.n_bands)

    @property
    def parameter_bytes(self) -> int:
        """Bytes of the network's parameters and buffers."""
        tensors = [*self.network.parameters(), *self.network.buffers()]
        return sum(t.numel() * t.element_size() for t in tensors)

    def features(self, raw: np.ndarray) -> np.ndarray:
        """A raw (h, w, B) window normalised (and projected) as the model's training pixels were."""
        rows = max(1, raw.shape[0] // FEATURE_CHUNKS)  # small chunks: small temporaries
        features = self.normaliser.apply(raw, rows_per_chunk=rows)
        if self.projection is not None:
            features = self.projection.apply(features, rows_per_chunk=rows)
        return features


def unmappable_reason(spec: ModelSpec, inputs: Sequence[str]) -> Optional[str]:
    """Why `main.py map` cannot map model ``spec`` fed ``inputs`` (None when it can): it maps
    neural pixel classifiers that read the cube alone."""
    if spec.family != "neural":
        return (f"model {spec.name} is a {spec.family} model; `main.py map` maps pixel classifiers trained by "
                "`main.py --model ...`")
    if list(inputs) != ["cube"]:
        return f"model {spec.name} reads {list(inputs)}; `main.py map` maps models that read the cube alone"
    return None


def load_mapping_model(path: PathLike, device: Union[str, torch.device] = "cpu") -> MappingModel:
    """The network and preprocessing of a neural checkpoint (``model.pt``) written by ``main.py``.
    The model zoo must be imported (registered) by the caller."""
    path = Path(path)
    if path.suffix.lower() == ".skops":
        raise UserError(f"{path}: mapping runs neural checkpoints (model.pt); scikit-learn models (.skops) "
                        "are not supported by `main.py map`")
    data = ckpt.load_checkpoint(path)
    missing = [k for k in ("config", "model_state", "normalisers", "n_bands", "class_names") if k not in data]
    if missing:
        raise UserError(f"{path}: the checkpoint lacks {', '.join(missing)}; give the model.pt of a finished run")
    config = data["config"]
    spec = get_spec(config["model"])
    reason = unmappable_reason(spec, config.get("inputs", ["cube"]))
    if reason:
        raise UserError(f"{path}: {reason}")
    network = create_model(spec.name, n_bands=model_band_count(config, int(data["n_bands"])),
                           n_classes=len(data["class_names"]), patch_size=config["patch_size"],
                           seed=config.get("seed"), **config.get("model_args", {}))
    network.load_state_dict(data["model_state"])
    network.to(device).eval()
    projection = data.get("projection")
    return MappingModel(spec.name, path, network, config, Normaliser.from_state_dict(data["normalisers"]["cube"]),
                        PCAProjection.from_state_dict(projection) if projection else None,
                        int(data["n_bands"]), list(data["class_names"]))


def check_cube(model: MappingModel, cube: LazyCube) -> None:
    """Refuse a cube of another band count than the model's, or smaller than one patch."""
    height, width, bands = cube.shape
    if bands != model.n_bands:
        raise UserError(f"cube {cube.path} has {bands} bands but checkpoint {model.checkpoint} expects "
                        f"{model.n_bands}; map a cube of the sensor the model was trained on")
    if model.patch_size > min(height, width):
        raise UserError(f"cube {cube.path} is {height}x{width}, smaller than one {model.patch_size}x"
                        f"{model.patch_size} patch of model {model.name}; map a larger scene")


# ----- tiles ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class TilePlan:
    """Square tiles of side ``side`` over an ``height`` x ``width`` scene, in raster order, each read
    with ``before`` / ``after`` pixels of halo. ``mode`` is the reflection that pads the scene
    (``"reflect"`` or ``"symmetric"``, as PatchSampler picks it) for centre-pixel models, None for
    dense-output models, whose windows never leave the scene."""

    height: int
    width: int
    side: int
    before: int
    after: int
    mode: Optional[str]

    @property
    def windows(self) -> list[Window]:
        """Inner windows (row0, row1, col0, col1) of the tiles, in raster order."""
        return [(r, min(r + self.side, self.height), c, min(c + self.side, self.width))
                for r in range(0, self.height, self.side) for c in range(0, self.width, self.side)]

    def __len__(self) -> int:
        return math.ceil(self.height / self.side) * math.ceil(self.width / self.side)

    def source(self, index: int) -> tuple[Window, np.ndarray, np.ndarray]:
        """The window of the cube tile ``index`` reads, and the rows and columns of that window which
        make its halo-extended block (reflected at the scene's borders for centre-pixel models)."""
        r0, r1, c0, c1 = self.windows[index]
        rows = self._axis(self.height, r0, r1)
        cols = self._axis(self.width, c0, c1)
        read = (int(rows.min()), int(rows.max()) + 1, int(cols.min()), int(cols.max()) + 1)
        return read, rows - read[0], cols - read[2]

    def _axis(self, length: int, start: int, stop: int) -> np.ndarray:
        if self.mode is None:
            return np.arange(max(start - self.before, 0), min(stop + self.after, length))
        padded = np.pad(np.arange(length), (self.before, self.after), mode=self.mode)
        return padded[start:stop + self.before + self.after]

    def as_dict(self) -> dict[str, Any]:
        return {"height": self.height, "width": self.width, "side": self.side, "before": self.before,
                "after": self.after, "mode": self.mode}


def make_plan(model: MappingModel, shape: tuple[int, ...], side: int) -> TilePlan:
    """Tiles of ``side`` over a scene of ``shape`` with the halo ``model`` needs."""
    height, width = int(shape[0]), int(shape[1])
    p = model.patch_size
    if model.dense:  # every window meeting the tile lies within patch - 1 pixels of it
        return TilePlan(height, width, side, p - 1, p - 1, None)
    before, after = patch_extent(p)
    mode = "reflect" if min(height, width) > p else "symmetric"  # PatchSampler's choice for the whole scene
    return TilePlan(height, width, side, before, after, mode)


# ----- memory -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class MemoryEstimate:
    """Peak bytes of mapping one tile: the bytes alive in each phase of a tile (the largest phase,
    with a margin for the allocator's fragmentation) plus what stays for the whole job."""

    phases: dict[str, int]
    fixed: dict[str, int]

    @property
    def total(self) -> int:
        return math.ceil(max(self.phases.values()) * ALLOCATOR_MARGIN) + sum(self.fixed.values())

    def as_dict(self) -> dict[str, Any]:
        return {"phases": dict(self.phases), "fixed": dict(self.fixed), "margin": ALLOCATOR_MARGIN,
                "total": self.total}


def activation_bytes(network: nn.Module, channels: int, patch_size: int) -> int:
    """Bytes per patch of every leaf module's output in a forward pass (an upper bound of what one
    patch keeps alive at once), measured on a pass over two blank patches."""
    total = 0

    def record(_module: nn.Module, _inputs: Any, output: Any) -> None:
        nonlocal total
        outputs = output if isinstance(output, (tuple, list)) else [output]
        total += sum(t.numel() * t.element_size() for t in outputs if isinstance(t, torch.Tensor))

    leaves = [m for m in network.modules() if not list(m.children())]
    hooks = [m.register_forward_hook(record) for m in leaves]
    device = next(network.parameters()).device
    try:
        with torch.no_grad():
            network.eval()(torch.zeros(2, channels, patch_size, patch_size, device=device))
    finally:
        for hook in hooks:
            hook.remove()
    return total // 2


@dataclass(frozen=True)
class InferenceCost:
    """How a tile's pixels go through the network: a dense pass bounded by ``tile_bytes`` (centre
    models with an exact fully convolutional form), or batches of ``batch_size`` patches."""

    dense_pass: bool
    batch_size: int
    tile_bytes: int
    patch_bytes: int  # working bytes per patch of the batched path

    def working_bytes(self, pixels: int) -> int:
        if self.dense_pass:
            return int(self.tile_bytes * DENSE_PASS_FACTOR)  # largest operation, and the tensors around it
        return min(self.batch_size, pixels) * self.patch_bytes


def inference_cost(model: MappingModel, batch_size: int, tile_bytes: int) -> InferenceCost:
    """The inference path of ``model`` and its working memory per patch."""
    from deephyperx.dense_eval import supports_dense

    p, channels = model.patch_size, model.channels
    patch_input = channels * p * p * 4 * 2  # gathered patches and their contiguous copy
    per_patch = patch_input + 2 * activation_bytes(model.network, channels, p)
    dense_pass = not model.dense and supports_dense(model.network)
    return InferenceCost(dense_pass, batch_size, tile_bytes, per_patch)


def tile_memory(model: MappingModel, cube: LazyCube, plan: TilePlan, cost: InferenceCost,
                probabilities: bool) -> MemoryEstimate:
    """Peak bytes of the largest tile of ``plan``, phase by phase as :func:`predict_tile` goes:
    reading the window, normalising (and projecting) it, reflecting the halo, padding the sampler,
    the network's pass, then logits, probabilities and classes; plus the model's parameters and the
    cube if it lives in memory."""
    height, width = min(plan.side, plan.height), min(plan.side, plan.width)
    ext_h, ext_w = height + plan.before + plan.after, width + plan.before + plan.after
    p, bands, channels, k = model.patch_size, cube.shape[2], model.channels, model.n_classes
    area, n, padded = ext_h * ext_w, height * width, (ext_h + p - 1) * (ext_w + p - 1)
    values, features = area * bands, area * channels
    sampler = padded * channels * 4 + padded * 8  # padded raster and padded (int64) labels
    outputs = n * k * 6 if probabilities else 0  # softmax, then float16
    phases = {"read": values * cube.read_bytes_per_value,
              "normalise": values * 8 + 2 * values * 4 // FEATURE_CHUNKS}
    if model.projection is not None:
        phases["project"] = (values + features) * 4 + (values + features) * 4 // FEATURE_CHUNKS
    phases["sampler"] = features * 4 + sampler + area * 9
    if model.dense:
        scores = padded * (k + 1) * 4
        phases["inference"] = sampler + scores + cost.working_bytes(area)
        phases["results"] = scores + n * k * 8 + n * 10 + outputs
    else:
        phases["reflect"] = features * 8
        phases["inference"] = sampler + area + cost.working_bytes(n) + n * k * 8 + n * 24
        phases["results"] = n * k * 4 + n * 10 + outputs
    return MemoryEstimate(phases, {"parameters": model.parameter_bytes, "cube_in_memory": cube.resident_bytes})


def plan_mapping(model: MappingModel, cube: LazyCube, budget: int, batch_size: Optional[int] = None,
                 probabilities: bool = False, tile_side: Optional[int] = None) -> tuple[TilePlan, InferenceCost,
                                                                                       MemoryEstimate]:
    """The largest square tiles (and inference settings) whose peak memory fits in ``budget``
    bytes; ``tile_side`` forces a side (still checked against the budget). A budget that cannot
    hold even the smallest tile raises a :class:`UserError` saying how much is needed."""
    height, width = cube.shape[:2]
    side = tile_side or min(MIN_TILE_SIDE, max(height, width))
    batch = int(batch_size or max(int(model.config.get("batch_size") or 1), MIN_BATCH))
    least, preferred = _dense_pass_bounds(model, budget)
    cost = inference_cost(model, batch, preferred)
    need = _estimate(model, cube, side, cost, probabilities)
    if cost.dense_pass and need.total > budget:  # a smaller dense pass, down to its least
        others = need.phases["inference"] - cost.working_bytes(0)
        room = (budget - sum(need.fixed.values())) / ALLOCATOR_MARGIN - others
        cost = replace(cost, tile_bytes=max(least, int(room / DENSE_PASS_FACTOR)))
    while not cost.dense_pass and cost.batch_size > 1 and need.total > budget:  # smaller batches, down to 1
        cost = replace(cost, batch_size=cost.batch_size // 2)
        need = _estimate(model, cube, side, cost, probabilities)
    need = _estimate(model, cube, side, cost, probabilities)
    if need.total > budget:
        raise UserError(f"memory budget {format_size(budget)} cannot hold one {side}x{side} tile of {cube.shape[2]} "
                        f"bands for model {model.name} (needs {rounded_up(need.total)}); raise --memory_budget "
                        f"to at least {rounded_up(need.total)}")
    if tile_side is None:
        fits = lambda s: _estimate(model, cube, s, cost, probabilities).total <= budget  # noqa: E731
        low, high = side, max(height, width)
        while low < high:  # the largest side that fits (memory grows with the side)
            middle = (low + high + 1) // 2
            low, high = (middle, high) if fits(middle) else (low, middle - 1)
        tile_side = low
    plan = make_plan(model, cube.shape, tile_side)
    return plan, cost, tile_memory(model, cube, plan, cost, probabilities)


def _estimate(model: MappingModel, cube: LazyCube, side: int, cost: InferenceCost,
              probabilities: bool) -> MemoryEstimate:
    return tile_memory(model, cube, make_plan(model, cube.shape, side), cost, probabilities)


def _dense_pass_bounds(model: MappingModel, budget: int) -> tuple[int, int]:
    """Least and preferred bounds on the largest operation of a dense pass (0, 0 without one): at
    least what a row of 16 pixels needs, preferably a quarter of the budget up to the engine's default."""
    from deephyperx.dense_eval import DEFAULT_TILE_BYTES, supports_dense, tile_bytes

    if model.dense or not supports_dense(model.network):
        return 0, 0
    least = tile_bytes(model.network, [model.channels], model.patch_size, 1, MIN_TILE_SIDE)
    return least, max(min(budget // 4, DEFAULT_TILE_BYTES), least)


# ----- one tile ---------------------------------------------------------------------------------

@dataclass
class TileResult:
    """The classes (h, w) of a tile's inner pixels and, if asked, their probabilities (h, w, K) float16."""

    classes: np.ndarray
    probabilities: Optional[np.ndarray] = None


@torch.no_grad()
def predict_tile(model: MappingModel, cube: LazyCube, plan: TilePlan, index: int, cost: InferenceCost,
                 device: Union[str, torch.device] = "cpu", probabilities: bool = False) -> TileResult:
    """Classify the inner pixels of tile ``index`` of ``plan``."""
    device = torch.device(device)
    if model.dense:
        return _dense_tile(model, cube, plan, index, cost.batch_size, device, probabilities)
    read, rows, cols = plan.source(index)
    block = model.features(cube.read(read))
    if not (_is_identity(rows, block.shape[0]) and _is_identity(cols, block.shape[1])):
        block = block[np.ix_(rows, cols)]  # reflect the scene's borders into the halo
    sampler = PatchSampler([block], np.full(block.shape[:2], IGNORE, dtype=np.int8), model.patch_size)
    del block
    r0, r1, c0, c1 = plan.windows[index]
    mask = np.zeros(sampler.shape, dtype=bool)
    mask[plan.before:plan.before + r1 - r0, plan.before:plan.before + c1 - c0] = True
    logits = centre_logits(model.network, sampler, cost.batch_size, device, mask, tile_bytes=cost.tile_bytes)
    del sampler, mask
    return _result(logits.reshape(r1 - r0, c1 - c0, -1), probabilities, model.n_classes)


def _is_identity(index: np.ndarray, length: int) -> bool:
    return len(index) == length and int(index[0]) == 0 and int(index[-1]) == length - 1


def _result(scores: torch.Tensor, probabilities: bool, n_classes: int) -> TileResult:
    """Classes (the argmax) and optional float16 probabilities from (h, w, K) logits."""
    classes = scores.argmax(-1).numpy().astype(class_dtype(n_classes))
    probs = torch.softmax(scores, dim=-1).half().numpy() if probabilities else None
    return TileResult(classes, probs)


def _dense_tile(model: MappingModel, cube: LazyCube, plan: TilePlan, index: int, batch_size: int,
                device: torch.device, probabilities: bool) -> TileResult:
    """A dense-output model's classes on one tile: the softmax of every sliding window of the
    scene's grid (as :func:`~deephyperx.inference.predict_dense` places them) that meets the tile,
    summed per pixel; the argmax of the sums, and sums / windows as probabilities."""
    p, k = model.patch_size, model.n_classes
    before, after = patch_extent(p)
    read, _, _ = plan.source(index)
    r0, r1, c0, c1 = plan.windows[index]
    sampler = PatchSampler([model.features(cube.read(read))],
                           np.full((read[1] - read[0], read[3] - read[2]), IGNORE, dtype=np.int8), p)
    centre_r = window_centres(plan.height, p, model.stride)
    centre_c = window_centres(plan.width, p, model.stride)
    centre_r = centre_r[(centre_r + after >= r0) & (centre_r - before < r1)] - read[0]
    centre_c = centre_c[(centre_c + after >= c0) & (centre_c - before < c1)] - read[2]
    grid_r, grid_c = np.meshgrid(centre_r, centre_c, indexing="ij")
    rows, cols = torch.as_tensor(grid_r.ravel()), torch.as_tensor(grid_c.ravel())
    shape = (sampler.shape[0] + p - 1, sampler.shape[1] + p - 1)
    scores, counts = torch.zeros((k, *shape)), torch.zeros(shape)
    offsets = torch.arange(p)
    model.network.eval()
    for start in range(0, len(rows), batch_size):
        r, c = rows[start:start + batch_size], cols[start:start + batch_size]
        probs = torch.softmax(logits_of(model.network(*[x.to(device) for x in sampler.patches(r, c)])), dim=1)
        probs = probs.float().cpu()
        rr = (r.view(-1, 1, 1) + offsets.view(1, p, 1)).expand(-1, p, p)
        cc = (c.view(-1, 1, 1) + offsets.view(1, 1, p)).expand(-1, p, p)
        for cls in range(k):
            scores[cls].index_put_((rr, cc), probs[:, cls], accumulate=True)
        counts.index_put_((rr, cc), torch.ones(()), accumulate=True)
    top, left = before + r0 - read[0], before + c0 - read[2]
    inner = (slice(top, top + r1 - r0), slice(left, left + c1 - c0))
    sums = scores[:, inner[0], inner[1]].permute(1, 2, 0)
    classes = sums.argmax(-1).numpy().astype(class_dtype(k))
    probs = (sums / counts[inner].unsqueeze(-1)).half().numpy() if probabilities else None
    return TileResult(classes, probs)


def class_dtype(n_classes: int) -> np.dtype:
    """The smallest unsigned type holding class ids 0..n_classes-1."""
    return np.dtype(np.uint8 if n_classes <= 256 else np.uint16)


# ----- writing ----------------------------------------------------------------------------------

@dataclass
class _Target:
    """One raster of the map (classes or probabilities) written by ``os.pwrite`` into the
    contiguous data of its partial file at ``offset``."""

    name: str
    final: Path
    partial: Path
    shape: tuple[int, ...]
    dtype: np.dtype
    offset: int = 0
    fd: Optional[int] = None

    def write(self, window: Window, block: np.ndarray) -> None:
        r0, r1, c0, c1 = window
        block = np.ascontiguousarray(block, dtype=self.dtype)
        pixel = self.dtype.itemsize * int(np.prod(self.shape[2:], dtype=np.int64))
        row_bytes = self.shape[1] * pixel
        if c0 == 0 and c1 == self.shape[1]:  # whole rows: one write
            os.pwrite(self.fd, memoryview(block).cast("B"), self.offset + r0 * row_bytes)
            return
        for i in range(r1 - r0):
            os.pwrite(self.fd, memoryview(block[i]).cast("B"), self.offset + (r0 + i) * row_bytes + c0 * pixel)


class MapWriter:
    """Writes a class map (and optionally probabilities) tile by tile into ``<out>.partial`` files
    with a manifest of finished tiles; resumes a job of the same ``job_id``; renames the files to
    their final paths once every tile is written.

    Formats by suffix: ``.npy`` (NumPy), ``.tif``/``.tiff`` (GeoTIFF with the cube's
    georeference tags), ``.h5``/``.hdf5`` (datasets ``classes`` and ``probabilities``). NumPy and
    TIFF probabilities go to ``<stem>.probabilities<suffix>``. A JSON description (class names,
    checkpoint, cube, georeference) is written to ``<stem>.json``.
    """

    def __init__(self, out: PathLike, shape: tuple[int, int], class_names: list[str], probabilities: bool,
                 job_id: str, n_tiles: int, description: dict[str, Any],
                 georeference: Optional[Georeference] = None) -> None:
        self.out = Path(out)
        self.format = FORMATS.get(self.out.suffix.lower())
        if self.format is None:
            raise UserError(f"--out {out}: unknown map format '{self.out.suffix}'; use one of "
                            f"{', '.join(sorted(FORMATS))}")
        self.shape, self.class_names, self.job_id, self.n_tiles = tuple(shape), list(class_names), job_id, n_tiles
        self.georeference, self.description = georeference, description
        self.manifest = self.out.with_name(self.out.name + ".partial.json")
        self.description_path = self.out.with_name(self.out.stem + ".json")
        k = len(class_names)
        self.targets = [_Target("classes", self.out, self._partial(self.out), self.shape, class_dtype(k))]
        if probabilities:
            final = self.out if self.format == "hdf5" else self.out.with_name(
                f"{self.out.stem}.probabilities{self.out.suffix}")
            self.targets.append(_Target("probabilities", final, self._partial(final), (*self.shape, k),
                                        np.dtype(np.float16)))
        self.done: set[int] = set()

    @staticmethod
    def _partial(path: Path) -> Path:
        return path.with_name(path.name + ".partial")

    @property
    def paths(self) -> list[Path]:
        """Final paths of the map's files (one per distinct file)."""
        return list(dict.fromkeys(t.final for t in self.targets))

    def open(self) -> set[int]:
        """Resume the job's partial files (returning its finished tiles) or create them afresh."""
        self.out.parent.mkdir(parents=True, exist_ok=True)
        if self.manifest.is_file():
            self.done = self._resumed_tiles()
        if not self.done or not self._locate_all():
            self.done = set()
            self._create()
            self._locate_all()
            self._save_manifest()
        for target in self.targets:
            target.fd = os.open(target.partial, os.O_RDWR)
        return set(self.done)

    def write(self, index: int, window: Window, result: TileResult) -> None:
        """Write tile ``index``'s results, make them durable, then record the tile as finished."""
        for target in self.targets:
            block = result.classes if target.name == "classes" else result.probabilities
            if block is None:
                raise ValueError(f"tile {index} has no {target.name}")
            target.write(window, block)
        for fd in {t.fd for t in self.targets}:
            os.fsync(fd)
        self.done.add(index)
        self._save_manifest()

    def finish(self) -> list[Path]:
        """Rename the complete map to its final paths (after its JSON description) and drop the manifest."""
        missing = self.n_tiles - len(self.done)
        if missing:
            raise RuntimeError(f"{missing} tiles of {self.out} are not written yet")
        self.close()
        description = {**self.description, "classes": {str(i): n for i, n in enumerate(self.class_names)},
                       "files": {t.name: str(t.final) for t in self.targets},
                       "georeference": self.georeference.as_dict() if self.georeference else None}
        atomic_write_text(self.description_path, json.dumps(description, indent=2))
        for target in reversed(self.targets):  # the class map last: its presence means the job is done
            if target.partial.exists():
                os.replace(target.partial, target.final)
        self.manifest.unlink(missing_ok=True)
        return self.paths

    def abandon(self) -> None:
        """Stop here: keep the partial files for a resume if any tile is written, else remove them
        (and the manifest), leaving no trace of a job that did nothing."""
        self.close()
        if self.done:
            return
        for target in self.targets:
            target.partial.unlink(missing_ok=True)
        self.manifest.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the partial files (what is written stays, for a later resume)."""
        for target in self.targets:
            if target.fd is not None:
                with contextlib.suppress(OSError):
                    os.close(target.fd)
                target.fd = None

    # --- manifest
    def _resumed_tiles(self) -> set[int]:
        try:
            data = json.loads(self.manifest.read_text())
        except (OSError, ValueError):
            data = {}
        if data.get("format") != MANIFEST_FORMAT or data.get("job") != self.job_id:
            raise UserError(f"{self.manifest} belongs to another mapping job (another checkpoint, cube or "
                            f"options); rerun with the same options to resume it, or remove {self.manifest} and "
                            f"{self.targets[0].partial} to start afresh")
        return {int(i) for i in data.get("done", [])}

    def _save_manifest(self) -> None:
        atomic_write_text(self.manifest, json.dumps({"format": MANIFEST_FORMAT, "job": self.job_id,
                                                     "output": str(self.out), "tiles": self.n_tiles,
                                                     "done": sorted(self.done)}))

    # --- files
    def _create(self) -> None:
        if self.format == "hdf5":
            _create_hdf5(self.targets[0].partial, self.targets, self.class_names)
            return
        for target in self.targets:
            if self.format == "npy":
                np.lib.format.open_memmap(target.partial, mode="w+", dtype=target.dtype, shape=target.shape)
            else:
                _create_tiff(target.partial, target, self.georeference)

    def _locate_all(self) -> bool:
        """Find each target's data offset in its partial file; False if a file is missing or differs."""
        for target in self.targets:
            if not target.partial.is_file():
                return False
            try:
                offset, shape, dtype = _LOCATORS[self.format](target.partial, target.name)
            except Exception:  # a damaged partial file: start afresh
                return False
            if tuple(shape) != target.shape or np.dtype(dtype) != target.dtype or offset is None:
                return False
            target.offset = int(offset)
        return True


def _create_tiff(path: Path, target: _Target, georeference: Optional[Georeference]) -> None:
    import tifffile

    tags = georeference.tiff_tags() if georeference is not None else []
    size = int(np.prod(target.shape)) * target.dtype.itemsize
    extra = {"planarconfig": "contig"} if len(target.shape) == 3 else {}
    data = tifffile.memmap(path, shape=target.shape, dtype=target.dtype, photometric="minisblack",
                           extratags=tags, bigtiff=size > 2 ** 32 - 2 ** 26, metadata=None, **extra)
    del data


def _create_hdf5(path: Path, targets: list[_Target], class_names: list[str]) -> None:
    """Contiguous datasets allocated at creation and never filled: their bytes are written in place."""
    import h5py

    with h5py.File(path, "w") as handle:
        for target in targets:
            dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
            dcpl.set_alloc_time(h5py.h5d.ALLOC_TIME_EARLY)
            dcpl.set_fill_time(h5py.h5d.FILL_TIME_NEVER)
            handle.create_dataset(target.name, shape=target.shape, dtype=target.dtype, dcpl=dcpl)
        handle.attrs["class_names"] = json.dumps(class_names)


def _locate_npy(path: Path, name: str) -> tuple[int, tuple[int, ...], np.dtype]:
    data = np.load(path, mmap_mode="r", allow_pickle=False)
    return data.offset, data.shape, data.dtype


def _locate_tiff(path: Path, name: str) -> tuple[Optional[int], tuple[int, ...], np.dtype]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        series = tif.series[0]
        return series.dataoffset, tuple(series.shape), np.dtype(series.dtype)


def _locate_hdf5(path: Path, name: str) -> tuple[Optional[int], tuple[int, ...], np.dtype]:
    import h5py

    with h5py.File(path, "r") as handle:
        dataset = handle[name]
        return dataset.id.get_offset(), dataset.shape, dataset.dtype


_LOCATORS = {"npy": _locate_npy, "tiff": _locate_tiff, "hdf5": _locate_hdf5}


# ----- the job ----------------------------------------------------------------------------------

@dataclass
class MappingReport:
    """What a mapping job did."""

    files: list[Path]
    shape: tuple[int, int]
    tiles: int
    tile_side: int
    computed: int
    skipped: int
    seconds: float
    pixels_per_second: float
    memory_budget: int
    estimated_peak: int
    batch_size: int
    dense_pass: bool
    memory_estimate: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return {**{k: v for k, v in self.__dict__.items() if k != "files"}, "files": [str(f) for f in self.files]}


@dataclass
class MappingJob:
    """A prepared mapping: model, cube, tiles, inference settings and the writer (opened)."""

    model: MappingModel
    cube: LazyCube
    plan: TilePlan
    cost: InferenceCost
    memory: MemoryEstimate
    writer: MapWriter
    budget: int
    probabilities: bool
    device: torch.device
    pending: list[int] = field(default_factory=list)

    def predict(self, index: int) -> TileResult:
        return predict_tile(self.model, self.cube, self.plan, index, self.cost, self.device, self.probabilities)

    def run(self, results: Iterable[tuple[int, TileResult]], progress: bool = True,
            on_tile: Optional[Callable[[int], None]] = None) -> MappingReport:
        """Write ``results`` (tile index, result) as they come, with the progress and time left (a bar on
        a terminal, a line every so often in a log, see :class:`~deephyperx.progress.Progress`); rename
        the map when every tile is in. ``on_tile(index)`` runs after each tile is recorded. If anything
        fails, the partial files and manifest stay for a resume."""
        from deephyperx.progress import Progress

        windows = self.plan.windows
        area = lambda i: (windows[i][1] - windows[i][0]) * (windows[i][3] - windows[i][2])  # noqa: E731
        skipped = len(self.plan) - len(self.pending)
        started, computed, pixels = time.perf_counter(), 0, 0
        shown = Progress(sum(area(i) for i in self.pending), f"mapping {self.writer.out.name}", unit="px") \
            if progress else None
        try:
            for index, result in results:
                self.writer.write(index, windows[index], result)
                computed, pixels = computed + 1, pixels + area(index)
                if shown is not None:
                    shown.update(area(index), f"tile {computed + skipped}/{len(self.plan)}")
                if on_tile is not None:
                    on_tile(index)
            files = self.writer.finish()
        except BaseException:
            self.writer.abandon()
            raise
        finally:
            if shown is not None:
                shown.close()
            close = getattr(results, "close", None)
            if close is not None:  # stop a generator of results (e.g. cancel its Dask tasks)
                close()
        seconds = time.perf_counter() - started
        return MappingReport(files, self.cube.shape[:2], len(self.plan), self.plan.side, computed, skipped, seconds,
                             pixels / seconds if seconds > 0 else 0.0, self.budget, self.memory.total,
                             self.cost.batch_size, self.cost.dense_pass, self.memory.as_dict())


def job_identity(model: MappingModel, cube: LazyCube, plan: TilePlan, probabilities: bool, out: Path) -> str:
    """A hash of what determines the map: the checkpoint's bytes, the cube's file (path, key, size,
    modification time), the tiles and the outputs asked for."""
    identity = {"checkpoint": file_sha256(model.checkpoint), "cube": cube.identity(), "plan": plan.as_dict(),
                "probabilities": probabilities, "format": FORMATS.get(out.suffix.lower())}
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def prepare_job(checkpoint: PathLike, cube_path: PathLike, out: PathLike, *, key: Optional[str] = None,
                memory_budget: Union[str, int] = "2GB", probabilities: bool = False,
                batch_size: Optional[int] = None, device: Union[str, torch.device] = "cpu",
                tile_side: Optional[int] = None) -> MappingJob:
    """Load the model, open the cube, plan the tiles within the budget and open (or resume) the
    output. Every check runs before any file is written."""
    out = Path(out)
    if out.suffix.lower() not in FORMATS:
        raise UserError(f"--out {out}: unknown map format '{out.suffix}'; use one of {', '.join(sorted(FORMATS))}")
    if batch_size is not None and batch_size < 1:
        raise UserError(f"--batch_size {batch_size} must be at least 1")
    if tile_side is not None and tile_side < 1:
        raise UserError(f"tile side {tile_side} must be at least 1")
    budget = parse_size(memory_budget, "--memory_budget")
    device = torch.device(device)
    return_freed_memory()
    model = load_mapping_model(checkpoint, device)
    cube = open_lazy_cube(cube_path, key)
    check_cube(model, cube)
    plan, cost, memory = plan_mapping(model, cube, budget, batch_size, probabilities, tile_side)
    description = {"format": "deephyperx-map", "model": model.name, "checkpoint": str(Path(checkpoint).resolve()),
                   "cube": str(Path(cube_path).resolve()), "key": key, "shape": list(cube.shape[:2]),
                   "class_ids": "pixel value k is class k (0-based)", "tile_side": plan.side}
    writer = MapWriter(out, cube.shape[:2], model.class_names, probabilities,
                       job_identity(model, cube, plan, probabilities, out), len(plan), description, cube.georeference)
    inputs = {Path(cube_path).resolve(), Path(checkpoint).resolve()}
    clash = sorted(str(p) for p in [*writer.paths, writer.description_path] if p.resolve() in inputs)
    if clash:
        raise UserError(f"--out {out} would overwrite {clash[0]}, an input of this job; choose another map name")
    done = writer.open()
    pending = [i for i in range(len(plan)) if i not in done]
    return MappingJob(model, cube, plan, cost, memory, writer, budget, probabilities, device, pending)


def map_scene(checkpoint: PathLike, cube_path: PathLike, out: PathLike, *, key: Optional[str] = None,
              memory_budget: Union[str, int] = "2GB", probabilities: bool = False, batch_size: Optional[int] = None,
              device: Union[str, torch.device] = "cpu", progress: bool = True, tile_side: Optional[int] = None,
              on_tile: Optional[Callable[[int], None]] = None) -> MappingReport:
    """Map ``cube_path`` with the model of ``checkpoint`` into ``out``, tile by tile in this process,
    resuming an interrupted job of the same inputs and options."""
    job = prepare_job(checkpoint, cube_path, out, key=key, memory_budget=memory_budget, probabilities=probabilities,
                      batch_size=batch_size, device=device, tile_side=tile_side)
    return job.run(_computed(job), progress, on_tile)


def _computed(job: MappingJob) -> Iterator[tuple[int, TileResult]]:
    for index in job.pending:
        yield index, job.predict(index)
