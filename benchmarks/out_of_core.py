"""Out-of-core mapping: a scene several times larger than the memory budget, mapped tile by tile.

    python benchmarks/out_of_core.py                                    # 6000 x 6000 x 200, 2GB budget
    python benchmarks/out_of_core.py --height 1000 --width 1000 --budget 100MB --out outputs/out_of_core/small.json

1. Builds (once; reused when present) a synthetic float32 cube ``--height x --width x --bands`` as a
   .npy in ``--folder`` (28.8 GB by default: smooth spatial patterns plus noise, seeded), after
   checking that the disk has room for it and the map.
2. Builds a checkpoint of ``--model`` (default ``hamida``, Ben Hamida et al.'s 3D CNN, patch 5; any
   registered centre-pixel model, at its registered patch size; 16 classes) with seeded, untrained
   weights and a per-band standardisation fitted on 20,000 pixels of the cube, in the format of a
   run's model.pt. Throughput and memory do not depend on what the weights learnt.
3. Maps the cube with :func:`deephyperx.tiled_mapping.map_scene` under ``--budget`` in a child
   process (the same code as ``python main.py map --restore CHECKPOINT --cube CUBE --out MAP
   --memory_budget BUDGET``) and reads the child's peak resident memory from the kernel
   (``ru_maxrss`` of ``os.wait4``). A second child does everything but the tiles (imports Python,
   torch and the zoo, loads the model, plans the tiles, opens the output), to give the baseline
   every mapping process pays whatever the scene. The budget bounds the memory above it.

Each step runs in its own child so that this parent stays small: a child's peak resident memory
starts from its parent's. Writes ``--out`` (JSON, atomically) with the scene, bytes on disk,
budget, peak and baseline memory, the model's parameter bytes, tiles, pixels/s and seconds, and
the commands that reproduce it. Bad input prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]

N_CLASSES = 16
DEFAULT_MODEL = "hamida"
#: Room kept free on the disk beyond the cube and the map (bytes).
DISK_MARGIN = 2 * 10 ** 9
#: Pixels sampled to fit the normalisation.
SAMPLE_PIXELS = 20_000


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--height", type=int, default=6000)
    parser.add_argument("--width", type=int, default=6000)
    parser.add_argument("--bands", type=int, default=200)
    parser.add_argument("--budget", default="2GB", help="--memory_budget of the mapping (default 2GB)")
    parser.add_argument("--folder", default="outputs/out_of_core", help="where the cube, model and map go")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads in the mapping child (default: torch's)")
    parser.add_argument("--batch_size", type=int, default=None)
    parser.add_argument("--keep_map", action="store_true", help="keep the map (deleted by default)")
    parser.add_argument("--out", default=None, help="JSON report (default: FOLDER/out_of_core_HxWxB_BUDGET.json)")
    parser.add_argument("--child", choices=["cube", "model", "baseline", "map"], help=argparse.SUPPRESS)
    parser.add_argument("--cube", help=argparse.SUPPRESS)
    parser.add_argument("--model", default=DEFAULT_MODEL,
                        help="registered centre-pixel model to map with (default hamida; li and liu are the fastest "
                             "dense ones)")
    parser.add_argument("--checkpoint", help=argparse.SUPPRESS)
    parser.add_argument("--map", help=argparse.SUPPRESS)
    parser.add_argument("--report", help=argparse.SUPPRESS)
    return parser


# ----- children (they import numpy and torch; the parent does not) -----------------------------

def child_cube(path: Path, height: int, width: int, bands: int, seed: int = 0) -> None:
    """Write a seeded synthetic cube as .npy, a block of rows at a time (never whole in memory):
    a few smooth spatial patterns mixed into the bands, plus noise, in reflectance-like units."""
    import numpy as np

    partial = path.with_name(path.name + ".partial")
    data = np.lib.format.open_memmap(partial, mode="w+", dtype=np.float32, shape=(height, width, bands))
    offset = data.offset
    del data
    rng = np.random.default_rng(seed)
    mixing = rng.uniform(0.2, 1.0, size=(4, bands)).astype(np.float32)
    cols = np.arange(width, dtype=np.float32)
    rows_per_block = max(1, (64 * 2 ** 20) // (width * bands * 4))
    with open(partial, "r+b") as handle:
        for r0 in range(0, height, rows_per_block):
            rows = np.arange(r0, min(r0 + rows_per_block, height), dtype=np.float32)[:, None]
            patterns = np.stack([np.sin(rows / 37.0) * np.cos(cols / 53.0), np.sin((rows + cols) / 91.0),
                                 np.cos(rows / 211.0 - cols / 173.0), np.sin(rows * cols / 5e5)], axis=-1)
            block = 1000 + 400 * patterns @ mixing + 30 * rng.standard_normal((len(rows), width, bands), np.float32)
            os.pwrite(handle.fileno(), np.ascontiguousarray(block, np.float32).tobytes(),
                      offset + r0 * width * bands * 4)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(partial, path)


def child_model(path: Path, cube_path: Path, model_name: str) -> None:
    """A ``model_name`` checkpoint in a run's model.pt format: seeded weights, normalisation fitted on a
    sample of the cube's pixels (read window by window)."""
    import numpy as np

    from deephyperx import models  # noqa: F401  (registers the zoo)
    from deephyperx.checkpoint import save_checkpoint
    from deephyperx.config import resolve_config
    from deephyperx.lazy_cube import open_lazy_cube
    from deephyperx.preprocessing import fit_normaliser
    from deephyperx.registry import create_model, get_spec
    from deephyperx.seeding import seed_everything

    cube = open_lazy_cube(cube_path)
    height, width, bands = cube.shape
    rng = np.random.default_rng(0)
    rows = np.sort(rng.integers(0, height, 100))
    sample = np.concatenate([cube.read((int(r), int(r) + 1, 0, width))[0] for r in rows])
    sample = sample[rng.choice(len(sample), min(SAMPLE_PIXELS, len(sample)), replace=False)]
    normaliser = fit_normaliser(sample[None], np.ones((1, len(sample)), dtype=bool), "standard")
    config = resolve_config(get_spec(model_name), {"seed": 0})
    seed_everything(0)
    network = create_model(model_name, n_bands=bands, n_classes=N_CLASSES, patch_size=config["patch_size"],
                           **config["model_args"])
    save_checkpoint(path, {"model_state": network.state_dict(), "config": config,
                           "normalisers": {"cube": normaliser.state_dict()}, "projection": None, "n_bands": bands,
                           "class_names": [f"class{k}" for k in range(N_CLASSES)], "scene": "synthetic"})


def child_baseline(report: Path, model: Path, cube: Path, out: Path, budget: str, batch_size: Optional[int]) -> None:
    """Everything the mapping child does but map: import the libraries, load the model, plan the
    tiles (which runs the dense pass's shape probes) and open the output; then remove it."""
    import torch

    from deephyperx import models  # noqa: F401
    from deephyperx.tiled_mapping import prepare_job

    job = prepare_job(model, cube, out, memory_budget=budget, batch_size=batch_size)
    job.writer.abandon()
    _write_json(report, {"torch_threads": torch.get_num_threads()})


def child_map(report: Path, model: Path, cube: Path, out: Path, budget: str, threads: Optional[int],
              batch_size: Optional[int]) -> None:
    """Map the cube in this process and write the mapping report."""
    import torch

    from deephyperx import models  # noqa: F401
    from deephyperx.tiled_mapping import load_mapping_model, map_scene

    if threads:
        torch.set_num_threads(threads)
    result = map_scene(model, cube, out, memory_budget=budget, batch_size=batch_size, progress=sys.stderr.isatty())
    loaded = load_mapping_model(model)
    _write_json(report, {**result.as_dict(), "model_parameter_bytes": loaded.parameter_bytes,
                         "patch_size": loaded.patch_size,
                         "torch_threads": torch.get_num_threads()})


def _write_json(path: Path, data: dict[str, Any]) -> None:
    from deephyperx.atomic import atomic_write_text

    atomic_write_text(path, json.dumps(data, indent=2, default=str))


# ----- the parent --------------------------------------------------------------------------------

def run_child(argv: Sequence[str]) -> tuple[float, int]:
    """Run this script as a child with ``argv``; its wall seconds and peak resident bytes. A
    failing child stops the benchmark with its exit status."""
    started = time.perf_counter()
    process = subprocess.Popen([sys.executable, str(Path(__file__).resolve()), *argv], cwd=ROOT)
    _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise SystemExit(process.returncode)
    scale = 1 if sys.platform == "darwin" else 1024  # ru_maxrss: bytes on macOS, KiB on Linux
    return time.perf_counter() - started, usage.ru_maxrss * scale


def _unusable_model(name: str) -> Optional[str]:
    """Why ``name`` cannot be benchmarked here (None when it can): the rule of ``main.py map``.
    The parent imports the zoo for this check only; its own memory is not measured."""
    from deephyperx import models  # noqa: F401  (registers the zoo)
    from deephyperx.registry import get_spec, list_models
    from deephyperx.tiled_mapping import unmappable_reason

    if name not in list_models():
        return f"--model {name!r} is not a registered model; choose one of: {', '.join(list_models('neural'))}"
    spec = get_spec(name)
    reason = unmappable_reason(spec, spec.training_defaults()["inputs"])
    return f"--model {name!r}: {reason}" if reason else None


def _fail(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 2


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if args.child:
        return run_as_child(args)
    if min(args.height, args.width, args.bands) < 1:
        return _fail(f"--height/--width/--bands must be positive, not {args.height}x{args.width}x{args.bands}")
    folder = Path(args.folder)
    folder.mkdir(parents=True, exist_ok=True)
    name = f"{args.height}x{args.width}x{args.bands}"
    problem = _unusable_model(args.model)
    if problem:
        return _fail(problem)
    cube, model = folder / f"cube_{name}.npy", folder / f"{args.model}_{args.bands}bands.pt"
    out_map = folder / f"map_{name}.npy"
    report_path = Path(args.out) if args.out else folder / f"out_of_core_{name}_{args.budget}.json"
    cube_bytes = args.height * args.width * args.bands * 4
    map_bytes = args.height * args.width
    free = shutil.disk_usage(folder).free
    needed = (0 if cube.is_file() else cube_bytes) + map_bytes + DISK_MARGIN
    if free < needed:
        return _fail(f"{folder} has {free / 1e9:.1f} GB free but the {name} cube and its map need "
                     f"{needed / 1e9:.1f} GB (with {DISK_MARGIN / 1e9:.0f} GB to spare); free some space, "
                     "choose another --folder or a smaller --height/--width/--bands")
    if not cube.is_file():
        print(f"building {cube} ({cube_bytes / 1e9:.1f} GB)", file=sys.stderr)
        run_child(["--child", "cube", "--cube", str(cube), "--height", str(args.height), "--width",
                   str(args.width), "--bands", str(args.bands)])
    if not model.is_file():
        run_child(["--child", "model", "--model", args.model, "--checkpoint", str(model), "--cube", str(cube)])
    child_report = folder / "child_report.json"
    for stale in (out_map, folder / f"map_{name}.json", folder / f"map_{name}.npy.partial",
                  folder / f"map_{name}.npy.partial.json"):
        stale.unlink(missing_ok=True)
    common = ["--report", str(child_report), "--checkpoint", str(model), "--cube", str(cube), "--map",
              str(out_map), "--budget", args.budget]
    common += ["--batch_size", str(args.batch_size)] if args.batch_size else []
    _, baseline = run_child(["--child", "baseline", *common])
    wall, peak = run_child(["--child", "map", *common, *(["--threads", str(args.threads)] if args.threads else [])])
    mapped = json.loads(child_report.read_text())
    child_report.unlink()
    if not args.keep_map:
        for path in (out_map, folder / f"map_{name}.json"):
            path.unlink(missing_ok=True)
    result = summary(args, cube, model, cube_bytes, mapped["memory_budget"], baseline, peak, wall, mapped)
    from deephyperx.atomic import atomic_write_text

    atomic_write_text(report_path, json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("scene", "memory", "speed")}, indent=2))
    print(f"wrote {report_path}", file=sys.stderr)
    return 0


def summary(args: argparse.Namespace, cube: Path, model: Path, cube_bytes: int, budget: int, baseline: int,
            peak: int, wall: float, mapped: dict[str, Any]) -> dict[str, Any]:
    """The JSON report."""
    pixels = args.height * args.width
    above = peak - baseline
    command = ["python", "benchmarks/out_of_core.py", "--height", str(args.height), "--width", str(args.width),
               "--bands", str(args.bands), "--budget", args.budget, "--folder", args.folder]
    command += ["--model", args.model] if args.model != DEFAULT_MODEL else []
    command += ["--threads", str(args.threads)] if args.threads else []
    command += ["--batch_size", str(args.batch_size)] if args.batch_size else []
    return {
        "scene": {"height": args.height, "width": args.width, "bands": args.bands, "dtype": "float32",
                  "pixels": pixels, "bytes_on_disk": cube.stat().st_size, "cube_over_budget": cube_bytes / budget,
                  "file": str(cube)},
        "model": {"name": args.model, "patch_size": mapped["patch_size"], "classes": N_CLASSES,
                  "weights": "seeded, untrained",
                  "parameter_bytes": mapped["model_parameter_bytes"], "checkpoint": str(model)},
        "memory": {"budget_bytes": budget, "budget": args.budget, "peak_rss_bytes": peak,
                   "baseline_rss_bytes": baseline, "peak_above_baseline_bytes": above,
                   "estimated_peak_bytes": mapped["estimated_peak"], "estimate": mapped["memory_estimate"],
                   "within_budget": above <= budget,
                   "within_budget_plus_model": above <= budget + mapped["model_parameter_bytes"]},
        "speed": {"pixels_per_second": mapped["pixels_per_second"], "mapping_seconds": mapped["seconds"],
                  "child_wall_seconds": wall, "tiles": mapped["tiles"], "tile_side": mapped["tile_side"],
                  "batch_size": mapped["batch_size"], "dense_pass": mapped["dense_pass"],
                  "torch_threads": mapped["torch_threads"]},
        "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "python": platform.python_version()},
        "commands": {"benchmark": shlex.join(command),
                     "equivalent_map": shlex.join(["python", "main.py", "map", "--restore", str(model), "--cube",
                                                   str(cube), "--out", "map.npy", "--memory_budget", args.budget])},
    }


def run_as_child(args: argparse.Namespace) -> int:
    from deephyperx.errors import UserError

    try:
        _run_child_step(args)
    except UserError as error:
        return _fail(str(error))
    return 0


def _run_child_step(args: argparse.Namespace) -> None:
    if args.child == "cube":
        child_cube(Path(args.cube), args.height, args.width, args.bands)
    elif args.child == "model":
        child_model(Path(args.checkpoint), Path(args.cube), args.model)
    elif args.child == "baseline":
        child_baseline(Path(args.report), Path(args.checkpoint), Path(args.cube), Path(args.map), args.budget,
                       args.batch_size)
    else:
        child_map(Path(args.report), Path(args.checkpoint), Path(args.cube), Path(args.map), args.budget,
                  args.threads, args.batch_size)


if __name__ == "__main__":
    sys.exit(main())
