"""The layering of walship/ (docs/ARCHITECTURE.md), read from the source with ``ast``.

(a) No import points up the layers::

    errors <- store <- core <- log <- {archive, plugins, config} <- api <- testing <- cli
                     backends (import only store and errors)

    api: the public face at the top of the package: walship/__init__.py (``walship.open``,
    ``walship.open_archive``, the public names) and walship/restore.py (the public path of
    ``restore``).

A module may import its own layer and the layers to its left; archive, plugins and config
are one layer (the archiver is a plugin; config validates with the archive's settings).
Backends sit beside core: both build on the store and neither imports the other; every layer
right of core may import a backend. ``walship.backends.memory`` is the test model of a disk:
only testing (and the api, and the tests) may import it, never the engine. backends/base.py
re-exports the store interface and so imports only the store: no exception is needed for the
shims. Every import counts: at the top, inside a function, under ``TYPE_CHECKING``.

(b) No private name crosses a module line: no ``from a import _x`` (a module's private names
are its own), and a private module (``walship.backends._x``) is imported only from its own
package. Tests may use private names; they are not read here.

``KNOWN_VIOLATIONS`` listed the violations the redesign (issue 12) removed; it is empty now. The
test fails on a violation not listed and on a listed one that is gone: the list can only
shrink.
"""

from __future__ import annotations

import ast
import inspect
from dataclasses import dataclass
from pathlib import Path

import walship
from walship import errors

ROOT = Path(walship.__file__).parent

LAYERS = {
    "errors": 0,
    "values": 0,
    "store": 1,
    "core": 2,
    "backends": 2,
    "log": 3,
    "archive": 4,
    "plugins": 4,
    "config": 4,
    "wiring": 4,
    "options": 4,
    "stats": 3,
    "archiving": 3,
    "api": 5,
    "testing": 6,
    "cli": 7,
    "__main__": 7,  # `python -m walship`: the cli
}
"""Each layer's rank: a module imports only its own rank and below (with the rules below)."""
API = {"walship", "walship.restore", "walship.aio"}  # (aio: open_async wraps open)
BACKEND_MAY_IMPORT = {"errors", "store", "backends"}
TEST_MODEL = "walship.backends.memory"
MAY_IMPORT_TEST_MODEL = {"backends", "testing", "api"}

KNOWN_VIOLATIONS: set[str] = set()
"""Empty since issue 12: any entry would be a new violation, to be fixed rather than listed."""


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def layer_of(module: str) -> str:
    if module in API:
        return "api"
    top = module.split(".")[1]
    assert top in LAYERS, f"{module} is in no layer: place it in LAYERS and docs/ARCHITECTURE.md"
    return top


def is_private(part: str) -> bool:
    return part.startswith("_") and not (part.startswith("__") and part.endswith("__"))


@dataclass(frozen=True)
class Import:
    importer: str
    module: str  # the walship module imported (a name from it, or the module itself)
    name: str | None = None  # the name taken from it, when it is not a module


def imports_of(importer: str, path: Path, known: dict[str, Path]) -> list[Import]:
    """Every import of a walship module in ``path``, names resolved to modules where they are
    modules (``from walship.core import frame`` imports ``walship.core.frame``)."""
    package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found += [Import(importer, a.name) for a in node.names if a.name in known]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                up = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*up, base] if base else up)
            if base not in known:
                continue
            for a in node.names:
                sub = f"{base}.{a.name}"
                found.append(
                    Import(importer, sub) if sub in known else Import(importer, base, a.name)
                )
    return found


def layering_violation(imp: Import) -> str | None:
    src, dst = layer_of(imp.importer), layer_of(imp.module)
    arrow = f"{imp.importer} -> {imp.module}"
    if imp.module == TEST_MODEL and src not in MAY_IMPORT_TEST_MODEL:
        return f"{arrow} (the test model)"
    if src == "backends":
        return None if dst in BACKEND_MAY_IMPORT else arrow
    if LAYERS[dst] > LAYERS[src]:
        return f"{arrow} (up: {src} imports {dst})"
    if src == "core" and dst == "backends":
        return arrow
    return None


def privacy_violation(imp: Import) -> str | None:
    if imp.name is not None and is_private(imp.name):
        return f"{imp.importer} -> {imp.module}.{imp.name} (private)"
    parts = imp.module.split(".")
    for i, part in enumerate(parts):
        owner = ".".join(parts[:i])  # the package the private module belongs to
        if is_private(part) and not (imp.importer + ".").startswith(owner + "."):
            return f"{imp.importer} -> {imp.module} (private module)"
    return None


def violations() -> set[str]:
    known = modules()
    found = set()
    for importer, path in known.items():
        for imp in imports_of(importer, path, known):
            found |= {v for v in (layering_violation(imp), privacy_violation(imp)) if v}
    return found


def test_no_import_points_up_and_no_private_name_crosses_a_module_line() -> None:
    found = violations()
    new = sorted(found - KNOWN_VIOLATIONS)
    gone = sorted(KNOWN_VIOLATIONS - found)
    assert not new, "imports against the layering (docs/ARCHITECTURE.md):\n" + "\n".join(new)
    assert not gone, "fixed: remove from KNOWN_VIOLATIONS in tests/test_layers.py:\n" + "\n".join(
        gone
    )


def test_the_rules_see_what_they_should() -> None:
    """The checker itself: each rule catches its kind and lets the allowed through."""
    assert layering_violation(Import("walship.core.frame", "walship.log")) is not None
    assert layering_violation(Import("walship.backends.posix", "walship.core.header"))
    assert layering_violation(Import("walship.core.segment", "walship.backends.posix"))
    assert layering_violation(Import("walship.archive.check", TEST_MODEL))
    assert layering_violation(Import("walship.log", "walship.store")) is None
    assert layering_violation(Import("walship.config.schema", "walship.archive.settings")) is None
    assert layering_violation(Import("walship.archive.restore", "walship.backends.posix")) is None
    assert layering_violation(Import("walship.backends.posix", "walship.backends.platform")) is None
    assert layering_violation(Import("walship.testing.faults", TEST_MODEL)) is None
    assert layering_violation(Import("walship", "walship.config")) is None
    assert layering_violation(Import("walship.cli.demo", "walship")) is None
    assert privacy_violation(Import("walship.log", "walship.core.frame", "_encode"))
    assert privacy_violation(Import("walship.archive.objects", "walship.backends._x"))
    assert privacy_violation(Import("walship.backends.posix", "walship.backends._x")) is None
    assert privacy_violation(Import("walship.log", "walship.core.frame", "__all__")) is None


EXCEPTIONS_ELSEWHERE: set[str] = set()
"""Public exceptions still defined outside walship/errors.py (the list can only shrink)."""


def test_every_exception_is_defined_in_errors() -> None:
    """One module holds every exception of the library (the command line's own ``CliError``,
    which never leaves ``walship.cli``, and private ones used for control flow aside)."""
    public = {
        n
        for n, obj in vars(errors).items()
        if not n.startswith("_") and inspect.isclass(obj) and issubclass(obj, BaseException)
    }
    found = set()
    for module, path in modules().items():
        if module in ("walship.errors", "walship.cli") or module.startswith("walship.cli."):
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ClassDef) or is_private(node.name):
                continue
            bases = {
                b.id if isinstance(b, ast.Name) else getattr(b, "attr", "") for b in node.bases
            }
            if any(b in public or b.endswith(("Error", "Exception")) for b in bases):
                found.add(f"{module}.{node.name}")
    assert found <= EXCEPTIONS_ELSEWHERE, (
        f"define in walship/errors.py: {found - EXCEPTIONS_ELSEWHERE}"
    )
    assert found >= EXCEPTIONS_ELSEWHERE, (
        f"moved: drop from the list {EXCEPTIONS_ELSEWHERE - found}"
    )


def test_every_public_exception_is_exported_from_walship() -> None:
    public = {
        name
        for name, obj in vars(errors).items()
        if inspect.isclass(obj)
        and issubclass(obj, BaseException)
        and obj.__module__ == errors.__name__
        and not name.startswith("_")
    }
    assert public  # the module is read
    missing = sorted(public - set(walship.__all__))
    assert not missing, f"add to walship/__init__.py and its __all__: {missing}"
    for name in public:
        assert getattr(walship, name) is getattr(errors, name)


LONGEST_FUNCTION = 80
"""Lines of a function's body, its docstring excluded (docs/ARCHITECTURE.md: files small and of
one purpose, functions short)."""
LONG_FUNCTIONS: dict[str, str] = {}
"""``module.function`` over :data:`LONGEST_FUNCTION` lines, each with the written reason it may
be (none since issue 12)."""


def long_functions() -> dict[str, int]:
    found = {}
    for module, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            body = node.body
            first = body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                if len(body) == 1:
                    continue
                first = body[1]
            length = (node.end_lineno or node.lineno) - first.lineno + 1
            if length > LONGEST_FUNCTION:
                found[f"{module}.{node.name}"] = length
    return found


def test_no_function_is_longer_than_the_limit_without_a_reason() -> None:
    found = long_functions()
    unexplained = {name: n for name, n in found.items() if name not in LONG_FUNCTIONS}
    assert not unexplained, f"split these (or give the reason in LONG_FUNCTIONS): {unexplained}"
    assert set(LONG_FUNCTIONS) <= set(found), (
        f"no longer long: drop from LONG_FUNCTIONS {set(LONG_FUNCTIONS) - set(found)}"
    )
