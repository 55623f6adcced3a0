"""A real browser (headless Chromium) opens a run's visdom env and the rendered page holds the
drawn plots, not just a loaded page. On real Indian Pines (when ``../shared/data`` has it) the
screenshot is the one in the docs: ``DEEPHYPERX_WRITE_SCREENSHOT=1`` writes ``docs/img/visdom.png``."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("visdom", reason="visdom is not installed (scripts/setup.sh installs it)")

import models  # noqa: F401,E402  (registers the zoo)
from deephyperx.atomic import atomic_path  # noqa: E402
from deephyperx.config import resolve_config  # noqa: E402
from deephyperx.experiment import Experiment  # noqa: E402
from deephyperx.registry import get_spec  # noqa: E402
from deephyperx.runner import ClassifyTask  # noqa: E402
from deephyperx.visdom_monitor import VisdomMonitor  # noqa: E402
from deephyperx.visdom_server import free_port, start_server, stop_server  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = shutil.which("chromium")
WINDOW = (1600, 1800)
PLOTS = ("training loss", "validation", "loss per epoch", "learning rate", "confusion matrix (rows: truth)",
         "class spectra (mean ± std)")
IMAGES = ("RGB composite", "ground truth | prediction")

pytestmark = pytest.mark.skipif(not CHROMIUM and os.environ.get("CI") != "true",
                                reason="chromium is not installed (CI installs Debian's package in .ci/run)")


@pytest.fixture(scope="module")
def scene(request):
    """Real Indian Pines when the shared data has it, else the embedded synthetic scene."""
    from datasets import load_scene

    try:
        return load_scene("IndianPines", request.getfixturevalue("shared_data"))
    except pytest.skip.Exception:
        return request.getfixturevalue("synthetic_scene")


@pytest.fixture(scope="module")
def page(scene, tmp_path_factory):
    """Train ``hu`` for 2 epochs into a real server; open the env in Chromium: (DOM, screenshot)."""
    assert CHROMIUM, "chromium is missing: .ci/run installs it with apt-get"
    folder = tmp_path_factory.mktemp("browser")
    port = free_port()
    (folder / "envs").mkdir()
    # visdom's per-folder style sheet: without the windows' sliding animation, which headless
    # Chromium's virtual time would freeze halfway, the screenshot shows the settled layout
    (folder / "envs" / "style.css").write_text(".react-grid-item { transition: none !important; }\n")
    server = start_server(port, folder / "envs", log=folder / "visdom_server.log")
    try:
        monitor = VisdomMonitor(port=port)
        config = resolve_config(get_spec("hu"), {"out": str(folder), "epoch": 2, "with_exploration": True})
        Experiment(ClassifyTask(scene, config)).run_seed(0, folder / "run", extra_monitors=[monitor])
        shot = folder / "visdom.png"
        dom = open_in_chromium(f"http://127.0.0.1:{port}/env/{monitor.env}", folder / "profile", shot)
    finally:
        stop_server(server)
    return dom, shot


def open_in_chromium(url: str, profile: Path, screenshot: Path) -> str:
    """Let headless Chromium render ``url`` (10 s of virtual time, for the windows to arrive over
    the websocket), save a screenshot and return the rendered DOM."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync", "--hide-scrollbars",
             f"--user-data-dir={profile}", "--virtual-time-budget=10000", f"--window-size={WINDOW[0]},{WINDOW[1]}"]
    result = subprocess.run([CHROMIUM, *flags, "--dump-dom", f"--screenshot={screenshot}", url],
                            capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def windows(dom: str) -> dict[str, str]:
    """Each visdom window's markup, by the title in its bar."""
    found = {}
    for chunk in dom.split('class="window"')[1:]:
        title = re.search(r'<div class="pull-right">([^<]*)</div>', chunk)
        if title:
            found[title.group(1).replace("&amp;", "&")] = chunk
    return found


def test_plot_windows_are_drawn(page):
    shown = windows(page[0])
    for title in PLOTS:
        assert title in shown, f"no window '{title}' on the page"
        assert "js-plotly-plot" in shown[title] and 'class="main-svg"' in shown[title], title
    for title in PLOTS[:4] + PLOTS[5:]:
        assert 'class="js-line"' in shown[title], f"'{title}' has no line drawn"
    assert 'class="hm"' in shown[PLOTS[4]], "the confusion heatmap is not drawn"


def test_image_and_legend_windows_are_drawn(page, scene):
    shown = windows(page[0])
    for title in IMAGES:
        assert re.search(r'<img class="content-image[^>]*src="data:image/png;base64,', shown[title]), title
    assert all(name in shown["classes"] for name in scene.class_names)


def test_screenshot_shows_the_env(page, scene):
    from PIL import Image

    picture = np.asarray(Image.open(page[1]).convert("RGB"))
    assert picture.shape[:2] == (WINDOW[1], WINDOW[0])
    colours = picture.astype(np.int32) @ np.array([1 << 16, 1 << 8, 1], np.int32)
    assert len(np.unique(colours)) > 100  # plots and maps, not a blank page
    if os.environ.get("DEEPHYPERX_WRITE_SCREENSHOT") == "1":
        if scene.name != "IndianPines":
            pytest.fail("DEEPHYPERX_WRITE_SCREENSHOT=1 needs real Indian Pines in ../shared/data")
        with atomic_path(ROOT / "docs" / "img" / "visdom.png") as tmp:
            shutil.copyfile(page[1], tmp)
