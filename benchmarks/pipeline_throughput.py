"""How close does the real data path get to the model's ceiling? (training and inference)

For each model, with its registry defaults (patch size, batch size, optimiser built by the model's
own training step, the run's default augmentation), on real Indian Pines with a 10% random
training split prepared exactly as ``main.py`` prepares it:

* training samples/s through the engine's path: ``sampling.batches`` epoch after epoch, each batch
  made by ``BatchMaker.make`` and fed to the step (loss, backward, optimiser step); against the
  ceiling: the same step on the same batches made beforehand (``--pool_mb`` bounds them: beyond it
  the first ones are reused); and the engine's path with the next batch prefetched in a background
  thread (:mod:`deephyperx.prefetch`);
* inference pixels/s through ``inference.predict_centre`` on its batched-patch path
  (``predict_dense`` for dense models), plain and prefetched, against the model's raw forward
  throughput on pre-built patches at the same batch size (the runner's: ``max(batch_size, 256)``);
  the default path of ``predict_centre`` (a dense pass where the model has one) is timed once too;
* peak resident memory, each model in its own child process (``ru_maxrss``), with per-phase peaks.

Ratio = pipeline rate / ceiling rate. The machine may be shared, so every repeat times the ceiling
and the pipelines back to back in a rotating order, a ratio is the median of the repeats' paired
ratios, and every pass is timed by three clocks: elapsed time (the aims are about it), process CPU
time (the pipeline's own cost, whatever else runs on the machine) and the main thread's CPU time.

    python benchmarks/pipeline_throughput.py --folder ../shared/data --models hu hamida lee sharma \\
        --batches 20 hu=400 sharma=8 --repeats 3 --rows sharma=16

Writes ``--out`` (default outputs/benchmarks/pipeline_throughput.json) atomically after each
model, and prints a table. Bad input prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass
from itertools import islice
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Optional, Sequence


# The parent process stays light (no torch, no data): a child's ru_maxrss can start from its
# parent's resident size, and the children do the work.
from deephyperx.atomic import atomic_write_text  # noqa: E402
from deephyperx.errors import UserError  # noqa: E402

DEFAULT_MODELS = ("hu", "hamida", "lee", "sharma")
SCENE = "IndianPines"
AIMS = {"training": 0.90, "inference": 0.85}
MiB = 1024.0 * 1024.0
#: Environment variables that change the timings, recorded with them (THP_MEM_ALLOC_ENABLE=1 makes
#: torch back large tensors with huge pages: far fewer page faults in big forwards and gathers).
ENVIRONMENT = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "THP_MEM_ALLOC_ENABLE")


@dataclass(frozen=True)
class Settings:
    """What every model's measurement shares."""

    folder: str
    batches: int
    warmup: int
    repeats: int
    threads: int
    prefetch_depth: int
    pool_mb: float
    seed: int
    large_patch_copy: bool
    training_sample: float = 0.1


# ----- memory ------------------------------------------------------------------------------------

def _maxrss_mb() -> float:
    import resource

    scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / MiB


class PeakMemory:
    """Peak resident memory of this process, overall and per phase (Linux resets the peak
    through /proc/self/clear_refs; elsewhere only the overall peak is known)."""

    def __init__(self) -> None:
        self.overall = 0.0
        self.resettable = self._reset()

    @staticmethod
    def _reset() -> bool:
        try:
            with open("/proc/self/clear_refs", "w") as handle:
                handle.write("5")
            return True
        except OSError:
            return False

    def phase(self) -> Optional[float]:
        """The peak since the last :meth:`start` (None where it cannot be reset)."""
        peak = _maxrss_mb()
        self.overall = max(self.overall, peak)
        return peak if self.resettable else None

    def start(self) -> None:
        """Start a new phase."""
        self.overall = max(self.overall, _maxrss_mb())
        if self.resettable:
            self._reset()


# ----- one model's setup, as the runner builds it ---------------------------------------------------

@dataclass
class Setup:
    """What one model's measurement works with, built as the runner builds it."""

    name: str
    config: dict
    scene: Any
    rasters: list
    train_labels: Any
    sampler: Any
    maker: Any
    model: Any
    step: Any
    ctx: Any
    initial: dict


def build_setup(name: str, s: Settings) -> Setup:
    """Scene, split, normalised rasters, sampler, training maker, model and step of ``name``,
    built by the runner's own code (``ClassifyTask``'s feature and model construction)."""
    import numpy as np
    import torch

    from deephyperx_app import datasets
    from deephyperx import models  # noqa: F401  (registers the zoo)
    from deephyperx.config import resolve_config
    from deephyperx.registry import get_spec, require_family
    from deephyperx.runner import ClassifyTask, make_split
    from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler
    from deephyperx.scene import IGNORE
    from deephyperx.seeding import seed_everything
    from deephyperx.steps import StepContext, get_step
    from deephyperx.training import inverse_median_frequency

    spec = get_spec(name)
    require_family(spec, ("neural",), "benchmarks/pipeline_throughput.py")
    config = resolve_config(spec, {"training_sample": s.training_sample, "sampling_mode": "random", "seed": s.seed})
    step = get_step(config["supervision"])
    if step.needs_unlabelled:
        raise UserError(f"model {name} trains with unlabelled batches too; this benchmark times supervised steps "
                        f"(choose e.g. {', '.join(DEFAULT_MODELS)})")
    scene = datasets.load_scene(SCENE, s.folder)
    seed_everything(s.seed)
    task = ClassifyTask(scene, config)  # makes no folder: only used to build
    run_config = task.seed_config(s.seed)
    split = make_split(scene, run_config, s.seed)
    rasters, _ = task.features(run_config, split.train, None, list(config["inputs"]))
    model = task.build_model(run_config, None)
    train_labels = np.where(split.train, scene.labels, IGNORE)
    sampler = PatchSampler(rasters, train_labels, config["patch_size"])
    augmentation = Augmentation(config["flip_augmentation"], config["radiation_augmentation"],
                                config["mixture_augmentation"])
    maker = BatchMaker(sampler, *np.nonzero(split.train), dense=config["output"] == "dense",
                       augmentation=augmentation)
    weights = inverse_median_frequency(torch.as_tensor(train_labels), scene.n_classes) \
        if config["class_balancing"] else None
    ctx = StepContext(scene.n_classes, weights, config, torch.device("cpu"))
    initial = {k: v.clone() for k, v in model.state_dict().items()}
    return Setup(name, config, scene, rasters, train_labels, sampler, maker, model, step, ctx, initial)


#: The clocks a pass is timed by: elapsed time (what a user waits), CPU time of the whole process
#: (all threads: insensitive to other processes sharing the machine) and of the main thread alone
#: (the critical path when a prefetch thread has a processor of its own).
CLOCKS = ("wall", "cpu", "main_thread_cpu")


class Stopwatch:
    """Times a block by the three :data:`CLOCKS`; read ``seconds`` after it."""

    def __enter__(self) -> "Stopwatch":
        self._start = (time.perf_counter(), time.process_time(), time.thread_time())
        return self

    def __exit__(self, *exc: Any) -> None:
        now = (time.perf_counter(), time.process_time(), time.thread_time())
        self.seconds = dict(zip(CLOCKS, (b - a for a, b in zip(self._start, now))))


def batch_nbytes(tensors: Iterable[Any]) -> int:
    """Bytes held by ``tensors``."""
    return sum(t.element_size() * t.numel() for t in tensors)


def rotation(k: int, repeat: int) -> list[int]:
    """The order of ``k`` passes in ``repeat``: 0..k-1 rotated by ``repeat``."""
    return [(repeat + i) % k for i in range(k)]


def paired_summary(timings: dict[str, list[dict[str, float]]], work: dict[str, float],
                   ceiling: str) -> dict[str, Any]:
    """Per clock and pass: the median rate (``work`` per second) and, for the passes other than
    ``ceiling``, the median over repeats of the paired ratio pass rate / ceiling rate."""
    seconds = {clock: {k: [t[clock] for t in ts] for k, ts in timings.items()} for clock in CLOCKS}
    rates = {clock: {k: statistics.median(work[k] / t for t in ts) for k, ts in by_pass.items()}
             for clock, by_pass in seconds.items()}
    ratios = {clock: {k: statistics.median((work[k] / t) / (work[ceiling] / c) for t, c in zip(ts, by_pass[ceiling]))
                      for k, ts in by_pass.items() if k != ceiling}
              for clock, by_pass in seconds.items()}
    return {"per_s": rates, "ratio": ratios, "seconds": seconds}


# ----- training ---------------------------------------------------------------------------------

def epoch_batches(setup: Setup, seed: int, depth: int) -> Iterator[Any]:
    """The training batches of successive epochs, as ``Trainer.fit`` draws them (epoch ``e``'s
    order and augmentation from the stream ``(seed, e, 2)``), each epoch prefetched ``depth``
    ahead (0: not at all)."""
    from deephyperx.prefetch import prefetch
    from deephyperx.seeding import torch_generator
    from deephyperx.sampling import batches

    size, samples = int(setup.config["batch_size"]), setup.config.get("epoch_samples")
    epoch = 0
    while True:
        stream = prefetch(batches(setup.maker, size, torch_generator(seed, epoch, 2), augment=True, shuffle=True,
                                  n_samples=samples), depth)
        try:
            yield from stream
        finally:
            close = getattr(stream, "close", None)
            if callable(close):
                close()
        epoch += 1


def train_pass(setup: Setup, make_stream: Callable[[], Iterator[Any]], n: int,
               seed: int) -> tuple[dict[str, float], int]:
    """Seconds (by each clock) and samples of ``n`` training steps from a fresh model and optimiser
    (the same start for every pass); the stream is created inside the timed region (a prefetch
    thread starts there)."""
    import torch

    from deephyperx.seeding import derived_seed

    setup.model.load_state_dict(setup.initial)
    optimizers = setup.step.build_optimizers(setup.model, setup.config)
    setup.model.train()
    torch.manual_seed(derived_seed(seed, 0, 1))
    device, samples = setup.ctx.device, 0
    with Stopwatch() as watch:
        stream = make_stream()
        try:
            for batch in islice(stream, n):
                setup.step(setup.model, batch.to(device), optimizers, setup.ctx)
                samples += len(batch.target)
        finally:
            stream.close()
    return watch.seconds, samples


def cycled(pool: list[Any], n: int) -> Iterator[Any]:
    """``n`` items of ``pool``, reused in turn."""
    for i in range(n):
        yield pool[i % len(pool)]


def training_pool(setup: Setup, s: Settings) -> tuple[list[Any], float]:
    """The ceiling's batches: the pipeline's first ones, made beforehand and kept while they fit in
    ``--pool_mb`` (the ceiling reuses them in turn beyond that); and the milliseconds that making
    one batch takes, alone (over ``--batches`` batches)."""
    pool, budget = [], s.pool_mb * MiB
    stream = epoch_batches(setup, s.seed, 0)
    started = time.process_time()
    for batch in islice(stream, s.batches):
        if not pool or batch_nbytes([*batch.inputs, batch.target]) * (len(pool) + 1) <= budget:
            pool.append(batch)
    prepare_ms = 1000.0 * (time.process_time() - started) / s.batches
    stream.close()
    return pool, prepare_ms


def measure_training(setup: Setup, s: Settings, memory: PeakMemory) -> dict[str, Any]:
    """Pipeline (plain, prefetched) against the ceiling, in paired repeats. The first repeat runs
    the pipelines before the ceiling's batches exist, so the pipeline's own peak memory is known."""
    n, seed = s.batches, s.seed
    train_pass(setup, lambda: epoch_batches(setup, seed, 0), s.warmup, seed)  # warm-up, untimed
    pool: list[Any] = []
    passes: dict[str, Callable[[], Iterator[Any]]] = {"pipeline": lambda: epoch_batches(setup, seed, 0)}
    if s.prefetch_depth:
        passes["prefetch"] = lambda: epoch_batches(setup, seed, s.prefetch_depth)
    passes["ceiling"] = lambda: cycled(pool, n)
    names = list(passes)
    seconds: dict[str, list[dict[str, float]]] = {k: [] for k in names}
    work: dict[str, float] = {}
    pipeline_peak, prepare_ms = None, None
    for repeat in range(s.repeats):
        for i in rotation(len(names), repeat):
            if names[i] == "ceiling" and not pool:
                pipeline_peak = memory.phase()
                made, prepare_ms = training_pool(setup, s)
                pool.extend(made)
            elapsed, samples = train_pass(setup, passes[names[i]], n, seed)
            seconds[names[i]].append(elapsed)
            work[names[i]] = samples
    summary = paired_summary(seconds, work, "ceiling")
    return {"batches": n, "samples": work, "ceiling_distinct_batches": len(pool),
            "ceiling_pool_mb": batch_nbytes(t for b in pool for t in (*b.inputs, b.target)) / MiB,
            "prepare_ms_per_batch": prepare_ms,
            "step_ms_per_batch": 1000.0 * statistics.median(t["cpu"] for t in seconds["ceiling"]) / n,
            "samples_per_s": summary["per_s"], "ratio": summary["ratio"], "seconds": summary["seconds"],
            "pipeline_peak_rss_mb": pipeline_peak, "peak_rss_mb": memory.phase()}


# ----- inference ----------------------------------------------------------------------------------

@contextlib.contextmanager
def replaced(module: Any, name: str, value: Any) -> Iterator[None]:
    """Set ``module.name`` to ``value`` for the block (this process only)."""
    saved = getattr(module, name)
    setattr(module, name, value)
    try:
        yield
    finally:
        setattr(module, name, saved)


def prefetching_patch_logits(depth: int) -> Callable:
    """``inference.patch_logits`` with its batches of patches prefetched ``depth`` ahead: the change
    this benchmark proposes for deephyperx/inference.py (used here in this process only)."""
    import torch

    from deephyperx.prefetch import patch_batches, prefetch
    from deephyperx.steps import logits_of

    @torch.no_grad()
    def patch_logits(model, sampler, batch_size, device, rows, cols):
        rows_t, cols_t = torch.as_tensor(rows, dtype=torch.long), torch.as_tensor(cols, dtype=torch.long)
        parts = []
        for _, _, patches in prefetch(patch_batches(sampler, rows_t, cols_t, batch_size), depth):
            parts.append(logits_of(model(*[x.to(device) for x in patches])).float().cpu())
        return torch.cat(parts) if parts else torch.empty(0, 0)

    return patch_logits


def inference_scene(setup: Setup, rows: Optional[int]) -> tuple[Any, Any]:
    """The sampler inference reads and the mask of pixels to classify: the whole scene, or its top
    ``rows`` rows (a mask for centre models, a cropped sampler for dense ones)."""
    import numpy as np

    from deephyperx.sampling import PatchSampler

    height, width = setup.scene.shape
    if rows is None or rows >= height:
        return setup.sampler, None
    if setup.config["output"] == "dense":
        patch = int(setup.config["patch_size"])
        if rows < patch:
            raise UserError(f"--rows {setup.name}={rows} is smaller than the patch of dense model {setup.name} "
                            f"({patch}); give at least {patch}")
        return PatchSampler([r[:rows] for r in setup.rasters], setup.train_labels[:rows], patch), None
    mask = np.zeros((height, width), dtype=bool)
    mask[:rows] = True
    return setup.sampler, mask


def centres_of(setup: Setup, sampler: Any, mask: Any) -> tuple[Any, Any]:
    """The patch centres inference feeds the model, in its order."""
    import numpy as np

    from deephyperx.inference import window_centres

    height, width = sampler.shape
    if setup.config["output"] == "dense":
        stride, patch = int(setup.config["test_stride"]), int(setup.config["patch_size"])
        grid_r, grid_c = np.meshgrid(window_centres(height, patch, stride), window_centres(width, patch, stride),
                                     indexing="ij")
        return grid_r.ravel(), grid_c.ravel()
    return np.nonzero(mask) if mask is not None else np.divmod(np.arange(height * width), width)


def raw_forward_pass(model: Any, pool: list[list[Any]], sizes: list[int]) -> dict[str, float]:
    """Seconds of the model's forward on pre-built batches of ``sizes`` (the pool reused in turn)."""
    import torch

    from deephyperx.steps import logits_of

    with Stopwatch() as watch, torch.no_grad():
        for i, size in enumerate(sizes):
            inputs = pool[i % len(pool)]
            logits_of(model(*[x[:size] for x in inputs]))
    return watch.seconds


def pipeline_pass(setup: Setup, sampler: Any, mask: Any, batch: int, depth: int) -> dict[str, float]:
    """Seconds of the engine's inference over the pixels: ``predict_dense`` for dense models, else
    ``predict_centre`` held to its batched-patch path (prefetched ``depth`` ahead when > 0)."""
    from deephyperx import inference

    device = setup.ctx.device
    if setup.config["output"] == "dense":
        with Stopwatch() as watch:
            inference.predict_dense(setup.model, sampler, setup.scene.n_classes, batch, device,
                                    int(setup.config["test_stride"]))
        return watch.seconds
    with contextlib.ExitStack() as stack:
        if hasattr(inference, "supports_dense"):  # hold predict_centre to its batched-patch path
            stack.enter_context(replaced(inference, "supports_dense", lambda model: False))
        if depth:
            stack.enter_context(replaced(inference, "patch_logits", prefetching_patch_logits(depth)))
        with Stopwatch() as watch:
            inference.predict_centre(setup.model, sampler, batch, device, mask)
    return watch.seconds


def default_path(setup: Setup, sampler: Any, mask: Any, batch: int, n_pixels: int) -> dict[str, Any]:
    """Name and pixels/s of ``predict_centre``'s own choice of path (timed once)."""
    from deephyperx import inference

    supports = getattr(inference, "supports_dense", None)
    if setup.config["output"] == "dense" or supports is None or not supports(setup.model):
        return {"path": "patches (measured above)"}
    started = time.perf_counter()
    inference.predict_centre(setup.model, sampler, batch, setup.ctx.device, mask)
    return {"path": "dense pass", "pixels_per_s": n_pixels / (time.perf_counter() - started)}


def raw_pool(sampler: Any, rows: Any, cols: Any, batch: int, n_batches: int,
             budget_mb: float) -> tuple[list[list[Any]], float]:
    """The raw forward's pre-built batches of patches (the first ones, while they fit in
    ``budget_mb``) and the milliseconds one batch's patches take to cut."""
    pool, seconds = [], 0.0
    for k in range(n_batches):
        started = time.process_time()
        inputs = sampler.patches(rows[k * batch:(k + 1) * batch], cols[k * batch:(k + 1) * batch])
        seconds += time.process_time() - started
        if pool and batch_nbytes(inputs) * (len(pool) + 1) > budget_mb * MiB:
            return pool, 1000.0 * seconds / (k + 1)
        pool.append(inputs)
    return pool, 1000.0 * seconds / n_batches


def measure_inference(setup: Setup, s: Settings, rows: Optional[int], memory: PeakMemory) -> dict[str, Any]:
    """Inference pipeline (plain, prefetched) against the raw forward on pre-built patches, in
    paired repeats; the first repeat runs the pipelines before the pre-built patches exist."""
    import torch

    from deephyperx import inference

    setup.model.eval()
    batch = max(int(setup.config["batch_size"]), 256)
    dense = setup.config["output"] == "dense"
    sampler, mask = inference_scene(setup, rows)
    centre_r, centre_c = centres_of(setup, sampler, mask)
    r_t, c_t = torch.as_tensor(centre_r, dtype=torch.long), torch.as_tensor(centre_c, dtype=torch.long)
    n_windows = len(r_t)
    n_pixels = sampler.shape[0] * sampler.shape[1] if dense else n_windows
    sizes = [min(batch, n_windows - start) for start in range(0, n_windows, batch)]
    with torch.no_grad():  # warm-up, untimed
        setup.model(*sampler.patches(r_t[:batch], c_t[:batch]))
    pool: list[list[Any]] = []
    passes: dict[str, Callable[[], dict[str, float]]] = {
        "pipeline": lambda: pipeline_pass(setup, sampler, mask, batch, 0)}
    if s.prefetch_depth and not dense and hasattr(inference, "patch_logits"):
        passes["prefetch"] = lambda: pipeline_pass(setup, sampler, mask, batch, s.prefetch_depth)
    passes["raw_forward"] = lambda: raw_forward_pass(setup.model, pool, sizes)
    names = list(passes)
    seconds: dict[str, list[dict[str, float]]] = {k: [] for k in names}
    pipeline_peak, gather_ms = None, None
    for repeat in range(s.repeats):
        for i in rotation(len(names), repeat):
            if names[i] == "raw_forward" and not pool:
                pipeline_peak = memory.phase()
                made, gather_ms = raw_pool(sampler, r_t, c_t, batch, len(sizes), s.pool_mb)
                pool.extend(made)
            seconds[names[i]].append(passes[names[i]]())
    summary = paired_summary(seconds, {k: float(n_pixels) for k in names}, "raw_forward")
    result = {"function": "predict_dense" if dense else "predict_centre (batched patches)",
              "batch_size": batch, "rows": sampler.shape[0] if mask is None else int(rows),
              "pixels": n_pixels, "patches": n_windows, "raw_distinct_batches": len(pool),
              "raw_pool_mb": sum(batch_nbytes(b) for b in pool) / MiB, "gather_ms_per_batch": gather_ms,
              "forward_ms_per_batch": 1000.0 * statistics.median(t["cpu"] for t in seconds["raw_forward"]) / len(sizes),
              "pixels_per_s": summary["per_s"], "ratio": summary["ratio"], "seconds": summary["seconds"],
              "pipeline_peak_rss_mb": pipeline_peak, "peak_rss_mb": memory.phase()}
    pool.clear()
    memory.start()
    result["default_path"] = {**default_path(setup, sampler, mask, batch, n_pixels), "peak_rss_mb": memory.phase()}
    return result


# ----- one model, in a child process --------------------------------------------------------------

def measure_model(name: str, s: Settings, rows: Optional[int]) -> dict[str, Any]:
    """Everything measured for one model (run in a fresh child process)."""
    memory = PeakMemory()
    import torch

    from deephyperx import sampling

    torch.set_num_threads(s.threads)
    if not s.large_patch_copy:
        sampling.LARGE_PATCH_VALUES = float("inf")  # every patch by one gather (the code before the change)
    load_before = os.getloadavg()
    setup = build_setup(name, s)
    setup_peak = memory.phase()
    memory.start()
    training = measure_training(setup, s, memory)
    memory.start()
    inference = measure_inference(setup, s, rows, memory)
    memory.phase()
    cfg = setup.config
    return {
        "model": name, "patch_size": cfg["patch_size"], "batch_size": cfg["batch_size"],
        "optimizer": cfg["optimizer"], "lr": cfg["lr"], "output": cfg["output"],
        "patch_values": int(sum(r.shape[-1] for r in setup.rasters) * cfg["patch_size"] ** 2),
        "augmentation": {k: cfg[k] for k in ("flip_augmentation", "radiation_augmentation", "mixture_augmentation")},
        "n_train": len(setup.maker), "parameters": sum(p.numel() for p in setup.model.parameters()),
        "training": training, "inference": inference,
        "memory": {"peak_rss_mb": memory.overall, "setup_peak_rss_mb": setup_peak,
                   "pipeline_peak_rss_mb": pipeline_peak(setup_peak, training, inference),
                   "training_pipeline_peak_rss_mb": training["pipeline_peak_rss_mb"],
                   "training_peak_rss_mb": training["peak_rss_mb"],
                   "inference_pipeline_peak_rss_mb": inference["pipeline_peak_rss_mb"],
                   "inference_peak_rss_mb": inference["peak_rss_mb"], "per_phase": memory.resettable},
        "load_average": {"before": load_before, "after": os.getloadavg()},
        "meets_aims": meets_aims(training, inference),
    }


def pipeline_peak(setup_peak: Optional[float], training: dict[str, Any],
                  inference: dict[str, Any]) -> Optional[float]:
    """The peak of what a real run holds: setup, training and inference through the pipeline,
    without the ceilings' pre-built batches (None where peaks cannot be reset per phase)."""
    peaks = [setup_peak, training["pipeline_peak_rss_mb"], inference["pipeline_peak_rss_mb"]]
    return None if None in peaks else max(peaks)


def meets_aims(training: dict[str, Any], inference: dict[str, Any]) -> dict[str, Any]:
    """Whether the best pipeline variant reaches each aim, by elapsed time."""
    return {"training": max(training["ratio"]["wall"].values()) >= AIMS["training"],
            "inference": max(inference["ratio"]["wall"].values()) >= AIMS["inference"]}


def run_child(name: str, s: Settings, rows: Optional[int]) -> dict[str, Any]:
    """``measure_model`` in a fresh spawned process, so its peak memory is its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        return pool.submit(measure_model, name, s, rows).result()


# ----- output -------------------------------------------------------------------------------------

def _pct(value: Optional[float]) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _rate(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:,.0f}"


def table(results: Sequence[dict[str, Any]]) -> str:
    """A Markdown table: elapsed-time rates and ratios of the plain and prefetched pipelines to the
    ceiling, the CPU-time ratio of the plain pipeline (its cost alone, whatever else runs), peaks."""
    lines = ["| model | patch | batch | train samples/s: pipeline | +prefetch | ceiling | ratio | +prefetch | "
             "CPU ratio | infer px/s: pipeline | +prefetch | raw forward | ratio | +prefetch | CPU ratio | "
             "peak RSS pipeline (MiB) | whole child |", "|---" * 17 + "|"]
    for r in results:
        t, i = r["training"], r["inference"]
        row = [r["model"], str(r["patch_size"]), str(r["batch_size"])]
        for part, ceiling in ((t, "ceiling"), (i, "raw_forward")):
            rates, ratios = part.get("samples_per_s", part.get("pixels_per_s"))["wall"], part["ratio"]
            row += [_rate(rates["pipeline"]), _rate(rates.get("prefetch")), _rate(rates[ceiling]),
                    _pct(ratios["wall"]["pipeline"]), _pct(ratios["wall"].get("prefetch")),
                    _pct(ratios["cpu"]["pipeline"])]
        peak = r["memory"]["pipeline_peak_rss_mb"]
        row += ["-" if peak is None else f"{peak:,.0f}", f"{r['memory']['peak_rss_mb']:,.0f}"]
        lines.append("| " + " | ".join(row) + " |")
    return "\n".join(lines) + "\n"


def write_report(path: Path, s: Settings, results: list[dict[str, Any]], command: str) -> None:
    import json
    import platform

    report = {"command": command, "scene": SCENE, "split": f"random {s.training_sample:g}", "aims": AIMS,
              "settings": {k: v for k, v in asdict(s).items() if k != "batches"},  # batches: per model
              "cpu_count": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
              "environment": {k: os.environ.get(k) for k in ENVIRONMENT}, "models": results}
    atomic_write_text(path, json.dumps(report, indent=2, allow_nan=False) + "\n")


# ----- command line -------------------------------------------------------------------------------

def per_model(option: str, specs: Sequence[str], models: Sequence[str],
              default: Optional[int]) -> dict[str, Optional[int]]:
    """``--option`` items, ``N`` (every model) or ``MODEL=N`` (one model), as a value per model."""
    values: dict[str, Optional[int]] = {m: default for m in models}
    for spec in specs:
        name, _, value = spec.rpartition("=")
        if not value.isdigit() or int(value) < 1 or (name and name not in values):
            raise UserError(f"--{option} {spec!r}: give N or MODEL=N with N >= 1 and MODEL one of {', '.join(models)}")
        for m in ([name] if name else models):
            values[m] = int(value)
    return values


def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    parser.add_argument("--folder", default=os.environ.get("DEEPHYPERX_DATA", "Datasets"),
                        help="folder holding IndianPines/ (default: $DEEPHYPERX_DATA or Datasets)")
    parser.add_argument("--batches", nargs="+", default=["20"], metavar="[MODEL=]N",
                        help="training batches timed per pass: N for every model, MODEL=N for one (default 20)")
    parser.add_argument("--warmup", type=int, default=2, help="training batches run before timing (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="paired repeats of every pass (default 3)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--prefetch_depth", type=int, default=1,
                        help="batches made ahead in the prefetched passes; 0 skips them (default 1)")
    parser.add_argument("--pool_mb", type=float, default=1024.0,
                        help="memory for the ceilings' pre-built batches, MiB (default 1024)")
    parser.add_argument("--rows", nargs="*", default=[], metavar="[MODEL=]N",
                        help="infer on the top N rows only (all models, or MODEL=N for one); default the whole scene")
    parser.add_argument("--large_patch_copy", choices=("on", "off"), default="on",
                        help="off: cut every patch by one gather, as before the large-patch copy (for comparison)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/benchmarks/pipeline_throughput.json")
    args = parser.parse_args(argv)
    for key in ("repeats", "threads"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key} {getattr(args, key)} must be at least 1")
    for key in ("warmup", "prefetch_depth"):
        if getattr(args, key) < 0:
            raise UserError(f"--{key} {getattr(args, key)} must be at least 0")
    if args.pool_mb <= 0:
        raise UserError(f"--pool_mb {args.pool_mb} must be positive")
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse_args(argv)
        rows = per_model("rows", args.rows, args.models, None)
        batches = per_model("batches", args.batches, args.models, 20)
        command = shlex.join([Path(sys.argv[0]).as_posix(), *(sys.argv[1:] if argv is None else argv)])
        results: list[dict[str, Any]] = []
        for name in args.models:
            print(f"measuring {name} ...", flush=True)
            settings = Settings(args.folder, batches[name], args.warmup, args.repeats, args.threads,
                                args.prefetch_depth, args.pool_mb, args.seed, args.large_patch_copy == "on")
            results.append(run_child(name, settings, rows[name]))
            write_report(Path(args.out), settings, results, command)
        print(table(results), end="")
        print(f"aims: training >= {_pct(AIMS['training'])}, inference >= {_pct(AIMS['inference'])} of the ceiling "
              f"(ratios: elapsed time, median of paired repeats; CPU ratio: process CPU time); written {args.out}")
        return 0
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    except BrokenProcessPool:
        print(f"error: the process measuring {name} died (killed, or out of memory: try a smaller --pool_mb "
              "or --rows); the models measured before it are in --out", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
