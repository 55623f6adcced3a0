"""The package as pip builds it: a wheel with the engine, the zoo and the command line, no top-level
`models` or `datasets`, the `deephyperx` command, plugin entry points and one version."""
from __future__ import annotations

import re
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

import deephyperx

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "--disable-pip-version-check", "-w", str(out), str(ROOT)], check=True, capture_output=True,
                   text=True)
    (built,) = out.glob("deephyperx-*.whl")
    return zipfile.ZipFile(built)


def test_the_wheel_holds_the_package_and_no_top_level_modules_of_common_names(wheel):
    names = wheel.namelist()
    tops = {name.split("/")[0] for name in names if not name.split("/")[0].endswith(".dist-info")}
    assert tops == {"deephyperx", "deephyperx_app"}
    assert {"deephyperx/api.py", "deephyperx/models/__init__.py", "deephyperx_app/main.py", "deephyperx_app/datasets.py",
            "deephyperx_app/aerial_datasets.py"} <= set(names)
    assert len([n for n in names if n.startswith("deephyperx/models/")]) == len(list((ROOT / "models").glob("*.py")))


def test_the_wheel_declares_the_command_plugins_licence_and_version(wheel):
    info = next(n for n in wheel.namelist() if n.endswith(".dist-info/entry_points.txt"))
    entry_points = wheel.read(info).decode()
    assert "deephyperx = deephyperx_app.main:console" in entry_points
    assert "[deephyperx.plugins]" in entry_points and "zoo = deephyperx.models" in entry_points
    assert "deephyperx_app.datasets:SCENES" in entry_points and "deephyperx_app.aerial_datasets:TILESETS" in entry_points
    metadata = wheel.read(next(n for n in wheel.namelist() if n.endswith(".dist-info/METADATA"))).decode()
    assert f"Version: {deephyperx.__version__}" in metadata
    assert "License-Expression: BSD-3-Clause" in metadata
    assert any(n.endswith("licenses/LICENSE") for n in wheel.namelist())


def test_the_version_is_in_one_place():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert "version" not in project and "version" in project["dynamic"]
    assert not re.search(r"^version:", (ROOT / "CITATION.cff").read_text(), flags=re.M)
    releases = re.findall(r"^## \[([^\]]+)\]", (ROOT / "CHANGELOG.md").read_text(), flags=re.M)
    assert releases and releases[0] in (deephyperx.__version__, "Unreleased")


def test_no_file_patches_the_import_path():
    patched = [str(p.relative_to(ROOT)) for folder in ("deephyperx", "models", "tests", "benchmarks", "docs", "scripts")
               for p in (ROOT / folder).rglob("*.py") if "sys.path" in p.read_text()
               and p.name != "test_packaging.py"]
    patched += [p.name for p in ROOT.glob("*.py") if "sys.path" in p.read_text()]
    assert patched == []


def test_the_installed_command_serves_every_subcommand():
    command = str(Path(sys.executable).parent / "deephyperx")
    help_text = subprocess.run([command, "--help"], capture_output=True, text=True, check=True,
                               cwd="/").stdout
    assert "--model" in help_text and "--training_sample" in help_text
    listing = subprocess.run([command, "list"], capture_output=True, text=True, check=True, cwd="/").stdout
    assert "hamida" in listing and "IndianPines" in listing and "Vaihingen" in listing
