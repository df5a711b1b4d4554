"""Fault injection for segment stores: make the k-th write, sync, create, ... of a store fail.

Wrap any :class:`~walship.store.SegmentStore` in a :class:`FaultyStore` and hand it to
:func:`walship.open` to see what your service does when the disk fails under the log::

    store = FaultyStore(MemoryStore(), Fault("sync", at=3))
    log = walship.open(store=store)
    ...  # the third fdatasync raises EIO: the log fails closed (LogFailedError)

Calls are counted per operation (``write``, ``sync``, ``create``, ``rename``, ``truncate``,
``remove``, ``write_atomic``) from the moment the store is wrapped or :meth:`FaultyStore.reset`
is called; ``counts`` holds the tallies, so a first fault-free run tells how far ``at`` can go.

The wrapper also models "fsyncgate": after a failed ``sync`` the kernel may have dropped the
dirty pages while still showing their bytes to readers, so the bytes written since the last good
sync may never reach the disk, whatever later syncs say. Over a
:class:`~walship.backends.memory.MemoryStore`, :meth:`FaultyStore.crash` models a power loss in
which exactly those bytes read back as zeros (unless they were truncated away first).
"""

from __future__ import annotations

import errno
import threading
from collections import Counter
from dataclasses import dataclass

from walship.backends.memory import MemoryStore
from walship.store import SegmentFile, SegmentStore

OPERATIONS = ("write", "sync", "create", "rename", "truncate", "remove", "write_atomic")
"""The operations a :class:`Fault` can target."""
ERRORS = ("EIO", "ENOSPC", "short")
"""The ways an operation can fail (see :class:`Fault`)."""

_ERRNO = {"EIO": errno.EIO, "ENOSPC": errno.ENOSPC, "short": errno.EIO}


@dataclass(frozen=True)
class Fault:
    """Fail the ``at``-th call (1-based) of ``op``.

    ``error`` says how:

    * ``EIO``: nothing happens; ``OSError(EIO)``.
    * ``ENOSPC``: a ``write`` or ``create`` keeps the first half of its bytes (the disk filled up
      on the way), then ``OSError(ENOSPC)``; other operations do nothing and raise ``ENOSPC``.
    * ``short``: a ``write`` or ``create`` keeps all but its last byte, then ``OSError(EIO)`` (a
      short write that could not be finished); other operations act as ``EIO``.

    A failed ``sync`` never syncs anything (and dooms the unsynced bytes, see the module
    docstring). With ``persistent=True`` every later call of ``op`` fails the same way (a dead
    disk).

    Raises:
        ValueError: an unknown ``op`` or ``error``, or ``at`` < 1.
    """

    op: str
    at: int
    error: str = "EIO"
    persistent: bool = False

    def __post_init__(self) -> None:
        if self.op not in OPERATIONS:
            raise ValueError(f"unknown operation {self.op!r}; expected one of {OPERATIONS}")
        if self.error not in ERRORS:
            raise ValueError(f"unknown error {self.error!r}; expected one of {ERRORS}")
        if self.at < 1:
            raise ValueError(f"at counts calls from 1, got {self.at}")

    def kept(self, n: int) -> int:
        """How many of ``n`` bytes a failing write or create still writes."""
        if self.error == "ENOSPC":
            return n // 2
        if self.error == "short":
            return max(0, n - 1)
        return 0

    def exception(self, name: str) -> OSError:
        what = "short write" if self.error == "short" else f"injected {self.error}"
        return OSError(_ERRNO[self.error], f"{what} ({self.op} #{self.at})", name)


@dataclass(frozen=True)
class InjectedFault:
    """A fault that fired: the operation, which call it was, the error and the file."""

    op: str
    call: int
    error: str
    name: str


class FaultyFile(SegmentFile):
    """A segment file whose writes and syncs go through the store's fault plan."""

    def __init__(self, store: FaultyStore, name: str, inner: SegmentFile) -> None:
        self._store = store
        self._name = name
        self._inner = inner

    @property
    def size(self) -> int:
        return self._inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        fault = self._store._fire("write", self._name)
        if fault is not None:
            kept = fault.kept(len(data))
            if kept:
                self._inner.write(memoryview(data)[:kept])
            raise fault.exception(self._name)
        self._inner.write(data)

    def sync(self) -> None:
        fault = self._store._fire("sync", self._name)
        if fault is not None:
            self._store._doom(self._name, self._inner.size)
            raise fault.exception(self._name)
        self._inner.sync()
        self._store._synced_to(self._name, self._inner.size)

    def close(self) -> None:
        self._inner.close()


class FaultyStore(SegmentStore):
    """A store that fails the calls named by its :class:`Fault` plan and passes the rest on.

    Args:
        inner: the store that does the real work.
        faults: the plan; :meth:`arm` replaces it, :meth:`disarm` clears it.

    Attributes:
        counts: calls per operation since the store was wrapped or :meth:`reset`.
        injected: every fault that fired, in order.
        doomed: per file, the byte ranges a failed sync may have lost (fsyncgate).
    """

    def __init__(self, inner: SegmentStore, *faults: Fault) -> None:
        self.inner = inner
        self.location = inner.location
        self.counts: Counter[str] = Counter()
        self.injected: list[InjectedFault] = []
        self.doomed: dict[str, list[tuple[int, int]]] = {}
        self._faults: tuple[Fault, ...] = faults
        self._synced: dict[str, int] = {}
        self._mutex = threading.Lock()

    # --- the plan -----------------------------------------------------------------------

    def arm(self, *faults: Fault) -> None:
        """Replace the fault plan (counts go on from where they are)."""
        with self._mutex:
            self._faults = faults

    def disarm(self) -> None:
        """Remove every fault: from now on every call passes through."""
        self.arm()

    def reset(self) -> None:
        """Set every count back to zero and forget the injected faults."""
        with self._mutex:
            self.counts.clear()
            self.injected.clear()

    def _fire(self, op: str, name: str) -> Fault | None:
        with self._mutex:
            self.counts[op] += 1
            call = self.counts[op]
            for fault in self._faults:
                if fault.op == op and (call == fault.at or (fault.persistent and call > fault.at)):
                    self.injected.append(InjectedFault(op, call, fault.error, name))
                    return fault
            return None

    # --- the fsyncgate model ------------------------------------------------------------

    def _doom(self, name: str, size: int) -> None:
        with self._mutex:
            start = self._synced.get(name, 0)
            if size > start:
                self.doomed.setdefault(name, []).append((start, size))

    def _synced_to(self, name: str, size: int) -> None:
        with self._mutex:
            self._synced[name] = size

    def crash(self, keep_unsynced: int = 0, garbage: bytes = b"") -> None:
        """A power loss (see :meth:`MemoryStore.crash`), after which every doomed byte that is
        still in its file reads back as zero.

        Raises:
            TypeError: the inner store is not a :class:`MemoryStore`.
        """
        if not isinstance(self.inner, MemoryStore):
            raise TypeError(f"crash() needs a MemoryStore inside, not {self.inner!r}")
        self.inner.crash(keep_unsynced, garbage)
        files = self.inner.files()
        with self._mutex:
            doomed, self.doomed = self.doomed, {}
            self._synced = {n: len(d) for n, d in files.items()}
        for name, ranges in doomed.items():
            if name not in files:
                continue
            data = bytearray(files[name])
            for start, end in ranges:
                end = min(end, len(data))
                if start < end:
                    data[start:end] = bytes(end - start)
            self.inner.write_atomic(name, bytes(data))

    # --- the store interface ------------------------------------------------------------

    def lock(self) -> None:
        self.inner.lock()

    def unlock(self) -> None:
        self.inner.unlock()

    def check_lock(self) -> None:
        self.inner.check_lock()

    def list_names(self) -> list[str]:
        return self.inner.list_names()

    def create(self, name: str, data: bytes) -> SegmentFile:
        fault = self._fire("create", name)
        if fault is not None:
            kept = fault.kept(len(data))
            if kept:
                self.inner.create(name, data[:kept]).close()
            raise fault.exception(name)
        file = self.inner.create(name, data)
        self._synced_to(name, len(data))
        return FaultyFile(self, name, file)

    def open_append(self, name: str) -> SegmentFile:
        return FaultyFile(self, name, self.inner.open_append(name))

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        return self.inner.read(name, offset, length)

    def size(self, name: str) -> int:
        return self.inner.size(name)

    def truncate(self, name: str, size: int) -> None:
        fault = self._fire("truncate", name)
        if fault is not None:
            raise fault.exception(name)
        self.inner.truncate(name, size)
        with self._mutex:
            self._synced[name] = size
            kept = [(s, min(e, size)) for s, e in self.doomed.get(name, []) if s < size]
            if kept:
                self.doomed[name] = kept
            else:
                self.doomed.pop(name, None)

    def remove(self, name: str) -> None:
        fault = self._fire("remove", name)
        if fault is not None:
            raise fault.exception(name)
        self.inner.remove(name)
        with self._mutex:
            self._synced.pop(name, None)
            self.doomed.pop(name, None)

    def rename(self, src: str, dst: str) -> None:
        fault = self._fire("rename", src)
        if fault is not None:
            raise fault.exception(src)
        self.inner.rename(src, dst)
        with self._mutex:
            self._synced[dst] = self._synced.pop(src, 0)
            self.doomed.pop(dst, None)
            if src in self.doomed:
                self.doomed[dst] = self.doomed.pop(src)

    def write_atomic(self, name: str, data: bytes) -> None:
        fault = self._fire("write_atomic", name)
        if fault is not None:
            raise fault.exception(name)
        self.inner.write_atomic(name, data)
        with self._mutex:
            self._synced[name] = len(data)
            self.doomed.pop(name, None)

    def close(self) -> None:
        self.inner.close()

    def __repr__(self) -> str:
        return f"FaultyStore({self.inner!r}, {len(self._faults)} faults)"


__all__ = ["ERRORS", "OPERATIONS", "Fault", "FaultyFile", "FaultyStore", "InjectedFault"]
