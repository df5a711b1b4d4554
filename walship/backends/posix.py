"""The POSIX segment store: a local directory, real fsyncs, an exclusive lock file.

Assumptions (written down, like raft-wal's): a POSIX filesystem where ``fdatasync`` makes a
file's data durable, ``fsync`` of a directory makes its entries durable, ``rename`` within a
directory is atomic, and ``fcntl`` locks exclude other processes.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import mmap
import os
from pathlib import Path

from walship.backends.base import SegmentFile, SegmentStore, StoreCapabilities
from walship.errors import StoreLockedError

LOCK_NAME = "walship.lock"
_MAP_MIN = 1 << 20  # smaller files are read: a mapping costs more than it saves
FILE_MODE = 0o640
DIR_MODE = 0o750


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd``, finishing short writes; raise ``OSError``."""
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        if n <= 0:
            raise OSError(errno.EIO, "write returned 0 bytes")
        view = view[n:]


def fsync_dir(path: str | os.PathLike[str]) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_RWF_DSYNC: int | None = getattr(os, "RWF_DSYNC", None)
_IOV_MAX = min(1024, os.sysconf("SC_IOV_MAX") if hasattr(os, "sysconf") else 1024)


class PosixSegmentFile(SegmentFile):
    """A segment file written at its logical end (:attr:`size`, where its position stays).

    The file may be longer than :attr:`size` when :meth:`preallocate` reserved space: a synced
    write into that space overwrites existing blocks and changes no metadata, so ``fdatasync``
    has no journal commit to wait for. :meth:`trim` cuts the unused tail again.
    """

    def __init__(self, fd: int, size: int) -> None:
        self._fd = fd
        self._size = size
        self._reserved = size  # the file's length on disk
        self._can_preallocate = hasattr(os, "posix_fallocate")
        self._dsync = True
        self._grown = False  # preallocated since the last sync

    @property
    def size(self) -> int:
        return self._size

    def _check_open(self) -> None:
        if self._fd < 0:
            raise OSError(errno.EBADF, "segment file is closed")

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._check_open()
        view = memoryview(data)
        fd = self._fd
        while view:
            n = os.write(fd, view)  # at the file position, kept at the logical end
            if n <= 0:
                raise OSError(errno.EIO, "write returned 0 bytes")
            self._size += n  # a partial write still moved the end: keep ``size`` honest
            view = view[n:]
        if self._size > self._reserved:
            self._reserved = self._size

    def write_many(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        self._check_open()
        fd = self._fd
        i = 0
        while i < len(buffers):
            chunk = buffers[i : i + _IOV_MAX]
            want = sum(map(len, chunk))
            n = os.writev(fd, chunk)
            self._size += n
            if n != want:  # short: finish this chunk buffer by buffer
                done = n
                for b in chunk:
                    blen = len(b)
                    if done >= blen:
                        done -= blen
                        continue
                    self.write(memoryview(b)[done:])
                    done = 0
            i += _IOV_MAX
        if self._size > self._reserved:
            self._reserved = self._size

    def write_durable(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        self._check_open()
        if _RWF_DSYNC is None or not self._dsync or self._grown or len(buffers) > _IOV_MAX:
            super().write_durable(buffers)
            return
        try:
            n = os.pwritev(self._fd, buffers, self._size, _RWF_DSYNC)
        except OSError as e:
            if e.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                raise
            self._dsync = False  # no pwritev2 flags here: write, then fdatasync
            super().write_durable(buffers)
            return
        self._size += n
        os.lseek(self._fd, self._size, os.SEEK_SET)  # pwritev2 leaves the position alone
        if self._size > self._reserved:
            self._reserved = self._size
        rest: list[bytes | bytearray | memoryview] = []
        for b in buffers:  # a short write: finish it, then sync the rest the usual way
            blen = len(b)
            if n >= blen:
                n -= blen
                continue
            rest.append(memoryview(b)[n:] if n else b)
            n = 0
        if rest:
            self.write_many(rest)
            os.fdatasync(self._fd)

    def sync(self) -> None:
        self._check_open()
        if self._grown:  # a reservation changed the length: make sure it is on disk too
            os.fsync(self._fd)
            self._grown = False
        else:
            os.fdatasync(self._fd)

    def preallocate(self, size: int) -> bool:
        self._check_open()
        if not self._can_preallocate or size <= self._reserved:
            return False
        try:
            os.posix_fallocate(self._fd, self._reserved, size - self._reserved)
        except OSError as e:
            if e.errno in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                self._can_preallocate = False  # this filesystem cannot: append as usual
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
        os.fsync(self._fd)
        self._reserved = self._size
        return True

    def close(self) -> None:
        if self._fd >= 0:
            fd, self._fd = self._fd, -1
            os.close(fd)


class PosixStore(SegmentStore):
    """Segments in a local directory.

    Args:
        path: the directory; created (with its parents) when missing.
    """

    capabilities = StoreCapabilities(
        durable=True, locking=True, persistent=True, preallocates=hasattr(os, "posix_fallocate")
    )

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
            fsync_dir(self.path.parent)

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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, FILE_MODE)
        try:
            write_all(fd, data)
            os.fdatasync(fd)
            fsync_dir(self.path)
        except BaseException:
            os.close(fd)
            raise
        return PosixSegmentFile(fd, len(data))

    def open_append(self, name: str) -> SegmentFile:
        fd = os.open(self._p(name), os.O_WRONLY | os.O_CLOEXEC)
        return PosixSegmentFile(fd, os.lseek(fd, 0, os.SEEK_END))

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with open(self._p(name), "rb", buffering=0) as f:
            if offset:
                f.seek(offset)
            return f.read() if length is None else f.read(length)

    def written_end(self, name: str, offset: int = 0) -> int:
        fd = os.open(self._p(name), os.O_RDONLY | os.O_CLOEXEC)
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
        with open(self._p(name), "rb", buffering=0) as f:
            size = os.fstat(f.fileno()).st_size
            n = size if length is None else min(length, size)
            if n < _MAP_MIN:
                return memoryview(f.read(n))
            flags = mmap.MAP_SHARED | getattr(mmap, "MAP_POPULATE", 0)
            m = mmap.mmap(f.fileno(), n, flags=flags, prot=mmap.PROT_READ)
        with contextlib.suppress(AttributeError, OSError):
            m.madvise(mmap.MADV_SEQUENTIAL)
        return memoryview(m)

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
        fsync_dir(self.path)

    def rename(self, src: str, dst: str) -> None:
        os.rename(self._p(src), self._p(dst))
        fsync_dir(self.path)

    def write_atomic(self, name: str, data: bytes) -> None:
        self._ensure_dir()
        tmp = self._p(f".{name}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, FILE_MODE)
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.rename(tmp, self._p(name))
        fsync_dir(self.path)

    def sync_dir(self) -> None:
        if self.path.is_dir():
            fsync_dir(self.path)

    def close(self) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"PosixStore({self.location!r})"
