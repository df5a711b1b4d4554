"""The archive's promises on Ceph radosgw, a production S3 server (issue 11): two logs and a
restored fork archiving to one URL (small and multipart-sized segments), a writer SIGKILLed
while archiving, the radosgw daemon stopped mid-upload, a quota refusal, a stale object without
its manifest. In every case: no archived object is ever replaced, nothing stays pending, the
error names what happened."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
from s3server import RadosGW, S3Bucket, new_bucket, radosgw_server, wait_until

import walship
from walship.archive import ArchiveReadStore, ArchiveStore
from walship.archive.restore import restore
from walship.core.header import segment_name
from walship.core.scan import scan_store
from walship.errors import ArchiveConflictError

from .s3proxy import FaultProxy
from .support import FIGURES


@pytest.fixture
def rgw() -> RadosGW:
    return radosgw_server()


@pytest.fixture
def bucket(rgw: RadosGW) -> S3Bucket:
    return new_bucket(rgw)


def section(
    bucket: S3Bucket, options: dict[str, Any] | None = None, **extra: Any
) -> dict[str, Any]:
    return {
        "url": bucket.url,
        "storage_options": options or bucket.storage_options,
        "retries": {"attempts": 3, "backoff": 0.05, "max_backoff": 0.2},
        **extra,
    }


def write(log: walship.Log, segments: int, tag: str, payload: int = 64) -> None:
    for s in range(segments):
        log.append_batch([f"{tag} {s} {i} ".encode() * (payload // 8) for i in range(5)])
        log.rotate()


def frames_of(path: Path) -> list[tuple[int, bytes]]:
    with walship.open(path, entry_point_plugins=False) as log:
        return [(f.commit_seq, f.payload) for f in log.read()]


def restored(bucket: S3Bucket, target: Path) -> list[tuple[int, bytes]]:
    restore(bucket.url, target, storage_options=bucket.storage_options)
    return frames_of(target)


def objects(bucket: S3Bucket) -> dict[str, bytes]:
    return {n: bucket.get(n) for n in bucket.names()}


# --- two writers, one URL --------------------------------------------------------------------


def test_two_logs_and_a_restored_fork_never_replace_an_archived_object(
    bucket: S3Bucket, tmp_path: Path
) -> None:
    """Log A archives; log B (another log, same names, opened while the archive was still
    empty) and C (restored from A's archive while A goes on: a fork) archive to the same URL:
    each gets a clear conflict, and A's objects stay byte for byte what A wrote (A removed its
    local copies under until_archived). A new log opened once A has archived is refused at
    open."""
    b = walship.open(tmp_path / "b", entry_point_plugins=False, archive=section(bucket))
    for segments in (3, 2):
        with walship.open(
            tmp_path / "a",
            entry_point_plugins=False,
            archive=section(bucket),
            retention={"keep_local": "until_archived"},
        ) as a:
            write(a, segments, "A")
            assert a.archiver is not None and a.archiver.flush(timeout=60)
        if segments == 3:
            restore(bucket.url, tmp_path / "c", storage_options=bucket.storage_options)
    archived = objects(bucket)
    assert len(archived) == 10
    with pytest.raises(ArchiveConflictError, match="would number from 1 again"):
        walship.open(tmp_path / "d", entry_point_plugins=False, archive=section(bucket))
    c = walship.open(tmp_path / "c", entry_point_plugins=False, archive=section(bucket))
    for log, tag in ((b, "B"), (c, "C")):
        with log:
            write(log, 2, tag)
            assert log.archiver is not None and not log.archiver.flush(timeout=60)
            stalled = log.archiver.stalled()
        assert stalled, tag
        # the first segment that collides meets the server's conditional create; the later
        # ones are refused before any request (their prev hash does not continue the archive)
        first = min(stalled)
        assert first in stalled[first] and "refusing to overwrite" in stalled[first]
        for name, error in stalled.items():
            assert name in error, error
            assert "refusing to overwrite" in error or "does not continue" in error, error
        FIGURES["radosgw.fork_conflicts"] += len(stalled)
    now = objects(bucket)
    assert {n: now[n] for n in archived} == archived  # nothing replaced
    assert scan_store(ArchiveReadStore(bucket.url, bucket.storage_options)).ok


def big_log(path: Path, bucket: S3Bucket) -> walship.Log:
    return walship.open(
        path,
        entry_point_plugins=False,
        archive=section(bucket, retries={"attempts": 2, "backoff": 0.05}, upload_process=False),
        retention={"keep_local": "until_archived"},
        max_segment_bytes=4 << 30,
    )


def fill(log: walship.Log, mib: int, segments: int, tag: bytes) -> walship.Log:
    for s in range(segments):
        left = mib
        while left > 0:
            n = min(left, 32)
            log.append_batch([tag + bytes([s]) * ((n << 20) - len(tag))])
            left -= n
        log.rotate()
    return log


def two_big_logs(bucket: S3Bucket, tmp_path: Path, segments: int) -> None:
    b = big_log(tmp_path / "b", bucket)  # opened while the archive is empty: a race with A
    a = fill(big_log(tmp_path / "a", bucket), 101, segments, b"A")
    try:
        assert a.archiver is not None and a.archiver.flush(timeout=600)
    finally:
        a.close()
    sizes = {n: len(bucket.get(n)) for n in bucket.names() if n.endswith(".aedbwal")}
    assert len(sizes) == segments and min(sizes.values()) > 100 << 20
    digest = {n: bucket.get(n)[:64] + bucket.get(n)[-64:] for n in sizes}
    try:
        fill(b, 101, segments, b"B")
        assert b.archiver is not None and not b.archiver.flush(timeout=600)
        stalled = b.archiver.stalled()
    finally:
        b.close()
    assert sorted(stalled) == sorted(sizes)
    assert all("refusing to overwrite" in e for e in stalled.values())
    assert {n: bucket.get(n)[:64] + bucket.get(n)[-64:] for n in sizes} == digest
    assert scan_store(ArchiveReadStore(bucket.url, bucket.storage_options)).ok
    FIGURES["radosgw.multipart_sized_conflicts"] += len(stalled)


def test_two_logs_with_multipart_sized_segments(bucket: S3Bucket, tmp_path: Path) -> None:
    """A 101 MiB segment (s3fs would have sent it as a multipart upload, on whose completion
    radosgw ignores If-None-Match): the second log's is refused, the first stays."""
    two_big_logs(bucket, tmp_path, 1)


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_two_logs_with_multipart_sized_segments_long(bucket: S3Bucket, tmp_path: Path) -> None:
    two_big_logs(bucket, tmp_path, 3)


# --- a writer killed while archiving -----------------------------------------------------------

WRITER = textwrap.dedent(
    """
    import json, sys, time, walship
    path, archive = sys.argv[1], json.loads(sys.argv[2])
    log = walship.open(path, entry_point_plugins=False, archive=archive, max_segment_bytes=4096)
    i = 0
    while True:
        i += 1
        log.append_batch([b"frame %d.%d " % (i, j) * 20 for j in range(4)])
        if i % 3 == 0:
            log.rotate()
        if i % 30 == 0:  # (bounded: a loaded machine let it close 1,500 segments before the kill)
            while log.archiver.pending():
                time.sleep(0.01)
    """
)


@pytest.mark.parametrize("upload_process", [True, False])
def test_a_writer_killed_while_archiving_leaves_nothing_pending(
    bucket: S3Bucket, tmp_path: Path, upload_process: bool
) -> None:
    """SIGKILL while uploads run (some objects without their manifest, some answers never
    read): on reopen every re-put meets its own earlier upload (a refused create, 412 with an
    empty message on radosgw), verifies it and counts it; nothing stays pending and the
    archive restores every frame the log holds."""
    archive = section(bucket, upload_process=upload_process, workers=4)
    archive["retries"] = {"attempts": 5, "backoff": 0.05, "max_backoff": 0.2}
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path / "wal"), json.dumps(archive)],
        stderr=subprocess.PIPE,
    )
    try:
        assert wait_until(
            lambda: sum(n.endswith(".manifest.json") for n in bucket.names()) >= 6, timeout=60
        )
    finally:
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
    assert b"Traceback" not in err, err.decode()
    with walship.open(tmp_path / "wal", entry_point_plugins=False, archive=archive) as log:
        assert log.archiver is not None and log.archiver.flush(timeout=120)
        assert log.archiver.pending() == [] and log.archiver.stalled() == {}
        stats = log.archiver.stats()
        log.rotate()
        assert log.archiver.flush(timeout=60)
    local = frames_of(tmp_path / "wal")
    assert restored(bucket, tmp_path / "restored") == local
    FIGURES["radosgw.kill_reputs_already_archived"] += stats["already_archived"]


# --- the daemon stopped mid-upload ----------------------------------------------------------


def test_radosgw_stopped_mid_upload_and_started_again(
    rgw: RadosGW, bucket: S3Bucket, tmp_path: Path
) -> None:
    """The object PUT of segment 2 is held at a proxy while the radosgw daemon is stopped (a
    spare daemon of the cluster: stopping the shared one failed the radosgw tests another
    xdist worker ran meanwhile), then goes on to a dead endpoint; appends go on; radosgw starts
    again: everything is archived, nothing lost, nothing removed locally before."""
    held: list[int] = []

    def plan(n: int, method: str, path: str) -> str | None:
        if method == "PUT" and path.split("?")[0].endswith(segment_name(2)) and not held:
            held.append(n)
            return "hold"
        return None

    with rgw.spare() as spare:
        stopped_and_started(spare, plan, bucket, tmp_path)
    assert len(restored(bucket, tmp_path / "r")) == 4 * 5


def stopped_and_started(rgw: RadosGW, plan: Any, bucket: S3Bucket, tmp_path: Path) -> None:
    proxy = FaultProxy(int(rgw.endpoint.rsplit(":", 1)[1]), plan).start()
    options = proxy.storage_options(read_timeout=5, credentials=bucket.storage_options)
    archive = section(bucket, options)
    archive["retries"] = {"attempts": 1000, "backoff": 0.1, "max_backoff": 0.5}
    try:
        with walship.open(
            tmp_path / "wal",
            entry_point_plugins=False,
            archive=archive,
            retention={"keep_local": "until_archived"},
        ) as log:
            write(log, 2, "before")
            assert proxy.wait_holding(30)
            started = time.monotonic()
            rgw.stop()
            try:
                proxy.release()
                write(log, 2, "during")
                assert log.archiver is not None
                assert wait_until(lambda: log.archiver.stats()["failed_attempts"] > 0, 30)
            finally:
                rgw.start()
            FIGURES["radosgw.outage_seconds"] = round(time.monotonic() - started, 1)
            assert log.archiver.flush(timeout=120)
            local = sorted(os.listdir(tmp_path / "wal"))
        assert segment_name(1) not in local
    finally:
        proxy.stop()


# --- a quota refusal ------------------------------------------------------------------------


def test_a_quota_refusal_is_named_kept_pending_and_archived_later(
    rgw: RadosGW, bucket: S3Bucket, tmp_path: Path
) -> None:
    rgw.admin("quota", "set", "--quota-scope=bucket", "--bucket", bucket.bucket, "--max-objects=4")
    rgw.admin("quota", "enable", "--quota-scope=bucket", "--bucket", bucket.bucket)
    with walship.open(
        tmp_path / "wal",
        entry_point_plugins=False,
        archive=section(bucket, workers=1),  # radosgw's quota check races parallel puts
        retention={"keep_local": "until_archived"},
    ) as log:
        write(log, 3, "q")
        assert log.archiver is not None and not log.archiver.flush(timeout=60)
        stalled = log.archiver.stalled()
        assert list(stalled) == [segment_name(3)]
        error = stalled[segment_name(3)]
        assert bucket.url in error and "HTTP 403 QuotaExceeded" in error and "quota" in error
        assert segment_name(3) in os.listdir(tmp_path / "wal")  # never lost
        rgw.admin(
            "quota", "set", "--quota-scope=bucket", "--bucket", bucket.bucket, "--max-objects=100"
        )
        assert wait_until(lambda: log.archiver.flush(timeout=10), timeout=60)
    assert len(restored(bucket, tmp_path / "r")) == 3 * 5
    FIGURES["radosgw.quota_refusals"] += 1


# --- a stale object without its manifest ----------------------------------------------------


def test_a_stale_object_without_manifest_is_healed_by_the_archiver(
    bucket: S3Bucket, tmp_path: Path
) -> None:
    """The writer died after the object PUT of segment 2 and before its manifest: reopened,
    the archiver verifies the object against the local bytes and writes the manifest."""
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        write(log, 3, "s")
    raw = (tmp_path / "wal" / segment_name(2)).read_bytes()
    bucket.put(segment_name(2), raw)
    with walship.open(tmp_path / "wal", entry_point_plugins=False, archive=section(bucket)) as log:
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        assert log.archiver.stats()["already_archived"] == 1
    store = ArchiveStore(bucket.url, bucket.storage_options)
    assert store.stat(segment_name(2)) is not None
    assert restored(bucket, tmp_path / "r") == frames_of(tmp_path / "wal")
