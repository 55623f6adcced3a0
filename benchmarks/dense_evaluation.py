"""Dense evaluation against patch-by-patch evaluation of centre-pixel models on real Indian Pines.

For every registered centre-pixel model with an exact dense pass (or those given by --models),
at its default patch size and with untrained weights in eval mode, this times full-scene
inference patch by patch and densely (same batch size and tile budget, one thread by default),
checks that both give the same logits, and sets the measured speedup against the ratio of
multiply-adds (patch by patch over dense, counted by torch's FlopCounterMode)::

    OMP_NUM_THREADS=1 python benchmarks/dense_evaluation.py --models hamida li he liu HybridSN
    python benchmarks/dense_evaluation.py --models chen sharma --patch-pixels 200

Models whose patch path would take long (more than --max-patch-macs multiply-adds over the
scene, e.g. chen and sharma) are timed patch by patch on --patch-pixels random pixels and
extrapolated per pixel; the JSON says so (``patch_time_extrapolated``). Writes the JSON
atomically to --out after each model. Bad input prints one line and exits with status 2.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from typing import Any, Optional, Sequence

import numpy as np
import torch


from deephyperx import models  # noqa: F401  (registers the zoo)
from deephyperx_app.datasets import load_scene
from deephyperx.dense_eval import (DEFAULT_TILE_BYTES, NOT_DENSE, mac_accounting, plan_tiles,  # noqa: E402
                                    supports_dense)
from deephyperx.errors import UserError  # noqa: E402
from deephyperx.inference import centre_logits  # noqa: E402
from deephyperx.preprocessing import fit_normaliser, fit_pca  # noqa: E402
from deephyperx.registry import create_model, get_spec, list_models  # noqa: E402
from deephyperx.reports import save_json  # noqa: E402
from deephyperx.sampling import PatchSampler  # noqa: E402

CPU = torch.device("cpu")


def centre_models() -> list[str]:
    """Registered neural models that classify the centre pixel of a patch."""
    return [n for n in list_models("neural") if get_spec(n).training_defaults()["output"] == "center"]


def build(name: str, n_bands: int, n_classes: int) -> tuple[torch.nn.Module, int]:
    """Model ``name`` at its default patch size, seeded, in eval mode, and that patch size."""
    patch_size = get_spec(name).training_defaults()["patch_size"]
    torch.manual_seed(0)
    return create_model(name, n_bands=n_bands, n_classes=n_classes, patch_size=patch_size).eval(), patch_size


def model_input(cube: np.ndarray, name: str) -> np.ndarray:
    """The scene as the model sees it: standardised, then PCA-reduced when the model's defaults say so."""
    everywhere = np.ones(cube.shape[:2], dtype=bool)
    normalised = fit_normaliser(cube, everywhere).apply(cube)
    reduction = get_spec(name).training_defaults()["reduction"]
    if reduction and reduction.get("name") == "pca":
        return fit_pca(normalised, everywhere, int(reduction["components"])).apply(normalised)
    return normalised


def timed(call) -> tuple[Any, float]:
    started = time.perf_counter()
    result = call()
    return result, time.perf_counter() - started


def subset_mask(shape: tuple[int, int], n: int, seed: int) -> np.ndarray:
    """A mask of ``n`` random pixels (all of them when n is at least the scene's size)."""
    mask = np.zeros(shape, dtype=bool)
    flat = np.random.default_rng(seed).permutation(mask.size)[:n]
    mask.flat[flat] = True
    return mask


def benchmark_model(name: str, cube: np.ndarray, n_classes: int, args: argparse.Namespace) -> dict[str, Any]:
    """One row of the JSON: multiply-adds, both timings and their agreement for model ``name``."""
    data = model_input(cube, name)
    height, width, n_bands = data.shape
    model, patch_size = build(name, n_bands, n_classes)
    if not supports_dense(model):
        raise UserError(f"model {name} has no exact dense evaluation ({NOT_DENSE.get(name, 'no dense_logits')}); "
                        f"choose among: {', '.join(dense_models())}")
    sampler = PatchSampler([data], np.zeros((height, width), dtype=np.int64), patch_size)
    macs = mac_accounting(model, n_bands, patch_size, height, width)
    tiles = plan_tiles(model, sampler, (0, height, 0, width), args.tile_bytes)
    n_pixels = height * width
    subset = macs.macs_patch_per_pixel * n_pixels > args.max_patch_macs
    patch_mask = subset_mask((height, width), args.patch_pixels, args.seed) if subset else None
    run = lambda dense, mask: centre_logits(model, sampler, args.batch_size, CPU, mask, dense=dense,  # noqa: E731
                                            tile_bytes=args.tile_bytes)
    warm = np.zeros((height, width), dtype=bool)
    warm[:8, :8] = True  # a small block: one small dense tile
    run(False, warm), run(True, warm)  # first-call costs (kernel selection, meta registrations)
    dense_logits, seconds_dense = timed(lambda: run(True, None))
    patch_logits, seconds_patch = timed(lambda: run(False, patch_mask))
    timed_pixels = n_pixels if patch_mask is None else int(patch_mask.sum())
    seconds_patch_scene = seconds_patch * n_pixels / timed_pixels
    reference = dense_logits if patch_mask is None else dense_logits[torch.from_numpy(patch_mask.ravel())]
    speedup = seconds_patch_scene / seconds_dense
    return {"model": name, "patch_size": patch_size, "n_bands": n_bands,
            "macs_patch_per_pixel": macs.macs_patch_per_pixel, "macs_dense_per_pixel": macs.macs_dense_per_pixel,
            "mac_ratio": macs.mac_ratio, "seconds_patch": seconds_patch_scene, "seconds_dense": seconds_dense,
            "measured_speedup": speedup, "fraction_of_ratio": speedup / macs.mac_ratio,
            "dense_tiles": len(tiles), "patch_time_extrapolated": subset, "patch_pixels_timed": timed_pixels,
            "seconds_patch_measured": seconds_patch,
            "max_abs_difference": float((reference - patch_logits).abs().max()),
            "max_abs_logit": float(patch_logits.abs().max())}


def dense_models() -> list[str]:
    """Centre-pixel models with an exact dense pass at their default patch size."""
    return [n for n in centre_models() if n not in NOT_DENSE and supports_dense(build(n, 200, 16)[0])]


def parse(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", help="models to time (default: every model that goes dense)")
    parser.add_argument("--data", default="/work/shared/data", help="folder holding IndianPines/")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    parser.add_argument("--batch-size", type=int, default=256, help="patches per batch on the patch path")
    parser.add_argument("--tile-mb", type=float, default=4096,
                        help="bound on a dense tile's estimated peak memory, MiB (default 4096: Indian Pines in one "
                             f"tile for every model, as the multiply-add ratio counts it; the engine's default is "
                             f"{DEFAULT_TILE_BYTES // 2 ** 20})")
    parser.add_argument("--max-patch-macs", type=float, default=2e12,
                        help="above this many multiply-adds over the scene, time the patch path on a subset")
    parser.add_argument("--patch-pixels", type=int, default=128, help="pixels of that subset")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="outputs/benchmarks/dense_evaluation.json")
    args = parser.parse_args(argv)
    if args.threads < 1 or args.batch_size < 1 or args.patch_pixels < 1 or args.tile_mb <= 0:
        raise UserError("--threads, --batch-size, --patch-pixels and --tile-mb must be positive")
    args.tile_bytes = int(args.tile_mb * 2 ** 20)
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    try:
        args = parse(argv)
        torch.set_num_threads(args.threads)
        names = args.models or dense_models()
        unknown = sorted(set(names) - set(centre_models()))
        if unknown:
            raise UserError(f"not centre-pixel models: {', '.join(unknown)}; choose among {', '.join(centre_models())}")
        scene = load_scene("IndianPines", args.data)
        cube = np.asarray(scene.cube, dtype=np.float32)
        report: dict[str, Any] = {
            "scene": scene.name, "shape": list(cube.shape), "threads": args.threads, "batch_size": args.batch_size,
            "tile_bytes": args.tile_bytes, "weights": "untrained (seed 0), eval mode", "torch": torch.__version__,
            "machine": platform.processor() or platform.machine(), "results": [],
            "not_dense": {n: r for n, r in NOT_DENSE.items() if n in centre_models()}}
        for name in names:
            row = benchmark_model(name, cube, scene.n_classes, args)
            report["results"].append(row)
            save_json(args.out, report)
            print(f"{name}: MAC ratio {row['mac_ratio']:.2f}, speedup {row['measured_speedup']:.2f} "
                  f"({100 * row['fraction_of_ratio']:.0f}% of the ratio), patch {row['seconds_patch']:.2f} s"
                  f"{' (extrapolated)' if row['patch_time_extrapolated'] else ''}, dense {row['seconds_dense']:.2f} s",
                  flush=True)
    except UserError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
