"""``python main.py map``: map a scene of any size with a trained model, tile by tile.

    python main.py map --restore outputs/RUN/seed0/model.pt --cube scene.tif --out map.tif
    python main.py map --restore model.pt --cube big.npy --out map.npy --memory_budget 2GB --probabilities
    python main.py map --restore model.pt --cube big.h5 --key cube --out map.h5 --dask local --workers 4
    python main.py map --restore model.pt --cube big.hdr --out map.tif --dask tcp://scheduler:8786

The cube is read window by window (.npy, HDF5, MATLAB v7.3, ENVI .hdr, GeoTIFF) and never loaded
whole; --memory_budget bounds the memory of one mapping process (each Dask worker), beyond the
Python interpreter and libraries. The map is written as it goes into <out>.partial with a manifest
of finished tiles: an interrupted job resumes when the same command is given again, and only a
complete map appears at --out. A GeoTIFF map keeps the cube's georeferencing. Class k is pixel
value k; <stem>.json names the classes. Bad input prints one line and exits with status 2.

This module wires the model zoo (``models``) to the engine, as ``main.py`` does, so it imports it.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional, Sequence

from deephyperx.command_line import OneLineParser
from deephyperx.disk import check_writable_folder
from deephyperx.errors import UserError
from deephyperx.plugins import Plugins

def build_parser() -> argparse.ArgumentParser:
    parser = OneLineParser(prog="main.py map", help_hint="python main.py map --help", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--restore", required=True, metavar="MODEL_PT",
                        help="checkpoint of a trained pixel classifier (RUN/seedN/model.pt)")
    parser.add_argument("--cube", required=True, help="cube to map (.npy .h5 .hdf5 .mat .hdr .tif .tiff)")
    parser.add_argument("--key", help="dataset (HDF5) or variable (MATLAB) name when the file holds several")
    parser.add_argument("--out", required=True, help="class map to write (.tif .tiff .npy .h5 .hdf5)")
    parser.add_argument("--probabilities", action="store_true",
                        help="also write class probabilities, float16 (rows, cols, classes)")
    parser.add_argument("--memory_budget", default="2GB",
                        help="memory of one mapping process, e.g. 2GB, 500MB, 1.5GiB (default 2GB); sets the tile size")
    parser.add_argument("--batch_size", type=int, help="patches per forward pass (default: max(the run's, 256))")
    parser.add_argument("--dask", metavar="local|ADDRESS",
                        help="run tiles as Dask tasks: 'local' starts a local cluster, tcp://host:port joins "
                             "a scheduler")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of --dask local (default 2)")
    parser.add_argument("--cuda", type=int, default=-1, help="GPU index for single-process mapping; -1 (default) CPU")
    parser.add_argument("--no_progress", action="store_true", help="no progress bar")
    return parser


def command(argv: Optional[Sequence[str]], plugins: Plugins) -> int:
    """Run ``main.py map`` with ``argv``; a :class:`UserError` is raised for bad input (main.py prints it
    and exits with status 2). Dask workers import ``plugins.zoo_modules`` before building the model."""
    args = build_parser().parse_args(argv)
    check_writable_folder(Path(args.out).parent, "--out")

    common = dict(key=args.key, memory_budget=args.memory_budget, probabilities=args.probabilities,
                  batch_size=args.batch_size, progress=not args.no_progress)
    if args.dask:
        if args.cuda >= 0:
            raise UserError("--cuda applies to single-process mapping; Dask workers map on their CPUs")
        from deephyperx.dask_mapping import map_scene_dask

        report = map_scene_dask(args.restore, args.cube, args.out, scheduler=args.dask, workers=args.workers,
                                imports=tuple(plugins.zoo_modules), **common)
    else:
        from deephyperx.runner import resolve_device
        from deephyperx.tiled_mapping import map_scene

        report = map_scene(args.restore, args.cube, args.out, device=resolve_device(args.cuda), **common)
    height, width = report.shape
    resumed = f", {report.skipped} resumed" if report.skipped else ""
    tiles = f"{report.tiles} tile{'s' if report.tiles != 1 else ''}"
    print(f"map {height}x{width} written to {', '.join(str(f) for f in report.files)}: {tiles} of "
          f"{report.tile_side}x{report.tile_side}{resumed}, {report.pixels_per_second:,.0f} pixels/s, "
          f"{report.seconds:.1f} s", file=sys.stderr)
    return 0
