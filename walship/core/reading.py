"""A writable log's reads: ``Log.read``, ``Log.read_batches`` and ``read(follow=True)``.

:class:`LogReader` reads the local segments of an open log beside its writer, from any thread:
a read takes the log's :class:`~walship.core.index.Index` once (immutable: one consistent
picture however long it reads), then reads each segment with
:func:`walship.core.reader.segment_batches` (the active one up to the size the writer reached).
A follower reads the files through :func:`walship.core.readonly.tail_frames`, woken where
``durable_seq`` advances (:meth:`walship.core.state.LogState.wake_followers`). Where the log
goes on after a checkpoint (:meth:`LogReader.checkpoint_position`, what ``Log.checkpoint``
tells the archive with a snapshot) is read from the same index.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, NamedTuple

from walship.core.frame import MAX_COMMIT_SEQ, Frame
from walship.core.header import read_header, segment_name
from walship.core.reader import segment_batches
from walship.core.readonly import tail_frames
from walship.core.record import ArchiveRecord
from walship.core.state import LogState
from walship.errors import CheckpointError, FramesUnavailableError, LogFailedError
from walship.store import SegmentStore

FOLLOW_BACKSTOP = 1.0
"""At most how long ``read(follow=True)`` waits between two looks at the files (it is woken
where ``durable_seq`` advances)."""


class CheckpointPosition(NamedTuple):
    """Where the log goes on after checkpoint ``commit_seq``: the segment that holds (or is
    to hold) frame ``commit_seq + 1``, its prev hash, and the highest commit_seq before it
    (re-exported by :mod:`walship.archiving`, the seam it crosses)."""

    commit_seq: int
    instance_id: int
    segment_seq: int
    prev_segment_hash: bytes
    prev_last_commit_seq: int | None


class LogReader:
    """The reads of one open log over ``state`` (any thread).

    ``check_process`` raises in a forked child, ``check_usable`` when the log is closed or
    failed, ``failed_error`` is the error of a failed log; ``record``'s ``restored_from`` is
    the floor of a log restored from a checkpoint (the frames up to it are in its snapshot).
    """

    __slots__ = ("_check_process", "_check_usable", "_failed_error", "_record", "_state", "_store")

    def __init__(
        self,
        state: LogState,
        store: SegmentStore,
        record: ArchiveRecord,
        *,
        check_process: Callable[[], None],
        check_usable: Callable[[], None],
        failed_error: Callable[[], LogFailedError],
    ) -> None:
        self._state = state
        self._store = store
        self._record = record
        self._check_process = check_process
        self._check_usable = check_usable
        self._failed_error = failed_error

    def batches(
        self, from_seq: int | None, to_seq: int | None, max_frames: int, views: bool
    ) -> Iterator[list[Any]]:
        """The generator of :meth:`walship.log.Log.read_batches` (its checks run at the first
        batch)."""
        self._check_process()
        state = self._state
        with state.index_lock:
            self._check_usable()
            index = state.index  # immutable: this read's picture, whatever happens meanwhile
            lowest = self.first_seq_locked()
        ranges, trimmed = index.ranges, index.trimmed
        if from_seq is None:
            from_seq = lowest
        elif from_seq < lowest and trimmed:
            raise self.unavailable(from_seq, lowest)
        hi = MAX_COMMIT_SEQ if to_seq is None else min(to_seq, MAX_COMMIT_SEQ)
        if hi < from_seq or hi < 0 or from_seq > MAX_COMMIT_SEQ:
            return
        lo = max(from_seq, 0)
        for i, r in enumerate(ranges):
            is_last = i == len(ranges) - 1  # maybe active: its last_commit_seq is not kept current
            if not is_last and r.last_commit_seq is not None and r.last_commit_seq < lo:
                continue
            if r.first_commit_seq is not None and r.first_commit_seq > hi:
                return
            limit = None
            if is_last:
                with state.index_lock:
                    active = state.manager.active
                    if active is not None and active.segment_seq == r.segment_seq:
                        limit = active.size
            name = segment_name(r.segment_seq)
            try:
                done = yield from segment_batches(
                    self._store,
                    name,
                    lo=lo,
                    hi=hi,
                    max_frames=max_frames,
                    views=views,
                    trusted_end=r.verified_end,
                    limit=limit,
                    failed=self._failed_now,
                )
            except FileNotFoundError:
                raise self.unavailable(max(lo, r.first_commit_seq or lo)) from None
            if done:
                return

    def _failed_now(self) -> LogFailedError | None:
        """The error a reader raises when the log failed (and cut bytes under it), or ``None``."""
        return self._failed_error() if self._state.failed is not None else None

    def follow(
        self, from_seq: int | None, to_seq: int | None, timeout: float | None
    ) -> Iterator[Frame]:
        """``read(follow=True)``: the frames from ``from_seq`` (default
        :meth:`LogReader.first_seq`), then each new one as it becomes durable (woken where
        ``durable_seq`` advances; under durability ``none`` that is at a rotation, ``sync`` or
        close), read from the files
        by :func:`walship.core.readonly.tail_frames` (only frames at or below ``durable_seq``).
        Ends at ``to_seq``, after ``timeout`` seconds without a new frame (``None``: never), or
        when the log is closed (once every durable frame was yielded). Any thread.

        Raises:
            FramesUnavailableError: as ``read``; and while following, when retention
                removed segments this read had still to reach.
            LogFailedError: the log failed (once every frame durable before it was yielded).
            LogForkedError: called in a forked child.
        """
        self._check_process()
        self._check_usable()
        state = self._state
        start = self.first_seq() if from_seq is None else from_seq
        seen: list[tuple[int | None, int]] = []
        final = [False]

        def wait(seconds: float, last_seq: int | None) -> bool:
            """Until ``durable_seq`` passes what this read has (once per change of it)."""
            have = max(last_seq or 0, start - 1)
            with state.durable_changed:
                state.followers += 1
                try:
                    now = (last_seq, state.durable_seq)
                    idle = state.durable_seq <= have or seen == [now]
                    if idle and not state.closed and state.failed is None:
                        state.durable_changed.wait(seconds)
                    seen[:] = [(last_seq, state.durable_seq)]
                finally:
                    state.followers -= 1
            if state.failed is not None or state.closed:
                # one last look for what was durable before the failure (or the close)
                final[0], again = True, not final[0]
                if not again and state.failed is not None:
                    raise self._failed_error()
                return again
            return True

        yield from (
            frame
            for _, frame in tail_frames(
                self._store,
                start,
                to_seq,
                follow=True,
                timeout=timeout,
                wait=wait,
                limit=lambda: state.durable_seq,
                poll_interval=FOLLOW_BACKSTOP,
            )
        )

    def first_seq(self) -> int:
        """The lowest commit_seq a read can return (see :attr:`walship.log.Log.first_seq`)."""
        with self._state.index_lock:
            return self.first_seq_locked()

    def first_seq_locked(self) -> int:
        """:meth:`first_seq`, the caller holding the index lock."""
        state = self._state
        first = state.index.first_commit_seq()
        active = state.manager.active
        if first is None and active is not None:
            first = active.first_commit_seq
        if first is None:
            return state.next_seq
        floor = self._record.restored_from
        return first if floor is None else max(first, floor + 1)  # the rest is in the snapshot

    def checkpoint_position(self, commit_seq: int, instance_id: int) -> CheckpointPosition:
        """Where frame ``commit_seq + 1`` is (or will be): the first local segment whose last
        frame is after ``commit_seq``, else the active segment
        (:meth:`~walship.core.index.Index.holding_after`), with its prev hash read from its
        header. Any thread; the index lock held for an instant.

        Raises:
            CheckpointError: frame ``commit_seq + 1`` is no longer local (so where the log
                goes on after the checkpoint is unknown).
            OSError: the segment's header could not be read.
        """
        state = self._state
        with state.index_lock:
            seg = state.index.holding_after(commit_seq)
            active = state.manager.active
            first = seg.first_commit_seq if seg is not None else None
            if active is not None and seg is not None and active.segment_seq == seg.segment_seq:
                first = active.first_commit_seq
            lowest = self.first_seq_locked()
        if (
            seg is None
            or (first is not None and first > commit_seq + 1)
            or (commit_seq + 1 < lowest)
        ):
            raise CheckpointError(
                f"checkpoint {commit_seq} with a snapshot: frame {commit_seq + 1} is no longer "
                f"in the local log (its first frame is {lowest}), so where the log goes on "
                "after the checkpoint is unknown"
            )
        return CheckpointPosition(
            commit_seq,
            instance_id,
            seg.segment_seq,
            read_header(self._store, seg.segment_seq).prev_segment_hash,
            first - 1 if first is not None else commit_seq,
        )

    def unavailable(self, from_seq: int, lowest: int | None = None) -> FramesUnavailableError:
        """The error of a read from ``from_seq`` whose frames are no longer local."""
        where = f" (the first local frame is {lowest})" if lowest is not None else ""
        return FramesUnavailableError(
            f"frames from commit_seq {from_seq} are not in the local log at "
            f"{self._store.location}{where}: their segments were removed (by retention, after "
            "archiving); read them from the archive with walship.open_archive(url)"
        )


__all__ = ["FOLLOW_BACKSTOP", "CheckpointPosition", "LogReader"]
