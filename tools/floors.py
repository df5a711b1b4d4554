"""Print the declared dependency floors of pyproject.toml as pip constraints.

    python tools/floors.py [--extra A,B]...    one `name==lower-bound` line per direct dependency
                                               (and per dependency of each extra named)
    python tools/floors.py --python            the lowest Python that `requires-python` claims

CI's floors job installs walship with these constraints (`pip install -c FILE -e '.[test]'`), so
the job always tests the bounds that pyproject.toml declares and they never drift. A direct
dependency without a `>=` lower bound is an error: it would have no floor to test. Extras that
name walship itself (`walship[test]`) are followed. Constraints carry no extras (pip refuses
them), the extras come from the install's requirement.
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - CI runs this with its 3.11 interpreter; tomli where it is installed
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENT = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*(?:\[([^\]]*)\])?\s*([^;]*)(;.*)?$")
LOWER_BOUND = re.compile(r">=\s*([^\s,]+)")
PYTHON_FLOOR = re.compile(r">=\s*(\d+\.\d+)")


def normalise(name: str) -> str:
    """The name as PyPI compares it (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def floors(project: dict[str, Any], extras: list[str]) -> list[str]:
    """`name==floor` (plus the requirement's environment marker) for every direct dependency
    and every dependency of the named extras, in declaration order, each name once.

    Raises SystemExit naming the requirement when one has no lower bound, when two extras give
    one dependency different floors, or when an extra is unknown.
    """
    own = normalise(project["name"])
    optional: dict[str, list[str]] = project.get("optional-dependencies", {})
    requirements = list(project.get("dependencies", []))
    wanted, taken = list(extras), set()
    lines: dict[str, str] = {}
    i = 0
    while wanted or i < len(requirements):
        if wanted:  # an extra asked for, or named by walship[...] inside an extra
            extra = wanted.pop(0)
            if extra not in optional:
                raise SystemExit(f"floors: pyproject.toml has no extra {extra!r}")
            if extra not in taken:
                taken.add(extra)
                requirements.extend(optional[extra])
            continue
        requirement, i = requirements[i], i + 1
        match = REQUIREMENT.match(requirement)
        if match is None:
            raise SystemExit(f"floors: cannot read the requirement {requirement!r}")
        name, own_extras, specifiers, marker = match.groups()
        if normalise(name) == own:
            wanted.extend(e.strip() for e in (own_extras or "").split(",") if e.strip())
            continue
        bound = LOWER_BOUND.search(specifiers)
        if bound is None:
            raise SystemExit(f"floors: {requirement!r} declares no lower bound (>=) to test")
        line = f"{name}=={bound.group(1)}{marker or ''}"
        if lines.setdefault(normalise(name), line) != line:
            raise SystemExit(f"floors: {name} has two floors: {lines[normalise(name)]}, {line}")
    return list(lines.values())


def lowest_python(project: dict[str, Any]) -> str:
    """The X.Y of `requires-python = ">=X.Y"`; SystemExit when it states no such bound."""
    match = PYTHON_FLOOR.search(project.get("requires-python", ""))
    if match is None:
        raise SystemExit("floors: requires-python declares no lower bound (>=X.Y)")
    return match.group(1)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--extra", action="append", default=[], help="add these extras' floors (a,b or repeated)"
    )
    parser.add_argument("--python", action="store_true", help="print the lowest Python claimed")
    parser.add_argument("--pyproject", type=Path, default=ROOT / "pyproject.toml")
    args = parser.parse_args(argv)
    project = tomllib.loads(args.pyproject.read_text())["project"]
    if args.python:
        print(lowest_python(project))
    else:
        extras = [e.strip() for arg in args.extra for e in arg.split(",") if e.strip()]
        print("\n".join(floors(project, extras)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
