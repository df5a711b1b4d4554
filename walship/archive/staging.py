"""Where a restore writes before it renames into place, and what a killed one left behind.

A restore into ``DIR`` writes into a hidden sibling, the staging directory
``.DIR.walship-restore-<8 hex>``, and renames it to ``DIR`` at the end. Its owner holds an
exclusive ``flock`` on the lock file ``.DIR.walship-restore-<8 hex>.lock`` beside it for the
whole restore: the lock file is created (and locked) before the staging directory, and removed
only after the rename. A process that dies (SIGTERM, SIGKILL, a power cut) releases its lock
with its descriptors, so a staging directory whose lock file can be locked by someone else has
no live owner: :func:`clean_leftovers` (run by the next restore into the same ``DIR``) removes
it and its lock file. A lock file is used rather than a pid, since a container restarts its
process with the same pid. A staging directory without its lock file (written by a walship
before this one) is left alone and named in a warning.

What "``DIR`` holds a log" means (:func:`holds_log`): it holds a segment file
(``segment_<seq>.aedbwal``), the writer's lock file (``walship.lock``) or the archive record
(``walship.archive.json``).
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

from walship.backends.platform import try_lock
from walship.backends.posix import LOCK_NAME
from walship.core.header import parse_segment_name
from walship.core.record import RECORD_NAME

logger = logging.getLogger("walship.archive")

_INFIX = ".walship-restore-"
LOCK_SUFFIX = ".lock"


def holds_log(directory: Path) -> bool:
    """Whether ``directory`` holds a log (module docstring): a segment file, ``walship.lock``
    or ``walship.archive.json``. False when it does not exist or is not a directory."""
    if not directory.is_dir():
        return False
    return any(
        p.name in (LOCK_NAME, RECORD_NAME) or parse_segment_name(p.name) is not None
        for p in directory.iterdir()
    )


def _pattern(target: Path) -> re.Pattern[str]:
    return re.compile(rf"\.{re.escape(target.name)}{re.escape(_INFIX)}[0-9a-f]{{8}}")


@contextlib.contextmanager
def staging_directory(target: Path) -> Iterator[Path]:
    """A new staging directory's path for a restore into ``target`` (the caller creates it),
    locked for the ``with`` block (module docstring). When the block raises, the staging
    directory is removed (while still locked); on leaving, the lock file is removed and the
    lock released.

    Raises:
        OSError: the parent directory cannot be written.
    """
    staging = target.parent / f".{target.name}{_INFIX}{secrets.token_hex(4)}"
    lock_path = staging.with_name(staging.name + LOCK_SUFFIX)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        try_lock(fd, str(lock_path))  # a new file: nobody else holds it
        try:
            yield staging
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        os.close(fd)


def clean_leftovers(target: Path) -> list[str]:
    """Remove every staging directory of a restore into ``target`` that no live process owns
    (its lock file could be locked here), and its lock file; returns the names removed. Each is
    logged on ``walship.archive``. Staging directories without a lock file are named in a
    warning and kept.

    Raises:
        OSError: a leftover cannot be removed.
    """
    parent = target.parent
    if not parent.is_dir():
        return []
    pattern = _pattern(target)
    removed: list[str] = []
    names = {p.name for p in parent.iterdir()}
    for name in sorted(names):
        if pattern.fullmatch(name) is None and not (
            name.endswith(LOCK_SUFFIX) and pattern.fullmatch(name[: -len(LOCK_SUFFIX)])
        ):
            continue
        if name.endswith(LOCK_SUFFIX):
            if _remove_if_dead(parent / name[: -len(LOCK_SUFFIX)], parent / name):
                removed.append(name[: -len(LOCK_SUFFIX)])
        elif name + LOCK_SUFFIX not in names:
            logger.warning(
                "walship: %s looks like a restore's staging directory without its lock file "
                "(an older walship?); left alone",
                parent / name,
            )
    for name in removed:
        logger.warning("walship: removed %s, left by a restore that did not finish", parent / name)
    return removed


def _remove_if_dead(staging: Path, lock_path: Path) -> bool:
    """Remove ``staging`` and ``lock_path`` when nobody holds the lock; whether a staging
    directory was removed (its owner may have died after its rename, leaving only the lock)."""
    try:
        fd = os.open(lock_path, os.O_RDWR)
    except FileNotFoundError:  # its owner just finished (or another cleaner removed it)
        return False
    try:
        if not try_lock(fd, str(lock_path)):
            return False  # a live restore
        existed = staging.exists()
        shutil.rmtree(staging, ignore_errors=True)
        if staging.exists():
            raise OSError(f"cannot remove the leftover staging directory {staging}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(lock_path)
        return existed
    finally:
        os.close(fd)
