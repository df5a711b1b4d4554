"""The hooks of the documentation site (mkdocs.yml): the README is the home page, and every
module of walship gets an API reference page rendered from its docstrings.

* ``on_files``: one generated page per module, ``reference/<module>.md`` holding
  ``::: <module>`` (mkdocstrings renders it), for every module under walship/ that is not
  private; ``reference/index.md`` lists them.
* ``on_page_markdown``: ``<!-- README -->`` in a page is replaced by README.md, its links made
  to work on the site (``docs/X.md`` is a page here; a file of the repository outside docs/ is
  linked on the repository's site, ``repo_url``); ``<!-- MODULES -->`` by a list of links to
  every module's page.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "walship"
MARKER = "<!-- README -->"
MODULES = "<!-- MODULES -->"
_LINK = re.compile(r"\]\((?!https?://|#|mailto:)([^)\s]+)\)")


def modules() -> list[str]:
    """Every public module of walship, dotted, sorted (a package by its ``__init__``)."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        if any(p.startswith("_") for p in parts):
            continue
        out.append(".".join(parts))
    return sorted(out)


def on_files(files: Any, config: Any, **kwargs: Any) -> Any:
    from mkdocs.structure.files import File

    for module in modules():
        files.append(File.generated(config, f"reference/{module}.md", content=f"::: {module}\n"))
    return files


def _readme_link(match: re.Match[str], repo_url: str) -> str:
    target = match.group(1)
    path, _, anchor = target.partition("#")
    if path.startswith("docs/"):  # a page of this site
        return f"]({path.removeprefix('docs/')}{'#' + anchor if anchor else ''})"
    return f"]({repo_url.rstrip('/')}/blob/main/{target})"


def on_page_markdown(markdown: str, page: Any, config: Any, **kwargs: Any) -> str:
    if MODULES in markdown:
        markdown = markdown.replace(MODULES, "\n".join(f"- [`{m}`]({m}.md)" for m in modules()))
    if MARKER not in markdown:
        return markdown
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    readme = _LINK.sub(lambda m: _readme_link(m, config["repo_url"]), readme)
    return markdown.replace(MARKER, readme)
