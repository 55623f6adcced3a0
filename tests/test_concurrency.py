"""Concurrent runs never lose a result: real processes started together on one --out.

A run is frozen (SIGSTOP) once it holds its seed and works in its ``.partial`` folder, so that the
overlap with the commands started meanwhile is certain; then it goes on (SIGCONT). Plus: custom scenes
are told apart by their content, a failed run leaves no trace, a killed holder blocks nobody, and the
locks and the folder replacement themselves.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import scipy.io

import main
from deephyperx.atomic import replace_directory
from deephyperx.errors import UserError
from deephyperx.experiment_lock import claim_seeds, experiment_lock, owner_path, remove_unheld_files, seed_lock_path

ROOT = Path(__file__).resolve().parents[1]
HU = ["--model", "hu", "--dataset", "Synthetic", "--epoch", "3"]
LOCK_LITTER = (".seed*.lock", ".seed*.owner.json", ".experiment.lock", ".*.old*", "*.partial")


def environment(cwd: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "DEEPHYPERX_DATA": str(cwd / "no-data")}


@dataclass
class Process:
    """A main.py process whose output goes to files (a frozen process must never block on a pipe)."""

    popen: subprocess.Popen
    stdout: Path
    stderr: Path

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        code = self.popen.wait(timeout)
        return code, self.stdout.read_text(), self.stderr.read_text()


def start(args: list[str], cwd: Path, name: str) -> Process:
    stdout, stderr = cwd / f"{name}.out", cwd / f"{name}.err"
    with open(stdout, "w") as out, open(stderr, "w") as err:
        popen = subprocess.Popen([sys.executable, str(ROOT / "main.py"), *args], cwd=cwd, stdout=out, stderr=err,
                                 env=environment(cwd))
    return Process(popen, stdout, stderr)


def wait_for(condition: Callable[[], bool], process: Process, what: str, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if process.popen.poll() is not None:
            pytest.fail(f"the process ended ({process.popen.returncode}) before {what}: {process.stderr.read_text()}")
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.05)


def experiment(out: Path) -> Path:
    """The one experiment folder under ``out``."""
    folders = [p for p in out.iterdir() if p.is_dir()]
    assert len(folders) == 1, folders
    return folders[0]


def freeze_in_training(process: Process, out: Path, seed: int = 0) -> Path:
    """Wait until ``process`` holds ``seed`` and works in its partial folder (its claim is taken and the
    folder's lock released), then freeze it; its experiment folder."""
    wait_for(lambda: out.is_dir() and any(out.glob(f"*/seed{seed}.partial/config.yaml")), process, "the run starts")
    os.kill(process.popen.pid, signal.SIGSTOP)
    folder = next(out.glob(f"*/seed{seed}.partial")).parent
    assert owner_path(folder, seed).is_file(), "the run finished before it could be frozen"
    return folder


def assert_no_litter(folder: Path) -> None:
    left = [p.name for pattern in LOCK_LITTER for p in folder.glob(pattern)]
    assert not left, left


def one_error_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in stderr, stderr
    return lines[0]


# ----- the same experiment from several processes at once --------------------------------------------

@dataclass
class Crowd:
    folder: Path
    holder: tuple[int, str, str]
    holder_pid: int
    twin: tuple[int, str, str]
    bench: tuple[int, str, str]
    other_seed: tuple[int, str, str]


@pytest.fixture(scope="module")
def crowd(tmp_path_factory) -> Crowd:
    """Seed 0 runs; while it is frozen mid-run, the same command, a bench of the same pair and seed 1
    start into the same --out; then seed 0 goes on and finishes last."""
    cwd = tmp_path_factory.mktemp("crowd")
    holder = start([*HU, "--seed", "0", "--out", "out"], cwd, "holder")
    try:
        folder = freeze_in_training(holder, cwd / "out")
        others = [start([*HU, "--seed", "0", "--out", "out"], cwd, "twin"),
                  start(["bench", "--models", "hu", "--datasets", "Synthetic", "--epoch", "3", "--seed", "0",
                         "--out", "out"], cwd, "bench"),
                  start([*HU, "--seed", "1", "--out", "out"], cwd, "seed1")]
        results = [process.finish() for process in others]
    finally:
        os.kill(holder.popen.pid, signal.SIGCONT)
    return Crowd(folder, holder.finish(), holder.popen.pid, *results)


def test_the_same_command_twice_one_runs_the_other_stops_with_one_line_naming_it(crowd):
    code, stdout, _ = crowd.holder
    assert code == 0 and "1 run(s)" in stdout
    code, _, stderr = crowd.twin
    assert code == 2
    line = one_error_line(stderr)
    for fragment in (f"out/{crowd.folder.name}", "seed 0", f"process {crowd.holder_pid}", "python main.py --model hu",
                     "wait for it to finish", "--seed or --out"):
        assert fragment in line, line
    seed0 = crowd.folder / "seed0"
    assert (seed0 / "metrics.json").is_file() and (seed0 / "model.pt").is_file()
    assert_no_litter(crowd.folder)  # no .seed0.old, no partial folder, no lock or owner file


def test_a_bench_of_the_running_pair_stops_too(crowd):
    code, _, stderr = crowd.bench
    assert code == 2
    errors = [line for line in stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, stderr
    assert f"process {crowd.holder_pid}" in errors[0] and f"out/{crowd.folder.name}" in errors[0], errors[0]


def test_two_seeds_at_once_both_end_up_in_results_json(crowd):
    code, stdout, _ = crowd.other_seed
    assert code == 0 and "1 run(s)" in stdout  # each command prints its own seed
    results = json.loads((crowd.folder / "results.json").read_text())
    assert results["seeds"] == [0, 1] and results["n_runs"] == 2 and results["overall_accuracy"]["n"] == 2
    assert [run["seed"] for run in results["runs"]] == [0, 1]
    assert len(results["commands"]) == 2  # the reproduce section names both commands
    assert "seeds 0, 1" in (crowd.folder / "results.md").read_text()
    assert {p.name for p in crowd.folder.iterdir()} == {"seed0", "seed1", "results.json", "results.md"}


# ----- a killed holder ---------------------------------------------------------------------------------

def test_a_killed_holder_blocks_nobody_and_its_files_are_cleared(tmp_path, monkeypatch, capsys):
    holder = start([*HU, "--out", "out"], tmp_path, "killed")
    folder = freeze_in_training(holder, tmp_path / "out")
    os.kill(holder.popen.pid, signal.SIGKILL)
    holder.popen.wait(30)
    assert owner_path(folder, 0).is_file() and seed_lock_path(folder, 0).is_file()  # stale: its lock went with it
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DEEPHYPERX_DATA", str(tmp_path / "no-data"))
    assert main.main([*HU, "--out", "out"]) == 0
    assert "1 run(s)" in capsys.readouterr().out
    assert (folder / "seed0" / "metrics.json").is_file() and (folder / "results.json").is_file()
    assert_no_litter(folder)


# ----- custom scenes ----------------------------------------------------------------------------------

def write_scene(folder: Path, seed: int, cube_name: str = "cube.npy") -> list[str]:
    """A 20x20 two-class scene; the flags that name it."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    cube = rng.random((20, 20, 5)).astype(np.float32)
    labels = rng.choice([1, 2], size=(20, 20)).astype(np.uint8)
    if cube_name.endswith(".mat"):
        scipy.io.savemat(folder / cube_name, {"cube": cube})
    else:
        np.save(folder / cube_name, cube)
    np.save(folder / "gt.npy", labels)
    return ["--cube", str(folder / cube_name), "--gt", str(folder / "gt.npy")]


def run_nearest(flags: list[str], out: Path) -> None:
    assert main.main(["--model", "nearest", *flags, "--training_sample", "0.5", "--out", str(out)]) == 0


def test_custom_scenes_sharing_a_file_name_get_folders_of_their_own(tmp_path, capsys):
    out = tmp_path / "out"
    run_nearest(write_scene(tmp_path / "a", seed=1), out)
    run_nearest(write_scene(tmp_path / "b", seed=2), out)  # b/cube.npy: another scene, the same name
    run_nearest(write_scene(tmp_path / "c", seed=3, cube_name="cube.mat"), out)  # cube.mat: the same stem
    folders = sorted(p.name for p in out.iterdir())
    assert len(folders) == 3 and all(name.startswith("cube_nearest_") for name in folders), folders
    for folder in out.iterdir():  # each kept its own result
        results = json.loads((folder / "results.json").read_text())
        assert results["n_runs"] == 1 and len(results["config"]["scene_sha256"]) == 64
    capsys.readouterr()


def test_the_same_content_elsewhere_or_in_another_format_is_the_same_experiment(tmp_path, capsys):
    out = tmp_path / "out"
    run_nearest(write_scene(tmp_path / "a", seed=1), out)
    first = experiment(out)
    shutil.copytree(tmp_path / "a", tmp_path / "copy")
    run_nearest(["--cube", str(tmp_path / "copy" / "cube.npy"), "--gt", str(tmp_path / "copy" / "gt.npy")], out)
    run_nearest(write_scene(tmp_path / "mat", seed=1, cube_name="cube.mat"), out)  # the same values as a .mat
    assert experiment(out) == first
    assert "cube_nearest" in capsys.readouterr().out


def test_train_and_test_files_with_other_contents_are_other_experiments(tmp_path, capsys):
    flags = write_scene(tmp_path, seed=1)
    rng = np.random.default_rng(0)
    out = tmp_path / "out"
    folders = set()
    for content in range(2):  # the same paths, other contents
        labels = np.load(tmp_path / "gt.npy")
        train = np.where(rng.random(labels.shape) < 0.5, labels, 0).astype(np.uint8)
        np.save(tmp_path / "train.npy", train)
        np.save(tmp_path / "test.npy", np.where(train == 0, labels, 0).astype(np.uint8))
        assert main.main(["--model", "nearest", *flags, "--train_set", str(tmp_path / "train.npy"), "--test_set",
                          str(tmp_path / "test.npy"), "--out", str(out)]) == 0
        folders |= {p.name for p in out.iterdir()}
    assert len(folders) == 2, folders
    capsys.readouterr()


# ----- a failed run leaves no trace --------------------------------------------------------------------

def test_a_run_failing_after_its_folder_exists_leaves_nothing_not_even_a_new_out(tmp_path, capsys):
    flags = write_scene(tmp_path, seed=1)
    np.save(tmp_path / "small.npy", np.ones((5, 5), np.uint8))  # the wrong size: found after the seed is claimed
    out = tmp_path / "new" / "out"
    code = main.main(["--model", "nearest", *flags, "--train_set", str(tmp_path / "small.npy"), "--test_set",
                      str(tmp_path / "small.npy"), "--out", str(out)])
    assert code == 2 and "5x5" in capsys.readouterr().err
    assert not (tmp_path / "new").exists()


# ----- the locks themselves ------------------------------------------------------------------------------

def test_a_claimed_seed_is_refused_and_the_folder_goes_when_the_claim_ends(tmp_path):
    folder = tmp_path / "out" / "experiment"
    with claim_seeds(folder, [0, 1], "python main.py --seed 0 --runs 2") as claim:
        assert claim.created == [tmp_path / "out"]
        owner = json.loads(owner_path(folder, 1).read_text())
        assert owner["pid"] == os.getpid() and owner["command"] == "python main.py --seed 0 --runs 2"
        with pytest.raises(UserError, match=r"seed 1 is being run by process \d+ .*--seed 0 --runs 2"):
            with claim_seeds(folder, [2, 1], "python main.py --seed 1"):  # one lock per file handle: refused
                pass
        assert not seed_lock_path(folder, 2).exists()  # what the refused claim took, it gave back
        with experiment_lock(folder):
            assert not remove_unheld_files(folder)  # held seeds keep their files and the folder
        assert owner_path(folder, 0).is_file()
    assert not (tmp_path / "out").exists()  # nothing else was written: no trace, not even the new --out


def test_a_stale_owner_file_is_only_information(tmp_path):
    folder = tmp_path / "experiment"
    folder.mkdir()
    (folder / "results.json").write_text("{}")
    owner_path(folder, 0).write_text(json.dumps({"pid": 999999, "host": "gone", "command": "killed"}))
    seed_lock_path(folder, 0).touch()
    owner_path(folder, 7).write_text("{}")  # another seed's, its process killed too
    with claim_seeds(folder, [0], "python main.py"):
        assert json.loads(owner_path(folder, 0).read_text())["pid"] == os.getpid()
    assert sorted(p.name for p in folder.iterdir()) == ["results.json"]


def test_replacing_a_run_folder_leaves_no_old_folder(tmp_path):
    final = tmp_path / "seed0"
    for text in ("first", "second"):
        staging = tmp_path / "seed0.partial"
        staging.mkdir()
        (staging / "metrics.json").write_text(text)
        (tmp_path / ".seed0.old").mkdir(exist_ok=True)  # left by an interrupted replacement
        replace_directory(staging, final)
        assert (final / "metrics.json").read_text() == text
        assert [p.name for p in tmp_path.iterdir()] == ["seed0"]
