"""tools/floors.py: the pins of CI's floors job come from pyproject.toml, whole and exact."""

from __future__ import annotations

import sys

import pytest

from tools.floors import floors, lowest_python, main

PROJECT = {
    "name": "walship",
    "requires-python": ">=3.10",
    "dependencies": ["blake3>=1.0.0", "PyYAML >= 6.0.2, <7"],
    "optional-dependencies": {
        "s3": ["s3fs>=2024.12.0"],
        "test": ["moto[s3]>=5.0.15", "s3fs>=2024.12.0", "tomli>=2; python_version < '3.11'"],
        "dev": ["walship[test]", "ruff>=0.5"],
    },
}


def test_every_direct_dependency_and_extra_gets_its_floor() -> None:
    assert floors(PROJECT, ["s3", "test"]) == [
        "blake3==1.0.0",
        "PyYAML==6.0.2",
        "s3fs==2024.12.0",
        "moto==5.0.15",  # pip refuses extras in constraints
        "tomli==2; python_version < '3.11'",
    ]


def test_an_extra_naming_the_project_itself_is_followed() -> None:
    assert floors(PROJECT, ["dev"]) == [
        "blake3==1.0.0",
        "PyYAML==6.0.2",
        "ruff==0.5",
        "moto==5.0.15",
        "s3fs==2024.12.0",
        "tomli==2; python_version < '3.11'",
    ]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dependencies": ["click"]}, "'click' declares no lower bound"),
        ({"dependencies": ["click<9"]}, "'click<9' declares no lower bound"),
        ({"optional-dependencies": {"s3": ["blake3>=0.4"]}}, "blake3 has two floors"),
    ],
)
def test_a_dependency_without_one_exact_floor_is_refused(
    change: dict[str, object], message: str
) -> None:
    with pytest.raises(SystemExit, match=message):
        floors({**PROJECT, **change}, ["s3"])


def test_an_unknown_extra_is_refused() -> None:
    with pytest.raises(SystemExit, match="no extra 'bench'"):
        floors(PROJECT, ["bench"])


def test_the_lowest_python_claimed() -> None:
    assert lowest_python(PROJECT) == "3.10"
    with pytest.raises(SystemExit, match="requires-python"):
        lowest_python({"requires-python": "~=3.10"})


def test_the_real_pyproject_pins_every_dependency(capsys: pytest.CaptureFixture[str]) -> None:
    if sys.version_info < (3, 11):
        pytest.importorskip("tomli")
    assert main(["--extra", "s3,zstd", "--extra", "test"]) == 0
    pins = capsys.readouterr().out.split()
    names = {pin.split("==")[0].lower() for pin in pins}
    assert {"s3fs", "fsspec", "pydantic", "pyyaml", "moto", "pytest"} <= names
    assert all("==" in pin for pin in pins)
