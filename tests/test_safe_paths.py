"""Names that become paths: refused when they could leave the output folder, and every file a run
writes lands under ``--out``."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

import main
from deephyperx.errors import UserError
from deephyperx.safe_paths import MAX_NAME_BYTES, check_name, experiment_path, file_stem, inside


@pytest.mark.parametrize("name, problem", [
    ("../../etc", "path separator"), ("/tmp/x", "path separator"), ("a\\b", "path separator"),
    ("..", "starts with a dot"), (".", "starts with a dot"), (".hidden", "starts with a dot"),
    ("", "empty"), ("in\0side", "control character"), ("tab\there", "control character"),
    ("new\nline", "control character"), (" padded", "white space"), ("x" * (MAX_NAME_BYTES + 1), "longer than"),
    ("é" * (MAX_NAME_BYTES // 2 + 1), "longer than"),
])
def test_names_that_could_leave_the_folder_are_refused(name, problem):
    with pytest.raises(UserError, match=problem) as error:
        check_name(name, "scene name")
    assert "\n" not in str(error.value) and "\0" not in str(error.value)


@pytest.mark.parametrize("name", ["IndianPines", "my scene (v2)", "Pavia_Università", "a.b-c_d", "x" * MAX_NAME_BYTES])
def test_plain_names_are_kept_as_they_are(name):
    assert check_name(name, "scene name") == name


def test_file_stems_are_safe_distinct_and_short():
    long_a, long_b = "tile " + "a" * 300 + " 1", "tile " + "a" * 300 + " 2"
    stems = [file_stem(n) for n in ("../../x", ".hidden", "a/b", long_a, long_b)]
    assert stems[:3] == ["_.._x", "hidden", "a_b"]
    assert stems[3] != stems[4] and all(len(s.encode()) <= MAX_NAME_BYTES for s in stems)
    assert all(check_name(s, "stem") == s for s in stems)


def test_inside_follows_symbolic_links(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "link").symlink_to(tmp_path)
    assert inside(out, out / "a" / "b") == out / "a" / "b"
    with pytest.raises(UserError, match="outside the output folder"):
        inside(out, out / "link" / "escaped")
    with pytest.raises(UserError, match="outside the output folder"):
        inside(out, out / ".." / "escaped")


def test_experiment_path_checks_every_part(tmp_path):
    assert experiment_path(tmp_path, [("Scene", "scene name"), ("hu", "model name")], "abcd1234") == \
        tmp_path / "Scene_hu_abcd1234"
    with pytest.raises(UserError, match="model name '../x'"):
        experiment_path(tmp_path, [("Scene", "scene name"), ("../x", "model name")], "abcd1234")


def test_every_file_a_run_writes_lies_under_out(tmp_path, monkeypatch):
    """A real run on a custom scene declared next to the data: nothing appears outside ``--out``
    (the data folder, the working folder and their parent keep their listings)."""
    data, work = tmp_path / "data", tmp_path / "work"
    data.mkdir()
    work.mkdir()
    rng = np.random.default_rng(0)
    np.save(data / "cube.npy", rng.random((12, 10, 5)).astype(np.float32))
    np.save(data / "gt.npy", rng.choice([1, 2], size=(12, 10)).astype(np.uint8))
    (data / "scene.yaml").write_text("name: My scene (v2)\ncube: cube.npy\nlabels: gt.npy\n")
    monkeypatch.chdir(work)
    before = sorted(os.walk(tmp_path))
    out = work / "out"
    assert main.main(["--model", "hu", "--dataset", str(data / "scene.yaml"), "--epoch", "1", "--out", str(out),
                      "--no_visdom"]) == 0
    after = sorted(os.walk(tmp_path))
    new = {Path(folder) / name for folder, dirs, files in after for name in dirs + files} - \
        {Path(folder) / name for folder, dirs, files in before for name in dirs + files}
    assert new and all(path == out or out in path.parents for path in new), sorted(new)
    assert next(out.iterdir()).name.startswith("My scene (v2)_hu_")
