"""mkdocs hook: the reference pages generated from the code at build time, and the navigation entries of
the results pages.

Pages added to the build (never written into ``docs/``): ``reference/models.md`` (the model registry),
``reference/scenes.md`` (the scene and tile-set catalogues), ``reference/cli.md`` (the argparse parsers),
``reference/api.md`` (mkdocstrings on :mod:`deephyperx.api` and :mod:`deephyperx`). Every page of
``docs/results/`` (generated from the results data by ``benchmarks/results_pages.py``) joins the nav.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable

from mkdocs.structure.files import File, Files

from ref_cli import cli_page
from ref_models import models_page
from ref_scenes import scenes_page

log = logging.getLogger("mkdocs.hooks.reference_pages")

RESULTS_SECTION = "Results"


def api_page() -> str:
    """The Python API page: mkdocstrings renders the modules' docstrings."""
    api = "::: deephyperx.api\n"
    return ("# Python API\n\n"
            "What a script or a notebook calls: the same models, scenes, protocols and run folders as the "
            "command line (see the [tutorial](../tutorial.ipynb)). Rendered from the docstrings of the code "
            "each time the site is built.\n\n" + api + "\n::: deephyperx\n    options:\n      members: false\n")


#: Generated page -> the function that writes its Markdown, given the docs folder.
GENERATED: dict[str, Callable[[Path], str]] = {
    "reference/models.md": lambda docs: models_page(docs / "results" / "classification.csv"),
    "reference/scenes.md": lambda docs: scenes_page(),
    "reference/cli.md": lambda docs: cli_page(),
    "reference/api.md": lambda docs: api_page(),
}


def _section(nav: list, title: str) -> list:
    for entry in nav:
        if isinstance(entry, dict) and title in entry:
            return entry[title]
    raise KeyError(f"mkdocs.yml nav has no section {title!r}")


def on_config(config: Any) -> Any:
    """Add to the navigation every page of ``docs/results/`` (generated from the results data)."""
    docs = Path(config["docs_dir"])
    nav = config["nav"]
    results = _section(nav, RESULTS_SECTION)
    listed = {e if isinstance(e, str) else next(iter(e.values())) for e in results}
    for page in sorted((docs / "results").glob("*.md")):
        uri = page.relative_to(docs).as_posix()
        if uri not in listed:
            results.append(uri)
    return config


def on_files(files: Files, config: Any) -> Files:
    """Add the generated reference pages."""
    docs = Path(config["docs_dir"])
    for uri, make in GENERATED.items():
        files.append(File.generated(config, uri, content=make(docs)))
        log.debug("generated %s", uri)
    return files
