"""The seam a :class:`~walship.log.Log` and its archive are wired through: what the log asks
of the archive (:class:`Archiving`, :class:`ArchiveService`, ...) and what it tells it
(:class:`CheckpointPosition`, defined in :mod:`walship.core.reading`), as protocols and values,
so that the log imports nothing of :mod:`walship.archive` (which sits above it); and the log's
side of the seam, :class:`LogArchive` (the archiver started, a checkpoint's snapshot handed to
it, the drain at close). Re-exported by :mod:`walship.log`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Protocol

from walship.core.reading import CheckpointPosition
from walship.core.record import ArchiveRecord
from walship.errors import CheckpointError, WalshipError
from walship.stats import ArchiveStats
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.log import Log

_drain_logger = logging.getLogger("walship.drain")
"""Where :meth:`LogArchive.drain` names what a close left pending (a command that names it
itself mutes it: :mod:`walship.cli.draining`)."""


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

    def wait(self, since: float | None = None) -> None:
        """Block until appends may go on; raise ``ArchiveBackpressureError`` after the
        timeout (nothing written, the log not failed), counted from ``since`` (a
        ``time.monotonic()`` reading: when the append began to wait; ``None``: now)."""


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


class Archiving(Protocol):
    """The archive and retention of a log, built by the caller (``walship.open``: see
    :func:`walship.archive.wiring.build_archiving`) and handed to the :class:`Log`, which
    calls it on its opening thread: ``prepare_open`` holding the store's lock, before
    recovery; ``start`` once the log is open (wired through :meth:`Log.closed_segments`,
    :meth:`Log.segment_removed`, :meth:`Log.notify` and ``log.plugins``). What either raises
    fails the open (the log is closed again)."""

    def prepare_open(self, store: SegmentStore, repair: bool) -> PreparedArchive: ...

    def start(self, log: Log) -> ArchiveService: ...


class LogArchive:
    """A log's side of its archive: the running archiver (:attr:`service`), the append gate it
    brings, a checkpoint's snapshot handed to it, retention after a checkpoint, the drain wait
    at close and what it left (:attr:`pending_at_close`). One per :class:`~walship.log.Log`,
    whose methods call it on their own threads; without an archive every step is a no-op
    (a snapshot is refused)."""

    def __init__(self) -> None:
        self.service: ArchiveService | None = None
        """The archiver (``None`` without an archive, or before :meth:`start` returned)."""
        self.gate: AppendGate | None = None
        """The archiver's ``append_gate`` (backpressure, the fence), or ``None``."""
        self.pending_at_close: list[str] | None = None
        """What :meth:`drain` left pending (``None`` before it ran, or without an archive)."""

    def start(self, archiving: Archiving, log: Log) -> None:
        """``archiving.start(log)``, on the log's opening thread, once the log is open; what
        it raises goes on (the log closes again)."""
        self.service = archiving.start(log)
        self.gate = getattr(self.service, "append_gate", None)

    def store_snapshot(
        self, commit_seq: int, snapshot: object, position: Callable[[int], CheckpointPosition]
    ) -> object:
        """Store ``snapshot`` as the checkpoint at ``commit_seq``, at ``position(commit_seq)``
        (asked only once an archive is known to be there), on the calling thread; the
        checkpoint's manifest (see :meth:`walship.log.Log.checkpoint`).

        Raises:
            CheckpointError: no archive; ``position`` raised it; the snapshot was not stored
                (the archive's error chained).
        """
        service = self.service
        if service is None:
            raise CheckpointError(
                f"checkpoint {commit_seq} with a snapshot needs an archive: section to store the "
                "snapshot in (without a snapshot, a checkpoint only guides local retention)"
            )
        where = position(commit_seq)
        try:
            return service.store_checkpoint(snapshot, where)
        except (WalshipError, OSError, TypeError) as e:
            raise CheckpointError(
                f"checkpoint {commit_seq}: the snapshot was not stored in {service.url}: {e}"
            ) from e

    def apply_retention(self) -> None:
        """Apply retention once (a checkpoint moved), when the archive has any."""
        if self.service is not None and self.service.retention is not None:
            self.service.retention.apply()

    def drain(self, drain: float | None) -> None:
        """Wait up to ``drain`` seconds (``None``: ``archive.drain_on_close``) for the pending
        uploads, keep what is left in :attr:`pending_at_close`, and name it in one warning on
        ``walship.drain`` (none when the wait was 0); see :meth:`walship.log.Log.close`. On
        the closing thread; an interrupt in the wait goes on and loses nothing."""
        service = self.service
        if service is None:
            return
        timeout = service.drain_on_close if drain is None else drain
        left = service.drain(timeout)
        self.pending_at_close = left
        if left and timeout > 0:
            _drain_logger.warning(
                "walship close: %d segment(s) still pending upload to %s (waited up to %gs; "
                "%s): kept locally, they upload at the next open",
                len(left),
                service.url,
                timeout,
                ", ".join(left[:5]) + (f" and {len(left) - 5} more" if len(left) > 5 else ""),
            )

    def stats(self) -> ArchiveStats | None:
        """The archiver's stats, or ``None`` without an archive."""
        return self.service.stats() if self.service is not None else None

    def close(self, timeout: float) -> None:
        """Stop the archiver, waiting up to ``timeout`` seconds for in-flight uploads
        (:meth:`ArchiveService.close`). Idempotent."""
        if self.service is not None:
            self.service.close(timeout)


__all__ = [
    "AppendGate",
    "ArchiveService",
    "Archiving",
    "CheckpointPosition",
    "LogArchive",
    "PreparedArchive",
    "Retaining",
]
