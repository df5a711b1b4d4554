"""The segment manager: the active segment, appends, rotation and the BLAKE3 chain.

It is the seed's ``SegmentManager``: one write per batch, rotation checked by the caller after a
whole batch (a batch is never split across segments), ``prev_segment_hash`` = BLAKE3 of the whole
previous file, and a closed segment is synced before its hash goes into the next header.

Not thread-safe: the :class:`walship.log.Log` serialises every call.
"""

from __future__ import annotations

from dataclasses import dataclass

from blake3 import blake3

from walship.backends.base import SegmentFile, SegmentStore
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, segment_name
from walship.core.rotation import Clock, RotationPolicy, RotationReason, SystemClock


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
    synced_size: int = 0
    """The size the last successful sync made durable."""
    sync_failed: bool = False
    """A sync of this segment failed: bytes after ``synced_size`` may never reach the disk."""

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
    """

    def __init__(
        self,
        store: SegmentStore,
        instance_id: int,
        policy: RotationPolicy | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.instance_id = instance_id
        self.policy = policy or RotationPolicy()
        self.clock: Clock = clock or SystemClock()
        self.prev_hash = ZERO_HASH
        self.active: ActiveSegment | None = None
        self._force = False

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
        header = SegmentHeader(
            self.instance_id, segment_seq, self.clock.now_micros(), self.prev_hash
        )
        raw = header.encode()
        file = self.store.create(segment_name(segment_seq), raw)
        self.active = ActiveSegment(
            file, header, self.clock.monotonic(), len(raw), blake3(raw), synced_size=len(raw)
        )
        return self.active

    def resume(self, active: ActiveSegment) -> None:
        """Continue an existing segment (after recovery), e.g. with its hasher and counters."""
        if self.active is not None:
            raise RuntimeError(f"segment {self.active.name} is still active")
        active.synced_size = active.size  # what recovery found on disk; the caller syncs it
        self.active = active
        self.prev_hash = active.header.prev_segment_hash

    def append(
        self,
        data: bytes | bytearray | memoryview,
        frame_count: int,
        first_commit_seq: int,
        last_commit_seq: int,
        timestamp_micros: int,
        sync: bool = False,
    ) -> None:
        """Write encoded frames with one write, then sync if asked.

        The caller checks :meth:`should_rotate` afterwards; a batch always lands whole in the
        active segment, which may so overshoot ``max_segment_bytes`` by one batch.

        Raises:
            OSError: the write or the sync failed. The manager's counters then no longer
                describe the file: the caller must stop using it (the log fails closed).
        """
        active = self._require_active()
        if not data:
            return
        active.file.write(data)
        active.hasher.update(data)
        active.size += len(data)
        if active.first_commit_seq is None:
            active.first_commit_seq = first_commit_seq
            active.first_timestamp_micros = timestamp_micros
        active.last_commit_seq = last_commit_seq
        active.last_timestamp_micros = timestamp_micros
        active.frame_count += frame_count
        if sync:
            self._sync(active)

    def sync(self) -> None:
        """fdatasync the active segment. Raises ``OSError``."""
        self._sync(self._require_active())

    @staticmethod
    def _sync(active: ActiveSegment) -> None:
        try:
            active.file.sync()
        except OSError:
            active.sync_failed = True
            raise
        active.synced_size = active.size

    def discard_unsynced(self) -> int:
        """After a failed sync, cut the active segment back to the size the last good sync made
        durable, keeping the cut bytes in a side file ``<segment>.unsynced-<offset>``.

        After a failed fsync the kernel may have dropped the dirty pages while still showing
        their bytes ("fsyncgate"): a reopen would read them, build on them, and lose everything
        after them in the next power loss. Cutting them makes the file what the disk holds.
        Does nothing unless a sync of the active segment failed.

        Returns:
            The number of bytes cut.
        Raises:
            OSError: the store failed (the caller's log is failed already).
        """
        active = self.active
        if active is None or not active.sync_failed:
            return 0
        name = active.name
        offset = active.synced_size
        cut = self.store.read(name, offset)
        if cut:
            existing = set(self.store.list_names())
            side, n = f"{name}.unsynced-{offset}", 1
            while side in existing:
                n += 1
                side = f"{name}.unsynced-{offset}.{n}"
            self.store.write_atomic(side, cut)
            self.store.truncate(name, offset)
        active.size = offset
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

        Raises:
            OSError: the sync failed (the segment stays active: nothing may be built on it).
        """
        active = self._require_active()
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


__all__ = ["HEADER_SIZE", "ActiveSegment", "ClosedSegment", "SegmentManager"]
