"""The segment manager: the active segment, appends, rotation and the BLAKE3 chain.

It is the seed's ``SegmentManager``: one write per batch, rotation checked by the caller after a
whole batch (a batch is never split across segments), ``prev_segment_hash`` = BLAKE3 of the whole
previous file, and a closed segment is synced before its hash goes into the next header.

Not thread-safe: the :class:`walship.log.Log` serialises every call.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from threading import Lock
from typing import TYPE_CHECKING, Protocol

from blake3 import blake3

from walship.core.frame import FRAME_OVERHEAD, encode_checked_at
from walship.core.header import (
    HEADER_SIZE,
    ZERO_HASH,
    SegmentHeader,
    create_segment,
    segment_name,
)
from walship.core.rotation import Clock, RotationPolicy, RotationReason, Stamper, SystemClock
from walship.store import SegmentFile, SegmentStore, free_name, written_bytes

if TYPE_CHECKING:
    from concurrent.futures import ThreadPoolExecutor

PREALLOCATE_STEP = 64 * 1024 * 1024
"""Space reserved ahead of the active segment's end at a time (never beyond
``max_segment_bytes``), on stores that can preallocate: etcd reserves 64 MB too."""
RESERVE_PAD = 64 * 1024
"""Reserved beyond ``max_segment_bytes`` (more than any filesystem block)."""
PARALLEL_HASH_MIN = 1024 * 1024
"""A batch at least this large is hashed on a helper thread while it is written, chunk by chunk
(the write system call gives up the interpreter lock, so a second core does the hashing)."""

_WRITE_CHUNK = 1024
"""Buffers per gathering write (Linux's IOV_MAX): one system call per chunk."""

Buffers = bytes | bytearray | memoryview | list[bytes | bytearray | memoryview]

BUFFER_KEEP = 8 * 1024 * 1024
"""The encode buffer is let go after a batch that grew it past this many bytes."""
GATHER_MIN_PAYLOAD = 16 * 1024
"""Batches whose payloads average at least this many bytes are written from the payloads
themselves with one gathering write, not copied into the encode buffer first."""

_hash_pool: ThreadPoolExecutor | None = None
_hash_pool_lock = Lock()


def _forget_hash_worker() -> None:
    global _hash_pool
    _hash_pool = None  # a forked child has none of its parent's threads


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_forget_hash_worker)


def hash_worker() -> ThreadPoolExecutor | None:
    """The process's one hashing thread, or ``None`` on a single-core machine."""
    global _hash_pool
    if _hash_pool is None and (os.cpu_count() or 1) > 1:
        from concurrent.futures import ThreadPoolExecutor  # only once a batch is large

        with _hash_pool_lock:
            if _hash_pool is None:
                _hash_pool = ThreadPoolExecutor(1, thread_name_prefix="walship-hash")
    return _hash_pool


def _update_all(hasher: blake3, buffers: list[bytes | bytearray | memoryview]) -> None:
    update = hasher.update
    for b in buffers:
        update(b)


class Append(Protocol):
    """One append of a batch: its payloads, their type, and (set by the encoder) the
    commit_seq of its first frame."""

    payloads: Sequence[bytes | bytearray | memoryview]
    payload_type: int
    first_seq: int


class BatchEncoder:
    """Encodes a batch of appends for one write, numbering their frames.

    Frames are encoded in place into one kept buffer (appending to a cleared bytearray would
    give its memory back and fault it in again every batch); payloads averaging
    :data:`GATHER_MIN_PAYLOAD` bytes or more are not copied at all: the same encoder
    (:func:`~walship.core.frame.encode_checked_at`, gathering) puts only the frame heads and CRCs
    into the buffer, and the buffers returned are views of them around the caller's payloads
    (one gathering write). Not thread-safe: the holder of the log's I/O turn uses it.
    """

    def __init__(self) -> None:
        self._buf = bytearray()

    def encode(
        self,
        batch: Sequence[Append],
        first_seq: int,
        timestamp_micros: int,
        nbytes: int,
        frames: int,
    ) -> Buffers:
        """Encode ``batch`` (``frames`` frames, ``nbytes`` payload bytes, payloads checked
        already) as frames ``first_seq``, ... stamped ``timestamp_micros``; set each append's
        ``first_seq``. Hand the result to :meth:`release` once written."""
        seq = first_seq
        gather = nbytes >= GATHER_MIN_PAYLOAD * frames
        pieces: list[bytes | bytearray | memoryview] | None = [] if gather else None
        need = (0 if gather else nbytes) + frames * FRAME_OVERHEAD
        buf = self._buf
        if len(buf) < need:  # a new buffer, never a resize: views of the old one may live on
            buf = self._buf = bytearray(max(need, 2 * len(buf)))
        if len(batch) == 1:
            batch[0].first_seq = seq
            off = encode_checked_at(
                buf, 0, seq, timestamp_micros, batch[0].payload_type, batch[0].payloads, pieces
            )
            return memoryview(buf)[:off] if pieces is None else pieces
        off = 0
        i = 0
        while i < len(batch):  # one encoder call per run of appends of one payload type
            ptype = batch[i].payload_type
            start = seq
            items: list[bytes | bytearray | memoryview] = []
            while i < len(batch) and batch[i].payload_type == ptype:
                batch[i].first_seq = seq
                seq += len(batch[i].payloads)
                items += batch[i].payloads
                i += 1
            off = encode_checked_at(buf, off, start, timestamp_micros, ptype, items, pieces)
        return memoryview(buf)[:off] if pieces is None else pieces

    def release(self, data: Buffers) -> None:
        """``data`` (from :meth:`encode`) is written: let its view go, and a buffer grown past
        :data:`BUFFER_KEEP`."""
        if isinstance(data, memoryview):
            data.release()
            if len(self._buf) > BUFFER_KEEP:
                self._buf = bytearray()


@dataclass(frozen=True)
class ClosedSegment:
    """What is known of a segment once it is closed (synced, never written again).

    ``blake3`` is the hash of the whole file, header included: the next segment's prev hash.
    ``reason`` is ``None`` when the segment was closed by closing the log rather than rotated.
    """

    name: str
    segment_seq: int
    size: int
    blake3: bytes
    prev_segment_hash: bytes
    created_at_micros: int
    frame_count: int
    first_commit_seq: int | None
    last_commit_seq: int | None
    first_timestamp_micros: int | None
    last_timestamp_micros: int | None
    reason: RotationReason | None

    @property
    def blake3_hex(self) -> str:
        return self.blake3.hex()


@dataclass
class ActiveSegment:
    """The segment being written. ``hasher`` has seen every byte in the file."""

    file: SegmentFile
    header: SegmentHeader
    opened_at: float
    size: int
    hasher: blake3
    frame_count: int = 0
    first_commit_seq: int | None = None
    last_commit_seq: int | None = None
    first_timestamp_micros: int | None = None
    last_timestamp_micros: int | None = None
    reserved: int = 0
    """How far the manager preallocated the file (0: not at all)."""
    synced_size: int = 0
    """The size the last successful sync made durable."""
    discard_from: int | None = None
    """After a failed write or sync: bytes from here on may never reach the disk, or belong to
    a batch that failed, and must be cut (see :meth:`SegmentManager.discard_unsynced`)."""

    @property
    def name(self) -> str:
        return segment_name(self.header.segment_seq)

    @property
    def segment_seq(self) -> int:
        return self.header.segment_seq


class SegmentManager:
    """Owns the active segment of one log.

    Args:
        store: where segments are written.
        instance_id: written into every header.
        policy: the rotation thresholds.
        clock: wall clock for ``created_at_micros`` and monotonic clock for age.
        preallocate: reserve space ahead of the active segment's end on a store that can
            (:data:`PREALLOCATE_STEP` at a time): worth it when appends are synced, since a
            synced overwrite of reserved blocks needs no metadata commit; not for unsynced
            bulk writes, which run faster into plain appended blocks.
    """

    def __init__(
        self,
        store: SegmentStore,
        instance_id: int,
        policy: RotationPolicy | None = None,
        clock: Clock | None = None,
        preallocate: bool = True,
    ) -> None:
        self.store = store
        self.instance_id = instance_id
        self.policy = policy or RotationPolicy()
        self.clock: Clock = clock or SystemClock()
        self.stamp = Stamper(self.clock)
        """Non-decreasing wall-clock stamps: headers here, frames in the log."""
        self.prev_hash = ZERO_HASH
        self.active: ActiveSegment | None = None
        self._force = False
        self._preallocate = preallocate and store.capabilities.preallocates

    def _require_active(self) -> ActiveSegment:
        if self.active is None:
            raise RuntimeError("no active segment: open one first")
        return self.active

    def open_new(self, segment_seq: int, prev_hash: bytes | None = None) -> ActiveSegment:
        """Create segment ``segment_seq`` (header durable on return) and make it active.

        ``prev_hash`` defaults to the hash of the segment this manager closed last (zeros for a
        new log).

        Raises:
            FileExistsError: the segment exists already.
            OSError: the store failed.
        """
        if self.active is not None:
            raise RuntimeError(f"segment {self.active.name} is still active")
        if prev_hash is not None:
            self.prev_hash = prev_hash
        header = SegmentHeader(self.instance_id, segment_seq, self.stamp(), self.prev_hash)
        file = create_segment(self.store, header)
        self.active = ActiveSegment(
            file,
            header,
            self.clock.monotonic(),
            HEADER_SIZE,
            blake3(header.encode()),
            synced_size=HEADER_SIZE,
        )
        self._reserve(self.active, HEADER_SIZE)
        return self.active

    def _reserve(self, active: ActiveSegment, need: int) -> None:
        """Keep at least :data:`RESERVE_PAD` reserved ahead of ``need`` bytes, reserving in
        steps of :data:`PREALLOCATE_STEP` up to ``max_segment_bytes`` + :data:`RESERVE_PAD`.

        The reserved space past the data thus always holds whole blocks never written: that is
        how recovery tells it from written zeros (``SegmentStore.written_end``).

        Raises ``OSError`` from the store (the caller fails the log closed).
        """
        limit = self.policy.max_segment_bytes + RESERVE_PAD
        ahead = need + RESERVE_PAD
        if not self._preallocate or active.reserved >= limit or ahead <= active.reserved:
            return
        target = min(limit, max(ahead, active.reserved + PREALLOCATE_STEP))
        if limit - target < PREALLOCATE_STEP // 4:
            target = limit  # no sliver of a last step
        active.file.preallocate(target)
        active.reserved = target

    def resume(self, active: ActiveSegment) -> None:
        """Continue an existing segment (after recovery), e.g. with its hasher and counters."""
        if self.active is not None:
            raise RuntimeError(f"segment {self.active.name} is still active")
        active.synced_size = active.size  # what recovery found on disk; the caller syncs it
        self.active = active
        self.prev_hash = active.header.prev_segment_hash
        self._reserve(active, active.size)

    def append(
        self,
        data: Buffers,
        frame_count: int,
        first_commit_seq: int,
        last_commit_seq: int,
        timestamp_micros: int,
        sync: bool = False,
    ) -> None:
        """Write encoded frames (one buffer, or a list of buffers written with one gathering
        call) and update the segment's BLAKE3; then sync if asked.

        A batch of :data:`PARALLEL_HASH_MIN` bytes or more is hashed on a helper thread while it
        is written. The caller checks :meth:`should_rotate` afterwards; a batch always lands
        whole in the active segment, which may so overshoot ``max_segment_bytes`` by one batch.

        Raises:
            OSError: the write or the sync failed. The manager's counters then no longer
                describe the file: the caller must stop using it (the log fails closed).
            BaseException: anything else that interrupts it (KeyboardInterrupt, ...) is
                handled the same way: the batch is marked to be cut (:meth:`abandon`), the
                exception goes on, and the caller must fail the log.
        """
        active = self._require_active()
        buffers = data if isinstance(data, list) else [data]
        size = sum(map(len, buffers))
        if not size:
            return
        if self._preallocate:
            self._reserve(active, active.size + size)
        synced = False
        try:
            pool = hash_worker() if size >= PARALLEL_HASH_MIN else None
            if pool is None:
                if sync and active.synced_size == active.size:
                    active.file.write_durable(buffers)  # everything before is durable already
                    synced = True
                elif len(buffers) == 1:
                    active.file.write(buffers[0])
                else:
                    active.file.write_many(buffers)
                _update_all(active.hasher, buffers)
            else:
                # BLAKE3 keeps the interpreter lock while it hashes; a write gives it up. So each
                # chunk is hashed on the helper thread while this thread is inside the chunk's one
                # write system call; the helper is done (hashing outruns the page cache) by the time
                # the write returns and wants the lock back.
                for i in range(0, len(buffers), _WRITE_CHUNK):
                    chunk = buffers[i : i + _WRITE_CHUNK]
                    pending = pool.submit(_update_all, active.hasher, chunk)
                    try:
                        if len(chunk) == 1:
                            active.file.write(chunk[0])
                        else:
                            active.file.write_many(chunk)
                    finally:
                        pending.result()  # the hasher must not be used while the helper runs
        except BaseException:
            self._failed(active, active.size)  # the failed batch must not come back
            raise
        active.size += size
        if active.first_commit_seq is None:
            active.first_commit_seq = first_commit_seq
            active.first_timestamp_micros = timestamp_micros
        active.last_commit_seq = last_commit_seq
        active.last_timestamp_micros = timestamp_micros
        active.frame_count += frame_count
        if sync and not synced:
            self._sync(active)
        elif synced:
            active.synced_size = active.size

    def sync(self) -> None:
        """fdatasync the active segment. Raises ``OSError``."""
        self._sync(self._require_active())

    def abandon(self, size: int) -> None:
        """The active segment's bytes from ``size`` on belong to a batch that was not
        acknowledged (its append was interrupted): :meth:`discard_unsynced` cuts them."""
        if self.active is not None:
            self._failed(self.active, size)

    @staticmethod
    def _failed(active: ActiveSegment, cut_from: int) -> None:
        """Remember that bytes from ``cut_from`` on must go (the lowest such point wins)."""
        if active.discard_from is None or cut_from < active.discard_from:
            active.discard_from = cut_from

    def _sync(self, active: ActiveSegment) -> None:
        try:
            active.file.sync()
        except OSError:
            self._failed(active, active.synced_size)
            raise
        active.synced_size = active.size

    def discard_unsynced(self) -> int:
        """After a failed write or sync, cut the active segment back to where it is known good,
        keeping the cut bytes in a side file ``<segment>.unsynced-<offset>``.

        After a failed fsync the kernel may have dropped the dirty pages while still showing
        their bytes ("fsyncgate"): a reopen would read them, build on them, and lose everything
        after them in the next power loss. After a failed write, the complete frames of the
        failed batch would come back at a reopen although their append raised. Cutting makes the
        file what the log acknowledged. Does nothing unless a write or sync of the active
        segment failed.

        Returns:
            The number of bytes cut.
        Raises:
            OSError: the store failed (the caller's log is failed already).
        """
        active = self.active
        if active is None or active.discard_from is None:
            return 0
        name = active.name
        offset = active.discard_from
        cut = written_bytes(self.store, name, offset)
        if cut:
            self.store.write_atomic(free_name(self.store, f"{name}.unsynced-{offset}"), cut)
        self.store.truncate(name, offset)
        active.size = offset
        active.reserved = 0
        return len(cut)

    def should_rotate(self, now: float | None = None) -> RotationReason | None:
        """Whether to rotate now (forced > size > age), or ``None``; ``None`` if nothing is
        active."""
        active = self.active
        if active is None:
            return None
        age = (self.clock.monotonic() if now is None else now) - active.opened_at
        return self.policy.reason(self._force, active.size, age, active.frame_count)

    def force_rotate(self) -> None:
        """Make the next :meth:`should_rotate` answer ``FORCED``."""
        self._force = True

    def rotate(self, reason: RotationReason | None = None) -> ClosedSegment:
        """Close the active segment (synced first) and open the next, chained to its hash.

        Raises:
            OSError: the store failed; the log must fail closed.
        """
        closed = self.close(reason or self.should_rotate() or RotationReason.FORCED)
        self._force = False
        self.open_new(closed.segment_seq + 1, closed.blake3)
        return closed

    def close(self, reason: RotationReason | None = None) -> ClosedSegment:
        """Sync and close the active segment and return its record. Nothing is active after.

        A preallocated tail is cut first, so that a closed file holds exactly its frames (the
        seed's format) and its BLAKE3 is the hash of the file.

        Raises:
            OSError: the sync failed (the segment stays active: nothing may be built on it).
        """
        active = self._require_active()
        if not active.file.trim():  # trim syncs the whole file when it cuts anything
            self._sync(active)
        active.file.close()
        self.active = None
        digest = active.hasher.digest()
        self.prev_hash = digest
        return ClosedSegment(
            name=active.name,
            segment_seq=active.segment_seq,
            size=active.size,
            blake3=digest,
            prev_segment_hash=active.header.prev_segment_hash,
            created_at_micros=active.header.created_at_micros,
            frame_count=active.frame_count,
            first_commit_seq=active.first_commit_seq,
            last_commit_seq=active.last_commit_seq,
            first_timestamp_micros=active.first_timestamp_micros,
            last_timestamp_micros=active.last_timestamp_micros,
            reason=reason,
        )


__all__ = [
    "HEADER_SIZE",
    "ActiveSegment",
    "Append",
    "BatchEncoder",
    "ClosedSegment",
    "SegmentManager",
]
