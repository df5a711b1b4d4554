"""Reading a log straight from its archive, without a local restore: :func:`open_archive`.

Every segment read is checked as a restore checks it (:mod:`walship.archive.plan`,
:mod:`walship.archive.check`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from walship.archive import ArchiveStore, SegmentManifest
from walship.archive.check import SegmentCheck, check_segment
from walship.archive.plan import ArchivePlan, describe_problems, plan_error
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE


class ArchiveReader:
    """Frames straight from an archive, without a local restore. Lists the archive once.

    Every segment read is checked as a restore checks it (:mod:`walship.archive.plan`,
    :mod:`walship.archive.check`): against its manifest (size, BLAKE3, claims), chained to the
    one before it, its numbering rising; a missing or altered segment raises, naming it, and so
    does a read from the log's start of an archive that does not start at the log's first
    segment.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.archive = ArchiveStore(url, storage_options)
        self.url = self.archive.url
        self._plan: ArchivePlan | None = None

    def plan(self) -> ArchivePlan:
        """The archive's plan (one LIST, then one GET per manifest; made once).

        Raises:
            ArchiveNameError: an object named like walship's that is not a segment or
                manifest, or a hostile name (objects not walship's are ignored, one warning).
        """
        if self._plan is None:
            self._plan = ArchivePlan.load(self.archive)
        return self._plan

    def manifests(self) -> list[SegmentManifest]:
        """Every archived segment's (valid) manifest, oldest first."""
        plan = self.plan()
        return [plan.manifests[s] for s in sorted(plan.manifests)]

    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order, fetching the next
        segment while the current one is read.

        Raises:
            ArchiveIncompleteError: a segment the read needs is missing (named), or the read
                starts at the archive's first segment and that is not the log's first.
            ArchivePlanError: the manifests show damage (named).
            ArchiveMissingError / ArchiveIntegrityError: a needed segment is gone or altered.
        """
        plan = self.plan()
        manifests = self.manifests()
        wanted = [
            m
            for m in manifests
            if m.frame_count
            and m.last_commit_seq is not None
            and m.last_commit_seq >= from_seq
            and (to_seq is None or (m.first_commit_seq or 0) <= to_seq)
        ]
        if not wanted:
            return
        # What lies next to the wanted segments may hold wanted frames, whatever the manifests
        # say: a manifest's commit_seq range is a claim, checked only when its segment is
        # downloaded. So unless the first wanted segment is proven (by its download) to start
        # at or before from_seq, the run reaches back to the last segment whose manifest puts it
        # wholly before from_seq, and that one and everything after it is downloaded and
        # checked; the same at to_seq. The plan names any gap in between.
        assert plan.first_seq is not None and plan.last_seq is not None
        framed = [m for m in manifests if m.frame_count]
        head, tail = wanted[0], wanted[-1]
        if (head.first_commit_seq or 0) <= from_seq:
            first = head.segment_seq  # its download proves every frame before it is earlier
        else:
            before = [m for m in framed if (m.last_commit_seq or 0) < from_seq]
            first = before[-1].segment_seq if before else plan.first_seq
        if to_seq is None or (tail.last_commit_seq or 0) >= to_seq:
            last = tail.segment_seq if to_seq is not None else plan.last_seq
        else:
            after = [m for m in framed if (m.first_commit_seq or 0) > to_seq]
            last = after[0].segment_seq if after else plan.last_seq
        problems = plan.check(first, last).problems
        if problems:
            raise plan_error(f"cannot read {self.url}: {describe_problems(problems)}", problems)
        run = plan.segments(first, last)
        with ThreadPoolExecutor(max_workers=2) as pool:
            ahead: Future[SegmentCheck] = pool.submit(check_segment, self.archive, run[0])
            for i in range(len(run)):
                data = ahead.result().raise_problems()
                if i + 1 < len(run):
                    ahead = pool.submit(check_segment, self.archive, run[i + 1])
                for f in framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
                    if f.commit_seq < from_seq:
                        continue
                    if to_seq is not None and f.commit_seq > to_seq:
                        return
                    yield f

    def close(self) -> None:
        self._plan = None

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(url: str, storage_options: Mapping[str, Any] | None = None) -> ArchiveReader:
    """An :class:`ArchiveReader` over the archive at ``url``."""
    return ArchiveReader(url, storage_options)
