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

One restore into ``DIR`` at a time: :func:`one_restore_at_a_time` holds an exclusive ``flock``
on ``.DIR.walship-restore.lock`` beside it for the whole restore; a second restore into the same
``DIR`` fails at once with a :class:`~walship.errors.RestoreError` naming ``DIR``. The holder
removes the file while still holding its lock; a process that locked a file removed meanwhile
sees that the name now points elsewhere (or nowhere) and tries again.

What "``DIR`` holds a log" means (:func:`holds_log`): it holds a segment file
(``segment_<seq>.aedbwal``), the writer's lock file (``walship.lock``) or the archive record
(``walship.archive.json``).
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ParamSpec, TypeVar

from walship.backends.platform import flush_file, fsync_dir, try_lock, write_all
from walship.backends.posix import DIR_MODE, FILE_MODE, LOCK_NAME, PosixStore, raise_if_full
from walship.core.header import parse_segment_name
from walship.core.record import RECORD_NAME
from walship.core.sidefiles import remove_temporaries
from walship.errors import RestoreError
from walship.store import SegmentStore

logger = logging.getLogger("walship.archive")

_INFIX = ".walship-restore-"
LOCK_SUFFIX = ".lock"
_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextlib.contextmanager
def restore_lock(target: Path) -> Iterator[None]:
    """Hold the lock of restores into ``target`` for the ``with`` block (module docstring).

    Raises:
        RestoreError: another restore into ``target`` holds it.
        OSError: the parent directory cannot be written.
    """
    path = _restore_lock_path(target)
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        if not try_lock(fd, str(path)):
            os.close(fd)
            raise RestoreError(
                f"{target}: another restore into this directory is running (it holds {path}); "
                "wait for it to finish, or restore into another directory"
            )
        try:
            same = os.path.samestat(os.stat(path), os.fstat(fd))
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)  # its holder removed it after we opened it: take the new one
    try:
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # still locked: a waiter sees the name gone and tries again
        os.close(fd)


def _restore_lock_path(target: Path) -> Path:
    return target.parent / f".{target.name}.walship-restore{LOCK_SUFFIX}"


def _remove_dead_restore_lock(target: Path) -> bool:
    """Remove the lock file of restores into ``target`` that a killed restore left (nobody
    holds it); safe against a restore taking it meanwhile (see :func:`restore_lock`)."""
    path = _restore_lock_path(target)
    try:
        fd = os.open(path, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        if not try_lock(fd, str(path)):
            return False
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return True
    finally:
        os.close(fd)


def one_restore_at_a_time(restore: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run ``restore(url, directory, ...)`` holding :func:`restore_lock` of ``directory``."""

    @functools.wraps(restore)
    def locked(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        directory = kwargs["directory"] if "directory" in kwargs else args[1]
        assert isinstance(directory, (str, os.PathLike))
        with restore_lock(Path(directory)):
            return restore(*args, **kwargs)

    return locked


def staging_leftovers(target: Path) -> list[Path]:
    """The staging directories of restores into ``target`` beside it (of a restore running
    now, or left by one that died), by name; nothing is locked or removed."""
    parent = target.parent
    if not parent.is_dir():
        return []
    pattern = _pattern(target)
    return sorted(p for p in parent.iterdir() if pattern.fullmatch(p.name) and p.is_dir())


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


def write_staged(staging: Path, name: str, data: bytes | memoryview) -> None:
    """Write file ``name`` of the ``staging`` directory (created when missing), new, holding
    ``data``, durably (``fsync``), but without a temporary file, a rename or a sync of the
    directory: the staging directory becomes the log only by its rename into place, after
    :func:`sync_staged`, and is removed on failure, so no file of it needs to appear whole
    on its own. Thread-safe.

    Raises:
        OSError: the local disk failed (a full disk names the file, or the staging directory
            it could not create, and the space left); the file is removed again.
    """
    try:
        if not staging.is_dir():
            staging.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
    except OSError as e:  # (a full disk has no block left for the directory either)
        raise_if_full(e, staging)
        raise
    path = staging / name
    fd = os.open(
        path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0), FILE_MODE
    )
    try:
        try:
            write_all(fd, data)
            flush_file(fd)
        finally:
            os.close(fd)
    except OSError as e:
        with contextlib.suppress(OSError):
            os.unlink(path)
        raise_if_full(e, path)
        raise


def sync_staged(staging: Path) -> None:
    """Make the names of the files :func:`write_staged` wrote in ``staging`` durable (one
    sync of the directory), before it is renamed into place. Raises ``OSError``."""
    fsync_dir(staging)


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


def clean_at_open(store: SegmentStore) -> list[str]:
    """At the open of a log, holding its lock: remove what is safely the log's to remove, the
    staging directories of dead restores into its directory (:func:`clean_leftovers`) and the
    temporary files of atomic writes a crash interrupted
    (:func:`walship.core.sidefiles.remove_temporaries`); return their names. Side files are
    kept (:mod:`walship.core.sidefiles`). Never raises: what cannot be removed is logged and
    left (``walship status`` lists it)."""
    removed: list[str] = []
    try:
        removed += remove_temporaries(store)
        if isinstance(store, PosixStore):
            removed += clean_leftovers(store.path)
            if _remove_dead_restore_lock(store.path):
                removed.append(_restore_lock_path(store.path).name)
    except OSError as e:
        logger.warning("walship: could not remove a leftover beside the log: %s", e)
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
