"""Retention: which local closed segments may go once they are safe in the archive.

``keep_local`` (the ``retention:`` section):

* ``all`` (default): keep every local segment.
* ``until_archived``: remove a closed segment once it is archived and verified.
* ``last:N``: keep the N newest closed segments (besides the active one); remove older ones once
  archived and verified.

Whatever the policy, a segment is removed only when (1) the durable archive record says it is
archived and verified at the configured URL (with several destinations, ``archives:``, at
every one of them: one destination down keeps every segment it misses), (2) when a checkpoint
was set (``Log.checkpoint(commit_seq)``), every frame in it is at or below the checkpoint,
and (3) it is not the active segment. Segments go oldest first and never out of order, so the
local log stays one contiguous, chained run; the BLAKE3 of the last removed segment stays in
the record as the anchor of the first local one.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence

from walship.archive.settings import RetentionPolicy
from walship.core.header import segment_name
from walship.core.record import ArchiveRecord
from walship.store import SegmentStore

logger = logging.getLogger("walship.retention")

__all__ = ["Retention", "RetentionPolicy", "SegmentRanges"]  # the policy is settings'

SegmentRanges = Callable[[], "list[tuple[int, int | None, int | None]]"]
"""Returns (segment_seq, first_commit_seq, last_commit_seq) of every local closed segment."""


class Retention:
    """Applies a :class:`RetentionPolicy` to one log's store. Thread-safe.

    Args:
        policy: what to keep.
        store: the log's segment store (segments are removed from it, durably).
        record: the durable archive record (what is archived; the checkpoint; the anchor).
        url: the archive URL a segment must be archived at, or the URLs of every destination
            (a segment must be archived at each).
        closed_segments: returns the local closed segments, oldest first (never the active one).
        forget_segment: called after a segment was removed, to drop it from the log's index.
        emit: fires a hook (``segment_removed``).
    """

    def __init__(
        self,
        policy: RetentionPolicy,
        store: SegmentStore,
        record: ArchiveRecord,
        url: str | Sequence[str],
        closed_segments: SegmentRanges,
        forget_segment: Callable[[int], None],
        emit: Callable[..., None],
    ) -> None:
        self.policy = policy
        self.store = store
        self.record = record
        self.urls: tuple[str, ...] = (url,) if isinstance(url, str) else tuple(url)
        """The destinations a segment must be archived at, all of them, before it goes."""
        self._closed_segments = closed_segments
        self._forget_segment = forget_segment
        self._emit = emit
        self.lock = threading.Lock()
        """Held while a pass runs; the archiver holds it to record and announce a segment."""
        self.removed = 0

    def removable(self) -> list[int]:
        """The segments :meth:`apply` would remove now, oldest first."""
        if self.policy.mode == "all":
            return []
        closed = self._closed_segments()
        if self.policy.mode == "last":
            closed = closed[: max(0, len(closed) - self.policy.keep_last)]
        checkpoint = self.record.checkpoint
        out: list[int] = []
        for seq, _first, last in closed:
            if not self.record.archived_everywhere(seq, self.urls):
                break
            if checkpoint is not None and last is not None and last > checkpoint:
                break
            out.append(seq)
        return out

    def apply(self) -> list[int]:
        """Remove every removable segment, oldest first; fire ``segment_removed`` for each.

        Returns the segment_seqs removed. A failed removal stops the pass (logged); the segment
        stays, and the next pass tries again.
        """
        with self.lock:
            removed: list[int] = []
            for seq in self.removable():
                name = segment_name(seq)
                try:
                    self.store.remove(name)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    logger.error("retention could not remove %s: %s", name, e)
                    break
                self._forget_segment(seq)
                removed.append(seq)
                self.removed += 1
                self._emit("segment_removed", name=name, segment_seq=seq, reason=self.policy.text)
            if removed:
                try:
                    # the entry of the last removed segment stays: it anchors the first local one
                    self.record.mark_removed(removed[-1])
                except OSError as e:
                    logger.error("retention could not prune the archive record: %s", e)
            return removed
