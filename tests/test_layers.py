"""The engine's layers (``.importlinter``), checked by import-linter: the engine imports no plugin, its
modules form no import cycle, and each layer imports only those below it. A deliberate breach of each
contract, in a copy of the engine, makes the check fail."""
from __future__ import annotations

import configparser
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / ".importlinter"


def lint(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the engine under ``root``, with the project's contracts."""
    code = ("import sys; from importlinter.cli import lint_imports; "
            f"sys.exit(lint_imports(config_filename={str(root / '.importlinter')!r}, no_cache=True, no_logo=True))")
    return subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, timeout=120,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"})


def test_the_contracts_hold():
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "3 kept, 0 broken" in result.stdout


def test_every_engine_module_has_a_layer():
    parser = configparser.ConfigParser()
    parser.read(CONFIG)
    layered = {name.strip() for line in parser["importlinter:contract:layers"]["layers"].split("\n")
               for name in line.replace("|", ":").split(":") if name.strip()}
    modules = {f"deephyperx.{path.stem}" for path in (ROOT / "deephyperx").glob("*.py") if path.stem != "__init__"}
    assert modules == layered, {"without a layer": sorted(modules - layered), "gone": sorted(layered - modules)}


@pytest.mark.parametrize("module, line, broken", [
    ("scene.py", "import models  # noqa", "The engine imports no model"),
    ("errors.py", "from deephyperx import runner  # noqa", "Each layer imports only the layers below it"),
    ("sampling.py", "from deephyperx import splits  # noqa", "No import cycles"),
])
def test_a_breach_breaks_its_contract(tmp_path, module, line, broken):
    shutil.copytree(ROOT / "deephyperx", tmp_path / "deephyperx", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(CONFIG, tmp_path / ".importlinter")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    if module == "sampling.py":  # a cycle inside one layer: splits -> sampling -> splits
        with open(tmp_path / "deephyperx" / "splits.py", "a") as handle:
            handle.write("\nfrom deephyperx import sampling  # noqa\n")
    with open(tmp_path / "deephyperx" / module, "a") as handle:
        handle.write(f"\n{line}\n")
    result = lint(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout.split(broken)[1].splitlines()[0], result.stdout
