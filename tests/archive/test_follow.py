"""``walship follow URL DIR`` and :class:`walship.archive.follow.Follower`: a replica of the
archive's sealed segments, kept while a writer in another process archives to moto and to Ceph
radosgw, read meanwhile with ``read_only=True``; ``open_archive(url).read(follow=True)``; the
lag and its hook; what a follower refuses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from s3server import S3Bucket

import walship
from walship import Frame, hookimpl
from walship.archive import ArchiveStore
from walship.archive.follow import Follower
from walship.archive.names import manifest_name
from walship.core.header import parse_segment_name
from walship.errors import ArchivePlanError, StoreLockedError

WALSHIP = str(Path(sys.executable).with_name("walship"))

WRITER = r"""
import json, sys, walship
directory, url, options, count = sys.argv[1], sys.argv[2], json.loads(sys.argv[3]), int(sys.argv[4])
archive = {"url": url, "storage_options": options, "workers": 2,
           "retries": {"attempts": 20, "backoff": 0.05, "max_backoff": 0.5}}
with walship.open(directory, max_segment_bytes=1024, durability="none", archive=archive) as log:
    for i in range(1, count + 1):
        log.append(b"frame-%d|" % i + b"." * (i % 50))
    log.rotate()
    assert log.archiver.flush(timeout=60)
print("done", log.last_seq, flush=True)
"""


def write_archived(
    wal: Path, url: str, options: dict[str, Any], count: int
) -> subprocess.Popen[str]:
    """A writer process that appends ``count`` frames (segments of 1 KiB), archiving each
    closed segment, and rotates and flushes at the end: the archive then holds every frame."""
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(wal), url, json.dumps(options), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )


def check(frames: list[Frame], first: int = 1) -> None:
    assert [f.commit_seq for f in frames] == list(range(first, first + len(frames)))
    for f in frames:
        assert f.payload.split(b"|")[0] == b"frame-%d" % f.commit_seq


class LagRecorder:
    def __init__(self) -> None:
        self.seen: list[tuple[int, float, int | None, int | None]] = []

    @hookimpl
    def follower_lag(
        self, frames: int, seconds: float, replica_seq: int | None, archive_seq: int | None
    ) -> None:
        self.seen.append((frames, seconds, replica_seq, archive_seq))


def test_a_follower_replicates_an_archive_a_writer_process_fills(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    """moto and radosgw: the writer archives 400 frames while the follower takes rounds, a
    read-only reader follows the replica and ``open_archive(url).read(follow=True)`` streams
    the archive; at the end the replica is the archive, byte for byte, and both readers saw
    every frame once."""
    count = 400
    writer = write_archived(tmp_path / "wal", s3_target.url, s3_target.storage_options, count)
    lag = LagRecorder()
    replica = tmp_path / "replica"
    replica.mkdir()
    seen: list[Frame] = []
    with Follower(
        s3_target.url, replica, s3_target.storage_options, interval=0.05, plugins=[lag]
    ) as follower:
        reader = walship.open_read_only(replica, poll_interval=0.01)
        frames = reader.read(count - 300, count, follow=True, timeout=30)
        thread = threading.Thread(target=lambda: seen.extend(frames))
        thread.start()
        streamed: list[Frame] = []
        stream = walship.open_archive(s3_target.url, s3_target.storage_options).read(
            100, count, follow=True, interval=0.05, timeout=30
        )
        streamer = threading.Thread(target=lambda: streamed.extend(stream))
        streamer.start()
        with pytest.raises(StoreLockedError):
            walship.open(replica)  # the follower holds the writer's lock
        while writer.poll() is None:
            follower.run(rounds=1)
        assert writer.returncode == 0
        follower.run(rounds=1)  # what the writer archived last
        thread.join(timeout=30)  # (it ends at the last frame: a close before could cut it short)
        reader.close()
        streamer.join(timeout=30)
        stats = follower.stats()
    check(streamed, 100)
    assert streamed[-1].commit_seq == count
    check(seen, count - 300)
    assert seen[-1].commit_seq == count
    assert stats["replica_seq"] == count and stats["lag"]["frames"] == 0
    assert lag.seen[-1] == (0, 0.0, count, count)
    archive = ArchiveStore(s3_target.url, s3_target.storage_options)
    local = {n for n in os.listdir(replica) if parse_segment_name(n) is not None}
    assert local == {f"segment_{s:016}.aedbwal" for s in archive.list().segment_seqs}
    for name in local:
        m = archive.stat(name)
        assert m is not None and archive.get(m) == (replica / name).read_bytes()
    source = list(walship.open_read_only(tmp_path / "wal").read())
    assert list(walship.open_read_only(replica).read()) == source


def test_walship_follow_command(tmp_path: Path) -> None:
    url = (tmp_path / "archive").as_uri()
    with walship.open(tmp_path / "wal", max_segment_bytes=1024, archive={"url": url}) as log:
        for i in range(1, 201):
            log.append(b"frame-%d|" % i)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    out = subprocess.run(
        [WALSHIP, "follow", url, str(tmp_path / "replica"), "--interval", "10ms", "--rounds", "2"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    first, second = out.stdout.splitlines()
    assert first.startswith("+") and "replica at commit_seq 200; lag 0 frame(s)" in first
    assert second.startswith("+0 segment(s), +0 part(s), +0 frame(s) (0 from live parts)")
    check(list(walship.open_read_only(tmp_path / "replica").read()))
    bad = subprocess.run(
        [WALSHIP, "follow", url, str(tmp_path / "r2"), "--interval", "soon"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "--interval 'soon' is not a duration" in bad.stderr


def archived(tmp_path: Path, frames: int = 100) -> str:
    url = (tmp_path / "archive").as_uri()
    with walship.open(tmp_path / "wal", max_segment_bytes=512, archive={"url": url}) as log:
        for i in range(1, frames + 1):
            log.append(b"frame-%d|" % i)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    return url


def test_a_follower_resumes_and_waits_for_an_upload_under_way(tmp_path: Path) -> None:
    url = archived(tmp_path)
    archive_dir = tmp_path / "archive"
    names = sorted(n for n in os.listdir(archive_dir) if n.endswith(".manifest.json"))
    last = names[-1]
    held = (archive_dir / last).read_bytes()
    os.remove(archive_dir / last)  # the newest segment's upload is under way: no manifest yet
    with Follower(url, tmp_path / "replica") as follower:
        step = follower.poll()
        assert step.segments == len(names) - 1
        assert step.lag.frames == 0  # the manifests it can read say nothing newer
    (archive_dir / last).write_bytes(held)
    with Follower(url, tmp_path / "replica") as follower:  # a restart goes on where it was
        step = follower.poll()
        assert step.segments == 1
    check(list(walship.open_read_only(tmp_path / "replica").read()))


def test_a_follower_waits_at_a_gap_and_refuses_damage(tmp_path: Path) -> None:
    url = archived(tmp_path)
    archive_dir = tmp_path / "archive"
    os.remove(archive_dir / "segment_0000000000000003.aedbwal")
    os.remove(archive_dir / manifest_name(3))
    with Follower(url, tmp_path / "replica") as follower:
        step = follower.poll()  # the archiver uploads in parallel: a gap may be filled later
        assert step.segments == 2 and step.lag.frames > 0
        assert step.waiting_for is not None and "segment_0000000000000003" in step.waiting_for
        assert "waiting for segment_0000000000000003" in step.summary()
        assert follower.stats()["waiting_for"] == step.waiting_for
    url2 = archived(tmp_path / "two")
    victim = tmp_path / "two" / "archive" / manifest_name(2)
    doc = json.loads(victim.read_text())
    doc["prev_segment_hash"] = "00" * 32
    victim.write_text(json.dumps(doc))
    with Follower(url2, tmp_path / "replica2") as follower, pytest.raises(ArchivePlanError):
        follower.poll()
    assert not any(parse_segment_name(n) for n in os.listdir(tmp_path / "replica2"))
