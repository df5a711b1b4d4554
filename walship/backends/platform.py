"""Flush, write and lock primitives for local files, for each platform the strongest it offers.

What each platform gets (chosen once, at import):

* Flushing a file's data (:func:`flush_data`): ``fcntl(F_FULLFSYNC)`` where it exists (macOS:
  ``fsync`` there leaves the bytes in the drive's cache; Go's ``os.File.Sync`` and etcd do the
  same), falling back to ``fsync`` on a filesystem that refuses it; else ``fdatasync``; else
  ``fsync`` (Windows: ``FlushFileBuffers``).
* Flushing a file's data and metadata (:func:`flush_file`): ``F_FULLFSYNC``, else ``fsync``.
* Flushing a directory's entries (:func:`fsync_dir`): ``fsync`` of the directory opened with
  ``O_DIRECTORY``; where a directory cannot be opened as a file (Windows, no ``O_DIRECTORY``)
  nothing: NTFS journals its directory entries itself (:data:`DIRECTORY_SYNC` is ``False``).
* Reserving space (:data:`PREALLOCATE`): ``os.posix_fallocate``, else ``None`` (plain appends).
* Locking (:func:`try_lock`, :func:`lock_directory`): ``flock`` where ``fcntl`` exists,
  ``msvcrt.locking`` of the lock file's first byte on Windows; with neither,
  :class:`~walship.errors.PlatformUnsupportedError` rather than a traceback. Only ``flock``
  can also lock the directory itself.

* Writing (:func:`write_all`): ``os.write`` until every byte is written.

Users: the POSIX store (:mod:`walship.backends.posix`) and the archive's local files
(:mod:`walship.archive.objects`, :mod:`walship.archive.restore`). It imports only
:mod:`walship.errors`, so any layer above the store may use it.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable
from types import ModuleType

from walship.errors import PlatformUnsupportedError


def _optional(name: str) -> ModuleType | None:
    try:
        return __import__(name)
    except ImportError:  # also a module set to None in sys.modules
        return None


fcntl = _optional("fcntl")
msvcrt = _optional("msvcrt")

OPEN_FLAGS: int = getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
"""Added to every ``os.open``: no descriptor leaks into a child; no newline translation."""
_O_DIRECTORY: int | None = getattr(os, "O_DIRECTORY", None)
DIRECTORY_SYNC = _O_DIRECTORY is not None
"""Whether :func:`fsync_dir` really syncs (``False``: the platform cannot open a directory)."""
PREALLOCATE: Callable[[int, int, int], None] | None = getattr(os, "posix_fallocate", None)
_F_FULLFSYNC: int | None = getattr(fcntl, "F_FULLFSYNC", None) if fcntl is not None else None
_REFUSED = frozenset(
    {errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP, errno.ENOTTY, errno.ENOSYS, errno.EBADF}
)
"""What a filesystem answers for an operation it does not support."""

FLUSH_NAME = (
    "fcntl(F_FULLFSYNC)"
    if _F_FULLFSYNC is not None
    else "fdatasync"
    if hasattr(os, "fdatasync")
    else "fsync"
)
"""How :func:`flush_data` flushes here, for messages and docs."""
RWF_DSYNC: int | None = getattr(os, "RWF_DSYNC", None) if FLUSH_NAME == "fdatasync" else None
"""The ``pwritev2`` flag that writes and flushes in one call (Linux), offered only where it
is as strong as :func:`flush_data` (never in place of ``F_FULLFSYNC``)."""


def _full_fsync(fd: int) -> None:
    assert fcntl is not None and _F_FULLFSYNC is not None
    try:
        fcntl.fcntl(fd, _F_FULLFSYNC)
    except OSError as e:
        if e.errno not in _REFUSED:
            raise
        os.fsync(fd)  # e.g. a network filesystem without it: the best it offers


def flush_data(fd: int) -> None:
    """Make the file's written data durable (see the module docstring). Raises ``OSError``."""
    if _F_FULLFSYNC is not None:
        _full_fsync(fd)
    else:
        # looked up at each call, not bound at import: a test (or a tool) that replaces
        # os.fdatasync, to inject a failing flush, reaches the log's syncs too
        getattr(os, "fdatasync", os.fsync)(fd)


def flush_file(fd: int) -> None:
    """Make the file's data and metadata (its size) durable. Raises ``OSError``."""
    if _F_FULLFSYNC is not None:
        _full_fsync(fd)
    else:
        os.fsync(fd)


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd`` at its position, finishing short writes.

    Raises:
        OSError: the write failed (``EIO`` when the OS wrote nothing and gave no error); how
            many bytes reached the file before is unknown to the caller.
    """
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[n:]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Make the entries of directory ``path`` durable; nothing where a platform cannot (see
    :data:`DIRECTORY_SYNC`). Raises ``OSError`` (``FileNotFoundError``: no such directory)."""
    if _O_DIRECTORY is None:
        return
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | OPEN_FLAGS)
    try:
        os.fsync(fd)  # F_FULLFSYNC is for file data; a directory's fsync is what APFS offers
    finally:
        os.close(fd)


def try_lock(fd: int, what: str) -> bool:
    """Take an exclusive lock on open file ``fd`` without waiting: ``True`` when taken,
    ``False`` when another descriptor (in any process) holds it. Closing ``fd`` releases it.

    Raises:
        PlatformUnsupportedError: the platform has neither ``flock`` nor ``msvcrt.locking``
            (``what`` names the lock in the message).
        OSError: the lock call failed otherwise.
    """
    if fcntl is not None:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return True
    if msvcrt is not None:
        os.lseek(fd, 0, os.SEEK_SET)  # msvcrt locks bytes from the position: always byte 0
        try:
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError as e:
            if e.errno in (errno.EACCES, errno.EDEADLK, getattr(errno, "EDEADLOCK", -1)):
                return False
            raise
        return True
    raise PlatformUnsupportedError(
        f"cannot lock {what}: this platform has neither fcntl.flock nor msvcrt.locking, "
        "so walship cannot keep a second writer out"
    )


def lock_directory(path: str | os.PathLike[str]) -> int | None:
    """Lock the directory ``path`` itself (``flock`` on a descriptor of the directory) and
    return that descriptor, the lock's holder; close it to release.

    Returns ``None`` when the platform or filesystem cannot lock a directory (no ``fcntl`` or
    ``O_DIRECTORY``; NFS, whose ``flock`` emulation needs a file open for writing).

    Raises:
        BlockingIOError: another descriptor holds the directory's lock.
        OSError: the directory cannot be opened.
    """
    if fcntl is None or _O_DIRECTORY is None:
        return None
    fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | OPEN_FLAGS)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise
    except OSError as e:
        os.close(fd)
        if e.errno in _REFUSED or e.errno == errno.ENOLCK:
            return None
        raise
    return fd
