"""The visdom monitor against a real visdom server on 127.0.0.1: what a run plots (read back through
the server), the env saved to disk, login, and training that survives an absent, dying or returning
server with complete file reports."""
from __future__ import annotations

import json
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import pytest

pytest.importorskip("visdom", reason="visdom is not installed (scripts/setup.sh installs it)")

import models  # noqa: F401,E402  (registers the zoo)
from deephyperx.config import resolve_config  # noqa: E402
from deephyperx.errors import UserError  # noqa: E402
from deephyperx.experiment import Experiment  # noqa: E402
from deephyperx.monitor import Monitor  # noqa: E402
from deephyperx.registry import get_spec  # noqa: E402
from deephyperx.runner import ClassifyTask  # noqa: E402
from deephyperx.visdom_monitor import VisdomMonitor, visdom_reachable, window_data  # noqa: E402
from deephyperx.visdom_server import (PACKAGES, command, ensure_assets, free_port, missing_assets,  # noqa: E402
                                      start_server, stop_server, visdom_static_dir)

RUN_FILES = ("config.yaml", "metrics.json", "metrics.jsonl", "summary.md", "confusion.png", "map.png",
             "map_full.png", "prediction.npy", "split.npz", "model.pt")


@dataclass
class Server:
    """A real visdom server process on 127.0.0.1 that a test may kill and start again."""

    port: int
    env_path: Path
    log: Path
    process: Optional[subprocess.Popen] = None
    username: Optional[str] = None
    password: Optional[str] = None

    def start(self) -> "Server":
        self.process = start_server(self.port, self.env_path, self.username, self.password, log=self.log)
        return self

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()

    def stop(self) -> None:
        stop_server(self.process)

    def client(self, **login):
        from visdom import Visdom

        with warnings.catch_warnings():  # visdom calls the deprecated logger.warn
            warnings.simplefilter("ignore", DeprecationWarning)
            return Visdom(server="http://127.0.0.1", port=self.port, raise_exceptions=True,
                          use_incoming_socket=False, **login)


def new_server(folder: Path, **login) -> Server:
    return Server(free_port(), folder / "envs", folder / "visdom_server.log", **login).start()


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    running = new_server(tmp_path_factory.mktemp("visdom"))
    yield running
    running.stop()


@pytest.fixture
def own_server(tmp_path):
    """A server of this test alone (the test kills it)."""
    running = new_server(tmp_path)
    yield running
    running.stop()


def train(scene, tmp_path: Path, *monitors: Monitor, epochs: int = 2) -> Path:
    """Train ``hu`` on the scene through the real runner (about 7 iterations an epoch); return the run folder."""
    config = resolve_config(get_spec("hu"), {"out": str(tmp_path), "epoch": epochs, "batch_size": 50,
                                             "with_exploration": True})
    folder = tmp_path / "run"
    Experiment(ClassifyTask(scene, config)).run_seed(0, folder, extra_monitors=list(monitors))
    return folder


def assert_complete(folder: Path) -> None:
    """Every file report of the run is there and the run folder was finalised."""
    assert folder.is_dir() and not folder.with_name(folder.name + ".partial").exists()
    for name in RUN_FILES:
        assert (folder / name).is_file(), name
    assert json.loads((folder / "metrics.json").read_text())["confusion_matrix"]


def logged_iterations(folder: Path) -> list[dict]:
    lines = (folder / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["kind"] == "iteration"]


def loss_traces(client, env: str) -> dict[str, dict]:
    return {trace["name"]: trace for trace in window_data(client, "loss", env)["content"]["data"]}


class ServerSwitch(Monitor):
    """Kills the server at iteration ``kill_at`` and, when ``back_at`` is given, starts it again there."""

    def __init__(self, server: Server, kill_at: int, back_at: Optional[int] = None):
        self.server, self.kill_at, self.back_at = server, kill_at, back_at

    def iteration(self, step, logs):
        if step == self.kill_at:
            self.server.kill()
        if step == self.back_at:
            self.server.start()


@pytest.fixture(scope="module")
def watched(server, synthetic_scene, tmp_path_factory):
    """One run plotted into the module's server: (run folder, monitor, warnings)."""
    warnings: list[str] = []
    monitor = VisdomMonitor(port=server.port, warn=warnings.append)
    folder = train(synthetic_scene, tmp_path_factory.mktemp("watched"), monitor)
    return folder, monitor, warnings


# ----- what a run shows --------------------------------------------------------------------------

def test_env_is_named_after_scene_model_and_seed(watched):
    _, monitor, warnings = watched
    assert monitor.env == "Synthetic_hu_seed0"
    assert warnings == [] and monitor.connected


def test_loss_window_holds_one_point_per_logged_iteration(server, watched):
    folder, monitor, _ = watched
    iterations = logged_iterations(folder)
    traces = loss_traces(server.client(), monitor.env)
    assert set(traces) == {"loss", "smoothed"}
    assert traces["loss"]["x"] == [float(r["step"]) for r in iterations]
    np.testing.assert_allclose(traces["loss"]["y"], [r["loss"] for r in iterations], rtol=1e-6)
    assert len(traces["smoothed"]["y"]) == len(iterations)
    assert traces["smoothed"]["y"][0] == pytest.approx(traces["loss"]["y"][0])  # the average is debiased


def test_confusion_window_equals_the_runs_confusion_matrix(server, watched, synthetic_scene):
    folder, monitor, _ = watched
    heatmap = window_data(server.client(), "confusion", monitor.env)["content"]["data"][0]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert heatmap["z"] == metrics["confusion_matrix"]
    assert heatmap["x"] == heatmap["y"] == list(synthetic_scene.class_names)


def test_epoch_windows_hold_validation_scores_and_learning_rate(server, watched):
    folder, monitor, _ = watched
    epochs = [r for r in map(json.loads, (folder / "metrics.jsonl").read_text().splitlines()) if r["kind"] == "epoch"]
    client = server.client()
    validation = {t["name"]: t for t in window_data(client, "validation", monitor.env)["content"]["data"]}
    assert validation["OA"]["x"] == [1.0, 2.0]
    np.testing.assert_allclose(validation["kappa"]["y"], [r["val_kappa"] for r in epochs])
    lr = window_data(client, "lr", monitor.env)["content"]["data"][0]
    np.testing.assert_allclose(lr["y"], [r["lr"] for r in epochs])


def test_map_image_legend_and_spectra_windows_exist(server, watched, synthetic_scene):
    _, monitor, _ = watched
    client = server.client()
    maps = window_data(client, "maps", monitor.env)
    assert maps["type"] == "image" and maps["content"]["src"].startswith("data:image/png;base64,")
    assert maps["title"] == "ground truth | prediction"
    assert window_data(client, "image_rgb", monitor.env)["type"] == "image"
    legend = window_data(client, "legend", monitor.env)["content"]
    assert all(name in legend for name in synthetic_scene.class_names)
    spectra = window_data(client, "spectra_class_spectra", monitor.env)["content"]["data"]
    means = [t for t in spectra if t.get("name") in synthetic_scene.class_names]
    assert len(means) == synthetic_scene.n_classes and len(means[0]["y"]) == synthetic_scene.n_bands
    assert "finished" in window_data(client, "log", monitor.env)["content"]


def test_env_is_saved_to_the_env_path(server, watched):
    _, monitor, _ = watched
    saved = json.loads((server.env_path / f"{monitor.env}.json").read_text())
    assert {"loss", "confusion", "maps", "validation"} <= set(saved["jsons"])


def test_saved_env_survives_a_server_restart(server, watched, tmp_path):
    _, monitor, _ = watched
    before = loss_traces(server.client(), monitor.env)
    restarted = Server(free_port(), server.env_path, tmp_path / "restarted.log").start()
    try:
        assert loss_traces(restarted.client(), monitor.env) == before
    finally:
        restarted.stop()


def test_assets_come_from_npm_not_from_visdoms_downloader(server):
    assert missing_assets(visdom_static_dir()) == []
    assert "Downloading" not in server.log.read_text()


# ----- a server that is absent, dies, comes back -------------------------------------------------

def test_no_server_warns_once_and_training_completes(synthetic_scene, tmp_path):
    warnings: list[str] = []
    port = free_port()
    assert not visdom_reachable("http://127.0.0.1", port)
    monitor = VisdomMonitor(port=port, warn=warnings.append, retry_seconds=0.0, flush_seconds=0.0)
    folder = train(synthetic_scene, tmp_path, monitor, epochs=1)
    assert_complete(folder)
    assert len(warnings) == 1 and f":{port}" in warnings[0]
    assert not monitor.connected


def test_server_killed_mid_run_training_ends_normally(own_server, synthetic_scene, tmp_path):
    warnings: list[str] = []
    monitor = VisdomMonitor(port=own_server.port, warn=warnings.append, retry_seconds=0.0, flush_seconds=0.0)
    folder = train(synthetic_scene, tmp_path, ServerSwitch(own_server, kill_at=3), monitor, epochs=1)
    assert_complete(folder)
    assert len(logged_iterations(folder)) > 3
    assert len(warnings) == 1 and not monitor.connected


def test_plotting_resumes_when_the_server_returns(own_server, synthetic_scene, tmp_path):
    warnings: list[str] = []
    monitor = VisdomMonitor(port=own_server.port, warn=warnings.append, retry_seconds=0.0, flush_seconds=0.0)
    folder = train(synthetic_scene, tmp_path, ServerSwitch(own_server, kill_at=3, back_at=6), monitor)
    assert_complete(folder)
    assert len(warnings) == 1 and monitor.connected
    client = own_server.client()
    iterations = logged_iterations(folder)  # the restarted server got everything, the outage included
    assert loss_traces(client, monitor.env)["loss"]["x"] == [float(r["step"]) for r in iterations]
    metrics = json.loads((folder / "metrics.json").read_text())
    assert window_data(client, "confusion", monitor.env)["content"]["data"][0]["z"] == metrics["confusion_matrix"]
    assert window_data(client, "maps", monitor.env) is not None
    assert (own_server.env_path / f"{monitor.env}.json").is_file()


# ----- login and the server command --------------------------------------------------------------

def drive(monitor: VisdomMonitor, env: str) -> None:
    """A short run's events, sent straight to the monitor."""
    monitor.run_started({"run": env, "scene": "S", "model": "m", "seed": 0, "config": {}})
    for step in (1, 2, 3):
        monitor.iteration(step, {"loss": 1.0 / step})
    monitor.epoch_ended(0, {"train_loss": 0.6, "lr": 0.01})
    monitor.run_ended({"overall_accuracy": 0.5})


def test_login_passes_credentials_through(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # visdom keeps its cookie secret in ~/.visdom/
    server = new_server(tmp_path, username="alice", password="s3cret")
    try:
        warnings: list[str] = []
        drive(VisdomMonitor(port=server.port, username="alice", password="s3cret", warn=warnings.append), "login_ok")
        assert warnings == []
        client = server.client(username="alice", password="s3cret")
        assert loss_traces(client, "login_ok")["loss"]["x"] == [1.0, 2.0, 3.0]
        refused = VisdomMonitor(port=server.port, username="alice", password="wrong", warn=warnings.append)
        drive(refused, "login_bad")
        assert len(warnings) == 1 and not refused.connected
        assert (tmp_path / ".visdom" / "COOKIE_SECRET").stat().st_mode & 0o077 == 0  # the secret is private
    finally:
        server.stop()


def test_server_refuses_a_port_in_use(server, tmp_path):
    with pytest.raises(UserError, match=f"port {server.port} is in use"):
        command(["--port", str(server.port), "--env_path", str(tmp_path)])
    with pytest.raises(UserError, match="--port"):
        start_server(0, tmp_path)


def test_assets_refuse_a_tarball_that_is_not_the_published_one(tmp_path):
    carried = tmp_path / "tarballs"
    carried.mkdir()
    (carried / PACKAGES[0].tarball).write_bytes(b"not the npm package")
    with pytest.raises(UserError, match=f"not the published {PACKAGES[0].spec}"):
        ensure_assets(carried, static=tmp_path / "static")
    assert not (tmp_path / "static" / "version.built").exists()


def test_missing_assets_without_npm_is_one_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm on this PATH
    with pytest.raises(UserError, match="npm is not installed"):
        ensure_assets(static=tmp_path / "static")
