"""The archiver plugin: every closed segment goes to the archive, verified, off the append path.

It hears ``segment_closed`` and queues the segment for a bounded pool of background workers
(``workers`` threads). A worker reads the closed segment from the local store, checks it (every
frame, and the BLAKE3 it had when it was closed), puts it into the archive
(:class:`walship.archive.ArchiveStore`: whole or not at all, never over different
content, verified against the local bytes), and only then records it as archived in the
durable local record (:mod:`walship.core.record`) and fires ``segment_archived``.
Retention runs after each success. The put itself (the fence, the continuity check, a fenced
writer's object replaced) is :class:`~walship.archive.fenced_put.FencedPut`'s; a checkpoint's
snapshot goes through :class:`~walship.archive.checkpoint_upload.CheckpointUpload`; the
archiver is built and wired to its log by :mod:`walship.archive.wiring`. This module is the
queue, the workers, the retries and the stats.

A failed attempt fires ``archive_failed`` (with the attempt number, from 1) and is retried after
an exponential backoff with jitter, capped at ``max_backoff``, up to ``attempts`` times; a segment
that still fails stays pending ("stalled"), never lost: it is tried again by
:meth:`Archiver.flush`, by ``walship archive`` and at the next open, which queues every local
closed segment the record does not list. A conflict
(:class:`~walship.errors.ArchiveConflictError`: the archive holds different content under the
segment's name) is no passing fault: the segment stalls at once
with that error, no attempt repeated. When a segment closes while more than ``lag_warning``
segments are pending, ``archive_lagging`` fires (once per crossing) and the stats say so: the
warning is about a running log falling behind, so the backlog queued at start-up or by
:meth:`Archiver.requeue` (a catch-up run) never fires it by itself.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from walship.archive import ArchiveStore, PutResult
from walship.archive.attempts import AttemptLog
from walship.archive.backpressure import NO_BACKPRESSURE, Backpressure
from walship.archive.checkpoint_upload import CheckpointUpload
from walship.archive.epoch import Fence, FenceGate, LocalEpoch
from walship.archive.fenced_put import FencedPut
from walship.archive.retention import Retention, SegmentRanges
from walship.archive.settings import ArchiveSettings, RetrySettings
from walship.core.header import segment_name
from walship.core.record import ArchivedSegment, ArchiveRecord
from walship.core.segment import ClosedSegment
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveFencedError,
)
from walship.plugins.hookspecs import hookimpl
from walship.stats import ArchiveStats
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.archive.shipper import Shipper
    from walship.archiving import CheckpointPosition

logger = logging.getLogger("walship.archiver")

__all__ = ["ArchiveSettings", "Archiver", "RetrySettings", "backoff_delay"]


def backoff_delay(attempt: int, backoff: float, max_backoff: float, rng: random.Random) -> float:
    """The wait after failed attempt ``attempt`` (from 1): exponential, capped, with jitter
    ("equal jitter": between half and all of the capped exponential)."""
    capped = min(max_backoff, backoff * (2.0 ** min(attempt - 1, 60)))
    return capped / 2 + rng.uniform(0, capped / 2)


@dataclass
class _Pending:
    blake3: bytes | None
    state: str = "queued"  # queued | running | stalled
    attempts: int = 0
    last_error: str = ""
    conflict: bool = False
    """The last error was an :class:`ArchiveConflictError` (retrying cannot help)."""
    size: int = 0
    """The segment's bytes (counted against ``archive.max_pending``)."""


class Archiver:
    """Ships closed segments to the archive; see the module docstring. Thread-safe.

    Args:
        store: the log's segment store (closed segments are read from it).
        settings: the validated ``archive:`` section.
        record: the log's durable archive record.
        emit: fires a hook on the log's event thread (``emit(hook, **kwargs)``).
        closed_segments: the log's local closed segments (seq, first, last), oldest first.
        retention: applied after every archived segment (``None``: keep everything); with
            several destinations, one :class:`Retention` shared by their archivers.
        archive: the archive store (default: one built from ``settings``).
        attempts: the log's errors file (:mod:`walship.archive.attempts`), shared by the
            archivers of several destinations (default: this archiver's own).
    """

    def __init__(
        self,
        store: SegmentStore,
        settings: ArchiveSettings,
        record: ArchiveRecord,
        emit: Callable[..., None],
        closed_segments: SegmentRanges,
        retention: Retention | None = None,
        archive: ArchiveStore | None = None,
        attempts: AttemptLog | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.record = record
        self._init_archive(archive)
        self.retention = retention
        self._emit = emit
        self._closed_segments = closed_segments
        self._init_queue()
        self._init_stats()
        self.attempts = attempts or AttemptLog(store)
        """The last error of each failed segment, kept for ``walship status``."""
        self._init_gates()
        self._init_uploads()
        self.shipper: Shipper | None = None
        """Live shipping of the active segment (``ship_interval``), started and closed with
        the archiver."""

    def _init_archive(self, archive: ArchiveStore | None) -> None:
        """The archive store (``archive``, else one built from the settings), its URL, and
        whether uploads go through the upload child."""
        settings = self.settings
        self.archive = archive or ArchiveStore(
            settings.url,
            settings.storage_options,
            compression=settings.compression,
            conditional_create=settings.conditional_create,
            keyring=settings.encryption,
        )
        self.url = self.archive.url
        # the child cannot reach a memory:// archive (it lives in this process), nor an
        # ArchiveStore handed in by the caller
        self._in_child = (
            archive is None and settings.upload_process and self.archive.shared_across_processes
        )
        if self._in_child:  # its other requests too: none holds this process's interpreter lock
            from walship.archive.upload_process import offload

            offload(self.archive)

    def _init_queue(self) -> None:
        """The pending segments, their queue, the workers (not started) and the flags of a
        close."""
        # entered as `with self._lock` (a C lock: no Python frame between its acquire and the
        # block, where an interrupt could leave it held), waited on through the condition
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._announce = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._pending_bytes = 0
        self._archived_here = False
        """Whether a put of this archiver succeeded (the archive took a segment of its own)."""
        self._queue: deque[int] = deque()
        self._stopping = False
        """Set by :meth:`close` (a plain store: an interrupt cannot leave it half set)."""
        self._closed = False
        self._join_deadline: float | None = None
        """When the first :meth:`close` stops waiting for the workers (later calls never wait
        longer)."""
        self._workers = [
            threading.Thread(target=self._work, name=f"walship-archiver-{i}", daemon=True)
            for i in range(self.settings.workers)
        ]

    def _init_stats(self) -> None:
        self._lagging = False
        self._rng = random.Random()
        self.counters: Counter[str] = Counter()
        self._seconds_total = 0.0
        self._seconds_max = 0.0

    def _init_gates(self) -> None:
        """The backpressure (``archive.max_pending``), the fence and the append gate over
        both."""
        settings = self.settings
        self.backpressure: Backpressure | None = None
        """The append gate (``archive.max_pending``; ``None``: off)."""
        if settings.max_pending is not None:
            self.backpressure = Backpressure(
                settings.max_pending,
                settings.backpressure_timeout,
                self.url,
                self._emit,
                lambda: self.requeue(retry_stalled=True),
            )
        self.fence = Fence(
            self.archive, LocalEpoch.load(self.store, self.url), self._unarchived_note, self.store
        )
        """Whether another writer took the archive over (:mod:`walship.archive.epoch`)."""
        self.append_gate = FenceGate(self.fence, self.backpressure)
        """The log's append gate: refused once fenced, else the backpressure's."""

    def _init_uploads(self) -> None:
        """The collaborators that talk to the archive: the workers' put, the checkpoints'."""
        self.uploads = FencedPut(
            self.store,
            self.archive,
            self.record,
            self.fence,
            self.settings,
            in_child=self._in_child,
            settle_before=self._settle_before,
            own_predecessor=self._own_predecessor,
            counters=self.counters,
        )
        """How a worker puts a segment (fenced, continuing the archive)."""
        self.checkpoints = CheckpointUpload(
            self.archive, self.settings, self.counters, self._backoff
        )
        """Checkpoints' snapshots stored at this destination (:meth:`store_checkpoint`)."""

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers, queue every local closed segment not yet archived, and apply
        retention once (a checkpoint or archive may have been recorded before a restart)."""
        try:
            # one GET: a writer reopened after a takeover is fenced at once
            self.fence.check(fresh=True)
        except ArchiveFencedError as e:
            logger.error("walship archive: %s", e)
        except (OSError, ArchiveError):
            pass  # unreachable now: every upload checks again first
        for w in self._workers:
            w.start()
        if self.shipper is not None:
            self.shipper.start()
        self.requeue()
        if self.retention is not None:
            self.retention.apply()

    def requeue(self, retry_stalled: bool = True) -> int:
        """Queue every local closed segment the record does not list as archived here (and,
        when ``retry_stalled``, every stalled one). Returns how many are pending now."""
        for seq, _first, _last in self._closed_segments():
            self.submit(seq, None)
        with self._lock:
            if retry_stalled:
                for seq, p in self._pending.items():
                    if p.state == "stalled":
                        p.state = "queued"
                        self._queue.append(seq)
            self._cond.notify_all()
            return len(self._pending)

    def close(self, timeout: float = 30.0) -> None:
        """Stop: no new attempt starts, backoff waits end, in-flight uploads get ``timeout``
        seconds to finish (and are recorded when they do). What is still pending stays pending
        (queued again at the next open). Nothing is recorded after this returns. Idempotent;
        called on the thread that closes the log.

        Interrupt-safe: a ``KeyboardInterrupt`` (or any exception) landing anywhere in here, the
        wait for the workers included, still leaves the archiver sealed: the workers are told to
        stop and nothing is recorded after the interrupt either (an upload still in flight stays
        pending, and the next open queues it again: uploads are idempotent). A second call
        finishes the wait, never waiting past the first call's deadline (``walship archive
        --timeout`` closes with what is left of its time; the log's close after it is quick).
        The interrupt itself goes on to the caller.
        """
        self._stopping = True
        try:
            if self.backpressure is not None:
                self.backpressure.open_for_good()
            if self.shipper is not None:
                self.shipper.close(timeout)
            with self._lock:
                self._cond.notify_all()
            deadline = time.monotonic() + timeout
            if self._join_deadline is not None:
                deadline = min(deadline, self._join_deadline)
            self._join_deadline = deadline
            for w in self._workers:
                if w.is_alive() and w is not threading.current_thread():
                    w.join(max(0.0, deadline - time.monotonic()))
        finally:
            self._seal()

    def _seal(self) -> None:
        """Record nothing from now on. A worker checks the flag under the announce lock, and
        holds that lock while it records: taking the lock here waits for a record under way,
        so none lands after :meth:`close` returns."""
        self._closed = True  # a plain store: an interrupt cannot leave it half done
        with self._announce_lock():
            pass

    def _announce_lock(self) -> threading.Lock:
        return self.retention.lock if self.retention is not None else self._announce

    # --- the hook -----------------------------------------------------------------------

    @hookimpl
    def segment_closed(self, segment: ClosedSegment) -> None:
        """Queue the closed segment for upload (never blocks); warn when the archive lags."""
        if self.shipper is not None:
            self.shipper.wake()  # its last bytes go as a part now, before the sealed upload ends
        self.submit(segment.segment_seq, segment.blake3, live=True, size=segment.size)

    def submit(
        self,
        segment_seq: int,
        blake3: bytes | None = None,
        live: bool = False,
        size: int | None = None,
    ) -> None:
        """Queue segment ``segment_seq`` unless it is pending already or archived here.
        ``live``: the log just closed it (only then may ``archive_lagging`` fire); ``size``:
        its bytes (default: asked of the store)."""
        with self._lock:
            if self._stopping or segment_seq in self._pending:
                return
            if segment_seq <= self.record.removed_through:
                return  # archived and removed by retention (maybe before a new URL was set)
            if self.record.archived(segment_seq, self.url):
                return
            if size is None:
                try:
                    size = self.store.size(segment_name(segment_seq))
                except OSError:
                    size = 0
            self._pending[segment_seq] = _Pending(blake3, size=size)
            self._pending_bytes += size
            self._queue.append(segment_seq)
            self.counters["queued"] += 1
            # every waiter: an interrupted flush() may have left a stale waiter behind, which
            # would swallow a notify() meant for a worker
            self._cond.notify_all()
            self._check_lag_locked(live)
            self._update_backpressure_locked()

    def _update_backpressure_locked(self) -> None:
        if self.backpressure is not None:
            oldest = segment_name(min(self._pending)) if self._pending else None
            self.backpressure.update(self._pending_bytes, oldest)

    def _check_lag_locked(self, live: bool = False) -> None:
        """Count the pending segments; warn (``live``: a segment just closed) or clear the
        lagging state."""
        n = len(self._pending)
        self.counters["max_pending"] = max(self.counters["max_pending"], n)
        if live and n > self.settings.lag_warning and not self._lagging:
            self._lagging = True
            self.counters["lag_warnings"] += 1
            oldest = segment_name(min(self._pending))
            logger.warning(
                "walship archive is lagging: %d segments pending (oldest %s) for %s",
                n,
                oldest,
                self.url,
            )
            self._emit("archive_lagging", pending=n, oldest_pending=oldest, url=self.url)
        elif n <= self.settings.lag_warning and self._lagging:
            self._lagging = False
            logger.info("walship archive caught up: %d segments pending", n)

    # --- the workers --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._queue and not self._stopping:
                    self._cond.wait()
                if self._stopping:
                    return
                seq = self._queue.popleft()
                p = self._pending[seq]
                p.state = "running"
            try:
                done = self._archive(seq, p)
            except BaseException:  # never lose a segment to a bug: leave it stalled
                logger.exception("walship archiver failed on %s", segment_name(seq))
                done = False
                p.state = "stalled"
            if done and self.retention is not None and not self._stopping:
                try:
                    self.retention.apply()  # before flush() can see the segment done
                except Exception:
                    logger.exception("walship retention failed")
            with self._lock:
                if done:
                    del self._pending[seq]
                    self._pending_bytes -= p.size
                    self._update_backpressure_locked()
                elif p.state == "running":
                    p.state = "queued" if not self._stopping else "stalled"
                    if p.state == "queued":
                        self._queue.append(seq)
                self._check_lag_locked()
                self._cond.notify_all()

    def _archive(self, seq: int, p: _Pending) -> bool:
        """Try to archive one segment, with retries. True when archived and recorded."""
        name = segment_name(seq)
        for attempt in range(1, self.settings.retries.attempts + 1):
            if self._stopping:
                return False
            started = time.monotonic()
            try:
                result = self.uploads.put(seq, p.blake3)
                seconds = self._record_archived(seq, name, result, started)
            except Exception as e:
                stalled = self._attempt_failed(name, seq, p, attempt, e)
                if stalled or not self._wait_backoff(attempt):
                    return False
                continue
            if seconds is None:
                return False
            self._count_archived(name, result, seconds)
            self._archived_here = True
            return True
        return False

    def _record_archived(
        self, seq: int, name: str, result: PutResult, started: float
    ) -> float | None:
        """Record segment ``seq`` as archived here and emit ``segment_archived``, as one step
        for retention (a ``segment_removed`` never reaches the plugins before its
        ``segment_archived``). The seconds since ``started``; ``None`` once :meth:`close`
        sealed the archiver (the log may be open elsewhere by now: nothing recorded)."""
        with self._announce_lock():
            if self._closed:
                return None
            m = result.manifest
            self.record.mark_archived(
                ArchivedSegment(seq, m.size, m.blake3, self.url, m.last_commit_seq, m.instance_id)
            )
            seconds = time.monotonic() - started
            self._emit(
                "segment_archived",
                name=name,
                segment_seq=seq,
                url=result.url,
                size=m.size,
                blake3=m.blake3.hex(),
                seconds=seconds,
            )
            return seconds

    def _count_archived(self, name: str, result: PutResult, seconds: float) -> None:
        self.attempts.archived(name, self.url)
        self.counters["archived"] += 1
        self.counters["bytes"] += result.manifest.size
        self.counters["uploaded" if result.uploaded else "already_archived"] += 1
        self._seconds_total += seconds
        self._seconds_max = max(self._seconds_max, seconds)

    def _attempt_failed(self, name: str, seq: int, p: _Pending, attempt: int, e: Exception) -> bool:
        """Note failed attempt ``attempt`` of segment ``seq`` (its error, the errors file,
        the log line, ``archive_failed``); whether the segment stalls now (its last attempt,
        a conflict, or this writer fenced: retrying cannot help the last two)."""
        error = f"{type(e).__name__}: {e}" if not isinstance(e, ArchiveError) else str(e)
        error = self.archive.redact(error)
        attempts = self.settings.retries.attempts
        p.attempts += 1
        p.last_error = error
        p.conflict = isinstance(e, ArchiveConflictError)
        fenced = isinstance(e, ArchiveFencedError)
        self.counters["failed_attempts"] += 1
        stalls = attempt == attempts or p.conflict or fenced
        if not self._closed:  # (after close the log may be another process's)
            self.attempts.failed(name, self.url, error, p.attempts, stalls, p.conflict)
        logger.warning(
            "walship archive of %s to %s failed (attempt %d of %d): %s",
            name,
            self.url,
            attempt,
            attempts,
            error,
        )
        self._emit(
            "archive_failed", name=name, segment_seq=seq, attempt=attempt, error=error, url=self.url
        )
        if stalls:
            p.state = "stalled"
            self.counters["stalled"] += 1
            logger.error(
                "walship archive of %s to %s gave up after %d attempts%s; it stays pending: %s",
                name,
                self.url,
                attempt,
                " (fenced or a conflict: retrying cannot help)" if p.conflict or fenced else "",
                error,
            )
        return stalls

    def _backoff(self, attempt: int) -> float:
        """The wait after failed attempt ``attempt`` (:func:`backoff_delay` of the archive's
        ``retries``)."""
        retries = self.settings.retries
        return backoff_delay(attempt, retries.backoff, retries.max_backoff, self._rng)

    def _wait_backoff(self, attempt: int) -> bool:
        """The backoff wait after failed attempt ``attempt``, cut short by :meth:`close`;
        whether to go on (not stopping)."""
        delay = self._backoff(attempt)
        with self._lock:
            self._cond.wait_for(lambda: self._stopping, delay)
        return not self._stopping

    def _own_predecessor(self, seq: int) -> bool:
        """Whether segment ``seq - 1`` is still pending here, once a put of this archiver
        succeeded (:meth:`FencedPut.check_continues
        <walship.archive.fenced_put.FencedPut.check_continues>`)."""
        with self._lock:
            return self._archived_here and seq - 1 in self._pending

    def _settle_before(self, seq: int) -> bool:
        """Wait until segment ``seq - 1`` is not being uploaded by another worker (or the
        archiver stops); whether it is still pending here (:meth:`FencedPut.check_continues
        <walship.archive.fenced_put.FencedPut.check_continues>`)."""
        with self._lock:
            self._cond.wait_for(
                lambda: (
                    self._stopping
                    or seq - 1 not in self._pending
                    or self._pending[seq - 1].state != "running"
                )
            )
            return seq - 1 in self._pending

    def _unarchived_note(self) -> str:
        """What this log keeps that it did not archive (for the fencing error)."""
        closed = [seq for seq, _f, _l in self._closed_segments()]
        with self._lock:
            pending = sorted(set(self._pending) | {s for s in closed if s > self.record_end()})
        last = self.record.last_commit_seq
        where = f"segments {segment_name(pending[0])} on" if pending else "the active segment"
        return (
            f"it archived sealed up to commit_seq {last}; its later frames are kept locally "
            f"({where}), in the archive only as far as the new writer took them over"
        )

    def record_end(self) -> int:
        """The last segment the record lists as archived here (0: none)."""
        done = [e.segment_seq for e in self.record.entries() if e.url == self.url]
        return max(done, default=self.record.removed_through)

    # --- waiting and introspection ------------------------------------------------------

    def store_checkpoint(self, snapshot: object, position: CheckpointPosition) -> object:
        """Store ``snapshot`` (bytes, a path or a binary file object) as the checkpoint at
        ``position``, on the calling thread, never holding a lock the workers or appends need:
        :meth:`~walship.archive.checkpoint_upload.CheckpointUpload.store`
        (retried, then ``archive.prune`` applied), and what it raises. Returns the checkpoint's
        manifest, durable in the archive."""
        return self.checkpoints.store(snapshot, position)

    def flush(self, timeout: float | None = None, retry_stalled: bool = True) -> bool:
        """Wait until every segment closed so far is archived or stalled (stalled ones are
        retried first when ``retry_stalled``). True when nothing at all is pending; False when
        some segment stalled (again) or the timeout passed."""
        self.requeue(retry_stalled)
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while any(p.state != "stalled" for p in self._pending.values()):
                if self._stopping:
                    break
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                self._cond.wait(remaining if remaining is not None else 0.5)
            return not self._pending

    @property
    def drain_on_close(self) -> float:
        """``archive.drain_on_close``: how long the log's close waits for :meth:`drain`."""
        return self.settings.drain_on_close

    def drain(self, timeout: float) -> list[str]:
        """Wait up to ``timeout`` seconds (``math.inf``: no limit; 0: not at all) until every
        pending segment is archived or stalled (stalled ones are not retried); return the names
        of those still pending, oldest first. Called by the log's close, on its thread, before
        :meth:`close`; an interrupt goes on to the caller and loses nothing (what is pending
        stays pending, queued again at the next open). A segment the log closed whose
        ``segment_closed`` event is still on its way through the event thread counts as
        pending."""
        self.requeue(retry_stalled=False)  # (that hand-over races a close right after a rotation)
        if timeout > 0:
            self.flush(None if math.isinf(timeout) else timeout, retry_stalled=False)
        return self.pending()

    def pending_sizes(self) -> dict[int, int]:
        """The segment_seq and size of each segment waiting for upload (queued, running or
        stalled)."""
        with self._lock:
            return {s: p.size for s, p in self._pending.items()}

    def pending(self) -> list[str]:
        """Names of the segments waiting for upload (queued, running or stalled), oldest first."""
        with self._lock:
            return [segment_name(s) for s in sorted(self._pending)]

    def stalled(self) -> dict[str, str]:
        """Segments that used up their attempts, with their last error."""
        with self._lock:
            return {
                segment_name(s): p.last_error
                for s, p in sorted(self._pending.items())
                if p.state == "stalled"
            }

    def last_errors(self) -> dict[str, str]:
        """Pending segments that failed at least once (stalled or between attempts), with their
        last error, oldest first."""
        with self._lock:
            return {
                segment_name(s): p.last_error
                for s, p in sorted(self._pending.items())
                if p.attempts
            }

    def conflicts(self) -> list[str]:
        """Pending segments whose last attempt met an :class:`ArchiveConflictError`."""
        with self._lock:
            return [segment_name(s) for s, p in sorted(self._pending.items()) if p.conflict]

    def wait_for_progress(self, timeout: float) -> None:
        """Block until a segment finishes (archived or stalled) or ``timeout`` passes."""
        with self._lock:
            self._cond.wait(timeout)

    def stats(self) -> ArchiveStats:
        """The archiver's counters and state: a :class:`~walship.stats.ArchiveStats` (every
        key always present, each documented there). Any thread."""
        with self._lock:
            c = self.counters
            return {
                "queued": c["queued"],
                "archived": c["archived"],
                "uploaded": c["uploaded"],
                "already_archived": c["already_archived"],
                "bytes": c["bytes"],
                "failed_attempts": c["failed_attempts"],
                "stalled": c["stalled"],
                "lag_warnings": c["lag_warnings"],
                "max_pending": c["max_pending"],
                "checkpoints": c["checkpoints"],
                "prune_errors": c["prune_errors"],
                "pruned_objects": c["pruned_objects"],
                "url": self.url,
                "pending": len(self._pending),
                "stalled_now": sum(p.state == "stalled" for p in self._pending.values()),
                "lagging": self._lagging,
                "seconds_mean": self._seconds_total / c["archived"] if c["archived"] else 0.0,
                "seconds_max": self._seconds_max,
                "removed": self.retention.removed if self.retention is not None else 0,
                "pending_bytes": self._pending_bytes,
                "shipping": self.shipper.stats() if self.shipper is not None else None,
                "destinations": None,
                "fenced": self.fence.message,
                "epoch": self.fence.local.epoch,
                **(self.backpressure.stats() if self.backpressure is not None else NO_BACKPRESSURE),  # type: ignore[typeddict-item]  # the five backpressure keys of ArchiveStats
            }
