"""Train one centre-pixel model on a catalogue of many scene files through a bounded cache, and
measure what it costs (the issue's "many scenes" item: MiniFrance / Sentinel-2 settings).

1. Writes ``--scenes`` scene files (``--rows`` x ``--cols`` x ``--bands`` float32 .npy cubes, or
   chunked HDF5 with ``--format h5``, and uint8 labels) of one synthetic sensor: every scene has
   its own layout of regions, all share the classes' spectra (plus illumination and noise). Files
   are written a band of rows at a time, and reused when a previous run left the same ones.
2. Trains ``--model`` for ``--samples`` patches (``--epochs`` epochs) through
   ``python main.py catalogue`` in a child process with ``--cache_bytes``, holding out
   the last ``--test_scenes`` scenes, and scores it on them scene by scene.
3. Measures the peak resident memory of that child (``VmHWM``: its own peak after exec) against a
   child that imports the same modules and trains the same model on random in-memory batches of
   the same shape (the difference is the data path's cost: cache, blocks in flight, index), the
   cache's hit rate and peak, training samples/s
   and the held-out OA; and, for the segmentation side, the peak of decoded rasters held by a tile
   set's ``RasterCache`` and of ``TileReader``'s normalised tiles while ``RandomCrops`` draws across
   ``--tiles`` PNG tiles with a cache of an eighth of them.

    python benchmarks/many_scenes.py                       # 64 scenes of 512x512x64 (4.3 GB), 256MB cache
    python benchmarks/many_scenes.py --scenes 16 --rows 256 --cols 256 --bands 32 --cache 32MB

Writes ``--out`` (default outputs/benchmarks/many_scenes.json) atomically. The scene files go to
``--data`` (default: a temporary folder, deleted at the end unless ``--keep``).
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
import tempfile
import time
from pathlib import Path
from typing import Any, Optional, Sequence

ROOT = Path(__file__).resolve().parents[1]

import numpy as np  # noqa: E402

from deephyperx.atomic import atomic_write_text  # noqa: E402
from deephyperx.errors import UserError  # noqa: E402

#: Rows written at once when a scene file is generated.
WRITE_ROWS = 64
#: Typical distance in pixels between the centres of two regions of a scene.
REGION_SPACING = 24
#: Share of regions left unlabelled.
UNLABELLED_SHARE = 0.1
NOISE_STD, ILLUMINATION_STD = 0.03, 0.05
#: Amplitude of each class's deviation from the shared spectrum.
CLASS_DEVIATION = 0.08


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenes", type=int, default=64)
    parser.add_argument("--rows", type=int, default=512)
    parser.add_argument("--cols", type=int, default=512)
    parser.add_argument("--bands", type=int, default=64)
    parser.add_argument("--classes", type=int, default=8)
    parser.add_argument("--format", choices=("npy", "h5"), default="npy")
    parser.add_argument("--test_scenes", type=int, default=4, help="last scenes held out for testing")
    parser.add_argument("--cache", default="256MB", help="cache bound of the training run (--cache_bytes)")
    parser.add_argument("--model", default="hu")
    parser.add_argument("--patch_size", type=int, help="default: the model's")
    parser.add_argument("--samples", type=int, default=200_000, help="training patches in all")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--batch_size", type=int, default=100)
    parser.add_argument("--lr", type=float, default=0.05)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--tiles", type=int, default=32, help="PNG tiles of the segmentation-side check (0: skip)")
    parser.add_argument("--data", help="folder of the scene files (default: a temporary folder)")
    parser.add_argument("--keep", action="store_true", help="keep the scene files and the run folder")
    parser.add_argument("--out", default="outputs/benchmarks/many_scenes.json")
    return parser


# ----- scene files --------------------------------------------------------------------------------

def class_spectra(n_classes: int, n_bands: int, seed: int) -> np.ndarray:
    """Reflectance spectra (n_classes, n_bands): a shared smooth curve plus a small smooth
    deviation per class (:data:`CLASS_DEVIATION`), so that single noisy spectra overlap somewhat
    (a linear classifier scores about 92 % on 32 bands, 98 % on 64)."""
    rng = np.random.default_rng([seed, 0])
    x = np.linspace(0, 1, n_bands)
    deviation = np.zeros((n_classes, n_bands))
    for _ in range(3):
        centre, width = rng.uniform(0, 1, (n_classes, 1)), rng.uniform(0.05, 0.2, (n_classes, 1))
        deviation += rng.uniform(-1, 1, (n_classes, 1)) * np.exp(-0.5 * ((x - centre) / width) ** 2)
    return (0.3 + 0.1 * x + CLASS_DEVIATION * deviation).astype(np.float32)


def scene_labels(rows: int, cols: int, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Region layout of one scene: class + 1 per region (Voronoi cells), 0 for unlabelled regions."""
    from scipy.spatial import cKDTree

    n_regions = max(2 * n_classes, rows * cols // REGION_SPACING ** 2)
    centres = rng.uniform((0, 0), (rows, cols), (n_regions, 2))
    values = rng.integers(1, n_classes + 1, n_regions).astype(np.uint8)
    values[rng.random(n_regions) < UNLABELLED_SHARE] = 0
    grid = np.stack(np.mgrid[0:rows, 0:cols], axis=-1).reshape(-1, 2)
    return values[cKDTree(centres).query(grid)[1]].reshape(rows, cols)


def write_scene(folder: Path, name: str, labels: np.ndarray, spectra: np.ndarray, fmt: str,
                rng: np.random.Generator) -> dict[str, str]:
    """Write one scene's cube a band of rows at a time (unlabelled regions get a random class's
    spectrum); return its catalogue entry."""
    rows, cols = labels.shape
    bands = spectra.shape[1]
    material = np.where(labels > 0, labels.astype(np.int64) - 1, rng.integers(0, len(spectra), labels.shape))
    np.save(folder / f"{name}_gt.npy", labels)
    if fmt == "h5":
        import h5py

        handle = h5py.File(folder / f"{name}.h5", "w")
        cube = handle.create_dataset("cube", (rows, cols, bands), np.float32,
                                     chunks=(min(64, rows), min(64, cols), bands))
    else:
        handle = None
        cube = np.lib.format.open_memmap(folder / f"{name}.npy", "w+", np.float32, (rows, cols, bands))
    for r in range(0, rows, WRITE_ROWS):
        block = spectra[material[r:r + WRITE_ROWS]]
        block *= 1 + ILLUMINATION_STD * rng.standard_normal(block.shape[:2] + (1,), dtype=np.float32)
        block += NOISE_STD * rng.standard_normal(block.shape, dtype=np.float32)
        cube[r:r + WRITE_ROWS] = block
    if handle is not None:
        handle.close()
        return {"name": name, "cube": f"{name}.h5", "labels": f"{name}_gt.npy", "cube_key": "cube"}
    cube.flush()
    del cube
    return {"name": name, "cube": f"{name}.npy", "labels": f"{name}_gt.npy"}


def write_catalogue_files(folder: Path, args: argparse.Namespace) -> tuple[Path, float]:
    """The scene files and catalogue.yaml (reused when ``spec.json`` shows the same request);
    returns the catalogue path and the seconds spent writing."""
    from deephyperx.scene_catalogue import write_catalogue

    spec = {k: getattr(args, k) for k in ("scenes", "rows", "cols", "bands", "classes", "format", "test_scenes",
                                          "seed")}
    path, marker = folder / "catalogue.yaml", folder / "spec.json"
    if path.is_file() and marker.is_file() and json.loads(marker.read_text()) == spec:
        return path, 0.0
    started = time.perf_counter()
    folder.mkdir(parents=True, exist_ok=True)
    spectra = class_spectra(args.classes, args.bands, args.seed)
    entries = []
    for s in range(args.scenes):
        rng = np.random.default_rng([args.seed, s + 1])
        labels = scene_labels(args.rows, args.cols, args.classes, rng)
        entries.append(write_scene(folder, f"s{s:03d}", labels, spectra, args.format, rng))
    held_out = [e["name"] for e in entries[len(entries) - args.test_scenes:]]
    write_catalogue(path, entries, [f"class {k + 1}" for k in range(args.classes)], name="many_scenes",
                    split={"test_scenes": held_out})
    atomic_write_text(marker, json.dumps(spec))
    return path, time.perf_counter() - started


def bytes_on_disk(folder: Path) -> int:
    return int(sum(p.stat().st_size for p in folder.iterdir() if p.suffix in (".npy", ".h5")))


# ----- children -----------------------------------------------------------------------------------

def peak_rss() -> dict[str, int]:
    """This process's peak and current resident bytes (its own, since exec)."""
    fields = {}
    with open("/proc/self/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                fields[key] = int(value.split()[0]) * 1024
    return {"peak_rss_bytes": fields.get("VmHWM", 0), "final_rss_bytes": fields.get("VmRSS", 0)}


def child_main(mode: str, report: str, argv: Sequence[str]) -> int:
    """In a child: run the catalogue command (``train``), or (``baseline``) import the same modules
    and train the same model on random in-memory batches of the same shape (``argv``: model, bands,
    classes, patch size, batch size), so that the difference of the two peaks is what the data path
    (cache, blocks, index) costs; write the peak resident memory to ``report``."""
    import torch

    torch.set_num_threads(max(1, int(os.environ.get("OMP_NUM_THREADS", "1"))))
    from deephyperx_app import main  # the command line (it registers the zoo): both modes import the same modules

    if mode == "train":
        status, extra = main.main(["catalogue", *argv]), {}
    else:
        status, extra = 0, {"samples_per_second": baseline_training(*argv)}
    atomic_write_text(report, json.dumps({"status": status, **extra, **peak_rss()}))
    return status


def baseline_training(model_name: str, bands: str, classes: str, patch: str, batch: str, steps: int = 200) -> float:
    """The model's own cost: ``steps`` training steps on a pool of random batches made beforehand
    (the model's ceiling, in samples/s, returned) and as many scoring batches."""
    import torch

    import deephyperx.file_monitor  # noqa: F401  (what a run imports for its reports)
    from deephyperx.registry import create_model, get_spec
    from deephyperx.steps import build_optimizer

    n_bands, n_classes, batch_size = int(bands), int(classes), int(batch)
    patch_size = int(patch) if int(patch) else get_spec(model_name).training_defaults()["patch_size"]
    model = create_model(model_name, n_bands=n_bands, n_classes=n_classes, patch_size=patch_size)
    config = {**get_spec(model_name).training_defaults(), "lr": 0.01}
    optimizer = build_optimizer(model.parameters(), config)
    pool = [(torch.randn(batch_size, n_bands, patch_size, patch_size), torch.randint(0, n_classes, (batch_size,)))
            for _ in range(10)]
    started = time.perf_counter()
    for step in range(steps):
        x, y = pool[step % len(pool)]
        optimizer.zero_grad()
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimizer.step()
    rate = steps * batch_size / (time.perf_counter() - started)
    model.eval()
    with torch.no_grad():
        for _ in range(steps // 4):
            model(torch.randn(max(batch_size, 256), n_bands, patch_size, patch_size))
    return rate


def run_child(mode: str, argv: Sequence[str], log: Path) -> dict[str, Any]:
    """Run :func:`child_main` in a fresh interpreter; its report, or a UserError with its last line."""
    with tempfile.TemporaryDirectory() as scratch:
        report = Path(scratch) / "report.json"
        with open(log, "a") as handle:
            done = subprocess.run([sys.executable, __file__, "--child", mode, str(report), *argv], cwd=ROOT,
                                  stdout=handle, stderr=subprocess.STDOUT)
        if done.returncode != 0 or not report.is_file():
            tail = log.read_text().strip().splitlines()[-1:] or ["no output"]
            raise UserError(f"the {mode} child failed with status {done.returncode}: {tail[0]} (log: {log})")
        return json.loads(report.read_text())


# ----- the segmentation side ----------------------------------------------------------------------

def segmentation_caches(folder: Path, n_tiles: int, seed: int) -> dict[str, Any]:
    """RandomCrops across ``n_tiles`` PNG tiles (decoded whole, so held in memory) with the tile
    set's RasterCache and TileReader bounded to an eighth of the tiles: their peaks."""
    import torch
    from PIL import Image

    from deephyperx.seeding import torch_generator
    from deephyperx.tile_sampling import RandomCrops, TileReader, fit_source_normalisers
    from deephyperx.tiles import Region, Tile, TileSet, ValueDecoder
    from deephyperx.sampling import batches

    torch.set_num_threads(1)
    rng = np.random.default_rng(seed)
    size, crop = 256, 64
    tiles = {}
    folder.mkdir(parents=True, exist_ok=True)
    for k in range(n_tiles):
        Image.fromarray(rng.integers(0, 255, (size, size, 3), dtype=np.uint8)).save(folder / f"i{k}.png")
        Image.fromarray(rng.integers(1, 4, (size, size), dtype=np.uint8)).save(folder / f"l{k}.png")
        tiles[f"i{k}"] = Tile(f"i{k}", {"image": str(folder / f"i{k}.png")}, str(folder / f"l{k}.png"))
    decoded = n_tiles * size * size * 4  # image (3 bytes) and labels (1 byte) per pixel
    bound = max(decoded // 8, size * size * 4)
    tileset = TileSet("pngs", tiles, ["a", "b", "c"], [(1, 1, 1), (2, 2, 2), (3, 3, 3)], {"image": 3},
                      [Region(t) for t in tiles], [], ValueDecoder([1, 2, 3], ignored=[0]), cache_bytes=bound)
    normalisers = fit_source_normalisers(tileset, tileset.train, ["image"])
    reader_bound = n_tiles * size * size * 14 // 8  # normalised float32 image and int16 labels
    reader = TileReader(tileset, ["image"], normalisers, cache_bytes=reader_bound)
    crops = RandomCrops(tileset, tileset.train, ["image"], crop, normalisers, reader=reader)
    peak, samples, started = 0, 0, time.perf_counter()
    for batch in batches(crops, 16, torch_generator(seed, 0, 2), shuffle=True, n_samples=40 * n_tiles):
        peak = max(peak, sum(r.resident_bytes for _, r in tileset._rasters._rasters.values()))
        samples += len(batch.target)
    held = [a for arrays in reader._cache.values() if arrays is not None for a in arrays]
    held += [a for a in reader._labels.values() if a is not None]
    return {"tiles": n_tiles, "tile_pixels": size * size, "decoded_bytes_all_tiles": decoded,
            "raster_cache_bound": bound, "raster_cache_peak": peak, "tile_reader_bound": reader_bound,
            "tile_reader_held": int(sum(a.nbytes for a in held)), "crops": samples, "crop": crop,
            "crops_per_second": samples / (time.perf_counter() - started)}


# ----- the benchmark ------------------------------------------------------------------------------

def check(args: argparse.Namespace) -> None:
    for key in ("scenes", "rows", "cols", "bands", "classes", "samples", "epochs", "batch_size"):
        if getattr(args, key) < 1:
            raise UserError(f"--{key} {getattr(args, key)} must be at least 1")
    if not 1 <= args.test_scenes < args.scenes:
        raise UserError(f"--test_scenes {args.test_scenes} must be between 1 and --scenes - 1 ({args.scenes - 1})")
    if args.samples < args.epochs:
        raise UserError(f"--samples {args.samples} must be at least --epochs {args.epochs}")


def run(args: argparse.Namespace, argv: Sequence[str]) -> dict[str, Any]:
    from deephyperx.sizes import parse_size

    check(args)
    cache = parse_size(args.cache, "--cache")
    data = Path(args.data) if args.data else Path(tempfile.mkdtemp(prefix="many_scenes_"))
    try:
        catalogue, write_seconds = write_catalogue_files(data, args)
        log = data / "train.log"
        log.unlink(missing_ok=True)
        runs = data / "runs"
        shutil.rmtree(runs, ignore_errors=True)
        train_argv = ["--catalogue", str(catalogue), "--model", args.model, "--epoch", str(args.epochs),
                      "--epoch_samples", str(args.samples // args.epochs), "--batch_size", str(args.batch_size),
                      "--lr", str(args.lr), "--cache_bytes", str(cache), "--seed", str(args.seed), "--out", str(runs)]
        if args.patch_size:
            train_argv += ["--patch_size", str(args.patch_size)]
        baseline = run_child("baseline", [args.model, str(args.bands), str(args.classes), str(args.patch_size or 0),
                                          str(args.batch_size)], log)
        trained = run_child("train", train_argv, log)
        (metrics_path,) = runs.glob("*/seed*/metrics.json")
        metrics = json.loads(metrics_path.read_text())
        segmentation = segmentation_caches(data / "tiles", args.tiles, args.seed) if args.tiles else None
        on_disk = bytes_on_disk(data)
        result = {
            "command": "python benchmarks/many_scenes.py " + " ".join(shlex.quote(a) for a in argv),
            "train_command": "python main.py catalogue " + " ".join(shlex.quote(a) for a in train_argv),
            "settings": vars(args), "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                "python": platform.python_version(),
                                                "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
            "scenes": args.scenes, "scene_shape": [args.rows, args.cols, args.bands],
            "bytes_on_disk": on_disk, "write_seconds": write_seconds,
            "cache_bound_bytes": cache, "cache_bound_share_of_disk": cache / on_disk,
            "peak_rss_bytes": trained["peak_rss_bytes"], "model_only_peak_rss_bytes": baseline["peak_rss_bytes"],
            "peak_rss_above_model_only_bytes": trained["peak_rss_bytes"] - baseline["peak_rss_bytes"],
            "cache_peak_bytes": metrics["cache"]["peak_bytes"], "cache_hit_rate": metrics["cache"]["hit_rate"],
            "cache_hits": metrics["cache"]["hits"], "cache_misses": metrics["cache"]["misses"],
            "cache_misses_per_epoch": [e["misses"] for e in metrics["cache"]["per_epoch"]],
            "training_cache_hit_rate": metrics["cache"]["training"]["hit_rate"],
            "blocks": metrics["blocks"], "block_rows": metrics["block_rows"], "group_size": metrics["group_size"],
            "samples_trained": metrics["samples_trained"], "train_seconds": metrics["train_seconds"],
            "samples_per_second": metrics["samples_trained"] / metrics["train_seconds"],
            "model_only_samples_per_second": baseline["samples_per_second"],
            "index_seconds": metrics["index_seconds"], "normaliser_seconds": metrics["normaliser_seconds"],
            "scoring_seconds": metrics["scoring_seconds"], "test_pixels": metrics["n_test"],
            "test_pixels_per_second": metrics["n_test"] / metrics["scoring_seconds"],
            "overall_accuracy": metrics["overall_accuracy"], "average_accuracy": metrics["average_accuracy"],
            "kappa": metrics["kappa"],
            "per_scene_oa": {row["scene"]: row["overall_accuracy"] for row in metrics["scenes"]
                             if "overall_accuracy" in row},
            "segmentation": segmentation,
        }
    finally:
        if not args.keep and not args.data:
            shutil.rmtree(data, ignore_errors=True)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out, json.dumps(result, indent=2) + "\n")
    return result


def summary(result: dict[str, Any]) -> str:
    gb, mb = 1e9, 1e6
    seg = result["segmentation"]
    lines = [f"{result['scenes']} scenes {tuple(result['scene_shape'])}: "
             f"{result['bytes_on_disk'] / gb:.2f} GB on disk, "
             f"cache bound {result['cache_bound_bytes'] / mb:.0f} MB (peak {result['cache_peak_bytes'] / mb:.1f} MB, "
             f"hit rate {result['cache_hit_rate']:.3f})",
             f"peak RSS {result['peak_rss_bytes'] / mb:.0f} MB (the model trained on random in-memory batches: "
             f"{result['model_only_peak_rss_bytes'] / mb:.0f} MB)",
             f"training {result['samples_per_second']:.0f} samples/s (the model alone on in-memory batches: "
             f"{result['model_only_samples_per_second']:.0f}), held-out OA {100 * result['overall_accuracy']:.2f} %"]
    if seg:
        lines.append(f"segmentation tiles: raster cache peak {seg['raster_cache_peak'] / mb:.2f} MB of "
                     f"{seg['raster_cache_bound'] / mb:.2f} MB bound ({seg['decoded_bytes_all_tiles'] / mb:.1f} MB "
                     f"decoded in all), tile reader {seg['tile_reader_held'] / mb:.2f} of "
                     f"{seg['tile_reader_bound'] / mb:.2f} MB")
    return "\n".join(lines)


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--child"]:
        return child_main(argv[1], argv[2], argv[3:])
    try:
        result = run(build_parser().parse_args(argv), argv)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(summary(result))
    print(f"written: {build_parser().parse_args(argv).out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
