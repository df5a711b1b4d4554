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
import itertools
import logging
import os
import secrets
import weakref
from collections.abc import Callable, Iterable, Iterator, Sequence
from enum import Enum
from typing import Any, Literal, NoReturn, TypeVar, overload

import pluggy

from walship.archiving import (
    AppendGate,
    ArchiveService,
    Archiving,
    CheckpointPosition,
    LogArchive,
    PreparedArchive,
    Retaining,
)
from walship.core.commit import ATTEMPTS, GroupCommit, Request, Sink
from walship.core.events import EventDispatcher
from walship.core.frame import Frame, FrameView, measure_payloads
from walship.core.maintenance import Maintenance
from walship.core.reading import LogReader
from walship.core.record import ArchiveRecord, first_local_seq
from walship.core.repair import RecoveredLog, RecoveryReport, recover
from walship.core.resume import resume
from walship.core.rotation import Clock, RotationPolicy, SystemClock
from walship.core.segment import ClosedSegment
from walship.core.state import LogState
from walship.core.writer import LogWriter
from walship.errors import (
    CheckpointError,
    ConfigError,
    LogClosedError,
    LogFailedError,
    LogForkedError,
    WalshipError,
)
from walship.stats import LogStats
from walship.store import SegmentStore

logger = logging.getLogger("walship")
T = TypeVar("T")


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


class Log:
    """A durable, segmented write-ahead log. Thread-safe.

    Use :func:`walship.open` rather than the constructor. Args as there.
    """

    _archive: LogArchive
    _gate: AppendGate | None
    _events: EventDispatcher
    _maintenance: Maintenance | None
    _state: LogState
    _writer: LogWriter
    _reader: LogReader
    _commit: GroupCommit

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
            self._maintenance = self._new_maintenance()
            self._maintenance.start()
            _register_open(self)
        except BaseException:
            if recovered is not None and recovered.active is not None:
                recovered.active.file.close()
            if self._maintenance is not None:
                self._maintenance.stop(wait=False)
            self._events.stop(timeout=1)
            self._lock_held = False
            store.unlock()
            raise
        if archiving is not None:
            try:
                self._archive.start(archiving, self)
                self._gate = self._archive.gate  # (read by every append: kept at hand)
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
        """The settings and the state of a log not yet open (no thread started)."""
        self.store = store
        self.durability = Durability(durability)
        if sync_interval <= 0:
            raise ValueError(f"sync_interval must be positive, got {sync_interval}")
        self.sync_interval = sync_interval
        self.clock: Clock = clock or SystemClock()
        self._archive = LogArchive()
        self._gate = None  # archive.max_pending (None: off, the usual case)
        self._lock_held = False
        self.plugins = plugins
        # its thread starts with the first event, after the lock: a refused open starts none
        self._events = EventDispatcher(plugins, self)
        self._pid = os.getpid()
        self._forked = False  # set in a forked child (see _after_fork_in_child)
        self._maintenance = None  # (built once the log is open)

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
        """Take the recovered log up (:func:`walship.core.resume.resume`: the counters, the
        index, the active segment), wire its write path, its reads and its group commit, and
        open a new active segment when recovery left none."""
        self.instance_id: int = (
            recovered.instance_id
            if recovered.instance_id is not None
            else instance_id
            if instance_id is not None
            else secrets.randbits(63)
        )
        preallocate = self.durability is not Durability.NONE
        state = resume(
            self.store, recovered, self.instance_id, policy, self.clock, preallocate=preallocate
        )
        self._state = state
        self._writer = LogWriter(
            state,
            self.store,
            self._events,
            sync=self.durability is Durability.ALWAYS,
            check_usable=self._check_usable,
            refusal=self._refusal,
            fail=self._fail_and_raise,
        )
        self._reader = LogReader(
            state,
            self.store,
            self._record,
            check_process=self._check_process,
            check_usable=self._check_usable,
            failed_error=self._failed_error,
        )
        self._commit = GroupCommit(self._writer)
        if recovered.active is None:
            self._writer.open_segment(recovered.next_segment_seq, recovered.next_prev_hash)

    # --- the seam the archive is wired through --------------------------------------------

    def closed_segments(self) -> list[tuple[int, int | None, int | None]]:
        """(segment_seq, first, last commit_seq) of every local segment that has a successor,
        oldest first. Any thread (the archiver's, retention's).

        The last local segment is never closed: it is the active one, or the one whose successor
        a failed rotation never created (no ``segment_closed`` event was sent for it)."""
        return self._state.index.closed()

    def segment_removed(self, segment_seq: int) -> None:
        """Tell the log that a closed local segment was removed (by retention, once archived):
        ``read`` no longer looks for its frames and says they are gone. Any thread."""
        state = self._state
        with state.index_lock:
            state.index = state.index.without(segment_seq)

    def notify(self, hook: str, **kwargs: Any) -> None:
        """Deliver the event ``hook`` to the plugins: on the event thread, in order, after
        the events before it; never blocks, never raises a plugin's error (see
        :class:`~walship.core.events.EventDispatcher`). Any thread."""
        self._events.emit(hook, **kwargs)

    # --- archive and retention ----------------------------------------------------------

    @property
    def archiver(self) -> ArchiveService | None:
        """The archiver (``None`` without an ``archive`` section): ``flush()``, ``pending()``,
        ``stalled()``, ``stats()``."""
        return self._archive.service

    @property
    def checkpoint_seq(self) -> int | None:
        """The checkpoint set with :meth:`checkpoint` (``None`` when never set)."""
        return self._record.checkpoint

    def checkpoint(self, commit_seq: int, snapshot: object = None) -> object:
        """Declare every frame up to ``commit_seq`` no longer needed locally, and, with
        ``snapshot``, store the application's snapshot of its state up to ``commit_seq`` in
        the archive.

        Retention then removes only closed segments whose frames are all at or below it (and
        that are archived and verified). Durable on return (kept in the archive record); it may
        move backwards, but removed segments stay removed.

        ``snapshot`` (bytes, a path or a binary file object; needs the ``archive:`` section):
        the call uploads it on the calling thread and returns once it is durable in the archive
        with its manifest (a :class:`walship.archive.checkpoint_manifest.CheckpointManifest`,
        which is returned); appends go on meanwhile (the upload holds no lock of theirs). Only
        then is the local checkpoint moved. Without ``snapshot`` it returns ``None``.

        Raises:
            CheckpointError: ``commit_seq`` is negative, not an integer, or above ``last_seq``;
                a snapshot without an archive; frames after ``commit_seq`` are no longer local
                (their position in the log is unknown); the snapshot could not be stored (the
                cause chained: the local checkpoint is then not moved).
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
        if commit_seq > self._state.written_seq:
            raise CheckpointError(
                f"checkpoint {commit_seq} is above the last commit_seq {self._state.written_seq}"
            )
        stored = None
        if snapshot is not None:
            stored = self._archive.store_snapshot(commit_seq, snapshot, self._checkpoint_position)
        try:  # written whole or not at all (write_atomic); an interruption fails the log
            self._record.set_checkpoint(commit_seq)
        except BaseException as e:
            self._fail_and_raise(e)
        self._archive.apply_retention()
        return stored

    def _checkpoint_position(self, commit_seq: int) -> CheckpointPosition:
        """Where the log goes on after checkpoint ``commit_seq``
        (:meth:`~walship.core.reading.LogReader.checkpoint_position`)."""
        return self._reader.checkpoint_position(commit_seq, self.instance_id)

    # --- properties ---------------------------------------------------------------------

    @property
    def durable_seq(self) -> int:
        """The highest commit_seq known to be durable (0 when none)."""
        return self._state.durable_seq

    def durable_position(self) -> tuple[int, int] | None:
        """The active segment's seq and the end of its durable bytes (a frame boundary: every
        byte before it is synced, and stays in the file whatever happens to the log), or
        ``None`` when no segment is active (a closed log). Any thread; takes the index lock
        for an instant, never the I/O turn, so it never waits for an append (live shipping,
        :mod:`walship.archive.shipper`, asks it every interval)."""
        with self._state.index_lock:
            active = self._state.manager.active
            if active is None:
                return None
            return active.segment_seq, active.synced_size

    @property
    def last_seq(self) -> int:
        """The highest commit_seq handed out and written (maybe not yet durable)."""
        return self._state.written_seq

    @property
    def failed(self) -> BaseException | None:
        """The error that failed the log, or ``None``."""
        return self._state.failed

    @property
    def closed(self) -> bool:
        return self._state.closed

    # --- appending ----------------------------------------------------------------------

    def append(self, payload: bytes | bytearray | memoryview, payload_type: int = 0) -> int:
        """Append one record and return its commit_seq.

        Under ``always`` durability the record is durable when this returns.

        Raises:
            FrameTooLargeError: the payload exceeds the 64 MiB frame limit (nothing written).
            ValueError: payload_type is not in 0..255.
            LogFailedError: a write or sync failed (now or earlier); reopen the log.
            LogClosedError: the log is closed.
            ArchiveBackpressureError: ``archive.max_pending`` is set and more bytes than that
                waited for upload for ``archive.backpressure_timeout``: nothing written, the
                log goes on (the next append succeeds once the archive catches up).
            ArchiveFencedError: another writer took the archive over (``walship promote``):
                nothing written; this log's frames stay local (see the README's Promotion).
        """
        return self._submit((payload,), payload_type)

    def _submit(self, payloads: Sequence[bytes | bytearray | memoryview], payload_type: int) -> int:
        """Check the payloads (in the caller's thread: one bad payload fails alone), then hand
        the request to the group commit (:meth:`GroupCommit.submit`: its interrupt rules)."""
        if self._forked:  # before the group commit's mutex: the parent may have held it
            raise self._forked_error()
        gate = self._gate
        if gate is not None and gate.blocked and self._refusal() is None:
            gate.wait()  # the archive is too far behind: wait first
        return self._commit.submit(_request(payloads, payload_type))

    def submit_detached(
        self,
        payloads: Sequence[bytes | bytearray | memoryview],
        payload_type: int,
        sink: Sink,
        waiter: object,
    ) -> Request:
        """Queue an append of ``payloads`` whose outcome goes to ``sink`` (with ``waiter``,
        which the sink resolves), and return its request at once: the path of the asyncio API
        (:mod:`walship.aio`). The payloads are checked here, on the caller's thread; the
        request joins the group commit of the threads (see
        :meth:`~walship.core.commit.GroupCommit.submit_detached`). Any thread; it never does
        I/O and never waits for the I/O turn.

        Raises: as :meth:`append`, before anything is queued.
        """
        if self._forked:  # before the group commit's mutex: the parent may have held it
            raise self._forked_error()
        req = _request(payloads, payload_type)
        req.sink = sink
        req.waiter = waiter
        self._commit.submit_detached(req)
        return req

    def withdraw(self, request: Request) -> bool:
        """Take a request of :meth:`submit_detached` back if no leader took it yet: ``True``,
        it is never written; ``False``, it is written (or fails with the log) and its sink
        hears of it. Any thread."""
        return self._commit.withdraw(request)

    def _refusal(self) -> BaseException | None:
        if self._state.failed is not None:
            return self._failed_error()
        return self._closed_error() if self._state.closed else None

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
        self._exclusive(self._writer.sync_locked)
        return self._state.durable_seq

    def rotate(self) -> ClosedSegment | None:
        """Close the active segment now (reason ``forced``) and open the next one.

        Returns the closed segment's record; or ``None`` when the active segment holds no frame
        yet: then nothing happens (no segment is sealed or opened, no event is emitted), since
        an empty segment is not worth sealing, announcing and archiving.

        Raises:
            LogFailedError: an I/O failure (the log is now failed), or the log had failed.
            LogClosedError: the log is closed.
        """
        return self._exclusive(self._writer.forced_rotation_locked)

    def _rotate_due(self) -> None:
        """Rotate the active segment if it is due by age (the maintenance thread's call)."""
        self._exclusive(self._writer.due_rotation_locked)

    def _new_maintenance(self) -> Maintenance:
        """The interval flusher and age rotation of this log, not started."""
        interval = self.sync_interval if self.durability is Durability.INTERVAL else None
        return Maintenance(self._state, interval, self.sync, self._rotate_due)

    # --- failure ------------------------------------------------------------------------

    def _fail(self, error: BaseException) -> LogFailedError:
        """Put the log in its failed state (the first failure wins), cut what must not come back
        (see :meth:`SegmentManager.discard_unsynced`), return the error to raise."""
        if self._state.failed is None:
            self._state.failed = error
            self._state.wake_followers()
            self._state.counters["failures"] += 1
            logger.error("walship log failed: %s; reopen it to recover", _describe(error))
            try:  # keep only what is durable and acknowledged (see discard_unsynced)
                cut = self._state.manager.discard_unsynced()
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
        assert self._state.failed is not None
        err = LogFailedError(
            f"the log at {self.store.location} failed ({_describe(self._state.failed)}); "
            f"durable up to commit_seq {self._state.durable_seq}; reopen it to recover"
        )
        err.__cause__ = self._state.failed
        return err

    def _closed_error(self) -> LogClosedError:
        return LogClosedError(f"the log at {self.store.location} is closed")

    def _forked_error(self) -> LogForkedError:
        return LogForkedError(
            f"the log at {self.store.location} belongs to process {self._pid}, which opened "
            f"it; this is process {os.getpid()}, a fork of it: open the log in this process "
            "instead (after the other one closed it)"
        )

    def _check_process(self) -> None:
        """Raise :class:`LogForkedError` in a process other than the one that opened the log."""
        if self._forked or os.getpid() != self._pid:
            self._forked = True
            raise self._forked_error()

    def _check_usable(self) -> None:
        if self._state.closed:
            raise self._closed_error()
        if self._state.failed is not None:
            raise self._failed_error()

    # --- reading ------------------------------------------------------------------------

    def read(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        follow: bool = False,
        timeout: float | None = None,
    ) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order; ``from_seq``
        defaults to the first local frame (:attr:`first_seq`).

        With ``follow=True`` (see :meth:`walship.core.reading.LogReader.follow`): the frames
        there are, then each new one once it is durable, until ``to_seq``, ``timeout`` seconds
        without a new frame, or close.

        Works while other threads append: it sees what was written when it reaches the active
        segment (written to the OS, maybe not yet durable). Closed segments are mapped (a store
        may); the active one is read in chunks, never mapped: a log that fails cuts its
        unsynced bytes, and a cut under a mapping would kill a reader with SIGBUS (or show it
        zeros where frames were). The frames come from :meth:`read_batches` (nothing happens,
        and nothing is raised, before the first is asked for).

        Raises:
            FramesUnavailableError: frames from ``from_seq`` on are no longer local (retention
                removed their segments, before or during this read); a gap is never skipped.
            LogFailedError: the log failed while this read was in its active segment, and cut
                the bytes this read had still to reach.
            LogForkedError: called in a forked child.
        """
        if follow:
            return self._reader.follow(from_seq, to_seq, timeout)
        return itertools.chain.from_iterable(self.read_batches(from_seq, to_seq))

    @overload
    def read_batches(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        max_frames: int = ...,
        views: Literal[False] = False,
    ) -> Iterator[list[Frame]]: ...
    @overload
    def read_batches(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        max_frames: int = ...,
        views: Literal[True],
    ) -> Iterator[list[FrameView]]: ...
    def read_batches(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        max_frames: int = 4096,
        views: bool = False,
    ) -> Iterator[list[Frame]] | Iterator[list[FrameView]]:
        """The frames of :meth:`read`, in order, as lists of at most ``max_frames`` (never
        empty; a list may be shorter, e.g. at a segment's end): one Python call per batch
        instead of one per frame, for consumers that replay in bulk. Any thread; the same
        picture, errors and laziness as :meth:`read`.

        ``views=True``: :class:`~walship.core.frame.FrameView` frames, whose payload is a
        read-only memoryview of the segment's bytes, not a copy. Lifetime: a view keeps the
        memory it points into alive (the mapping of a whole closed segment, or a chunk of up
        to 4 MiB read from the active one) until it is released or collected, so keep views
        briefly (``bytes(view)`` copies one out). Its bytes stay as read: walship never changes
        or truncates a closed segment while the log is open (retention unlinks the file, which
        leaves a mapping intact); a closed segment truncated by something outside walship
        makes touching a view of it fail with SIGBUS, as any mapped file does. The default
        (bytes payloads) holds nothing.

        Raises:
            ValueError: ``max_frames`` is below 1.
            FramesUnavailableError / LogFailedError / LogForkedError: as :meth:`read`.
        """
        if type(max_frames) is not int or max_frames < 1:
            raise ValueError(f"max_frames must be an integer of at least 1, got {max_frames!r}")
        return self._reader.batches(from_seq, to_seq, max_frames, views)

    @property
    def first_seq(self) -> int:
        """The lowest commit_seq ``read`` can return: the first local frame (segments before it
        were removed by retention), or the next commit_seq when no frame is local. A log restored
        from a checkpoint starts just after it (the frames up to it are in its snapshot)."""
        return self._reader.first_seq()

    # --- stats, close -------------------------------------------------------------------

    def stats(self) -> LogStats:
        """The log's counters since it opened, its position and its state: a
        :class:`~walship.stats.LogStats` (every key always present, each documented there:
        frames, batches, bytes, syncs, rotations by reason, plugin errors, the latency
        histograms of commits and syncs, the archiver's stats). Any thread.

        Raises:
            LogForkedError: called in a forked child.
        """
        self._check_process()
        active = self._state.manager.active
        c = self._state.counters
        return {
            "frames": c["frames"],
            "batches": c["batches"],
            "bytes": c["bytes"],
            "syncs": c["syncs"],
            "rotations_forced": c["rotations_forced"],
            "rotations_size": c["rotations_size"],
            "rotations_age": c["rotations_age"],
            "failures": c["failures"],
            "last_seq": self._state.written_seq,
            "durable_seq": self._state.durable_seq,
            "active_segment": active.name if active else None,
            "segments": len(self._state.index.ranges),
            "plugin_errors": dict(self._events.errors),
            "failed": _describe(self._state.failed) if self._state.failed else None,
            "append_seconds": self._state.append_latency.snapshot(),
            "fsync_seconds": self._state.fsync_latency.snapshot(),
            "archive": self._archive.stats(),
            "archive_pending_at_close": self._archive.pending_at_close,
        }

    @property
    def pending_at_close(self) -> list[str] | None:
        """The segments :meth:`close` left pending upload (kept locally, uploaded at the next
        open), oldest first; ``[]`` when it drained everything; ``None`` before close or
        without an archive."""
        return self._archive.pending_at_close

    def close(self, drain: float | None = None) -> None:
        """Sync and close the active segment, wait for the archive, stop the background
        threads, release the lock.

        With an archive, close then waits up to ``drain`` seconds (``None``: the
        ``archive.drain_on_close`` setting, 30 s by default; 0: no wait; ``math.inf``: no limit)
        for the closed segments still pending upload (appends are refused from the start of
        the wait: the log is closed; stalled segments are not retried). What is still pending
        then stays local and uploads at the next open: it is named in one warning (logger
        ``walship.drain``; none when ``drain`` is 0) and in :attr:`pending_at_close`
        (``stats()["archive_pending_at_close"]``). A failed log does not wait, nor does a
        ``with`` block left by an exception (it closes with ``drain=0``).

        Idempotent. Under a failed log nothing is synced (the log's state is unknown), every
        resource is released all the same, and the failure is raised: a failure in the
        background (a rotation after an append returned, the interval flusher) never goes
        unnoticed, and a ``close()`` that returns means everything appended is durable.

        May be called from any thread, a plugin's hook too (on the event thread): the thread
        it is called on is never joined. An interrupt (KeyboardInterrupt, ...) during the final
        sync fails the log and goes on; the threads and the lock are released all the same. An
        interrupt during the drain wait loses nothing (the pending segments stay pending): the
        close completes (the archiver stops, the lock is released) and the interrupt goes on.

        Raises:
            LogFailedError: the log failed, now or earlier.
            LogForkedError: this is a forked child of the process that opened the log: nothing
                is touched (not the files, not the lock, which the child shares with its
                parent; the background threads do not exist here).
        """
        self._check_process()
        if drain is not None and not drain >= 0:
            raise ValueError(f"drain must be a number of seconds >= 0, got {drain!r}")
        if self._state.closed:
            return
        if self._maintenance is not None:
            self._maintenance.stop()
        try:
            self._commit.exclusive(self._writer.close_locked, finish=self._mark_closed)
        finally:
            # (interrupted while waiting for the turn: nothing done, still open)
            if self._state.closed:
                error: BaseException | None = None
                try:
                    if self._state.failed is None:  # (a failed log does not wait)
                        self._archive.drain(drain)
                except BaseException as e:  # (an interrupt in the wait: close all the same)
                    error = e
                for _ in ATTEMPTS:  # an interrupt here is retried (idempotent)
                    try:
                        # interrupted: in-flight uploads are not waited for (they stay pending)
                        self._release_resources(0.0 if error is not None else 30.0)
                        break
                    except BaseException as e:
                        error = error or e
                if error is not None:
                    raise error
        if self._state.failed is not None:
            raise self._failed_error()

    def _mark_closed(self) -> None:
        self._state.closed = True  # (before the turn goes on: queued appenders hear "closed")
        self._state.wake_followers()

    def _release_resources(self, archive_timeout: float = 30.0) -> None:
        """Stop the archiver (waiting up to ``archive_timeout`` for in-flight uploads) and the
        event thread, release the lock. Idempotent."""
        _open_logs.pop(id(self), None)
        self._commit.stop_driver()  # (the asyncio API's commit thread, if one started)
        self._archive.close(archive_timeout)
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
                self.close(drain=0)  # (no drain wait: what is pending uploads at the next open)

    def __repr__(self) -> str:
        state = self._state
        return f"Log({self.store!r}, last_seq={state.written_seq}, durable={state.durable_seq})"


def _request(payloads: Sequence[bytes | bytearray | memoryview], payload_type: int) -> Request:
    """The request of an append of ``payloads``, checked on the caller's thread.

    Raises:
        FrameTooLargeError / ValueError: as :meth:`Log.append` (nothing queued).
    """
    items, nbytes = measure_payloads(payloads, payload_type)
    return Request(items, payload_type, nbytes)


__all__ = [
    "AppendGate",
    "ArchiveService",
    "Archiving",
    "CheckpointPosition",
    "Durability",
    "Log",
    "PreparedArchive",
    "Retaining",
]
