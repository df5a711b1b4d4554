"""A griffe extension (mkdocs.yml) that turns the Sphinx roles of walship's docstrings,
``:class:`~walship.log.Log``` and the like, into Markdown cross-references
(``[`Log`][walship.log.Log]``) that mkdocstrings resolves, so that a reference to something that
does not exist is a warning, and ``mkdocs build --strict`` fails on it.

``~`` shows the last part of the name only, as in Sphinx; a name without a dot is looked up
from the docstring's scope (mkdocstrings' scoped cross-references). A private name (``_x``) is
not rendered on the site: it stays code, without a link.
"""

from __future__ import annotations

import re
from typing import Any

import griffe

_ROLE = re.compile(r":(?:py:)?(?:class|func|meth|attr|mod|data|exc|obj):`(~?)([^`<>]+?)`")


def convert(text: str, package: str = "") -> str:
    """``text`` with each role replaced by a cross-reference; a name with a leading dot
    (``:mod:`.listing```) is one of ``package``'s."""

    def ref(m: re.Match[str]) -> str:
        short, target = m.group(1), m.group(2).strip()
        target = target.removesuffix("()")
        if target.startswith(".") and package:
            target = package + target
        shown = target.rsplit(".", 1)[-1] if short else target
        if any(part.startswith("_") and not part.startswith("__") for part in target.split(".")):
            return f"`{shown}`"  # private: not rendered, nothing to link to
        return f"[`{shown}`][{target}]"

    return _ROLE.sub(ref, text)


class RstRoles(griffe.Extension):
    """Rewrite every docstring as it is loaded."""

    def on_instance(self, *, obj: griffe.Object, **kwargs: Any) -> None:
        if obj.docstring is not None:
            module = obj.module
            package = module.path if module.is_init_module else module.path.rpartition(".")[0]
            obj.docstring.value = convert(obj.docstring.value, package)
