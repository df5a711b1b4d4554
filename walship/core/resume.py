"""Taking a recovered log up for appends: its segment manager, its index, its stamp floor.

:func:`resume` runs on the opening thread, holding the store's lock, right after
:func:`walship.core.repair.recover`; :class:`walship.log.Log` builds its writer and readers on
the :class:`~walship.core.state.LogState` it returns.
"""

from __future__ import annotations

from walship.core import frame as framing
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, read_header, segment_name
from walship.core.index import Index
from walship.core.repair import RecoveredLog
from walship.core.rotation import Clock, RotationPolicy
from walship.core.segment import ActiveSegment, SegmentManager
from walship.core.state import LogState
from walship.store import SegmentStore


def resume(
    store: SegmentStore,
    recovered: RecoveredLog,
    instance_id: int,
    policy: RotationPolicy,
    clock: Clock,
    *,
    preallocate: bool,
) -> LogState:
    """The state of the recovered log: the counters, the index, the active segment (made
    durable: recovery may have read it from the page cache), if recovery left one (else the
    caller opens a new one at ``recovered.next_segment_seq``).

    Raises:
        OSError: the store failed (the caller closes the active segment and unlocks).
    """
    manager = SegmentManager(store, instance_id, policy, clock, preallocate=preallocate)
    ranges = recovered.segment_ranges
    # older segments of the log are gone from the store (retention removed them)
    trimmed = bool(ranges) and read_header(store, ranges[0][0]).prev_segment_hash != ZERO_HASH
    index = Index.of(ranges, trimmed, recovered.verified_ends)
    state = LogState(manager, recovered.next_commit_seq, index)  # what recovery found is on disk
    # stamps never go back, across restarts too: start from the newest one on disk
    manager.stamp.raise_floor(last_stamp_on_disk(store, recovered.active, index))
    if recovered.active is not None:
        manager.resume(recovered.active)
        # what recovery read may still be only in the page cache (the file's bytes, or
        # its directory entry): make it durable before durable_seq claims it
        manager.sync()
        store.sync_dir()
    return state


def last_stamp_on_disk(
    store: SegmentStore, active: ActiveSegment | None, index: Index
) -> int | None:
    """The newest timestamp in the local log: the last frame's (or header's) of its last
    segment; ``None`` when no segment is local."""
    if active is not None:
        last = active.last_timestamp_micros
        created = active.header.created_at_micros
        return created if last is None else max(last, created)
    if not index.ranges:
        return None
    name = segment_name(index.ranges[-1].segment_seq)  # sealed: rare, read it once
    data = store.read(name)
    stamp = SegmentHeader.decode(data[:HEADER_SIZE], name).created_at_micros
    for f in framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
        stamp = max(stamp, f.timestamp_micros)
    return stamp


__all__ = ["last_stamp_on_disk", "resume"]
