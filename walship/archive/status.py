"""What ``walship status`` shows: a read-only look at a log directory and its archive record,
safe while the log is open in another process.

It never takes the writer's lock and never writes: it lists the directory, reads the archive
record (``walship.archive.json``, replaced atomically by the writer, so it is read whole, old or
new), the errors file the archiver keeps for it (:mod:`walship.archive.attempts`), the header
of each segment after a pending one (when it was created is when the pending one closed) and
the frames of the newest segment holding any (the active one is being appended to: the scan
stops at the first frame not whole yet, so it sees a prefix of what is written). Nothing here
asks the archive itself: what is archived is what the writer recorded.

Definitions:

* **pending**: a local closed segment (every local segment but the last) that the record does
  not list as archived at the configured URL; its age counts from when it closed.
* **destinations** (``archives:``): each URL has its own pending, last archived segment and
  lag (:class:`DestinationStatus`); the log's own fields then describe what is not yet safe
  everywhere: a segment is pending while some destination misses it (its error names each
  URL that failed it), the last archived segment is the one of the destination furthest
  behind, and the lag is the largest.
* **lag**: what the archive misses: ``frames`` from the last archived commit_seq to the last
  local one, ``bytes`` of the pending segments and the active one, ``seconds`` from the first
  frame not archived to the last local frame (0 when every frame is archived).
* **stalled**: a pending segment whose last upload attempt gave up (attempts used up, or a
  conflict), with its last error; a pending segment between retries shows its last error too
  (state ``retrying``).
* **fenced**: another writer took the archive over (``walship promote``): the reason the
  archiver recorded in ``walship.epoch.json`` (with the writer's **epoch**).
* **follower**: in a follower's replica directory, what the follower wrote after its last
  round (:mod:`walship.archive.follower_status`): the URL, its lag in frames and seconds, when.
* **leftovers**: side files of recovery and repair (``<segment>.torn-<offset>``,
  ``<segment>.damaged``, ``walship.archive.json.damaged``:
  :func:`walship.core.sidefiles.side_files`),
  temporary files of an interrupted atomic write, and restore staging directories beside the
  directory (:func:`walship.archive.staging.staging_leftovers`).
"""

from __future__ import annotations

import struct
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from walship.archive.attempts import load_attempts
from walship.archive.epoch import LocalEpoch
from walship.archive.follower_status import FollowerStatus
from walship.archive.settings import destination_url
from walship.archive.staging import staging_leftovers
from walship.backends.posix import PosixStore
from walship.core.frame import MAX_FRAME_LENGTH, MIN_FRAME_LENGTH, FrameScan
from walship.core.header import HEADER_SIZE, SegmentHeader, segment_name, segment_seqs
from walship.core.record import ArchiveRecord
from walship.core.sidefiles import side_files
from walship.errors import ArchiveIntegrityError, SegmentHeaderError

_MICROS = 1_000_000


@dataclass(frozen=True)
class PendingSegment:
    """A closed segment waiting for upload."""

    name: str
    size: int
    closed_at_micros: int | None
    age_seconds: float | None
    state: str
    """``waiting`` (no failed attempt known), ``retrying`` or ``stalled``."""
    attempts: int = 0
    error: str | None = None
    conflict: bool = False


@dataclass(frozen=True)
class Leftover:
    """A side file or directory walship left behind."""

    name: str
    kind: str
    """``torn_tail``, ``damaged``, ``temporary`` or ``restore_staging``."""
    size: int
    age_seconds: float | None


@dataclass(kw_only=True)
class ArchiveSide:
    """What an archive (one destination, or all of them) misses of the log."""

    pending: list[PendingSegment] = field(default_factory=list)
    pending_bytes: int = 0
    last_archived_segment: str | None = None
    last_archived_commit_seq: int | None = None
    lag_frames: int | None = None
    lag_bytes: int | None = None
    lag_seconds: float | None = None
    epoch: int = 0
    """The writer's epoch at the archive (``walship.epoch.json``; 0: never taken over; the
    log's: the highest of its destinations')."""
    fenced: str | None = None
    """Why the writer is fenced (another took the archive over), as its archiver recorded."""

    @property
    def oldest_pending(self) -> PendingSegment | None:
        return self.pending[0] if self.pending else None


@dataclass(kw_only=True)
class DestinationStatus(ArchiveSide):
    """The archive side of one destination (its URL without a password)."""

    url: str


@dataclass(kw_only=True)
class LogStatus(ArchiveSide):
    """See the module docstring; :meth:`as_dict` is the ``--json`` document."""

    directory: str
    url: str | None
    """The archive URL (several destinations: their URLs, comma-separated)."""
    local_segments: int = 0
    local_bytes: int = 0
    active_segment: str | None = None
    first_local_segment: str | None = None
    last_commit_seq: int | None = None
    last_timestamp_micros: int | None = None
    checkpoint: int | None = None
    removed_through: int = 0
    leftovers: list[Leftover] = field(default_factory=list)
    destinations: list[DestinationStatus] = field(default_factory=list)
    """Each destination's own archive side, in the configured order (one with ``archive:``,
    none without an archive)."""
    follower: FollowerStatus | None = None
    """The last round of the follower keeping this directory a replica (``walship follow``),
    as it wrote it (``walship.follower.json``); ``None``: no follower wrote here."""

    @property
    def stalled(self) -> dict[str, str]:
        """Stalled segments with their last error."""
        return {p.name: p.error or "" for p in self.pending if p.state == "stalled"}

    def as_dict(self) -> dict[str, Any]:
        doc = asdict(self)
        oldest = self.oldest_pending
        doc["pending_count"] = len(self.pending)
        doc["oldest_pending"] = oldest.name if oldest is not None else None
        doc["oldest_pending_age_seconds"] = oldest.age_seconds if oldest is not None else None
        doc["stalled"] = self.stalled
        return doc


def archive_url(url: str) -> str:
    """``url`` as the archiver records it (:class:`walship.archive.ArchiveStore`'s ``url``)."""
    return destination_url(url)


def gather_status(
    directory: str | Path, url: str | Sequence[str] | None, now_micros: int | None = None
) -> LogStatus:
    """The status of the log in ``directory`` whose archive is ``url`` (a list: several
    destinations; ``None`` or empty: no archive). Read-only (module docstring).

    Raises:
        FileNotFoundError / NotADirectoryError: ``directory`` is not a directory.
        ArchiveRecordError: the archive record is not valid (named).
        OSError: a file could not be read.
    """
    path = Path(directory)
    if not path.is_dir():
        raise (NotADirectoryError if path.exists() else FileNotFoundError)(
            f"{path}: no such log directory"
        )
    now = time.time_ns() // 1000 if now_micros is None else now_micros
    store = PosixStore(path)  # only listed and read: never locked, never written
    urls = [url] if isinstance(url, str) else list(url or ())
    recorded = [archive_url(u) for u in urls]
    out = LogStatus(directory=str(path), url=", ".join(recorded) or None)
    seqs = segment_seqs(store)
    sizes = {s: store.size(segment_name(s)) for s in seqs}
    out.local_segments, out.local_bytes = len(seqs), sum(sizes.values())
    if seqs:
        out.first_local_segment = segment_name(seqs[0])
        out.active_segment = segment_name(seqs[-1])
    record = ArchiveRecord.load(store)
    out.checkpoint, out.removed_through = record.checkpoint, record.removed_through
    active_end = _last_frame(store, seqs, out)
    out.leftovers = _leftovers(store, path, now)
    out.follower = FollowerStatus.load(store)
    if not recorded:
        return out
    out.destinations = [
        _archive_side(store, record, u, seqs, sizes, now, active_end, out) for u in recorded
    ]
    _not_safe_everywhere(out)
    return out


def _not_safe_everywhere(out: LogStatus) -> None:
    """The log's archive fields from its destinations' (module docstring)."""
    behind = min(out.destinations, key=lambda d: d.last_archived_commit_seq or -1)
    out.last_archived_segment = behind.last_archived_segment
    out.last_archived_commit_seq = behind.last_archived_commit_seq
    out.lag_frames = max(d.lag_frames or 0 for d in out.destinations)
    out.lag_bytes = max(d.lag_bytes or 0 for d in out.destinations)
    out.lag_seconds = max(d.lag_seconds or 0.0 for d in out.destinations)
    out.epoch = max(d.epoch for d in out.destinations)
    fenced = [d for d in out.destinations if d.fenced is not None]
    if len(out.destinations) == 1:
        out.fenced = out.destinations[0].fenced
    elif fenced:
        out.fenced = "; ".join(f"{d.url}: {d.fenced}" for d in fenced)
    if len(out.destinations) == 1:
        out.pending = out.destinations[0].pending
    else:
        by_name: dict[str, list[tuple[str, PendingSegment]]] = {}
        for d in out.destinations:
            for p in d.pending:
                by_name.setdefault(p.name, []).append((d.url, p))
        out.pending = [_merged(by_name[name]) for name in sorted(by_name)]
    out.pending_bytes = sum(p.size for p in out.pending)


_STATES = ("waiting", "retrying", "stalled")


def _merged(at: list[tuple[str, PendingSegment]]) -> PendingSegment:
    """One segment pending at several destinations: its worst state, each URL's error."""
    first = at[0][1]
    errors = [f"{url}: {p.error}" for url, p in at if p.error is not None]
    return PendingSegment(
        first.name,
        first.size,
        first.closed_at_micros,
        first.age_seconds,
        max((p.state for _, p in at), key=_STATES.index),
        max(p.attempts for _, p in at),
        "; ".join(errors) if errors else None,
        any(p.conflict for _, p in at),
    )


def _archive_side(
    store: PosixStore,
    record: ArchiveRecord,
    url: str,
    seqs: list[int],
    sizes: dict[int, int],
    now: int,
    active_end: int,
    log: LogStatus,
) -> DestinationStatus:
    """Pending, stalled, the last archived segment, the lag, the epoch and the fence, at
    ``url``."""
    out = DestinationStatus(url=url)
    try:
        local = LocalEpoch.load(store, url)
        out.epoch, out.fenced = local.epoch, local.fenced
    except ArchiveIntegrityError as damaged:
        out.fenced = str(damaged)
    archived = [e for e in record.entries() if e.url == url]
    if archived:
        out.last_archived_segment = segment_name(archived[-1].segment_seq)
        out.last_archived_commit_seq = max((e.last_commit_seq or 0) for e in archived)
    errors = load_attempts(store)
    for i, seq in enumerate(seqs[:-1]):
        if seq <= record.removed_through or record.archived(seq, url):
            continue
        name = segment_name(seq)
        closed = _created_at(store, seqs[i + 1])
        age = (now - closed) / _MICROS if closed is not None else None
        e = errors.get((name, url))
        if e is not None:
            p = PendingSegment(
                name, sizes[seq], closed, age, e.state, e.attempts, e.error, e.conflict
            )
        else:
            p = PendingSegment(name, sizes[seq], closed, age, "waiting")
        out.pending.append(p)
    out.pending_bytes = sum(p.size for p in out.pending)
    unarchived = [s for s in seqs if not record.archived(s, url) and s > record.removed_through]
    out.lag_bytes = out.pending_bytes + (active_end - HEADER_SIZE if seqs else 0)
    base = out.last_archived_commit_seq or 0
    out.lag_frames = max(0, (log.last_commit_seq or base) - base)
    first_ts = _first_unarchived_stamp(store, unarchived)
    if first_ts is None or log.last_timestamp_micros is None or out.lag_frames == 0:
        out.lag_seconds = 0.0
    else:
        out.lag_seconds = max(0, log.last_timestamp_micros - first_ts) / _MICROS
    return out


def _created_at(store: PosixStore, seq: int) -> int | None:
    name = segment_name(seq)
    try:
        return SegmentHeader.decode(store.read(name, 0, HEADER_SIZE), name).created_at_micros
    except (SegmentHeaderError, OSError):
        return None


def _frames(store: PosixStore, seq: int) -> FrameScan:
    data = store.read(segment_name(seq))
    return FrameScan(memoryview(data), HEADER_SIZE)


def _last_frame(store: PosixStore, seqs: list[int], out: LogStatus) -> int:
    """Set the newest local frame's commit_seq and stamp (the last whole frame of the newest
    segment that holds any); return where the last segment's whole frames end (a
    preallocated active segment is longer on disk)."""
    end = HEADER_SIZE
    for seq in reversed(seqs):
        last = None
        for frame in _frames(store, seq):
            last = frame
        if seq == seqs[-1] and last is not None:
            end = last[1]
        if last is not None:
            out.last_commit_seq, out.last_timestamp_micros = last[2], last[3]
            break
    return end


_HEAD = struct.Struct(">IQQ")


def _first_unarchived_stamp(store: PosixStore, seqs: list[int]) -> int | None:
    """The stamp of the first frame of the oldest of ``seqs`` that holds one (its head only)."""
    for seq in seqs:
        head = store.read(segment_name(seq), HEADER_SIZE, _HEAD.size)
        if len(head) == _HEAD.size:
            length, _seq, stamp = _HEAD.unpack(head)
            if MIN_FRAME_LENGTH <= length <= MAX_FRAME_LENGTH:
                return int(stamp)
    return None


def _leftovers(store: PosixStore, path: Path, now: int) -> list[Leftover]:
    out: list[Leftover] = []
    names = store.list_names()
    kinds = side_files(names)
    for name in sorted(kinds):
        out.append(_leftover(path / name, name, kinds[name], now))
    for name in sorted(n for n in names if n.startswith(".") and n.endswith(".tmp")):
        out.append(_leftover(path / name, name, "temporary", now))
    for staging in staging_leftovers(path):
        out.append(_leftover(staging, staging.name, "restore_staging", now))
    return out


def _leftover(p: Path, name: str, kind: str, now: int) -> Leftover:
    try:
        st = p.stat()
    except OSError:
        return Leftover(name, kind, 0, None)
    size = st.st_size
    if p.is_dir():
        size = sum(f.stat().st_size for f in p.rglob("*") if f.is_file())
    return Leftover(name, kind, size, max(0.0, (now - st.st_mtime_ns // 1000) / _MICROS))
