"""Typed settings: each task's settings are one declaration, from which its flags, the YAML file's
validation, the defaults and the experiment's identity are derived; each flag is declared once."""
from __future__ import annotations

import argparse
from collections import defaultdict

import pytest

import main
from deephyperx.bench import BenchSettings
from deephyperx.catalogue_cli import CatalogueSettings
from deephyperx.config import RUN_DEFAULTS, ClassifySettings, experiment_id, resolve_config
from deephyperx.errors import UserError
from deephyperx.generation_cli import GenerateSettings
from deephyperx.registry import ENGINE_DEFAULTS, get_spec
from deephyperx.segmentation_run import SegmentSettings, resolve_segmentation_config
from deephyperx.settings import _declaring_rank, add_flags, declared, defaults, outside_identity

TASKS = [ClassifySettings, BenchSettings, GenerateSettings, SegmentSettings, CatalogueSettings]


def test_each_flag_is_declared_once_across_the_tasks():
    """A flag's declaration (help, type, argparse options) lives in one class, whichever tasks take it;
    a task may rename a flag (``--crop``), which is then that task's own, single declaration."""
    owners = defaultdict(set)
    for task in TASKS:
        renamed = set(getattr(task, "FLAGS", {}))
        for item in declared(task):
            if item.flag:
                owner = task if item.name in renamed else task.__mro__[_declaring_rank(task, item.name)]
                owners[item.flag, item.name].add(owner)
    twice = {flag: sorted(c.__name__ for c in classes) for flag, classes in owners.items() if len(classes) > 1}
    assert not twice


def test_every_task_parser_is_built_from_its_declaration():
    for task in TASKS:
        parser = argparse.ArgumentParser()
        add_flags(parser, task)
        flags = {option for action in parser._actions for option in action.option_strings} - {"-h", "--help"}
        assert flags == {s.flag for s in declared(task) if s.flag}, task.__name__
    shown = {option for action in main.build_parser()._actions for option in action.option_strings}
    assert {s.flag for s in declared(ClassifySettings) if s.flag} <= shown


def test_the_defaults_and_the_identity_are_derived_from_the_declarations():
    assert set(ENGINE_DEFAULTS) <= set(defaults(ClassifySettings))
    assert RUN_DEFAULTS["training_sample"] == 0.1 and RUN_DEFAULTS["out"] == "outputs"
    assert defaults(SegmentSettings)["out"] == "outputs/segment" and defaults(SegmentSettings)["val_fraction"] == 0
    assert outside_identity(ClassifySettings) == {"runs", "out", "folder", "cuda", "n_jobs", "trust_checkpoint",
                                                  "seed", "with_exploration"}
    config = resolve_config(get_spec("hu"), {"seed": 3, "out": "elsewhere", "runs": 5})
    assert experiment_id(config) == experiment_id(resolve_config(get_spec("hu")))  # where and how often: same folder
    assert experiment_id(resolve_config(get_spec("hu"), {"lr": 0.5})) != experiment_id(config)


@pytest.mark.parametrize("layer, message", [
    ({"learning_rate": 0.1}, "unknown setting 'learning_rate'; did you mean 'lr'?"),
    ({"trainig_sample": 0.2}, "did you mean 'training_sample'?"),
    ({"epoch": "ten"}, "--epoch 'ten' must be a whole number"),
    ({"lr": "fast"}, "--lr 'fast' must be a finite number"),
    ({"inputs": "cube"}, "--inputs 'cube' must be a list"),
    ({"class_balancing": "yes"}, "--class_balancing 'yes' must be true or false"),
])
def test_a_settings_file_is_checked_with_one_line(layer, message):
    with pytest.raises(UserError) as error:
        resolve_config(get_spec("hu"), layer)
    assert message in str(error.value) and "\n" not in str(error.value)


def test_a_settings_file_may_use_a_renamed_flag():
    """``crop: 64`` in a segment settings file sets the setting behind ``--crop`` (``patch_size``)."""
    from deephyperx.segmentation_cli import build_parser, cli_settings
    from deephyperx.settings import yaml_aliases

    aliases = yaml_aliases(SegmentSettings)
    assert aliases == {"crop": "patch_size", "sources": "inputs"}
    file_layer = {aliases.get(k, k): v for k, v in {"crop": 64}.items()}
    config = resolve_segmentation_config(get_spec("segnet"), file_layer,
                                         cli_settings(build_parser().parse_args(["--no_flip"])))
    assert config["patch_size"] == 64 and config["flip_augmentation"] is False and config["stride"] == 32
