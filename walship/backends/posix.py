"""The POSIX store: a local directory, real flushes, a single-writer lock.

Assumptions (written down, like raft-wal's): a filesystem where the flush of
:mod:`walship.backends.platform` (``fdatasync``; ``F_FULLFSYNC`` on macOS) makes a file's
data durable, ``fsync`` of a directory makes its entries durable, ``rename`` within a
directory is atomic, and ``flock`` (``msvcrt.locking`` on Windows) excludes other processes.

The lock (:meth:`PosixStore.lock`) is two locks, so that a clean-up job that deletes or replaces
``walship.lock`` never lets a second writer in:

* the directory itself is ``flock``-ed (a descriptor of the directory: a job can remove the
  lock file, not the directory while segments are in it); where a directory cannot be locked
  (Windows, NFS) the lock file alone guards the log;
* ``walship.lock`` is ``flock``-ed too (the lock earlier walship versions take), and after
  taking it the store checks that the locked file is still the one at the path (``fstat``
  against ``stat``: SQLite's unix VFS makes the same check, ``fileHasMoved``, and refuses to
  write to a moved database), retrying if it was replaced in between. The holder's pid is
  written into it, for messages. (etcd instead ``flock``s its WAL files themselves; the
  directory lock gives the same protection without a lock per segment.)

While the log is open the store checks, at every segment it creates and at most once a second
at a sync, that the lock file at the path is still the one it locked. If it was removed or
replaced and the directory lock is held, the store locks a new lock file at the path (nobody
else can hold the directory); otherwise it raises :class:`~walship.errors.LockLostError` (an
``OSError``: the log fails closed).

On a full filesystem (see :class:`PosixSegmentFile`) a failed write takes its bytes back and
raises ``ENOSPC`` naming the file and the free space, a failed create leaves no file, and the
lock holder keeps :data:`RESERVE_BYTES` in ``walship.reserve`` that it gives up to write the
archive record (and side files) when nothing else fits: archiving, and retention behind it,
can then free the disk.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import mmap
import os
import shutil
import stat
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from walship.backends.platform import (
    OPEN_FLAGS,
    PREALLOCATE,
    RWF_DSYNC,
    flush_data,
    flush_file,
    fsync_dir,
    lock_directory,
    try_lock,
    write_all,
)
from walship.errors import LockLostError, StoreEntryError, StoreLockedError
from walship.store import SegmentFile, SegmentStore, StoreCapabilities

logger = logging.getLogger("walship")

LOCK_NAME = "walship.lock"
RESERVE_NAME = "walship.reserve"
RESERVE_BYTES = 1 << 20
"""Space a writer keeps in :data:`RESERVE_NAME` for the small files it must write on a full
disk (the archive record, so that archiving and retention can free space; side files)."""
_MAP_MIN = 1 << 20  # smaller files are read: a mapping costs more than it saves
FILE_MODE = 0o640
DIR_MODE = 0o750
LOCK_CHECK_SECONDS = 1.0
"""At most how often a sync checks that the lock file is still the one locked."""
LOCK_TRIES = 100
"""How often taking the lock file retries when a clean-up job replaces it in between."""
_NO_SPACE = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))
_HAS_WRITEV = hasattr(os, "writev")


def raise_if_full(e: OSError, path: str | os.PathLike[str]) -> None:
    """For a full filesystem (``ENOSPC``, ``EDQUOT``) raise one ``OSError`` of the same errno
    that names the file and the space left on its filesystem (``e`` as its cause); return
    otherwise, for the caller to raise ``e``."""
    if e.errno not in _NO_SPACE:
        return
    try:
        free = f"{shutil.disk_usage(os.path.dirname(path) or '.').free} bytes free"
    except OSError:
        free = "free space unknown"
    what = "quota exceeded" if e.errno != errno.ENOSPC else "no space left on device"
    raise OSError(e.errno, f"{what} writing {os.fspath(path)} ({free}); free some to go on") from e


def _in_the_way(path: Path, what: str) -> StoreEntryError:
    return StoreEntryError(
        errno.EISDIR,
        f"{path} is a directory where walship keeps {what}: move it out of {path.parent} "
        "(nothing was changed)",
    )


def _iov_max() -> int:
    try:
        n = os.sysconf("SC_IOV_MAX")
    except (AttributeError, ValueError, OSError):  # no sysconf, or no such name here
        return 1024
    return min(1024, n) if n > 0 else 1024


_IOV_MAX = _iov_max()


class PosixSegmentFile(SegmentFile):
    """A segment file written at its logical end (:attr:`size`, where its position stays).

    The file may be longer than :attr:`size` when :meth:`preallocate` reserved space: a synced
    write into that space overwrites existing blocks and changes no metadata, so ``fdatasync``
    has no journal commit to wait for. :meth:`trim` cuts the unused tail again.

    On a full filesystem a write that fails takes back what it wrote (the file ends where it
    ended before the call, at a frame boundary, with no bytes that would need a side file) and
    raises ``OSError(ENOSPC)`` naming the file and the free space; a reservation that does not
    fit is skipped (plain appends go on).

    Args:
        fd: the descriptor, positioned at ``size``.
        size: the file's length.
        path: the file's path, for messages.
        watch: called (at most every :data:`LOCK_CHECK_SECONDS`) before a sync: the store's
            check that its lock still holds; it raises ``OSError`` when it does not.
    """

    def __init__(
        self,
        fd: int,
        size: int,
        path: str | os.PathLike[str] = "",
        watch: Callable[[], None] | None = None,
    ) -> None:
        self._fd = fd
        self._size = size
        self._reserved = size  # the file's length on disk
        self._path = path
        self._watch = watch
        self._next_watch = time.monotonic() + LOCK_CHECK_SECONDS
        self._can_preallocate = PREALLOCATE is not None
        self._dsync = True
        self._grown = False  # preallocated since the last sync

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._fd < 0:
            raise OSError(errno.EBADF, "segment file is closed")

    def _check_lock(self) -> None:
        if self._watch is not None and time.monotonic() >= self._next_watch:
            self._watch()
            self._next_watch = time.monotonic() + LOCK_CHECK_SECONDS

    def _take_back(self, e: OSError, start: int) -> None:
        """After a failed write from ``start``: on a full disk cut what it wrote (no space is
        needed for that) so the file ends at ``start``, and raise the error naming it."""
        if e.errno not in _NO_SPACE:
            return
        try:
            if self._size > start or os.fstat(self._fd).st_size > start:
                os.ftruncate(self._fd, start)  # a reservation it ran into goes too
                os.lseek(self._fd, start, os.SEEK_SET)
                self._size = self._reserved = start
                self._grown = True  # the next sync is an fsync: the length is metadata
        except OSError as cut:  # the caller still cuts it (discard_unsynced)
            logger.error("walship could not take back a failed write: %s", cut)
        raise_if_full(e, self._path)

    def _append(self, write: Callable[[Any], None], data: Any, start: int) -> None:
        """``write(data)`` at the end; on a failure take back what was written since ``start``
        (a full disk, see :meth:`_take_back`) and raise."""
        try:
            write(data)
        except OSError as e:
            self._take_back(e, start)
            raise
        if self._size > self._reserved:
            self._reserved = self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        self._append(self._write, memoryview(data), self._size)

    def _write(self, view: memoryview) -> None:
        fd = self._fd
        while view:
            n = os.write(fd, view)  # at the file position, kept at the logical end
            if n <= 0:
                raise OSError(errno.EIO, "write returned 0 bytes")
            self._size += n  # a partial write still moved the end: keep ``size`` honest
            view = view[n:]

    def write_many(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        self._check_open()
        self._append(self._write_many, buffers, self._size)

    def _write_many(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        if not _HAS_WRITEV:  # Windows: no gathering write
            for b in buffers:
                self._write(memoryview(b))
            return
        fd = self._fd
        i = 0
        while i < len(buffers):
            chunk = buffers[i : i + _IOV_MAX]
            want = sum(map(len, chunk))
            n = os.writev(fd, chunk)
            self._size += n
            if n != want:  # short: finish this chunk buffer by buffer
                for b in _remainder(chunk, n):
                    self._write(memoryview(b))
            i += _IOV_MAX

    def write_durable(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        self._check_open()
        if RWF_DSYNC is None or not self._dsync or self._grown or len(buffers) > _IOV_MAX:
            super().write_durable(buffers)
            return
        self._check_lock()
        start = self._size
        try:
            n = os.pwritev(self._fd, buffers, self._size, RWF_DSYNC)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise_if_full(e, self._path)
                raise
            self._dsync = False  # no pwritev2 flags here: write, then fdatasync
            super().write_durable(buffers)
            return
        self._size += n
        os.lseek(self._fd, self._size, os.SEEK_SET)  # pwritev2 leaves the position alone
        if self._size > self._reserved:
            self._reserved = self._size
        rest = _remainder(buffers, n)
        if rest:  # a short write: finish it, then sync the rest the usual way
            self._append(self._write_many, rest, start)
            flush_data(self._fd)

    def sync(self) -> None:
        self._check_open()
        self._check_lock()
        try:
            if self._grown:  # a reservation changed the length: make sure it is on disk too
                flush_file(self._fd)
                self._grown = False
            else:
                flush_data(self._fd)
        except OSError as e:
            raise_if_full(e, self._path)
            raise

    def preallocate(self, size: int) -> bool:
        self._check_open()
        if PREALLOCATE is None or not self._can_preallocate or size <= self._reserved:
            return False
        try:
            PREALLOCATE(self._fd, self._reserved, size - self._reserved)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                self._can_preallocate = False  # this filesystem cannot: append as usual
                return False
            if e.errno in _NO_SPACE:
                # A full disk: append as usual (the next write says ENOSPC if nothing fits).
                # A failed fallocate may keep what it allocated, the length included: cut it,
                # so the file is as it was (a partial reservation ends in no block boundary
                # recovery could tell from written zeros).
                if os.fstat(self._fd).st_size > self._reserved:
                    os.ftruncate(self._fd, self._reserved)
                return False
            raise
        # No fsync here: that would also write back every dirty page. The next sync is a full
        # fsync that makes the new length durable (fdatasync should, but a length is metadata);
        # the syncs after it have no metadata left to write.
        self._reserved = size
        self._grown = True
        return True

    def trim(self) -> bool:
        self._check_open()
        if self._reserved == self._size:
            return False
        os.ftruncate(self._fd, self._size)
        flush_file(self._fd)
        self._reserved = self._size
        return True

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class PosixStore(SegmentStore):
    """Segments in a local directory.

    An entry of the directory that is a directory where walship needs a file (the lock file,
    the archive record, a segment, a side file) makes the operation that meets it raise
    :class:`~walship.errors.StoreEntryError` naming it (and :meth:`list_names` lists it, so
    that recovery meets it at open rather than every rotation failing on it).

    Args:
        path: the directory; created (with its parents) when missing.
    """

    capabilities = StoreCapabilities(
        durable=True, locking=True, persistent=True, preallocates=PREALLOCATE is not None
    )

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._lock_fd = -1
        self._dir_fd: int | None = None  # the directory's own lock, where it can be taken
        self._lock_id: tuple[int, int] | None = None  # (st_dev, st_ino) of the locked file

    def _p(self, name: str) -> Path:
        if not name or "/" in name or os.sep in name or name in (".", ".."):
            raise ValueError(f"invalid file name {name!r}")
        return self.path / name

    def _entry_error(self, e: OSError, path: Path) -> OSError:
        """``e``, or when ``path`` is a directory the one-line error that says so."""
        if isinstance(e, IsADirectoryError) or (
            isinstance(e, (FileExistsError, PermissionError)) and path.is_dir()
        ):
            what = "its lock file" if path.name == LOCK_NAME else "a file"
            return _in_the_way(path, what)
        return e

    def _ensure_dir(self) -> None:
        if not self.path.is_dir():
            try:
                self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            except OSError as e:
                raise_if_full(e, self.path)
                raise
            fsync_dir(self.path.parent)

    # --- the lock -----------------------------------------------------------------------

    def lock(self) -> None:
        """Take the single-writer lock (see the module docstring).

        Raises:
            StoreLockedError: another writer holds the directory or the lock file.
            StoreEntryError: ``walship.lock`` is a directory.
            PlatformUnsupportedError: the platform cannot lock a file.
        """
        if self._lock_fd >= 0:
            return
        self._ensure_dir()
        try:
            dir_fd = lock_directory(self.path)
        except BlockingIOError:
            raise self._locked_error("the directory's own lock") from None
        try:
            fd = self._lock_file()
        except BaseException:
            if dir_fd is not None:
                os.close(dir_fd)
            raise
        self._dir_fd, self._lock_fd = dir_fd, fd
        self._keep_reserve()

    def _lock_file(self) -> int:
        """Lock the file at the lock path, retrying while it is replaced under us."""
        for _ in range(LOCK_TRIES):
            fd = self._lock_at_path(self._locked_error)
            if fd is not None:
                self._lock_id = _file_id(fd)
                return fd
        raise StoreLockedError(f"{self.path / LOCK_NAME} keeps being replaced; not locked")

    def _lock_at_path(self, refused: Callable[[], Exception]) -> int | None:
        """One try at the lock file: open it, lock it, and check it is still the file at the
        path. Returns the locked descriptor, this process's pid written into it, or ``None``
        when the file was removed or replaced between the open and the lock (try again).

        Raises:
            Exception: ``refused()``, when another descriptor holds the lock.
            StoreEntryError: ``walship.lock`` is a directory.
        """
        fd = self._open_lock_file()
        try:
            if not try_lock(fd, str(self.path / LOCK_NAME)):
                raise refused()
            if self._is_at_path(fd):
                _note_holder(fd)
                return fd
        except BaseException:
            os.close(fd)
            raise
        os.close(fd)
        return None

    def _open_lock_file(self) -> int:
        path = self.path / LOCK_NAME
        try:
            return os.open(path, os.O_RDWR | os.O_CREAT | OPEN_FLAGS, FILE_MODE)
        except OSError as e:
            raise self._entry_error(e, path) from None

    def _is_at_path(self, fd: int) -> bool:
        try:
            st = os.stat(self.path / LOCK_NAME)
        except FileNotFoundError:
            return False
        return (st.st_dev, st.st_ino) == _file_id(fd)

    def _locked_error(self, which: str = f"lock file {LOCK_NAME}") -> StoreLockedError:
        holder = ""
        with contextlib.suppress(OSError, ValueError, IndexError):  # best effort
            pid = int((self.path / LOCK_NAME).read_bytes()[:32].split()[0])
            holder = f", held by pid {pid}"
        return StoreLockedError(f"{self.path} is locked by another writer ({which}{holder})")

    def check_lock(self) -> None:
        """Check that the lock file at the path is the one this store locked; if it was
        removed or replaced, lock a new one at the path when the directory lock is held.
        Nothing when the store is not locked. Thread-safe only under the log's own lock (the
        log calls it through its syncs and rotations, which it serialises).

        Raises:
            LockLostError: the lock file was removed or replaced and cannot be taken back
                (no directory lock here, or another process holds the new file).
        """
        if self._lock_fd < 0 or self._is_at_path(self._lock_fd):
            return
        where = self.path / LOCK_NAME
        if self._dir_fd is None:
            raise LockLostError(
                errno.ENOLCK,
                f"{where} was removed or replaced while this log held it, and "
                f"{self.path} cannot be locked itself here: another writer may have opened "
                "the log; this one stops (reopen it once the other is gone)",
            )

        def taken() -> LockLostError:
            return LockLostError(
                errno.ENOLCK,
                f"{where} was replaced while this log held it, and the new file is locked by "
                "another process: this log stops (reopen it once the other is gone)",
            )

        for _ in range(LOCK_TRIES):  # a clean-up job may replace it again while we take it back
            fd = self._lock_at_path(taken)
            if fd is not None:
                old, self._lock_fd, self._lock_id = self._lock_fd, fd, _file_id(fd)
                os.close(old)
                logger.warning("walship: %s was removed or replaced; locked a new one", where)
                return
            if self._is_at_path(self._lock_fd):
                return
        raise LockLostError(errno.ENOLCK, f"{where} keeps being replaced; this log stops")

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)  # closing the descriptor releases its lock
        if self._dir_fd is not None:
            fd, self._dir_fd = self._dir_fd, None
            os.close(fd)
        self._lock_id = None

    def _watch(self) -> Callable[[], None] | None:
        return self.check_lock if self._lock_fd >= 0 else None

    # --- files --------------------------------------------------------------------------

    def list_names(self) -> list[str]:
        """Every entry's name, directories included (recovery meets one named like a segment
        and the store's :class:`~walship.errors.StoreEntryError` names it)."""
        try:
            return [e.name for e in os.scandir(self.path)]
        except FileNotFoundError:
            return []

    def _open(self, name: str, flags: int, mode: int = FILE_MODE) -> int:
        path = self._p(name)
        try:
            fd = os.open(path, flags | OPEN_FLAGS, mode)
        except OSError as e:
            raise self._entry_error(e, path) from None
        if flags & (os.O_WRONLY | os.O_RDWR) == 0 and stat.S_ISDIR(os.fstat(fd).st_mode):
            os.close(fd)  # POSIX opens a directory for reading: say what it is instead
            raise _in_the_way(path, "a file")
        return fd

    def create(self, name: str, data: bytes) -> SegmentFile:
        self.check_lock()  # at every rotation: a removed lock file is noticed
        self._ensure_dir()
        path = self._p(name)
        fd = self._open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            try:
                write_all(fd, data)
                flush_data(fd)
                fsync_dir(self.path)
            except OSError as e:
                raise_if_full(e, path)
                raise
        except BaseException:
            os.close(fd)
            # Ours (O_EXCL) and incomplete: leave nothing, so that a full disk at a rotation
            # does not leave a torn segment for the next open to cut.
            with contextlib.suppress(OSError):
                os.unlink(path)
                fsync_dir(self.path)
            raise
        return PosixSegmentFile(fd, len(data), path, self._watch())

    def open_append(self, name: str) -> SegmentFile:
        fd = self._open(name, os.O_WRONLY)
        return PosixSegmentFile(fd, os.lseek(fd, 0, os.SEEK_END), self._p(name), self._watch())

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        fd = self._open(name, os.O_RDONLY)
        with open(fd, "rb", buffering=0) as f:
            if offset:
                f.seek(offset)
            return f.read() if length is None else f.read(length)

    def written_end(self, name: str, offset: int = 0) -> int:
        fd = self._open(name, os.O_RDONLY)
        try:
            size = os.fstat(fd).st_size
            if not hasattr(os, "SEEK_DATA"):
                return size
            end = offset
            try:
                while end < size:  # walk data runs: [SEEK_DATA, SEEK_HOLE)
                    start = os.lseek(fd, end, os.SEEK_DATA)
                    end = os.lseek(fd, start, os.SEEK_HOLE)
            except OSError as e:
                if e.errno == errno.ENXIO:  # no data after ``end``
                    return min(end, size)
                if e.errno == errno.EINVAL:  # no SEEK_DATA here: assume all written
                    return size
                raise
            return min(end, size)
        finally:
            os.close(fd)

    def local_path(self, name: str) -> str | None:
        return str(self._p(name))

    def map(self, name: str, length: int | None = None) -> memoryview:
        fd = self._open(name, os.O_RDONLY)
        with open(fd, "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            n = size if length is None else min(length, size)
            if n < _MAP_MIN or not hasattr(mmap, "MAP_SHARED"):
                return memoryview(f.read(n))
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            m = mmap.mmap(f.fileno(), n, flags=flags, prot=mmap.PROT_READ)
        with contextlib.suppress(AttributeError, OSError):
            m.madvise(mmap.MADV_SEQUENTIAL)
        return memoryview(m)

    def size(self, name: str) -> int:
        path = self._p(name)
        st = os.stat(path)
        if stat.S_ISDIR(st.st_mode):
            raise _in_the_way(path, "a file")
        return st.st_size

    def truncate(self, name: str, size: int) -> None:
        fd = self._open(name, os.O_WRONLY)
        try:
            os.ftruncate(fd, size)
            flush_file(fd)  # fsync, not fdatasync: the size is metadata
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        path = self._p(name)
        try:
            os.unlink(path)
        except OSError as e:
            raise self._entry_error(e, path) from None
        fsync_dir(self.path)

    def rename(self, src: str, dst: str) -> None:
        target = self._p(dst)
        try:
            os.replace(self._p(src), target)
        except OSError as e:
            raise self._entry_error(e, target) from None
        fsync_dir(self.path)

    def write_atomic(self, name: str, data: bytes) -> None:
        """Temporary file, fsync, rename, directory fsync. On a full disk the lock holder gives
        up its reserve (:data:`RESERVE_NAME`) and tries once more: the archive record must
        still be written so that archiving and retention can free space.

        Raises:
            OSError: ``ENOSPC`` naming the file and the free space, or any other failure; the
                temporary file is removed (a full disk gets its space back).
        """
        self._ensure_dir()
        target = self._p(name)
        if target.is_dir():  # before writing anything: the rename would fail at the end
            raise _in_the_way(target, "a file")
        try:
            self._write_atomic(name, data)
        except OSError as e:
            if e.errno not in _NO_SPACE or not self._release_reserve(name):
                raise_if_full(e, target)
                raise self._entry_error(e, target) from None
            try:
                self._write_atomic(name, data)
            except OSError as again:
                raise_if_full(again, target)
                raise
        fsync_dir(self.path)

    def _write_atomic(self, name: str, data: bytes) -> None:
        tmp = self._p(f".{name}.tmp")
        fd = self._open(tmp.name, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        try:
            try:
                write_all(fd, data)
                flush_file(fd)
            finally:
                os.close(fd)
            os.replace(tmp, self._p(name))
        except BaseException:
            with contextlib.suppress(OSError):  # a full disk: give its space back
                os.unlink(tmp)
            raise

    def _keep_reserve(self) -> None:
        """Make sure the reserve exists (best effort: on a full disk there is none for now)."""
        path = self.path / RESERVE_NAME
        try:
            st = os.stat(path)
            if stat.S_ISDIR(st.st_mode) or st.st_size >= RESERVE_BYTES:
                return
        except FileNotFoundError:
            pass
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | OPEN_FLAGS, FILE_MODE)
        except OSError:
            return
        try:
            if PREALLOCATE is not None:
                PREALLOCATE(fd, 0, RESERVE_BYTES)
            else:
                os.lseek(fd, 0, os.SEEK_SET)
                write_all(fd, bytes(RESERVE_BYTES))
            flush_file(fd)
            os.close(fd)
            fsync_dir(self.path)
        except OSError as e:
            os.close(fd)
            with contextlib.suppress(OSError):
                os.unlink(path)
            logger.debug("walship: no reserve in %s for now: %s", self.path, e)

    def _release_reserve(self, needed_by: str) -> bool:
        """Give the reserve's space back (only the lock holder): whether there was one."""
        if self._lock_fd < 0:
            return False
        try:
            os.unlink(self.path / RESERVE_NAME)
        except OSError:
            return False
        with contextlib.suppress(OSError):
            fsync_dir(self.path)
        logger.warning(
            "walship: %s is full; released its reserve of %d bytes to write %s",
            self.path,
            RESERVE_BYTES,
            needed_by,
        )
        return True

    def sync_dir(self) -> None:
        if self.path.is_dir():
            fsync_dir(self.path)

    def close(self) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"PosixStore({self.location!r})"


def _remainder(
    buffers: list[bytes | bytearray | memoryview], n: int
) -> list[bytes | bytearray | memoryview]:
    """What is left of ``buffers`` once their first ``n`` bytes are written (a short write)."""
    rest: list[bytes | bytearray | memoryview] = []
    for b in buffers:
        blen = len(b)
        if n >= blen:
            n -= blen
            continue
        rest.append(memoryview(b)[n:] if n else b)
        n = 0
    return rest


def _file_id(fd: int) -> tuple[int, int]:
    st = os.fstat(fd)
    return st.st_dev, st.st_ino


def _note_holder(fd: int) -> None:
    """Write this process's pid into the lock file it holds (for the next opener's message)."""
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        write_all(fd, f"{os.getpid()}\n".encode())
