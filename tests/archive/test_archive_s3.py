"""The archive against real S3 endpoints (moto's server on 127.0.0.1 and Ceph radosgw, through
s3fs: every test taking ``s3`` runs on both).

Faults: the server stopped while uploads run and started again; a truncated object planted in
the bucket; a restart with uploads pending. In every case: no local segment removed before its
verified upload, no segment lost, the error named."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from s3server import (
    MotoServer,
    Recorder,
    S3Bucket,
    closed_segments,
    free_port,
    new_bucket,
    wait_until,
)

import walship
from walship.archive import ArchiveReadStore, ArchiveStore, manifest_name
from walship.archive.restore import restore
from walship.backends.posix import PosixStore
from walship.core.header import parse_segment_name, segment_name
from walship.core.record import ArchiveRecord
from walship.core.scan import scan_store
from walship.errors import (
    ArchiveConflictError,
    ArchiveIntegrityError,
    ArchiveMissingError,
)

SEGMENTS = closed_segments(3)


@pytest.fixture
def s3(s3_target: S3Bucket) -> S3Bucket:
    """A fresh bucket on moto, then on radosgw."""
    return s3_target


NAMES = sorted(SEGMENTS)


def local_segments(path: Path) -> list[int]:
    return sorted(s for p in path.iterdir() if (s := parse_segment_name(p.name)) is not None)


def assert_removed_only_after_archived(rec: Recorder) -> None:
    archived: set[int] = set()
    for e in rec.events:
        if e[0] == "archived":
            archived.add(e[1])
        if e[0] == "removed":
            assert e[1] in archived, f"segment {e[1]} removed before it was archived"


def archive_options(bucket: S3Bucket, **extra: Any) -> dict[str, Any]:
    return {
        "url": bucket.url,
        "storage_options": bucket.storage_options,
        "retries": {"attempts": 200, "backoff": 0.05, "max_backoff": 0.25},
        **extra,
    }


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_s3_put_is_conditional_verified_and_idempotent(s3: S3Bucket, compression: str) -> None:
    store = ArchiveStore(s3.url, s3.storage_options, compression=compression)
    for name in NAMES:
        assert store.put(name, SEGMENTS[name]).uploaded
    assert not store.put(NAMES[0], SEGMENTS[NAMES[0]]).uploaded
    suffix = ".zst" if compression == "zstd" else ""
    assert s3.names() == sorted([n + suffix for n in NAMES] + [n + ".manifest.json" for n in NAMES])
    view = ArchiveReadStore(s3.url, s3.storage_options)
    assert view.list_names() == NAMES
    assert scan_store(view).ok
    for name in NAMES:
        m = store.stat(name)
        assert m is not None and store.get(m) == SEGMENTS[name]


def test_s3_never_overwrites_a_planted_truncated_object(s3: S3Bucket) -> None:
    store = ArchiveStore(s3.url, s3.storage_options)
    name, raw = NAMES[1], SEGMENTS[NAMES[1]]
    s3.put(name, raw[:90])
    with pytest.raises(ArchiveConflictError, match="refusing to overwrite") as e:
        store.put(name, raw)
    assert name in str(e.value) and "90 bytes" in str(e.value)
    assert s3.get(name) == raw[:90]  # If-None-Match kept it (and the manifest away)
    assert s3.names() == [name]


def test_s3_planted_truncated_object_keeps_the_segment_local_and_pending(
    tmp_path: Path, s3: S3Bucket
) -> None:
    rec = Recorder()
    s3.put(segment_name(2), b"\x41\x45\x44\x42 truncated")
    with walship.open(
        tmp_path / "wal",
        archive=archive_options(s3, retries={"attempts": 2, "backoff": 0.01}),
        retention={"keep_local": "until_archived"},
        plugins=[rec],
    ) as log:
        for i in range(3):
            log.append_batch([b"frame %d" % i] * 5)
            log.rotate()
        archiver = log.archiver
        assert archiver is not None
        assert not archiver.flush(timeout=60, retry_stalled=False)
        assert archiver.pending() == [segment_name(2)]
        error = archiver.stalled()[segment_name(2)]
        assert segment_name(2) in error and "refusing to overwrite" in error
        assert wait_until(lambda: rec.seqs("removed") == [1])
        time.sleep(0.1)
        # 2 stays, and so does 3: retention never leaves a gap in the local log
        assert local_segments(tmp_path / "wal") == [2, 3, 4]
        assert [e[2] for e in rec.of("failed")] == [1]  # a conflict: no second attempt
        # the operator removes the bad object; the next flush archives the segment
        s3.delete(segment_name(2))
        assert archiver.flush(timeout=60)
        assert wait_until(lambda: local_segments(tmp_path / "wal") == [4])
    assert_removed_only_after_archived(rec)
    assert scan_store(ArchiveReadStore(s3.url, s3.storage_options)).ok


def test_s3_server_stopped_during_uploads_and_started_again(tmp_path: Path) -> None:
    server = MotoServer(port=free_port())
    server.start()
    try:
        bucket = new_bucket(server)
        rec = Recorder()
        log = walship.open(
            tmp_path / "wal",
            durability="none",
            archive=archive_options(bucket, workers=3),
            retention={"keep_local": "until_archived"},
            plugins=[rec],
        )
        closed = 0
        stop_writing = threading.Event()

        def writer() -> None:
            nonlocal closed
            while not stop_writing.is_set() and closed < 40:
                log.append_batch([b"payload %d" % closed * 20] * 20)
                log.rotate()
                closed += 1
                time.sleep(0.03)

        thread = threading.Thread(target=writer)
        thread.start()
        assert wait_until(lambda: len(rec.of("archived")) >= 3)
        server.stop()  # uploads are running: some fail mid-way, the rest cannot connect
        assert wait_until(lambda: len(rec.of("failed")) >= 3)
        # while the server is away: every closed segment is local or durably recorded as
        # archived (the record is written before a segment may go)
        for _ in range(20):
            local = set(local_segments(tmp_path / "wal"))  # first: then the record is newer
            record = ArchiveRecord.load(PosixStore(tmp_path / "wal"))
            for seq in range(1, max(local)):
                assert (
                    seq in local
                    or seq <= record.removed_through
                    or record.archived(seq, bucket.url)
                ), f"segment {seq} is gone but not recorded as archived"
            time.sleep(0.02)
        server.start()
        time.sleep(0.1)
        stop_writing.set()
        thread.join()
        assert log.archiver is not None and log.archiver.flush(timeout=120)
        assert wait_until(lambda: local_segments(tmp_path / "wal") == [closed + 1])
        log.close()
        assert sorted(set(rec.seqs("archived"))) == list(range(1, closed + 1))
        assert_removed_only_after_archived(rec)
        errors = [e[3] for e in rec.of("failed")]
        assert all(errors)
        view = ArchiveReadStore(bucket.url, bucket.storage_options)
        assert view.list_names() == [segment_name(s) for s in range(1, closed + 1)]
        assert scan_store(view).ok
    finally:
        server.stop()


def test_s3_archived_object_truncated_later_is_named(tmp_path: Path, s3: S3Bucket) -> None:
    with walship.open(tmp_path / "wal", archive=archive_options(s3)) as log:
        for i in range(3):
            log.append_batch([b"kept %d" % i] * 10)
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    raw = s3.get(segment_name(2))
    s3.put(segment_name(2), raw[: len(raw) // 2])  # overwritten behind walship's back
    with pytest.raises(ArchiveIntegrityError, match=segment_name(2)) as e:
        restore(s3.url, tmp_path / "r", storage_options=s3.storage_options)
    assert "partial" in str(e.value) and e.value.segment == segment_name(2)
    scan = scan_store(ArchiveReadStore(s3.url, s3.storage_options))  # verify reports, not raises
    assert [(p.segment, p.kind.value) for p in scan.problems] == [
        (segment_name(2), "chain_mismatch")
    ]
    assert "partial" in scan.problems[0].detail
    assert not (tmp_path / "r").exists()


def test_s3_restart_with_uploads_pending(tmp_path: Path) -> None:
    server = MotoServer(port=free_port())
    server.start()
    try:
        bucket = new_bucket(server)
        server.stop()
        options = archive_options(bucket, retries={"attempts": 1, "backoff": 0.01})
        with walship.open(tmp_path / "wal", archive=options) as log:
            for i in range(4):
                log.append_batch([b"waiting %d" % i] * 10)
                log.rotate()
            assert log.archiver is not None
            assert not log.archiver.flush(timeout=60, retry_stalled=False)
            assert len(log.archiver.stalled()) == 4
        server.start()
        rec = Recorder()
        with walship.open(
            tmp_path / "wal",
            archive=archive_options(bucket),
            retention={"keep_local": "until_archived"},
            plugins=[rec],
        ) as log:
            assert log.archiver is not None and log.archiver.flush(timeout=60)
            assert wait_until(lambda: local_segments(tmp_path / "wal") == [5])
        assert_removed_only_after_archived(rec)
        assert sorted(rec.seqs("archived")) == [1, 2, 3, 4]
    finally:
        server.stop()


def test_s3_segment_deleted_from_the_bucket_is_named_by_restore(
    tmp_path: Path, s3: S3Bucket
) -> None:
    with walship.open(tmp_path / "wal", archive=archive_options(s3)) as log:
        for i in range(4):
            log.append_batch([b"kept %d" % i] * 10)
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    s3.delete(segment_name(3))
    with pytest.raises(ArchiveMissingError, match=segment_name(3)):
        restore(s3.url, tmp_path / "r", storage_options=s3.storage_options)
    s3.delete(manifest_name(3))
    with pytest.raises(ArchiveMissingError, match=f"{segment_name(3)} is missing"):
        restore(s3.url, tmp_path / "r", storage_options=s3.storage_options)
    assert not (tmp_path / "r").exists()
    # nothing is lost: the local log (keep_local: all) still holds it, whole
    assert PosixStore(tmp_path / "wal").size(segment_name(3)) > 0
