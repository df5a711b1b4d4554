"""The read-only verification of a log: every header, frame and chain link (``walship verify``).

:func:`scan_store` reads every segment of a store and lists every problem without changing
anything; :func:`scan_segment` does the same for one segment's bytes (an archived segment, a
segment about to be shipped). Recovery (:mod:`walship.core.repair`) acts on what they find.

What the scan checks, segment by segment in sequence order:

* no segment is missing between the first and the last (``missing_segment``);
* each header is valid and carries its file's sequence number and, across the log, one
  instance_id (``bad_header``);
* each header's ``prev_segment_hash`` is the BLAKE3 of the whole previous file, and the first
  local segment's is the ``anchor`` when one is known (``chain_mismatch``);
* the frames, read by :class:`walship.core.frame.FrameScan`, are whole and valid and their
  commit_seq rises across the log (``corrupt_frame``). Damage at the end of the **last**
  segment (cut mid-frame, zero-filled, or garbage) with no valid frame continuing the sequence
  after it (:func:`walship.core.tail.find_continuation`) is what a crash leaves: a
  ``truncated_tail``, the only repairable problem; so is a header cut short while the last
  segment was being created.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING, Generic, TypeVar

from blake3 import blake3 as Blake3

from walship.core.frame import LENGTH_SIZE, ScanStop, StopReason, classify, summarize
from walship.core.header import (
    HEADER_SIZE,
    ZERO_HASH,
    SegmentHeader,
    parse_segment_name,
    segment_name,
    segment_seqs,
)
from walship.core.segment import PARALLEL_HASH_MIN, hash_worker
from walship.core.tail import find_continuation
from walship.errors import SegmentHeaderError, SegmentReadError

if TYPE_CHECKING:
    from concurrent.futures import Future

    from walship.store import SegmentStore

_SEQ_TS = struct.Struct(">QQ")
_SEQ = struct.Struct(">Q")


class ProblemKind(str, Enum):
    """What kind of damage a :class:`Problem` is."""

    TRUNCATED_TAIL = "truncated_tail"
    CORRUPT_FRAME = "corrupt_frame"
    BAD_HEADER = "bad_header"
    CHAIN_MISMATCH = "chain_mismatch"
    MISSING_SEGMENT = "missing_segment"


@dataclass(frozen=True)
class Problem:
    """One piece of damage: where it is, what it is, and whether recovery repairs it alone."""

    kind: ProblemKind
    segment: str
    offset: int
    detail: str
    repairable: bool = False

    def __str__(self) -> str:
        return f"{self.segment} at offset {self.offset}: {self.kind.value}: {self.detail}"

    def as_dict(self) -> dict[str, object]:
        return {
            "kind": self.kind.value,
            "segment": self.segment,
            "offset": self.offset,
            "detail": self.detail,
            "repairable": self.repairable,
        }


@dataclass
class SegmentScan:
    """What a scan learnt of one segment file."""

    name: str
    segment_seq: int
    size: int
    header: SegmentHeader | None = None
    valid_end: int = 0
    """Offset just after the last valid frame (the header's end when there is none)."""
    frame_count: int = 0
    first_commit_seq: int | None = None
    last_commit_seq: int | None = None
    first_timestamp_micros: int | None = None
    last_timestamp_micros: int | None = None
    blake3: bytes = b""
    """BLAKE3 of the whole file (of its bytes before ``unused_tail``, when it has one)."""
    chain_ok: bool | None = None
    """The prev hash matches the previous segment (``None``: nothing to check against)."""
    prefix_hasher: Blake3 | None = None
    """For the last segment: a hasher that has seen bytes ``[0, valid_end)``."""
    tail_is_zero: bool = False
    """Only zero bytes follow ``valid_end`` (and there are some)."""
    unused_tail: int = 0
    """Zero bytes after the last frame of the last segment of a store that preallocates: space
    reserved ahead of the active segment's end, never written. Not damage; recovery trims it."""


P = TypeVar("P")


@dataclass
class ScanResult(Generic[P]):
    """What a scan of a chain of segments found: each segment and every problem (of type
    ``P``), in segment order. :class:`LogScan` for a store; the archive's check
    (:class:`walship.archive.check.ArchiveScan`) has the same shape, so that ``inspect`` and
    ``verify`` show either."""

    segments: list[SegmentScan] = field(default_factory=list)
    problems: list[P] = field(default_factory=list)
    anchored: bool = True
    """False when the first segment's predecessor could not be checked (a non-zero prev hash
    and no anchor; for an archive: it does not start at the log's first segment)."""
    chain_restarts: list[str] = field(default_factory=list)
    """Segments whose zero prev hash was accepted as a restart of the chain (``seed_restarts``)."""

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def frame_count(self) -> int:
        return sum(s.frame_count for s in self.segments)

    @property
    def last_commit_seq(self) -> int | None:
        for s in reversed(self.segments):
            if s.last_commit_seq is not None:
                return s.last_commit_seq
        return None


@dataclass
class LogScan(ScanResult[Problem]):
    """The result of :func:`scan_store` and :func:`scan_segment`."""


def scan_store(
    store: SegmentStore,
    anchor: bytes | None = None,
    instance_id: int | None = None,
    seed_restarts: bool = False,
) -> LogScan:
    """Read every segment of ``store`` and report every problem; change nothing.

    Args:
        anchor: the expected prev hash of the first local segment, when older segments were
            removed (retention) and their hash is known from elsewhere.
        instance_id: when given, every header must carry it.
        seed_restarts: accept a prev hash of 32 zero bytes in a later segment as a restart of
            the chain (the seed wrote one after every restart) instead of a ``chain_mismatch``;
            each such segment is listed in ``chain_restarts``. Everything before a restart is
            then no longer tamper-evident from the segments after it.
    Raises:
        OSError: a segment could not be read.
    """
    walk = _Walk(anchor, instance_id, seed_restarts)
    seqs = segment_seqs(store)
    for i, seq in enumerate(seqs):
        is_last = i == len(seqs) - 1
        walk.check_gap(seq)
        mapped = walk.map(store, seq, is_last)
        if mapped is not None:
            size, data = mapped
            walk.segment(segment_name(seq), seq, size, data, is_last)
    return walk.scan


def scan_segment(name: str, data: bytes | memoryview) -> LogScan:
    """Scan one segment's bytes as :func:`scan_store` scans the only segment of a log: its
    header, every frame and its BLAKE3 (``segments[0]``); damage at its end is reported as
    :func:`scan_store` reports it in a last segment. Reads only ``data`` (no copy).

    Raises:
        ValueError: ``name`` is not a segment file name.
    """
    seq = parse_segment_name(name)
    if seq is None:
        raise ValueError(f"{name!r} is not a segment file name")
    walk = _Walk(None, None, False)
    view = data if isinstance(data, memoryview) else memoryview(data)
    walk.segment(name, seq, len(view), view, True)
    return walk.scan


class _Walk:
    """The state of one scan across the segments of a log, in order: the result so far, the
    previous segment (for gaps and the chain), the instance_id every header must carry, and
    the last commit_seq (the frames of the next segment must continue it)."""

    def __init__(self, anchor: bytes | None, instance_id: int | None, seed_restarts: bool):
        self.scan = LogScan()
        self.anchor = anchor
        self.seed_restarts = seed_restarts
        self.instance = instance_id
        self.instance_from = f"the configured {instance_id}"
        self.prev: SegmentScan | None = None
        self.last_seq: int | None = None

    def problem(self, kind: ProblemKind, segment: str, offset: int, detail: str) -> None:
        self.scan.problems.append(Problem(kind, segment, offset, detail))

    def check_gap(self, seq: int) -> None:
        """Report the segments missing between the previous one and ``seq``."""
        prev = self.prev
        if prev is None or seq == prev.segment_seq + 1:
            return
        missing = segment_name(prev.segment_seq + 1)
        if seq != prev.segment_seq + 2:
            missing = f"{missing}..{segment_name(seq - 1)}"
        detail = f"segment(s) missing between {prev.name} and {segment_name(seq)}"
        self.problem(ProblemKind.MISSING_SEGMENT, missing, 0, detail)

    def map(self, store: SegmentStore, seq: int, is_last: bool) -> tuple[int, memoryview] | None:
        """The size of segment ``seq`` and a mapped view of its bytes (no copy: it goes, and
        the file is unmapped, with its last reference); ``None`` when it cannot be read (the
        problem is reported). Of the last segment only what was ever written is mapped: the
        space a preallocating store reserved after it reads as zeros, and touching it would
        only fill memory."""
        name = segment_name(seq)
        try:
            size = store.size(name) if is_last and store.capabilities.preallocates else -1
            written = store.written_end(name) if size > 0 else -1
            data = store.map(name, written if 0 <= written < size else None)
        except SegmentReadError as e:  # e.g. an archived copy altered or gone
            kind = ProblemKind.MISSING_SEGMENT if e.missing else ProblemKind.CHAIN_MISMATCH
            self.problem(kind, name, 0, str(e))
            self.prev = SegmentScan(name, seq, 0)
            self.scan.segments.append(self.prev)
            return None
        return max(size, len(data)), data

    def segment(self, name: str, seq: int, size: int, data: memoryview, is_last: bool) -> None:
        """Check one segment's header, chain link and frames, and hash it."""
        hashing = _hash_async(data)
        seg = SegmentScan(name, seq, size)
        self.scan.segments.append(seg)
        self.prev, prev = seg, self.prev
        try:
            seg.header = SegmentHeader.decode(data, name, seq)
        except SegmentHeaderError as e:
            torn_create = is_last and len(data) < HEADER_SIZE
            seg.blake3 = _hash_result(hashing, data).digest()
            kind = ProblemKind.TRUNCATED_TAIL if torn_create else ProblemKind.BAD_HEADER
            detail = str(e).removeprefix(f"{name}: ")
            self.scan.problems.append(Problem(kind, name, 0, detail, repairable=torn_create))
            return
        self.check_instance(seg, seg.header)
        self.check_chain(seg, seg.header, prev)
        self.check_frames(seg, data, is_last)
        whole = _hash_result(hashing, data)
        seg.blake3 = whole.digest()
        if is_last:
            if seg.valid_end == len(data):
                seg.prefix_hasher = whole
            else:
                seg.prefix_hasher = Blake3(data[: seg.valid_end])
                if seg.unused_tail:
                    seg.blake3 = seg.prefix_hasher.digest()  # the hash of its real bytes

    def check_instance(self, seg: SegmentScan, header: SegmentHeader) -> None:
        if self.instance is None:
            self.instance = header.instance_id
            self.instance_from = f"the {header.instance_id} of {seg.name}"
        elif header.instance_id != self.instance:
            detail = f"instance_id {header.instance_id} differs from {self.instance_from}"
            self.problem(ProblemKind.BAD_HEADER, seg.name, 8, detail)

    def check_chain(
        self, seg: SegmentScan, header: SegmentHeader, prev: SegmentScan | None
    ) -> None:
        """Check the prev hash against the previous segment, or the first one's against the
        anchor."""
        got = header.prev_segment_hash
        if prev is not None and prev.segment_seq + 1 == seg.segment_seq and prev.header is not None:
            seg.chain_ok = got == prev.blake3
            if not seg.chain_ok and self.seed_restarts and got == ZERO_HASH:
                seg.chain_ok = None
                self.scan.chain_restarts.append(seg.name)
            elif not seg.chain_ok:
                self.problem(
                    ProblemKind.CHAIN_MISMATCH,
                    seg.name,
                    32,
                    f"prev_segment_hash {got.hex()[:16]}... is not the "
                    f"BLAKE3 of {prev.name} ({prev.blake3.hex()[:16]}...)",
                )
        elif len(self.scan.segments) == 1:  # the first segment of the store
            if self.anchor is not None:
                seg.chain_ok = got == self.anchor
                if not seg.chain_ok:
                    self.problem(
                        ProblemKind.CHAIN_MISMATCH,
                        seg.name,
                        32,
                        f"prev_segment_hash {got.hex()[:16]}... is not the recorded hash of "
                        f"segment {seg.segment_seq - 1} ({self.anchor.hex()[:16]}...)",
                    )
            elif got != ZERO_HASH:
                self.scan.anchored = False

    def check_frames(self, seg: SegmentScan, data: memoryview, is_last: bool) -> None:
        problem = scan_frames(seg, data, self.last_seq, is_last)
        if seg.last_commit_seq is not None:
            self.last_seq = seg.last_commit_seq
        if len(data) < seg.size and (problem is None or seg.tail_is_zero):
            # Zeros after the last frame, then never-written reserved space to the end: the
            # unused end of the active segment, not damage.
            seg.unused_tail = seg.size - seg.valid_end
            problem = None
        if problem is not None:
            if problem.repairable and not is_last:  # a sealed segment is never torn
                problem = Problem(
                    ProblemKind.CORRUPT_FRAME, seg.name, problem.offset, problem.detail
                )
            self.scan.problems.append(problem)


def scan_frames(
    seg: SegmentScan, data: memoryview, last_seq: int | None, is_last: bool
) -> Problem | None:
    """Walk the frames of one segment (``data``: the whole file) with
    :func:`walship.core.frame.summarize` (the scanner's checks); fill ``seg``; return the
    first problem, if any: a commit_seq that does not rise above ``last_seq`` and the frame
    before, or the damage where the scan stopped (:func:`_damage`)."""
    walked = summarize(data, HEADER_SIZE, last_seq)  # no object per frame (native: in C)
    count = walked.frames
    prev = walked.last_seq if count else -1 if last_seq is None else last_seq
    _fill(seg, data, count, prev, walked.last_ts, walked.end)
    if walked.regressed:
        # A valid CRC with a sequence that goes back is not a torn write: never repairable.
        (seq,) = _SEQ.unpack_from(data, walked.end + LENGTH_SIZE)
        detail = f"commit_seq {seq} does not follow {prev if prev >= 0 else last_seq}"
        return Problem(ProblemKind.CORRUPT_FRAME, seg.name, walked.end, detail)
    stop = classify(data, walked.end)
    if stop.reason is StopReason.END:
        return None
    return _damage(seg, data, stop, None if prev < 0 else prev, is_last)


def _fill(
    seg: SegmentScan, data: memoryview, count: int, last: int, last_ts: int, valid_end: int
) -> None:
    seg.valid_end = valid_end
    seg.frame_count = count
    if count:
        seg.first_commit_seq, seg.first_timestamp_micros = _SEQ_TS.unpack_from(
            data, HEADER_SIZE + LENGTH_SIZE
        )
        seg.last_commit_seq = last
        seg.last_timestamp_micros = last_ts


def _damage(
    seg: SegmentScan, data: memoryview, stop: ScanStop, prev: int | None, is_last: bool
) -> Problem:
    """The problem where the frames of ``seg`` stopped: in the last segment a torn tail
    (repairable) when no valid frame continuing the sequence after ``prev`` follows it, else
    bit rot or tampering."""
    off = stop.offset
    zero = stop.reason is StopReason.ZEROS
    after = None if zero or not is_last else find_continuation(data, off, prev)
    if after is not None:
        found, next_seq = after
        follows = (
            f"a valid frame with commit_seq {next_seq} follows at offset {found}"
            if next_seq is not None
            else f"too many frame-like candidates follow to check them all (stopped at offset "
            f"{found}; crafted data?)"
        )
        return Problem(
            ProblemKind.CORRUPT_FRAME,
            seg.name,
            off,
            f"{stop.detail}, but {follows}: bit rot or tampering, not a torn write",
        )
    if stop.reason is StopReason.TRUNCATED:
        what = f"segment ends inside a frame ({stop.detail})"
    elif zero:
        seg.tail_is_zero = True
        what = f"{stop.remain} zero bytes after the last valid frame"
    else:
        what = f"{stop.detail}; {stop.remain} bytes after the last valid frame"
    # What a crash can leave at the end of the log; repairable if this is the last segment.
    return Problem(ProblemKind.TRUNCATED_TAIL, seg.name, off, what, repairable=True)


def _hash_async(data: memoryview) -> Future[Blake3] | None:
    """Start hashing ``data`` on the helper thread (while the frames are scanned), if large."""
    if len(data) >= PARALLEL_HASH_MIN and (pool := hash_worker()) is not None:
        return pool.submit(Blake3, data)
    return None


def _hash_result(hashing: Future[Blake3] | None, data: memoryview) -> Blake3:
    return hashing.result() if hashing is not None else Blake3(data)
