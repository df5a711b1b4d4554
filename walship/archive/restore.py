"""Restore a log from its archive, whole or up to a point in time: plan -> fetch -> commit.

:func:`restore` lists the archive once and reads every manifest (the plan of
:mod:`walship.archive.plan`, the one ``walship verify URL`` checks too), refuses before
writing anything when a segment it needs is missing or its manifest shows damage, downloads
the segments in parallel and checks each one's bytes against its manifest (size, BLAKE3, header,
every frame, every claim), and writes a directory that :func:`walship.open` accepts. The first
segments of a whole restore are downloaded while the manifests are read (:class:`Prefetch`),
held unchecked in memory and used only once their manifest checks them. An object
named like walship's (``segment_...``) that is not a segment or a manifest, or a hostile name
(traversal, separators), is refused before anything is downloaded; objects that are not
walship's at all (a ``README.txt``, ``notes/...``) are ignored, named in one warning on the
``walship.archive`` logger.

**Strict by default.** A restore fails (:class:`~walship.archive.plan.ArchiveIncompleteError`
or ``ArchivePlanError``, naming every piece) unless it holds every frame up to its target: it
must start at the log's first segment (segment 1; an archive starting later misses segments
1..N-1), leave out no segment in between
(a gap, a segment whose object is there without its manifest, a manifest without its object),
and the commit_seq must rise from segment to segment (an archive whose log restarted its
numbering restores into a directory that does not open: refused). ``allow_partial=True``
(``walship restore --allow-partial``) restores on purpose what there is: from the archive's
first segment that is there, up to the first missing piece after it, and names in
``RestoreResult.left_out`` what it left out. Damage is never skipped, partial or not.

The restore is staged in a sibling directory and renamed into place at the end, so a restore
that fails or is killed never leaves a directory that looks like a (shorter) log.

A point-in-time restore (``to_seq`` or ``to_time``) ends with the last frame at or before the
target: a point in time of a log is a prefix of it, so the restore stops at the **first** frame
past the target, and frames after it are left out even if they carry an earlier time. For
``to_time`` every frame kept is checked (timestamps are the writers' wall clocks: a clock that
stepped back, or another writer, can stamp a frame past the target in a segment whose manifest
ends before it); the manifests only choose which segments to download.

The restored directory ends with a new, empty active segment chained to the last restored one,
so that the log continues in a new segment and never appends to a segment that is sealed in the
archive. After a full restore, the restored segments are recorded as archived at ``url``, so
that archiving the continued log to the same URL does not upload them again; a point-in-time
restore is a fork: archive it to a new URL (the same URL would refuse the cut segment as a
conflict).

Live-shipped parts (``archive.ship_interval``) of the segments after the last sealed one are
used too, each checked (:func:`walship.archive.parts.attach_tail`): a restore ends with the last
frame they prove, and the segments assembled from parts are not recorded as archived (the
restored log archives them sealed). A part that does not check is refused like an altered
segment (``ArchivePlanError``); parts that prove nothing are left out with one warning.

The three steps: the plan (:func:`walship.archive.restore_plan.plan_restore`, a pure function of
the archive's plan and the target), :func:`fetch` (the parallel download, each segment checked and
cut, into a staging directory) and :func:`commit` (the cut, the new active segment, the record, the
rename into place). Reading an archive in place is :mod:`walship.archive.reader`.
"""

from __future__ import annotations

import os
import re
import secrets
import struct
import threading
import time
from collections.abc import Callable, Collection, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from blake3 import blake3 as Blake3

from walship.archive import ArchiveStore, SegmentManifest
from walship.archive.check import check_segment, diagnose
from walship.archive.checkpoint_check import anchor_problem, marker_problem
from walship.archive.checkpoint_manifest import CheckpointManifest
from walship.archive.checkpoints import SNAPSHOT_FILE, choose_checkpoint, fetch_snapshot
from walship.archive.parts import attach_tail
from walship.archive.plan import LOG_FIRST_SEGMENT, ArchivePlan
from walship.archive.restore_plan import RestorePlan, plan_restore, refuse
from walship.archive.sealing import Keyring, keyring_argument
from walship.archive.staging import (
    clean_leftovers,
    holds_log,
    one_restore_at_a_time,
    staging_directory,
    sync_staged,
    write_staged,
)
from walship.backends.platform import fsync_dir
from walship.backends.posix import PosixStore
from walship.core.frame import LENGTH_SIZE
from walship.core.header import (
    HEADER_SIZE,
    ZERO_HASH,
    SegmentHeader,
    create_segment,
    segment_name,
)
from walship.core.record import ArchivedSegment, ArchiveRecord
from walship.errors import RestoreError

_FRAME_HEAD = struct.Struct(">IQQ")
"""frame_length, commit_seq, timestamp_micros: the start of every frame."""

_ISO_TIME = re.compile(
    r"(?P<date>\d{4}-\d{2}-\d{2})"
    r"(?:[Tt ](?P<hour>\d{2}):(?P<minute>\d{2})"
    r"(?::(?P<second>\d{2})(?:[.,](?P<fraction>\d+))?)?)?"
    r"\s*(?P<offset>[Zz]|[+-]\d{2}(?::?\d{2})?)?"
)
"""ISO 8601 in its extended form, as :func:`parse_time` accepts it (parsed here rather than by
``datetime.fromisoformat``, which before Python 3.11 takes only 3 or 6 fractional digits and
no ``Z``)."""


def parse_time(value: str | datetime | int) -> int:
    """A point in time as microseconds since the Unix epoch, the same on Python 3.10 to 3.13.

    Accepts an ISO 8601 string in the extended form: a date (``2024-05-01``), optionally a time
    (``T12:00``, ``T12:00:00``, ``T12:00:00.5`` with a fraction of any length, ``.`` or ``,``),
    optionally an offset (``Z``, ``+02:00``, ``+0200``, ``-05``; without one it is UTC); a
    ``datetime`` (naive: UTC); or an integer of microseconds. A fraction finer than a
    microsecond is cut to the microsecond below, which keeps exactly the frames (stamped in
    whole microseconds) at or before the time given.

    Raises:
        RestoreError: the string is not such a time, or names a day or hour that does not exist.
    """
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        value = _parse_iso(value)
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _parse_iso(text: str) -> datetime:
    bad = RestoreError(f"--to-time {text!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)")
    m = _ISO_TIME.fullmatch(text.strip())
    if m is None:
        raise bad
    offset = m["offset"]
    tz: timezone | None = None
    if offset in ("Z", "z"):
        tz = timezone.utc
    elif offset:
        digits = offset[1:].replace(":", "")
        minutes = int(digits[:2]) * 60 + int(digits[2:] or 0)
        if int(digits[2:] or 0) >= 60 or minutes >= 24 * 60:
            raise bad
        tz = timezone((-1 if offset[0] == "-" else 1) * timedelta(minutes=minutes))
    fraction = (m["fraction"] or "")[:6].ljust(6, "0")
    year, month, day = (int(part) for part in m["date"].split("-"))
    try:
        return datetime(
            year,
            month,
            day,
            int(m["hour"] or 0),
            int(m["minute"] or 0),
            int(m["second"] or 0),
            int(fraction),
            tzinfo=tz,
        )
    except ValueError:
        raise bad from None


# --- restore ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class RestoreProgress:
    """Handed to the ``progress`` callback: once before the downloads, then per segment."""

    done_segments: int
    total_segments: int
    done_bytes: int
    total_bytes: int
    segment: str | None


@dataclass(frozen=True)
class RestoreResult:
    """What :func:`restore` wrote."""

    directory: str
    url: str
    segments: int
    """Segment files restored from the archive (not counting the new active segment)."""
    frames: int
    first_commit_seq: int | None
    last_commit_seq: int | None
    last_timestamp_micros: int | None
    bytes: int
    cut_segment: str | None
    """The segment cut at the point in time (``None``: no segment was cut)."""
    cut_bytes: int
    active_segment: str
    """The new, empty segment the restored log continues in."""
    archive_last_commit_seq: int | None
    """The last commit_seq the archive holds (a target beyond it restores everything)."""
    anchored: bool
    """False when the restore does not start at the log's first segment (only with
    ``allow_partial``)."""
    left_out: tuple[str, ...] = ()
    """What a partial restore (``allow_partial``) left out, one line each: the pieces the
    archive lacks and what lies after them. Empty for every other restore."""
    outcome: str = "restored"
    """``"restored"``; ``"present"``: ``if_missing`` and the directory held a log, nothing was
    done (every count 0, ``active_segment`` empty, ``archive_last_commit_seq`` ``None``: the
    archive was not asked); ``"created"``: ``allow_empty`` and the archive held no segment, an
    empty log was created (``active_segment`` its first segment)."""
    checkpoint: int | None = None
    """The checkpoint the restore started from (``from_checkpoint``, or a pruned archive):
    its snapshot is :attr:`snapshot`, and the log's ``first_seq`` is just after it."""
    snapshot: str | None = None
    """The snapshot file written beside the log (``DIR/walship.snapshot``), or ``None``."""
    parts: int = 0
    """Live-shipped parts used after the last sealed segment (:mod:`walship.archive.parts`)."""

    @property
    def partial(self) -> bool:
        return bool(self.left_out)

    def summary(self) -> str:
        if self.outcome == "present":
            return f"{self.directory} already holds a log: nothing restored (--if-missing)"
        if self.outcome == "created":
            return (
                f"{self.url} holds no segments: created an empty log in {self.directory} "
                "(--allow-empty)"
            )
        parts = [f"{self.segments} segments, {self.frames} frames"]
        if self.checkpoint is not None:
            after = max(0, (self.last_commit_seq or 0) - self.checkpoint)
            parts = [
                f"from checkpoint {self.checkpoint} (snapshot {self.snapshot})",
                f"{self.segments} segments, {after} frames after it",
            ]
        if self.last_commit_seq is not None:
            parts.append(f"commit_seq {self.first_commit_seq}..{self.last_commit_seq}")
        if self.cut_segment is not None:
            parts.append(f"cut {self.cut_bytes} bytes from {self.cut_segment}")
        if self.parts:
            parts.append(f"{self.parts} live part(s) after the last sealed segment")
        if self.partial:
            parts.append(f"PARTIAL: {len(self.left_out)} piece(s) left out")
        return "; ".join(parts)


@dataclass
class _Written:
    seq: int
    size: int
    blake3: bytes
    frames: int
    first_commit_seq: int | None
    last_commit_seq: int | None
    last_timestamp_micros: int | None
    cut_bytes: int


def _cut_offset(data: bytes, to_seq: int | None, to_micros: int | None) -> _Written:
    """Walk every frame of ``data`` (a segment :func:`check_segment` passed: every length and
    CRC is valid, so only lengths, commit_seqs and stamps are read); stop before the first
    frame beyond the target, whatever the frames after it say: a point in time of a log is a
    prefix of it."""
    unpack = _FRAME_HEAD.unpack_from
    off, end = HEADER_SIZE, len(data)
    count = 0
    first = last = last_ts = None
    while off < end:
        length, seq, ts = unpack(data, off)
        if (to_seq is not None and seq > to_seq) or (to_micros is not None and ts > to_micros):
            break
        if first is None:
            first = seq
        last, last_ts = seq, ts
        count += 1
        off += LENGTH_SIZE + length
    return _Written(0, off, b"", count, first, last, last_ts, end - off)


@one_restore_at_a_time
def restore(
    url: str,
    directory: str | os.PathLike[str],
    to_seq: int | None = None,
    to_time: str | datetime | int | None = None,
    jobs: int = 4,
    progress: Callable[[RestoreProgress], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    allow_partial: bool = False,
    if_missing: bool = False,
    allow_empty: bool = False,
    encryption: Mapping[str, Any] | Keyring | None = None,
    from_checkpoint: str | int | None = None,
) -> RestoreResult:
    """Restore the log archived at ``url`` into ``directory`` (see the module docstring).

    First, staging directories that earlier restores into ``directory`` left behind (killed)
    and that no live process owns are removed (:func:`walship.archive.staging.clean_leftovers`).

    Args:
        to_seq: end with the last frame whose commit_seq is at or below this.
        to_time: end before the first frame stamped later than this (ISO 8601, datetime, or
            microseconds since the epoch; without an offset: UTC); every frame kept is checked.
        jobs: parallel downloads.
        progress: called with a :class:`RestoreProgress` before the downloads and after each
            segment.
        allow_partial: restore what the archive holds even when pieces are missing: start at
            its first segment that is there (not the log's first), stop before the first
            missing piece after it, and name what was left out in ``left_out``. Damage
            (altered bytes, a broken chain, numbering that goes back) is refused all the same.
        if_missing: when ``directory`` already holds a log (a segment file, ``walship.lock`` or
            ``walship.archive.json``: :func:`walship.archive.staging.holds_log`), do nothing
            (not even a request to the archive) and return a result whose ``outcome`` is
            ``"present"``.
        allow_empty: when the archive holds no segment (foreign objects aside), create an
            empty log in ``directory`` (its first segment, empty, and an empty archive record,
            so that it opens, appends and archives to ``url``) and return a result whose
            ``outcome`` is ``"created"``, instead of raising :class:`RestoreError`.
        from_checkpoint: ``"latest"`` or a commit_seq: restore that checkpoint's snapshot into
            ``DIR/walship.snapshot`` (its BLAKE3 checked) and only the segments from the one
            holding the frame after it; the restored log's ``first_seq`` is just after the
            checkpoint (its chain anchored by the checkpoint's manifest). With ``to_seq`` or
            ``to_time``, ``"latest"`` is the newest checkpoint at or before the target. A
            pruned archive (``walship prune``) is always restored from a checkpoint: without
            ``from_checkpoint``, from its oldest (the most history it holds).

    Returns:
        A :class:`RestoreResult`; its ``outcome`` says which of the three things happened.

    Raises:
        RestoreError: bad arguments, a non-empty target directory (that, with ``if_missing``,
            holds no log), nothing to restore (without ``allow_empty``), another restore into
            ``directory`` running (:func:`walship.archive.staging.restore_lock`).
        ArchiveNameError: the archive holds an object named like walship's that is not a
            segment or manifest, or a hostile name (objects not walship's are ignored).
        ArchiveIncompleteError: segments the restore needs are missing, or the archive does not
            start at the log's first segment (every piece named); nothing is written.
        ArchivePlanError: the manifests (or the segments they name) show damage too: a broken
            chain, numbering that goes back, a lying manifest (every piece named); nothing is
            written.
        ArchiveMissingError / ArchiveIntegrityError: a downloaded segment is gone or does not
            match its manifest, the chain or the numbering (named).
        OSError: the archive or the local disk failed.
    """
    _check_arguments(to_seq, to_time, jobs)
    to_micros = parse_time(to_time) if to_time is not None else None
    target = Path(directory)
    clean_leftovers(target)
    archive = ArchiveStore(url, storage_options, keyring=keyring_argument(encryption))
    if if_missing and holds_log(target):
        return _nothing(target, archive.url, "present")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreError(f"{target} exists and is not an empty directory; restore into a new one")
    listing = archive.list()  # the one LIST of this restore
    listing.raise_rejected(archive.url)  # before any download
    whole = to_seq is None and to_time is None and from_checkpoint is None
    with Prefetch(archive, listing.objects if whole else {}, jobs) as early:
        plan = ArchivePlan.load(archive, listing=listing)
        tail = attach_tail(plan)  # the parts after the last sealed segment, checked
        if tail.problems:
            refuse(plan, tail.problems, False)
        if allow_empty and not plan.seqs and not plan.checkpoints:
            create_empty(target)
            return _nothing(target, archive.url, "created")
        cp, rp = _checked_plan(archive, plan, to_seq, to_micros, allow_partial, from_checkpoint)
        snapshot = fetch_snapshot(archive, cp) if cp is not None else None
        with staging_directory(target) as staging:  # removed again on failure
            store = PosixStore(staging)
            written = fetch(archive, rp, store, jobs, progress, early) if rp.run else []
            if snapshot is not None:
                store.write_atomic(SNAPSHOT_FILE, snapshot)
            written, active = commit(
                store, staging, target, rp, written, archive.url, cp, live=tail.segments
            )
    return _result(target, archive.url, plan, rp, written, active, cp, tail.parts)


def _checked_plan(
    archive: ArchiveStore,
    plan: ArchivePlan,
    to_seq: int | None,
    to_micros: int | None,
    allow_partial: bool,
    from_checkpoint: str | int | None,
) -> tuple[CheckpointManifest | None, RestorePlan]:
    """The checkpoint a restore starts from (``None``: the log's start) and its plan, every
    problem that refuses it raised before anything is written: a prune marker hiding what its
    checkpoint needs, a checkpoint off the chain, damage up to the target (a lying manifest
    named as itself), a segment passed over that does not match its manifest.

    Raises:
        RestoreError / ArchiveIncompleteError / ArchivePlanError / ArchiveIntegrityError: as
            :func:`restore`.
    """
    hidden = marker_problem(plan)  # a prune marker that hides what its checkpoint needs
    if hidden is not None:
        refuse(plan, [hidden], False)
    cp = None
    if from_checkpoint is not None or plan.marker is not None:
        cp = choose_checkpoint(
            plan.checkpoints, from_checkpoint or "oldest", archive.url, to_seq, to_micros
        )
    rp = plan_restore(plan, to_seq, to_micros, allow_partial, cp.segment_seq if cp else None)
    off_chain = [p for p in [anchor_problem(plan, cp) if cp else None] if p]
    if rp.damage or off_chain:  # name a lying manifest as itself (its bytes say which)
        found = diagnose(plan, rp.first, rp.last, rp.damage) if rp.damage else []
        found = [p for p in found if cp is None or p.seq >= rp.first]
        refuse(plan, off_chain + found, not allow_partial)
    for m in rp.passed:  # a lie there could drop frames at or before the target: check it
        check_segment(archive, m).raise_problems()
    return cp, rp


def create_empty(target: Path) -> None:
    """Create an empty log in ``target`` (absent or empty), staged and renamed into place: its
    first segment (a new instance id, a zero prev hash, no frame) and an empty archive record
    (so that its first open need not list the archive).

    Raises:
        OSError: the local disk failed.
    """
    with staging_directory(target) as staging:  # removed again on failure
        store = PosixStore(staging)
        header = SegmentHeader(
            secrets.randbits(63), LOG_FIRST_SEGMENT, time.time_ns() // 1000, ZERO_HASH
        )
        create_segment(store, header).close()
        ArchiveRecord(store).save()
        rename_into_place(staging, target)


def rename_into_place(staging: Path, target: Path) -> None:
    """Rename the finished ``staging`` directory to ``target`` (absent or empty), durably.

    Raises:
        OSError: the local disk failed (``target`` is not empty, or is a mount point).
    """
    if target.exists():
        target.rmdir()  # empty (checked before the plan); rename needs the name free
    os.rename(staging, target)
    fsync_dir(target.parent)


def _check_arguments(to_seq: int | None, to_time: object, jobs: int) -> None:
    if to_seq is not None and to_time is not None:
        raise RestoreError("give at most one of to_seq and to_time")
    if to_seq is not None and (type(to_seq) is not int or to_seq < 0):
        raise RestoreError(f"to_seq must be a commit_seq >= 0, got {to_seq!r}")
    if type(jobs) is not int or jobs < 1:
        raise RestoreError(f"jobs must be at least 1, got {jobs!r}")


PREFETCH_BYTES = 64 << 20
"""At most this much of the first segments (and at most two per job) is downloaded while the
plan reads the manifests (at least one segment)."""


class Prefetch:
    """Downloads of the first segments of a whole restore, started while the plan reads the
    manifests, so that the downloads need not wait for the last manifest: each is an
    uncompressed object of the LIST (``objects``: ``listing.objects``), fetched as
    :meth:`~walship.archive.objects.ArchiveStore.get_unverified` would, held unchecked until
    :meth:`take` hands it to the check against its manifest. A download that fails, or
    that the plan does not use (the restore is refused, the segment is sealed, compressed
    or not in the run), is dropped: the restore downloads it again (and reports its error)
    or never looks at it. A context manager: leaving it cancels what did not start and
    waits for what did."""

    def __init__(self, archive: ArchiveStore, objects: Mapping[int, Mapping[str, int]], jobs: int):
        seqs: list[int] = []
        total = 0
        self._overlay = archive.overlay
        for seq in sorted(s for s, kinds in objects.items() if "none" in kinds):
            total += objects[seq]["none"]
            if seqs and (total > PREFETCH_BYTES or len(seqs) >= 2 * jobs):
                break
            seqs.append(seq)
        self._pool = ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seqs))))
        self._futures = {seq: self._pool.submit(archive.get_unverified, seq) for seq in seqs}
        self._lock = threading.Lock()

    def take(self, m: SegmentManifest) -> bytes | None:
        """The bytes downloaded early of ``m``'s object (waiting for them when the download
        is under way), or ``None``: not downloaded early, failed, or not the object ``m``
        describes (compressed or sealed). Each segment is handed out once. Any thread."""
        with self._lock:
            fut = self._futures.pop(m.segment_seq, None)
        if fut is None:
            return None
        if m.compression != "none" or m.seal is not None or m.segment_seq in self._overlay:
            fut.cancel()
            return None
        try:
            return fut.result()
        except Exception:  # downloaded again by the caller, which reports what fails
            return None

    def __enter__(self) -> Prefetch:
        return self

    def __exit__(self, *exc: object) -> None:
        with self._lock:
            self._futures.clear()
        self._pool.shutdown(wait=True, cancel_futures=True)


def _fetch_one(
    archive: ArchiveStore,
    rp: RestorePlan,
    store: PosixStore,
    m: SegmentManifest,
    early: Prefetch | None = None,
) -> _Written:
    """Download segment ``m`` (or take what ``early`` downloaded of it), check it against its
    manifest, cut it at the target when it is the cut segment (or, to a time, whenever a
    frame is past it), and write it into the staging store. Runs on a download thread."""
    data = check_segment(archive, m, early.take(m) if early else None).raise_problems()
    if rp.walk or m.segment_seq == rp.cut:
        w = _cut_offset(data, rp.to_seq, rp.to_micros)
        if w.cut_bytes:
            data = data[: w.size]
        w.seq, w.blake3 = m.segment_seq, Blake3(data).digest() if w.cut_bytes else m.blake3
    else:
        w = _Written(
            m.segment_seq,
            m.size,
            m.blake3,
            m.frame_count,
            m.first_commit_seq,
            m.last_commit_seq,
            m.last_timestamp_micros,
            0,
        )
    write_staged(store.path, m.name, data)
    return w


def fetch(
    archive: ArchiveStore,
    rp: RestorePlan,
    store: PosixStore,
    jobs: int,
    progress: Callable[[RestoreProgress], None] | None = None,
    early: Prefetch | None = None,
) -> list[_Written]:
    """Step 2 of a restore: download the plan's run ``jobs`` at a time into ``store`` (the
    staging directory), each segment checked (:func:`_fetch_one`; what ``early`` downloaded
    already is taken from it); ``progress`` is called before the downloads and after each
    segment, on the calling thread. Returns what was written, in segment order.

    Raises:
        ArchiveMissingError / ArchiveIntegrityError: a segment is gone or does not match its
            manifest, the chain or the numbering (the first failure; the others are cancelled).
        OSError: the archive or the local disk failed.
    """
    run = rp.run
    total_bytes = sum(m.size for m in run)
    done_bytes = 0
    results: dict[int, _Written] = {}
    if progress is not None:
        progress(RestoreProgress(0, len(run), 0, total_bytes, None))
    with ThreadPoolExecutor(max_workers=min(jobs, len(run))) as pool:
        futures: dict[Future[_Written], SegmentManifest] = {
            pool.submit(_fetch_one, archive, rp, store, m, early): m for m in run
        }
        remaining = set(futures)
        while remaining:
            finished, remaining = wait(remaining, return_when=FIRST_EXCEPTION)
            for fut in finished:
                if fut.exception() is not None:
                    for other in remaining:
                        other.cancel()
                    raise fut.exception()  # type: ignore[misc]
                w = fut.result()
                results[w.seq] = w
                done_bytes += futures[fut].size
                if progress is not None:
                    m = futures[fut]
                    progress(
                        RestoreProgress(len(results), len(run), done_bytes, total_bytes, m.name)
                    )
    return [results[m.segment_seq] for m in run]


def commit(
    store: PosixStore,
    staging: Path,
    target: Path,
    rp: RestorePlan,
    written: list[_Written],
    url: str,
    checkpoint: CheckpointManifest | None = None,
    live: Collection[int] = (),
) -> tuple[list[_Written], int]:
    """Step 3 of a restore: end the staged log at the first frame past the target (the
    segments after a cut one go), add the new active segment chained to the last restored
    one, record what is byte for byte in the archive as archived at ``url`` (not the ``live``
    segments, assembled from parts: the log archives them sealed), and rename the
    staging directory into place (``target`` is absent or empty). Returns the segments kept
    and the active segment's seq. The caller removes the staging directory on failure
    (:func:`walship.archive.staging.staging_directory` does). From a ``checkpoint``, the
    record anchors the first restored segment on the checkpoint's manifest (as retention's
    record anchors a trimmed log) and says the log was restored from it; with no segment to
    restore, the active segment is the one the checkpoint says the log goes on in.

    Raises:
        OSError: the local disk failed.
    """
    cut_at = next((i for i, w in enumerate(written) if w.cut_bytes), None)
    if cut_at is not None:  # the first frame past the target ends the restore
        for w in written[cut_at + 1 :]:
            store.remove(segment_name(w.seq))
        written = written[: cut_at + 1]
    if written:
        active_seq, prev, instance_id = (
            written[-1].seq + 1,
            written[-1].blake3,
            rp.run[0].instance_id,
        )
    else:
        assert checkpoint is not None
        active_seq, prev = checkpoint.segment_seq, checkpoint.prev_segment_hash
        instance_id = checkpoint.instance_id
    header = SegmentHeader(instance_id, active_seq, time.time_ns() // 1000, prev)
    create_segment(store, header).close()
    # what is byte for byte in the archive need not be uploaded again (not a cut segment)
    entries = [
        ArchivedSegment(w.seq, w.size, w.blake3, url, w.last_commit_seq, instance_id)
        for w in written
        if w.cut_bytes == 0 and w.seq not in live
    ]
    if checkpoint is None:
        ArchiveRecord(store).mark_many(entries)
    else:
        checkpoint_record(store, checkpoint, entries, url).save()
    sync_staged(staging)  # the names write_staged made
    rename_into_place(staging, target)
    return written, active_seq


def checkpoint_record(
    store: PosixStore, cp: CheckpointManifest, entries: list[ArchivedSegment], url: str
) -> ArchiveRecord:
    """The archive record of a log restored from checkpoint ``cp`` (not yet saved): the
    restored segments, the entry of the segment before the first one (from the checkpoint's
    manifest: the anchor of the chain, as retention keeps it), the checkpoint, and the numbering
    going on after it whatever was restored."""
    segments = {e.segment_seq: e for e in entries}
    before = cp.segment_seq - 1
    if before >= 1:
        segments[before] = ArchivedSegment(
            before, 0, cp.prev_segment_hash, url, cp.prev_last_commit_seq, cp.instance_id
        )
    last = max([cp.commit_seq] + [e.last_commit_seq or 0 for e in entries])
    return ArchiveRecord(
        store,
        segments,
        checkpoint=cp.commit_seq,
        removed_through=max(before, 0),
        last_commit_seq=last,
        restored_from=cp.commit_seq,
    )


def _nothing(target: Path, url: str, outcome: str) -> RestoreResult:
    """The result of a restore that restored nothing (``outcome``: ``present``, ``created``)."""
    active = segment_name(LOG_FIRST_SEGMENT) if outcome == "created" else ""
    return RestoreResult(
        str(target), url, 0, 0, None, None, None, 0, None, 0, active, None, True, (), outcome
    )


def _result(
    target: Path,
    url: str,
    plan: ArchivePlan,
    rp: RestorePlan,
    written: list[_Written],
    active_seq: int,
    cp: CheckpointManifest | None = None,
    parts: int = 0,
) -> RestoreResult:
    framed = [w for w in written if w.frames]
    cut = written[-1] if written and written[-1].cut_bytes else None
    first = framed[0].first_commit_seq if framed else None
    if cp is not None and first is not None:
        first = max(first, cp.commit_seq + 1)  # read() starts there: the rest is in the snapshot
    return RestoreResult(
        directory=str(target),
        url=url,
        segments=len(written),
        frames=sum(w.frames for w in written),
        first_commit_seq=first,
        last_commit_seq=framed[-1].last_commit_seq if framed else None,
        last_timestamp_micros=framed[-1].last_timestamp_micros if framed else None,
        bytes=sum(w.size for w in written),
        cut_segment=segment_name(cut.seq) if cut is not None else None,
        cut_bytes=sum(w.cut_bytes for w in written),
        active_segment=segment_name(active_seq),
        archive_last_commit_seq=plan.last_commit_seq,
        anchored=rp.anchored,
        left_out=rp.left_out,
        checkpoint=cp.commit_seq if cp is not None else None,
        snapshot=str(target / SNAPSHOT_FILE) if cp is not None else None,
        parts=parts,
    )
