"""The state of a follower's replica directory, and the live-shipped parts it takes
(:class:`~walship.archive.follow.Follower`, and a takeover: :mod:`walship.archive.promote`).

A replica holds the archive's sealed segments (each recorded as archived at the URL in the
archive record) and, after the last of them, at most one **partial copy**: the prefix of the
next segment its live-shipped parts prove (:mod:`walship.archive.parts`), never recorded as
archived. :func:`replica_state` tells the two apart: the last local segment is the partial copy
when it is not recorded as archived at the URL, the one before it is (or it is the first), and
it holds a frame (a follower never makes a copy of the header alone, so a restored log's new
active segment is no partial copy).

:func:`take_parts` verifies the parts that continue the partial copy before anything is written:
each part's manifest, size and BLAKE3, every frame and every claim
(:func:`~walship.archive.parts.fetch_part`), the byte ranges contiguous from the copy's end, the
header of a first part (the segment's seq, and its prev hash the BLAKE3 of the last sealed
segment) and commit_seq continuing. Only then are the parts' bytes added to the copy, whole,
durably (a new copy by an atomic rename, then appends with fsync): a reader of the directory
never sees a part that did not check. :func:`check_continues` is what a sealed segment (or a
takeover's assembled one) must pass before it is put over the copy: it starts with exactly the
bytes the copy holds.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from blake3 import blake3 as Blake3

from walship.archive.epoch import EpochStarts
from walship.archive.listing import ArchiveListing
from walship.archive.manifest import SegmentManifest
from walship.archive.names import part_name
from walship.archive.objects import ArchiveStore
from walship.archive.parts import MISSING_PART, fetch_part, is_fenced, listed_parts, part_chain
from walship.archive.plan import LOG_FIRST_SEGMENT, ArchiveProblem
from walship.core.frame import FrameScan
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, segment_name, segment_seqs
from walship.core.record import ArchiveRecord
from walship.errors import ArchiveIntegrityError, SegmentHeaderError
from walship.store import SegmentStore


@dataclass(frozen=True)
class ChainEnd:
    """The last segment taken so far: its seq, BLAKE3, instance, last commit_seq and last
    frame's timestamp (``None`` before the first segment)."""

    segment_seq: int = LOG_FIRST_SEGMENT - 1
    blake3: bytes = ZERO_HASH
    instance_id: int | None = None
    last_commit_seq: int | None = None
    last_timestamp_micros: int | None = None

    def after(self, m: SegmentManifest) -> ChainEnd:
        return ChainEnd(
            m.segment_seq,
            m.blake3,
            m.instance_id,
            m.last_commit_seq if m.last_commit_seq is not None else self.last_commit_seq,
            m.last_timestamp_micros
            if m.last_timestamp_micros is not None
            else self.last_timestamp_micros,
        )


@dataclass(frozen=True)
class PartialCopy:
    """The replica's copy of the segment after its last sealed one, from live-shipped parts:
    the bytes held (ending at a frame boundary), the frames in them, and the last one's
    commit_seq and timestamp."""

    segment_seq: int
    size: int
    frames: int
    last_commit_seq: int | None
    last_timestamp_micros: int | None

    @property
    def name(self) -> str:
        return segment_name(self.segment_seq)

    def end(self, store: SegmentStore, sealed: ChainEnd) -> ChainEnd:
        """The chain end of the copy itself (its BLAKE3 read from ``store``), for a writer that
        goes on after it."""
        data = store.read(self.name, 0, self.size)
        header = SegmentHeader.decode(data, self.name, self.segment_seq)
        last = self.last_commit_seq if self.frames else sealed.last_commit_seq
        ts = self.last_timestamp_micros if self.frames else sealed.last_timestamp_micros
        return ChainEnd(self.segment_seq, Blake3(data).digest(), header.instance_id, last, ts)

    def reached(self, end: ChainEnd) -> ChainEnd:
        """``end`` (the last sealed segment's) with the copy's last frame: what a reader of the
        replica reaches."""
        if not self.frames:
            return end
        return replace(
            end,
            last_commit_seq=self.last_commit_seq,
            last_timestamp_micros=self.last_timestamp_micros,
        )


def local_end(store: SegmentStore, seqs: list[int] | None = None) -> ChainEnd:
    """Where the segments ``seqs`` (default: all of ``store``'s) end: the last one (hashed) and
    the last frame in it (or in the segments before it, when it holds none).

    Raises:
        SegmentHeaderError: the last segment's header is damaged.
    """
    seqs = segment_seqs(store) if seqs is None else seqs
    if not seqs:
        return ChainEnd()
    name = segment_name(seqs[-1])
    data = store.read(name)
    header = SegmentHeader.decode(data, name, seqs[-1])
    last: tuple[int | None, int | None] = (None, None)
    for seq in reversed(seqs):
        if seq != seqs[-1]:
            data = store.read(segment_name(seq))
        for _, _, commit_seq, ts, _ in FrameScan(data, HEADER_SIZE):
            last = (commit_seq, ts)
        if last[0] is not None:
            break
    digest = Blake3(store.read(name)).digest()
    return ChainEnd(seqs[-1], digest, header.instance_id, *last)


def replica_state(store: SegmentStore, url: str) -> tuple[ChainEnd, PartialCopy | None]:
    """The end of the replica's sealed segments and its partial copy, if any (module
    docstring). A copy whose last bytes are no whole frame (a crash during an append) is cut
    back to its last whole frame (those bytes come again from the parts, or the sealed
    segment).

    Raises:
        SegmentHeaderError: a local segment's header is damaged.
    """
    seqs = segment_seqs(store)
    record = ArchiveRecord.load(store)
    if not seqs or record.archived(seqs[-1], url):
        return local_end(store, seqs), None
    if len(seqs) > 1 and not record.archived(seqs[-2], url):
        return local_end(store, seqs), None
    name = segment_name(seqs[-1])
    data = store.read(name)
    SegmentHeader.decode(data, name, seqs[-1])
    frames, last, ts, size = 0, None, None, HEADER_SIZE
    scan = FrameScan(data, HEADER_SIZE)
    for _, end, commit_seq, stamp, _ in scan:
        frames, last, ts, size = frames + 1, commit_seq, stamp, end
    if not frames:
        return local_end(store, seqs), None
    if size < len(data):
        store.truncate(name, size)
    return local_end(store, seqs[:-1]), PartialCopy(seqs[-1], size, frames, last, ts)


def check_continues(copy: PartialCopy, held: bytes, data: bytes, what: str) -> None:
    """Raise unless ``data`` (the segment that goes over the copy) starts with ``held``, the
    copy's bytes.

    Raises:
        ArchiveIntegrityError: it does not (the archive and the replica diverge).
    """
    if len(data) < len(held) or data[: len(held)] != held:
        same = next((i for i, (a, b) in enumerate(zip(held, data, strict=False)) if a != b), None)
        where = f"differs at byte {same}" if same is not None else f"is {len(data)} bytes"
        raise ArchiveIntegrityError(
            f"{what} {where}, but the replica's copy of {copy.name} holds {len(held)} bytes "
            "from its live-shipped parts: the archive and the replica diverge",
            copy.name,
        )


def _frames(
    data: bytes, start: int, after: int | None, where: str
) -> tuple[int, int | None, int | None]:
    """The frames of part ``data`` (checked whole by ``fetch_part``): count, last commit_seq
    and timestamp; their commit_seqs must go on from ``after``."""
    count, ts = 0, None
    for off, _, commit_seq, stamp, _ in FrameScan(data, HEADER_SIZE if start == 0 else 0):
        if after is not None and commit_seq <= after:
            raise ArchiveIntegrityError(
                f"{where}: commit_seq {commit_seq} at byte {start + off} does not follow {after}",
                where,
            )
        count, after, ts = count + 1, commit_seq, stamp
    return count, after, ts


def take_parts(
    archive: ArchiveStore,
    listing: ArchiveListing,
    store: SegmentStore,
    sealed: ChainEnd,
    copy: PartialCopy | None,
    starts: EpochStarts | None = None,
) -> tuple[PartialCopy | None, int]:
    """Add to the replica in ``store`` the parts that continue ``copy`` (a new copy when it is
    ``None``) of the segment after ``sealed``, each verified first (module docstring); the
    copy as it is now and the parts added. With ``starts`` (the plan's), a fenced writer's
    leftover part is never taken (:mod:`walship.archive.epoch`). On the calling thread;
    ``store`` locked.

    Raises:
        ArchiveIntegrityError: a part does not check, its header does not chain to ``sealed``,
            or its commit_seqs do not go on (named; nothing of this call is added).
        ArchiveKeyError: a part is sealed under a key ``archive`` was not given.
        OSError: the archive or the local disk failed.
    """
    seq = sealed.segment_seq + 1
    offset = copy.size if copy is not None else 0
    chain, pieces = _fetch_chain(archive, listing, store, seq, offset, starts)
    if not pieces:
        return copy, 0
    if offset == 0:
        _check_header(archive, pieces[0], seq, sealed)
    frames = copy.frames if copy is not None else 0
    last = copy.last_commit_seq if copy is not None else sealed.last_commit_seq
    ts = copy.last_timestamp_micros if copy is not None else None
    for (start, end), data in zip(chain, pieces, strict=True):
        where = archive.object_url(part_name(seq, start, end))
        count, last, stamp = _frames(data, max(start, offset), last, where)
        frames, ts = frames + count, stamp if count else ts
    if frames == 0:
        return copy, 0  # a header alone: no copy yet (module docstring)
    data = b"".join(pieces)
    name = segment_name(seq)
    if copy is None:
        store.write_atomic(name, data)
    else:
        f = store.open_append(name)
        try:
            f.write_durable([data])
        finally:
            f.close()
    return PartialCopy(seq, offset + len(data), frames, last, ts), len(chain)


def _fetch_chain(
    archive: ArchiveStore,
    listing: ArchiveListing,
    store: SegmentStore,
    seq: int,
    offset: int,
    starts: EpochStarts | None = None,
) -> tuple[list[tuple[int, int]], list[bytes]]:
    """The parts of segment ``seq`` that go on from byte ``offset``, fetched and checked, and
    their bytes from ``offset`` on; up to the first one gone since the listing. When no part
    starts at ``offset`` (a copy cut back to its last whole frame after a crash), the part
    that holds it counts, once its bytes before ``offset`` are the copy's.

    Raises:
        ArchiveIntegrityError: a part does not check (named), or the one that holds ``offset``
            differs from the copy.
    """
    ranges = listed_parts(listing, seq)
    while True:
        holding = [r for r in ranges if r[0] < offset < r[1]]
        chain, _rest = part_chain(ranges, holding[0][0] if holding else offset)
        got = [fetch_part(archive, seq, r, starts) for r in chain]
        fenced = {r for r, g in zip(chain, got, strict=True) if is_fenced(g)}
        if not fenced:
            break
        ranges -= fenced  # a fenced writer's: the chain is made again without it
    for g in got:
        if isinstance(g, ArchiveProblem) and g.kind != MISSING_PART:
            raise ArchiveIntegrityError(f"cannot follow {archive.url}: {g}", g.segment)
    pieces: list[bytes] = []
    for g in got:  # a part gone since the listing ends the chain for this round
        if not isinstance(g, bytes):
            break
        pieces.append(g)
    chain = chain[: len(pieces)]
    if chain and chain[0][0] < offset:
        start = chain[0][0]
        held = store.read(segment_name(seq), start, offset - start)
        copy_of = PartialCopy(seq, offset, 0, None, None)
        check_continues(copy_of, held, pieces[0], archive.object_url(part_name(seq, *chain[0])))
        pieces[0] = pieces[0][offset - start :]
    return chain, pieces


def _check_header(archive: ArchiveStore, data: bytes, seq: int, sealed: ChainEnd) -> None:
    name = segment_name(seq)
    try:
        header = SegmentHeader.decode(data, name, seq)
    except SegmentHeaderError as e:
        raise ArchiveIntegrityError(
            f"the first part of {name} at {archive.url}: {e}", name
        ) from None
    if header.prev_segment_hash != sealed.blake3:
        raise ArchiveIntegrityError(
            f"the first part of {name} at {archive.url} has prev_segment_hash "
            f"{header.prev_segment_hash.hex()[:16]}..., not the BLAKE3 of "
            f"{segment_name(sealed.segment_seq)} as taken ({sealed.blake3.hex()[:16]}...)",
            name,
        )


__all__ = [
    "ChainEnd",
    "PartialCopy",
    "check_continues",
    "local_end",
    "replica_state",
    "take_parts",
]
