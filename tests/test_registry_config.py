"""Registry and configuration: create by name, defaults, unset flags never override, --lr reaches all."""
from __future__ import annotations

import pytest
import torch

import models  # noqa: F401
from deephyperx.config import RUN_DEFAULTS, experiment_id, resolve_config
from deephyperx.errors import UserError
from deephyperx.registry import (ENGINE_DEFAULTS, MODEL_RUN_SETTINGS, chosen_model, create_model, get_spec,
                                 list_models)

NEURAL = [n for n in list_models("neural") if not n.startswith("test_")]  # test-only models register too


def test_the_first_models_are_registered():
    assert {"SVM", "SVM_grid", "SGD", "nearest", "RF", "nn", "hu"} <= set(list_models())


def test_every_model_has_a_citation_and_valid_defaults():
    for name in list_models():
        spec = get_spec(name)
        assert spec.citation and len(spec.citation) > 20, name
        assert set(spec.defaults) <= set(ENGINE_DEFAULTS) | MODEL_RUN_SETTINGS, name


@pytest.mark.parametrize("name", NEURAL)
@pytest.mark.parametrize("bands", [30, 103, 200])
def test_neural_models_build_and_give_logits(name, bands):
    spec = get_spec(name)
    p = spec.training_defaults()["patch_size"]
    model = create_model(name, n_bands=bands, n_classes=7, patch_size=p)
    out = model(torch.randn(3, bands, p, p))
    out = out[0] if isinstance(out, tuple) else out  # semi-supervised models also return a reconstruction
    expected = (3, 7, p, p) if spec.training_defaults()["output"] == "dense" else (3, 7)
    assert out.shape == expected


def test_unknown_model_lists_the_choices():
    with pytest.raises(UserError, match="unknown model 'hamidaa'.*SVM_grid"):
        get_spec("hamidaa")


def test_unset_values_keep_model_defaults_and_lr_reaches_every_model():
    for name in NEURAL:
        spec = get_spec(name)
        kept = resolve_config(spec, {"lr": None, "epoch": None})
        assert kept["lr"] == spec.training_defaults()["lr"]
        assert resolve_config(spec, {"lr": 0.123})["lr"] == 0.123
    assert resolve_config(get_spec("hu"), {})["optimizer"] == "sgd"


def test_cli_overrides_yaml_which_overrides_model_defaults():
    spec = get_spec("hu")
    config = resolve_config(spec, {"epoch": 7, "batch_size": 11}, {"epoch": 3})
    assert config["epoch"] == 3 and config["batch_size"] == 11 and config["training_sample"] == RUN_DEFAULTS["training_sample"]


@pytest.mark.parametrize("layer, message", [
    ({"epochs": 3}, "unknown setting 'epochs'"),
    ({"batch_size": 0}, "--batch_size 0"),
    ({"lr": -1.0}, "--lr -1.0"),
    ({"training_sample": 0}, "--training_sample 0"),
    ({"model_args": {"depth": 3}}, "has no option"),
])
def test_bad_settings_are_refused(layer, message):
    with pytest.raises(UserError, match=message):
        resolve_config(get_spec("nn"), layer)


def test_model_arguments_reach_the_factory():
    config = resolve_config(get_spec("nn"), {"model_args": {"dropout": True}})
    model = create_model("nn", n_bands=10, n_classes=3, **config["model_args"])
    assert any(isinstance(m, torch.nn.Dropout) for m in model.modules())


def test_experiment_id_changes_with_settings_that_change_numbers_only():
    spec = get_spec("hu")
    base = resolve_config(spec, {})
    assert experiment_id(base) == experiment_id(resolve_config(spec, {"runs": 5, "out": "x", "seed": 3}))
    assert experiment_id(base) != experiment_id(resolve_config(spec, {"lr": 0.5}))


def test_docs_model_table_matches_the_registry():
    """docs/MODELS.md is `python main.py list --markdown` under a fixed header: a changed default
    must be regenerated there (the file's first lines say how). A fresh process lists the models,
    without the test-only ones other test modules register."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    table = subprocess.run([sys.executable, str(root / "main.py"), "list", "--markdown"], capture_output=True,
                           text=True, timeout=300, check=True).stdout
    documented = (root / "docs" / "MODELS.md").read_text()
    assert documented.split("\n\n", 2)[2] == table, "regenerate docs/MODELS.md with `python main.py list --markdown`"


def test_chosen_model_lists_only_the_commands_families_and_names_the_right_command():
    with pytest.raises(UserError, match="no --model given") as missing:
        chosen_model(None, ("generator",), "main.py generate")
    assert "cgan" in str(missing.value) and "cvae" in str(missing.value) and "hamida" not in str(missing.value)
    with pytest.raises(UserError, match="use `main.py --model hamida`"):
        chosen_model("hamida", ("generator",), "main.py generate")
    assert chosen_model("hamida", ("neural", "sklearn"), "main.py").name == "hamida"


def test_an_installed_plugin_registers_its_models_however_the_registry_is_imported(tmp_path):
    """A package declaring a ``deephyperx.plugins`` entry point has its models listed by a bare
    ``import deephyperx.registry`` (no composition root importing the zoo)."""
    import subprocess
    import sys
    from pathlib import Path

    (tmp_path / "tinyzoo.py").write_text(
        "from torch import nn\nfrom deephyperx.registry import register_model\n\n"
        "@register_model('tiny_plugin_mlp', citation='a test plugin')\n"
        "class Tiny(nn.Module):\n"
        "    def __init__(self, n_bands, n_classes, patch_size=1):\n"
        "        super().__init__()\n        self.layer = nn.Linear(n_bands, n_classes)\n")
    info = tmp_path / "tinyzoo-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: tinyzoo\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("[deephyperx.plugins]\ntiny = tinyzoo\n")
    root = Path(__file__).resolve().parents[1]
    code = ("import deephyperx.registry as r; "
            "print('tiny_plugin_mlp' in r.list_models(), r.get_spec('tiny_plugin_mlp').citation)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": f"{tmp_path}:{root}", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True a test plugin"
