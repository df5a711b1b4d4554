"""What :meth:`walship.log.Log.stats` and the archiver's ``stats()`` return: typed
dictionaries, every key always present (a counter that never moved is 0), so that
``log.stats()["syncs"]`` type-checks and never raises ``KeyError``.

Both are plain dicts at run time (JSON-serialisable: ``json.dumps(log.stats())``); the keys
only grow from one release to the next.
"""

from __future__ import annotations

from typing import Any, TypedDict

from walship.core.latency import LatencyStats


class ArchiveStats(TypedDict):
    """The archiver's counters (``log.archiver.stats()``, ``log.stats()["archive"]``), since
    the log opened."""

    queued: int
    """Segments queued for upload (a segment queued again after a restart counts again)."""
    archived: int
    """Segments archived and verified: ``uploaded + already_archived``."""
    uploaded: int
    """Segments this archiver uploaded."""
    already_archived: int
    """Segments found in the archive already, identical (uploaded before a crash)."""
    bytes: int
    """Bytes of the segments archived."""
    failed_attempts: int
    """Upload attempts that failed (each retried until ``retries.attempts``)."""
    stalled: int
    """Times a segment's retries gave up (or it met a conflict): it stays pending."""
    lag_warnings: int
    """Times more than ``lag_warning`` segments were pending (``archive_lagging``)."""
    max_pending: int
    """The most segments pending at once."""
    checkpoints: int
    """Checkpoint snapshots stored in the archive."""
    prune_errors: int
    """Prunes of the archive (``archive.prune``) that failed (logged, never raised)."""
    pruned_objects: int
    """Archived objects removed by ``archive.prune``."""
    url: str
    """The archive's URL, without a password."""
    pending: int
    """Closed segments waiting for upload now (the stalled ones included)."""
    stalled_now: int
    """Pending segments whose retries gave up, now (``flush()`` retries them)."""
    lagging: bool
    """Whether the pending segments are above ``lag_warning`` since the last warning."""
    seconds_mean: float
    """Mean upload time of an archived segment (0.0 before the first)."""
    seconds_max: float
    """Longest upload time of an archived segment (0.0 before the first)."""
    removed: int
    """Local segments removed by retention."""
    shipping: dict[str, Any] | None
    """Live shipping's counters (``archive.ship_interval``), or ``None`` when it is off."""
    fenced: str | None
    """Why this writer is fenced (another writer took the archive over: the error's message),
    or ``None``; fenced, it uploads nothing more and refuses appends."""
    epoch: int
    """This writer's epoch at the archive (0: never taken over; see ``walship promote``)."""
    pending_bytes: int
    """Bytes of the closed segments waiting for upload now."""
    backpressure: bool
    """Whether appends wait for the archive now (``archive.max_pending`` reached)."""
    max_pending_bytes: int | None
    """``archive.max_pending`` (``None``: no backpressure)."""
    backpressure_waits: int
    """Appends that waited for the archive to catch up."""
    backpressure_refusals: int
    """Appends refused with ``ArchiveBackpressureError`` after ``backpressure_timeout``."""
    backpressure_episodes: int
    """Times the gate shut (pending bytes rose above ``max_pending``)."""
    destinations: list[ArchiveStats] | None
    """With several destinations (``archives:``): each one's own stats, in the configured
    order (each with its ``url``; the keys above then add them up: counters summed,
    ``pending`` and ``pending_bytes`` over the segments some destination misses,
    ``stalled_now`` over those no destination is still trying, ``url`` every URL
    comma-separated); ``None`` with one destination."""


class LogStats(TypedDict):
    """A log's counters since it opened (``log.stats()``), its position and its state."""

    frames: int
    """Frames appended (each frame of a batch counts)."""
    batches: int
    """Group commits: one write of the frames of one or more appends each."""
    bytes: int
    """Bytes written for frames, their headers included."""
    syncs: int
    """fdatasyncs of the active segment: one per batch under ``always``, one per flush under
    ``interval``, one per :meth:`~walship.log.Log.sync` that had something to sync."""
    rotations_forced: int
    """Segments closed by :meth:`~walship.log.Log.rotate`."""
    rotations_size: int
    """Segments closed on reaching ``max_segment_bytes``."""
    rotations_age: int
    """Segments closed on reaching ``max_segment_age``."""
    failures: int
    """1 once the log failed (it stays failed until reopened), else 0."""
    last_seq: int
    """The commit_seq of the last frame written (0 when none)."""
    durable_seq: int
    """Every frame up to this commit_seq is durable."""
    active_segment: str | None
    """The file name of the segment being appended to (``None`` once closed)."""
    segments: int
    """Local segments, the active one included."""
    plugin_errors: dict[str, int]
    """Hook calls that raised, per plugin name."""
    failed: str | None
    """Why the log failed (one line), or ``None``."""
    append_seconds: LatencyStats
    """How long each group commit took from its encoding to its return: the write and,
    under ``always``, its sync (an append's wait for its turn is not included)."""
    fsync_seconds: LatencyStats
    """How long each sync of the active segment took: a synced batch under ``always`` (its
    write and fdatasync: one ``pwritev2(RWF_DSYNC)`` where the store can, so they are not
    told apart), each flush under ``interval`` and each :meth:`~walship.log.Log.sync`; the
    syncs of a rotation and of ``close`` are not counted."""
    archive: ArchiveStats | None
    """The archiver's, or ``None`` without an ``archive`` section."""
    archive_pending_at_close: list[str] | None
    """The segments :meth:`~walship.log.Log.close` left pending upload (``None`` before close
    or without an archive)."""


__all__ = ["ArchiveStats", "LatencyStats", "LogStats"]
