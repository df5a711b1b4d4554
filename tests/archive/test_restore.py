"""Restore from an archive (memory://, file://): whole and to a point in time, checked segment by
segment and link by link, refusing false segment names (foreign objects:
test_foreign_objects.py), naming what is missing or altered; and
reading an archive in place with ``walship.open_archive``."""

from __future__ import annotations

import dataclasses
import json
import secrets
from pathlib import Path
from typing import Any

import archive_target
import pytest
from archive_target import Archive, frames_in

import walship
from walship.archive import ArchiveStore, manifest_name
from walship.archive.restore import Prefetch, RestoreProgress, parse_time, restore
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import segment_name
from walship.core.record import ArchiveRecord
from walship.core.rotation import ManualClock
from walship.core.scan import scan_store
from walship.errors import (
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
    RestoreError,
)

T0 = 1_700_000_000_000_000


@pytest.fixture(params=["memory", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://restore-{secrets.token_hex(6)}/wal"
    return (tmp_path / "archive").as_uri()


def archived_log(url: str, segments: int = 6, frames: int = 10, **archive: Any) -> list[Any]:
    """A log archived to ``url`` (see ``archive_target.archived_log``): every frame written."""
    return archive_target.archived_log(Archive(url), segments, frames, **archive)


def store_of(url: str) -> ArchiveStore:
    return ArchiveStore(url)


def replace_object(url: str, name: str, data: bytes | None) -> None:
    store = store_of(url)
    store.fs.rm_file(f"{store.root}/{name}")
    if data is not None:
        store.fs.pipe_file(f"{store.root}/{name}", data)
    store.fs.invalidate_cache()


def read_object(url: str, name: str) -> bytes:
    store = store_of(url)
    return bytes(store.fs.cat_file(f"{store.root}/{name}"))


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_a_full_restore_gives_back_every_frame(url: str, tmp_path: Path, compression: str) -> None:
    written = archived_log(url, compression=compression)
    seen: list[RestoreProgress] = []
    result = restore(url, tmp_path / "restored", jobs=3, progress=seen.append)
    assert result.segments == 6 and result.frames == 60 and result.cut_segment is None
    assert (result.first_commit_seq, result.last_commit_seq) == (1, 60)
    assert result.anchored and result.active_segment == segment_name(7)
    assert frames_in(tmp_path / "restored") == written
    assert seen[0].done_segments == 0 and seen[-1].done_segments == 6
    assert seen[-1].done_bytes == seen[-1].total_bytes == result.bytes
    assert scan_store(PosixStore(tmp_path / "restored")).ok


def test_the_restored_log_continues_into_the_same_archive(url: str, tmp_path: Path) -> None:
    written = archived_log(url)
    restore(url, tmp_path / "r")
    record = ArchiveRecord.load(PosixStore(tmp_path / "r"))
    assert [e.segment_seq for e in record.entries()] == [1, 2, 3, 4, 5, 6]
    with walship.open(tmp_path / "r", archive={"url": url}) as log:
        assert log.append(b"after the restore") == 61
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        stats = log.archiver.stats()
        assert stats["uploaded"] == 1 and stats["already_archived"] == 0  # only segment 7
    assert [f.commit_seq for f in walship.open_archive(url).read(from_seq=59)] == [59, 60, 61]
    assert len(list(walship.open_archive(url).read())) == len(written) + 1


@pytest.mark.parametrize("to_seq", [1, 9, 10, 11, 35, 59, 60, 500])
def test_restore_to_a_commit_seq(url: str, tmp_path: Path, to_seq: int) -> None:
    written = archived_log(url)
    result = restore(url, tmp_path / "r", to_seq=to_seq)
    got = frames_in(tmp_path / "r")
    expected = [f for f in written if f.commit_seq <= to_seq]
    assert got == expected
    assert result.last_commit_seq == expected[-1].commit_seq
    assert result.archive_last_commit_seq == 60
    cut = to_seq % 10 != 0 and to_seq < 60
    assert (result.cut_segment is not None) == cut
    if cut:
        assert result.cut_segment == segment_name((to_seq - 1) // 10 + 1)


def test_restore_to_a_time(url: str, tmp_path: Path) -> None:
    written = archived_log(url)
    target = written[24].timestamp_micros + 500_000  # between frame 25 and frame 26
    iso = parse_time(target)
    assert iso == target
    when = "2023-11-14T22:13:45.500000Z"  # T0 + 25.5 s
    assert parse_time(when) == target
    result = restore(url, tmp_path / "r", to_time=when)
    assert frames_in(tmp_path / "r") == written[:25]
    assert result.last_timestamp_micros is not None and result.last_timestamp_micros <= target
    assert result.cut_segment == segment_name(3)
    # a naive time is UTC, an offset is honoured
    assert parse_time("2023-11-14T22:13:45.5") == parse_time("2023-11-14T23:13:45.5+01:00")


def test_a_time_before_the_archive_starts_is_refused(url: str, tmp_path: Path) -> None:
    archived_log(url)
    with pytest.raises(RestoreError, match="no frame at or before"):
        restore(url, tmp_path / "r", to_time=T0 - 1)
    with pytest.raises(RestoreError, match="no frame at or before commit_seq 0"):
        restore(url, tmp_path / "r", to_seq=0)
    assert not (tmp_path / "r").exists()


def test_bad_arguments_are_refused(url: str, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_bytes(b"")
    with pytest.raises(RestoreError, match="not an empty directory"):
        restore(url, tmp_path / "full")
    with pytest.raises(RestoreError, match="at most one"):
        restore(url, tmp_path / "r", to_seq=1, to_time=T0)
    with pytest.raises(RestoreError, match="ISO 8601"):
        restore(url, tmp_path / "r", to_time="yesterday")
    with pytest.raises(RestoreError, match="jobs"):
        restore(url, tmp_path / "r", jobs=0)
    with pytest.raises(RestoreError, match="holds no archived segments"):
        restore(url, tmp_path / "r")


# --- a damaged archive: named, nothing left behind ------------------------------------------


def nothing_left(tmp_path: Path) -> None:
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir() if "walship-restore" in p.name] == []


def test_a_segment_deleted_from_the_archive_is_named(url: str, tmp_path: Path) -> None:
    archived_log(url)
    replace_object(url, segment_name(3), None)
    with pytest.raises(ArchiveMissingError, match=segment_name(3)) as e:
        restore(url, tmp_path / "r")
    assert e.value.segment == segment_name(3) and "its object" in str(e.value)
    nothing_left(tmp_path)
    replace_object(url, manifest_name(3), None)  # now segment 3 is gone entirely
    with pytest.raises(
        ArchiveMissingError,
        match=f"{segment_name(3)} is missing \\(missing_segment\\): nothing of it",
    ):
        restore(url, tmp_path / "r")
    # what lies before the gap can still be restored, but not a point inside or after it
    assert restore(url, tmp_path / "r", to_seq=20).last_commit_seq == 20
    for target in ({"to_seq": 25}, {"to_seq": 45}, {"to_time": T0 + 25_000_000}):
        with pytest.raises(ArchiveMissingError, match=segment_name(3)):
            restore(url, tmp_path / "r2", **target)
    assert restore(url, tmp_path / "r3", to_time=T0 + 15_000_000).last_commit_seq == 15


def test_an_object_without_manifest_is_named_as_incomplete(url: str, tmp_path: Path) -> None:
    archived_log(url)
    replace_object(url, manifest_name(2), None)
    with pytest.raises(ArchiveMissingError, match=r"missing_manifest.*never finished") as e:
        restore(url, tmp_path / "r")
    assert e.value.segment == segment_name(2)
    nothing_left(tmp_path)


@pytest.mark.parametrize("damage", ["truncated", "flipped", "empty"])
def test_an_altered_segment_is_named(url: str, tmp_path: Path, damage: str) -> None:
    archived_log(url)
    raw = read_object(url, segment_name(4))
    bad = {
        "truncated": raw[: len(raw) - 30],
        "flipped": raw[:100] + bytes([raw[100] ^ 4]) + raw[101:],
        "empty": b"",
    }[damage]
    replace_object(url, segment_name(4), bad)
    with pytest.raises(ArchiveIntegrityError) as e:
        restore(url, tmp_path / "r", jobs=2)
    assert e.value.segment == segment_name(4) and segment_name(4) in str(e.value)
    nothing_left(tmp_path)
    assert restore(url, tmp_path / "r", to_seq=30).last_commit_seq == 30


def test_a_broken_chain_is_named(url: str, tmp_path: Path) -> None:
    archived_log(url)
    doc = json.loads(read_object(url, manifest_name(5)))
    doc["prev_segment_hash"] = "11" * 32
    replace_object(url, manifest_name(5), json.dumps(doc).encode())
    # the manifest breaks the chain; the bytes (its BLAKE3 vouches for them) show it lies
    with pytest.raises(ArchiveIntegrityError, match=r"bad_manifest.*prev_segment_hash") as e:
        restore(url, tmp_path / "r")
    assert e.value.segment == segment_name(5)
    nothing_left(tmp_path)
    # a segment whose own bytes break the chain: named by the chain
    raw = bytearray(read_object(url, segment_name(3)))
    raw[40] ^= 1  # inside its header's prev hash, which no CRC covers
    replace_object(url, segment_name(3), bytes(raw))
    replace_object(url, manifest_name(3), None)
    ArchiveStore(url).put(segment_name(3), bytes(raw))
    with pytest.raises(ArchiveIntegrityError, match=r"chain_mismatch.*is not the BLAKE3 of") as e:
        restore(url, tmp_path / "r", to_seq=35)
    assert e.value.segment == segment_name(3)
    nothing_left(tmp_path)


def test_a_forged_segment_with_a_matching_manifest_breaks_the_chain(
    url: str, tmp_path: Path
) -> None:
    archived_log(url)
    store = store_of(url)
    m = store.stat(segment_name(2))
    assert m is not None
    # a segment 2 of the same instance, with other frames, and a manifest that matches it:
    # only the chain can tell
    mem = MemoryStore()
    with walship.open(store=mem, instance_id=m.instance_id, clock=ManualClock(T0)) as log:
        for i in range(2):
            log.append_batch([b"forged %d" % i] * 10)
            log.rotate()
    replace_object(url, manifest_name(2), None)
    replace_object(url, segment_name(2), None)
    store.put(segment_name(2), mem.read(segment_name(2)))
    with pytest.raises(ArchiveIntegrityError, match="chain_mismatch") as e:
        restore(url, tmp_path / "r")
    assert e.value.segment in (segment_name(2), segment_name(3))
    nothing_left(tmp_path)


@pytest.mark.parametrize("name", ["segment_0000000000000003.aedbwal.orig", "segment_3.aedbwal"])
def test_false_segment_names_are_refused_and_nothing_is_written(
    url: str, tmp_path: Path, name: str
) -> None:
    archived_log(url, segments=2)
    store = store_of(url)
    store.fs.pipe_file(f"{store.root}/{name}", b"#!/bin/sh\nrm -rf /\n")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(ArchiveNameError, match="refused"):
        restore(url, tmp_path / "r")
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_traversal_names_in_a_file_archive_are_refused(tmp_path: Path) -> None:
    url = (tmp_path / "archive").as_uri()
    archived_log(url, segments=2)
    (tmp_path / "archive" / "..evil").write_bytes(b"x")
    (tmp_path / "archive" / "sub").mkdir()
    (tmp_path / "archive" / "sub" / segment_name(9)).write_bytes(b"x")
    (tmp_path / "archive" / segment_name(8)).symlink_to("/etc/passwd")
    with pytest.raises(ArchiveNameError) as e:
        restore(url, tmp_path / "r")
    assert "refused" in str(e.value) and segment_name(8) in str(e.value)
    nothing_left(tmp_path)
    (tmp_path / "archive" / segment_name(8)).unlink()  # "..evil" and "sub" are not walship's
    assert restore(url, tmp_path / "r").segments == 2


# --- reading an archive in place ------------------------------------------------------------


def test_open_archive_streams_frames_without_a_restore(url: str) -> None:
    written = archived_log(url, compression="zstd")
    reader = walship.open_archive(url)
    assert [m.segment_seq for m in reader.manifests()] == [1, 2, 3, 4, 5, 6]
    assert list(reader.read()) == written
    assert list(reader.read(from_seq=27, to_seq=33)) == written[26:33]
    assert list(reader.read(from_seq=61)) == []


def test_open_archive_names_what_it_cannot_read(url: str) -> None:
    written = archived_log(url)
    replace_object(url, segment_name(2), None)
    replace_object(url, manifest_name(2), None)
    reader = walship.open_archive(url)
    assert list(reader.read(from_seq=21)) == written[20:]  # beyond the gap: fine
    assert list(reader.read(to_seq=10)) == written[:10]  # before it: fine
    for bounds in ({"from_seq": 5}, {"from_seq": 15}, {"from_seq": 1, "to_seq": 12}):
        with pytest.raises(ArchiveMissingError, match=segment_name(2)):
            list(walship.open_archive(url).read(**bounds))
    raw = read_object(url, segment_name(5))
    replace_object(url, segment_name(5), raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ArchiveIntegrityError, match=segment_name(5)):
        list(walship.open_archive(url).read(from_seq=30))


@pytest.mark.parametrize(
    ("claim", "bounds"),
    [
        # segment 2 (frames 11..20) claims to end at 14: read from 16 must not skip 16..20
        ({"last_commit_seq": 14}, {"from_seq": 16}),
        # segment 4 (frames 31..40) claims to start at 36: read to 33 must not stop at 30
        ({"first_commit_seq": 36}, {"from_seq": 25, "to_seq": 33}),
    ],
)
def test_open_archive_checks_the_manifests_it_would_skip_on(
    url: str, claim: dict[str, int], bounds: dict[str, int]
) -> None:
    """A manifest's commit_seq range is only a claim: the segment at the edge of a read, which
    the claim would have the reader skip, is downloaded and checked too, so a lying manifest
    raises (naming the segment) instead of silently hiding frames."""
    written = archived_log(url)
    seq = 2 if "last_commit_seq" in claim else 4
    doc = json.loads(read_object(url, manifest_name(seq)))
    doc.update(claim)
    replace_object(url, manifest_name(seq), json.dumps(doc).encode())
    with pytest.raises(ArchiveIntegrityError, match=segment_name(seq)):
        list(walship.open_archive(url).read(**bounds))
    assert list(walship.open_archive(url).read(from_seq=45)) == written[44:]  # away from it


class _CountingArchive:
    """What :class:`Prefetch` needs of an archive: ``get_unverified`` (counted; segment 3
    fails) and ``overlay``."""

    def __init__(self) -> None:
        self.overlay: dict[int, bytes] = {}
        self.gets: list[int] = []

    def get_unverified(self, seq: int) -> bytes:
        self.gets.append(seq)
        if seq == 3:
            raise OSError("the store failed")
        return b"segment %d" % seq


def _manifest_of(seq: int, **extra: Any) -> Any:
    from test_restore_plan import manifest

    return dataclasses.replace(manifest(seq, b"\0" * 32), **extra)


def test_prefetch_downloads_the_first_uncompressed_segments_once() -> None:
    """Two per job at most, within the byte budget; each handed out once; a failed, sealed
    or compressed one (or one the live parts assembled) is not handed out."""
    archive = _CountingArchive()
    objects = {s: {"none": 10} for s in range(1, 9)} | {9: {"zstd": 10}}
    with Prefetch(archive, objects, jobs=3) as early:  # type: ignore[arg-type]
        assert early.take(_manifest_of(1)) == b"segment 1"
        assert early.take(_manifest_of(1)) is None  # once
        assert early.take(_manifest_of(2, compression="zstd")) is None
        assert early.take(_manifest_of(3)) is None  # its download failed
        archive.overlay[4] = b"assembled"
        assert early.take(_manifest_of(4)) is None
        assert early.take(_manifest_of(5)) == b"segment 5"
        assert early.take(_manifest_of(7)) is None  # past two per job
    assert {1, 3, 5} <= set(archive.gets) <= {1, 2, 3, 4, 5, 6}  # (2, 4: perhaps cancelled)
    big = {s: {"none": 40 << 20} for s in range(1, 5)}
    with Prefetch(_CountingArchive(), big, jobs=4) as early:  # type: ignore[arg-type]
        assert early.take(_manifest_of(1)) == b"segment 1"
        assert early.take(_manifest_of(2)) is None  # past the byte budget
