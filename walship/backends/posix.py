"""The POSIX segment store: a local directory, real fsyncs, an exclusive lock file.

Assumptions (written down, like raft-wal's): a POSIX filesystem where ``fdatasync`` makes a
file's data durable, ``fsync`` of a directory makes its entries durable, ``rename`` within a
directory is atomic, and ``fcntl`` locks exclude other processes.
"""

from __future__ import annotations

import errno
import fcntl
import os
from pathlib import Path

from walship.backends.base import SegmentFile, SegmentStore, StoreCapabilities
from walship.errors import StoreLockedError

LOCK_NAME = "walship.lock"
FILE_MODE = 0o640
DIR_MODE = 0o750


def _write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd``, finishing short writes; raise ``OSError``."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[n:]


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class PosixSegmentFile(SegmentFile):
    """A segment file opened with O_APPEND."""

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size

    @property
    def size(self) -> int:
        return self._size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if self._fd < 0:
            raise OSError(errno.EBADF, "segment file is closed")
        try:
            _write_all(self._fd, data)
        except OSError:
            # A partial write still moved the end of the file; keep ``size`` honest.
            self._size = os.fstat(self._fd).st_size
            raise
        self._size += len(data)

    def sync(self) -> None:
        if self._fd < 0:
            raise OSError(errno.EBADF, "segment file is closed")
        os.fdatasync(self._fd)

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class PosixStore(SegmentStore):
    """Segments in a local directory.

    Args:
        path: the directory; created (with its parents) when missing.
    """

    capabilities = StoreCapabilities(durable=True, locking=True, persistent=True)

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self._lock_fd = -1

    def _p(self, name: str) -> Path:
        if not name or "/" in name or name in (".", ".."):
            raise ValueError(f"invalid file name {name!r}")
        return self.path / name

    def _ensure_dir(self) -> None:
        if not self.path.is_dir():
            self.path.mkdir(mode=DIR_MODE, parents=True, exist_ok=True)
            _fsync_dir(self.path.parent)

    def lock(self) -> None:
        if self._lock_fd >= 0:
            return
        self._ensure_dir()
        fd = os.open(self.path / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, FILE_MODE)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise StoreLockedError(
                f"{self.path} is locked by another writer (lock file {LOCK_NAME})"
            ) from None
        self._lock_fd = fd

    def unlock(self) -> None:
        if self._lock_fd >= 0:
            fd, self._lock_fd = self._lock_fd, -1
            os.close(fd)  # closing the descriptor releases the flock

    def list_names(self) -> list[str]:
        try:
            return [e.name for e in os.scandir(self.path) if e.is_file()]
        except FileNotFoundError:
            return []

    def create(self, name: str, data: bytes) -> SegmentFile:
        self._ensure_dir()
        path = self._p(name)
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND | os.O_CLOEXEC, FILE_MODE
        )
        try:
            _write_all(fd, data)
            os.fdatasync(fd)
            _fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            raise
        return PosixSegmentFile(fd, len(data))

    def open_append(self, name: str) -> SegmentFile:
        fd = os.open(self._p(name), os.O_WRONLY | os.O_APPEND | os.O_CLOEXEC)
        return PosixSegmentFile(fd, os.fstat(fd).st_size)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(self._p(name), "rb", buffering=0) as f:
            if offset:
                f.seek(offset)
            return f.read() if length is None else f.read(length)

    def size(self, name: str) -> int:
        return os.stat(self._p(name)).st_size

    def truncate(self, name: str, size: int) -> None:
        fd = os.open(self._p(name), os.O_WRONLY | os.O_CLOEXEC)
        try:
            os.ftruncate(fd, size)
            os.fsync(fd)  # fsync, not fdatasync: the size is metadata
        finally:
            os.close(fd)

    def remove(self, name: str) -> None:
        os.unlink(self._p(name))
        _fsync_dir(self.path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._p(src), self._p(dst))
        _fsync_dir(self.path)

    def write_atomic(self, name: str, data: bytes) -> None:
        self._ensure_dir()
        tmp = self._p(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self._p(name))
        _fsync_dir(self.path)

    def close(self) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"PosixStore({self.location!r})"
