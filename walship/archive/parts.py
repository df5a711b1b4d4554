"""Parts of a segment that is not sealed yet (live shipping, ``archive.ship_interval``): what
the archive says of each part, and how the parts after the last sealed segment are assembled,
checked, and put in front of ``restore``, ``open_archive().read()`` and ``walship verify URL``.

A part is an immutable object ``<segment>.part-<start>-<end>`` holding bytes ``start..end``
(exclusive, 16 digits each) of one segment file, exactly as the log made them durable, and its
manifest ``<part>.manifest.json`` (:class:`PartManifest`): the segment, the byte range, the
commit_seq and timestamp ranges of its frames, their count, the BLAKE3 and size of the part.
A part always ends at a frame boundary and the first part of a segment starts at offset 0 (it
holds the header). With ``archive.encryption`` the part's object is sealed like a segment's
(:mod:`walship.archive.sealing`, the GCM tag 16 bytes longer) and its manifest carries the seal
(``encryption``); its ``size`` and ``blake3`` stay those of the raw bytes. The shipper that
writes them is :mod:`walship.archive.shipper`.

:func:`attach_tail` turns the parts of the segments after the archive's last sealed segment (a
segment is sealed with its manifest) into whole, checked segment prefixes: for each such
segment, from the one right after the last sealed one on, the chain of parts that starts at
offset 0 and continues without a gap (each part's manifest valid, its bytes the size and BLAKE3
the manifest says, every frame valid, the claims matching), concatenated; each prefix must be a
valid segment (header, frames) and chain to the segment before it (the prev hash of the next
prefix proves the previous one whole; where it does not, the tail ends there). The prefixes are
then offered to the plan as if they were sealed segments
(:class:`~walship.archive.plan.ArchivePlan` checks the links to the sealed segments: the chain,
the instance, commit_seq continuing), their bytes served from
:attr:`~walship.archive.objects.ArchiveStore.overlay`. A restore thus ends with the last frame
the parts prove. Parts after a gap, or of a segment the tail does not reach, prove nothing: they
are named (``missing_part`` for ``walship verify``), never used.

In the tail, a segment whose object came without its manifest (the writer was killed between
the two PUTs) is taken from its object when the object's bytes are a valid segment (header,
every frame: what a manifest would have said is computed from them) and the segment after it
proves it whole: its prev hash (a sealed manifest's, or the header of its parts) is the
object's BLAKE3. Nothing proves the archive's last such object (a strict restore refuses it as
``missing_manifest``; its parts, when it has any, stand in for it); a sealed (encrypted) object
cannot be read without its manifest's seal and stays ``missing_manifest``, as does one that
does not check. Between sealed segments such an object stays ``missing_manifest`` (every sealed
segment has its manifest: the archiver writes it on its next run, after checking the object
against its local bytes).
"""

from __future__ import annotations

import functools
import json
import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any

from blake3 import blake3 as Blake3

from walship.archive.epoch import EpochStarts
from walship.archive.listing import ArchiveListing
from walship.archive.manifest import (
    SegmentManifest,
    describe_segment,
    load_document,
    manifest_epoch,
)
from walship.archive.names import MAX_MANIFEST_BYTES, part_manifest_name, part_name
from walship.archive.objects import ArchiveStore
from walship.archive.plan import (
    ALTERED_SEGMENT,
    BAD_MANIFEST,
    CORRUPT_FRAME,
    ArchivePlan,
    ArchiveProblem,
    warn_fenced,
)
from walship.archive.sealing import TAG_BYTES, Seal
from walship.core import frame as framing
from walship.core.header import HEADER_SIZE, segment_name
from walship.errors import ArchiveIntegrityError, ArchiveMissingError, WalshipError

logger = logging.getLogger("walship.archive")

PART_FORMAT = "walship-part-manifest"
PART_VERSION = 1
MISSING_PART = "missing_part"
"""``walship verify``'s kind for parts that prove nothing (after a gap, or past the tail)."""
FENCED_PART = "fenced_part"
"""A fenced writer's leftover part (:mod:`walship.archive.epoch`): set aside in the plan's
``fenced``, never a problem."""
_FIELDS = ("segment_seq", "start", "end", "size", "frame_count")
_OPT_FIELDS = (
    "first_commit_seq",
    "last_commit_seq",
    "first_timestamp_micros",
    "last_timestamp_micros",
)
_JOBS = 16


@dataclass(frozen=True)
class PartManifest:
    """What the archive says of one part: bytes ``start..end`` of segment ``segment_seq``
    (``size`` = ``end - start``), their BLAKE3, and the frames in them."""

    segment_seq: int
    start: int
    end: int
    size: int
    blake3: bytes
    frame_count: int
    first_commit_seq: int | None
    last_commit_seq: int | None
    first_timestamp_micros: int | None
    last_timestamp_micros: int | None
    seal: Seal | None = None
    """How the part's object is sealed (``archive.encryption``), or ``None``: in the clear."""
    epoch: int = 0
    """The epoch of the writer that shipped it (:mod:`walship.archive.epoch`; 0: before any
    takeover, or a manifest without the field)."""

    @property
    def object(self) -> str:
        return part_name(self.segment_seq, self.start, self.end)

    @property
    def stored_size(self) -> int:
        """The size of the part's object: ``size``, plus the GCM tag when it is sealed."""
        return self.size + (TAG_BYTES if self.seal is not None else 0)

    @property
    def manifest_object(self) -> str:
        return part_manifest_name(self.segment_seq, self.start, self.end)

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"format": PART_FORMAT, "version": PART_VERSION}
        doc.update({k: getattr(self, k) for k in _FIELDS + _OPT_FIELDS})
        doc.update(segment=segment_name(self.segment_seq), object=self.object)
        doc["blake3"] = self.blake3.hex()
        if self.seal is not None:
            doc["encryption"] = self.seal.as_dict()
        if self.epoch:
            doc["epoch"] = self.epoch
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, segment_seq: int, start: int, end: int) -> PartManifest:
        """Parse and validate the manifest of part ``start..end`` of segment ``segment_seq``.

        Raises:
            ArchiveIntegrityError: not JSON, another format or version, a field missing or of
                the wrong type, or the manifest of another part.
        """
        where = part_manifest_name(segment_seq, start, end)

        def bad(what: str) -> ArchiveIntegrityError:
            return ArchiveIntegrityError(f"manifest {where} is invalid: {what}", where)

        doc = load_document(data, PART_FORMAT, PART_VERSION, bad)
        values: dict[str, Any] = {}
        for key in _FIELDS + _OPT_FIELDS:
            v = doc.get(key)
            if (v is not None or key in _FIELDS) and (type(v) is not int or v < 0):
                raise bad(f"{key} is {v!r}, expected a non-negative integer")
            values[key] = v
        try:
            raw = bytes.fromhex(doc["blake3"]) if isinstance(doc.get("blake3"), str) else b""
        except ValueError:
            raw = b""
        if len(raw) != 32:
            raise bad("blake3 is not 64 hex digits")
        if (values["segment_seq"], values["start"], values["end"]) != (segment_seq, start, end):
            raise bad("it describes another part")
        if values["size"] != end - start:
            raise bad(f"size is {values['size']}, the range holds {end - start} bytes")
        seal = None
        if doc.get("encryption") is not None:
            try:
                seal = Seal.from_dict(doc["encryption"])
            except ValueError as e:
                raise bad(str(e)) from None
        return cls(blake3=raw, seal=seal, epoch=manifest_epoch(doc, bad), **values)


def describe_part(segment_seq: int, start: int, data: bytes) -> PartManifest:
    """The manifest of ``data``, bytes ``start..`` of segment ``segment_seq``: every frame
    checked (the header skipped, not checked, when ``start`` is 0).

    Raises:
        ArchiveIntegrityError: a frame is damaged, or the part does not end at a frame boundary.
    """
    skip = HEADER_SIZE if start == 0 else 0
    if len(data) < skip:
        raise ArchiveIntegrityError(
            f"part {start}..{start + len(data)} of {segment_name(segment_seq)} is shorter than "
            "the header",
            segment_name(segment_seq),
        )
    count = 0
    first = last = first_ts = last_ts = None
    try:
        for f in framing.decode_all(memoryview(data)[skip:], start + skip):
            if first is None:
                first, first_ts = f.commit_seq, f.timestamp_micros
            last, last_ts = f.commit_seq, f.timestamp_micros
            count += 1
    except WalshipError as e:
        raise ArchiveIntegrityError(
            f"part {start}..{start + len(data)} of {segment_name(segment_seq)}: {e}",
            segment_name(segment_seq),
        ) from None
    return PartManifest(
        segment_seq,
        start,
        start + len(data),
        len(data),
        Blake3(data).digest(),
        count,
        first,
        last,
        first_ts,
        last_ts,
    )


def part_chain(
    ranges: set[tuple[int, int]], offset: int = 0
) -> tuple[list[tuple[int, int]], list[tuple[int, int]]]:
    """The parts (``(start, end)``) that follow each other from ``offset`` without a gap (at
    each offset the longest part starting there), and the others."""
    chain: list[tuple[int, int]] = []
    while True:
        here = [r for r in ranges if r[0] == offset]
        if not here:
            break
        best = max(here)
        chain.append(best)
        offset = best[1]
    return chain, sorted(ranges - set(chain))


@dataclass
class LiveTail:
    """What :func:`attach_tail` found after the last sealed segment."""

    segments: list[int] = field(default_factory=list)
    """Segments assembled from parts and offered to the plan, ascending."""
    parts: int = 0
    """Part objects used."""
    problems: list[ArchiveProblem] = field(default_factory=list)
    """Damage: a part or part manifest that does not check (restore and read refuse)."""
    unproven: list[ArchiveProblem] = field(default_factory=list)
    """Parts that prove nothing (``missing_part``): after a gap, or past the tail's end."""
    unmanifested: list[int] = field(default_factory=list)
    """Segments taken from an object whose manifest never came (module docstring)."""


def listed_parts(listing: ArchiveListing, seq: int) -> set[tuple[int, int]]:
    """The parts of segment ``seq`` that count: listed with their manifest and their object at
    its size (sealed: the GCM tag longer; the manifest, read when the part is fetched, says
    which)."""
    sizes = listing.parts.get(seq, {})
    return {
        r
        for r in listing.part_manifests.get(seq, {})
        if sizes.get(r) in (r[1] - r[0], r[1] - r[0] + TAG_BYTES)
    }


def fetch_part(
    archive: ArchiveStore, seq: int, r: tuple[int, int], starts: EpochStarts | None = None
) -> bytes | ArchiveProblem:
    """Part ``r`` of segment ``seq`` and its manifest, downloaded, opened (a sealed part:
    :meth:`~walship.archive.objects.ArchiveStore.open_bytes`) and checked: its bytes, or the
    problem; with ``starts``, a fenced writer's leftover (:mod:`walship.archive.epoch`) is
    the problem :data:`FENCED_PART` (its object is not downloaded). Runs on a download thread.

    Raises:
        ArchiveKeyError: the part is sealed under a key the archive store was not given.
    """
    start, end = r
    pname, mname = part_name(seq, start, end), part_manifest_name(seq, start, end)
    raw = archive.read_object(mname, MAX_MANIFEST_BYTES)
    if raw is None:
        return ArchiveProblem(MISSING_PART, pname, start, f"{mname} is gone", seq)
    try:
        m = PartManifest.from_json(raw, seq, start, end)
    except ArchiveIntegrityError as e:
        return ArchiveProblem(BAD_MANIFEST, pname, start, str(e), seq)
    why = starts.leftover(pname, seq, m.epoch) if starts is not None else None
    if why is not None:
        return ArchiveProblem(FENCED_PART, pname, start, why, seq)
    stored = archive.read_object(pname, m.stored_size)
    if stored is None:
        return ArchiveProblem(MISSING_PART, pname, start, f"{pname} is gone", seq)
    try:
        if len(stored) != m.stored_size:
            raise ArchiveIntegrityError(
                f"{archive.object_url(pname)} is {len(stored)} bytes, its manifest says "
                f"{m.stored_size} stored",
                pname,
            )
        data = archive.open_bytes(pname, stored, m.seal)
    except ArchiveIntegrityError as e:
        return ArchiveProblem(ALTERED_SEGMENT, pname, start, str(e), seq)
    digest = Blake3(data).digest()
    if len(data) != m.size or digest != m.blake3:
        return ArchiveProblem(
            ALTERED_SEGMENT,
            pname,
            start,
            f"{archive.object_url(pname)} holds {len(data)} bytes with BLAKE3 "
            f"{digest.hex()[:16]}..., its manifest says {m.size} bytes with BLAKE3 "
            f"{m.blake3.hex()[:16]}...",
            seq,
        )
    try:
        found = describe_part(seq, start, data)
    except ArchiveIntegrityError as e:
        return ArchiveProblem(CORRUPT_FRAME, pname, start, str(e), seq)
    if replace(found, seal=m.seal, epoch=m.epoch) != m:
        return ArchiveProblem(
            BAD_MANIFEST, pname, start, f"{mname} does not match the frames of its part", seq
        )
    return data


def is_fenced(got: bytes | ArchiveProblem) -> bool:
    """Whether :func:`fetch_part` found a fenced writer's leftover."""
    return isinstance(got, ArchiveProblem) and got.kind == FENCED_PART


def set_aside(plan: ArchivePlan, seq: int, r: tuple[int, int], why: str) -> None:
    """Part ``r`` of segment ``seq`` is a fenced writer's leftover: into ``plan.fenced``, out
    of its listing (so that nothing plans on it)."""
    plan.fenced[part_name(seq, *r)] = why
    plan.fenced[part_manifest_name(seq, *r)] = why
    for kind in (plan.listing.parts, plan.listing.part_manifests):
        kind.get(seq, {}).pop(r, None)
        if seq in kind and not kind[seq]:
            del kind[seq]


def _leftover(plan: ArchivePlan, seq: int, r: tuple[int, int]) -> str | None:
    """Why part ``r`` of segment ``seq`` is a fenced writer's leftover (its manifest read,
    only where a takeover's segments start at or before ``seq``), or ``None``."""
    starts = plan.epoch_starts
    if starts.fencing(seq, 0) is None:
        return None
    raw = plan.archive.read_object(part_manifest_name(seq, *r), MAX_MANIFEST_BYTES)
    try:
        m = PartManifest.from_json(raw, seq, *r) if raw is not None else None
    except ArchiveIntegrityError:
        return None
    return starts.leftover(part_name(seq, *r), seq, m.epoch) if m is not None else None


def _unproven(
    plan: ArchivePlan, seq: int, ranges: list[tuple[int, int]], why: str
) -> list[ArchiveProblem]:
    """``missing_part`` for each of ``ranges``, but a fenced writer's leftover: set aside."""
    out = []
    for r in ranges:
        fenced = _leftover(plan, seq, r)
        if fenced is not None:
            set_aside(plan, seq, r, fenced)
        else:
            out.append(ArchiveProblem(MISSING_PART, part_name(seq, *r), r[0], why, seq))
    return out


def _fetch_unfenced(
    plan: ArchivePlan, seq: int, pool: ThreadPoolExecutor
) -> tuple[list[tuple[int, int]], list[tuple[int, int]], list[bytes | ArchiveProblem]]:
    """The chain of parts of segment ``seq`` (and the other parts), fetched: a fenced
    writer's leftover in it is set aside, and the chain made again without it."""
    while True:
        chain, rest = part_chain(listed_parts(plan.listing, seq))
        fetch = functools.partial(fetch_part, plan.archive, seq, starts=plan.epoch_starts)
        got = list(pool.map(fetch, chain))
        fenced = [(r, g) for r, g in zip(chain, got, strict=True) if is_fenced(g)]
        if not fenced:
            return chain, rest, got
        for r, g in fenced:
            assert isinstance(g, ArchiveProblem)
            set_aside(plan, seq, r, g.detail)


def _assemble(
    plan: ArchivePlan, seq: int, pool: ThreadPoolExecutor, tail: LiveTail
) -> tuple[SegmentManifest, bytes, int] | None:
    """The prefix of segment ``seq`` its parts prove (manifest, bytes, parts used), or
    ``None`` (what is wrong goes into ``tail``)."""
    listing = plan.listing
    chain, rest, got = _fetch_unfenced(plan, seq, pool)
    ranges = listed_parts(listing, seq)
    # a part the chain replaced (same start: a round retried after its manifest failed) or
    # overlaps is no gap; what starts at or after the chain's end is
    starts = {start for start, _end in chain}
    end = chain[-1][1] if chain else 0
    manifests = set(listing.part_manifests.get(seq, {}))
    lacking = sorted(r for r in manifests - ranges if r[0] not in starts)
    tail.unproven += _unproven(plan, seq, lacking, "its object is missing or of another size")
    after = [r for r in rest if r[0] >= end]
    tail.unproven += _unproven(plan, seq, after, "it does not follow the parts before it")
    if not chain:
        return None
    bad = [g for g in got if isinstance(g, ArchiveProblem)]
    if bad:
        tail.problems += bad
        return None
    data = b"".join(g for g in got if isinstance(g, bytes))
    try:
        return describe_segment(segment_name(seq), data), data, len(chain)
    except ArchiveIntegrityError as e:
        tail.problems.append(ArchiveProblem(CORRUPT_FRAME, segment_name(seq), 0, str(e), seq))
        return None


def _from_object(plan: ArchivePlan, seq: int) -> tuple[SegmentManifest, bytes] | None:
    """Segment ``seq`` from its object whose manifest never came (module docstring): what a
    manifest would say of it, and its bytes; ``None`` when it has no such object (or several),
    or the object is sealed, gone or not a whole valid segment (it stays ``missing_manifest``).

    Raises:
        OSError: the store failed.
    """
    objects = plan.listing.objects.get(seq, {})
    if not _unsealed(plan, seq) or len(objects) != 1:
        return None
    [compression] = objects
    try:
        data = plan.archive.get_unverified(seq, compression)
        return describe_segment(segment_name(seq), data), data
    except (ArchiveIntegrityError, ArchiveMissingError):
        return None


def _offer(plan: ArchivePlan, tail: LiveTail, m: SegmentManifest, data: bytes, n: int) -> None:
    plan.manifests[m.segment_seq] = m
    plan.listing.objects[m.segment_seq] = {"none": m.size}
    plan.archive.overlay[m.segment_seq] = data
    tail.segments.append(m.segment_seq)
    tail.parts += n


def _unsealed(plan: ArchivePlan, seq: int) -> bool:
    """Whether segment ``seq`` has no manifest in the archive (nothing, or an object whose
    manifest never came: the writer died between the two PUTs), so its parts may stand in."""
    return seq not in plan.manifests and seq not in plan.invalid


def _pieces(plan: ArchivePlan) -> set[int]:
    """The segments with parts, or with an object but no manifest."""
    listing = plan.listing
    return set(listing.part_manifests) | {s for s in listing.objects if _unsealed(plan, s)}


def _last_sealed(plan: ArchivePlan) -> int:
    """The last segment the archive holds sealed, with its manifest: later ones with parts or
    only an object (its manifest never came) are the tail's."""
    last = plan.last_seq or 0
    pieces = _pieces(plan)
    while last > 0 and _unsealed(plan, last) and last in pieces:
        last -= 1
    return last


def _take(
    plan: ArchivePlan, seq: int, pool: ThreadPoolExecutor, tail: LiveTail
) -> tuple[SegmentManifest, bytes, int] | None:
    """Segment ``seq`` whole from its object without a manifest, else the prefix its parts
    prove (manifest, bytes, parts used), else ``None``."""
    whole = _from_object(plan, seq)
    if whole is not None:
        return whole[0], whole[1], 0
    return _assemble(plan, seq, pool, tail) if seq in plan.listing.part_manifests else None


def _fill_gaps(plan: ArchivePlan, pool: ThreadPoolExecutor, tail: LiveTail) -> None:
    """Segments missing between sealed ones (the archiver uploads in parallel: a later segment
    can be sealed first) whose parts prove them whole: the next sealed segment chains to the
    BLAKE3 of their prefix."""
    last = plan.last_seq or 0
    for seq in sorted(s for s in plan.listing.part_manifests if s < last and _unsealed(plan, s)):
        nxt = plan.manifests.get(seq + 1)
        got = _assemble(plan, seq, pool, tail) if nxt is not None else None
        if got is not None and nxt is not None and got[0].blake3 == nxt.prev_segment_hash:
            _offer(plan, tail, *got)


def attach_tail(
    plan: ArchivePlan, jobs: int = _JOBS, held: Mapping[int, bytes] | None = None
) -> LiveTail:
    """Assemble the parts after ``plan``'s last sealed segment (module docstring) and offer the
    prefixes they prove to ``plan`` (its manifests and listing) and their bytes to its archive's
    ``overlay``; and a segment missing between sealed ones whose parts prove it whole (the next
    sealed segment chains to them). Downloads every part it uses; changes nothing in the
    archive. ``held``: the prefix of the segment after the last sealed one that the caller
    holds verified already (a replica's copy, extended with the parts that continue it:
    :func:`walship.archive.replica.take_parts`), used as that segment's instead of its parts
    (none of them downloaded); ignored for any other segment.

    Raises:
        ArchiveKeyError: a part it needs is sealed under a key the archive store was not given
            (named).
        OSError: the store failed.
    """
    tail = LiveTail()
    listing = plan.listing
    sealed = _last_sealed(plan)
    seq = sealed + 1
    prev = plan.manifests.get(sealed)
    prev_hash = prev.blake3 if prev is not None else None
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        _fill_gaps(plan, pool, tail)
        pieces = _pieces(plan)
        taken: list[tuple[int, tuple[SegmentManifest, bytes, int]]] = []
        mine = (held or {}).get(seq)
        if mine is not None and not _unsealed(plan, seq):
            mine = None
        while seq in pieces or mine is not None:
            if mine is not None:
                got: tuple[SegmentManifest, bytes, int] | None = (
                    describe_segment(segment_name(seq), mine),
                    mine,
                    0,
                )
                mine = None
            else:
                got = _take(plan, seq, pool, tail)
            if got is None:
                break
            m = got[0]
            if seq > sealed + 1 and prev_hash is not None and m.prev_segment_hash != prev_hash:
                # the segment before ends later than its parts: nothing after them is proven
                why = f"the parts of {segment_name(seq - 1)} do not reach its end"
                ranges = sorted(listing.part_manifests.get(seq, {}))
                tail.unproven += _unproven(plan, seq, ranges, why)
                break
            taken.append((seq, got))
            prev_hash = m.blake3
            seq += 1
        held_seq = sealed + 1 if held and sealed + 1 in held else None
        if taken and taken[-1][1][2] == 0 and taken[-1][0] != held_seq:
            # an object without its manifest is proven whole only by the segment after it
            # (its prev hash); the last one is not: its parts stand in, or it stays missing
            last, _whole = taken.pop()
            if last in listing.part_manifests and (got := _assemble(plan, last, pool, tail)):
                taken.append((last, got))
        for s, got in taken:
            _offer(plan, tail, *got)
            if got[2] == 0 and s != held_seq:
                tail.unmanifested.append(s)
    for later in sorted(s for s in listing.part_manifests if s > seq):
        why = f"segment {segment_name(later)} is not reached by the parts before it"
        tail.unproven += _unproven(plan, later, sorted(listing.part_manifests[later]), why)
    if tail.unmanifested:
        logger.warning(
            "%s: %s taken from %s object(s) whose manifest never came (the writer stopped "
            "between its two PUTs; its archiver writes the manifest on its next run)",
            plan.archive.url,
            ", ".join(segment_name(s) for s in tail.unmanifested),
            len(tail.unmanifested),
        )
    warn_fenced(plan.archive.url, plan.fenced)
    if tail.unproven:
        logger.warning(
            "%s: %d part(s) after the last proven frame prove nothing and are not used: %s",
            plan.archive.url,
            len(tail.unproven),
            tail.unproven[0],
        )
    return tail
