"""No file a user may receive from someone else runs code when it is loaded.

Every loader gets a crafted file whose payload would create a marker file (a pickle ``__reduce__``
calling ``os.system``, a skops node calling ``exec``, a ``!!python/object/apply`` YAML tag, ...),
through the command line a user would type. Each must be refused with exit status 2 and exactly
one ``error: ...`` line on stderr (no traceback), the marker must never appear, and nothing may be
written. :func:`test_the_crafted_payloads_are_live` shows that each payload does run when its file
is loaded the unsafe way, so the refusals below are what keeps it from running.
"""
from __future__ import annotations

import importlib
import io
import json
import os
import pickle
import re
import shlex
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Sequence

import h5py
import numpy as np
import pytest
import scipy.io
import skops.io as sio
import torch
import yaml
from PIL import Image
from scipy.io.matlab import MatlabObject

from deephyperx import checkpoint as ckpt
from deephyperx.errors import UserError

ROOT = Path(__file__).resolve().parents[1]

#: Every scikit-learn model of the toolbox, fitted through main.py: (label, model, extra flags).
#: ``nearest`` twice: on Synthetic's 16+ bands it searches by brute force, on 10 PCA components
#: scikit-learn builds a k-d tree, which the saved model then holds.
SKLEARN_FITS = [("SVM", "SVM", []), ("SVM_grid", "SVM_grid", []), ("SGD", "SGD", []), ("nearest", "nearest", []),
                ("nearest_kdtree", "nearest", ["--pca", "10"]), ("RF", "RF", [])]
FIT_FLAGS = ["--dataset", "Synthetic", "--training_sample", "0.05", "--n_jobs", "1"]


# ----- payloads ----------------------------------------------------------------------------------

class ShellPayload:
    """Unpickling this runs ``touch MARKER``, as a malicious pickle would run anything."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {shlex.quote(str(self.marker))}",)


def yaml_payload(marker: Path) -> str:
    """A YAML node that ``yaml.unsafe_load`` turns into a call of ``os.system('touch MARKER')``."""
    return f"!!python/object/apply:os.system [{json.dumps('touch ' + shlex.quote(str(marker)))}]"


def write_evil_torch(path: Path, marker: Path, **fields) -> Path:
    """A checkpoint with our format marker whose weights unpickle into the payload."""
    torch.save({"format": ckpt.FORMAT, "version": ckpt.VERSION, **fields,
                "model_state": {"weight": ShellPayload(marker)}}, path)
    return path


def write_evil_npy(path: Path, marker: Path, shape: tuple[int, ...] = (8, 8)) -> Path:
    """A .npy object array: loading it with ``allow_pickle=True`` unpickles (runs) each element."""
    array = np.empty(shape, dtype=object)
    array[...] = ShellPayload(marker)
    np.save(path, array, allow_pickle=True)
    return path


def write_evil_skops(path: Path, model: Path, marker: Path, **meta) -> Path:
    """A real ``model.skops`` (and its ``model.json``, updated with ``meta``) whose estimator gains
    an attribute built by calling ``numpy.testing._private.utils.runstring`` (an ``exec``)."""
    code = f"import pathlib; pathlib.Path({str(marker)!r}).touch()"
    with zipfile.ZipFile(io.BytesIO(sio.dumps((code, {})))) as archive:
        arguments = json.loads(archive.read("schema.json"))
    payload = {"__class__": "runstring", "__module__": "numpy.testing._private.utils",
               "__loader__": "ConstructorFromReduceNode", "content": arguments}
    with zipfile.ZipFile(model) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    schema = json.loads(files["schema.json"])
    attributes = schema["content"]
    attributes["content"]["payload"] = payload
    attributes["key_types"]["content"].append({"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode"})
    files["schema.json"] = json.dumps(schema).encode()
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    description = json.loads(model.with_suffix(".json").read_text())
    path.with_suffix(".json").write_text(json.dumps({**description, **meta}))
    return path


def write_forest_with_link(path: Path, model: Path, link: int) -> Path:
    """A copy of a random forest's model.skops whose first tree's root has its left child at ``link``."""
    with zipfile.ZipFile(model) as archive:
        files = {name: archive.read(name) for name in archive.namelist()}
    stack = [json.loads(files["schema.json"])]
    while stack:  # the first tree node of the schema
        item = stack.pop(0)
        if isinstance(item, dict) and item.get("__loader__") == "TreeNode":
            break
        stack.extend(item.values() if isinstance(item, dict) else item if isinstance(item, list) else [])
    name = item["content"]["content"]["nodes"]["file"]
    nodes = np.load(io.BytesIO(files[name]), allow_pickle=False)
    nodes["left_child"][0] = link
    buffer = io.BytesIO()
    np.save(buffer, nodes, allow_pickle=False)
    files[name] = buffer.getvalue()
    with zipfile.ZipFile(path, "w") as archive:
        for entry, data in files.items():
            archive.writestr(entry, data)
    shutil.copy(model.with_suffix(".json"), path.with_suffix(".json"))
    return path


# ----- running the command line ----------------------------------------------------------------------

def environment(folder: Path) -> dict[str, str]:
    return {**os.environ, "DEEPHYPERX_DATA": str(folder / "no-data-here"), "DEEPHYPERX_CACHE": str(folder / "cache"),
            "PYTHONHASHSEED": "0", "OMP_NUM_THREADS": "1"}


def run_process(args: Sequence[str], folder: Path) -> tuple[int, str]:
    """``python main.py ARGS`` in ``folder`` as a real process: its exit status and stderr."""
    result = subprocess.run([sys.executable, str(ROOT / "main.py"), *args], cwd=folder, capture_output=True,
                            text=True, timeout=300, env=environment(folder))
    return result.returncode, result.stderr


def run_here(args: Sequence[str], folder: Path, capsys, monkeypatch) -> tuple[int, str]:
    """``main.main(ARGS)`` in this process, from ``folder``: its exit status and stderr."""
    import main

    for key, value in environment(folder).items():
        monkeypatch.setenv(key, value)
    capsys.readouterr()
    cwd = os.getcwd()
    os.chdir(folder)
    try:
        status = main.main(list(args))
    finally:
        os.chdir(cwd)
    return status, capsys.readouterr().err


def snapshot(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")}


def assert_refused(outcome: tuple[int, str], folder: Path, before: set[str], marker: Path, *fragments: str) -> None:
    """Exit status 2, one ``error:`` line naming ``fragments``, no traceback, no payload run, nothing written."""
    status, err = outcome
    assert not marker.exists(), f"the payload ran: {err}"
    assert status == 2, err
    assert "Traceback" not in err, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    for fragment in fragments:
        assert fragment in err, (fragment, err)
    assert snapshot(folder) == before, sorted(snapshot(folder) - before)


def synthetic_facts() -> tuple[int, list[str]]:
    """The band count and class names of the embedded Synthetic scene."""
    import datasets

    scene = datasets.resolve_scene("Synthetic", ROOT / "no-data-here")
    return scene.n_bands, list(scene.class_names)


def write_scene_files(folder: Path) -> tuple[Path, Path]:
    """A tiny custom scene: 12x12x6 cube and labels 1..3."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(1, 4), 4)[None, :].repeat(12, axis=0).astype(np.int16)
    cube = (labels[..., None] + 0.1 * rng.standard_normal((12, 12, 6))).astype(np.float32)
    np.save(folder / "cube.npy", cube)
    np.save(folder / "gt.npy", labels)
    return folder / "cube.npy", folder / "gt.npy"


def write_tiles(folder: Path) -> list[str]:
    """Two 64x64 RGB tiles 'a' and 'b' with labels 1..3: the flags of a custom tile set."""
    for i, name in enumerate("ab"):
        rng = np.random.default_rng(i)
        labels = np.kron(rng.integers(1, 4, (8, 8)), np.ones((8, 8), int)).astype(np.uint8)
        Image.fromarray((labels[..., None] * 60 + rng.integers(0, 20, (64, 64, 3))).astype(np.uint8)).save(
            folder / f"{name}.png")
        Image.fromarray(labels).save(folder / f"{name}_gt.png")
    return ["--images", "a.png", "b.png", "--labels", "a_gt.png", "b_gt.png", "--class_names", "road", "building",
            "tree", "--test_tiles", "b"]


def write_catalogue(folder: Path, cube: str = "s0.npy", labels: str = "s0_gt.npy") -> Path:
    """A catalogue of two small .npy scenes (the first one's files may be replaced)."""
    from deephyperx.scene_catalogue import write_catalogue as write

    rng = np.random.default_rng(0)
    for name in ("s0", "s1"):
        gt = np.repeat(np.arange(1, 3), 8)[None, :].repeat(16, axis=0).astype(np.uint8)
        np.save(folder / f"{name}.npy", (gt[..., None] + 0.1 * rng.standard_normal((16, 16, 8))).astype(np.float32))
        np.save(folder / f"{name}_gt.npy", gt)
    scenes = [{"name": "s0", "cube": cube, "labels": labels}, {"name": "s1", "cube": "s1.npy", "labels": "s1_gt.npy"}]
    return write(folder / "catalogue.yaml", scenes, ["a", "b"], name="tiles", split={"test_scenes": ["s1"]})


# ----- fixtures ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sklearn_models(tmp_path_factory) -> dict[str, Path]:
    """Each scikit-learn model of the toolbox fitted on Synthetic through main.py: its model.skops."""
    import main

    out = tmp_path_factory.mktemp("sklearn")
    models = {}
    for label, name, extra in SKLEARN_FITS:
        assert main.main(["--model", name, *FIT_FLAGS, *extra, "--out", str(out / label), "--no_visdom"]) == 0
        (models[label],) = (out / label).glob("*/seed0/model.skops")
    return models


@pytest.fixture(scope="module")
def hu_model(tmp_path_factory) -> Path:
    """The model.pt of a one-epoch hu run on the custom scene of :func:`write_scene_files`."""
    import main

    folder = tmp_path_factory.mktemp("hu")
    cube, gt = write_scene_files(folder)
    out = folder / "runs"
    assert main.main(["--model", "hu", "--cube", str(cube), "--gt", str(gt), "--epoch", "1", "--training_sample", "0.5",
                      "--out", str(out), "--no_visdom"]) == 0
    (model,) = out.glob("*/seed0/model.pt")
    return model


@pytest.fixture
def marker(tmp_path) -> Path:
    return tmp_path / "MARKER"


# ----- the payloads are real ------------------------------------------------------------------------

def test_the_crafted_payloads_are_live(tmp_path, marker, sklearn_models):
    """Loaded the unsafe way, each crafted file runs its payload: the refusals below are what stops it."""
    loads = [
        lambda: torch.load(write_evil_torch(tmp_path / "evil.pt", marker), weights_only=False),
        lambda: np.load(write_evil_npy(tmp_path / "evil.npy", marker), allow_pickle=True)[0, 0],
        lambda: yaml.unsafe_load(yaml_payload(marker)),
        lambda: sio.load(write_evil_skops(tmp_path / "evil.skops", sklearn_models["SVM"], marker),
                         trusted=sio.get_untrusted_types(file=tmp_path / "evil.skops")),
        lambda: pickle.loads(pickle.dumps(ShellPayload(marker), protocol=0)),
    ]
    for load in loads:
        marker.unlink(missing_ok=True)
        load()
        assert marker.exists()


# ----- scikit-learn models (skops) ----------------------------------------------------------------------

def test_trusted_skops_types_are_full_names_of_classes():
    """The allowlist names classes, each in full: no entry is a module or a prefix of another."""
    for name in ckpt.TRUSTED_SKOPS_TYPES:
        module, _, attribute = name.rpartition(".")
        assert module and attribute, name
        assert isinstance(getattr(importlib.import_module(module), attribute), type), name
        assert not any(other.startswith(name + ".") for other in ckpt.TRUSTED_SKOPS_TYPES), name
    assert {"numpy", "scipy", "sklearn", "numpy.", "sklearn."}.isdisjoint(ckpt.TRUSTED_SKOPS_TYPES)


def test_every_scikit_learn_model_of_the_toolbox_restores_without_trust(sklearn_models, tmp_path, capsys,
                                                                          monkeypatch):
    """The allowlist is complete: every registered scikit-learn model, fitted and saved by main.py,
    is restored by ``--restore model.skops --epoch 0`` without --trust_checkpoint, to the same map."""
    from deephyperx.registry import get_spec, list_models

    registered = {name for name in list_models() if get_spec(name).family == "sklearn"}
    assert {name for _, name, _ in SKLEARN_FITS} == registered
    for label, name, extra in SKLEARN_FITS:
        model = sklearn_models[label]
        assert ckpt.foreign_skops_types(model) == [], label
        out = tmp_path / label
        status, err = run_here(["--model", name, *FIT_FLAGS, *extra, "--restore", str(model), "--epoch", "0",
                                "--out", str(out), "--no_visdom"], tmp_path, capsys, monkeypatch)
        assert status == 0, (label, err)
        (restored,) = out.glob("*/seed0/metrics.json")
        fitted = model.parent / "metrics.json"
        assert json.loads(restored.read_text())["confusion_matrix"] == \
            json.loads(fitted.read_text())["confusion_matrix"], label


def test_a_skops_model_that_runs_code_is_refused_before_it_is_built(sklearn_models, tmp_path, marker):
    """The reported attack: a model.skops whose tree calls numpy.testing's ``runstring`` (an exec),
    with a model.json that matches the scene, so that only the type check stops it."""
    write_evil_skops(tmp_path / "evil.skops", sklearn_models["SVM"], marker)
    assert ckpt.foreign_skops_types(tmp_path / "evil.skops") == ["numpy.testing._private.utils.runstring"]
    before = snapshot(tmp_path)
    outcome = run_process(["--model", "SVM", "--dataset", "Synthetic", "--restore", "evil.skops", "--epoch", "0"],
                          tmp_path)
    assert_refused(outcome, tmp_path, before, marker, "evil.skops", "numpy.testing._private.utils.runstring",
                   "--trust_checkpoint")
    # the user vouches for the file: it is loaded as before, and its code runs
    status, err = run_process(["--model", "SVM", "--dataset", "Synthetic", "--restore", "evil.skops", "--epoch", "0",
                               "--trust_checkpoint", "--out", "trusted"], tmp_path)
    assert status == 0 and marker.exists(), err


def test_a_skops_model_of_another_scene_is_refused_on_its_description_alone(sklearn_models, tmp_path, marker):
    """The description is checked before the estimator file is opened: a model.json of another
    scene stops the load, and the payload in the model never runs."""
    n_bands, _ = synthetic_facts()
    write_evil_skops(tmp_path / "evil.skops", sklearn_models["SVM"], marker, n_bands=n_bands + 3)
    before = snapshot(tmp_path)
    outcome = run_process(["--model", "SVM", "--dataset", "Synthetic", "--restore", "evil.skops", "--epoch", "0"],
                          tmp_path)
    assert_refused(outcome, tmp_path, before, marker, f"expects {n_bands + 3} bands")


def test_a_random_forest_whose_tree_points_outside_itself_is_refused(sklearn_models, tmp_path, marker, capsys,
                                                                      monkeypatch):
    """scikit-learn follows a tree's node links without bounds checks (which is why skops trusts no
    tree by default): a forest whose first tree's root links to itself (an endless loop) or past
    the tree's end is refused before it predicts anything."""
    for label, link in (("loop", 0), ("outside", 10 ** 6)):
        write_forest_with_link(tmp_path / f"{label}.skops", sklearn_models["RF"], link)
    before = snapshot(tmp_path)
    for label in ("loop", "outside"):
        outcome = run_here(["--model", "RF", *FIT_FLAGS, "--restore", f"{label}.skops", "--epoch", "0", "--out", "o"],
                           tmp_path, capsys, monkeypatch)
        assert_refused(outcome, tmp_path, before, marker, f"{label}.skops", "decision tree")


# ----- torch checkpoints -----------------------------------------------------------------------------------

@pytest.mark.parametrize("version, safe", [
    ("2.13.0+cpu", True), ("2.6.0", True), ("2.6.0+cu124", True), ("2.6.1", True), ("2.7.0.dev20250301+cpu", True),
    ("3.0", True), ("2.5.1", False), ("2.5.1+cu121", False), ("2.1.0", False), ("1.13.1", False),
    ("2.6.0rc1", False), ("2.6.0a0+ecf3bae40a", False), ("2.6.0.dev20241112", False), ("unknown", False),
])
def test_checkpoints_are_never_loaded_under_a_torch_older_than_2_6(version, safe):
    """torch.load(weights_only=True) could run code before torch 2.6 (CVE-2025-32434)."""
    assert ckpt.torch_version_is_safe(version) is safe
    if safe:
        ckpt.require_safe_torch(version)
    else:
        with pytest.raises(UserError, match="CVE-2025-32434"):
            ckpt.require_safe_torch(version)


def test_the_installed_torch_and_the_requirements_floor_are_safe():
    ckpt.require_safe_torch()
    import tomllib

    dependencies = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    floor = [re.fullmatch(r"torch>=([\d.]+)", d) for d in dependencies if d.startswith("torch")]
    assert len(floor) == 1 and floor[0] is not None and ckpt.torch_version_is_safe(floor[0].group(1))


def test_a_neural_checkpoint_that_runs_code_is_refused(tmp_path, marker):
    write_evil_torch(tmp_path / "evil.pt", marker, config={"model": "hu"})
    before = snapshot(tmp_path)
    outcome = run_process(["--model", "hu", "--dataset", "Synthetic", "--restore", "evil.pt", "--epoch", "0",
                           "--out", "o"], tmp_path)
    assert_refused(outcome, tmp_path, before, marker, "evil.pt", "loaded safely", "posix.system")


def test_every_command_refuses_a_checkpoint_that_runs_code(tmp_path, marker, capsys, monkeypatch):
    """generate, segment, map, catalogue --restore; --synthetic; and segnet's VGG weights."""
    write_evil_torch(tmp_path / "evil.pt", marker, config={"model": "hu"})
    tiles = write_tiles(tmp_path)
    write_scene_files(tmp_path)
    write_catalogue(tmp_path)
    commands = [
        ["generate", "--model", "cvae", "--dataset", "Synthetic", "--restore", "evil.pt", "--out", "o/s.h5",
         "--runs_dir", "o"],
        ["segment", "--model", "segnet", *tiles, "--restore", "evil.pt", "--out", "o"],
        ["segment", "--model", "segnet", *tiles, "--model_args", "vgg_weights=evil.pt", "--out", "o"],
        ["map", "--restore", "evil.pt", "--cube", "cube.npy", "--out", "o/map.npy"],
        ["catalogue", "--catalogue", "catalogue.yaml", "--model", "hu", "--restore", "evil.pt", "--epoch", "0",
         "--out", "o"],
        ["--model", "hu", "--dataset", "Synthetic", "--synthetic", "evil.pt", "--epoch", "1", "--out", "o"],
    ]
    before = snapshot(tmp_path)
    for args in commands:
        assert_refused(run_here(args, tmp_path, capsys, monkeypatch), tmp_path, before, marker, "evil.pt")


def test_a_resume_checkpoint_that_runs_code_is_refused(tmp_path, marker, capsys, monkeypatch):
    """A checkpoint.pt planted in a run's ``seed0.partial/`` (with the right identity) is what the
    same command resumes from: it is refused, not run."""
    args = ["--model", "hu", "--dataset", "Synthetic", "--epoch", "1", "--out", "runs"]
    assert run_here(args, tmp_path, capsys, monkeypatch)[0] == 0
    (finished,) = (tmp_path / "runs").glob("*/seed0")
    partial = finished.with_name("seed0.partial")
    partial.mkdir()
    for name in ("identity.txt", "config.yaml"):
        shutil.copy(finished / name, partial / name)
    write_evil_torch(partial / "checkpoint.pt", marker, config={"model": "hu"}, epoch=1, step=1)
    before = snapshot(tmp_path)
    assert_refused(run_here(args, tmp_path, capsys, monkeypatch), tmp_path, before, marker, "checkpoint.pt",
                   "loaded safely")


# ----- .npy arrays -------------------------------------------------------------------------------------------

def test_npy_object_arrays_are_refused_wherever_arrays_are_read(tmp_path, marker, capsys, monkeypatch, hu_model):
    """A pickled object array as a cube, labels, split files, a tile image, a region mask, a
    catalogue scene, a cube to map and a prediction to detect objects in."""
    write_evil_npy(tmp_path / "evil.npy", marker)
    write_evil_npy(tmp_path / "evil3.npy", marker, shape=(12, 12, 6))
    write_scene_files(tmp_path)
    tiles = write_tiles(tmp_path)
    (tmp_path / "masked.yaml").write_text(
        "images: [a.png, b.png]\nlabels: [a_gt.png, b_gt.png]\nclass_names: [road, building, tree]\n"
        "train: [{tile: a, mask: evil.npy}]\ntest: [b]\n")
    (tmp_path / "cat").mkdir()
    catalogue = write_catalogue(tmp_path / "cat", cube="../evil3.npy")
    commands = [
        ["--model", "hu", "--cube", "evil3.npy", "--gt", "gt.npy", "--out", "o"],
        ["--model", "hu", "--cube", "cube.npy", "--gt", "evil.npy", "--out", "o"],
        ["--model", "hu", "--cube", "cube.npy", "--gt", "gt.npy", "--train_set", "evil.npy", "--test_set", "gt.npy",
         "--out", "o"],
        ["segment", "--model", "segnet", tiles[0], "evil.npy", *tiles[2:], "--out", "o"],
        ["segment", "--model", "segnet", "--dataset", "masked.yaml", "--out", "o"],
        ["catalogue", "--catalogue", str(catalogue), "--model", "hu", "--out", "o"],
        ["map", "--restore", str(hu_model), "--cube", "evil3.npy", "--out", "o/map.npy"],
        ["segment", "detect", "--prediction", "evil.npy", "--class", "1", "--out", "o"],
    ]
    before = snapshot(tmp_path)
    for args in commands:
        assert_refused(run_here(args, tmp_path, capsys, monkeypatch), tmp_path, before, marker, "evil")


# ----- YAML ------------------------------------------------------------------------------------------------------

def test_yaml_that_runs_code_is_refused_in_every_declaration(tmp_path, marker, capsys, monkeypatch):
    """Settings files, scene, tile-set and catalogue declarations and segment's option values are
    read as plain data: a ``!!python/object/apply`` tag is an error, never a call."""
    payload = yaml_payload(marker)
    (tmp_path / "evil.yaml").write_text(payload + "\n")
    (tmp_path / "settings.yaml").write_text(f"epoch: {payload}\n")
    (tmp_path / "scene.yaml").write_text(f"cube: cube.npy\nlabels: gt.npy\nclass_names: {payload}\n")
    (tmp_path / "tiles.yaml").write_text(f"images: [a.png, b.png]\nlabels: [a_gt.png, b_gt.png]\nname: {payload}\n")
    (tmp_path / "catalogue.yaml").write_text(f"class_names: [a, b]\nscenes: {payload}\n")
    write_scene_files(tmp_path)
    tiles = write_tiles(tmp_path)
    before = snapshot(tmp_path)
    process = run_process(["--model", "hu", "--dataset", "Synthetic", "--config", "evil.yaml", "--out", "o"], tmp_path)
    assert_refused(process, tmp_path, before, marker, "evil.yaml", "python/object/apply")
    commands = [
        (["--model", "hu", "--dataset", "Synthetic", "--config", "settings.yaml", "--out", "o"], "settings.yaml"),
        (["--model", "hu", "--dataset", "scene.yaml", "--out", "o"], "scene.yaml"),
        (["segment", "--model", "segnet", "--config", "evil.yaml", "--out", "o"], "evil.yaml"),
        (["segment", "--model", "segnet", "--dataset", "tiles.yaml", "--out", "o"], "tiles.yaml"),
        (["segment", "--model", "segnet", *tiles, "--model_args", f"width={payload}", "--out", "o"], "width="),
        (["catalogue", "--catalogue", "catalogue.yaml", "--model", "hu", "--out", "o"], "catalogue.yaml"),
        (["catalogue", "--catalogue", "evil.yaml", "--model", "hu", "--out", "o"], "evil.yaml"),
        (["bench", "--models", "hu", "--datasets", "scene.yaml", "--out", "o"], "scene.yaml"),
    ]
    for args, fragment in commands:
        assert_refused(run_here(args, tmp_path, capsys, monkeypatch), tmp_path, before, marker, fragment)


# ----- HDF5 and MATLAB --------------------------------------------------------------------------------------------

def test_hdf5_files_carry_no_code_and_hostile_ones_are_refused(tmp_path, marker, capsys, monkeypatch):
    """h5py never unpickles: an opaque dataset reads as raw bytes, a variable-length one as bytes
    objects, attributes as strings or bytes. A pickle stored in an HDF5 file is therefore inert
    data, and the only code an HDF5 file could carry is YAML text (the spectra file's ``config``
    attribute), which is read as plain data. Cubes and spectra files whose arrays hold pickles
    instead of numbers, and a spectra file whose configuration carries a YAML payload, are refused."""
    live = pickle.dumps(ShellPayload(marker))
    text = pickle.dumps(ShellPayload(marker), protocol=0)  # no NUL bytes: storable as a variable-length string
    with h5py.File(tmp_path / "opaque.h5", "w") as handle:
        handle.create_dataset("cube", data=np.full((12, 12, 6), np.void(live)))
        handle.attrs["payload"] = np.void(live)
    with h5py.File(tmp_path / "strings.h5", "w") as handle:
        handle.create_dataset("cube", data=np.full((12, 12, 6), text, dtype=object), dtype=h5py.vlen_dtype(bytes))
    n_bands, class_names = synthetic_facts()
    with h5py.File(tmp_path / "pickled_spectra.h5", "w") as handle:
        handle.create_dataset("spectra", data=np.full((4, n_bands), np.void(live)))
        handle.create_dataset("labels", data=np.zeros(4, np.int64))
        handle.attrs["class_names"] = json.dumps(class_names)
    with h5py.File(tmp_path / "yaml_spectra.h5", "w") as handle:  # valid in every other respect
        handle.create_dataset("spectra", data=np.ones((4, n_bands), np.float32))
        handle.create_dataset("labels", data=np.arange(4, dtype=np.int64) % len(class_names))
        handle.attrs["format"] = "deephyperx-spectra"
        handle.attrs["class_names"] = json.dumps(class_names)
        handle.attrs["n_bands"] = n_bands
        handle.attrs["config"] = f"model: {yaml_payload(marker)}\n"
        handle.attrs["payload"] = np.void(live)
    _, gt = write_scene_files(tmp_path)
    before = snapshot(tmp_path)
    commands = [
        (["--model", "hu", "--cube", "opaque.h5", "--gt", "gt.npy", "--out", "o"], "opaque.h5"),
        (["--model", "hu", "--cube", "opaque.h5", "--cube_key", "cube", "--gt", "gt.npy", "--out", "o"], "opaque.h5"),
        (["--model", "hu", "--cube", "strings.h5", "--gt", "gt.npy", "--out", "o"], "strings.h5"),
        (["--model", "hu", "--dataset", "Synthetic", "--synthetic", "pickled_spectra.h5", "--out", "o"],
         "pickled_spectra.h5"),
        (["--model", "hu", "--dataset", "Synthetic", "--synthetic", "yaml_spectra.h5", "--out", "o"],
         "yaml_spectra.h5"),
    ]
    for args, fragment in commands:
        assert_refused(run_here(args, tmp_path, capsys, monkeypatch), tmp_path, before, marker, fragment)
    with h5py.File(tmp_path / "opaque.h5", "r") as handle:  # what h5py gives back: bytes, not objects
        assert bytes(handle.attrs["payload"]) == live
    assert not marker.exists()


def test_matlab_files_carry_no_code_and_non_numeric_ones_are_refused(tmp_path, marker, capsys, monkeypatch):
    """SciPy reads MATLAB files without unpickling: a MATLAB object (here of class
    java.lang.Runtime), a cell array holding a pickle and a struct holding a shell command come back
    as inert arrays of strings. A cube file holding only such variables is refused."""
    command = np.zeros((1, 1), dtype=[("command", object)])
    command[0, 0]["command"] = f"touch {marker}"
    cell = np.empty((1, 2), dtype=object)
    cell[0, 0], cell[0, 1] = pickle.dumps(ShellPayload(marker), protocol=0).decode("latin-1"), yaml_payload(marker)
    scipy.io.savemat(tmp_path / "evil.mat", {"cube": MatlabObject(command, classname="java.lang.Runtime"),
                                             "cell": cell, "struct": command})
    write_scene_files(tmp_path)
    before = snapshot(tmp_path)
    for args in (["--model", "hu", "--cube", "evil.mat", "--gt", "gt.npy", "--out", "o"],
                 ["--model", "hu", "--cube", "evil.mat", "--cube_key", "cube", "--gt", "gt.npy", "--out", "o"],
                 ["--model", "hu", "--cube", "cube.npy", "--gt", "evil.mat", "--out", "o"]):
        assert_refused(run_here(args, tmp_path, capsys, monkeypatch), tmp_path, before, marker, "evil.mat")
    assert scipy.io.loadmat(tmp_path / "evil.mat")["cube"].classname == "java.lang.Runtime"
    assert not marker.exists()
