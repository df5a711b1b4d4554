"""A follower takes the live-shipped parts (``archive.ship_interval``) of the segment after the
last sealed one, against moto and Ceph radosgw: its replica is within a part of a writer in
another process before any segment is sealed, a read-only reader of the replica sees every
frame once across the part appends and the sealed segment put over the copy, and a part that
does not check (or a sealed segment that does not start with the copy's bytes) is refused with
nothing added."""

from __future__ import annotations

import json
import os
import secrets
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
from walship.archive.names import part_manifest_name, part_name
from walship.core.record import ArchiveRecord
from walship.errors import ArchiveIntegrityError
from walship.store import SegmentStore

SEG1 = "segment_0000000000000001.aedbwal"
SEG2 = "segment_0000000000000002.aedbwal"

WRITER = r"""
import json, sys, walship
directory, url, options = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
archive = {"url": url, "storage_options": options, "ship_interval": 0.05,
           "upload_process": False,
           "retries": {"attempts": 20, "backoff": 0.05, "max_backoff": 0.5}}
log = walship.open(directory, max_segment_bytes=1 << 24, durability="always", archive=archive,
                   entry_point_plugins=False)
n = 0
print("ready", flush=True)
for line in sys.stdin:
    cmd, *arg = line.split()
    if cmd == "append":
        for _ in range(int(arg[0])):
            n += 1
            log.append(b"frame-%d|" % n + b"." * (n % 50))
        shipper = log.archiver.shipper
        while shipper.shipped_seq < n:  # the ship_interval rounds, not a ship_now
            import time; time.sleep(0.01)
    elif cmd == "rotate":
        log.rotate()
        assert log.archiver.flush(timeout=60)
    print("at", n, flush=True)
log.close()
"""


class Writer:
    """A writer process with ``ship_interval`` 50 ms and 16 MiB segments, driven line by line:
    ``append(k)`` returns once the shipper shipped every frame, ``rotate()`` once the segment
    is archived sealed."""

    def __init__(self, wal: Path, target: S3Bucket) -> None:
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                WRITER,
                str(wal),
                target.url,
                json.dumps(target.storage_options),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self._line() == "ready"

    def _line(self) -> str:
        assert self.proc.stdout is not None
        return self.proc.stdout.readline().strip()

    def _do(self, cmd: str) -> int:
        assert self.proc.stdin is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        word, n = self._line().split()
        assert word == "at"
        return int(n)

    def append(self, k: int) -> int:
        return self._do(f"append {k}")

    def rotate(self) -> int:
        return self._do("rotate")

    def close(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.close()
        assert self.proc.wait(timeout=60) == 0


class LagRecorder:
    def __init__(self) -> None:
        self.seen: list[tuple[int, int | None, int | None]] = []

    @hookimpl
    def follower_lag(self, frames: int, replica_seq: int | None, archive_seq: int | None) -> None:
        self.seen.append((frames, replica_seq, archive_seq))


def catch_up(follower: Follower, seq: int, rounds: int = 200) -> None:
    for _ in range(rounds):
        follower.poll()
        if follower.end.last_commit_seq == seq:
            return
    raise AssertionError(f"the replica is at {follower.end.last_commit_seq}, not {seq}")


def sealed_names(target: S3Bucket) -> set[str]:
    return {n for n in target.names() if n.endswith(".aedbwal.manifest.json")}


def parts_of(target: S3Bucket, segment: str) -> list[str]:
    names = [n for n in target.names() if n.startswith(segment + ".part-")]
    return sorted(n for n in names if not n.endswith(".json"))


def check(frames: list[Frame], last: int) -> None:
    assert [f.commit_seq for f in frames] == list(range(1, last + 1))
    for f in frames:
        assert f.payload.split(b"|")[0] == b"frame-%d" % f.commit_seq


@pytest.mark.one_python
def test_a_replica_keeps_within_a_part_of_a_shipping_writer(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    writer = Writer(tmp_path / "wal", s3_target)
    replica = tmp_path / "replica"
    replica.mkdir()
    lag = LagRecorder()
    seen: list[Frame] = []
    reader = walship.open_read_only(replica, poll_interval=0.01)
    frames = reader.read(follow=True, timeout=60)
    thread = threading.Thread(target=lambda: seen.extend(frames))
    thread.start()
    try:
        with Follower(
            s3_target.url, replica, s3_target.storage_options, interval=0.05, plugins=[lag]
        ) as follower:
            for _ in range(3):  # parts only: no segment sealed yet
                n = writer.append(40)
                catch_up(follower, n)
                assert sealed_names(s3_target) == set()
                st = follower.stats()
                assert st["partial_segment"] == SEG1 and st["lag"]["frames"] == 0
                assert lag.seen[-1] == (0, n, n)
                assert st["replica_seq"] == n and st["segments"] == 0 and st["parts"] >= 1
            store: SegmentStore = follower.store
            assert ArchiveRecord.load(store).entries() == []  # a partial copy is not archived
            copy = os.stat(replica / SEG1).st_ino
            writer.rotate()  # segment 1 sealed: it goes over the copy
            n = writer.append(30)
            catch_up(follower, n)
            assert os.stat(replica / SEG1).st_ino != copy
            st = follower.stats()
            assert st["partial_segment"] == SEG2 and st["segments"] == 1 and st["frames"] == n
            assert [e.segment_seq for e in ArchiveRecord.load(store).entries()] == [1]
            writer.close()
            thread.join(timeout=60)
            archive = ArchiveStore(s3_target.url, s3_target.storage_options)
            m = archive.stat(SEG1)
            assert m is not None and archive.get(m) == (replica / SEG1).read_bytes()
            tail = b"".join(s3_target.get(p) for p in parts_of(s3_target, SEG2))
            assert tail == (replica / SEG2).read_bytes()
    finally:
        reader.close()
        thread.join(timeout=10)
    check(seen, n)  # every frame once, in order, across appends and the replacement
    assert list(walship.open_read_only(replica).read()) == list(
        walship.open_read_only(tmp_path / "wal").read()
    )


def _shipped(tmp_path: Path, target: S3Bucket, batches: int = 1) -> walship.Log:
    """A writer in this process whose parts are shipped by hand: ``batches`` parts of five
    frames each, in segment 1."""
    archive: dict[str, Any] = {
        "url": target.url,
        "storage_options": target.storage_options,
        "ship_interval": 3600,
        "upload_process": False,
        "retries": {"attempts": 3, "backoff": 0.05, "max_backoff": 0.2},
    }
    log = walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False)
    archiver: Any = log.archiver
    for b in range(batches):
        log.append_batch([b"frame-%d|" % (5 * b + i) for i in range(1, 6)])
        archiver.shipper.ship_now()
    return log


def _refused(target: S3Bucket, replica: Path, match: str) -> None:
    with Follower(target.url, replica, target.storage_options) as follower:
        with pytest.raises(ArchiveIntegrityError, match=match):
            follower.poll()
        assert follower.partial is None
    assert not (replica / SEG1).exists()


def test_a_part_flipped_in_the_archive_is_refused(s3_target: S3Bucket, tmp_path: Path) -> None:
    with _shipped(tmp_path, s3_target):
        [part] = parts_of(s3_target, SEG1)
        data = bytearray(s3_target.get(part))
        data[-3] ^= 0x40
        s3_target.put(part, bytes(data))
        _refused(s3_target, tmp_path / "replica", "BLAKE3")


def test_a_part_whose_manifest_lies_is_refused(s3_target: S3Bucket, tmp_path: Path) -> None:
    with _shipped(tmp_path, s3_target):
        [part] = parts_of(s3_target, SEG1)
        name = part + ".manifest.json"
        doc = json.loads(s3_target.get(name))
        doc["last_commit_seq"] += 1
        s3_target.put(name, json.dumps(doc).encode())
        _refused(s3_target, tmp_path / "replica", "does not match the frames of its part")


def test_a_damaged_later_part_adds_nothing_to_the_copy(s3_target: S3Bucket, tmp_path: Path) -> None:
    replica = tmp_path / "replica"
    with (
        _shipped(tmp_path, s3_target) as log,
        Follower(s3_target.url, replica, s3_target.storage_options) as follower,
    ):
        follower.poll()
        held = (replica / SEG1).read_bytes()
        log.append_batch([b"frame-%d|" % i for i in range(6, 11)])
        archiver: Any = log.archiver
        archiver.shipper.ship_now()
        start = len(held)
        [later] = [p for p in parts_of(s3_target, SEG1) if p.startswith(f"{SEG1}.part-{start:016}")]
        end = int(later.rsplit("-", 1)[1])
        assert later == part_name(1, start, end)
        s3_target.put(part_manifest_name(1, start, end), b"not json")
        with pytest.raises(ArchiveIntegrityError, match="not JSON"):
            follower.poll()
        assert (replica / SEG1).read_bytes() == held
        assert follower.end.last_commit_seq == 5


def test_a_sealed_segment_that_does_not_start_with_the_copy_is_refused(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    """The archive's sealed segment 1 is replaced by another log's, whose manifest checks:
    the replica's copy from parts is not its prefix, so the follower refuses it."""
    replica = tmp_path / "replica"
    with (
        _shipped(tmp_path, s3_target),
        Follower(s3_target.url, replica, s3_target.storage_options) as follower,
    ):
        follower.poll()
        held = (replica / SEG1).read_bytes()
    other = S3Bucket(s3_target.server, s3_target.bucket, "other")
    archive = {"url": other.url, "storage_options": other.storage_options}
    with walship.open(tmp_path / "other", archive=archive, entry_point_plugins=False) as log:
        log.append_batch([b"frame-%d|" % i for i in range(1, 8)])
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(30)
    for suffix in ("", ".manifest.json"):
        s3_target.put(SEG1 + suffix, other.get(SEG1 + suffix))
    with (
        Follower(s3_target.url, replica, s3_target.storage_options) as follower,
        pytest.raises(ArchiveIntegrityError, match="diverge"),
    ):
        follower.poll()
    assert (replica / SEG1).read_bytes() == held


def test_an_encrypted_archive_s_parts_are_opened_with_the_follower_s_keys(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    keys = {"current": "k1", "keys": {"k1": secrets.token_hex(32)}}
    archive: dict[str, Any] = {
        "url": s3_target.url,
        "storage_options": s3_target.storage_options,
        "ship_interval": 3600,
        "upload_process": False,
        "encryption": keys,
    }
    with walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False) as log:
        log.append_batch([b"frame-%d|" % i for i in range(1, 6)])
        archiver: Any = log.archiver
        archiver.shipper.ship_now()
        [part] = parts_of(s3_target, SEG1)
        assert b"frame-1|" not in s3_target.get(part)
        replica = tmp_path / "replica"
        with Follower(
            s3_target.url, replica, s3_target.storage_options, encryption=keys
        ) as follower:
            follower.poll()
            assert follower.end.last_commit_seq == 5
        check(list(walship.open_read_only(replica).read()), 5)


def test_a_copy_torn_by_a_crash_mid_append_is_cut_back_and_goes_on(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    """A follower killed in the middle of an append leaves a torn frame at the end of its
    copy: the next follower cuts it back to the last whole frame (inside a part) and goes on
    from there with the part that holds it."""
    from walship.core.frame import FrameScan
    from walship.core.header import HEADER_SIZE

    replica = tmp_path / "replica"
    with _shipped(tmp_path, s3_target, batches=2):
        first, second = parts_of(s3_target, SEG1)
        data = s3_target.get(first)
        ends = [e for _, e, _, _, _ in FrameScan(data, HEADER_SIZE)]
        (replica).mkdir()
        (replica / SEG1).write_bytes(data[: ends[2]] + data[ends[2] : ends[3] - 3])
        with Follower(s3_target.url, replica, s3_target.storage_options) as follower:
            assert follower.partial is not None and follower.partial.size == ends[2]
            assert follower.end.last_commit_seq == 3
            follower.poll()
            assert follower.end.last_commit_seq == 10
        whole = b"".join(s3_target.get(p) for p in (first, second))
        assert (replica / SEG1).read_bytes() == whole
        check(list(walship.open_read_only(replica).read()), 10)


def test_the_follow_summary_counts_the_parts_and_their_frames(tmp_path: Path) -> None:
    """``walship follow``'s line per round names the parts taken and counts their frames
    (those a sealed segment put over the copy brings again are not counted twice)."""
    url = (tmp_path / "archive").as_uri()
    archive = {"url": url, "ship_interval": 3600, "upload_process": False}

    def follow_once() -> str:
        command = ["follow", url, str(tmp_path / "replica"), "--interval", "10ms", "--rounds", "1"]
        out = subprocess.run(
            [sys.executable, "-m", "walship", *command],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.strip()

    with walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False) as log:
        archiver: Any = log.archiver
        log.append_batch([b"sealed"] * 5)
        log.rotate()
        assert archiver.flush(30)
        log.append_batch([b"shipped"] * 7)
        archiver.shipper.ship_now()
        assert follow_once().startswith(
            "+1 segment(s), +1 part(s), +12 frame(s) (7 from live parts); replica at commit_seq 12;"
        )
        log.append_batch([b"more"] * 3)
        archiver.shipper.ship_now()
        assert follow_once().startswith("+0 segment(s), +1 part(s), +3 frame(s) (3 from live")
        log.append(b"last")
        log.rotate()  # segment 2 sealed: 11 frames, 10 of them in the replica's copy already
        assert archiver.flush(30)
        assert follow_once().startswith("+1 segment(s), +0 part(s), +1 frame(s) (0 from live")
    frames = list(walship.open_read_only(tmp_path / "replica").read())
    assert [f.commit_seq for f in frames] == list(range(1, 17))
