"""Data-parallel training under torchrun, for real: two gloo processes on this machine train through
main.py (stopped after their first checkpoint and resumed), write one run folder whose checkpoint
loads in a single process, and match single-process accuracy; plus, in-process, the sharding, the
unchanged single-process path and the refusals."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import datasets
import models  # noqa: F401  (registers the zoo)
from deephyperx import checkpoint as ckpt
from deephyperx import distributed
from deephyperx.config import resolve_config
from deephyperx.errors import UserError
from deephyperx.experiment import Experiment
from deephyperx.monitor import Monitor
from deephyperx.registry import create_model, get_spec
from deephyperx.run_environment import read_environment
from deephyperx.runner import ClassifyTask, run_experiment
from deephyperx.sampling import Augmentation, BatchMaker, PatchSampler
from deephyperx.seeding import torch_generator
from deephyperx.steps import get_step
from deephyperx.synthetic import make_synthetic_scene
from deephyperx.sampling import batches
from deephyperx.training import Trainer, TrainingData, require_data_parallel_step, training_batches

ROOT = Path(__file__).resolve().parents[1]
#: hu on the embedded scene: 30 quick epochs that converge; 50 per rank x 2 = the single run's 100.
HU = ["--model", "hu", "--dataset", "Synthetic", "--epoch", "30", "--lr", "0.1", "--seed", "0"]
HU_SETTINGS = {"dataset": "Synthetic", "epoch": 30, "lr": 0.1, "seed": 0, "batch_size": 100}
#: lee (dense output), narrowed and without dropout so that 30 epochs on a tiny scene converge.
LEE_YAML = "model_args:\n  width: 16\n  dropout: 0.0\n"
LEE = ["--model", "lee", "--cube", "cube.npy", "--gt", "gt.npy", "--config", "lee.yaml", "--training_sample", "0.3",
       "--epoch", "30", "--lr", "0.01", "--seed", "0"]


def torchrun_command(*args: str, script: str = str(ROOT / "main.py")) -> list[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", script, *args]


def environment(cwd: Path) -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONHASHSEED": "0", "DEEPHYPERX_DATA": str(cwd / "no-data")}


def torchrun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    result = subprocess.run(torchrun_command(*args), cwd=cwd, capture_output=True, text=True, timeout=600,
                            env=environment(cwd))
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def only_run_folder(out: Path) -> Path:
    """The one experiment folder under ``out``, holding a finished seed0 and nothing half-written."""
    experiments = [p for p in out.iterdir() if p.is_dir()]
    assert len(experiments) == 1, experiments
    names = {p.name for p in experiments[0].iterdir()}
    assert {"seed0", "results.json", "results.md"} <= names and not any(n.endswith(".partial") for n in names)
    return experiments[0] / "seed0"


def in_process(model: str, settings: dict, scene, out: Path) -> dict:
    """The single-process run of the same settings, through the same runner main.py uses."""
    config = resolve_config(get_spec(model), {**settings, "out": str(out)})
    config["dataset"] = scene.name
    return run_experiment(scene, config)["runs"][0]


@dataclass
class StoppedRun:
    """hu trained by two torchrun processes (batch 50 each), stopped after its first checkpoint and
    resumed by the same command: the finished seed0 folder and what the resumed command printed."""

    folder: Path
    checkpoint_seen: bool
    finished_before_stop: bool
    resumed_stderr: str


@pytest.fixture(scope="module")
def hu_run(tmp_path_factory) -> StoppedRun:
    cwd = tmp_path_factory.mktemp("hu")
    args = [*HU, "--batch_size", "50", "--out", "dist"]
    process = subprocess.Popen(torchrun_command(*args), cwd=cwd, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, env=environment(cwd))
    deadline, seen = time.time() + 300, False
    while time.time() < deadline and not seen and process.poll() is None:
        seen = bool(list((cwd / "dist").glob("*/seed0.partial/checkpoint.pt")))
        time.sleep(0.02)
    process.send_signal(signal.SIGTERM)  # torchrun passes it on to both workers, as a cluster scheduler would
    process.wait(timeout=120)
    finished = bool(list((cwd / "dist").glob("*/seed0/metrics.json")))
    resumed = torchrun(*args, cwd=cwd)
    return StoppedRun(only_run_folder(cwd / "dist"), seen, finished, resumed.stderr)


# ----- two processes, for real ---------------------------------------------------------------------

def test_a_stopped_distributed_run_resumes_from_its_checkpoint(hu_run):
    assert hu_run.checkpoint_seen and not hu_run.finished_before_stop
    assert "resuming" in hu_run.resumed_stderr
    records = [json.loads(line) for line in (hu_run.folder / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records if r["kind"] == "epoch"] == list(range(30))  # rank 0 alone logs, no repeats


def test_two_processes_write_one_run_that_a_single_process_loads(hu_run, tmp_path):
    metrics = json.loads((hu_run.folder / "metrics.json").read_text())
    assert metrics["world_size"] == 2 and metrics["epochs"] == 30
    state = ckpt.load_checkpoint(hu_run.folder / "model.pt")
    assert state["world_size"] == 2 and state["epoch"] == 30
    scene = make_synthetic_scene(seed=0)
    model = create_model("hu", n_bands=scene.n_bands, n_classes=scene.n_classes, patch_size=1, seed=0)
    model.load_state_dict(state["model_state"])  # the plain model's keys, no DDP "module." prefix
    config = {**resolve_config(get_spec("hu"), {**HU_SETTINGS, "out": str(tmp_path)}),
              "restore": str(hu_run.folder / "model.pt"), "epoch": 0}
    restored = Experiment(ClassifyTask(scene, config)).run_seed(0, tmp_path / "r")
    assert restored["confusion_matrix"] == metrics["confusion_matrix"]


def test_two_processes_match_one_process_of_the_same_global_batch(hu_run, tmp_path):
    distributed_oa = json.loads((hu_run.folder / "metrics.json").read_text())["overall_accuracy"]
    single = in_process("hu", HU_SETTINGS, datasets.resolve_scene("Synthetic", tmp_path), tmp_path / "single")
    assert single["overall_accuracy"] > 0.7
    assert abs(distributed_oa - single["overall_accuracy"]) <= 0.03


def test_dense_lee_trains_on_two_processes_like_on_one(tmp_path):
    scene = make_synthetic_scene(seed=0, rows=32, cols=32, n_bands=16, n_classes=4)
    np.save(tmp_path / "cube.npy", scene.cube)
    np.save(tmp_path / "gt.npy", (scene.labels + 1).astype(np.int16))  # 0 = unlabelled in a label file
    (tmp_path / "lee.yaml").write_text(LEE_YAML)
    torchrun(*LEE, "--batch_size", "50", "--out", "dist", cwd=tmp_path)
    run = only_run_folder(tmp_path / "dist")
    state = ckpt.load_checkpoint(run / "model.pt")
    model = create_model("lee", n_bands=16, n_classes=4, patch_size=5, width=16, dropout=0.0)
    model.load_state_dict(state["model_state"])
    distributed_oa = json.loads((run / "metrics.json").read_text())["overall_accuracy"]
    assert [record["world_size"] for record in read_environment(run)] == [2]  # rank 0 wrote it, in the group
    custom = datasets.load_custom_scene(tmp_path / "cube.npy", tmp_path / "gt.npy")
    settings = {"model_args": {"width": 16, "dropout": 0.0}, "training_sample": 0.3, "epoch": 30, "lr": 0.01,
                "seed": 0, "batch_size": 100}
    single = in_process("lee", settings, custom, tmp_path / "single")
    assert single["overall_accuracy"] > 0.9
    assert abs(distributed_oa - single["overall_accuracy"]) <= 0.05


#: A rank that joins the group, records at exit whether the group was left, writes without
#: flushing, makes one collective with a Python tensor and ends through ``exit_process``. Each rank
#: writes its line in one call, so that the two ranks' output on the shared pipe cannot interleave.
EXIT_SCRIPT = """
import atexit, os, sys
import torch.distributed as dist
from deephyperx import distributed

rank = os.environ["RANK"]
atexit.register(lambda: open(f"rank{rank}.atexit", "w").write(str(dist.is_initialized())))
distributed.init()
got = distributed.broadcast_object({"from": "rank 0"} if rank == "0" else None)
sys.stdout.write(f"rank {rank} got {got}; ")
distributed.exit_process(int(sys.argv[1]))
"""


@pytest.mark.parametrize("status", [0, 3])
def test_a_rank_ends_through_its_exit_handlers_and_keeps_its_output_and_status(tmp_path, status):
    (tmp_path / "rank_exit.py").write_text(EXIT_SCRIPT)
    buffered = {k: v for k, v in environment(tmp_path).items() if k != "PYTHONUNBUFFERED"}  # flushed at exit only
    result = subprocess.run(torchrun_command(str(status), script="rank_exit.py"), cwd=tmp_path, capture_output=True,
                            text=True, timeout=120, env={**buffered, "PYTHONPATH": str(ROOT)})
    assert (result.returncode == 0) == (status == 0), result.stderr[-2000:]
    assert status == 0 or f"exitcode  : {status}" in result.stderr  # torchrun names each rank's status
    for rank in ("0", "1"):  # buffered output flushed; handlers ran, after the group was left
        assert f"rank {rank} got {{'from': 'rank 0'}}; " in result.stdout
        assert (tmp_path / f"rank{rank}.atexit").read_text() == "False"


def test_a_plain_process_exits_through_sys_exit():
    with pytest.raises(SystemExit) as exit_:
        distributed.exit_process(3)
    assert exit_.value.code == 3


# ----- the pieces, in one process ------------------------------------------------------------------

@pytest.mark.parametrize("n", [0, 1, 5, 10, 11, 23])
@pytest.mark.parametrize("world", [1, 2, 3, 4])
def test_shards_are_equal_disjoint_and_cover_the_order(n, world):
    order = torch.randperm(n, generator=torch.Generator().manual_seed(n))
    shards = [distributed.shard(order, r, world) for r in range(world)]
    size = -(-n // world)
    assert [len(s) for s in shards] == [size] * world
    interleaved = torch.stack(shards, 1).flatten() if n else torch.arange(0)
    assert torch.equal(interleaved[:n], order)  # disjoint positions of the order, in order...
    assert set(interleaved[n:].tolist()) <= set(order.tolist())  # ...then padding from its own samples
    if n % world == 0:
        assert sorted(torch.cat(shards).tolist()) == sorted(order.tolist())


def test_shard_refuses_a_rank_outside_the_world():
    with pytest.raises(ValueError):
        distributed.shard(torch.arange(4), 2, 2)


def augmented_maker(scene) -> BatchMaker:
    sampler = PatchSampler([scene.cube], scene.labels, 3)
    return BatchMaker(sampler, *np.nonzero(scene.labels >= 0), dense=False,
                      augmentation=Augmentation(True, True, False))


@pytest.mark.parametrize("n_samples", [None, 500])
def test_one_process_draws_exactly_what_it_drew_before(small_scene, n_samples):
    """The epoch's batches of a single process are those of ``batches(shuffle=True)`` on the epoch's
    stream: same samples, same augmentation (so today's numbers are unchanged)."""
    maker = augmented_maker(small_scene)
    new = list(training_batches(maker, 32, seed=3, epoch=2, n_samples=n_samples))
    old = list(batches(maker, 32, torch_generator(3, 2, 2), augment=True, shuffle=True, n_samples=n_samples))
    assert len(new) == len(old)
    for a, b in zip(new, old):
        assert torch.equal(a.inputs[0], b.inputs[0]) and torch.equal(a.target, b.target)


def test_ranks_split_the_epoch_and_augment_differently(small_scene):
    maker = augmented_maker(small_scene)  # 440 samples: 220 per rank, no padding
    ranks = [list(training_batches(maker, 32, seed=3, epoch=2, rank=r, world=2)) for r in range(2)]
    assert len(maker) == 440 and len(ranks[0]) == len(ranks[1]) == 7
    one = torch.cat([b.target for b in training_batches(maker, 32, seed=3, epoch=2)])
    both = torch.cat([b.target for rank in ranks for b in rank])
    assert torch.equal(torch.bincount(both), torch.bincount(one))  # together: the whole epoch once
    again = list(training_batches(maker, 32, seed=3, epoch=2, rank=1, world=2))
    assert all(torch.equal(a.inputs[0], b.inputs[0]) for a, b in zip(again, ranks[1]))  # deterministic
    assert not torch.equal(ranks[0][0].inputs[0], ranks[1][0].inputs[0])


def test_steps_that_make_their_own_updates_are_refused():
    import models.generators  # noqa: F401
    import models.semi_supervised  # noqa: F401

    model = torch.nn.Linear(2, 2)
    for name in ("supervised", "semi_supervised_reconstruction"):
        step = get_step(name)
        require_data_parallel_step(step, step.build_optimizers(model, {"optimizer": "sgd", "lr": 0.1}), {})
    for name in ("wgan_gp_ac", "cvae"):
        with pytest.raises(UserError, match="one process"):
            require_data_parallel_step(get_step(name), {"model": None},
                                                   {"model": name, "supervision": name})


def tiny_trainer(scene, config_overrides=None) -> Trainer:
    config = {**resolve_config(get_spec("hu"), {"epoch": 2}), "seed": 0, **(config_overrides or {})}
    sampler = PatchSampler([scene.cube], np.where(scene.labels >= 0, scene.labels, -1), 1)
    data = TrainingData(BatchMaker(sampler, *np.nonzero(scene.labels >= 0), dense=False), None, scene.n_classes)
    torch.manual_seed(0)
    model = create_model("hu", n_bands=scene.n_bands, n_classes=scene.n_classes, patch_size=1)
    return Trainer(model, get_step("supervised"), data, config, Monitor(), torch.device("cpu"))


def test_without_torchrun_everything_is_one_plain_process(small_scene):
    assert not distributed.launched() and not distributed.init()
    assert (distributed.rank(), distributed.world_size(), distributed.is_main()) == (0, 1, True)
    value = {"a": 1}
    assert distributed.broadcast_object(value) is value
    assert distributed.mean_across_ranks([1.0, 2.0, 6.0]) == 3.0
    first, second = tiny_trainer(small_scene), tiny_trainer(small_scene)
    assert first.network is first.model  # no wrapper
    assert first.fit().history == second.fit().history


def test_a_torchrun_launch_of_a_one_process_command_is_refused(small_scene, monkeypatch):
    """A command that never joins the process group (e.g. `main.py generate`) must not run twice over."""
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(UserError, match="torchrun"):
        tiny_trainer(small_scene)


def test_an_unknown_backend_is_refused():
    with pytest.raises(UserError, match="gloo"):
        distributed.choose_backend(False, "carrier-pigeon")
