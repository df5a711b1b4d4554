"""End to end through real S3 endpoints (moto's server and Ceph radosgw on 127.0.0.1, through
s3fs): 50 segments rotated by size and by age are archived, the local directory is removed, the
log is restored into a new one and read back byte for byte; point-in-time restores stop where
asked; the same archive with pieces taken away is refused by restore and reported by verify."""

from __future__ import annotations

import random
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_target import S3_KINDS, Archive, bucket_archive, frames_in, s3_server_of, verify_json
from blake3 import blake3
from s3server import S3Bucket, new_bucket

import walship
from walship.archive import ArchiveStore
from walship.archive.plan import ArchiveIncompleteError
from walship.archive.restore import restore
from walship.core.header import parse_segment_name

SEGMENTS = 50


@pytest.fixture(scope="module", params=S3_KINDS)
def archived(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    """Write 50+ segments (small size, short age) archived to a fresh bucket on moto and on
    radosgw; then remove the local directory. Gives the bucket, every frame, and every closed
    segment's bytes; removes the bucket afterwards."""
    s3: S3Bucket = new_bucket(s3_server_of(request.param))
    wal = tmp_path_factory.mktemp("e2e") / "wal"
    rng = random.Random(4)
    with walship.open(
        wal,
        durability="none",
        max_segment_bytes=4096,
        max_segment_age=0.05,
        archive={
            "url": s3.url,
            "storage_options": s3.storage_options,
            "workers": 4,
            "compression": "zstd",
            "retries": {"attempts": 20, "backoff": 0.05, "max_backoff": 0.5},
        },
    ) as log:
        while log.stats().get("rotations_size", 0) + log.stats().get("rotations_age", 0) < (
            SEGMENTS
        ):
            n = rng.randint(1, 12)
            log.append_batch(
                [rng.randbytes(rng.randint(0, 300)) for _ in range(n)],
                payload_type=rng.randint(0, 255),
            )
            if rng.random() < 0.1:
                time.sleep(0.06)  # let the segment age out
        log.rotate()  # close the last frames' segment too: everything is archived
        stats = log.stats()
        assert stats.get("rotations_size", 0) > 5 and stats.get("rotations_age", 0) > 5
        assert log.archiver is not None and log.archiver.flush(timeout=120)
        frames = list(log.read())
        closed = {
            p.name: p.read_bytes()
            for p in sorted(wal.iterdir())
            if parse_segment_name(p.name) is not None
        }
        closed.pop(max(closed))  # the new, empty active segment
    shutil.rmtree(wal)
    yield {"s3": s3, "frames": frames, "segments": closed}
    Archive(s3.url, bucket=s3).remove()


def test_restore_from_s3_gives_back_every_frame_byte_for_byte(
    archived: dict[str, Any], tmp_path: Path
) -> None:
    s3: S3Bucket = archived["s3"]
    result = restore(s3.url, tmp_path / "restored", jobs=4, storage_options=s3.storage_options)
    assert result.segments == len(archived["segments"]) >= SEGMENTS
    for name, raw in archived["segments"].items():
        restored = (tmp_path / "restored" / name).read_bytes()
        assert blake3(restored).digest() == blake3(raw).digest() and restored == raw
    with walship.open(tmp_path / "restored") as log:
        assert log.recovery.problems == [] and log.recovery.anchored
        assert list(log.read()) == archived["frames"]
        assert log.append(b"the restored log goes on") == archived["frames"][-1].commit_seq + 1


def test_point_in_time_restore_from_s3_by_commit_seq(
    archived: dict[str, Any], tmp_path: Path
) -> None:
    s3: S3Bucket = archived["s3"]
    frames = archived["frames"]
    target = frames[len(frames) // 3].commit_seq
    result = restore(
        s3.url, tmp_path / "r", to_seq=target, jobs=4, storage_options=s3.storage_options
    )
    with walship.open(tmp_path / "r") as log:
        got = list(log.read())
    assert got == [f for f in frames if f.commit_seq <= target]
    assert result.last_commit_seq == target


def test_point_in_time_restore_from_s3_by_time(archived: dict[str, Any], tmp_path: Path) -> None:
    s3: S3Bucket = archived["s3"]
    frames = archived["frames"]
    # a time between two batches, two thirds of the way in
    k = next(
        i
        for i in range(2 * len(frames) // 3, len(frames) - 1)
        if frames[i + 1].timestamp_micros > frames[i].timestamp_micros + 1
    )
    target = frames[k].timestamp_micros + 1
    result = restore(
        s3.url, tmp_path / "r", to_time=target, jobs=2, storage_options=s3.storage_options
    )
    with walship.open(tmp_path / "r") as log:
        got = list(log.read())
    assert got == frames[: k + 1]
    assert result.last_timestamp_micros == frames[k].timestamp_micros


def test_open_archive_reads_from_s3_without_a_restore(archived: dict[str, Any]) -> None:
    s3: S3Bucket = archived["s3"]
    frames = archived["frames"]
    start = frames[len(frames) // 2].commit_seq
    reader = walship.open_archive(s3.url, s3.storage_options)
    assert list(reader.read(from_seq=start)) == [f for f in frames if f.commit_seq >= start]


def copy_of(archived: dict[str, Any], tmp_path: Path) -> Archive:
    """A fresh bucket on the same server holding the same objects (to take pieces away)."""
    s3: S3Bucket = archived["s3"]
    copy = new_bucket(s3.server)
    for name in s3.names():
        copy.put(name, s3.get(name))
    return bucket_archive(copy, tmp_path)


def test_restore_and_verify_agree_on_s3(
    archived: dict[str, Any], tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """On both servers: the intact archive verifies and restores; without its first segment,
    with a segment's manifest gone, or a segment gone, restore fails naming each piece, verify
    reports the same, and a partial restore gives the complete run and says what it left out."""
    frames = archived["frames"]
    names = sorted(archived["segments"])
    archive = copy_of(archived, tmp_path)
    request.addfinalizer(archive.remove)
    code, doc = verify_json(archive)
    assert (code, doc["ok"], doc["frames"]) == (0, True, len(frames))
    s3 = ArchiveStore(archive.url, archive.storage_options)
    first = s3.stat(names[0])
    third = s3.stat(names[2])
    assert first is not None and third is not None
    archive.delete(first.object)
    archive.delete(first.manifest_object)
    archive.delete(third.manifest_object)  # segment 3 is there, its manifest never arrived
    expected = [(names[0], "missing_segment"), (names[2], "missing_manifest")]
    with pytest.raises(ArchiveIncompleteError) as e:
        restore(archive.url, tmp_path / "r", storage_options=archive.storage_options)
    assert [(p.segment, p.kind) for p in e.value.problems] == expected
    assert not (tmp_path / "r").exists()
    code, doc = verify_json(archive)
    assert code == 1 and [(p["file"], p["kind"]) for p in doc["problems"]] == expected
    result = restore(
        archive.url, tmp_path / "p", storage_options=archive.storage_options, allow_partial=True
    )
    second = s3.stat(names[1])
    assert second is not None and result.segments == 1 and len(result.left_out) == 3
    assert frames_in(tmp_path / "p") == [
        f for f in frames if second.first_commit_seq <= f.commit_seq <= second.last_commit_seq
    ]
