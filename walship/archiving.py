"""The seam a :class:`~walship.log.Log` and its archive are wired through: what the log asks
of the archive (:class:`Archiving`, :class:`ArchiveService`, ...) and what it tells it
(:class:`CheckpointPosition`), as protocols and values, so that the log imports nothing of
:mod:`walship.archive` (which sits above it). Re-exported by :mod:`walship.log`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, NamedTuple, Protocol

from walship.core.record import ArchiveRecord
from walship.stats import ArchiveStats
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.log import Log


class PreparedArchive(Protocol):
    """What an :class:`Archiving` prepared before recovery."""

    @property
    def record(self) -> ArchiveRecord:
        """The archive record (rebuilt from the archive when it was lost)."""

    @property
    def restored(self) -> list[str]:
        """Segments put back from the archive (``repair``)."""

    @property
    def record_rebuilt(self) -> bool:
        """Whether the record was rebuilt from the archive."""


class Retaining(Protocol):
    """Retention, as the log drives it (:meth:`Log.checkpoint`)."""

    def apply(self) -> object:
        """Remove what the policy lets go now."""


class AppendGate(Protocol):
    """Backpressure on appends (see :class:`walship.archive.backpressure.Backpressure`)."""

    @property
    def blocked(self) -> bool:
        """Whether appends must call :meth:`wait` first (read without a lock)."""

    def wait(self) -> None:
        """Block until appends may go on; raise ``ArchiveBackpressureError`` after the
        timeout (nothing written, the log not failed)."""


class ArchiveService(Protocol):
    """The running archiver, as :attr:`Log.archiver` shows it (see
    :class:`walship.archive.archiver.Archiver`)."""

    @property
    def retention(self) -> Retaining | None: ...

    def flush(self, timeout: float | None = None, retry_stalled: bool = True) -> bool: ...

    def pending(self) -> list[str]: ...

    def stalled(self) -> dict[str, str]: ...

    def last_errors(self) -> dict[str, str]: ...

    def conflicts(self) -> list[str]: ...

    def stats(self) -> ArchiveStats: ...

    def close(self, timeout: float = 30.0) -> None: ...

    @property
    def url(self) -> str: ...

    def requeue(self, retry_stalled: bool = True) -> int: ...

    def wait_for_progress(self, timeout: float) -> None: ...

    @property
    def drain_on_close(self) -> float: ...

    def drain(self, timeout: float) -> list[str]: ...

    @property
    def backpressure(self) -> AppendGate | None: ...
    def store_checkpoint(self, snapshot: object, position: CheckpointPosition) -> object:
        """Store ``snapshot`` (bytes, a path or a binary file object) as the checkpoint at
        ``position`` in the archive, durably, on the calling thread (see
        :meth:`walship.archive.archiver.Archiver.store_checkpoint`)."""
        ...


class CheckpointPosition(NamedTuple):
    """Where the log goes on after checkpoint ``commit_seq``: the segment that holds (or is
    to hold) frame ``commit_seq + 1``, its prev hash, and the highest commit_seq before it."""

    commit_seq: int
    instance_id: int
    segment_seq: int
    prev_segment_hash: bytes
    prev_last_commit_seq: int | None


class Archiving(Protocol):
    """The archive and retention of a log, built by the caller (``walship.open``: see
    :func:`walship.archive.wiring.build_archiving`) and handed to the :class:`Log`, which
    calls it on its opening thread: ``prepare_open`` holding the store's lock, before
    recovery; ``start`` once the log is open (wired through :meth:`Log.closed_segments`,
    :meth:`Log.segment_removed`, :meth:`Log.notify` and ``log.plugins``). What either raises
    fails the open (the log is closed again)."""

    def prepare_open(self, store: SegmentStore, repair: bool) -> PreparedArchive: ...

    def start(self, log: Log) -> ArchiveService: ...


__all__ = [
    "AppendGate",
    "ArchiveService",
    "Archiving",
    "CheckpointPosition",
    "PreparedArchive",
    "Retaining",
]
