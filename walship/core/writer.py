"""The write path of a log: a batch numbered, encoded, written and synced; rotation; close.

:class:`LogWriter` is the :class:`~walship.core.commit.BatchWriter` the group commit drives:
every method but ``check_usable`` runs on the thread that holds the log's I/O turn (the
leader, or an exclusive caller: :meth:`walship.log.Log.sync`, ``rotate``, ``close``, the
maintenance thread). It moves the log's :class:`~walship.core.state.LogState` (the commit_seqs,
the index, the counters) and fails the log through the ``fail`` it is given whenever an I/O
(or an interrupt) leaves the files in doubt: all of a step, or the log fails.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from time import perf_counter_ns
from typing import NoReturn

from walship.core.commit import Request
from walship.core.events import EventDispatcher
from walship.core.frame import FRAME_OVERHEAD, MAX_COMMIT_SEQ
from walship.core.rotation import RotationReason
from walship.core.segment import BatchEncoder, Buffers, ClosedSegment
from walship.core.state import LogState
from walship.errors import CommitSeqLimitError, LogFailedError
from walship.store import SegmentStore


class LogWriter:
    """The write path of one log over ``state`` (see the module docstring).

    ``sync``: every batch is synced before it is acknowledged (durability ``always``);
    ``check_usable`` raises the log's error when it takes no appends (any appender's thread);
    ``refusal`` returns it (or ``None``); ``fail`` puts the log into its failed state for an
    error and raises (:class:`~walship.errors.LogFailedError` for an I/O error, anything else
    as it is).
    """

    __slots__ = (
        "_encoder",
        "_events",
        "_fail",
        "_state",
        "_store",
        "check_usable",
        "refusal",
        "sync",
    )

    def __init__(
        self,
        state: LogState,
        store: SegmentStore,
        events: EventDispatcher,
        *,
        sync: bool,
        check_usable: Callable[[], None],
        refusal: Callable[[], BaseException | None],
        fail: Callable[[BaseException], NoReturn],
    ) -> None:
        self._state = state
        self._store = store
        self._events = events
        self._encoder = BatchEncoder()
        self.sync = sync
        self.check_usable = check_usable
        self.refusal = refusal
        self._fail = fail

    # --- the BatchWriter of the group commit ------------------------------------------------

    def write(self, batch: list[Request], begin_io: Callable[[], None]) -> bool:
        """Leader (holds the I/O turn): number and encode every request in one pass, call
        ``begin_io``, one write, one sync under ``always``; returns whether it synced.

        Raises:
            LogFailedError / LogClosedError / CommitSeqLimitError: nothing written.
            BaseException: whatever interrupted the write (the log is failed then, see
                :meth:`_commit_locked`).
        """
        started = perf_counter_ns()
        refusal = self.refusal()  # (failed before closed, as _settle_locked says it)
        if refusal is not None:
            raise refusal
        state = self._state
        first = state.next_seq
        frames = 0
        nbytes = 0
        for r in batch:
            frames += len(r.payloads)
            nbytes += r.nbytes
        if first + frames - 1 > MAX_COMMIT_SEQ:
            raise self._seq_limit_error(first, frames)
        ts = state.manager.stamp()  # never before the previous frame's, whatever the clock
        data = self._encoder.encode(batch, first, ts, nbytes, frames)
        sync = self.sync
        begin_io()
        writing = perf_counter_ns()
        try:
            self._commit_locked(data, frames, first, first + frames - 1, ts, sync)
        finally:
            self._encoder.release(data)
        done = perf_counter_ns()
        state.append_latency.record(done - started)
        if sync:
            state.fsync_latency.record(done - writing)
        counters = state.counters
        counters["batches"] += 1
        counters["frames"] += frames
        counters["bytes"] += nbytes + frames * FRAME_OVERHEAD
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
        state = self._state
        written, durable = state.written_seq, state.durable_seq
        active = state.manager.active
        size = active.size if active is not None else 0
        try:
            state.manager.append(data, frames, first, last, ts, sync)
            state.next_seq = last + 1
            state.written_seq = last
            if sync:
                state.durable_seq = last
                state.wake_followers()
        except BaseException as e:
            state.next_seq, state.written_seq, state.durable_seq = first, written, durable
            state.manager.abandon(size)
            self._fail(e)

    def rotation_due(self) -> bool:
        return self._state.manager.should_rotate() is not None

    def rotate_due(self) -> None:
        reason = self._state.manager.should_rotate()
        if reason is not None:
            with contextlib.suppress(LogFailedError):  # the batch is durable; the log is failed
                self.rotate_locked(reason)

    def written_seq(self) -> int:
        return self._state.written_seq

    def _seq_limit_error(self, first: int, frames: int) -> CommitSeqLimitError:
        return CommitSeqLimitError(
            f"the log at {self._store.location} cannot take {frames} more frame(s): commit_seq "
            f"{first + frames - 1} would exceed the format's limit 2**64-1 ({MAX_COMMIT_SEQ}); "
            "nothing was written"
        )

    # --- exclusive steps (the caller holds the I/O turn) ------------------------------------

    def sync_locked(self) -> None:
        """Sync what was written and not yet synced; a failure fails the log."""
        state = self._state
        written = state.written_seq
        if written == state.durable_seq:
            return
        started = perf_counter_ns()
        try:
            state.manager.sync()
            state.durable_seq = written
        except BaseException as e:
            self._fail(e)
        state.fsync_latency.record(perf_counter_ns() - started)
        state.wake_followers()
        state.counters["syncs"] += 1

    def forced_rotation_locked(self) -> ClosedSegment | None:
        """``Log.rotate``: seal the active segment (``None`` when it holds no frame)."""
        active = self._state.manager.active
        if active is not None and active.frame_count == 0:
            return None
        self._state.manager.force_rotate()
        return self.rotate_locked(RotationReason.FORCED)

    def rotate_locked(self, reason: RotationReason) -> ClosedSegment:
        """Seal the active segment and open the next one, then emit ``segment_closed`` and
        ``segment_opened``: all of it, or the log fails."""
        state = self._state
        written = state.written_seq
        # readers see the closing segment's range before the active one moves
        with state.index_lock:
            closing = state.manager.active
            if closing is not None:
                state.index = state.index.sealed(closing.first_commit_seq, closing.last_commit_seq)
        try:  # all of it, or the log fails: never left without an active segment
            closed = state.manager.rotate(reason)
            active = state.manager.active
            assert active is not None
            with state.index_lock:
                state.index = state.index.opened(active.segment_seq)
            state.durable_seq = written  # rotate synced the closed segment
            state.wake_followers()
            # "closed" only now: its successor exists, so the segment will never be written again
            self._events.emit("segment_closed", segment=closed, reason=reason.value)
            self._events.emit(
                "segment_opened",
                name=active.name,
                segment_seq=active.segment_seq,
                prev_segment_hash=active.header.prev_segment_hash,
            )
        except BaseException as e:
            self._fail(e)
        state.counters[f"rotations_{reason.value}"] += 1
        return closed

    def due_rotation_locked(self) -> None:
        """Rotate if the policy says so (the maintenance thread's age rotation)."""
        reason = self._state.manager.should_rotate()
        if reason is not None:
            self.rotate_locked(reason)

    def open_segment(self, segment_seq: int, prev_hash: bytes | None) -> None:
        """Open a new active segment (at open, when recovery left none) and announce it."""
        state = self._state
        active = state.manager.open_new(segment_seq, prev_hash)
        state.index = state.index.opened(segment_seq)
        self._events.emit(
            "segment_opened",
            name=active.name,
            segment_seq=segment_seq,
            prev_segment_hash=active.header.prev_segment_hash,
        )

    def close_locked(self) -> None:
        """Sync and close the active segment (a failed log's is closed unsynced)."""
        state = self._state
        active = state.manager.active
        if state.closed or active is None:  # closed meanwhile: queued appenders hear it
            return
        if state.failed is not None:
            active.file.close()
            return
        written = state.written_seq
        try:
            state.manager.close()
            state.durable_seq = written
        except BaseException as e:
            active.file.close()  # still active when its sync failed
            self._fail(e)


__all__ = ["LogWriter"]
