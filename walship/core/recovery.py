"""Recovery on open, and the read-only verification it is built on.

:func:`scan_store` reads every segment and lists every problem without changing anything (that is
``walship verify``). :func:`recover` acts on a scan:

* A torn tail of the **last** segment (cut mid-frame, zero-filled, or garbage after the last valid
  frame; or a header cut short while the segment was being created) is what a crash leaves
  behind: it is truncated to the last valid frame, the cut bytes are kept in a side file
  ``<segment>.torn-<offset>``, and the repair is reported.
* Damage anywhere else (a sealed segment, a broken chain, a missing segment in the middle, a bad
  header) raises :class:`walship.errors.LogCorruptError` naming the file and the offset. With
  ``salvage=True`` the log opens on the valid prefix instead: the damaged segment is cut at its
  last valid frame (cut bytes kept) and every later segment is renamed ``<segment>.damaged``.
  Salvage never cuts, drops or appends to a segment the archive holds (the archive would keep
  frames whose commit_seqs the log hands out again): that is refused, naming
  :mod:`walship.archive.repair`, which puts archived segments back from the archive.

Segments whose header is intact are chained: each header's ``prev_segment_hash`` must be the
BLAKE3 of the whole previous file. The first local segment's prev hash is checked against the
``anchor`` when one is known (e.g. the archive's record of a segment removed by retention).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass, field
from enum import Enum
from typing import TYPE_CHECKING

from blake3 import blake3 as Blake3
from crc32c import crc32c

from walship.core.frame import CRC_SIZE, LENGTH_SIZE, MAX_FRAME_LENGTH, MIN_FRAME_LENGTH
from walship.core.header import (
    HEADER_SIZE,
    ZERO_HASH,
    SegmentHeader,
    parse_segment_name,
    segment_name,
)
from walship.core.rotation import Clock, SystemClock
from walship.core.segment import PARALLEL_HASH_MIN, ActiveSegment, _hash_worker
from walship.core.tail import find_continuation
from walship.errors import LogCorruptError, SegmentHeaderError, SegmentReadError
from walship.store import SegmentStore, free_name, written_bytes

if TYPE_CHECKING:
    from concurrent.futures import Future

REPAIR_ADVICE = (
    "put the archived copies back with walship repair DIR -c CONFIG (or open with repair=True)"
)
"""How to get past damage to archived segments: never salvage, which would fork the archive."""
_U32 = struct.Struct(">I")
_SEQ_TS = struct.Struct(">QQ")
_LEN_SEQ_TS = struct.Struct(">IQQ")


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


@dataclass
class LogScan:
    """The result of :func:`scan_store`."""

    segments: list[SegmentScan] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    anchored: bool = True
    """False when the first segment's prev hash is non-zero and no anchor was given to check it."""
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


_ZEROS = bytes(1 << 20)


def _is_zero(data: memoryview) -> bool:
    """Whether every byte of ``data`` is zero (compared a megabyte at a time, no large copy)."""
    step = len(_ZEROS)
    for i in range(0, len(data), step):
        chunk = bytes(data[i : i + step])
        if chunk != _ZEROS[: len(chunk)]:
            return False
    return True


def _scan_frames(
    seg: SegmentScan, data: memoryview, last_seq: int | None, is_last: bool
) -> Problem | None:
    """Walk the frames of one segment; fill ``seg``; return the first problem, if any.

    Damage in the last segment is a torn tail (repairable) only when no valid frame continuing
    the sequence follows it (:func:`walship.core.tail.find_continuation`).

    The loop is the recovery hot path: one unpack of length, commit_seq and timestamp, one of
    the stored CRC, one CRC-32C call over a slice of the mapped file per frame.
    """
    end = len(data)
    off = HEADER_SIZE
    unpack_head = _LEN_SEQ_TS.unpack_from
    unpack_u32 = _U32.unpack_from
    prev = -1 if last_seq is None else last_seq
    count = 0
    seq = ts = prev_ts = 0
    problem: str | None = None
    truncated = False
    backwards = False
    fast_end = end - _LEN_SEQ_TS.size  # below it a whole head can be unpacked
    min_len, max_len = MIN_FRAME_LENGTH, MAX_FRAME_LENGTH
    while off <= fast_end:
        flen, seq, ts = unpack_head(data, off)
        if flen < min_len or flen > max_len:
            problem = f"frame length {flen} is outside {min_len}..{max_len}"
            break
        stop = off + LENGTH_SIZE + flen
        if stop > end:
            problem = f"frame needs {flen + LENGTH_SIZE} bytes, {end - off} remain"
            truncated = True
            break
        body = stop - CRC_SIZE
        if crc32c(data[off:body]) != unpack_u32(data, body)[0]:
            problem = "CRC-32C mismatch"
            break
        if seq <= prev:
            backwards = True
            break
        prev = seq
        prev_ts = ts
        count += 1
        off = stop
    else:
        if off < end:  # fewer bytes than a frame head remain
            if end - off < LENGTH_SIZE:
                problem = f"{end - off} bytes are too few for a frame length"
                truncated = True
            else:
                (flen,) = unpack_u32(data, off)
                if flen < min_len or flen > max_len:
                    problem = f"frame length {flen} is outside {min_len}..{max_len}"
                else:
                    problem = f"frame needs {flen + LENGTH_SIZE} bytes, {end - off} remain"
                    truncated = True
    seg.valid_end = off
    seg.frame_count = count
    if count:
        seg.first_commit_seq, seg.first_timestamp_micros = _SEQ_TS.unpack_from(
            data, HEADER_SIZE + LENGTH_SIZE
        )
        seg.last_commit_seq = prev
        seg.last_timestamp_micros = prev_ts
    if backwards:
        # A valid CRC with a sequence that goes back is not a torn write: never repairable.
        return Problem(
            ProblemKind.CORRUPT_FRAME,
            seg.name,
            off,
            f"commit_seq {seq} does not follow {prev if prev >= 0 else last_seq}",
            repairable=False,
        )
    if problem is None:
        return None
    cut = end - off
    zero = not truncated and _is_zero(data[off:])
    after = (
        None if zero or not is_last else find_continuation(data, off, None if prev < 0 else prev)
    )
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
            f"{problem}, but {follows}: bit rot or tampering, not a torn write",
        )
    if truncated:
        what = f"segment ends inside a frame ({problem})"
    elif zero:
        seg.tail_is_zero = True
        what = f"{cut} zero bytes after the last valid frame"
    else:
        what = f"{problem}; {cut} bytes after the last valid frame"
    # What a crash can leave at the end of the log; repairable if this is the last segment.
    return Problem(ProblemKind.TRUNCATED_TAIL, seg.name, off, what, repairable=True)


def _hash_async(data: memoryview) -> Future[Blake3] | None:
    """Start hashing ``data`` on the helper thread (while the frames are scanned), if large."""
    if len(data) >= PARALLEL_HASH_MIN and (pool := _hash_worker()) is not None:
        return pool.submit(Blake3, data)
    return None


def _hash_result(hashing: Future[Blake3] | None, data: memoryview) -> Blake3:
    return hashing.result() if hashing is not None else Blake3(data)


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
    scan = LogScan()
    reserving = store.capabilities.preallocates
    seqs = sorted(s for n in store.list_names() if (s := parse_segment_name(n)) is not None)
    prev: SegmentScan | None = None
    expected_instance = instance_id
    instance_from = f"the configured {instance_id}"
    last_seq: int | None = None
    for i, seq in enumerate(seqs):
        name = segment_name(seq)
        is_last = i == len(seqs) - 1
        if prev is not None and seq != prev.segment_seq + 1:
            missing = (
                segment_name(prev.segment_seq + 1)
                if seq == prev.segment_seq + 2
                else f"{segment_name(prev.segment_seq + 1)}..{segment_name(seq - 1)}"
            )
            scan.problems.append(
                Problem(
                    ProblemKind.MISSING_SEGMENT,
                    missing,
                    0,
                    f"segment(s) missing between {prev.name} and {name}",
                )
            )
        # A mapped view: no copy; it goes (and the file is unmapped) with its last reference.
        # Of the last segment only what was ever written is mapped: the space a preallocating
        # store reserved after it reads as zeros, and touching it would only fill memory.
        try:
            size = store.size(name) if is_last and reserving else -1
            written = store.written_end(name) if size > 0 else -1
            data = store.map(name, written if 0 <= written < size else None)
        except SegmentReadError as e:  # e.g. an archived copy altered or gone
            kind = ProblemKind.MISSING_SEGMENT if e.missing else ProblemKind.CHAIN_MISMATCH
            scan.problems.append(Problem(kind, name, 0, str(e)))
            prev = SegmentScan(name, seq, 0)
            scan.segments.append(prev)
            continue
        hashing = _hash_async(data)
        seg = SegmentScan(name, seq, max(size, len(data)))
        scan.segments.append(seg)
        try:
            seg.header = SegmentHeader.decode(data, name, seq)
        except SegmentHeaderError as e:
            torn_create = is_last and len(data) < HEADER_SIZE
            seg.blake3 = _hash_result(hashing, data).digest()
            scan.problems.append(
                Problem(
                    ProblemKind.TRUNCATED_TAIL if torn_create else ProblemKind.BAD_HEADER,
                    name,
                    0,
                    str(e).removeprefix(f"{name}: "),
                    repairable=torn_create,
                )
            )
            prev = seg
            continue
        header = seg.header
        if expected_instance is None:
            expected_instance = header.instance_id
            instance_from = f"the {expected_instance} of {name}"
        elif header.instance_id != expected_instance:
            scan.problems.append(
                Problem(
                    ProblemKind.BAD_HEADER,
                    name,
                    8,
                    f"instance_id {header.instance_id} differs from {instance_from}",
                )
            )
        if prev is not None and prev.segment_seq + 1 == seq and prev.header is not None:
            seg.chain_ok = header.prev_segment_hash == prev.blake3
            if not seg.chain_ok and seed_restarts and header.prev_segment_hash == ZERO_HASH:
                seg.chain_ok = None
                scan.chain_restarts.append(name)
            elif not seg.chain_ok:
                scan.problems.append(
                    Problem(
                        ProblemKind.CHAIN_MISMATCH,
                        name,
                        32,
                        f"prev_segment_hash {header.prev_segment_hash.hex()[:16]}... is not the "
                        f"BLAKE3 of {prev.name} ({prev.blake3.hex()[:16]}...)",
                    )
                )
        elif i == 0:
            if anchor is not None:
                seg.chain_ok = header.prev_segment_hash == anchor
                if not seg.chain_ok:
                    scan.problems.append(
                        Problem(
                            ProblemKind.CHAIN_MISMATCH,
                            name,
                            32,
                            f"prev_segment_hash {header.prev_segment_hash.hex()[:16]}... is not "
                            f"the recorded hash of segment {seq - 1} ({anchor.hex()[:16]}...)",
                        )
                    )
            elif header.prev_segment_hash != ZERO_HASH:
                scan.anchored = False
        problem = _scan_frames(seg, data, last_seq, is_last)
        if seg.last_commit_seq is not None:
            last_seq = seg.last_commit_seq
        if len(data) < seg.size and (problem is None or seg.tail_is_zero):
            # Zeros after the last frame, then never-written reserved space to the end: the
            # unused end of the active segment, not damage.
            seg.unused_tail = seg.size - seg.valid_end
            problem = None
        if problem is not None:
            if problem.repairable and not is_last:  # a sealed segment is never torn
                problem = Problem(ProblemKind.CORRUPT_FRAME, name, problem.offset, problem.detail)
            scan.problems.append(problem)
        whole = _hash_result(hashing, data)
        hashing = None
        seg.blake3 = whole.digest()
        if is_last:
            if seg.valid_end == len(data):
                seg.prefix_hasher = whole
            else:
                seg.prefix_hasher = Blake3(data[: seg.valid_end])
                if seg.unused_tail:
                    seg.blake3 = seg.prefix_hasher.digest()  # the hash of its real bytes
        prev = seg
    return scan


@dataclass(frozen=True)
class Repair:
    """Bytes recovery cut from the end of a segment, and where it kept them."""

    segment: str
    offset: int
    cut_bytes: int
    side_file: str
    detail: str


@dataclass
class RecoveryReport:
    """What :func:`recover` found and did."""

    segments: int = 0
    frames: int = 0
    first_commit_seq: int | None = None
    last_commit_seq: int | None = None
    repairs: list[Repair] = field(default_factory=list)
    salvaged: list[str] = field(default_factory=list)
    """Segments renamed ``.damaged`` by a salvage open."""
    problems: list[Problem] = field(default_factory=list)
    anchored: bool = True
    chain_restarts: list[str] = field(default_factory=list)
    """Segments whose zero prev hash was accepted as a seed restart (``seed_restarts=True``)."""
    restored: list[str] = field(default_factory=list)
    """Segments put back from the archive before recovery (``repair=True``)."""
    record_rebuilt: bool = False
    """The archive record was missing or invalid and was rebuilt from the archive."""
    continued_after: str | None = None
    """The archived segment the log continues after (see :class:`ChainBase`), when no newer
    local segment was left."""
    elapsed_seconds: float = 0.0
    unused_tail_bytes: int = 0
    """Preallocated, never written bytes trimmed from the end of the last segment (not damage:
    the space a preallocating store reserved ahead of the active segment's end)."""

    def summary(self) -> str:
        """One line for logs."""
        parts = [f"{self.segments} segments, {self.frames} frames"]
        if self.last_commit_seq is not None:
            parts.append(f"last commit_seq {self.last_commit_seq}")
        for r in self.repairs:
            parts.append(f"cut {r.cut_bytes} bytes from {r.segment} at {r.offset} ({r.detail})")
        if self.salvaged:
            parts.append(f"salvaged: moved aside {', '.join(self.salvaged)}")
        if self.restored:
            parts.append(f"put back from the archive: {', '.join(self.restored)}")
        if self.record_rebuilt:
            parts.append("archive record rebuilt from the archive")
        if self.continued_after is not None:
            parts.append(f"continues after the archived {self.continued_after}")
        return "; ".join(parts)


@dataclass
class RecoveredLog:
    """The state to continue a log from."""

    report: RecoveryReport
    instance_id: int | None
    active: ActiveSegment | None
    """The last segment, open for appending (``None`` when the store holds no segment)."""
    next_commit_seq: int
    segment_ranges: list[tuple[int, int | None, int | None]] = field(default_factory=list)
    """(segment_seq, first_commit_seq, last_commit_seq) of every local segment, in order."""
    next_segment_seq: int = 1
    """When ``active`` is ``None``: the segment to open next ..."""
    next_prev_hash: bytes | None = None
    """... and its prev hash."""


@dataclass(frozen=True)
class ChainBase:
    """The newest segment sealed outside the store (archived), as the archive record knows it.

    Retention removes archived segments locally, so the store alone may not know where the log
    stands. With a base, recovery never hands out a commit_seq at or below
    ``last_commit_seq``, and when no local segment newer than the base is left (all were
    removed, or the only newer one was a torn creation) the log continues in segment
    ``segment_seq + 1`` chained to ``blake3``, never appending to a sealed segment.
    """

    segment_seq: int
    blake3: bytes
    last_commit_seq: int | None
    """The highest commit_seq in this segment or any before it (0: none); ``None``: unknown
    (a record written before walship kept it)."""
    instance_id: int | None = None
    """The log's instance_id (``None``: unknown)."""


def _keep_aside(store: SegmentStore, name: str, offset: int, detail: str) -> Repair:
    cut = written_bytes(store, name, offset)
    side = free_name(store, f"{name}.torn-{offset}")  # never overwrite bytes cut earlier
    store.write_atomic(side, cut)
    if offset:
        store.truncate(name, offset)
    else:
        store.remove(name)
    return Repair(name, offset, len(cut), side, detail)


def recover(
    store: SegmentStore,
    *,
    instance_id: int | None = None,
    anchor: bytes | None = None,
    salvage: bool = False,
    clock: Clock | None = None,
    base: ChainBase | None = None,
    seed_restarts: bool = False,
) -> RecoveredLog:
    """Validate the whole log, repair a torn tail, and return the state to continue from.

    Args:
        base: the newest archived segment (see :class:`ChainBase`).
    Raises:
        LogCorruptError: damage that is not a torn tail (unless ``salvage``; and even then
            when the damaged segment is archived, at or below ``base``); a last local segment
            that contradicts ``base`` (even with ``salvage``); no local frame and ``base`` does not
            know its commit_seq.
        SegmentHeaderError: the log belongs to another ``instance_id``.
        OSError: the store failed.
    """
    started = time.perf_counter()
    clock = clock or SystemClock()
    scan = scan_store(store, anchor, seed_restarts=seed_restarts)
    report = RecoveryReport(
        problems=list(scan.problems), anchored=scan.anchored, chain_restarts=scan.chain_restarts
    )
    segments = scan.segments
    fatal = [p for p in scan.problems if not p.repairable]
    archived = _archived_damage(segments, fatal, base) if fatal else None
    if fatal and (archived is not None or not salvage):
        more = f" (and {len(fatal) - 1} more)" if len(fatal) > 1 else ""
        advice = "open with salvage=True to keep the valid prefix"
        if archived is not None:
            assert base is not None
            advice = (
                f"{archived} is archived (the archive record lists segments up to "
                f"{segment_name(base.segment_seq)}) and salvage never cuts or writes into an "
                f"archived segment: {REPAIR_ADVICE}"
            )
        raise LogCorruptError(
            f"{store.location}: {fatal[0]}{more}; nothing was changed ({advice})", list(fatal)
        )
    if fatal:
        segments = _salvage(store, segments, fatal, report)
    else:
        for p in scan.problems:  # only repairable torn tails of the last segment remain
            report.repairs.append(_keep_aside(store, p.segment, p.offset, p.detail))
            if p.offset == 0:
                segments = segments[:-1]
                if segments:  # the previous segment is the last again: it needs its hasher
                    segments[-1].prefix_hasher = Blake3(store.read(segments[-1].name))
    if segments and segments[-1].unused_tail:
        last = segments[-1]
        store.truncate(last.name, last.valid_end)  # the store reserves space again on append
        report.unused_tail_bytes = last.unused_tail
    found_instance = next((s.header.instance_id for s in segments if s.header), None)
    if found_instance is None and base is not None:
        found_instance = base.instance_id  # no local header left: the archive's instance
    if instance_id is not None and found_instance is not None and found_instance != instance_id:
        raise SegmentHeaderError(
            f"{store.location}: the log's instance_id is {found_instance}, "
            f"not the configured {instance_id}"
        )
    report.segments = len(segments)
    report.frames = sum(s.frame_count for s in segments)
    report.first_commit_seq = next(
        (s.first_commit_seq for s in segments if s.first_commit_seq is not None), None
    )
    last_seq = next(
        (s.last_commit_seq for s in reversed(segments) if s.last_commit_seq is not None), None
    )
    report.last_commit_seq = last_seq
    next_segment, next_prev, floor = 1, anchor, 0
    sealed = base is not None and _sealed(store, segments, base)
    if base is not None:
        if base.last_commit_seq is None and last_seq is None:
            raise LogCorruptError(
                f"{store.location}: no local frame, and the archive record does not say where "
                f"the archived segment {segment_name(base.segment_seq)} ends (commit_seq); "
                "restore the log from its archive"
            )
        floor = base.last_commit_seq or 0
        newer = next(
            (
                s
                for s in segments
                if s.segment_seq > base.segment_seq and s.first_commit_seq is not None
            ),
            None,
        )
        if newer is not None and (newer.first_commit_seq or 0) <= floor:
            raise LogCorruptError(
                f"{store.location}: {newer.name} holds commit_seq {newer.first_commit_seq}, "
                f"but the archive holds commit_seqs up to {floor} already (archive record): "
                "the local numbering went back; nothing was changed"
            )
    elif last_seq is None and segments and not scan.anchored:
        first = segments[0]
        raise LogCorruptError(
            f"{store.location}: no local frame, and the segments before {first.name} are gone "
            "(removed after archiving) with no archive record to say where their numbering "
            "ended (walship.archive.json is missing): open the log with its archive: section "
            "to rebuild the record from the archive"
        )
    if sealed:
        assert base is not None
        next_segment, next_prev = base.segment_seq + 1, base.blake3
        report.continued_after = segment_name(base.segment_seq)
    active = None
    if segments and not sealed:
        last = segments[-1]
        assert last.header is not None and last.prefix_hasher is not None
        age = max(0.0, (clock.now_micros() - last.header.created_at_micros) / 1e6)
        active = ActiveSegment(
            file=store.open_append(last.name),
            header=last.header,
            opened_at=clock.monotonic() - age,
            size=last.valid_end,
            hasher=last.prefix_hasher,
            frame_count=last.frame_count,
            first_commit_seq=last.first_commit_seq,
            last_commit_seq=last.last_commit_seq,
            first_timestamp_micros=last.first_timestamp_micros,
            last_timestamp_micros=last.last_timestamp_micros,
        )
    report.elapsed_seconds = time.perf_counter() - started
    return RecoveredLog(
        report=report,
        instance_id=found_instance,
        active=active,
        next_commit_seq=max(last_seq or 0, floor) + 1,
        segment_ranges=[(s.segment_seq, s.first_commit_seq, s.last_commit_seq) for s in segments],
        next_segment_seq=next_segment,
        next_prev_hash=next_prev,
    )


REPAIR_ADVICE = (
    "put the archived copies back with walship repair DIR -c CONFIG (or open with repair=True)"
)
"""How to get past damage to archived segments: never salvage, which would fork the archive."""


def _archived_damage(
    segments: list[SegmentScan], fatal: list[Problem], base: ChainBase | None
) -> str | None:
    """The first damaged segment when the archive holds it (at or below ``base``), else
    ``None``. Salvage must never cut, drop or append to such a segment: the archive would keep
    the old frames while the local log hands out their commit_seqs again."""
    if base is None:
        return None
    first = min(fatal, key=lambda p: (_damage_index(segments, p), p.offset))
    damaged = parse_segment_name(first.segment.split("..")[0])
    return segment_name(damaged) if damaged is not None and damaged <= base.segment_seq else None


def _sealed(store: SegmentStore, segments: list[SegmentScan], base: ChainBase) -> bool:
    """Whether no local segment is newer than ``base`` (the log must continue after it).

    Raises:
        LogCorruptError: the last local segment is ``base``'s number but not its bytes, or older
            than ``base``: appending to it would fork the archived log (even with ``salvage``).
    """
    if not segments:
        return True
    last = segments[-1]
    if last.segment_seq > base.segment_seq:
        return False
    assert last.prefix_hasher is not None
    if last.segment_seq == base.segment_seq and last.prefix_hasher.digest() == base.blake3:
        return True  # a sealed segment whose successor was a torn creation
    what = (
        "differs from its archived copy"
        if last.segment_seq == base.segment_seq
        else f"is older than the archived {segment_name(base.segment_seq)}"
    )
    raise LogCorruptError(
        f"{store.location}: the last local segment {last.name} {what} (archive record); "
        f"{REPAIR_ADVICE}"
    )


def _damage_index(segments: list[SegmentScan], p: Problem) -> int:
    """Index of the first segment a fatal problem makes unusable (or cuts)."""
    for i, s in enumerate(segments):
        if s.name == p.segment:
            return i
    missing = parse_segment_name(p.segment.split("..")[0])  # "a..b" names a range
    assert missing is not None
    return next((i for i, s in enumerate(segments) if s.segment_seq > missing), len(segments))


def _salvage(
    store: SegmentStore,
    segments: list[SegmentScan],
    fatal: list[Problem],
    report: RecoveryReport,
) -> list[SegmentScan]:
    """Keep the valid prefix: cut the first damaged segment, move every later one aside."""
    first = min(fatal, key=lambda p: (_damage_index(segments, p), p.offset))
    k = _damage_index(segments, first)
    keep_part = (
        first.kind is ProblemKind.CORRUPT_FRAME
        and first.offset > HEADER_SIZE
        and first.segment == segments[k].name
    )
    for s in segments[k + 1 :] if keep_part else segments[k:]:
        store.rename(s.name, free_name(store, f"{s.name}.damaged"))
        report.salvaged.append(s.name)
    if keep_part:
        seg = segments[k]
        report.repairs.append(_keep_aside(store, seg.name, first.offset, first.detail))
        seg.prefix_hasher = Blake3(store.read(seg.name))
        seg.valid_end = first.offset
        return segments[: k + 1]
    kept = segments[:k]
    if kept:
        kept[-1].prefix_hasher = Blake3(store.read(kept[-1].name))
    return kept
