"""Restore a log from its archive, whole or up to a point in time, and read an archive in place.

:func:`restore` lists the archive once, reads every needed manifest, checks the chain link by
link (each header's ``prev_segment_hash`` against the previous segment's BLAKE3), downloads the
segments in parallel, checks each one's size and BLAKE3 against its manifest, and writes a
directory that :func:`walship.open` accepts. Any object in the archive that is not a segment or
a manifest is refused before anything is downloaded; a missing or altered segment is named.

The restore is staged in a sibling directory and renamed into place at the end, so a restore
that fails or is killed never leaves a directory that looks like a (shorter) log.

A point-in-time restore (``to_seq`` or ``to_time``) ends with the last frame at or before the
target: the segment holding the target is cut at a frame boundary. Timestamps are the writer's
wall clock and are taken as non-decreasing: the restore stops at the first frame stamped later
than ``to_time``, found in the first segment whose last frame is later.

The restored directory ends with a new, empty active segment chained to the last restored one,
so that the log continues in a new segment and never appends to a segment that is sealed in the
archive. After a full restore, the restored segments are recorded as archived at ``url``, so
that archiving the continued log to the same URL does not upload them again; a point-in-time
restore is a fork: archive it to a new URL (the same URL would refuse the cut segment as a
conflict).
"""

from __future__ import annotations

import os
import secrets
import shutil
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import FIRST_EXCEPTION, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from blake3 import blake3 as Blake3

from walship.backends.archive import (
    ArchiveListing,
    ArchiveStore,
    SegmentManifest,
    describe_segment,
)
from walship.backends.archive_errors import (
    ArchiveIntegrityError,
    ArchiveMissingError,
    RestoreError,
)
from walship.backends.posix import PosixStore, fsync_dir
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE, ZERO_HASH, SegmentHeader, segment_name
from walship.errors import FrameError, SegmentHeaderError
from walship.plugins.archive_record import ArchivedSegment, ArchiveRecord

_MANIFEST_JOBS = 16


def parse_time(value: str | datetime | int) -> int:
    """A point in time as microseconds since the Unix epoch.

    Accepts an ISO 8601 string (``2024-05-01T12:00:00Z``, ``...+02:00``; without an offset it
    is UTC), a ``datetime`` (naive: UTC) or an integer of microseconds.

    Raises:
        RestoreError: the string is not ISO 8601.
    """
    if isinstance(value, int):
        return value
    if isinstance(value, str):
        text = value.strip()
        if text.endswith(("Z", "z")):
            text = text[:-1] + "+00:00"
        try:
            value = datetime.fromisoformat(text)
        except ValueError:
            raise RestoreError(
                f"--to-time {value!r} is not an ISO 8601 time (e.g. 2024-05-01T12:00:00Z)"
            ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    delta = value - datetime(1970, 1, 1, tzinfo=timezone.utc)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _format_micros(micros: int) -> str:
    return datetime.fromtimestamp(micros / 1e6, tz=timezone.utc).isoformat()


# --- reading the archive's plan ---------------------------------------------------------------


def _load_manifests(
    archive: ArchiveStore, listing: ArchiveListing, jobs: int
) -> dict[int, SegmentManifest]:
    """Every listed manifest, fetched in parallel and validated against the listing."""
    seqs = sorted(listing.manifests)
    out: dict[int, SegmentManifest] = {}
    if not seqs:
        return out
    with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seqs)))) as pool:
        for seq, m in zip(
            seqs, pool.map(lambda s: archive.stat(segment_name(s)), seqs), strict=True
        ):
            if m is None:
                raise ArchiveMissingError(
                    f"{archive.object_url(segment_name(seq))}: its manifest vanished during the "
                    "restore",
                    segment_name(seq),
                )
            out[seq] = m
    return out


def _check_objects(
    archive: ArchiveStore, listing: ArchiveListing, chosen: list[SegmentManifest]
) -> None:
    """Each chosen segment's object is listed with the size its manifest promises."""
    for m in chosen:
        sizes = listing.objects.get(m.segment_seq, {})
        if m.compression not in sizes:
            raise ArchiveMissingError(
                f"{m.name} is missing from the archive: its manifest is there, its object "
                f"{archive.object_url(m.object)} is not",
                m.name,
            )
        if sizes[m.compression] != m.stored_size:
            raise ArchiveIntegrityError(
                f"{m.name} is altered or partial in the archive: {archive.object_url(m.object)} "
                f"is {sizes[m.compression]} bytes, its manifest says {m.stored_size}",
                m.name,
            )


def _check_run(
    archive: ArchiveStore,
    listing: ArchiveListing,
    manifests: dict[int, SegmentManifest],
    first: int,
    last: int,
) -> list[SegmentManifest]:
    """Segments ``first..last``: all present, one instance, chained link by link."""
    run: list[SegmentManifest] = []
    for seq in range(first, last + 1):
        m = manifests.get(seq)
        if m is None:
            name = segment_name(seq)
            if seq in listing.objects:
                raise ArchiveMissingError(
                    f"{name} is incomplete in the archive: its object is there but not its "
                    "manifest (the upload never finished)",
                    name,
                )
            earlier = [p for p in manifests if p < seq]
            later = [n for n in manifests if n > seq]
            around = ([f"after {segment_name(max(earlier))}"] if earlier else []) + (
                [f"before {segment_name(min(later))}"] if later else []
            )
            raise ArchiveMissingError(
                f"{name} is missing from the archive {archive.url}"
                + (f" ({' and '.join(around)})" if around else ""),
                name,
            )
        if run:
            prev = run[-1]
            if m.instance_id != prev.instance_id:
                raise ArchiveIntegrityError(
                    f"{m.name} belongs to instance {m.instance_id}, {prev.name} to "
                    f"{prev.instance_id}: not one log",
                    m.name,
                )
            if m.prev_segment_hash != prev.blake3:
                raise ArchiveIntegrityError(
                    f"chain broken between {prev.name} and {m.name}: {m.name}'s prev hash "
                    f"{m.prev_segment_hash.hex()[:16]}... is not the BLAKE3 of {prev.name} "
                    f"({prev.blake3.hex()[:16]}...); one of them was altered",
                    m.name,
                )
        run.append(m)
    return run


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
"""What a manifest says of its segment besides size and BLAKE3: restore plans with these."""


def _fetch_verified(archive: ArchiveStore, m: SegmentManifest) -> bytes:
    """Segment ``m``'s raw bytes: size and BLAKE3 as its manifest says, every frame valid, and
    every other claim of the manifest (header fields, frame count, commit_seq and timestamp
    range) true of the bytes."""
    data = archive.get(m)
    try:
        SegmentHeader.decode(data, m.name, m.segment_seq)
    except SegmentHeaderError as e:
        raise ArchiveIntegrityError(str(e), m.name) from None
    actual = describe_segment(m.name, data)  # ArchiveIntegrityError: a frame is damaged
    for claim in _CLAIMS:
        said, found = getattr(m, claim), getattr(actual, claim)
        if said != found:
            shown = (lambda v: v.hex()[:16] + "...") if isinstance(said, bytes) else repr
            raise ArchiveIntegrityError(
                f"manifest {archive.object_url(m.manifest_object)} does not match its segment: "
                f"{claim} is {shown(said)}, the segment says {shown(found)}",
                m.name,
            )
    return data


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
    """False when the archive does not start at the log's first segment."""

    def summary(self) -> str:
        parts = [f"{self.segments} segments, {self.frames} frames"]
        if self.last_commit_seq is not None:
            parts.append(f"commit_seq {self.first_commit_seq}..{self.last_commit_seq}")
        if self.cut_segment is not None:
            parts.append(f"cut {self.cut_bytes} bytes from {self.cut_segment}")
        if not self.anchored:
            parts.append("the archive does not start at the log's first segment")
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


def _cut_offset(data: bytes, name: str, to_seq: int | None, to_micros: int | None) -> _Written:
    """Walk the frames of ``data``; stop before the first frame beyond the target."""
    view = memoryview(data)
    off = HEADER_SIZE
    count = 0
    first = last = last_ts = None
    while off < len(data):
        try:
            f, nxt = framing.decode_at(view, off)
        except FrameError as e:
            raise ArchiveIntegrityError(f"{name}: {e}", name) from None
        if (to_seq is not None and f.commit_seq > to_seq) or (
            to_micros is not None and f.timestamp_micros > to_micros
        ):
            break
        if first is None:
            first = f.commit_seq
        last, last_ts = f.commit_seq, f.timestamp_micros
        count += 1
        off = nxt
    return _Written(0, off, b"", count, first, last, last_ts, len(data) - off)


def restore(
    url: str,
    directory: str | os.PathLike[str],
    to_seq: int | None = None,
    to_time: str | datetime | int | None = None,
    jobs: int = 4,
    progress: Callable[[RestoreProgress], None] | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> RestoreResult:
    """Restore the log archived at ``url`` into ``directory`` (see the module docstring).

    Args:
        to_seq: end with the last frame whose commit_seq is at or below this.
        to_time: end before the first frame stamped later than this (ISO 8601, datetime, or
            microseconds since the epoch; without an offset: UTC).
        jobs: parallel downloads.
        progress: called with a :class:`RestoreProgress` before the downloads and after each
            segment.
    Raises:
        RestoreError: bad arguments, a non-empty target directory, nothing to restore.
        ArchiveNameError: the archive holds an object that is not a segment or manifest.
        ArchiveMissingError: a needed segment is missing (named).
        ArchiveIntegrityError: a segment is altered, partial, or breaks the chain (named).
        OSError: the archive or the local disk failed.
    """
    if to_seq is not None and to_time is not None:
        raise RestoreError("give at most one of to_seq and to_time")
    if to_seq is not None and (type(to_seq) is not int or to_seq < 0):
        raise RestoreError(f"to_seq must be a commit_seq >= 0, got {to_seq!r}")
    if type(jobs) is not int or jobs < 1:
        raise RestoreError(f"jobs must be at least 1, got {jobs!r}")
    to_micros = parse_time(to_time) if to_time is not None else None
    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise RestoreError(f"{target} exists and is not an empty directory; restore into a new one")

    archive = ArchiveStore(url, storage_options)
    listing = archive.list()  # the one LIST of this restore
    listing.raise_rejected(archive.url)
    manifests = _load_manifests(archive, listing, _MANIFEST_JOBS)
    if not manifests:
        extra = " (segment objects without manifests only)" if listing.objects else ""
        raise RestoreError(f"{archive.url} holds no archived segments{extra}")
    seqs = sorted(manifests)
    archive_last = next(
        (manifests[s].last_commit_seq for s in reversed(seqs) if manifests[s].frame_count), None
    )

    # which segments, and which one is cut
    last_seq = seqs[-1]
    cut: int | None = None
    passed: list[SegmentManifest] = []
    """Segments the plan left out on their manifests' word (their range): checked too."""
    if to_seq is not None or to_micros is not None:
        last_seq = -1
        reached: int | None = None  # the last commit_seq of the segments taken so far
        for s in range(seqs[0], seqs[-1] + 1):
            m = manifests.get(s)
            if m is None:
                # a missing segment is not needed only when the target was reached exactly
                # before it; otherwise it may hold frames at or before the target: name it
                if to_seq is None or reached is None or reached < to_seq:
                    last_seq = s
                break
            if not m.frame_count:
                passed.append(m)
                continue
            assert m.first_commit_seq is not None and m.last_commit_seq is not None
            assert m.first_timestamp_micros is not None and m.last_timestamp_micros is not None
            if to_seq is not None:
                starts_after = m.first_commit_seq > to_seq
                ends_after = m.last_commit_seq > to_seq
            else:
                assert to_micros is not None
                starts_after = m.first_timestamp_micros > to_micros
                ends_after = m.last_timestamp_micros > to_micros
            if starts_after:
                passed.append(m)
                break
            passed.clear()
            last_seq = s
            reached = m.last_commit_seq
            if ends_after:
                cut = s
                break
        if to_seq is not None and reached == to_seq:
            passed.clear()  # the target frame itself is restored: nothing later can be needed
        if last_seq < 0:
            what = (
                f"commit_seq {to_seq}"
                if to_seq is not None
                else f"{_format_micros(to_micros or 0)}"
            )
            raise RestoreError(
                f"{archive.url} holds no frame at or before {what} (its first segment is "
                f"{segment_name(seqs[0])})"
            )
    run = _check_run(archive, listing, manifests, seqs[0], last_seq)
    _check_objects(archive, listing, run)
    if passed:  # a lie there could drop frames at or before the target: download and check
        _check_objects(archive, listing, passed)
        for m in passed:
            _fetch_verified(archive, m)

    total_bytes = sum(m.size for m in run)
    staging = target.parent / f".{target.name}.walship-restore-{secrets.token_hex(4)}"
    store = PosixStore(staging)
    done_bytes = 0
    results: dict[int, _Written] = {}

    def fetch(m: SegmentManifest) -> _Written:
        data = _fetch_verified(archive, m)
        if m.segment_seq == cut:
            w = _cut_offset(data, m.name, to_seq, to_micros)
            data = data[: w.size]
            w.seq, w.blake3 = m.segment_seq, Blake3(data).digest()
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
        store.write_atomic(m.name, data)
        return w

    if progress is not None:
        progress(RestoreProgress(0, len(run), 0, total_bytes, None))
    try:
        with ThreadPoolExecutor(max_workers=min(jobs, len(run))) as pool:
            futures: dict[Future[_Written], SegmentManifest] = {
                pool.submit(fetch, m): m for m in run
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
                        progress(
                            RestoreProgress(
                                len(results), len(run), done_bytes, total_bytes, futures[fut].name
                            )
                        )
        written = [results[m.segment_seq] for m in run]
        # the new active segment, chained to the last restored one
        last = written[-1]
        active_seq = last.seq + 1
        header = SegmentHeader(run[0].instance_id, active_seq, time.time_ns() // 1000, last.blake3)
        store.create(segment_name(active_seq), header.encode()).close()
        # what is byte for byte in the archive need not be uploaded again (not a cut segment)
        ArchiveRecord(store).mark_many(
            [
                ArchivedSegment(
                    w.seq, w.size, w.blake3, archive.url, w.last_commit_seq, run[0].instance_id
                )
                for w in written
                if w.cut_bytes == 0
            ]
        )
        if target.exists():
            target.rmdir()  # empty (checked above); rename needs the name free
        os.rename(staging, target)
        fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    frames = [w for w in written if w.frames]
    return RestoreResult(
        directory=str(target),
        url=archive.url,
        segments=len(written),
        frames=sum(w.frames for w in written),
        first_commit_seq=frames[0].first_commit_seq if frames else None,
        last_commit_seq=frames[-1].last_commit_seq if frames else None,
        last_timestamp_micros=frames[-1].last_timestamp_micros if frames else None,
        bytes=sum(w.size for w in written),
        cut_segment=segment_name(cut) if cut is not None else None,
        cut_bytes=sum(w.cut_bytes for w in written),
        active_segment=segment_name(active_seq),
        archive_last_commit_seq=archive_last,
        anchored=run[0].prev_segment_hash == ZERO_HASH,
    )


# --- reading an archive in place ------------------------------------------------------------


class ArchiveReader:
    """Frames straight from an archive, without a local restore. Lists the archive once.

    Every segment read is checked against its manifest (size, BLAKE3) and chained to the one
    before it; a missing or altered segment raises, naming it.
    """

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.archive = ArchiveStore(url, storage_options)
        self.url = self.archive.url
        self._listing: ArchiveListing | None = None
        self._manifests: dict[int, SegmentManifest] | None = None

    def manifests(self) -> list[SegmentManifest]:
        """Every archived segment's manifest, oldest first (one LIST, then one GET each).

        Raises:
            ArchiveNameError: a foreign object in the archive.
        """
        if self._manifests is None:
            listing = self.archive.list()
            listing.raise_rejected(self.url)
            self._listing = listing
            self._manifests = _load_manifests(self.archive, listing, _MANIFEST_JOBS)
        return [self._manifests[s] for s in sorted(self._manifests)]

    def read(self, from_seq: int = 1, to_seq: int | None = None) -> Iterator[Frame]:
        """Yield frames with ``from_seq <= commit_seq <= to_seq`` in order, fetching the next
        segment while the current one is read.

        Raises:
            ArchiveMissingError / ArchiveIntegrityError: a needed segment is missing or altered.
        """
        manifests = self.manifests()
        assert self._manifests is not None and self._listing is not None
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
        # checked; the same at to_seq. _check_run names any gap in between.
        framed = [m for m in manifests if m.frame_count]
        head, tail = wanted[0], wanted[-1]
        if (head.first_commit_seq or 0) <= from_seq:
            first = head.segment_seq  # its download proves every frame before it is earlier
        else:
            before = [m for m in framed if (m.last_commit_seq or 0) < from_seq]
            first = before[-1].segment_seq if before else manifests[0].segment_seq
        if to_seq is None or (tail.last_commit_seq or 0) >= to_seq:
            last = tail.segment_seq if to_seq is not None else manifests[-1].segment_seq
        else:
            after = [m for m in framed if (m.first_commit_seq or 0) > to_seq]
            last = after[0].segment_seq if after else manifests[-1].segment_seq
        run = _check_run(self.archive, self._listing, self._manifests, first, last)
        _check_objects(self.archive, self._listing, run)
        with ThreadPoolExecutor(max_workers=2) as pool:
            ahead: Future[bytes] = pool.submit(_fetch_verified, self.archive, run[0])
            for i in range(len(run)):
                data = ahead.result()
                if i + 1 < len(run):
                    ahead = pool.submit(_fetch_verified, self.archive, run[i + 1])
                for f in framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE):
                    if f.commit_seq < from_seq:
                        continue
                    if to_seq is not None and f.commit_seq > to_seq:
                        return
                    yield f

    def close(self) -> None:
        self._manifests = None

    def __enter__(self) -> ArchiveReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_archive(url: str, storage_options: Mapping[str, Any] | None = None) -> ArchiveReader:
    """An :class:`ArchiveReader` over the archive at ``url``."""
    return ArchiveReader(url, storage_options)
