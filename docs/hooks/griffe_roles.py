"""Griffe extension for the API pages: the code's docstrings use Sphinx roles (``:func:`train```) and
reStructuredText literal-block markers (``Example::``), which Markdown would show as they are; this turns
the roles into code spans (``~a.b.c`` as ``c``) and ``::`` at the end of a line into ``:``."""
from __future__ import annotations

import re
from typing import Any

from griffe import Extension

ROLE = re.compile(r":(?:py:)?(?:func|class|meth|mod|attr|data|exc|obj|const):`(~?)([^`]+)`")
LITERAL_MARKER = re.compile(r"(?<=\S)::$", re.MULTILINE)


def plain(text: str) -> str:
    """``text`` with Sphinx roles as code spans and literal-block markers as colons."""
    def span(match: re.Match) -> str:
        target = match.group(2)
        return f"`{target.rsplit('.', 1)[-1] if match.group(1) else target}`"

    return LITERAL_MARKER.sub(":", ROLE.sub(span, text))


class SphinxRolesAsCode(Extension):
    """Rewrite each docstring once, when griffe loads the object."""

    def on_instance(self, *, obj: Any, **kwargs: Any) -> None:
        if obj.docstring is not None:
            obj.docstring.value = plain(obj.docstring.value)
