"""The Log: the facade users hold.

It wires a store, the segment engine and the plugins together, and owns the durability policy:

* ``always``: ``append`` returns once its frames are fdatasync'ed. Concurrent appenders share one
  write and one fdatasync (group commit): the first waiting thread becomes the leader, takes every
  request queued so far, writes them with one write and syncs once; the others wait only for
  their own request.
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
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import TYPE_CHECKING, Any

import pluggy

from walship.backends.archive_errors import CheckpointError
from walship.backends.base import SegmentStore
from walship.core import frame as framing
from walship.core.frame import Frame, check_payload, encode_batch
from walship.core.header import HEADER_SIZE, segment_name
from walship.core.recovery import RecoveryReport, recover
from walship.core.rotation import Clock, RotationPolicy, RotationReason, SystemClock
from walship.core.segment import ClosedSegment, SegmentManager
from walship.errors import LogClosedError, LogFailedError, WalshipError
from walship.plugins.archive_record import ArchiveRecord, first_local_seq
from walship.plugins.events import EventDispatcher
from walship.plugins.manager import new_plugin_manager

if TYPE_CHECKING:
    from walship.plugins.archiver import Archiver, ArchiveSettings
    from walship.plugins.retention import RetentionPolicy

logger = logging.getLogger("walship")

_BUFFER_KEEP = 8 * 1024 * 1024  # a reused encode buffer larger than this is let go after use


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
    __slots__ = ("done", "error", "first_seq", "payload_type", "payloads")

    def __init__(self, payloads: Sequence[bytes | bytearray | memoryview], payload_type: int):
        self.payloads = payloads
        self.payload_type = payload_type
        self.first_seq = 0
        self.done = False
        self.error: BaseException | None = None


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
        self._cond = threading.Condition()
        self._busy = False  # a thread is doing I/O on the manager (leader, sync, rotate, close)
        self._queue: list[_Request] = []
        self._buf = bytearray()
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
            )
            self.recovery: RecoveryReport = recovered.report
            if recovered.report.repairs or recovered.report.salvaged:
                logger.warning("walship recovery: %s", recovered.report.summary())
            self.instance_id: int = (
                recovered.instance_id
                if recovered.instance_id is not None
                else instance_id
                if instance_id is not None
                else secrets.randbits(63)
            )
            self._manager = SegmentManager(store, self.instance_id, policy, self.clock)
            self._next_seq = recovered.next_commit_seq
            self._written_seq = self._next_seq - 1
            self._durable_seq = self._written_seq  # what recovery found is on disk
            self._ranges = [_SegmentRange(*r) for r in recovered.segment_ranges]
            if recovered.active is not None:
                self._manager.resume(recovered.active)
                # what recovery read may still be only in the page cache: make it durable
                # before durable_seq claims it
                self._manager.sync()
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
        """(segment_seq, first, last commit_seq) of every local segment but the active one."""
        with self._cond:
            active = self._manager.active
            return [
                (r.segment_seq, r.first_commit_seq, r.last_commit_seq)
                for r in self._ranges
                if active is None or r.segment_seq != active.segment_seq
            ]

    def _forget_segment(self, segment_seq: int) -> None:
        """Retention removed a local segment: drop it from the index ``read`` uses."""
        with self._cond:
            self._ranges = [r for r in self._ranges if r.segment_seq != segment_seq]

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
        for p in payloads:
            check_payload(len(p), payload_type)
        req = _Request(payloads, payload_type)
        with self._cond:
            self._check_usable()
            self._queue.append(req)
            while not req.done and self._busy:
                self._cond.wait()
            if not req.done:
                self._busy = True
                batch, self._queue = self._queue, []
            else:
                batch = []
        if batch:
            try:
                self._write_batch(batch)
            finally:
                with self._cond:
                    self._busy = False
                    self._cond.notify_all()
        if req.error is not None:
            raise req.error
        return req.first_seq

    def _write_batch(self, batch: list[_Request]) -> None:
        """Leader: encode every request, one write, one sync; then rotate if due."""
        try:
            if self._failed is not None:
                raise self._failed_error()
            if self._closed:
                raise LogClosedError("the log is closed")
            ts = self.clock.now_micros()
            buf = self._buf
            buf.clear()
            seq = self._next_seq
            for r in batch:
                r.first_seq = seq
                seq += encode_batch(buf, seq, ts, r.payload_type, r.payloads)
            sync = self.durability is Durability.ALWAYS
            try:
                self._manager.append(buf, seq - self._next_seq, self._next_seq, seq - 1, ts, sync)
            except OSError as e:
                raise self._fail(e) from e
            finally:
                if len(buf) > _BUFFER_KEEP:
                    self._buf = bytearray()
            self._counters["batches"] += 1
            self._counters["frames"] += seq - self._next_seq
            self._counters["bytes"] += len(buf)
            if sync:
                self._counters["syncs"] += 1
            self._next_seq = seq
            self._written_seq = seq - 1
            if sync:
                self._durable_seq = seq - 1
        except BaseException as e:
            for r in batch:
                r.error = e
                r.done = True
            return
        with self._cond:
            for r in batch:
                r.done = True
            self._cond.notify_all()  # followers return now, not after a rotation
        reason = self._manager.should_rotate()
        if reason is not None:
            with contextlib.suppress(LogFailedError):  # the batch is durable; the log is failed
                self._rotate_locked(reason)

    # --- sync, rotation -----------------------------------------------------------------

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._busy:
                self._cond.wait()
            self._check_usable()
            self._busy = True
        try:
            yield
        finally:
            with self._cond:
                self._busy = False
                self._cond.notify_all()

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

    def rotate(self) -> ClosedSegment:
        """Close the active segment now (reason ``forced``) and open the next one.

        Returns the closed segment's record. Raises ``LogFailedError`` on an I/O failure.
        """
        with self._exclusive():
            self._manager.force_rotate()
            return self._rotate_locked(RotationReason.FORCED)

    def _rotate_locked(self, reason: RotationReason) -> ClosedSegment:
        written = self._written_seq
        try:
            closed = self._manager.rotate(reason)
        except OSError as e:
            raise self._fail(e) from e
        self._durable_seq = written  # rotate synced the closed segment
        self._counters[f"rotations_{reason.value}"] += 1
        last = self._ranges[-1]
        last.first_commit_seq = closed.first_commit_seq
        last.last_commit_seq = closed.last_commit_seq
        active = self._manager.active
        assert active is not None
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
            try:  # after a failed fsync, keep only what is durable (see discard_unsynced)
                cut = self._manager.discard_unsynced()
                if cut:
                    logger.error("walship cut %d unsynced bytes after the failed sync", cut)
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

    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order.

        Works while other threads append: it sees what was written when it reaches the active
        segment (written to the OS, maybe not yet durable). Segments removed meanwhile (by
        retention) are skipped.
        """
        with self._cond:
            self._check_usable()
            ranges = [
                _SegmentRange(r.segment_seq, r.first_commit_seq, r.last_commit_seq)
                for r in self._ranges
            ]
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
                data = self.store.read(name, 0, limit)
            except FileNotFoundError:
                continue
            for f in framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
                if f.commit_seq < from_seq:
                    continue
                if to_seq is not None and f.commit_seq > to_seq:
                    return
                yield f

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
            while self._busy:
                self._cond.wait()
            if self._closed:
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
                self._busy = False
                self._cond.notify_all()
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
