"""A full disk: one line naming the folder and the space, no partial file, and the run resumes.

The disk is a real one: a small tmpfs mounted for the test (root only; the test skips otherwise),
filled with a filler file until the run cannot finish, then emptied again.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

import main
from deephyperx.atomic import atomic_write_text
from deephyperx.disk import DiskFullError

HU = ["--model", "hu", "--dataset", "Synthetic", "--epoch", "3", "--no_visdom"]
DISK_BYTES = 4 << 20


@pytest.fixture
def small_disk(tmpfs) -> Path:
    """A 4 MB tmpfs."""
    with tmpfs(f"size={DISK_BYTES}") as folder:
        yield folder


def fill(disk: Path, leave: int) -> Path:
    """Write a filler file leaving about ``leave`` bytes free on ``disk``."""
    filler = disk / "filler"
    filler.write_bytes(b"\0" * max(0, os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize - leave))
    return filler


def run(argv: list[str], capsys) -> tuple[int, str]:
    capsys.readouterr()
    status = main.main(argv)
    return status, capsys.readouterr().err


def seed_metrics(out: Path) -> dict:
    (path,) = out.glob("*/seed0/metrics.json")
    return json.loads(path.read_text())


def temporary_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".") and p.is_file()
            and not p.name.endswith((".lock", ".owner.json"))]


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[dict, Path]:
    """An uninterrupted run on a roomy disk: its metrics and its model."""
    out = tmp_path_factory.mktemp("reference")
    assert main.main([*HU, "--out", str(out)]) == 0
    (model,) = out.glob("*/seed0/model.pt")
    return seed_metrics(out), model


@pytest.mark.parametrize("when", ["training", "reports"])
def test_a_full_disk_is_one_line_and_the_same_command_resumes(small_disk, reference, capsys, when):
    """``training``: room for one checkpoint, not for its successor (written beside it, then renamed).
    ``reports``: the reference model restored with ``--epoch 0``: room for its checkpoint, not for the
    maps and reports written after it."""
    metrics, model = reference
    size = model.stat().st_size
    out = small_disk / "out"
    argv = [*HU, "--out", str(out)] if when == "training" else [*HU, "--out", str(out), "--restore", str(model),
                                                                 "--epoch", "0"]
    filler = fill(small_disk, int(1.6 * size) if when == "training" else size + 120_000)

    status, err = run(argv, capsys)
    lines = err.strip().splitlines()
    assert status == 2, err
    assert lines[-1].startswith("error: no space left in ") and str(out) in lines[-1], lines[-1]
    assert "free" in lines[-1] and "run the same command again to resume" in lines[-1]
    assert "Traceback" not in err
    assert not temporary_files(out), temporary_files(out)
    (partial,) = out.glob("*/seed0.partial")
    assert (partial / "checkpoint.pt").is_file()  # the last complete checkpoint survives
    assert not list(out.glob("*/seed0"))
    if when == "training":
        epochs = [line for line in (partial / "metrics.jsonl").read_text().splitlines() if '"kind": "epoch"' in line]
        assert len(epochs) < 3
    else:
        assert not (partial / "metrics.json").is_file() or not (partial / "map_full.png").is_file()

    filler.unlink()
    status, err = run(argv, capsys)
    assert status == 0, err
    resumed = seed_metrics(out)
    assert resumed["confusion_matrix"] == metrics["confusion_matrix"]
    assert resumed["overall_accuracy"] == metrics["overall_accuracy"]
    starts = [json.loads(line) for line in next(out.glob("*/seed0/environment.jsonl")).read_text().splitlines()]
    assert len(starts) == 2 and starts[1]["resumed_from_epoch"] == (1 if when == "training" else 0), starts
    assert not temporary_files(out)


def test_an_atomic_write_on_a_full_disk_leaves_the_old_file_and_no_temporary(small_disk):
    target = small_disk / "report.txt"
    atomic_write_text(target, "the old report\n")
    fill(small_disk, 10_000)
    with pytest.raises(DiskFullError, match=f"no space left in {small_disk}: writing there needs"):
        atomic_write_text(target, "x" * 200_000)
    assert target.read_text() == "the old report\n"
    assert sorted(p.name for p in small_disk.iterdir()) == ["filler", "report.txt"]
