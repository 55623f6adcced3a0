"""The generated scene page: the scene catalogue (``datasets.py``) and the aerial tile sets
(``aerial_datasets.py``), read from their declarations."""
from __future__ import annotations

from typing import Any, Optional, Sequence

from ref_markdown import MISSING, cell, code, table


def megabytes(size: Optional[int]) -> str:
    """A byte count in MB, or kB under a megabyte (a dash when unknown)."""
    if size is None:
        return MISSING
    return f"{size / 1e6:,.1f} MB" if size >= 1e6 else f"{size / 1e3:,.1f} kB"


def download_size(files: Sequence[Any]) -> str:
    """The total declared size of ``files``, marked as a lower bound when some sizes are unknown."""
    if not files:
        return MISSING
    known = [f.size for f in files if f.size is not None]
    if not known:
        return f"{len(files)} files, size not declared"
    total = megabytes(sum(known))
    return f"{len(files)} files, {total}" if len(known) == len(files) else f"{len(files)} files, over {total}"


def licence(decl: Any) -> str:
    """The declaration's licence, where it declares one."""
    return getattr(decl, "licence", None) or getattr(decl, "license", None) or ""


def files_table(files: Sequence[Any]) -> str:
    """The declared files of a scene or tile set: name, size, whether a checksum verifies it, source URL."""
    return table(["file", "size", "SHA-256 checked", "from"],
                 [[code(f.filename), megabytes(f.size), "yes" if f.sha256 else "no (not published)",
                   f"<{f.url}>" if f.url else MISSING] for f in files])


def scene_facts(decl: Any) -> tuple[str, str, str]:
    """Bands, classes and image size (rows x columns) as the declaration gives them; the embedded scene is
    built (it needs no file) and measured."""
    if decl.embedded is not None:
        scene = decl.embedded()
        rows, cols = scene.shape
        return str(scene.n_bands), str(scene.n_classes), f"{rows} × {cols}"
    bands = decl.band_count
    return str(bands) if bands is not None else "not declared", str(len(decl.class_names)), MISSING


def scene_section(decl: Any, facts: tuple[str, str, str]) -> str:
    """The section of one catalogue scene."""
    bands, classes, size = facts
    lines = [f"### {decl.name}\n"]
    rows = [["bands", bands], ["classes", classes], ["size (rows × columns)", size],
            ["files", f"{code(f'FOLDER/{decl.folder}/')}" if decl.embedded is None else "none: built by code"],
            ["source", cell(decl.citation)], ["licence", cell(licence(decl)) if licence(decl) else
                                               "not declared (see the source)"]]
    if decl.wavelengths:
        rows.insert(1, ["wavelengths", f"{min(decl.wavelengths):.0f}-{max(decl.wavelengths):.0f} nm"])
    if decl.labels_step != 1:
        rows.append(["labels", f"one label pixel in {decl.labels_step} along each axis (a finer grid than the cube)"])
    lines.append(table(["", ""], rows))
    if decl.class_names:
        lines.append("\nClasses, in id order: " + ", ".join(code(n) for n in decl.class_names) + ".\n")
    if decl.files:
        lines.append("\n" + files_table(decl.files))
        if all(f.url for f in decl.files):
            lines.append(f"\nFetch them with `python main.py --download {decl.name} --folder FOLDER` "
                         "(checksums verified where declared).\n")
    if decl.how_to_get:
        lines.append(f"\nHow to get it: {cell(decl.how_to_get)}\n")
    return "\n".join(lines) + "\n"


def tileset_section(decl: Any) -> str:
    """The section of one aerial tile set."""
    build_doc = (decl.build.__doc__ or "").strip()
    lines = [f"### {decl.name}\n"]
    rows = [["folder", code(f"FOLDER/{decl.folder}/")], ["source", cell(decl.citation)],
            ["licence", cell(licence(decl)) if licence(decl) else "not declared (see the source)"]]
    lines.append(table(["", ""], rows))
    if build_doc:
        lines.append(f"\n{cell(build_doc)}\n")
    if decl.files:
        lines.append("\n" + files_table(decl.files))
    if decl.how_to_get:
        lines.append(f"\nHow to get it: {cell(decl.how_to_get)}\n")
    return "\n".join(lines) + "\n"


def scenes_page() -> str:
    """The whole page."""
    from deephyperx_app import aerial_datasets, datasets

    scenes = [datasets.get_declaration(name) for name in datasets.list_scenes()]
    tilesets = [aerial_datasets.get_declaration(name) for name in aerial_datasets.list_tilesets()]
    facts = {decl.name: scene_facts(decl) for decl in scenes}
    parts = [
        "# Scenes and tile sets\n",
        "Generated from the declarations of the scene catalogue (`datasets.py`: `list_scenes()`, "
        "`get_declaration(name)`) and of the aerial tile sets (`aerial_datasets.py`: `list_tilesets()`) each "
        "time the site is built; `python main.py list` and `python main.py segment list` print the same names. "
        "`FOLDER` is the data folder (`--folder`, default `$DEEPHYPERX_DATA` or `Datasets`). A scene of your own "
        "needs no declaration: see [Classification](../tasks/classification.md#your-own-scene).\n",
        "## Hyperspectral scenes (`main.py`, `main.py bench`, `main.py generate`)\n",
        "Bands and classes are those declared. The catalogue does not declare image sizes (a dash): they are "
        "read from the files when the scene loads, and each run's `summary.md` gives them with the split's "
        "pixel counts. The embedded `Synthetic` scene needs no file: it is built here and measured.\n",
        table(["scene", "bands", "classes", "size", "download"],
              [[f"[{d.name}](#{d.name.lower()})", *facts[d.name], download_size(d.files)] for d in scenes]),
    ]
    parts += [scene_section(d, facts[d.name]) for d in scenes]
    parts += [
        "## Aerial tile sets (`main.py segment`)\n",
        "Tile sets keep their rasters on disk and are read window by window. Declared files can be fetched "
        "with `aerial_datasets.download_tileset(NAME, FOLDER)`; the others say how to get them.\n",
        table(["tile set", "folder", "download"],
              [[f"[{d.name}](#{d.name.lower()})", code(d.folder), download_size(d.files)] for d in tilesets]),
    ]
    parts += [tileset_section(d) for d in tilesets]
    return "\n".join(parts)
