"""Packaging: the metadata a user and an index see (SPDX license, classifiers, one version),
and ``python -m walship``. Building and installing the wheel and sdist is CI's ``package``
phase (.ci/run); an unpacked sdist runs this suite."""

from __future__ import annotations

import re
import subprocess
import sys
from importlib.metadata import metadata, version
from pathlib import Path

import walship

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - 3.10
    import tomli as tomllib  # pytest needs it below 3.11

REPO = Path(__file__).resolve().parent.parent


def _project() -> dict[str, object]:
    with (REPO / "pyproject.toml").open("rb") as f:
        project: dict[str, object] = tomllib.load(f)["project"]
    return project


def test_the_license_is_an_spdx_string_with_its_file() -> None:
    project = _project()
    assert project["license"] == "Apache-2.0"
    assert project["license-files"] == ["LICENSE"]
    text = (REPO / "LICENSE").read_text()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
    assert "END OF TERMS AND CONDITIONS" in text


def test_the_version_is_written_once() -> None:
    project = _project()
    assert "version" not in project and project["dynamic"] == ["version"]
    assert version("walship") == walship.__version__
    assert re.fullmatch(r"\d+\.\d+\.\d+", walship.__version__)


def test_classifiers_claim_the_pythons_requires_python_allows() -> None:
    project = _project()
    classifiers = project["classifiers"]
    assert isinstance(classifiers, list)
    claimed = sorted(
        int(c.rsplit(".", 1)[1])
        for c in classifiers
        if re.fullmatch(r"Programming Language :: Python :: 3\.\d+", c)
    )
    assert claimed == [10, 11, 12, 13]
    assert project["requires-python"] == ">=3.10"
    assert "Typing :: Typed" in classifiers
    assert (REPO / "walship" / "py.typed").is_file()
    installed = metadata("walship")
    assert installed["License-Expression"] == "Apache-2.0"
    assert any(u.startswith("Source, https://") for u in installed.get_all("Project-URL") or [])


def test_python_m_walship_is_the_command() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "walship", "--version"], capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == f"walship, version {walship.__version__}"


def test_a_missing_extra_names_its_pip_install() -> None:
    code = (
        "import sys\n"
        "sys.modules['s3fs'] = None  # as if walship[s3] was not installed\n"
        "from walship.archive import ArchiveStore\n"
        "try:\n"
        "    ArchiveStore('s3://bucket/prefix')\n"
        "except Exception as e:\n"
        "    print(type(e).__name__, e)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
    )
    assert proc.stdout.startswith("ArchiveError cannot open archive s3://bucket/prefix: ")
    assert proc.stdout.endswith(": pip install 'walship[s3]'\n")
