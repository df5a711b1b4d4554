"""Store backends by name: the ``walship.backends`` entry-point group.

A third party adds a store without touching walship: it ships a
:class:`~walship.store.SegmentStore` subclass and declares it in its package::

    [project.entry-points."walship.backends"]
    mystore = "mypkg.store:MyStore"

and a config selects it with ``store: {backend: mystore, ...}``; the other keys of ``store:``
become keyword arguments of ``MyStore``. ``posix`` and ``memory`` are declared the same way by
walship itself, and are also known without any installed metadata (a source checkout).
"""

from __future__ import annotations

import difflib
import importlib
from importlib.metadata import EntryPoint
from typing import Any

from walship.backends import entry_points as entrypoints
from walship.errors import BackendError
from walship.store import SegmentStore

__all__ = [
    "ENTRY_POINT_GROUP",
    "BackendError",
    "backend_names",
    "create_store",
    "load_backend",
]

ENTRY_POINT_GROUP = "walship.backends"

_BUILTIN = {
    "posix": "walship.backends.posix:PosixStore",
    "memory": "walship.backends.memory:MemoryStore",
}


def _entry_points() -> dict[str, EntryPoint]:
    return {ep.name: ep for ep in entrypoints.group(ENTRY_POINT_GROUP)}


def backend_names() -> list[str]:
    """Every backend name known: the built-ins and the installed entry points, sorted."""
    return sorted(set(_BUILTIN) | set(_entry_points()))


def _load(name: str, target: str | EntryPoint) -> object:
    if isinstance(target, EntryPoint):
        return target.load()
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def load_backend(name: str) -> type[SegmentStore]:
    """The store class registered under ``name``.

    Raises:
        BackendError: no backend has that name (the message suggests close names), its entry
            point failed to import, or it is not a ``SegmentStore`` subclass.
    """
    eps = _entry_points()
    target: str | EntryPoint | None = eps.get(name) or _BUILTIN.get(name)
    if target is None:
        known = backend_names()
        close = difflib.get_close_matches(name, known, n=1)
        hint = f"did you mean {close[0]!r}? " if close else ""
        raise BackendError(
            f"no store backend named {name!r} ({hint}known: {', '.join(known)}; a package adds "
            f"one with an entry point in group {ENTRY_POINT_GROUP!r})"
        )
    try:
        cls = _load(name, target)
    except Exception as e:
        where = target.value if isinstance(target, EntryPoint) else target
        raise BackendError(
            f"store backend {name!r} ({where}) failed to load: {type(e).__name__}: {e}"
        ) from e
    if not (isinstance(cls, type) and issubclass(cls, SegmentStore)):
        raise BackendError(
            f"store backend {name!r} is {cls!r}, not a subclass of walship.store.SegmentStore"
        )
    return cls


def create_store(name: str, options: dict[str, Any] | None = None) -> SegmentStore:
    """Instantiate backend ``name`` with ``options`` as keyword arguments.

    Raises:
        BackendError: as :func:`load_backend`, or the class rejected the options.
    """
    cls = load_backend(name)
    try:
        return cls(**(options or {}))
    except TypeError as e:
        raise BackendError(f"store backend {name!r} rejected its options: {e}") from e
