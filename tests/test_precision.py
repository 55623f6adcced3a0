"""bf16 mixed precision as a setting: it trains and maps, it is its own experiment, bad values are refused,
and the processor's support is detected from its flags."""
from __future__ import annotations

import json

import pytest
import torch

import main
from deephyperx import precision


def test_bf16_trains_and_maps_in_its_own_experiment(tmp_path, capsys):
    common = ["--model", "li", "--dataset", "Synthetic", "--epoch", "1", "--out", str(tmp_path)]
    assert main.main([*common, "--precision", "bf16"]) == 0
    assert main.main(common) == 0
    folders = sorted(tmp_path.glob("Synthetic_li_*"))
    assert len(folders) == 2  # the precision joins the experiment's identity; fp32 keeps its old name
    configs = [json.loads((f / "results.json").read_text())["config"].get("precision") for f in folders]
    assert sorted(map(str, configs)) == ["None", "bf16"]
    for folder in folders:
        oa = json.loads((folder / "results.json").read_text())["overall_accuracy"]["mean"]
        assert 0.0 <= oa <= 1.0


@pytest.mark.parametrize("model, options", [("hu", []), ("hamida", []), ("lee", ["--test_stride", "5"]),
                                            ("SSFTT", ["--patch_size", "5", "--pca", "8"])])
def test_bf16_maps_through_every_inference_path(tmp_path, model, options):
    """Centre-pixel patches (hu), a dense pass over tiles (hamida), a label per patch pixel summed over
    overlapping windows (lee) and a transformer (SSFTT) all map the scene under bfloat16 autocast."""
    args = ["--model", model, "--dataset", "Synthetic", "--epoch", "1", "--precision", "bf16", "--out", str(tmp_path),
            *options]
    assert main.main(args) == 0
    prediction = next(tmp_path.rglob("prediction.npy"))
    assert prediction.stat().st_size > 0


def test_autocast_runs_in_bfloat16():
    layer = torch.nn.Linear(8, 4)
    with precision.precision_context("bf16", torch.device("cpu")):
        assert layer(torch.randn(2, 8)).dtype == torch.bfloat16
    with precision.precision_context("fp32", torch.device("cpu")):
        assert layer(torch.randn(2, 8)).dtype == torch.float32


def test_a_bad_precision_is_one_line(tmp_path, capsys):
    assert main.main(["--model", "li", "--dataset", "Synthetic", "--precision", "fp8", "--out", str(tmp_path)]) == 2
    assert "fp8" in capsys.readouterr().err and not any(tmp_path.iterdir())


def test_support_is_read_from_the_processor_flags(monkeypatch):
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2", "amx_bf16"}))
    assert precision.native_bf16_on_cpu()
    monkeypatch.setattr(precision, "cpu_flags", lambda: frozenset({"avx2"}))
    assert not precision.native_bf16_on_cpu()
    assert precision.describe_support()["cpu_capability"] == torch.backends.cpu.get_cpu_capability()


def test_the_precision_benchmark_trains_both_precisions_over_seeds(tmp_path):
    from benchmarks.precision_accuracy import main as precision_accuracy

    out = tmp_path / "precision.json"
    assert precision_accuracy(["--models", "hu:1", "--seeds", "2", "--dataset", "Synthetic", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert [(row["model"], row["precision"]) for row in result["rows"]] == [("hu", "fp32"), ("hu", "bf16")]
    for row in result["rows"]:
        assert row["seeds"] == 2 and len(row["oa_per_seed"]) == 2 and row["oa_std"] >= 0
        assert 0 < row["oa_mean"] <= 100 and len(row["train_seconds_per_seed"]) == 2
    assert "native_bf16" in result and result["cpu_capability"]
