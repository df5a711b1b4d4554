"""The memory store: a model of a disk, for tests and ephemeral logs.

It remembers, per file, how many bytes were synced. :meth:`MemoryStore.crash` models a power
loss: every byte that was not synced is dropped, except that the most recent write may be torn
(a prefix of its unsynced bytes survives, optionally followed by garbage such as zeros, as a
filesystem may expose after a crash). Operations documented as durable (create, truncate,
remove, rename, write_atomic) are durable here at once, as the POSIX store makes them.

A store can also model a small disk: with ``capacity`` (bytes, over all files) a write, create
or ``write_atomic`` that does not fit raises ``OSError(ENOSPC)`` naming the file and the space
left, writing nothing (as the POSIX store, which takes a failed write's bytes back);
:meth:`MemoryStore.set_capacity` frees space (or takes it).
"""

from __future__ import annotations

import errno
import threading
from dataclasses import dataclass, field

from walship.errors import StoreLockedError
from walship.store import SegmentFile, SegmentStore, StoreCapabilities


@dataclass
class _File:
    data: bytearray = field(default_factory=bytearray)
    synced: int = 0


class MemorySegmentFile(SegmentFile):
    """An append handle on a memory file; dead after the store crashes."""

    def __init__(self, store: MemoryStore, name: str) -> None:
        self._store = store
        self._name = name
        self._generation = store._generation
        self._closed = False

    def _file(self) -> _File:
        if self._closed or self._generation != self._store._generation:
            raise OSError(errno.EBADF, f"memory file {self._name} is not open")
        try:
            return self._store._files[self._name]
        except KeyError:
            raise OSError(errno.ENOENT, f"memory file {self._name} was removed") from None

    @property
    def size(self) -> int:
        with self._store._mutex:
            return len(self._file().data)

    def write(self, data: bytes | bytearray | memoryview) -> None:
        with self._store._mutex:
            f = self._file()
            self._store._make_room(self._name, len(data))
            f.data += data
            self._store._last_written = self._name

    def sync(self) -> None:
        with self._store._mutex:
            f = self._file()
            f.synced = len(f.data)

    def close(self) -> None:
        self._closed = True


class MemoryStore(SegmentStore):
    """An in-memory store that models durability (see the module docstring).

    One ``MemoryStore`` object is one "disk": hand the same object to a new log after
    :meth:`crash` to model a restart.
    """

    capabilities = StoreCapabilities(durable=False, locking=False, persistent=False)

    def __init__(self, capacity: int | None = None) -> None:
        if capacity is not None and (type(capacity) is not int or capacity < 0):
            # TypeError: what a rejected keyword argument raises (the config reports it)
            raise TypeError(f"capacity must be a number of bytes (an int >= 0), got {capacity!r}")
        self.location = "memory:"
        self.capacity = capacity
        """Bytes all files may hold together (``None``: no limit)."""
        self._files: dict[str, _File] = {}
        self._mutex = threading.RLock()
        self._locked = False
        self._generation = 0
        self._last_written: str | None = None

    # --- the model's own controls -------------------------------------------------------

    def crash(self, keep_unsynced: int = 0, garbage: bytes = b"") -> None:
        """Model a power loss and restart.

        Every file loses its unsynced bytes, except the most recently written file, which keeps
        the first ``keep_unsynced`` of them (a torn write) followed by ``garbage``; a file whose
        bytes were all synced had no write in flight and gets no garbage. Open handles die
        (writes raise ``OSError``) and the lock is released.
        """
        with self._mutex:
            for name, f in self._files.items():
                torn = name == self._last_written and len(f.data) > f.synced
                keep = min(keep_unsynced, len(f.data) - f.synced) if torn else 0
                del f.data[f.synced + keep :]
                if torn and garbage:
                    f.data += garbage
                f.synced = len(f.data)
            self._generation += 1
            self._locked = False
            self._last_written = None

    def set_capacity(self, capacity: int | None) -> None:
        """Change what the "disk" holds (``None``: no limit); files already larger stay."""
        with self._mutex:
            self.capacity = capacity

    def used(self) -> int:
        """Bytes held by all files."""
        with self._mutex:
            return sum(len(f.data) for f in self._files.values())

    def _make_room(self, name: str, grow: int) -> None:
        """Raise ``ENOSPC`` unless ``grow`` more bytes fit (call holding the mutex)."""
        if self.capacity is None or grow <= 0:
            return
        free = self.capacity - self.used()
        if grow > free:
            raise OSError(
                errno.ENOSPC,
                f"no space left on device writing memory:{name} ({max(0, free)} bytes free); "
                "free some to go on",
            )

    def unsynced_bytes(self, name: str) -> int:
        """How many bytes of ``name`` a crash would drop now. Raises ``FileNotFoundError``."""
        with self._mutex:
            f = self._get(name)
            return len(f.data) - f.synced

    def files(self) -> dict[str, bytes]:
        """A snapshot of every file's current content."""
        with self._mutex:
            return {n: bytes(f.data) for n, f in self._files.items()}

    # --- the store interface ------------------------------------------------------------

    def _get(self, name: str) -> _File:
        try:
            return self._files[name]
        except KeyError:
            raise FileNotFoundError(errno.ENOENT, "no such memory file", name) from None

    def lock(self) -> None:
        with self._mutex:
            if self._locked:
                raise StoreLockedError("memory store is locked by another writer")
            self._locked = True

    def unlock(self) -> None:
        with self._mutex:
            self._locked = False

    def list_names(self) -> list[str]:
        with self._mutex:
            return list(self._files)

    def create(self, name: str, data: bytes) -> SegmentFile:
        with self._mutex:
            if name in self._files:
                raise FileExistsError(errno.EEXIST, "memory file exists", name)
            self._make_room(name, len(data))
            self._files[name] = _File(bytearray(data), len(data))
            return MemorySegmentFile(self, name)

    def open_append(self, name: str) -> SegmentFile:
        with self._mutex:
            self._get(name)
            return MemorySegmentFile(self, name)

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        with self._mutex:
            data = self._get(name).data
            end = len(data) if length is None else offset + length
            return bytes(data[offset:end])

    def size(self, name: str) -> int:
        with self._mutex:
            return len(self._get(name).data)

    def truncate(self, name: str, size: int) -> None:
        with self._mutex:
            f = self._get(name)
            del f.data[size:]
            f.synced = len(f.data)  # truncate fsyncs the file: everything left is durable

    def remove(self, name: str) -> None:
        with self._mutex:
            self._get(name)
            del self._files[name]

    def rename(self, src: str, dst: str) -> None:
        with self._mutex:
            self._files[dst] = self._get(src)
            del self._files[src]

    def write_atomic(self, name: str, data: bytes) -> None:
        with self._mutex:
            self._make_room(name, len(data))  # the new copy is whole before the old goes
            self._files[name] = _File(bytearray(data), len(data))

    def close(self) -> None:
        self.unlock()

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._files)} files)"
