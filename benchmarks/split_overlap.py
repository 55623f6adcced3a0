"""How many test pixels of a training / test split lie inside the patch of some training pixel: what a
spatial model trained on that split has seen around the pixels it is tested on.

    python benchmarks/split_overlap.py --train ../shared/data/splits/IndianPines/Indian_pines_TR.mat \\
        --test ../shared/data/splits/IndianPines/Indian_pines_TE.mat --patch 7 13

For each odd patch side P, the share of labelled test pixels within (P - 1) / 2 pixels (Chebyshev
distance) of a labelled training pixel: the test pixels that appear in at least one training patch.
Prints JSON (and writes it with ``--json``, atomically).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from scipy.ndimage import maximum_filter

from deephyperx.atomic import atomic_write_text
from deephyperx.readers import read_raster


def covered_share(train: np.ndarray, test: np.ndarray, patch: int) -> float:
    """The share of ``test`` pixels inside a ``patch`` x ``patch`` window centred on a ``train`` pixel."""
    near = maximum_filter(train.astype(np.uint8), size=patch, mode="constant") > 0
    return float((test & near).sum() / max(int(test.sum()), 1))


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--train", required=True, type=Path, help="label map of the training pixels (0: none)")
    parser.add_argument("--test", required=True, type=Path, help="label map of the test pixels (0: none)")
    parser.add_argument("--patch", nargs="+", type=int, default=[7, 13], help="odd patch sides (default 7 13)")
    parser.add_argument("--json", help="also write the result here")
    args = parser.parse_args(argv)
    if any(p < 1 or p % 2 == 0 for p in args.patch):
        parser.error(f"--patch {' '.join(map(str, args.patch))}: give odd sides of at least 1")
    train, test = read_raster(args.train) > 0, read_raster(args.test) > 0
    if train.shape != test.shape:
        parser.error(f"--train is {train.shape[0]}x{train.shape[1]} but --test {test.shape[0]}x{test.shape[1]}; "
                     "give the two maps of one scene")
    result = {"command": "python benchmarks/split_overlap.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "train_px": int(train.sum()), "test_px": int(test.sum()), "both": int((train & test).sum()),
              "test_share_inside_a_training_patch": {str(p): round(covered_share(train, test, p), 4)
                                                     for p in args.patch}}
    text = json.dumps(result, indent=2) + "\n"
    if args.json:
        atomic_write_text(args.json, text)
    print(text, end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
