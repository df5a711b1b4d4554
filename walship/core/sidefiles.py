"""The side files recovery and repair keep beside the segments, and their removal.

* ``<segment>.torn-<offset>`` (and ``.torn-<offset>.<n>``): the bytes a torn-tail repair cut
  (:func:`walship.core.repair.keep_aside`). A torn tail holds no frame that continues the log
  (else it would not be a torn tail), so nothing readable is lost without it; it is kept as
  evidence of what the crash left.
* ``<segment>.damaged`` (and ``.damaged.<n>``): a segment a salvage open moved aside, or the
  damaged local copy ``walship repair`` replaced with the archived one; ``walship.archive.json
  .damaged``: an invalid record replaced by one rebuilt from the archive. A salvaged segment
  may hold the **only** copy of acknowledged frames (that is why salvage keeps it).

(A temporary file of an interrupted atomic write, ``.<name>.tmp``, is no side file: the open
removes it, :func:`remove_temporaries`.)

So walship never removes side files on its own: ``walship status`` and ``walship verify DIR`` list
them, and ``walship repair DIR --clean-side-files [--older-than D]`` removes them on request,
holding the writer's lock (:func:`remove_side_files`).
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Iterable

from walship.store import SegmentStore

_TEMPORARY = re.compile(r"\.(?:segment_\d{16}\.aedbwal|walship\.[a-z.-]+)\.tmp")
"""A temporary file of the store's ``write_atomic`` that a crash left (its rename never came)."""
_TORN = re.compile(r"segment_\d{16}\.aedbwal\.torn-\d+(?:\.\d+)?")
_DAMAGED = re.compile(r"(?:segment_\d{16}\.aedbwal|walship\.archive\.json)\.damaged(?:\.\d+)?")


def side_file_kind(name: str) -> str | None:
    """``torn_tail``, ``damaged`` or ``None`` (not a side file)."""
    if _TORN.fullmatch(name):
        return "torn_tail"
    if _DAMAGED.fullmatch(name):
        return "damaged"
    return None


def side_files(names: Iterable[str]) -> dict[str, str]:
    """The side files among ``names`` (a store's listing), name -> kind, sorted by name."""
    kinds = {n: k for n in names if (k := side_file_kind(n)) is not None}
    return dict(sorted(kinds.items()))


def side_file_age(store: SegmentStore, name: str, now: float | None = None) -> float | None:
    """Seconds since ``name`` was last modified (``None``: the store is not a local directory,
    or the file is gone)."""
    path = store.local_path(name)
    if path is None:
        return None
    try:
        mtime = os.stat(path).st_mtime
    except OSError:
        return None
    return max(0.0, (time.time() if now is None else now) - mtime)


def remove_temporaries(store: SegmentStore) -> list[str]:
    """Remove the temporary files of atomic writes a crash interrupted (``.<name>.tmp`` of a
    walship file: the old file is intact, the new one never counted); return their names. Only
    the lock holder writes them: the caller holds the store's lock.

    Raises:
        OSError: a removal failed.
    """
    removed: list[str] = []
    for name in sorted(store.list_names()):
        if _TEMPORARY.fullmatch(name):
            try:
                store.remove(name)
            except FileNotFoundError:
                continue
            removed.append(name)
    return removed


def remove_side_files(store: SegmentStore, older_than: float | None = None) -> list[str]:
    """Remove the side files of ``store`` (all of them, or those at least ``older_than``
    seconds old; one whose age is unknown is then kept), durably; return the names removed.
    The caller holds the store's lock (no recovery is writing one meanwhile).

    Raises:
        OSError: a removal failed (those before it are removed).
    """
    removed: list[str] = []
    for name in side_files(store.list_names()):
        if older_than is not None:
            age = side_file_age(store, name)
            if age is None or age < older_than:
                continue
        try:
            store.remove(name)
        except FileNotFoundError:
            continue
        removed.append(name)
    return removed
