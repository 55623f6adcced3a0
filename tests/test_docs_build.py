"""The documentation site builds with ``mkdocs build --strict`` without a warning, its reference pages are
generated from the code, and its tutorial notebook is executed during the build."""
from __future__ import annotations

import csv
import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HOOKS = ROOT / "docs" / "hooks"
#: ipykernel's notice when nbconvert starts the tutorial's kernel on loopback TCP (jupyter_client's
#: default transport): a log line of the kernel process, not a warning of the build.
KERNEL_TRANSPORT_NOTICE = "[IPKernelApp] WARNING | Kernel is running over TCP without encryption."


def page_text(site: Path, page: str) -> str:
    """The visible text of a built page (tags dropped, entities decoded, spaces collapsed)."""
    raw = (site / page / "index.html").read_text(encoding="utf-8")
    return " ".join(html.unescape(re.sub(r"<[^>]+>", " ", raw)).split())


@pytest.fixture(scope="module")
def built_site(tmp_path_factory) -> tuple[Path, str]:
    """The site built once by a real ``python -m mkdocs build --strict`` process, and its output."""
    pytest.importorskip("mkdocs")
    site = tmp_path_factory.mktemp("docs") / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}  # mkdocs-material's banner about MkDocs 2
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    if done.returncode != 0:
        pytest.fail(f"mkdocs build --strict failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return site, done.stdout + done.stderr


def test_the_site_builds_in_strict_mode_without_a_warning(built_site):
    site, output = built_site
    warnings = [line for line in output.splitlines() if "WARNING" in line and KERNEL_TRANSPORT_NOTICE not in line]
    assert warnings == []
    assert (site / "index.html").is_file() and (site / "tasks" / "protocols" / "index.html").is_file()
    assert not (ROOT / "docs" / "reference").exists(), "generated pages must not be written into docs/"


def test_reference_pages_are_generated_from_the_code(built_site):
    site, _ = built_site
    import deephyperx as dhx

    models = page_text(site, "reference/models")
    assert "hamida" in models and "Hamida3D" in models  # a registered model, its class and docstring
    hamida = dhx.create_model("hamida", n_bands=200, n_classes=16)  # the page's representative scene
    assert f"{sum(p.numel() for p in hamida.parameters()):,}" in models
    scenes = page_text(site, "reference/scenes")
    assert "IndianPines" in scenes and "Indian_pines_corrected.mat" in scenes and "VaihingenCrop" in scenes
    cli = page_text(site, "reference/cli")
    for flag in ("--training_sample", "--sampling_mode", "--samples_per_class", "--memory_budget", "--detect"):
        assert flag in cli, flag
    api = page_text(site, "reference/api")
    assert "create_model" in api and "load_scene" in api and ":func:" not in api


def test_the_tutorial_notebook_is_executed_during_the_build(built_site):
    site, _ = built_site
    stored = (ROOT / "docs" / "tutorial.ipynb").read_text(encoding="utf-8")
    assert '"outputs": []' in stored and '"execution_count": null' in stored  # kept without outputs
    tutorial = page_text(site, "tutorial")
    assert re.search(r"OA 0\.\d{3} AA 0\.\d{3} kappa -?0\.\d{3}", tutorial), "the metrics cell printed nothing"
    assert "same as the run's map: True" in tutorial
    assert "data:image/png" in (site / "tutorial" / "index.html").read_text(encoding="utf-8")  # the map figure


def test_a_model_without_results_shows_a_dash_and_one_with_shows_its_command(tmp_path, monkeypatch):
    monkeypatch.syspath_prepend(str(HOOKS))  # as mkdocs does for its hooks (they import their siblings)
    from ref_models import read_results, results_table
    results = tmp_path / "classification.csv"
    columns = ["model", "scene", "protocol", "training_sample", "epochs", "seeds", "oa_mean", "oa_std",
               "published_oa", "device", "command"]
    with results.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerow({"model": "hamida", "scene": "IndianPines", "protocol": "random", "training_sample": "0.1",
                         "epochs": "100", "seeds": "0-4", "oa_mean": "84.21", "oa_std": "2.55",
                         "published_oa": "82.62", "device": "CPU", "command": "python main.py --model hamida | tee"})
    rows = read_results(results)
    with_rows = results_table(rows["hamida"])
    assert "84.21 ± 2.55" in with_rows and "82.62" in with_rows and "python main.py --model hamida" in with_rows
    assert "| tee" not in with_rows  # a pipe in a command would split the table row
    assert "—" in results_table(rows.get("li", [])) and read_results(tmp_path / "absent.csv") == {}
