"""The archiver plugin: every closed segment goes to the archive, verified, off the append path.

It hears ``segment_closed`` and queues the segment for a bounded pool of background workers
(``workers`` threads). A worker reads the closed segment from the local store, checks it (every
frame, and the BLAKE3 it had when it was closed), puts it into the archive
(:class:`walship.archive.ArchiveStore`: whole or not at all, never over different
content, verified against the local bytes), and only then records it as archived in the
durable local record (:mod:`walship.core.record`) and fires ``segment_archived``.
Retention runs after each success.

A failed attempt fires ``archive_failed`` (with the attempt number, from 1) and is retried after
an exponential backoff with jitter, capped at ``max_backoff``, up to ``attempts`` times; a segment
that still fails stays pending ("stalled"), never lost: it is tried again by :meth:`flush`, by
``walship archive`` and at the next open, which queues every local closed segment the record
does not list. A conflict (:class:`~walship.errors.ArchiveConflictError`: the archive holds
different content under the segment's name) is no passing fault: the segment stalls at once
with that error, no attempt repeated. When a segment closes while more than ``lag_warning``
segments are pending, ``archive_lagging`` fires (once per crossing) and the stats say so: the
warning is about a running log falling behind, so the backlog queued at start-up or by
:meth:`requeue` (a catch-up run) never fires it by itself.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from walship.archive import ArchiveStore, PutResult
from walship.archive.retention import Retention, SegmentRanges
from walship.archive.settings import (
    ArchiveSettings,
    RetentionPolicy,
    RetrySettings,
    retention_without_archive,
)
from walship.core.header import segment_name
from walship.core.record import ArchivedSegment, ArchiveRecord, check_continues
from walship.core.segment import ClosedSegment
from walship.errors import ArchiveConflictError, ArchiveError, ConfigError
from walship.plugins.hookspecs import hookimpl
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.archive.repair import ArchiveRepair
    from walship.log import Log

logger = logging.getLogger("walship.archiver")

__all__ = [
    "ArchiveSettings",
    "ArchiveWiring",
    "Archiver",
    "RetrySettings",
    "backoff_delay",
    "build_archiving",
]


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


class Archiver:
    """Ships closed segments to the archive; see the module docstring. Thread-safe.

    Args:
        store: the log's segment store (closed segments are read from it).
        settings: the validated ``archive:`` section.
        record: the log's durable archive record.
        emit: fires a hook on the log's event thread (``emit(hook, **kwargs)``).
        closed_segments: the log's local closed segments (seq, first, last), oldest first.
        retention: applied after every archived segment (``None``: keep everything).
        archive: the archive store (default: one built from ``settings``).
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
    ) -> None:
        self.settings = settings
        self.store = store
        self.record = record
        self.archive = archive or ArchiveStore(
            settings.url,
            settings.storage_options,
            compression=settings.compression,
            conditional_create=settings.conditional_create,
        )
        self.url = self.archive.url
        # the child cannot reach a memory:// archive (it lives in this process), nor an
        # ArchiveStore handed in by the caller
        self._in_child = (
            archive is None and settings.upload_process and self.archive.shared_across_processes
        )
        self.retention = retention
        self._emit = emit
        self._closed_segments = closed_segments
        # entered as `with self._lock` (a C lock: no Python frame between its acquire and the
        # block, where an interrupt could leave it held), waited on through the condition
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._announce = threading.Lock()
        self._pending: dict[int, _Pending] = {}
        self._queue: deque[int] = deque()
        self._stopping = False
        """Set by :meth:`close` (a plain store: an interrupt cannot leave it half set)."""
        self._closed = False
        self._join_deadline: float | None = None
        """When the first :meth:`close` stops waiting for the workers (later calls never wait
        longer)."""
        self._lagging = False
        self._rng = random.Random()
        self.counters: Counter[str] = Counter()
        self._seconds_total = 0.0
        self._seconds_max = 0.0
        self._workers = [
            threading.Thread(target=self._work, name=f"walship-archiver-{i}", daemon=True)
            for i in range(settings.workers)
        ]

    # --- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the workers, queue every local closed segment not yet archived, and apply
        retention once (a checkpoint or archive may have been recorded before a restart)."""
        for w in self._workers:
            w.start()
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
        self.submit(segment.segment_seq, segment.blake3, live=True)

    def submit(self, segment_seq: int, blake3: bytes | None = None, live: bool = False) -> None:
        """Queue segment ``segment_seq`` unless it is pending already or archived here.
        ``live``: the log just closed it (only then may ``archive_lagging`` fire)."""
        with self._lock:
            if self._stopping or segment_seq in self._pending:
                return
            if segment_seq <= self.record.removed_through:
                return  # archived and removed by retention (maybe before a new URL was set)
            if self.record.archived(segment_seq, self.url):
                return
            self._pending[segment_seq] = _Pending(blake3)
            self._queue.append(segment_seq)
            self.counters["queued"] += 1
            # every waiter: an interrupted flush() may have left a stale waiter behind, which
            # would swallow a notify() meant for a worker
            self._cond.notify_all()
            self._check_lag_locked(live)

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
            self._emit("archive_lagging", pending=n, oldest_pending=oldest)
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
                elif p.state == "running":
                    p.state = "queued" if not self._stopping else "stalled"
                    if p.state == "queued":
                        self._queue.append(seq)
                self._check_lag_locked()
                self._cond.notify_all()

    def _archive(self, seq: int, p: _Pending) -> bool:
        """Try to archive one segment, with retries. True when archived and recorded."""
        name = segment_name(seq)
        retries = self.settings.retries
        for attempt in range(1, retries.attempts + 1):
            if self._stopping:
                return False
            started = time.monotonic()
            try:
                check_continues(self.store, seq, self.record, self.archive.stat)
                result = self._put(name, p.blake3)
                # record and announce as one step for retention: a segment_removed never
                # reaches the plugins before its segment_archived
                with self._announce_lock():
                    if self._closed:  # the log may be open elsewhere by now: record nothing
                        return False
                    m = result.manifest
                    self.record.mark_archived(
                        ArchivedSegment(
                            seq, m.size, m.blake3, self.url, m.last_commit_seq, m.instance_id
                        )
                    )
                    seconds = time.monotonic() - started
                    self._emit(
                        "segment_archived",
                        name=name,
                        segment_seq=seq,
                        url=result.url,
                        size=result.manifest.size,
                        blake3=result.manifest.blake3.hex(),
                        seconds=seconds,
                    )
            except Exception as e:
                error = f"{type(e).__name__}: {e}" if not isinstance(e, ArchiveError) else str(e)
                error = self.archive.redact(error)
                p.attempts += 1
                p.last_error = error
                p.conflict = isinstance(e, ArchiveConflictError)
                self.counters["failed_attempts"] += 1
                logger.warning(
                    "walship archive of %s failed (attempt %d of %d): %s",
                    name,
                    attempt,
                    retries.attempts,
                    error,
                )
                self._emit(
                    "archive_failed", name=name, segment_seq=seq, attempt=attempt, error=error
                )
                if attempt == retries.attempts or p.conflict:
                    p.state = "stalled"
                    self.counters["stalled"] += 1
                    logger.error(
                        "walship archive of %s gave up after %d attempts%s; it stays pending: %s",
                        name,
                        attempt,
                        " (a conflict: retrying cannot help)" if p.conflict else "",
                        error,
                    )
                    return False
                delay = backoff_delay(attempt, retries.backoff, retries.max_backoff, self._rng)
                with self._lock:  # a backoff wait, cut short by close()
                    self._cond.wait_for(lambda: self._stopping, delay)
                if self._stopping:
                    return False
                continue
            self.counters["archived"] += 1
            self.counters["bytes"] += result.manifest.size
            self.counters["uploaded" if result.uploaded else "already_archived"] += 1
            self._seconds_total += seconds
            self._seconds_max = max(self._seconds_max, seconds)
            return True
        return False

    def _put(self, name: str, blake3: bytes | None) -> PutResult:
        if not self._in_child:
            return self.archive.put(name, self.store.read(name), expected_blake3=blake3)
        from walship.archive.upload_process import UploadProcess

        s = self.settings
        key = (s.url, s.storage_options, s.compression, s.conditional_create)
        raw = self.store.local_path(name) or self.store.read(name)
        return UploadProcess.shared().put(key, name, raw, blake3)

    # --- waiting and introspection ------------------------------------------------------

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

    def stats(self) -> dict[str, Any]:
        """Counters: archived, uploaded, already_archived, bytes, failed_attempts, stalled,
        lag_warnings, max_pending; and pending, lagging, seconds (mean, max), removed."""
        with self._lock:
            out: dict[str, Any] = {
                k: self.counters[k]
                for k in (
                    "queued",
                    "archived",
                    "uploaded",
                    "already_archived",
                    "bytes",
                    "failed_attempts",
                    "stalled",
                    "lag_warnings",
                    "max_pending",
                )
            }
            out.update(
                url=self.url,
                pending=len(self._pending),
                stalled_now=sum(p.state == "stalled" for p in self._pending.values()),
                lagging=self._lagging,
                seconds_mean=self._seconds_total / self.counters["archived"]
                if self.counters["archived"]
                else 0.0,
                seconds_max=self._seconds_max,
                removed=self.retention.removed if self.retention is not None else 0,
            )
            return out


class ArchiveWiring:
    """The archive and retention of one log, as :class:`walship.log.Log` takes them (its
    ``archiving``, see :class:`walship.log.Archiving`): built by :func:`build_archiving`, used
    by one log, on its opening thread."""

    def __init__(self, settings: ArchiveSettings, policy: RetentionPolicy) -> None:
        self.settings = settings
        self.policy = policy
        self._record: ArchiveRecord | None = None

    def prepare_open(self, store: SegmentStore, repair: bool) -> ArchiveRepair:
        """Holding the log's lock, before recovery: the archive record, rebuilt from the archive
        when lost; with ``repair``, archived segments damaged or missing locally put back (see
        :func:`walship.archive.repair.prepare_archived_open`, and what it raises)."""
        from walship.archive.repair import prepare_archived_open

        prepared = prepare_archived_open(store, self.settings, repair=repair)
        self._record = prepared.record
        return prepared

    def start(self, log: Log) -> Archiver:
        """Once ``log`` is open: build the archiver (and retention, unless it keeps all),
        register it as the plugin ``walship.archiver``, start it."""
        assert self._record is not None, "prepare_open first"
        archiver = Archiver(log.store, self.settings, self._record, log.notify, log.closed_segments)
        if self.policy.mode != "all":
            archiver.retention = Retention(
                self.policy,
                log.store,
                self._record,
                archiver.url,
                log.closed_segments,
                log.segment_removed,
                log.notify,
            )
        log.plugins.register(archiver, name="walship.archiver")
        archiver.start()
        return archiver


def build_archiving(
    archive: Mapping[str, Any] | None, retention: Mapping[str, Any] | None
) -> ArchiveWiring | None:
    """Validate the ``archive:`` and ``retention:`` sections together; ``None`` without an
    archive (retention then keeps everything).

    Raises:
        ConfigError: a bad key or value, or a retention policy that removes segments without an
            archive to hold them.
    """
    settings = ArchiveSettings.from_mapping(archive) if archive is not None else None
    policy = RetentionPolicy.from_mapping(retention)
    error = retention_without_archive(policy) if settings is None else None
    if error is not None:
        raise ConfigError(error.message())
    return ArchiveWiring(settings, policy) if settings is not None else None
