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
from walship.archive.parts import attach_tail
from walship.archive.plan import ArchivePlan, describe_problems, plan_error
from walship.archive.sealing import Keyring, keyring_argument
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE, segment_name
from walship.errors import FramesUnavailableError


class ArchiveReader:
    """Frames straight from an archive, without a local restore. Lists the archive once.

    Every segment read is checked as a restore checks it (:mod:`walship.archive.plan`,
    :mod:`walship.archive.check`): against its manifest (size, BLAKE3, claims), chained to the
    one before it, its numbering rising; a missing or altered segment raises, naming it, and so
    does a read from the log's start of an archive that does not start at the log's first
    segment.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        encryption: Mapping[str, Any] | Keyring | None = None,
    ) -> None:
        self.archive = ArchiveStore(url, storage_options, keyring=keyring_argument(encryption))
        self.url = self.archive.url
        self._plan: ArchivePlan | None = None

    def plan(self) -> ArchivePlan:
        """The archive's plan (one LIST, then one GET per manifest; made once).

        The live-shipped parts after the last sealed segment are part of it
        (:func:`walship.archive.parts.attach_tail`): a read ends with the last frame they prove.

        Raises:
            ArchiveNameError: an object named like walship's that is not a segment or
                manifest, or a hostile name (objects not walship's are ignored, one warning).
            ArchivePlanError: a part does not match its manifest or holds damaged frames.
        """
        if self._plan is None:
            plan = ArchivePlan.load(self.archive)
            tail = attach_tail(plan)  # the parts after the last sealed segment, checked
            if tail.problems:
                raise plan_error(
                    f"cannot read {self.url}: {describe_problems(tail.problems)}", tail.problems
                )
            self._plan = plan
        return self._plan

    def _check_pruned(
        self, plan: ArchivePlan, manifests: list[SegmentManifest], from_seq: int
    ) -> None:
        """Raise :class:`FramesUnavailableError` when ``from_seq`` lies before the first frame
        a pruned archive kept (a claim of its first manifest, checked when it is read)."""
        marker = plan.marker
        kept = [m.first_commit_seq for m in manifests if m.first_commit_seq is not None]
        if marker is None or not kept or from_seq >= kept[0]:
            return
        raise FramesUnavailableError(
            f"frames from commit_seq {from_seq} to {kept[0] - 1} were pruned from {self.url} "
            f"(its prune marker: it starts at {segment_name(marker.first_segment)}, kept for "
            f"the checkpoint at commit_seq {marker.checkpoint}): read from commit_seq "
            f"{kept[0]}, or restore from a checkpoint (walship restore --from-checkpoint)"
        )

    def manifests(self) -> list[SegmentManifest]:
        """Every archived segment's (valid) manifest, oldest first."""
        plan = self.plan()
        return [plan.manifests[s] for s in sorted(plan.manifests)]

    def read(
        self,
        from_seq: int | None = None,
        to_seq: int | None = None,
        *,
        follow: bool = False,
        interval: float = 1.0,
        timeout: float | None = None,
    ) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order, fetching the next
        segment while the current one is read. ``from_seq`` ``None``: from the archive's first
        frame (in a pruned archive, the first one its prune marker kept).

        With ``follow=True``: :func:`walship.archive.follow.follow_archive`: the frames there
        are, then each new sealed segment's as it is archived (one LIST every ``interval``
        seconds), until ``to_seq`` or ``timeout`` seconds without a new frame (``None``: never).

        Raises:
            FramesUnavailableError: ``from_seq`` lies before what a pruned archive kept
                (``walship prune``): those frames are gone on purpose; the message names the
                first frame kept and the checkpoint whose snapshot stands for the rest.
            ArchiveIncompleteError: a segment the read needs is missing (named), or the read
                starts at the archive's first segment and that is not the log's first.
            ArchivePlanError: the manifests show damage (named).
            ArchiveMissingError / ArchiveIntegrityError: a needed segment is gone or altered.
        """
        if follow:
            from walship.archive.follow import follow_archive

            yield from follow_archive(
                self.archive, from_seq or 1, to_seq, interval=interval, timeout=timeout
            )
            return
        plan = self.plan()
        manifests = self.manifests()
        if from_seq is None:
            from_seq = 1
        else:
            self._check_pruned(plan, manifests, from_seq)
        run = self._run(plan, manifests, from_seq, to_seq)
        if run:
            yield from self._frames(run, from_seq, to_seq)

    def _run(
        self,
        plan: ArchivePlan,
        manifests: list[SegmentManifest],
        from_seq: int,
        to_seq: int | None,
    ) -> list[SegmentManifest]:
        """The segments a read of ``from_seq..to_seq`` downloads (none: nothing wanted),
        checked against the plan.

        Raises:
            ArchiveIncompleteError / ArchivePlanError: as :meth:`read`.
        """
        wanted = [
            m
            for m in manifests
            if m.frame_count
            and m.last_commit_seq is not None
            and m.last_commit_seq >= from_seq
            and (to_seq is None or (m.first_commit_seq or 0) <= to_seq)
        ]
        if not wanted:
            return []
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
        return plan.segments(first, last)

    def _frames(
        self, run: list[SegmentManifest], from_seq: int, to_seq: int | None
    ) -> Iterator[Frame]:
        """The frames of ``run`` within ``from_seq..to_seq``, each segment checked as it is
        downloaded, the next one fetched while this one is read.

        Raises:
            ArchiveMissingError / ArchiveIntegrityError: as :meth:`read`.
        """
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


def open_archive(
    url: str,
    storage_options: Mapping[str, Any] | None = None,
    encryption: Mapping[str, Any] | Keyring | None = None,
) -> ArchiveReader:
    """An :class:`ArchiveReader` over the archive at ``url`` (``encryption``: the keys of an
    encrypted archive, as ``archive.encryption`` takes them; ``current`` may be left out)."""
    return ArchiveReader(url, storage_options, encryption)
