"""Console, file and TensorBoard monitors on real runs; a failing monitor never stops training."""
from __future__ import annotations

import io
import json

import pytest

import models  # noqa: F401
from deephyperx.config import resolve_config
from deephyperx.experiment import Experiment
from deephyperx.monitor import ConsoleMonitor, Monitor, Monitors, trim_records
from deephyperx.registry import get_spec
from deephyperx.runner import ClassifyTask


def hu_config(scene, tmp_path, **overrides):
    return resolve_config(get_spec("hu"), {"dataset": scene.name, "out": str(tmp_path), "epoch": 3,
                                           "with_exploration": True, **overrides})


def test_file_reports_hold_curves_figures_and_html(synthetic_scene, tmp_path):
    Experiment(ClassifyTask(synthetic_scene, hu_config(synthetic_scene, tmp_path))).run_seed(0, tmp_path / "run")
    folder = tmp_path / "run"
    for name in ("curves.png", "rgb.png", "ground_truth.png", "class_spectra.png", "report.html"):
        assert (folder / name).is_file(), name
    html = (folder / "report.html").read_text()
    for name in ("map.png", "confusion.png", "curves.png", "rgb.png", "class_spectra.png"):
        assert f'src="{name}"' in html
    metrics = json.loads((folder / "metrics.json").read_text())
    assert f"{100 * metrics['overall_accuracy']:.2f}" in html
    log = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines()]
    epochs = [r for r in log if r["kind"] == "epoch"]
    assert len(epochs) == 3 and {"val_oa", "val_aa", "val_kappa", "lr", "train_loss"} <= set(epochs[0])


class Exploding(Monitor):
    calls = 0

    def iteration(self, step, logs):
        Exploding.calls += 1
        raise ConnectionError("server gone")


def test_a_failing_monitor_warns_once_and_training_goes_on(synthetic_scene, tmp_path, capsys):
    task = ClassifyTask(synthetic_scene, hu_config(synthetic_scene, tmp_path))
    result = Experiment(task).run_seed(0, tmp_path / "run", extra_monitors=[Exploding()])
    assert result["overall_accuracy"] > 0
    assert capsys.readouterr().err.count("monitor Exploding failed") == 1
    assert Exploding.calls > 3


def test_console_bar_and_lines():
    lines = io.StringIO()
    console = ConsoleMonitor(4, stream=lines, bar=False)
    console.epoch_ended(0, {"train_loss": 1.5, "val_oa": 0.25})
    assert lines.getvalue().startswith("epoch 1/4 train_loss=1.5 val_oa=0.25")
    bar = io.StringIO()
    console = ConsoleMonitor(4, stream=bar, bar=True)
    console.run_started({"run": "Scene_hu_seed0"})
    console.epoch_ended(1, {"train_loss": 0.5})
    console.run_ended({})
    assert "Scene_hu_seed0" in bar.getvalue() and "2/4" in bar.getvalue()


def test_trim_records_drops_what_follows_the_checkpoint(tmp_path):
    path = tmp_path / "m.jsonl"
    records = [{"kind": "iteration", "step": s, "loss": 1.0} for s in range(1, 7)]
    records += [{"kind": "epoch", "epoch": e} for e in range(3)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + '{"kind": "itera')
    trim_records(path, step=4, epoch=2)
    kept = [json.loads(line) for line in path.read_text().splitlines()]
    assert [r["step"] for r in kept if r["kind"] == "iteration"] == [1, 2, 3, 4]
    assert [r["epoch"] for r in kept if r["kind"] == "epoch"] == [0, 1]


def test_tensorboard_event_files(synthetic_scene, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    from deephyperx.tensorboard_monitor import TensorBoardMonitor

    task = ClassifyTask(synthetic_scene, hu_config(synthetic_scene, tmp_path))
    Experiment(task).run_seed(0, tmp_path / "run", extra_monitors=[TensorBoardMonitor(tmp_path / "tb")])
    events = EventAccumulator(str(tmp_path / "tb" / "Synthetic_hu_seed0")).Reload()
    tags = events.Tags()
    assert {"iteration/loss", "epoch/train_loss", "epoch/val_oa", "epoch/lr", "test/overall_accuracy"} <= set(tags["scalars"])
    assert {"rgb", "ground_truth", "prediction", "class_spectra"} <= set(tags["images"])
    assert [e.step for e in events.Scalars("epoch/train_loss")] == [1, 2, 3]
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert events.Scalars("test/overall_accuracy")[0].value == pytest.approx(metrics["overall_accuracy"])


def test_monitors_fan_out_in_order():
    seen = []

    class Recorder(Monitor):
        def __init__(self, name):
            self.name = name

        def epoch_ended(self, epoch, logs):
            seen.append((self.name, epoch))

    Monitors([Recorder("a"), Recorder("b")]).epoch_ended(2, {})
    assert seen == [("a", 2), ("b", 2)]


def test_secrets_are_not_recorded():
    from main import redact_secrets

    assert redact_secrets(["--visdom_password", "s3cret", "--model", "hu", "--visdom_password=x"]) == \
        ["--visdom_password", "***", "--model", "hu", "--visdom_password=***"]
