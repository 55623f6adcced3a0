"""Markdown helpers shared by the generated reference pages: table cells, tables and code spans."""
from __future__ import annotations

from typing import Any, Iterable, Sequence

#: What a cell shows for a value nobody declared.
MISSING = "—"


def cell(text: Any) -> str:
    """``text`` made safe for one cell of a Markdown table: one line, no raw HTML, no column break."""
    if text is None or text == "":
        return MISSING
    flat = " ".join(str(text).split())
    return flat.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")


def code(value: Any) -> str:
    """``value`` as an inline code span (a cell-safe one: a pipe inside code would split the row)."""
    if value is None or value == "":
        return MISSING
    text = " ".join(str(value).split())
    if "|" in text:  # a code span cannot hold an escaped pipe in a table: show it as plain, escaped text
        return cell(text)
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def table(header: Sequence[str], rows: Iterable[Sequence[str]]) -> str:
    """A Markdown table; ``rows`` hold cells already made safe (see :func:`cell`, :func:`code`)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def text_block(text: str, indent: str = "") -> str:
    """``text`` as a fenced plain-text block (docstrings, ``--help`` output), indented by ``indent``."""
    body = "\n".join(indent + line if line.strip() else "" for line in text.rstrip().splitlines())
    return f"{indent}```text\n{body}\n{indent}```\n"


def value_text(value: Any) -> str:
    """A setting's value as a user would write it in a YAML file (``None`` shown as a dash)."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {value_text(v)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(value_text(v) for v in value) + "]"
    return str(value)
