"""The checks of an archive's bytes, the other half of :mod:`walship.archive.plan`: one segment
against its manifest (:func:`check_segment`), a whole archive as ``walship verify URL`` checks it
(:func:`verify_archive`), and a restore's broken links judged on the bytes (:func:`diagnose`)."""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace

from walship.archive import ArchiveStore, SegmentManifest
from walship.archive.checkpoint_check import check_checkpoints
from walship.archive.parts import LiveTail, attach_tail
from walship.archive.plan import (
    ALTERED_SEGMENT,
    BAD_HEADER,
    BAD_MANIFEST,
    CHAIN_MISMATCH,
    CORRUPT_FRAME,
    LOG_FIRST_SEGMENT,
    MISSING_KEY,
    MISSING_SEGMENT,
    ArchivePlan,
    ArchiveProblem,
    describe_problems,
    short,
)
from walship.core.header import ZERO_HASH
from walship.core.scan import ProblemKind, ScanResult, SegmentScan, scan_segment
from walship.errors import ArchiveIntegrityError, ArchiveKeyError, ArchiveMissingError

_CLAIMS = (
    "instance_id",
    "prev_segment_hash",
    "created_at_micros",
    "frame_count",
    "first_commit_seq",
    "last_commit_seq",
    "first_timestamp_micros",
    "last_timestamp_micros",
)
"""What a manifest says of its segment besides size and BLAKE3: the plan relies on these."""


@dataclass
class SegmentCheck:
    """What :func:`check_segment` found: the raw bytes (``None`` when they could not be read),
    their scan, and every problem."""

    manifest: SegmentManifest
    data: bytes | None
    scan: SegmentScan | None
    problems: list[ArchiveProblem]
    key_error: ArchiveKeyError | None = None
    """The segment is sealed under a key that was not given (its problem is ``missing_key``)."""

    def found(self) -> SegmentManifest | None:
        """What the segment is, for the links between segments (:meth:`ArchivePlan.check`):
        the manifest when the bytes are not the ones it describes (the segment is reported
        as altered; its neighbours are judged by what the archive recorded of it), else the
        bytes' own header and frames (a manifest that lies about them is reported as
        itself); ``None`` when the bytes have no readable header."""
        seg = self.scan
        if seg is None or any(p.kind == ALTERED_SEGMENT for p in self.problems):
            return self.manifest
        if seg.header is None:
            return None
        return replace(
            self.manifest,
            instance_id=seg.header.instance_id,
            prev_segment_hash=seg.header.prev_segment_hash,
            frame_count=seg.frame_count,
            first_commit_seq=seg.first_commit_seq,
            last_commit_seq=seg.last_commit_seq,
            first_timestamp_micros=seg.first_timestamp_micros,
            last_timestamp_micros=seg.last_timestamp_micros,
        )

    def raise_problems(self) -> bytes:
        """The bytes, when nothing is wrong with them.

        Raises:
            ArchiveMissingError: the object is gone.
            ArchiveKeyError: it is sealed under a key that was not given (named).
            ArchiveIntegrityError: anything else (every problem named).
        """
        if not self.problems:
            assert self.data is not None
            return self.data
        if self.key_error is not None:
            raise self.key_error
        message = describe_problems(self.problems)
        if self.data is None and self.problems[0].kind == MISSING_SEGMENT:
            raise ArchiveMissingError(message, self.manifest.name)
        raise ArchiveIntegrityError(message, self.manifest.name)


def check_segment(
    archive: ArchiveStore, m: SegmentManifest, data: bytes | None = None
) -> SegmentCheck:
    """Download segment ``m`` (``data``: its raw bytes, downloaded already) and check its
    bytes: against its manifest (size, BLAKE3, every other claim), and its header and every
    frame (the offset of any damage). Thread-safe.

    Raises:
        OSError: the store failed.
    """
    name = m.name
    where = archive.object_url(m.object)
    try:
        if data is None:
            data = archive.get_unverified(m.segment_seq, m.compression, m.seal)
    except ArchiveMissingError:
        return SegmentCheck(
            m,
            None,
            None,
            [ArchiveProblem(MISSING_SEGMENT, name, 0, f"{where} is gone", m.segment_seq)],
        )
    except ArchiveIntegrityError as e:  # does not decompress, or is larger than any segment
        return SegmentCheck(
            m, None, None, [ArchiveProblem(ALTERED_SEGMENT, name, 0, str(e), m.segment_seq)]
        )
    except ArchiveKeyError as e:
        problem = ArchiveProblem(MISSING_KEY, name, 0, str(e), m.segment_seq)
        return SegmentCheck(m, None, None, [problem], e)
    problems: list[ArchiveProblem] = []
    scanned = scan_segment(name, data)  # header, every frame, and the BLAKE3
    seg = scanned.segments[0]
    digest = seg.blake3
    altered = len(data) != m.size or digest != m.blake3
    if altered:
        problems.append(
            ArchiveProblem(
                ALTERED_SEGMENT,
                name,
                0,
                f"{where} is {len(data)} bytes with BLAKE3 {short(digest)}, its manifest says "
                f"{m.size} bytes with BLAKE3 {short(m.blake3)}",
                m.segment_seq,
            )
        )
    for p in scanned.problems:
        # an archived segment is sealed: damage at its end is no torn tail
        kind = BAD_HEADER if p.kind is ProblemKind.BAD_HEADER else CORRUPT_FRAME
        problems.append(ArchiveProblem(kind, name, p.offset, p.detail, m.segment_seq))
    if not altered and not scanned.problems:
        assert seg.header is not None
        for claim in _CLAIMS:
            said = getattr(m, claim)
            found = getattr(seg.header if hasattr(seg.header, claim) else seg, claim)
            if said != found:
                problems.append(
                    ArchiveProblem(
                        BAD_MANIFEST,
                        name,
                        0,
                        f"manifest {archive.object_url(m.manifest_object)} does not match its "
                        f"segment: {claim} is {short(said)}, the segment says {short(found)}",
                        m.segment_seq,
                    )
                )
    return SegmentCheck(m, data, seg, problems)


def check_segments(
    archive: ArchiveStore, manifests: list[SegmentManifest], jobs: int
) -> Iterator[SegmentCheck]:
    """:func:`check_segment` of each manifest, in order, ``jobs`` downloads ahead (so at most
    ``jobs + 1`` segments are in memory)."""
    with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
        ahead: list[Future[SegmentCheck]] = []
        todo = iter(manifests)
        for m in todo:
            ahead.append(pool.submit(check_segment, archive, m))
            if len(ahead) >= jobs:
                break
        while ahead:
            done = ahead.pop(0).result()
            nxt = next(todo, None)
            if nxt is not None:
                ahead.append(pool.submit(check_segment, archive, nxt))
            yield done


# --- verifying a whole archive ----------------------------------------------------------------


@dataclass
class ArchiveScan(ScanResult[ArchiveProblem]):
    """What :func:`verify_archive` found: a scan of each segment whose bytes were read (chained
    on those bytes), and every problem of the archive, in segment order (``anchored``: the
    archive starts at the log's first segment). The shape of
    :class:`walship.core.scan.LogScan`, so that ``inspect`` and ``verify`` show either."""

    url: str = ""
    zero_hash_breaks: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    """Objects that are not walship's, ignored (a note of the report, never a problem)."""
    checkpoints: list[int] = field(default_factory=list)
    """The commit_seq of every checkpoint the archive holds (each one checked)."""
    pruned_to: int | None = None
    """The segment a prune marker says the archive starts at (``None``: never pruned)."""
    fenced: dict[str, str] = field(default_factory=dict)
    """A fenced writer's leftovers (:mod:`walship.archive.epoch`), name -> why: ignored, a
    note of the report, never a problem (the new writer replaces them)."""


def verify_archive(
    archive: ArchiveStore, seed_restarts: bool = False, jobs: int = 4
) -> ArchiveScan:
    """Check everything the archive holds: the plan of every segment (:meth:`ArchivePlan.check`)
    and the bytes of every segment that has its manifest and object (:func:`check_segment`).
    Reads everything, changes nothing. The problems are exactly those that make a full restore
    fail, and those of the checkpoints (each snapshot downloaded and checked:
    :func:`walship.archive.checkpoint_check.check_checkpoints`). A pruned archive is checked
    from where its prune marker says it starts.
    fail, and parts that prove nothing (``missing_part``, :mod:`walship.archive.parts`): the
    live-shipped parts after the last sealed segment are checked as a restore uses them. A
    fenced writer's leftovers are not problems: they are named in ``fenced``.

    Raises:
        ArchiveNameError: an object named like walship's that is not a segment or manifest,
            or a hostile name (objects that are not walship's are ignored: ``foreign``).
        OSError: the store failed.
    """
    plan = ArchivePlan.load(archive)
    try:
        tail = attach_tail(plan)  # the parts after the last sealed segment, checked
    except ArchiveKeyError as e:  # named as a problem; the sealed segments are still checked
        tail = LiveTail(problems=[ArchiveProblem(MISSING_KEY, "live-shipped parts", 0, str(e), 0)])
    scan = ArchiveScan(
        url=archive.url, anchored=plan.starts_at_log_start, foreign=list(plan.listing.foreign)
    )
    scan.checkpoints = sorted(plan.checkpoints)
    scan.pruned_to = plan.marker.first_segment if plan.marker is not None else None
    scan.fenced = dict(sorted(plan.fenced.items()))
    checkpoint_problems = check_checkpoints(plan)
    if plan.first_seq is None or plan.last_seq is None:
        scan.problems = checkpoint_problems + tail.problems + tail.unproven
        return scan
    first, last = plan.first_seq, plan.last_seq
    readable = [m for m in plan.segments(first, last) if plan.complete(m.segment_seq)]
    problems: list[ArchiveProblem] = []
    found: dict[int, SegmentManifest | None] = {}
    for c in check_segments(archive, readable, jobs):
        problems += c.problems
        if c.scan is not None:
            found[c.manifest.segment_seq] = c.found()
            c.scan.prefix_hasher = None  # no hasher kept alive per segment
            scan.segments.append(c.scan)
    run = plan.check(first, last, seed_restarts, found)
    scan.chain_restarts, scan.zero_hash_breaks = run.chain_restarts, run.zero_hash_breaks
    restarts = set(run.chain_restarts)
    prev: SegmentScan | None = None
    for seg in scan.segments:  # the table's chain column, on the bytes
        if seg.header is not None and prev is not None and prev.segment_seq + 1 == seg.segment_seq:
            if seg.name in restarts:
                seg.chain_ok = None
            elif prev.header is not None:
                seg.chain_ok = seg.header.prev_segment_hash == prev.blake3
        elif seg.header is not None and seg.segment_seq == LOG_FIRST_SEGMENT:
            seg.chain_ok = seg.header.prev_segment_hash == ZERO_HASH
        elif seg.header is not None and plan.marker and seg.segment_seq == plan.start:
            seg.chain_ok = seg.header.prev_segment_hash == plan.marker.prev_segment_hash
        prev = seg
    problems += checkpoint_problems
    extra = tail.problems + tail.unproven
    scan.problems = sorted(run.problems + problems + extra, key=lambda p: (p.seq, p.offset))
    return scan


LINK_KINDS = frozenset({CHAIN_MISMATCH, BAD_HEADER, CORRUPT_FRAME})
"""The kinds :meth:`ArchivePlan.check` reports of the links between segments."""


def diagnose(
    plan: ArchivePlan,
    first: int,
    last: int,
    problems: list[ArchiveProblem],
    seed_restarts: bool = False,
) -> list[ArchiveProblem]:
    """``problems`` of :meth:`ArchivePlan.check` (``first..last``), with every broken link
    judged on the bytes: the segments on both sides of each are downloaded and checked, so
    that a manifest that lies is named as itself rather than as its neighbour's broken link
    (what ``walship verify`` says of the same archive). For a restore's error only: it
    downloads just those segments.

    Raises:
        OSError: the store failed.
    """
    seqs = sorted(
        {p.seq + d for p in problems if p.kind in LINK_KINDS for d in (-1, 0)}
        & {s for s in plan.manifests if plan.complete(s)}
    )
    if not seqs:
        return problems
    checks = list(check_segments(plan.archive, [plan.manifests[s] for s in seqs], 4))
    found = {c.manifest.segment_seq: c.found() for c in checks}
    own = [p for c in checks for p in c.problems]
    run = plan.check(first, last, seed_restarts, found)
    return sorted(run.problems + own, key=lambda p: (p.seq, p.offset))
