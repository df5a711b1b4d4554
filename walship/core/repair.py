"""Recovery on open: act on a scan (:func:`walship.core.scan.scan_store`) and return the state
to continue the log from.

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

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from blake3 import blake3 as Blake3

from walship.core.header import HEADER_SIZE, parse_segment_name, segment_name
from walship.core.rotation import Clock, SystemClock
from walship.core.scan import LogScan, Problem, ProblemKind, SegmentScan, scan_store
from walship.core.segment import ActiveSegment
from walship.errors import LogCorruptError, SegmentHeaderError
from walship.store import SegmentStore, free_name, written_bytes

if TYPE_CHECKING:
    from walship.core.record import ChainBase

REPAIR_ADVICE = (
    "put the archived copies back with walship repair DIR -c CONFIG (or open with repair=True)"
)
"""How to get past damage to archived segments: never salvage, which would fork the archive."""


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
    """The archived segment the log continues after (see
    :class:`walship.core.record.ChainBase`), when no newer local segment was left."""
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
    verified_ends: dict[int, int] = field(default_factory=dict)
    """Per segment_seq: the offset up to which the scan verified every frame (its valid end)."""
    next_segment_seq: int = 1
    """When ``active`` is ``None``: the segment to open next ..."""
    next_prev_hash: bytes | None = None
    """... and its prev hash."""


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

    Runs on the opening thread, before the log is shared; it changes the store only to cut a
    torn tail (or, with ``salvage``, the damaged suffix), keeping every cut byte in a side file.

    Args:
        base: the newest archived segment (see :class:`walship.core.record.ChainBase`).
    Raises:
        LogCorruptError: damage that is not a torn tail (unless ``salvage``; and even then
            when the damaged segment is archived, at or below ``base``); a last local segment
            that contradicts ``base`` (even with ``salvage``); no local frame and ``base`` does not
            know its commit_seq.
        SegmentHeaderError: the log belongs to another ``instance_id``.
        OSError: the store failed.
    """
    started = time.perf_counter()
    scan = scan_store(store, anchor, seed_restarts=seed_restarts)
    report = RecoveryReport(
        problems=list(scan.problems), anchored=scan.anchored, chain_restarts=scan.chain_restarts
    )
    segments = _repair(store, scan, salvage, base, report)
    found_instance = _instance(store, segments, instance_id, base)
    _count(report, segments)
    next_segment, next_prev, floor = 1, anchor, 0
    sealed = base is not None and _sealed(store, segments, base)
    if base is not None:
        floor = _floor(store, segments, base, report.last_commit_seq)
    elif report.last_commit_seq is None and segments and not scan.anchored:
        raise LogCorruptError(
            f"{store.location}: no local frame, and the segments before {segments[0].name} are "
            "gone (removed after archiving) with no archive record to say where their numbering "
            "ended (walship.archive.json is missing): open the log with its archive: section "
            "to rebuild the record from the archive"
        )
    active = None
    if sealed:
        assert base is not None
        next_segment, next_prev = base.segment_seq + 1, base.blake3
        report.continued_after = segment_name(base.segment_seq)
    elif segments:
        active = _reopen(store, segments[-1], clock or SystemClock())
    report.elapsed_seconds = time.perf_counter() - started
    return RecoveredLog(
        report=report,
        instance_id=found_instance,
        active=active,
        next_commit_seq=max(report.last_commit_seq or 0, floor) + 1,
        segment_ranges=[(s.segment_seq, s.first_commit_seq, s.last_commit_seq) for s in segments],
        verified_ends={s.segment_seq: s.valid_end for s in segments if s.header is not None},
        next_segment_seq=next_segment,
        next_prev_hash=next_prev,
    )


def _repair(
    store: SegmentStore,
    scan: LogScan,
    salvage: bool,
    base: ChainBase | None,
    report: RecoveryReport,
) -> list[SegmentScan]:
    """Refuse damage that is not a torn tail (unless ``salvage`` may keep the valid prefix),
    cut the torn tail, trim the unused end; return the segments the log continues with."""
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
            report.repairs.append(keep_aside(store, p.segment, p.offset, p.detail))
            if p.offset == 0:
                segments = segments[:-1]
                if segments:  # the previous segment is the last again: it needs its hasher
                    segments[-1].prefix_hasher = Blake3(store.read(segments[-1].name))
    if segments and segments[-1].unused_tail:
        last = segments[-1]
        store.truncate(last.name, last.valid_end)  # the store reserves space again on append
        report.unused_tail_bytes = last.unused_tail
    return segments


def _instance(
    store: SegmentStore,
    segments: list[SegmentScan],
    instance_id: int | None,
    base: ChainBase | None,
) -> int | None:
    """The log's instance_id: of its headers, else of the archive record.

    Raises:
        SegmentHeaderError: it is not the configured ``instance_id``.
    """
    found = next((s.header.instance_id for s in segments if s.header), None)
    if found is None and base is not None:
        found = base.instance_id  # no local header left: the archive's instance
    if instance_id is not None and found is not None and found != instance_id:
        raise SegmentHeaderError(
            f"{store.location}: the log's instance_id is {found}, not the configured {instance_id}"
        )
    return found


def _count(report: RecoveryReport, segments: list[SegmentScan]) -> None:
    report.segments = len(segments)
    report.frames = sum(s.frame_count for s in segments)
    report.first_commit_seq = next(
        (s.first_commit_seq for s in segments if s.first_commit_seq is not None), None
    )
    report.last_commit_seq = next(
        (s.last_commit_seq for s in reversed(segments) if s.last_commit_seq is not None), None
    )


def _floor(
    store: SegmentStore, segments: list[SegmentScan], base: ChainBase, last_seq: int | None
) -> int:
    """The highest commit_seq the archive holds already: no new frame may go at or below it.

    Raises:
        LogCorruptError: no local frame and the record does not know it; or a local segment
            newer than ``base`` starts at or below it (the numbering went back).
    """
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
    return floor


def _reopen(store: SegmentStore, last: SegmentScan, clock: Clock) -> ActiveSegment:
    """The last segment, open for appending after its last valid frame, its age kept."""
    assert last.header is not None and last.prefix_hasher is not None
    age = max(0.0, (clock.now_micros() - last.header.created_at_micros) / 1e6)
    return ActiveSegment(
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


def keep_aside(store: SegmentStore, name: str, offset: int, detail: str) -> Repair:
    """Cut segment ``name`` at ``offset`` (remove it at 0), keeping the cut bytes in a new side
    file ``<name>.torn-<offset>`` (never overwriting one kept earlier), durably.

    Raises:
        OSError: the store failed.
    """
    cut = written_bytes(store, name, offset)
    side = free_name(store, f"{name}.torn-{offset}")  # never overwrite bytes cut earlier
    store.write_atomic(side, cut)
    if offset:
        store.truncate(name, offset)
    else:
        store.remove(name)
    return Repair(name, offset, len(cut), side, detail)


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
        report.repairs.append(keep_aside(store, seg.name, first.offset, first.detail))
        seg.prefix_hasher = Blake3(store.read(seg.name))
        seg.valid_end = first.offset
        return segments[: k + 1]
    kept = segments[:k]
    if kept:
        kept[-1].prefix_hasher = Blake3(store.read(kept[-1].name))
    return kept
