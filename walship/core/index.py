"""Which frames are where: the commit_seq range of every local segment of a log.

An :class:`Index` is immutable: a rotation, a new segment or a removal by retention builds the
next one and the log swaps it in whole (as raft-wal's ``state``), so that a reader takes one
reference and sees one consistent picture without a lock, however long it reads.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace


@dataclass(frozen=True)
class SegmentRange:
    """The commit_seq range of one local segment (``None``: no frame, or, for the active
    segment, not kept current)."""

    segment_seq: int
    first_commit_seq: int | None
    last_commit_seq: int | None
    verified_end: int = 0
    """The file's bytes before this offset were verified (every frame's CRC-32C) by the open's
    scan: the read path does not check them again (0: nothing was; a segment written since)."""


@dataclass(frozen=True)
class Index:
    """The local segments in order, the last one maybe the active segment (its range is filled
    in when it is sealed); ``trimmed``: older segments of the log were removed (retention), so
    frames before the first local one are gone, not merely absent."""

    ranges: tuple[SegmentRange, ...] = ()
    trimmed: bool = False

    @classmethod
    def of(
        cls,
        ranges: Iterable[tuple[int, int | None, int | None]],
        trimmed: bool,
        verified: Mapping[int, int] | None = None,
    ) -> Index:
        """An index of ``(segment_seq, first, last commit_seq)`` triples, in order;
        ``verified``: each segment's ``verified_end`` by segment_seq (the open's scan)."""
        ends = verified or {}
        return cls(tuple(SegmentRange(*r, ends.get(r[0], 0)) for r in ranges), trimmed)

    def opened(self, segment_seq: int) -> Index:
        """The index with a new (active, empty) last segment."""
        return replace(self, ranges=(*self.ranges, SegmentRange(segment_seq, None, None)))

    def sealed(self, first_commit_seq: int | None, last_commit_seq: int | None) -> Index:
        """The index with the last segment's range filled in (it is being closed)."""
        if not self.ranges:
            return self
        last = replace(
            self.ranges[-1], first_commit_seq=first_commit_seq, last_commit_seq=last_commit_seq
        )
        return replace(self, ranges=(*self.ranges[:-1], last))

    def without(self, segment_seq: int) -> Index:
        """The index once segment ``segment_seq`` was removed (it is trimmed from then on)."""
        kept = tuple(r for r in self.ranges if r.segment_seq != segment_seq)
        return Index(kept, trimmed=True)

    def closed(self) -> list[tuple[int, int | None, int | None]]:
        """(segment_seq, first, last commit_seq) of every segment with a successor: all but
        the last, which is the active one, or the one whose successor a failed rotation never
        created."""
        return [(r.segment_seq, r.first_commit_seq, r.last_commit_seq) for r in self.ranges[:-1]]

    def holding_after(self, commit_seq: int) -> SegmentRange | None:
        """The segment that holds (or is to hold) frame ``commit_seq + 1``: the first segment
        with a successor whose last frame is after ``commit_seq``, else the last one (maybe the
        active segment); ``None`` when there is no segment. Whether the frame is still there
        (retention may have removed it) is the caller's to check against the range."""
        closed = self.ranges[:-1]
        return next(
            (r for r in closed if r.last_commit_seq is not None and r.last_commit_seq > commit_seq),
            self.ranges[-1] if self.ranges else None,
        )

    def first_commit_seq(self) -> int | None:
        """The first commit_seq of a sealed local segment, or ``None``."""
        for r in self.ranges:
            if r.first_commit_seq is not None:
                return r.first_commit_seq
        return None


__all__ = ["Index", "SegmentRange"]
