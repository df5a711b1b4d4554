"""The Log: the facade users hold.

It wires a store, the segment engine and the plugins together, and owns the durability policy:

* ``always``: ``append`` returns once its frames are fdatasync'ed. Concurrent appenders share one
  write and one fdatasync (group commit): a thread that finds nobody writing becomes the leader,
  takes every request queued so far, writes them with one write and syncs once (one
  ``pwritev2(RWF_DSYNC)`` where the store can); the others block on their own lock until their
  request is durable. A leader stays on for what queued during its sync (a few batches), and on
  a slow disk waits briefly for the appenders it just woke (see :mod:`walship.core.commit`).
* ``interval``: ``append`` returns after the write; a background flusher syncs every
  ``sync_interval`` seconds; :meth:`Log.sync` forces one.
* ``none``: the OS decides; the log still syncs at rotation and at close.

A failed write or sync puts the log in a failed state (fail closed): every later call raises
:class:`~walship.errors.LogFailedError`, no commit_seq is handed out again, and ``durable_seq``
never covers bytes that did not reach the disk. Reopening recovers from what is on disk.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import threading
import weakref
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from typing import Any, NoReturn, Protocol, TypeVar

import pluggy

from walship.core import frame as framing
from walship.core.commit import ATTEMPTS, GroupCommit, Request
from walship.core.events import EventDispatcher
from walship.core.frame import MAX_COMMIT_SEQ, MAX_PAYLOAD, Frame, as_payloads, check_payload
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, segment_name
from walship.core.index import Index
from walship.core.record import ArchiveRecord, first_local_seq
from walship.core.repair import RecoveredLog, RecoveryReport, recover
from walship.core.rotation import Clock, RotationPolicy, RotationReason, SystemClock
from walship.core.segment import (
    ActiveSegment,
    BatchEncoder,
    Buffers,
    ClosedSegment,
    SegmentManager,
)
from walship.errors import (
    CheckpointError,
    CommitSeqLimitError,
    ConfigError,
    FramesUnavailableError,
    LogClosedError,
    LogFailedError,
    LogForkedError,
    TruncatedFrameError,
    WalshipError,
)
from walship.store import SegmentStore

logger = logging.getLogger("walship")
T = TypeVar("T")

_ACTIVE_READ_CHUNK = 4 * 1024 * 1024
"""The active segment is read (never mapped) this many bytes at a time (see :meth:`Log.read`)."""


def _describe(error: BaseException) -> str:
    """One line for a failure: an OSError's own text; anything else by its type too (a bare
    KeyboardInterrupt has no text)."""
    if isinstance(error, OSError):
        return str(error)
    text = str(error)
    return f"interrupted by {type(error).__name__}" + (f": {text}" if text else "")


class Durability(str, Enum):
    """When ``append`` returns (see the module docstring)."""

    ALWAYS = "always"
    INTERVAL = "interval"
    NONE = "none"


_open_logs: dict[int, weakref.ref[Log]] = {}
"""Every open log of this process, for the fork handler. Plain references, no callback: a
weakref callback runs at garbage collection, where an interrupt raised in it would be lost."""


def _after_fork_in_child() -> None:
    """In a forked child: every log of the parent is the parent's (see :class:`Log`)."""
    for ref in list(_open_logs.values()):
        log = ref()
        if log is not None:
            log._forked = True


def _register_open(log: Log) -> None:
    for key, ref in list(_open_logs.items()):  # logs dropped without close()
        if ref() is None:
            del _open_logs[key]
    _open_logs[id(log)] = weakref.ref(log)


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


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

    def stats(self) -> dict[str, Any]: ...

    def close(self, timeout: float = 30.0) -> None: ...

    @property
    def url(self) -> str: ...

    def requeue(self, retry_stalled: bool = True) -> int: ...

    def wait_for_progress(self, timeout: float) -> None: ...


class Archiving(Protocol):
    """The archive and retention of a log, built by the caller (``walship.open``: see
    :func:`walship.archive.archiver.build_archiving`) and handed to the :class:`Log`, which
    calls it on its opening thread: ``prepare_open`` holding the store's lock, before
    recovery; ``start`` once the log is open (wired through :meth:`Log.closed_segments`,
    :meth:`Log.segment_removed`, :meth:`Log.notify` and ``log.plugins``). What either raises
    fails the open (the log is closed again)."""

    def prepare_open(self, store: SegmentStore, repair: bool) -> PreparedArchive: ...

    def start(self, log: Log) -> ArchiveService: ...


class _Writer:
    """The :class:`~walship.core.commit.BatchWriter` of a :class:`Log` (its write path, run by
    the holder of the I/O turn; ``check_usable`` by any appender)."""

    __slots__ = ("_log", "check_usable", "refusal", "rotate_due", "write")

    def __init__(self, log: Log) -> None:
        self.check_usable = log._check_usable
        self.write = log._write_batch
        self.rotate_due = log._rotate_due
        self.refusal = log._refusal
        self._log = log

    def rotation_due(self) -> bool:
        return self._log._manager.should_rotate() is not None

    def written_seq(self) -> int:
        return self._log._written_seq


class Log:
    """A durable, segmented write-ahead log. Thread-safe.

    Use :func:`walship.open` rather than the constructor. Args as there.
    """

    _archiver: ArchiveService | None
    _events: EventDispatcher
    _stop: threading.Event
    _maintenance: threading.Thread

    def __init__(
        self,
        store: SegmentStore,
        *,
        plugins: pluggy.PluginManager,
        instance_id: int | None = None,
        durability: Durability | str = Durability.ALWAYS,
        sync_interval: float = 0.01,
        max_segment_bytes: int = 64 * 1024 * 1024,
        max_segment_age: float = 60.0,
        salvage: bool = False,
        repair: bool = False,
        seed_restarts: bool = False,
        clock: Clock | None = None,
        anchor: bytes | None = None,
        archiving: Archiving | None = None,
    ) -> None:
        """Lock ``store``, recover it and open it for appends; then start the archive.

        ``plugins`` (built by the caller, with the hookspecs) hears the log's events;
        ``archiving`` (built by the caller from the ``archive:`` and ``retention:`` sections)
        prepares the archive record before recovery and starts the archiver after.
        """
        self._configure(store, plugins, durability, sync_interval, clock)
        store.lock()
        self._lock_held = True
        recovered = None
        try:
            prepared = self._load_record(archiving, repair)
            if anchor is None:  # the record's last removed segment anchors the chain
                anchor = self._record.anchor_for(first_local_seq(store))
            recovered = recover(
                store,
                instance_id=instance_id,
                anchor=anchor,
                salvage=salvage,
                clock=self.clock,
                base=self._record.chain_base(),  # numbering goes on after the archive
                seed_restarts=seed_restarts,
            )
            self._report(recovered.report, prepared)
            self._resume(recovered, instance_id, RotationPolicy(max_segment_bytes, max_segment_age))
            self._events.emit("log_recovered", report=self.recovery)
            self._maintenance.start()
            _register_open(self)
        except BaseException:
            if recovered is not None and recovered.active is not None:
                recovered.active.file.close()
            self._stop.set()
            self._events.stop(timeout=1)
            self._lock_held = False
            store.unlock()
            raise
        if archiving is not None:
            try:
                self._archiver = archiving.start(self)
            except BaseException:
                self.close()
                raise

    def _configure(
        self,
        store: SegmentStore,
        plugins: pluggy.PluginManager,
        durability: Durability | str,
        sync_interval: float,
        clock: Clock | None,
    ) -> None:
        """The settings, the state of a log not yet open, and its (unstarted) threads."""
        self.store = store
        self.durability = Durability(durability)
        if sync_interval <= 0:
            raise ValueError(f"sync_interval must be positive, got {sync_interval}")
        self.sync_interval = sync_interval
        self.clock: Clock = clock or SystemClock()
        self._archiver = None
        # guards the index of segment ranges, which readers and retention use off the I/O turn
        self._index_lock = threading.Lock()
        self._commit = GroupCommit(_Writer(self))
        self._encoder = BatchEncoder()
        self._failed: BaseException | None = None
        self._closed = False
        self._counters: Counter[str] = Counter()
        self._lock_held = False
        self.plugins = plugins
        # its thread starts with the first event, after the lock: a refused open starts none
        self._events = EventDispatcher(plugins, self)
        self._pid = os.getpid()
        self._forked = False  # set in a forked child (see _after_fork_in_child)
        self._stop = threading.Event()
        self._maintenance = threading.Thread(
            target=self._maintain, name="walship-maintenance", daemon=True
        )

    def _load_record(self, archiving: Archiving | None, repair: bool) -> PreparedArchive | None:
        """The record of what is archived: rebuilt from the archive when lost; with
        ``repair``, archived segments damaged or missing locally put back first."""
        if archiving is not None:
            prepared = archiving.prepare_open(self.store, repair)
            self._record = prepared.record
            return prepared
        if repair:
            raise ConfigError("repair=True needs the log's archive: section to repair from")
        self._record = ArchiveRecord.load(self.store)
        return None

    def _report(self, report: RecoveryReport, prepared: PreparedArchive | None) -> None:
        self.recovery: RecoveryReport = report
        if prepared is not None:
            report.restored = prepared.restored
            report.record_rebuilt = prepared.record_rebuilt
        if report.repairs or report.salvaged or report.restored or report.record_rebuilt:
            logger.warning("walship recovery: %s", report.summary())

    def _resume(
        self, recovered: RecoveredLog, instance_id: int | None, policy: RotationPolicy
    ) -> None:
        """Take the recovered log up: the counters, the index, the active segment (made
        durable: recovery may have read it from the page cache) or a new one."""
        self.instance_id: int = (
            recovered.instance_id
            if recovered.instance_id is not None
            else instance_id
            if instance_id is not None
            else secrets.randbits(63)
        )
        self._manager = SegmentManager(
            self.store,
            self.instance_id,
            policy,
            self.clock,
            preallocate=self.durability is not Durability.NONE,
        )
        self._next_seq = recovered.next_commit_seq
        self._written_seq = self._next_seq - 1
        self._durable_seq = self._written_seq  # what recovery found is on disk
        ranges = recovered.segment_ranges
        # older segments of the log are gone from the store (retention removed them)
        trimmed = bool(ranges) and self._prev_hash_of(ranges[0][0]) != ZERO_HASH
        self._index = Index.of(ranges, trimmed)
        # stamps never go back, across restarts too: start from the newest one on disk
        self._manager.stamp.raise_floor(self._last_stamp_on_disk(recovered.active))
        if recovered.active is not None:
            self._manager.resume(recovered.active)
            # what recovery read may still be only in the page cache (the file's bytes, or
            # its directory entry): make it durable before durable_seq claims it
            self._manager.sync()
            self.store.sync_dir()
        else:
            self._open_segment(recovered.next_segment_seq, recovered.next_prev_hash)

    def _last_stamp_on_disk(self, active: ActiveSegment | None) -> int | None:
        """The newest timestamp in the local log: the last frame's (or header's) of its last
        segment; ``None`` when no segment is local."""
        if active is not None:
            last = active.last_timestamp_micros
            created = active.header.created_at_micros
            return created if last is None else max(last, created)
        if not self._index.ranges:
            return None
        name = segment_name(self._index.ranges[-1].segment_seq)  # sealed: rare, read it once
        data = self.store.read(name)
        stamp = SegmentHeader.decode(data[:HEADER_SIZE], name).created_at_micros
        for f in framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
            stamp = max(stamp, f.timestamp_micros)
        return stamp

    # --- the seam the archive is wired through --------------------------------------------

    def closed_segments(self) -> list[tuple[int, int | None, int | None]]:
        """(segment_seq, first, last commit_seq) of every local segment that has a successor,
        oldest first. Any thread (the archiver's, retention's).

        The last local segment is never closed: it is the active one, or the one whose successor
        a failed rotation never created (no ``segment_closed`` event was sent for it)."""
        return self._index.closed()

    def segment_removed(self, segment_seq: int) -> None:
        """Tell the log that a closed local segment was removed (by retention, once archived):
        ``read`` no longer looks for its frames and says they are gone. Any thread."""
        with self._index_lock:
            self._index = self._index.without(segment_seq)

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Deliver the event ``hook`` to the plugins: on the event thread, in order, after
        the events before it; never blocks, never raises a plugin's error (see
        :class:`~walship.core.events.EventDispatcher`). Any thread."""
        self._events.emit(hook, **kwargs)

    def _prev_hash_of(self, segment_seq: int) -> bytes:
        name = segment_name(segment_seq)
        return SegmentHeader.decode(self.store.read(name, 0, HEADER_SIZE), name).prev_segment_hash

    # --- archive and retention ----------------------------------------------------------

    @property
    def archiver(self) -> ArchiveService | None:
        """The archiver (``None`` without an ``archive`` section): ``flush()``, ``pending()``,
        ``stalled()``, ``stats()``."""
        return self._archiver

    @property
    def checkpoint_seq(self) -> int | None:
        """The checkpoint set with :meth:`checkpoint` (``None`` when never set)."""
        return self._record.checkpoint

    def checkpoint(self, commit_seq: int) -> None:
        """Declare every frame up to ``commit_seq`` no longer needed locally.

        Retention then removes only closed segments whose frames are all at or below it (and
        that are archived and verified). Durable on return (kept in the archive record); it may
        move backwards, but removed segments stay removed.

        Raises:
            CheckpointError: ``commit_seq`` is negative, not an integer, or above ``last_seq``.
            LogClosedError: the log is closed.
            LogFailedError: the record could not be written (the log is now failed: the
                record in memory and on disk may differ), or the log had failed.
            LogForkedError: called in a forked child.
        An interrupt (KeyboardInterrupt, ...) while the record is written fails the log too,
        and goes on.
        """
        self._check_process()
        self._check_usable()
        if type(commit_seq) is not int or commit_seq < 0:
            raise CheckpointError(f"checkpoint must be a commit_seq >= 0, got {commit_seq!r}")
        if commit_seq > self._written_seq:
            raise CheckpointError(
                f"checkpoint {commit_seq} is above the last commit_seq {self._written_seq}"
            )
        try:  # written whole or not at all (write_atomic); an interruption fails the log
            self._record.set_checkpoint(commit_seq)
        except BaseException as e:
            self._fail_and_raise(e)
        if self._archiver is not None and self._archiver.retention is not None:
            self._archiver.retention.apply()

    # --- properties ---------------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        """The highest commit_seq known to be durable (0 when none)."""
        return self._durable_seq

    @property
    def last_seq(self) -> int:
        """The highest commit_seq handed out and written (maybe not yet durable)."""
        return self._written_seq

    @property
    def failed(self) -> BaseException | None:
        """The error that failed the log, or ``None``."""
        return self._failed

    @property
    def closed(self) -> bool:
        return self._closed

    # --- appending ----------------------------------------------------------------------

    def append(self, payload: bytes | bytearray | memoryview, payload_type: int = 0) -> int:
        """Append one record and return its commit_seq.

        Under ``always`` durability the record is durable when this returns.

        Raises:
            FrameTooLargeError: the payload exceeds the 64 MiB frame limit (nothing written).
            ValueError: payload_type is not in 0..255.
            LogFailedError: a write or sync failed (now or earlier); reopen the log.
            LogClosedError: the log is closed.
        """
        return self._submit((payload,), payload_type)

    def _submit(self, payloads: Sequence[bytes | bytearray | memoryview], payload_type: int) -> int:
        """Check the payloads (in the caller's thread: one bad payload fails alone), then hand
        the request to the group commit (:meth:`GroupCommit.submit`: its interrupt rules)."""
        if self._forked:  # before the group commit's mutex: the parent may have held it
            raise self._forked_error()
        payloads = as_payloads(payloads)
        if len(payloads) == 1:
            nbytes = len(payloads[0])
            check_payload(nbytes, payload_type)
        else:
            nbytes = sum(map(len, payloads))
            check_payload(max(map(len, payloads)) if nbytes > MAX_PAYLOAD else 0, payload_type)
        return self._commit.submit(Request(payloads, payload_type, nbytes))

    def _write_batch(self, batch: list[Request], begin_io: Callable[[], None]) -> bool:
        """Leader (holds the I/O turn): number and encode every request in one pass, call
        ``begin_io``, one write, one sync under ``always``; returns whether it synced.

        Raises:
            LogFailedError / LogClosedError / CommitSeqLimitError: nothing written.
            BaseException: whatever interrupted the write (the log is failed then, see
                :meth:`_commit_locked`).
        """
        refusal = self._refusal()  # (failed before closed, as _settle_locked says it)
        if refusal is not None:
            raise refusal
        first = self._next_seq
        frames = 0
        nbytes = 0
        for r in batch:
            frames += len(r.payloads)
            nbytes += r.nbytes
        if first + frames - 1 > MAX_COMMIT_SEQ:
            raise self._seq_limit_error(first, frames)
        ts = self._manager.stamp()  # never before the previous frame's, whatever the clock
        data = self._encoder.encode(batch, first, ts, nbytes, frames)
        sync = self.durability is Durability.ALWAYS
        begin_io()
        try:
            self._commit_locked(data, frames, first, first + frames - 1, ts, sync)
        finally:
            self._encoder.release(data)
        counters = self._counters
        counters["batches"] += 1
        counters["frames"] += frames
        counters["bytes"] += nbytes + frames * framing.FRAME_OVERHEAD
        if sync:
            counters["syncs"] += 1
        return sync

    def _commit_locked(
        self, data: Buffers, frames: int, first: int, last: int, ts: int, sync: bool
    ) -> None:
        """Write (and sync) one encoded batch and advance the counters: both, or the log fails.

        The unit of work that touches the file. Whatever interrupts it (an OSError, a
        KeyboardInterrupt, a bug's exception) fails the log, with the batch marked to be cut
        (it was never acknowledged) and the counters where they were: no commit_seq is handed
        out again and no durability claimed for it.

        Raises:
            LogFailedError: the write or sync failed (OSError).
            BaseException: any other exception that interrupted it, as it was.
        """
        written, durable = self._written_seq, self._durable_seq
        active = self._manager.active
        size = active.size if active is not None else 0
        try:
            self._manager.append(data, frames, first, last, ts, sync)
            self._next_seq = last + 1
            self._written_seq = last
            if sync:
                self._durable_seq = last
        except BaseException as e:
            self._next_seq, self._written_seq, self._durable_seq = first, written, durable
            self._manager.abandon(size)
            self._fail_and_raise(e)

    def _refusal(self) -> BaseException | None:
        if self._failed is not None:
            return self._failed_error()
        return self._closed_error() if self._closed else None

    def _rotate_due(self) -> None:
        reason = self._manager.should_rotate()
        if reason is not None:
            with contextlib.suppress(LogFailedError):  # the batch is durable; the log is failed
                self._rotate_locked(reason)

    def append_batch(
        self, payloads: Iterable[bytes | bytearray | memoryview], payload_type: int = 0
    ) -> list[int]:
        """Append records with one write (and one sync under ``always``); return their
        commit_seqs, consecutive and in order. A batch never spans two segments.

        Raises: as :meth:`append`; a bad payload fails the whole batch before anything is written.
        """
        items = payloads if isinstance(payloads, (list, tuple)) else list(payloads)
        if not items:
            return []
        first = self._submit(items, payload_type)
        return list(range(first, first + len(items)))

    # --- sync, rotation -----------------------------------------------------------------

    def _exclusive(self, call: Callable[[], T]) -> T:
        """Run ``call`` holding the I/O turn alone (:meth:`GroupCommit.exclusive`).

        Raises:
            LogFailedError / LogClosedError: the log had failed or is closed.
            LogForkedError: called in a forked child.
        """
        self._check_process()
        return self._commit.exclusive(lambda: self._usable_then(call))

    def _usable_then(self, call: Callable[[], T]) -> T:
        self._check_usable()
        return call()

    def sync(self) -> int:
        """Make everything appended so far durable; return ``durable_seq``.

        Raises:
            LogFailedError: the sync failed (the log is now failed).
        """
        self._exclusive(self._sync_locked)
        return self._durable_seq

    def _sync_locked(self) -> None:
        written = self._written_seq
        if written == self._durable_seq:
            return
        try:
            self._manager.sync()
            self._durable_seq = written
        except BaseException as e:
            self._fail_and_raise(e)
        self._counters["syncs"] += 1

    def rotate(self) -> ClosedSegment | None:
        """Close the active segment now (reason ``forced``) and open the next one.

        Returns the closed segment's record; or ``None`` when the active segment holds no frame
        yet: then nothing happens (no segment is sealed or opened, no event is emitted), since
        an empty segment is not worth sealing, announcing and archiving.

        Raises:
            LogFailedError: an I/O failure (the log is now failed), or the log had failed.
            LogClosedError: the log is closed.
        """
        return self._exclusive(self._forced_rotation_locked)

    def _forced_rotation_locked(self) -> ClosedSegment | None:
        active = self._manager.active
        if active is not None and active.frame_count == 0:
            return None
        self._manager.force_rotate()
        return self._rotate_locked(RotationReason.FORCED)

    def _rotate_locked(self, reason: RotationReason) -> ClosedSegment:
        written = self._written_seq
        # readers see the closing segment's range before the active one moves
        with self._index_lock:
            closing = self._manager.active
            if closing is not None:
                self._index = self._index.sealed(closing.first_commit_seq, closing.last_commit_seq)
        try:  # all of it, or the log fails: never left without an active segment
            closed = self._manager.rotate(reason)
            active = self._manager.active
            assert active is not None
            with self._index_lock:
                self._index = self._index.opened(active.segment_seq)
            self._durable_seq = written  # rotate synced the closed segment
            # "closed" only now: its successor exists, so the segment will never be written again
            self._events.emit("segment_closed", segment=closed, reason=reason.value)
            self._events.emit(
                "segment_opened",
                name=active.name,
                segment_seq=active.segment_seq,
                prev_segment_hash=active.header.prev_segment_hash,
            )
        except BaseException as e:
            self._fail_and_raise(e)
        self._counters[f"rotations_{reason.value}"] += 1
        return closed

    def _due_rotation_locked(self) -> None:
        reason = self._manager.should_rotate()
        if reason is not None:
            self._rotate_locked(reason)

    def _open_segment(self, segment_seq: int, prev_hash: bytes | None) -> None:
        active = self._manager.open_new(segment_seq, prev_hash)
        self._index = self._index.opened(segment_seq)
        self._events.emit(
            "segment_opened",
            name=active.name,
            segment_seq=segment_seq,
            prev_segment_hash=active.header.prev_segment_hash,
        )

    def _maintain(self) -> None:
        """Background: the interval flusher and age rotation of an idle log."""
        age_period = min(1.0, max(0.005, self._manager.policy.max_segment_age / 10))
        period = (
            min(self.sync_interval, age_period)
            if self.durability is Durability.INTERVAL
            else age_period
        )
        while not self._stop.wait(period):
            if self._failed is not None or self._closed:
                return
            try:
                if (
                    self.durability is Durability.INTERVAL
                    and self._written_seq != self._durable_seq
                ):
                    self.sync()
                if self._manager.should_rotate() is RotationReason.AGE:
                    self._exclusive(self._due_rotation_locked)
            except WalshipError:
                return  # failed or closed: appenders see it on their next call
            except Exception:
                logger.exception("walship maintenance thread failed")
                return

    # --- failure ------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> LogFailedError:
        """Put the log in its failed state (the first failure wins), cut what must not come back
        (see :meth:`SegmentManager.discard_unsynced`), return the error to raise."""
        if self._failed is None:
            self._failed = error
            self._counters["failures"] += 1
            logger.error("walship log failed: %s; reopen it to recover", _describe(error))
            try:  # keep only what is durable and acknowledged (see discard_unsynced)
                cut = self._manager.discard_unsynced()
                if cut:
                    logger.error("walship cut %d bytes after the failure", cut)
            except Exception as e:
                logger.error("walship could not cut the unsynced bytes: %s", e)
        return self._failed_error()

    def _fail_and_raise(self, error: BaseException) -> NoReturn:
        """Fail the log for ``error`` and raise: :class:`LogFailedError` for an I/O error (or
        the log's own error), ``error`` itself for anything else (an interrupt goes on as it
        is, in the thread it interrupted)."""
        failed = self._fail(error)
        if isinstance(error, (OSError, WalshipError)):
            raise failed from error
        raise error

    def _failed_error(self) -> LogFailedError:
        assert self._failed is not None
        err = LogFailedError(
            f"the log at {self.store.location} failed ({_describe(self._failed)}); "
            f"durable up to commit_seq {self._durable_seq}; reopen it to recover"
        )
        err.__cause__ = self._failed
        return err

    def _closed_error(self) -> LogClosedError:
        return LogClosedError(f"the log at {self.store.location} is closed")

    def _forked_error(self) -> LogForkedError:
        return LogForkedError(
            f"the log at {self.store.location} belongs to process {self._pid}, which opened "
            f"it; this is process {os.getpid()}, a fork of it: open the log in this process "
            "instead (after the other one closed it)"
        )

    def _seq_limit_error(self, first: int, frames: int) -> CommitSeqLimitError:
        return CommitSeqLimitError(
            f"the log at {self.store.location} cannot take {frames} more frame(s): commit_seq "
            f"{first + frames - 1} would exceed the format's limit 2**64-1 ({MAX_COMMIT_SEQ}); "
            "nothing was written"
        )

    def _check_process(self) -> None:
        """Raise :class:`LogForkedError` in a process other than the one that opened the log."""
        if self._forked or os.getpid() != self._pid:
            self._forked = True
            raise self._forked_error()

    def _check_usable(self) -> None:
        if self._closed:
            raise self._closed_error()
        if self._failed is not None:
            raise self._failed_error()

    # --- reading ------------------------------------------------------------------------

    def read(self, from_seq: int | None = None, to_seq: int | None = None) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order; ``from_seq``
        defaults to the first local frame (:attr:`first_seq`).

        Works while other threads append: it sees what was written when it reaches the active
        segment (written to the OS, maybe not yet durable). Closed segments are mapped (a store
        may); the active one is read in chunks, never mapped: a log that fails cuts its
        unsynced bytes, and a cut under a mapping would kill a reader with SIGBUS (or show it
        zeros where frames were).

        Raises:
            FramesUnavailableError: frames from ``from_seq`` on are no longer local (retention
                removed their segments, before or during this read); a gap is never skipped.
            LogFailedError: the log failed while this read was in its active segment, and cut
                the bytes this read had still to reach.
            LogForkedError: called in a forked child.
        """
        self._check_process()
        with self._index_lock:
            self._check_usable()
            index = self._index  # immutable: this read's picture, whatever happens meanwhile
            lowest = self._first_seq_locked()
        ranges, trimmed = index.ranges, index.trimmed
        if from_seq is None:
            from_seq = lowest
        elif from_seq < lowest and trimmed:
            raise self._unavailable(from_seq, lowest)
        for i, r in enumerate(ranges):
            is_last = i == len(ranges) - 1  # maybe active: its last_commit_seq is not kept current
            if not is_last and r.last_commit_seq is not None and r.last_commit_seq < from_seq:
                continue
            if (
                to_seq is not None
                and r.first_commit_seq is not None
                and r.first_commit_seq > to_seq
            ):
                return
            name = segment_name(r.segment_seq)
            limit = None
            if is_last:
                with self._index_lock:
                    active = self._manager.active
                    if active is not None and active.segment_seq == r.segment_seq:
                        limit = active.size
            frames: Iterator[Frame]
            try:
                if limit is not None:
                    frames = self._read_active(name, limit)
                else:
                    data = self.store.map(name)  # one mapped (or read) view per closed segment
                    frames = framing.decode_all(data[HEADER_SIZE:], HEADER_SIZE)
            except FileNotFoundError:
                raise self._unavailable(max(from_seq, r.first_commit_seq or from_seq)) from None
            for f in frames:
                if f.commit_seq < from_seq:
                    continue
                if to_seq is not None and f.commit_seq > to_seq:
                    return
                yield f

    def _read_active(self, name: str, limit: int) -> Iterator[Frame]:
        """The frames of the active segment ``name`` up to ``limit`` bytes, read (not mapped)
        :data:`_ACTIVE_READ_CHUNK` bytes at a time (a frame larger than that in one read).

        Raises:
            LogFailedError: the file ends before ``limit``: the log failed and cut it.
            TruncatedFrameError / CorruptFrameError: damage (never on a healthy log).
        """
        pos = HEADER_SIZE
        want = _ACTIVE_READ_CHUNK
        while pos < limit:
            n = min(want, limit - pos)
            data = self.store.read(name, pos, n)
            if len(data) < n and self._failed is not None:
                raise self._failed_error()  # cut under us: the rest is gone
            try:
                yield from framing.decode_all(data, pos)
            except TruncatedFrameError as e:
                if len(data) < n:
                    raise
                start = e.offset - pos  # a frame goes on past this chunk: read it whole next
                need = framing.LENGTH_SIZE
                if len(data) - start >= framing.LENGTH_SIZE:
                    need += framing.CRC.unpack_from(data, start)[0]
                pos, want = e.offset, max(_ACTIVE_READ_CHUNK, need)
                continue
            pos += len(data)
            want = _ACTIVE_READ_CHUNK

    @property
    def first_seq(self) -> int:
        """The lowest commit_seq ``read`` can return: the first local frame (segments before it
        were removed by retention), or the next commit_seq when no frame is local."""
        with self._index_lock:
            return self._first_seq_locked()

    def _first_seq_locked(self) -> int:
        first = self._index.first_commit_seq()
        if first is not None:
            return first
        active = self._manager.active
        if active is not None and active.first_commit_seq is not None:
            return active.first_commit_seq
        return self._next_seq

    def _unavailable(self, from_seq: int, lowest: int | None = None) -> FramesUnavailableError:
        where = f" (the first local frame is {lowest})" if lowest is not None else ""
        return FramesUnavailableError(
            f"frames from commit_seq {from_seq} are not in the local log at "
            f"{self.store.location}{where}: their segments were removed (by retention, after "
            "archiving); read them from the archive with walship.open_archive(url)"
        )

    # --- stats, close -------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        """Counters: frames, bytes, batches, syncs, rotations by reason, plugin errors, ..."""
        self._check_process()
        active = self._manager.active
        out: dict[str, Any] = dict(self._counters)
        out.update(
            last_seq=self._written_seq,
            durable_seq=self._durable_seq,
            active_segment=active.name if active else None,
            segments=len(self._index.ranges),
            plugin_errors=dict(self._events.errors),
            failed=_describe(self._failed) if self._failed else None,
        )
        if self._archiver is not None:
            out["archive"] = self._archiver.stats()
        return out

    def close(self) -> None:
        """Sync and close the active segment, stop the background threads, release the lock.

        Idempotent. Under a failed log nothing is synced (the log's state is unknown), every
        resource is released all the same, and the failure is raised: a failure in the
        background (a rotation after an append returned, the interval flusher) never goes
        unnoticed, and a ``close()`` that returns means everything appended is durable.

        May be called from any thread, a plugin's hook too (on the event thread): the thread
        it is called on is never joined. An interrupt (KeyboardInterrupt, ...) during the final
        sync fails the log and goes on; the threads and the lock are released all the same.

        Raises:
            LogFailedError: the log failed, now or earlier.
            LogForkedError: this is a forked child of the process that opened the log: nothing
                is touched (not the files, not the lock, which the child shares with its
                parent; the background threads do not exist here).
        """
        self._check_process()
        if self._closed:
            return
        self._stop.set()
        if (
            self._maintenance.ident is not None
            and self._maintenance is not threading.current_thread()
        ):
            self._maintenance.join()
        try:
            self._commit.exclusive(self._close_locked, finish=self._mark_closed)
        finally:
            if self._closed:  # (interrupted while waiting for the turn: nothing done, still open)
                error: BaseException | None = None
                for _ in ATTEMPTS:  # an interrupt here is retried (idempotent)
                    try:
                        self._release_resources()
                        break
                    except BaseException as e:
                        error = error or e
                if error is not None:
                    raise error
        if self._failed is not None:
            raise self._failed_error()

    def _close_locked(self) -> None:
        """Holding the I/O turn: sync and close the active segment (a failed log's is closed
        unsynced)."""
        active = self._manager.active
        if self._closed or active is None:  # closed meanwhile: queued appenders hear it
            return
        if self._failed is not None:
            active.file.close()
            return
        written = self._written_seq
        try:
            self._manager.close()
            self._durable_seq = written
        except BaseException as e:
            active.file.close()  # still active when its sync failed
            self._fail_and_raise(e)

    def _mark_closed(self) -> None:
        self._closed = True  # (before the turn goes on: queued appenders hear "closed")

    def _release_resources(self) -> None:
        """Stop the archiver and the event thread, release the lock. Idempotent."""
        _open_logs.pop(id(self), None)
        if self._archiver is not None:
            self._archiver.close()
        self._events.stop()
        if self._lock_held:
            self.store.close()
            self._lock_held = False

    def __enter__(self) -> Log:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # an error is on its way out already: release everything, add nothing
            with contextlib.suppress(LogFailedError, LogForkedError):
                self.close()

    def __repr__(self) -> str:
        return f"Log({self.store!r}, last_seq={self._written_seq}, durable={self._durable_seq})"
