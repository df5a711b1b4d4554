"""Installed entry points by group, read once for each state of the import path.

``importlib.metadata.entry_points(group=...)`` reads the metadata of every installed
distribution on each call (about 5 ms with a few hundred installed, three times per
``walship.open``: the store backend is looked up to validate the config and to build the store,
and the plugins are discovered). This module remembers each group's entry points together with
the state they were read in: ``sys.path`` and, for each of its directories, the inode and
modification time (installing or removing a distribution adds or removes a ``*.dist-info``
directory in a ``sys.path`` directory, which changes that directory's time). A later call reads
them again only when that state changed: a package installed while the process runs, or a
directory added to ``sys.path``, is seen at the next call.

It imports only the standard library; the backend registry and the plugin manager share it.
Thread-safe.
"""

from __future__ import annotations

import os
import sys
import threading
from importlib.metadata import EntryPoint, entry_points

__all__ = ["group"]

_PathState = tuple[tuple[str, int, int], ...]

_lock = threading.Lock()
_cache: dict[str, tuple[_PathState, tuple[EntryPoint, ...]]] = {}


def _path_state() -> _PathState:
    state = []
    for entry in sys.path:
        try:
            st = os.stat(entry or os.curdir)
        except (OSError, ValueError):  # (missing, or not a path: left to importlib)
            state.append((entry, -1, -1))
            continue
        state.append((entry, st.st_ino, st.st_mtime_ns))
    return tuple(state)


def group(name: str) -> tuple[EntryPoint, ...]:
    """The installed entry points of group ``name``, in ``importlib.metadata``'s order (read
    again when ``sys.path`` or one of its directories changed since the last read)."""
    state = _path_state()
    with _lock:
        hit = _cache.get(name)
    if hit is not None and hit[0] == state:
        return hit[1]
    found = tuple(entry_points(group=name))
    with _lock:
        _cache[name] = (state, found)
    return found
