"""The Log: the facade users hold.

It wires a store, the segment engine and the plugins together, and owns the durability policy:

* ``always``: ``append`` returns once its frames are fdatasync'ed. Concurrent appenders share one
  write and one fdatasync (group commit): a thread that finds nobody writing becomes the leader,
  takes every request queued so far, writes them with one write and syncs once (one
  ``pwritev2(RWF_DSYNC)`` where the store can); the others block on their own lock until their
  request is durable. A leader stays on for what queued during its sync (a few batches), and on
  a slow disk waits briefly for the appenders it just woke (see ``Log._lead``).
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
import secrets
import threading
import time
from _thread import LockType
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import pluggy
from crc32c import crc32c

from walship.backends.archive_errors import CheckpointError
from walship.backends.base import SegmentStore
from walship.core import frame as framing
from walship.core.frame import (
    MAX_PAYLOAD,
    Frame,
    as_payloads,
    check_payload,
    encode_batch_at,
    encode_pieces,
)
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, segment_name
from walship.core.recovery import RecoveryReport, recover
from walship.core.rotation import Clock, RotationPolicy, RotationReason, SystemClock
from walship.core.segment import ClosedSegment, SegmentManager
from walship.errors import (
    ConfigError,
    FramesUnavailableError,
    LogClosedError,
    LogFailedError,
    WalshipError,
)
from walship.plugins.archive_record import ArchiveRecord, first_local_seq
from walship.plugins.events import EventDispatcher
from walship.plugins.manager import new_plugin_manager

if TYPE_CHECKING:
    from walship.plugins.archiver import Archiver, ArchiveSettings
    from walship.plugins.retention import RetentionPolicy

logger = logging.getLogger("walship")

_BUFFER_KEEP = 8 * 1024 * 1024  # a reused encode buffer larger than this is let go after use
_GATHER_MIN_PAYLOAD = 16 * 1024
"""Batches whose payloads average at least this many bytes are written from the payloads
themselves with one gathering write, not copied into the encode buffer first."""
_FIXED_BUFFER_MIN = 256 * 1024
"""Batches of at least this many bytes are encoded in place into a kept buffer (appending to a
cleared bytearray would give its memory back and fault it in again every batch)."""
_LEADER_BATCHES = 4
"""How many batches a leader writes in a row before it hands the lead on."""
_GATHER_FRACTION = 0.4
"""Gather when woken appenders return in under this fraction of a sync's time."""
_GATHER_PROBE = 64
"""When gathering does not pay, try it again every this many batches (the disk may change)."""
_GATHER_MAX = 0.002
"""A leader never waits longer than this for appenders to return."""
_allocate_lock = threading.Lock


class Durability(str, Enum):
    """When ``append`` returns (see the module docstring)."""

    ALWAYS = "always"
    INTERVAL = "interval"
    NONE = "none"


@dataclass
class _SegmentRange:
    """The commit_seq range of one local segment, for ``read``."""

    segment_seq: int
    first_commit_seq: int | None
    last_commit_seq: int | None


class _Request:
    """One append or batch waiting for the group commit."""

    __slots__ = (
        "done",
        "error",
        "first_seq",
        "lead",
        "nbytes",
        "payload_type",
        "payloads",
        "then",
        "wake",
    )

    def __init__(
        self, payloads: Sequence[bytes | bytearray | memoryview], payload_type: int, nbytes: int
    ) -> None:
        self.payloads = payloads
        self.payload_type = payload_type
        self.nbytes = nbytes
        self.first_seq = 0
        self.done = False
        self.error: BaseException | None = None
        self.wake: LockType | None = None
        """A lock its thread holds and blocks on until a leader releases it (``None``: the
        thread leads itself)."""
        self.lead = False
        """Set with the release: the thread is the leader now."""
        self.then: _Request | None = None
        """The next request of the same batch, whose thread this one wakes once woken."""


def _wake(requests: list[_Request]) -> None:
    """Mark ``requests`` done and let their threads return.

    Only the first waiting thread is woken here; each woken thread wakes the next (see
    :meth:`Log._submit`), so the leader pays for one wake-up, not one per follower (each costs
    a system call and often a context switch while the leader holds the interpreter lock).
    """
    first: _Request | None = None
    last: _Request | None = None
    for r in requests:
        r.done = True
        if r.wake is not None:
            if last is None:
                first = r
            else:
                last.then = r
            last = r
    if first is not None:
        assert first.wake is not None
        first.wake.release()


class Log:
    """A durable, segmented write-ahead log. Thread-safe.

    Use :func:`walship.open` rather than the constructor. Args as there.
    """

    def __init__(
        self,
        store: SegmentStore,
        *,
        instance_id: int | None = None,
        durability: Durability | str = Durability.ALWAYS,
        sync_interval: float = 0.01,
        max_segment_bytes: int = 64 * 1024 * 1024,
        max_segment_age: float = 60.0,
        salvage: bool = False,
        repair: bool = False,
        seed_restarts: bool = False,
        clock: Clock | None = None,
        plugins: Iterable[object] = (),
        entry_point_plugins: bool = True,
        anchor: bytes | None = None,
        archive: Mapping[str, Any] | None = None,
        retention: Mapping[str, Any] | None = None,
    ) -> None:
        archive_settings: ArchiveSettings | None = None
        retention_policy: RetentionPolicy | None = None
        if archive is not None or retention is not None:
            from walship.plugins.archiver import build_archiving  # fsspec loads only when used

            archive_settings, retention_policy = build_archiving(archive, retention)
        self._archiver: Archiver | None = None
        self.store = store
        self.durability = Durability(durability)
        if sync_interval <= 0:
            raise ValueError(f"sync_interval must be positive, got {sync_interval}")
        self.sync_interval = sync_interval
        self.clock: Clock = clock or SystemClock()
        policy = RotationPolicy(max_segment_bytes, max_segment_age)
        # A plain lock (taken with C-speed ``with``) under the condition that exclusive callers
        # wait on; appenders never wait on the condition, each has its own wake lock.
        self._mutex = threading.Lock()
        self._cond = threading.Condition(self._mutex)
        self._arrivals = threading.Condition(self._mutex)  # a leader gathering a batch
        self._gather_target = 0
        self._gather_skips = 0
        self._sync_seconds = 0.0  # moving average of a synced batch's write + sync
        self._return_seconds = 0.0  # moving average of how long woken appenders take to return
        self._busy = False  # a thread is doing I/O on the manager (leader, sync, rotate, close)
        self._queue: list[_Request] = []
        self._exclusive_waiters = 0  # threads in _exclusive/close waiting for _busy
        self._buf = bytearray()  # small batches: encoded by appending
        self._big = bytearray()  # large batches: encoded in place, its memory kept (<= 8 MiB)
        self._failed: BaseException | None = None
        self._closed = False
        self._counters: Counter[str] = Counter()
        self._lock_held = False

        self.plugins: pluggy.PluginManager = new_plugin_manager(entry_points=entry_point_plugins)
        for plugin in plugins:
            self.plugins.register(plugin)
        self._events = EventDispatcher(self.plugins, self)

        store.lock()
        self._lock_held = True
        recovered = None
        try:
            # the record of what is archived; its last removed segment anchors the chain
            prepared = None
            if archive_settings is not None:  # rebuilt from the archive when lost; repair
                from walship.repair import prepare_archived_open

                prepared = prepare_archived_open(store, archive_settings, repair=repair)
                self._record = prepared.record
            elif repair:
                raise ConfigError("repair=True needs the log's archive: section to repair from")
            else:
                self._record = ArchiveRecord.load(store)
            if anchor is None:
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
            self.recovery: RecoveryReport = recovered.report
            report = self.recovery
            if prepared is not None:
                report.restored = prepared.restored
                report.record_rebuilt = prepared.record_rebuilt
            if report.repairs or report.salvaged or report.restored or report.record_rebuilt:
                logger.warning("walship recovery: %s", report.summary())
            self.instance_id: int = (
                recovered.instance_id
                if recovered.instance_id is not None
                else instance_id
                if instance_id is not None
                else secrets.randbits(63)
            )
            self._manager = SegmentManager(
                store,
                self.instance_id,
                policy,
                self.clock,
                preallocate=self.durability is not Durability.NONE,
            )
            self._next_seq = recovered.next_commit_seq
            self._written_seq = self._next_seq - 1
            self._durable_seq = self._written_seq  # what recovery found is on disk
            self._ranges = [_SegmentRange(*r) for r in recovered.segment_ranges]
            # older segments of the log are gone from the store (retention removed them)
            self._trimmed = bool(self._ranges) and self._first_prev_hash() != ZERO_HASH
            if recovered.active is not None:
                self._manager.resume(recovered.active)
                # what recovery read may still be only in the page cache (the file's bytes, or
                # its directory entry): make it durable before durable_seq claims it
                self._manager.sync()
                store.sync_dir()
            else:
                self._open_segment(recovered.next_segment_seq, recovered.next_prev_hash)
        except BaseException:
            if recovered is not None and recovered.active is not None:
                recovered.active.file.close()
            self._events.stop(timeout=1)
            store.unlock()
            self._lock_held = False
            raise
        self._events.emit("log_recovered", report=self.recovery)
        self._stop = threading.Event()
        self._maintenance = threading.Thread(
            target=self._maintain, name="walship-maintenance", daemon=True
        )
        self._maintenance.start()
        if archive_settings is not None and retention_policy is not None:
            try:
                self._start_archiver(archive_settings, retention_policy)
            except BaseException:
                self.close()
                raise

    def _start_archiver(self, settings: ArchiveSettings, policy: RetentionPolicy) -> None:
        from walship.plugins.archiver import Archiver
        from walship.plugins.retention import Retention

        archiver = Archiver(
            self.store, settings, self._record, self._events.emit, self._closed_segments
        )
        if policy.mode != "all":
            archiver.retention = Retention(
                policy,
                self.store,
                self._record,
                archiver.url,
                self._closed_segments,
                self._forget_segment,
                self._events.emit,
            )
        self.plugins.register(archiver, name="walship.archiver")
        self._archiver = archiver
        archiver.start()

    def _closed_segments(self) -> list[tuple[int, int | None, int | None]]:
        """(segment_seq, first, last commit_seq) of every local segment that has a successor.

        The last local segment is never closed: it is the active one, or the one whose successor
        a failed rotation never created (no ``segment_closed`` event was sent for it)."""
        with self._cond:
            return [
                (r.segment_seq, r.first_commit_seq, r.last_commit_seq) for r in self._ranges[:-1]
            ]

    def _forget_segment(self, segment_seq: int) -> None:
        """Retention removed a local segment: drop it from the index ``read`` uses."""
        with self._cond:
            self._ranges = [r for r in self._ranges if r.segment_seq != segment_seq]
            self._trimmed = True

    def _first_prev_hash(self) -> bytes:
        name = segment_name(self._ranges[0].segment_seq)
        return SegmentHeader.decode(self.store.read(name, 0, HEADER_SIZE), name).prev_segment_hash

    # --- archive and retention ----------------------------------------------------------

    @property
    def archiver(self) -> Archiver | None:
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
            OSError: the record could not be written.
        """
        if self._closed:
            raise LogClosedError(f"the log at {self.store.location} is closed")
        if type(commit_seq) is not int or commit_seq < 0:
            raise CheckpointError(f"checkpoint must be a commit_seq >= 0, got {commit_seq!r}")
        if commit_seq > self._written_seq:
            raise CheckpointError(
                f"checkpoint {commit_seq} is above the last commit_seq {self._written_seq}"
            )
        self._record.set_checkpoint(commit_seq)
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

    def _submit(self, payloads: Sequence[bytes | bytearray | memoryview], payload_type: int) -> int:
        """Queue one request and wait until it is written (and synced under ``always``).

        Group commit: a thread that finds nobody writing becomes the leader and writes every
        queued request; the others block on their own lock, which the leader releases when their
        request is done, or when it hands them the lead (see :meth:`_lead`).
        """
        payloads = as_payloads(payloads)  # in the caller's thread: one bad payload fails alone
        if len(payloads) == 1:
            nbytes = len(payloads[0])
            check_payload(nbytes, payload_type)
        else:
            nbytes = sum(map(len, payloads))
            check_payload(max(map(len, payloads)) if nbytes > MAX_PAYLOAD else 0, payload_type)
        req = _Request(payloads, payload_type, nbytes)
        with self._mutex:
            self._check_usable()
            lead = not (self._busy or self._exclusive_waiters)
            if lead:
                self._busy = True
            else:
                self._queue.append(req)
                wake = req.wake = _allocate_lock()
                wake.acquire()
                if self._gather_target and len(self._queue) >= self._gather_target:
                    self._arrivals.notify()  # the leader waits for us (see _gather_locked)
        if lead:
            self._lead([req])
        else:
            try:
                wake.acquire()  # released by a leader: done, or ours is the lead now
            except BaseException:
                # Interrupted (KeyboardInterrupt): other threads count on this one to pass a
                # wake-up or the lead on. Wait for the outcome, do that, then raise.
                if not (req.done or req.lead):
                    wake.acquire()
                self._pass_on(req)
                raise
            self._pass_on(req)
        if req.error is not None:
            raise req.error
        return req.first_seq

    def _pass_on(self, req: _Request) -> None:
        """A woken follower's duties: wake the next thread of its batch; lead if handed the
        lead."""
        then = req.then
        if then is not None:
            assert then.wake is not None
            then.wake.release()  # pass the wake-up on along the batch
        if req.lead:
            req.wake = None  # nobody waits on it now: keep it out of the wake-up chain
            self._lead([])  # takes the queue, ours first

    def _lead(self, batch: list[_Request]) -> None:
        """Leader (holds ``_busy``): write ``batch`` plus whatever queued meanwhile, batch by
        batch until the queue is empty, at most :data:`_LEADER_BATCHES` batches; then hand
        ``_busy`` on (:meth:`_release_busy_locked`).

        Staying on for the requests that queued up during our sync saves a thread hand-off per
        batch (with the interpreter lock, waking another thread costs more than the work)."""
        rounds = 0
        pending: list[_Request] = []
        try:
            if not batch:
                with self._mutex:
                    batch, self._queue = self._queue, []
            while True:
                if batch:
                    pending = self._write_batch(batch, pending)
                rounds += 1
                with self._mutex:
                    if pending and not self._exclusive_waiters and self._gather_pays():
                        # (also before a hand-off: the next leader then starts with everyone)
                        followers = sum(1 for r in pending if r.wake is not None)
                        _wake(pending)
                        pending = []
                        if followers:
                            self._gather_locked(len(self._queue) + followers)
                    if not self._queue or rounds >= _LEADER_BATCHES or self._exclusive_waiters:
                        self._release_busy_locked()
                        rounds = -1  # released
                        break
                    batch, self._queue = self._queue, []
        finally:
            if rounds != -1:  # an exception escaped (never from _write_batch, which catches all)
                with self._mutex:
                    self._release_busy_locked()
            _wake(pending)

    def _gather_pays(self) -> bool:
        """Whether to wait for the threads just woken to append again (see
        :meth:`_gather_locked`): when they came back in well under a sync's time so far (a
        slow disk), or, now and then, to measure that again."""
        if self._return_seconds < _GATHER_FRACTION * self._sync_seconds:
            return True
        self._gather_skips += 1
        return self._gather_skips % _GATHER_PROBE == 0

    def _gather_locked(self, target: int) -> None:
        """Wait (the mutex released while waiting) until ``target`` requests are queued, at most
        a sync's time (and :data:`_GATHER_MAX`); learn how long that took.

        The threads of the batch just synced usually append again at once. Without waiting,
        concurrent appenders split into two groups that take turns, each sync carrying half of
        them; with a sync much slower than their return (a real disk), waiting for them lets
        one sync carry all. Where a sync is about as fast as their return (a host cache), the
        wait costs more than it gathers, and :meth:`_gather_pays` stops it."""
        budget = min(self._sync_seconds, _GATHER_MAX)
        started = time.monotonic()
        deadline = started + budget
        self._gather_target = target
        try:
            while len(self._queue) < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._arrivals.wait(remaining)
        finally:
            self._gather_target = 0
        took = time.monotonic() - started if len(self._queue) >= target else budget
        self._return_seconds += 0.25 * (took - self._return_seconds)

    def _release_busy_locked(self, after_exclusive: bool = False) -> None:
        """Give up ``_busy`` (the caller holds it, and the condition's lock).

        Turns alternate so that neither side starves: after a leader's batch a thread waiting in
        :meth:`_exclusive` or :meth:`close` goes first; after such an exclusive section the
        oldest queued appender does (it is woken to lead); otherwise whoever waits.
        """
        if self._queue and (after_exclusive or not self._exclusive_waiters):
            head = self._queue[0]
            assert head.wake is not None  # a request without a lock is its leader's own
            head.lead = True
            head.wake.release()
        else:
            self._busy = False
            if self._exclusive_waiters:
                self._cond.notify_all()

    def _write_batch(self, batch: list[_Request], pending: list[_Request]) -> list[_Request]:
        """Leader: encode every request in one pass, one write, one sync; then rotate if due.

        ``pending`` (the previous batch: durable, not yet woken) is woken just before this
        batch's write and sync, so that those threads run while the leader waits in the system
        call instead of competing with it for the interpreter lock. Returns the requests still to
        wake: this batch when it was synced and no rotation followed, else none.

        Small frames are encoded into one reused buffer (or, in a large batch, in place into a
        kept buffer); large ones are written straight from the caller's payloads with one
        gathering write (no copy)."""
        try:
            if self._failed is not None:
                raise self._failed_error()
            if self._closed:
                raise LogClosedError("the log is closed")
            ts = self.clock.now_micros()
            first = seq = self._next_seq
            frames = 0
            nbytes = 0
            for r in batch:
                frames += len(r.payloads)
                nbytes += r.nbytes
            written = nbytes + frames * framing.FRAME_OVERHEAD
            data: bytearray | memoryview | list[bytes | bytearray | memoryview]
            if nbytes >= _GATHER_MIN_PAYLOAD * frames:
                data = []
                for r in batch:
                    r.first_seq = seq
                    seq += encode_pieces(data, seq, ts, r.payload_type, r.payloads)
            elif written >= _FIXED_BUFFER_MIN:
                big = self._big
                if len(big) < written:
                    big = self._big = bytearray(max(written, 2 * len(big)))
                off = 0
                for r in batch:
                    r.first_seq = seq
                    off = encode_batch_at(big, off, seq, ts, r.payload_type, r.payloads)
                    seq += len(r.payloads)
                data = memoryview(big)[:off]
            else:  # small frames: appended to one reused buffer (checked in _submit already)
                data = buf = self._buf
                buf.clear()
                pack = framing.HEAD.pack
                crc_pack = framing.CRC.pack
                fixed = framing.MIN_FRAME_LENGTH
                for r in batch:
                    r.first_seq = seq
                    ptype = r.payload_type
                    for p in r.payloads:
                        # one CRC call over a joined frame beats two calls (header, payload)
                        # for small payloads: a quarter less time per frame at 100 B
                        frame = pack(fixed + len(p), seq, ts, ptype) + p
                        buf += frame
                        buf += crc_pack(crc32c(frame))
                        seq += 1
            sync = self.durability is Durability.ALWAYS
            if pending:  # they run while we are in the write and sync below
                _wake(pending)
                pending = []
            started = time.perf_counter()
            try:
                self._manager.append(data, frames, first, seq - 1, ts, sync)
            except OSError as e:
                raise self._fail(e) from e
            finally:
                if isinstance(data, memoryview):
                    data.release()
                    if len(self._big) > _BUFFER_KEEP:
                        self._big = bytearray()
            counters = self._counters
            counters["batches"] += 1
            counters["frames"] += frames
            counters["bytes"] += written
            self._next_seq = seq
            self._written_seq = seq - 1
            if sync:
                counters["syncs"] += 1
                self._durable_seq = seq - 1
                spent = time.perf_counter() - started
                self._sync_seconds += 0.25 * (spent - self._sync_seconds)
        except BaseException as e:
            _wake(pending)
            for r in batch:
                r.error = e
            _wake(batch)
            return []
        for r in batch:
            r.done = True
        reason = self._manager.should_rotate()
        if reason is None and sync:
            return batch
        _wake(batch)  # followers return now, not after a rotation
        if reason is not None:
            with contextlib.suppress(LogFailedError):  # the batch is durable; the log is failed
                self._rotate_locked(reason)
        return []

    # --- sync, rotation -----------------------------------------------------------------

    def _wait_busy_locked(self) -> None:
        """Wait (holding the condition) until nobody holds ``_busy``; appenders queue behind."""
        self._exclusive_waiters += 1
        try:
            while self._busy:
                self._cond.wait()
        finally:
            self._exclusive_waiters -= 1

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._cond:
            self._wait_busy_locked()
            self._busy = True
        try:
            self._check_usable()
            yield
        finally:
            with self._cond:
                self._release_busy_locked(after_exclusive=True)

    def sync(self) -> int:
        """Make everything appended so far durable; return ``durable_seq``.

        Raises:
            LogFailedError: the sync failed (the log is now failed).
        """
        with self._exclusive():
            self._sync_locked()
        return self._durable_seq

    def _sync_locked(self) -> None:
        written = self._written_seq
        if written == self._durable_seq:
            return
        try:
            self._manager.sync()
        except OSError as e:
            raise self._fail(e) from e
        self._counters["syncs"] += 1
        self._durable_seq = written

    def rotate(self) -> ClosedSegment | None:
        """Close the active segment now (reason ``forced``) and open the next one.

        Returns the closed segment's record; or ``None`` when the active segment holds no frame
        yet: then nothing happens (no segment is sealed or opened, no event is emitted), since
        an empty segment is not worth sealing, announcing and archiving.

        Raises:
            LogFailedError: an I/O failure (the log is now failed), or the log had failed.
            LogClosedError: the log is closed.
        """
        with self._exclusive():
            active = self._manager.active
            if active is not None and active.frame_count == 0:
                return None
            self._manager.force_rotate()
            return self._rotate_locked(RotationReason.FORCED)

    def _rotate_locked(self, reason: RotationReason) -> ClosedSegment:
        written = self._written_seq
        with self._cond:  # readers see the closing segment's range before the active one moves
            closing = self._manager.active
            if closing is not None:
                last = self._ranges[-1]
                last.first_commit_seq = closing.first_commit_seq
                last.last_commit_seq = closing.last_commit_seq
        try:
            closed = self._manager.rotate(reason)
        except OSError as e:
            raise self._fail(e) from e
        self._durable_seq = written  # rotate synced the closed segment
        self._counters[f"rotations_{reason.value}"] += 1
        active = self._manager.active
        assert active is not None
        with self._cond:
            self._ranges.append(_SegmentRange(active.segment_seq, None, None))
        # "closed" only now: its successor exists, so the segment will never be written again
        self._events.emit("segment_closed", segment=closed, reason=reason.value)
        self._events.emit(
            "segment_opened",
            name=active.name,
            segment_seq=active.segment_seq,
            prev_segment_hash=active.header.prev_segment_hash,
        )
        return closed

    def _open_segment(self, segment_seq: int, prev_hash: bytes | None) -> None:
        active = self._manager.open_new(segment_seq, prev_hash)
        self._ranges.append(_SegmentRange(segment_seq, None, None))
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
                    with self._exclusive():
                        reason = self._manager.should_rotate()
                        if reason is not None:
                            self._rotate_locked(reason)
            except WalshipError:
                return  # failed or closed: appenders see it on their next call
            except Exception:
                logger.exception("walship maintenance thread failed")
                return

    # --- failure ------------------------------------------------------------------------

    def _fail(self, error: OSError) -> LogFailedError:
        if self._failed is None:
            self._failed = error
            self._counters["failures"] += 1
            logger.error("walship log failed: %s; reopen it to recover", error)
            try:  # keep only what is durable and acknowledged (see discard_unsynced)
                cut = self._manager.discard_unsynced()
                if cut:
                    logger.error("walship cut %d bytes after the failure", cut)
            except OSError as e:
                logger.error("walship could not cut the unsynced bytes: %s", e)
        return self._failed_error()

    def _failed_error(self) -> LogFailedError:
        err = LogFailedError(
            f"the log at {self.store.location} failed ({self._failed}); "
            f"durable up to commit_seq {self._durable_seq}; reopen it to recover"
        )
        err.__cause__ = self._failed
        return err

    def _check_usable(self) -> None:
        if self._closed:
            raise LogClosedError(f"the log at {self.store.location} is closed")
        if self._failed is not None:
            raise self._failed_error()

    # --- reading ------------------------------------------------------------------------

    def read(self, from_seq: int | None = None, to_seq: int | None = None) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order; ``from_seq``
        defaults to the first local frame (:attr:`first_seq`).

        Works while other threads append: it sees what was written when it reaches the active
        segment (written to the OS, maybe not yet durable).

        Raises:
            FramesUnavailableError: frames from ``from_seq`` on are no longer local (retention
                removed their segments, before or during this read); a gap is never skipped.
        """
        with self._cond:
            self._check_usable()
            ranges = [
                _SegmentRange(r.segment_seq, r.first_commit_seq, r.last_commit_seq)
                for r in self._ranges
            ]
            lowest = self._first_seq_locked()
            trimmed = self._trimmed
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
                with self._cond:
                    active = self._manager.active
                    if active is not None and active.segment_seq == r.segment_seq:
                        limit = active.size
            try:
                data = self.store.map(name, limit)  # one mapped (or read) view per segment
            except FileNotFoundError:
                raise self._unavailable(max(from_seq, r.first_commit_seq or from_seq)) from None
            for f in framing.decode_all(data[HEADER_SIZE:], HEADER_SIZE):
                if f.commit_seq < from_seq:
                    continue
                if to_seq is not None and f.commit_seq > to_seq:
                    return
                yield f

    @property
    def first_seq(self) -> int:
        """The lowest commit_seq ``read`` can return: the first local frame (segments before it
        were removed by retention), or the next commit_seq when no frame is local."""
        with self._cond:
            return self._first_seq_locked()

    def _first_seq_locked(self) -> int:
        for r in self._ranges:
            if r.first_commit_seq is not None:
                return r.first_commit_seq
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
        active = self._manager.active
        out: dict[str, Any] = dict(self._counters)
        out.update(
            last_seq=self._written_seq,
            durable_seq=self._durable_seq,
            active_segment=active.name if active else None,
            segments=len(self._ranges),
            plugin_errors=dict(self._events.errors),
            failed=str(self._failed) if self._failed else None,
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

        Raises:
            LogFailedError: the log failed, now or earlier.
        """
        if self._closed:
            return
        self._stop.set()
        if self._maintenance is not threading.current_thread():
            self._maintenance.join()
        with self._cond:
            self._wait_busy_locked()
            if self._closed:
                if self._queue:  # appenders queued behind us: they must hear it is closed
                    self._busy = True
                    self._release_busy_locked(after_exclusive=True)
                return
            self._busy = True
        try:
            if self._failed is None and self._manager.active is not None:
                written = self._written_seq
                try:
                    self._manager.close()
                    self._durable_seq = written
                except OSError as e:
                    self._fail(e)
                    self._manager.active.file.close()  # still active: its sync failed
                    raise self._failed_error() from e
            elif self._manager.active is not None:
                self._manager.active.file.close()
        finally:
            with self._cond:
                self._closed = True
                self._release_busy_locked(after_exclusive=True)  # queued: LogClosedError
            if self._archiver is not None:
                self._archiver.close()
            self._events.stop()
            if self._lock_held:
                self.store.close()
                self._lock_held = False
        if self._failed is not None:
            raise self._failed_error()

    def __enter__(self) -> Log:
        return self

    def __exit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            self.close()
        else:  # an error is on its way out already: release everything, add nothing
            with contextlib.suppress(LogFailedError):
                self.close()

    def __repr__(self) -> str:
        return f"Log({self.store!r}, last_seq={self._written_seq}, durable={self._durable_seq})"
