"""The documentation site's strict mode (``make docs``, mkdocs.yml) fails on a broken
cross-reference in a docstring, written as walship's docstrings write them (``:class:`...```,
turned into links by tools/griffe_rst_roles.py), and passes when the target exists.

It builds a two-page site over a small package of its own with walship's own mkdocs settings
(the same plugins, extension and handler options). It needs the ``docs`` extra: ``make docs``
installs it and CI's ``docs`` phase runs this file after building the site; elsewhere it is
skipped.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocstrings_handlers.python")

ROOT = Path(__file__).resolve().parent.parent


def _site(tmp_path: Path, target: str) -> subprocess.CompletedProcess[str]:
    """Build (strict) a site whose one module's docstring refers to ``target``."""
    package = tmp_path / "src" / "docpkg"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text(
        f'"""A package. See :class:`~{target}` and :func:`helper`."""\n\n\n'
        "class Real:\n"
        '    """A class that exists."""\n\n\n'
        "def helper() -> None:\n"
        '    """A function, referred to by its bare name from the module\'s scope."""\n'
    )
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "index.md").write_text("# Home\n\nThe [API](api.md).\n")
    (docs / "api.md").write_text("::: docpkg\n")
    config = yaml.safe_load((ROOT / "mkdocs.yml").read_text())
    config.pop("hooks")  # walship's own pages: not this site's
    config.pop("nav")
    config.update(docs_dir=str(docs), site_dir=str(tmp_path / "site"), strict=True)
    python = config["plugins"][-1]["mkdocstrings"]["handlers"]["python"]
    python["paths"] = [str(tmp_path / "src")]
    python["options"]["extensions"] = [
        str(ROOT / ext) if ".py" in ext else ext for ext in python["options"]["extensions"]
    ]
    (tmp_path / "mkdocs.yml").write_text(yaml.safe_dump(config))
    return subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "-f", str(tmp_path / "mkdocs.yml")],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_a_reference_that_exists_builds(tmp_path: Path) -> None:
    proc = _site(tmp_path, "docpkg.Real")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    page = (tmp_path / "site" / "api" / "index.html").read_text()
    assert 'href="#docpkg.Real"' in page and 'href="#docpkg.helper"' in page


def test_a_broken_reference_fails_the_strict_build(tmp_path: Path) -> None:
    proc = _site(tmp_path, "docpkg.Missing")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "Could not find cross-reference target 'docpkg.Missing'" in out
    assert "Aborted with 1 warnings in strict mode" in out
