"""The segment-store interface: where the active log lives. A leaf: it imports nothing of
walship but :mod:`walship.errors` (as raft-wal keeps its VFS in ``types/``).

The core engine does every byte of I/O through these two small classes. A store is a flat
namespace of files (segment files, side files of cut bytes, small records written atomically).
Implementations: :mod:`walship.backends.posix`, :mod:`walship.backends.memory`, and any a
package declares in the ``walship.backends`` entry-point group
(:mod:`walship.backends.registry`). A new store proves it keeps the contracts below by passing
the conformance suite, :class:`walship.testing.store_contract.StoreContract`.

Contracts every implementation keeps (the core's correctness rests on them):

* Durability is explicit. ``create``, ``truncate``, ``remove``, ``rename`` and ``write_atomic``
  are durable when they return (data and directory entry). Bytes given to
  :meth:`SegmentFile.write` are durable only after :meth:`SegmentFile.sync` returns.
* Writes are all-or-raise: ``write`` either hands every byte to the OS or raises ``OSError``
  (a short write that cannot be finished raises). After a failed write or sync the caller must
  assume nothing about what reached the medium.
* Failures surface as ``OSError`` (with ``errno``: ``EIO``, ``ENOSPC``, ...), a missing file as
  ``FileNotFoundError``, a second writer as :class:`walship.errors.StoreLockedError`, an entry
  in the way (a directory where a file belongs) as :class:`walship.errors.StoreEntryError`.
* A full store (``ENOSPC``) is an ``OSError`` whose message names the file and the space left;
  it never stops the store from being opened, read or locked: only what needs new space fails.
* The lock holds for as long as the store is locked, whatever happens to the files that
  implement it (a lock file deleted by a clean-up job); a store that notices it lost its lock
  raises :class:`walship.errors.LockLostError` (an ``OSError``) from the next write or sync.
* Capability flags (:class:`StoreCapabilities`) say what a store can promise; a store that cannot
  make data survive a power loss says so with ``durable = False``.

Threads. A store is shared by the threads of one log, and must allow concurrent calls on
different files and reads of a file while it is appended to (a read returns bytes that were
written, up to some point):

* the writer (the appending thread leading a group commit, or the background flusher) writes
  and syncs the active segment through its :class:`SegmentFile` and creates the next one at a
  rotation; the log serialises these calls, so one :class:`SegmentFile` is used by one thread
  at a time;
* readers (``log.read`` on the caller's threads, the archiver's workers) read and map closed
  segments and the active one;
* the archiver's workers write the archive record (``write_atomic``) and retention removes
  closed segments (``remove``), while appends go on.

Open (``lock``, ``sync_dir``, ``list_names``, recovery's ``truncate``, ``rename`` and
``write_atomic`` of side files) and close (``close``) run on the caller's thread with no other
log thread running.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar


@dataclass(frozen=True)
class StoreCapabilities:
    """What a store can promise.

    Attributes:
        durable: ``sync`` makes bytes survive a power loss (posix: yes; memory: only its model).
        locking: ``lock`` excludes writers in other processes, not just in this one.
        persistent: the data outlives the process.
        preallocates: :meth:`SegmentFile.preallocate` can reserve space, so a segment file may
            end in space that was never written (:meth:`SegmentStore.written_end` tells where;
            recovery reads it, after the last segment's last frame, as that segment's unused
            tail, not as damage).
    """

    durable: bool = True
    locking: bool = True
    persistent: bool = True
    preallocates: bool = False


class SegmentFile(ABC):
    """An open segment, written only at its end: what :meth:`SegmentStore.create` and
    :meth:`SegmentStore.open_append` return. Used by one thread at a time (the log's writer);
    after a failed ``write`` or ``sync`` the log stops using it (it fails closed)."""

    @property
    @abstractmethod
    def size(self) -> int:
        """The file's size in bytes, including everything written so far."""

    @abstractmethod
    def write(self, data: bytes | bytearray | memoryview) -> None:
        """Append all of ``data`` at the end of the file, or raise ``OSError``.

        Short writes are continued until every byte is written. Not durable until ``sync``.
        """

    @abstractmethod
    def sync(self) -> None:
        """Make every byte written so far durable (fdatasync). Raises ``OSError``."""

    @abstractmethod
    def close(self) -> None:
        """Release the handle. Does not sync. Idempotent."""

    # Optional: preallocation. A store that can (``capabilities.preallocates``) overrides both.

    def preallocate(self, size: int) -> bool:
        """Reserve space so that the file can grow to ``size`` bytes by overwriting blocks that
        already exist: a synced write then changes no file size or block map, which is what
        makes a durable append cheap (SQLite's WAL and etcd do the same).

        The file on disk becomes at least ``size`` bytes long, its tail beyond :attr:`size`
        reading as zeros; :attr:`size` (where the next write goes) does not change. The new
        length becomes durable with the next :meth:`sync`. Returns ``False``, doing nothing,
        when the store cannot preallocate (the default) or ``size`` is not beyond what is
        reserved already.
        """
        return False

    def trim(self) -> bool:
        """Cut a preallocated tail so the file ends at :attr:`size`, and make the whole file
        durable (fsync). Returns ``False``, doing nothing, when nothing is preallocated (the
        default). Raises ``OSError``."""
        return False

    def write_durable(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        """Append the buffers and make them durable, as :meth:`write_many` then :meth:`sync`.

        Only for a file whose earlier bytes are all durable already: a store may sync just the
        new range (POSIX: one ``pwritev2`` with ``RWF_DSYNC``, one system call instead of two).
        Raises ``OSError``.
        """
        if len(buffers) == 1:
            self.write(buffers[0])
        else:
            self.write_many(buffers)
        self.sync()

    def write_many(self, buffers: list[bytes | bytearray | memoryview]) -> None:
        """Append the buffers in order, as :meth:`write` of their concatenation would (stores
        override it to write them with one gathering system call). Raises ``OSError``."""
        for b in buffers:
            self.write(b)


class SegmentStore(ABC):
    """A directory of segment files. Implementations: ``posix``, ``memory``."""

    capabilities: ClassVar[StoreCapabilities] = StoreCapabilities()
    location: str = ""
    """A human-readable location (a path, ``memory:``) for messages."""

    @abstractmethod
    def lock(self) -> None:
        """Take the single-writer lock of this store: at open, before anything else is read or
        written. Whether taking it twice through the same object is an error is the store's
        choice; a second holder (another object on the same storage, another process) is
        always refused.

        Raises:
            StoreLockedError: another writer (here or in another process) holds it.
        """

    @abstractmethod
    def unlock(self) -> None:
        """Release the lock taken by ``lock`` (at close). Idempotent; never raises for a lock
        that is not held."""

    def check_lock(self) -> None:  # noqa: B027 - optional, nothing to check by default
        """Check that the lock taken by ``lock`` still holds, taking it back where that is
        safe; nothing when the store is not locked. A store whose lock can be undermined from
        outside (POSIX: ``walship.lock`` deleted) also checks by itself when it creates a file
        and (at most once a second) when it syncs; a caller that goes long without either
        (durability ``none``) may call it. Call it where the store's other writes are
        serialised.

        Raises:
            LockLostError: the lock is lost and cannot be taken back (an ``OSError``: the
                log fails closed).
        """

    @abstractmethod
    def list_names(self) -> list[str]:
        """Every file name in the store (segments, side files, records), in no given order;
        also the name of any other entry (a directory) that would be in a file's way, and the
        names a store keeps for itself (the POSIX lock file). Read at open (recovery), by
        :func:`free_name`, and by repair and restore; empty for a store never written."""

    @abstractmethod
    def create(self, name: str, data: bytes) -> SegmentFile:
        """Create file ``name`` holding ``data`` and open it for appending.

        Called at a rotation (on the writer's thread) and when a new log starts. Durable on
        return: ``data`` and the directory entry are synced. On failure nothing is left behind
        (no partial file for recovery to find).

        Raises:
            FileExistsError: the name exists already (``StoreEntryError``: as a directory).
            OSError: the create failed (``ENOSPC`` naming the file and the space left).
        """

    @abstractmethod
    def open_append(self, name: str) -> SegmentFile:
        """Open an existing file for appending at its end (at open: the last segment, which
        the log resumes). The returned file's :attr:`~SegmentFile.size` is the file's size.

        Raises:
            FileNotFoundError: no such file.
        """

    @abstractmethod
    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        """Read ``length`` bytes (all to the end when ``None``) from ``offset``.

        Returns fewer bytes only at the end of the file (none from or past its end). Any
        thread (see the module docstring). Raises ``FileNotFoundError``.
        """

    @abstractmethod
    def size(self, name: str) -> int:
        """The size of file ``name`` in bytes. Raises ``FileNotFoundError``."""

    @abstractmethod
    def truncate(self, name: str, size: int) -> None:
        """Cut file ``name`` to ``size`` bytes, durably (recovery cutting a torn tail, the log
        taking back a failed write). Raises ``FileNotFoundError`` and ``OSError``."""

    @abstractmethod
    def remove(self, name: str) -> None:
        """Delete file ``name``, durably (retention, on an archiver worker; repair and
        restore). Raises ``FileNotFoundError``."""

    @abstractmethod
    def rename(self, src: str, dst: str) -> None:
        """Rename ``src`` to ``dst`` atomically and durably, replacing ``dst`` (recovery and
        repair setting a damaged file aside). Raises ``FileNotFoundError`` for a missing
        ``src``."""

    @abstractmethod
    def write_atomic(self, name: str, data: bytes) -> None:
        """Replace file ``name`` with ``data`` so that a crash leaves the old or the new file.

        Temporary file, sync, rename, directory sync. Used for the archive record (on the
        archiver's workers) and side files of cut bytes; on a full store it may use space it
        kept for this (the POSIX store's reserve).

        Raises:
            OSError: the write failed; the old file, if any, is untouched.
        """

    def written_end(self, name: str, offset: int = 0) -> int:
        """Where the last written data at or after ``offset`` ends: the file's bytes beyond it
        are space reserved by :meth:`SegmentFile.preallocate` and never written (they read as
        zeros). The default, for a store that cannot tell, is the file's size. Raises
        ``FileNotFoundError``."""
        return self.size(name)

    def local_path(self, name: str) -> str | None:
        """The path of file ``name`` on this machine's filesystem, for another process to read
        it (the archive's upload process), or ``None`` when the store has no such path (the
        default)."""
        return None

    def map(self, name: str, length: int | None = None) -> memoryview:
        """A read-only view of the first ``length`` bytes (all when ``None``) of file ``name``,
        for decoding without a read call per frame. The default reads the bytes; a store may
        map the file instead. Release the view (``view.release()``) when done; it stays valid
        while the file is only appended to or removed. Raises ``FileNotFoundError``."""
        return memoryview(self.read(name, 0, length))

    def sync_dir(self) -> None:  # noqa: B027 - optional, nothing to do by default
        """Make every directory entry of the store durable.

        ``create`` and the other operations already sync their own entries; the log calls this
        at open, because a crash can fall between a create's data sync and its directory sync,
        leaving a segment that is readable now and gone after the next power loss.
        """

    def close(self) -> None:  # noqa: B027 - optional hook, nothing to do by default
        """Release what the store holds (the lock included). Idempotent."""


def free_name(store: SegmentStore, name: str) -> str:
    """``name``, or ``name.2``, ``name.3``, ...: the first that does not exist in ``store``, so
    that bytes set aside earlier are never overwritten."""
    existing = set(store.list_names())
    candidate, n = name, 1
    while candidate in existing:
        n += 1
        candidate = f"{name}.{n}"
    return candidate


def written_bytes(store: SegmentStore, name: str, offset: int) -> bytes:
    """The bytes of ``name`` written at or after ``offset``, without the space a preallocating
    store reserved after them (what recovery and a failed log keep aside when they cut)."""
    written = store.written_end(name, offset)
    if written < store.size(name):  # block-granular: zeros up to the block's end are reserved too
        return store.read(name, offset, max(0, written - offset)).rstrip(b"\0")
    return store.read(name, offset)
