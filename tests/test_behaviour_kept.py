"""Behaviour kept: a fixed set of commands gives, to the last bit, the numbers recorded before the
engine's structure changed (every metric of ``metrics.json``, ``generation.json`` and ``bench.json``
except times, paths and the machine's description), in experiment folders of the same names (the
hash of the settings that change the numbers, so that earlier runs still resume).

The numbers of a training depend on the processor's instruction set (torch's kernels add in
another order with AVX-512 than with AVX2) and on the thread count: the recording names both, the
tests run on one thread as the recording was made, and on a processor of another instruction set
the comparison is skipped, saying so. Record again (only when a change of numbers is intended and
explained) with ``PYTHONPATH=. python tests/test_behaviour_kept.py`` from the source tree.
"""
from __future__ import annotations

import hashlib
import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
RECORDING = ROOT / "tests" / "data" / "behaviour_kept.json"

#: name -> (command line, the result file(s) whose numbers are kept, relative to --out)
COMMANDS: dict[str, tuple[list[str], str]] = {
    "SVM_grid": (["--model", "SVM_grid", "--dataset", "Synthetic", "--no_visdom", "--out", "{out}"],
                 "*/seed0/metrics.json"),
    "hu 3 epochs": (["--model", "hu", "--dataset", "Synthetic", "--epoch", "3", "--no_visdom", "--out", "{out}"],
                    "*/seed0/metrics.json"),
    "hamida 2 epochs": (["--model", "hamida", "--dataset", "Synthetic", "--epoch", "2", "--no_visdom",
                         "--out", "{out}"], "*/seed0/metrics.json"),
    "cvae generate 2 epochs": (["generate", "--model", "cvae", "--dataset", "Synthetic", "--epoch", "2",
                                "--samples_per_class", "20", "--no_visdom", "--runs_dir", "{out}"],
                               "*/seed0/generation.json"),
    "segnet 1 epoch": (["segment", "--model", "segnet", "--dataset", "SyntheticAerial", "--epoch", "1",
                        "--epoch_samples", "32", "--crop", "64", "--batch_size", "8", "--no_visdom", "--out", "{out}"],
                       "*/seed0/metrics.json"),
    "bench nn SVM": (["bench", "--models", "nn", "SVM", "--datasets", "Synthetic", "--epoch", "2", "--out", "{out}"],
                     "bench.json"),
    "catalogue hu 2 epochs": (["catalogue", "--catalogue", "{catalogue}", "--model", "hu", "--epoch", "2",
                               "--epoch_samples", "2000", "--batch_size", "32", "--cache_bytes", "300kB",
                               "--out", "{out}"], "*/seed0/metrics.json"),
}

#: Keys whose values describe the run's machine, time or place rather than its numbers.
NOT_NUMBERS = ("seconds", "time", "device", "folder", "command", "path", "environment", "per_second", "started",
               "threads", "cpu", "wall", "source", "file", "cache")


def numbers(value: Any, prefix: str = "") -> dict[str, Any]:
    """The numeric leaves of a JSON document, by path (``a.b.3``), times and descriptions left out."""
    found: dict[str, Any] = {}
    if isinstance(value, dict):
        for key, item in value.items():
            if not any(word in str(key).lower() for word in NOT_NUMBERS):
                found.update(numbers(item, f"{prefix}{key}."))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found.update(numbers(item, f"{prefix}{index}."))
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        found[prefix.rstrip(".")] = "nan" if isinstance(value, float) and math.isnan(value) else value
    return found


def run_command(name: str, out: Path) -> dict[str, Any]:
    """Run one command of :data:`COMMANDS` into ``out`` (in this process) and return its numbers."""
    import main

    argv, pattern = COMMANDS[name]
    catalogue = write_small_catalogue(out.parent / "catalogue") if "{catalogue}" in argv else None
    status = main.main([a.replace("{out}", str(out)).replace("{catalogue}", str(catalogue)) for a in argv])
    assert status == 0, f"{name} exited with {status}"
    (result,) = sorted(out.glob(pattern))
    kept = numbers(json.loads(result.read_text()))
    kept["folders"] = sorted(path.name for path in out.iterdir())  # experiment folders: their hashes
    if name.startswith("cvae"):  # the generated spectra themselves
        (spectra,) = sorted(out.glob("*/seed0/synthetic.h5"))
        kept["spectra_sha256"] = spectra_digest(spectra)
    return kept


def write_small_catalogue(folder: Path) -> Path:
    """The 12-tile synthetic catalogue of the catalogue tests (three tiles held out)."""
    from deephyperx.scene_catalogue import write_catalogue
    from test_scene_catalogue import TEST_TILES, write_tiles

    entries = write_tiles(folder, seed=4, n_classes=3)
    return write_catalogue(folder / "tiles.yaml", entries, ["class 1", "class 2", "class 3"], name="tiles",
                           split={"test_scenes": TEST_TILES})


def spectra_digest(path: Path) -> str:
    """SHA-256 of a spectra file's arrays (not of the HDF5 bytes, which hold times and versions)."""
    import h5py

    digest = hashlib.sha256()
    with h5py.File(path, "r") as handle:
        for key in sorted(k for k in handle.keys()):
            digest.update(key.encode())
            digest.update(handle[key][()].tobytes())
    return digest.hexdigest()


def machine() -> dict[str, Any]:
    return {"cpu_capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


@pytest.fixture(scope="module")
def recording() -> dict[str, Any]:
    data = json.loads(RECORDING.read_text())
    here = machine()
    if data["machine"]["cpu_capability"] != here["cpu_capability"]:
        pytest.skip(f"recorded on a {data['machine']['cpu_capability']} processor, this one is "
                    f"{here['cpu_capability']}: its training numbers differ in the last bits")
    assert here["threads"] == data["machine"]["threads"], "the tests run on the recording's thread count"
    return data["commands"]


@pytest.mark.parametrize("name", list(COMMANDS))
def test_the_numbers_are_those_recorded(recording, name, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert run_command(name, tmp_path / "out") == recording[name]


def record() -> None:
    """Run every command on one thread and write the recording."""
    import tempfile

    torch.set_num_threads(1)
    commands = {}
    for name in COMMANDS:
        with tempfile.TemporaryDirectory() as folder:
            commands[name] = run_command(name, Path(folder) / "out")
            print(f"{name}: {len(commands[name])} numbers", file=sys.stderr)
    RECORDING.parent.mkdir(parents=True, exist_ok=True)
    RECORDING.write_text(json.dumps({"machine": machine(), "commands": commands}, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    record()
