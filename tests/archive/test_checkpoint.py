"""Checkpoints with snapshots, end to end on moto and on radosgw: ``Log.checkpoint(seq,
snapshot=...)`` stores the snapshot (bytes, a path, a file object) in the archive with its
manifest; ``restore(..., from_checkpoint=...)`` (and ``walship restore --from-checkpoint``)
gives back the snapshot and exactly the frames after it, byte for byte, in a log whose
``first_seq`` is just after the checkpoint; hostile or missing checkpoint objects are refused
by restore and reported by verify."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_target import S3_KINDS, Archive, bucket_archive, s3_server_of, verify_json
from checkpoint_target import Checkpointed, checkpointed_log, snapshot_of
from click.testing import CliRunner
from s3server import FlakyFileSystem, S3Bucket, new_bucket, remove_bucket

import walship
from walship.archive.checkpoint_manifest import CheckpointManifest
from walship.archive.names import checkpoint_manifest_name, snapshot_name
from walship.backends.memory import MemoryStore
from walship.cli import build_cli
from walship.core.header import parse_segment_name
from walship.errors import (
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
    ArchivePlanError,
    CheckpointError,
    RestoreError,
)
from walship.restore import restore

MOTO_NOW_RADOSGW_SLOW = pytest.mark.parametrize(
    "s3_server", ["moto", pytest.param("radosgw", marks=pytest.mark.slow)], indirect=True
)
"""The normal suite runs the test on moto, the slow one on radosgw too (CI's time budget)."""


@pytest.fixture(scope="module", params=S3_KINDS)
def shared(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Checkpointed, Archive]]:
    """One checkpointed log per server (checkpoints 15, 35 and 60, the last frame), only read."""
    bucket = new_bucket(s3_server_of(request.param))
    tmp = tmp_path_factory.mktemp("ckpt")
    done = checkpointed_log(
        bucket.url, bucket.storage_options, tmp, checkpoints=(15, 35, 60), segments=6
    )
    yield done, bucket_archive(bucket, tmp)
    remove_bucket(bucket)


@pytest.fixture
def fresh(s3_target: S3Bucket, tmp_path: Path) -> tuple[Checkpointed, Archive]:
    """A small checkpointed log (checkpoints 15 and 35) in a fresh bucket, to damage."""
    done = checkpointed_log(s3_target.url, s3_target.storage_options, tmp_path, segments=4)
    return done, bucket_archive(s3_target, tmp_path)


def _restored(directory: Path) -> tuple[list[Any], int, list[int]]:
    with walship.open(directory) as log:
        assert log.recovery.problems == []
        segs = sorted(s for p in directory.iterdir() if (s := parse_segment_name(p.name)))
        return list(log.read()), log.first_seq, segs


@pytest.mark.parametrize("which", ["latest", 15, 35])
def test_restore_from_a_checkpoint_gives_its_snapshot_and_exactly_the_frames_after_it(
    shared: tuple[Checkpointed, Archive], tmp_path: Path, which: str | int
) -> None:
    done, archive = shared
    seq = 60 if which == "latest" else int(which)
    result = restore(
        archive.url, tmp_path / "r", storage_options=archive.storage_options, from_checkpoint=which
    )
    assert result.checkpoint == seq and result.first_commit_seq == seq + 1
    assert (tmp_path / "r" / "walship.snapshot").read_bytes() == snapshot_of(seq)
    frames, first_seq, segs = _restored(tmp_path / "r")
    assert frames == done.after(seq)  # byte for byte: payload, type, commit_seq, timestamp
    assert first_seq == seq + 1
    manifest = done.manifests[seq]
    assert segs[0] == manifest.segment_seq  # only the segments from the one after it
    with walship.open(tmp_path / "r") as log:  # it goes on, numbering after the archive
        assert log.append(b"next") == done.frames[-1].commit_seq + 1


def test_a_target_picks_the_newest_checkpoint_at_or_before_it(
    shared: tuple[Checkpointed, Archive], tmp_path: Path
) -> None:
    done, archive = shared
    opts = archive.storage_options
    result = restore(
        archive.url, tmp_path / "a", storage_options=opts, from_checkpoint="latest", to_seq=50
    )
    assert result.checkpoint == 35 and result.last_commit_seq == 50
    frames, first_seq, _ = _restored(tmp_path / "a")
    assert [f.commit_seq for f in frames] == list(range(36, 51)) and first_seq == 36
    assert frames == [f for f in done.after(35) if f.commit_seq <= 50]
    with pytest.raises(RestoreError, match="not at or before commit_seq 20"):
        restore(archive.url, tmp_path / "b", storage_options=opts, from_checkpoint=35, to_seq=20)
    with pytest.raises(RestoreError, match="no checkpoint at commit_seq 16"):
        restore(archive.url, tmp_path / "c", storage_options=opts, from_checkpoint=16)


def test_the_cli_restores_from_a_checkpoint_and_verify_checks_every_snapshot(
    shared: tuple[Checkpointed, Archive], tmp_path: Path
) -> None:
    done, archive = shared
    runner = CliRunner()
    out = runner.invoke(
        build_cli(),
        [
            "restore",
            archive.url,
            str(tmp_path / "r"),
            "--from-checkpoint",
            "15",
            *archive.cli_options(),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "from checkpoint 15" in out.output
    assert _restored(tmp_path / "r")[0] == done.after(15)
    out = runner.invoke(
        build_cli(),
        [
            "restore",
            archive.url,
            str(tmp_path / "l"),
            "--to-seq",
            "40",
            "--from-checkpoint",
            *archive.cli_options(),
        ],
    )
    assert out.exit_code == 0, out.output
    assert "from checkpoint 35" in out.output
    code, doc = verify_json(archive)
    assert code == 0 and doc["problems"] == []


@MOTO_NOW_RADOSGW_SLOW
def test_a_checkpoint_without_an_archive_or_with_another_snapshot_is_refused(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    with walship.open(store=MemoryStore()) as log:
        log.append(b"a")
        with pytest.raises(CheckpointError, match="needs an archive: section"):
            log.checkpoint(1, snapshot=b"state")
        assert log.checkpoint_seq is None
        assert log.checkpoint(1) is None  # without a snapshot: as before
    opts = {
        "url": s3_target.url,
        "storage_options": s3_target.storage_options,
        "upload_process": False,
    }
    with walship.open(store=MemoryStore(), archive=opts) as log:
        log.append_batch([b"a", b"b", b"c"])
        first = log.checkpoint(2, snapshot=b"state at 2")
        assert isinstance(first, CheckpointManifest)
        assert log.checkpoint(2, snapshot=b"state at 2") == first  # idempotent
        with pytest.raises(CheckpointError, match="refusing to overwrite"):
            log.checkpoint(2, snapshot=b"another state")
        with pytest.raises(CheckpointError, match="binary"):
            log.checkpoint(3, snapshot=12)  # type: ignore[arg-type]
        assert log.checkpoint_seq == 2
    assert s3_target.get(snapshot_name(2)) == b"state at 2"
    doc = json.loads(s3_target.get(checkpoint_manifest_name(2)))
    assert doc["commit_seq"] == 2 and doc["size"] == 10 and doc["segment_seq"] == 1


@MOTO_NOW_RADOSGW_SLOW
def test_cli_checkpoint_stores_a_snapshot_file(s3_target: S3Bucket, tmp_path: Path) -> None:
    archive = bucket_archive(s3_target, tmp_path)
    assert archive.config is not None
    config = tmp_path / "log.yaml"
    config.write_text(
        archive.config.read_text().replace(str(tmp_path / "unused"), str(tmp_path / "wal"))
        + "rotation: {max_segment_bytes: 1KiB}\n"
    )
    runner = CliRunner()
    out = runner.invoke(
        build_cli(),
        ["append", "-c", str(config)],
        input="x" * 50 + "\n" * 0 + "\n".join(f"line {i}" for i in range(100)) + "\n",
    )
    assert out.exit_code == 0, out.output
    snap = tmp_path / "snap"
    snap.write_bytes(b"\x00snapshot\xff" * 100)
    out = runner.invoke(
        build_cli(), ["checkpoint", "-c", str(config), "60", "--snapshot", str(snap)]
    )
    assert out.exit_code == 0, out.output
    assert "checkpoint 60: snapshot of 1000 bytes" in out.output
    assert s3_target.get(snapshot_name(60)) == snap.read_bytes()
    no_archive = tmp_path / "plain.yaml"
    no_archive.write_text(f"store: {{path: {tmp_path / 'wal2'}}}\n")
    out = runner.invoke(
        build_cli(), ["checkpoint", "-c", str(no_archive), "0", "--snapshot", str(snap)]
    )
    assert out.exit_code != 0 and "needs an archive: section" in out.output


@MOTO_NOW_RADOSGW_SLOW
def test_a_missing_or_altered_snapshot_is_refused_and_reported(
    fresh: tuple[Checkpointed, Archive], tmp_path: Path
) -> None:
    done, archive = fresh
    opts = archive.storage_options
    archive.delete(snapshot_name(35))
    with pytest.raises(ArchiveMissingError, match=re.escape(snapshot_name(35))):
        restore(archive.url, tmp_path / "r", storage_options=opts, from_checkpoint=35)
    assert not (tmp_path / "r").exists()
    code, doc = verify_json(archive)
    assert code == 1 and [p["segment"] for p in doc["problems"]] == [snapshot_name(35)]
    restore(archive.url, tmp_path / "o", storage_options=opts, from_checkpoint=15)
    assert _restored(tmp_path / "o")[0] == done.after(15)  # the other one still restores
    good = archive.read(snapshot_name(15))
    archive.write(snapshot_name(15), bytes([good[0] ^ 1]) + good[1:])  # same size
    with pytest.raises(ArchiveIntegrityError, match="altered"):
        restore(archive.url, tmp_path / "a", storage_options=opts, from_checkpoint=15)
    assert not (tmp_path / "a").exists()
    code, doc = verify_json(archive)
    assert code == 1 and sorted(p["kind"] for p in doc["problems"]) == [
        "altered_segment",
        "missing_segment",
    ]


def test_hostile_checkpoint_manifests_and_names_are_refused(
    fresh: tuple[Checkpointed, Archive], tmp_path: Path
) -> None:
    done, archive = fresh
    opts = archive.storage_options
    # a manifest whose anchor is off the chain
    doc = json.loads(archive.read(checkpoint_manifest_name(35)))
    doc["prev_segment_hash"] = "00" * 32
    archive.write(checkpoint_manifest_name(35), json.dumps(doc).encode())
    with pytest.raises(ArchivePlanError, match="chain_mismatch"):
        restore(archive.url, tmp_path / "a", storage_options=opts, from_checkpoint=35)
    # a manifest that is not one
    archive.write(checkpoint_manifest_name(15), b"{not json")
    with pytest.raises(RestoreError, match="no checkpoint at commit_seq 15"):
        restore(archive.url, tmp_path / "b", storage_options=opts, from_checkpoint=15)
    code, doc2 = verify_json(archive)
    kinds = sorted(p["kind"] for p in doc2["problems"])
    assert code == 1 and kinds == ["bad_manifest", "chain_mismatch"]
    # a name that looks like walship's but is not one it writes
    archive.write("checkpoint_12.snapshot", b"x")
    with pytest.raises(ArchiveNameError, match=re.escape("checkpoint_12.snapshot")):
        restore(archive.url, tmp_path / "c", storage_options=opts)
    assert len(done.frames) == 40


def test_appends_go_on_while_a_snapshot_uploads_and_a_failed_upload_is_an_error() -> None:
    gate = threading.Event()
    hung = FlakyFileSystem.make(gate=gate)
    archive = {
        "url": f"{hung.protocol[0]}://b/wal",
        "upload_process": False,
        "retries": {"attempts": 3, "backoff": 0.01, "max_backoff": 0.02},
    }
    with walship.open(store=MemoryStore(), durability="none", archive=archive) as log:
        log.append_batch([b"a", b"b"])
        box: dict[str, Any] = {}
        taker = threading.Thread(target=lambda: box.update(m=log.checkpoint(2, snapshot=b"s")))
        taker.start()
        while hung.puts == 0:  # the snapshot's PUT is under way, held at the gate
            taker.join(0.01)
        assert [log.append(b"x%d" % i) for i in range(3)] == [3, 4, 5]  # no wait on it
        assert taker.is_alive() and log.checkpoint_seq is None
        gate.set()
        taker.join(10)
        assert box["m"].commit_seq == 2 and log.checkpoint_seq == 2
    failing = FlakyFileSystem.make(fail_puts=10**6)
    archive["url"] = f"{failing.protocol[0]}://b/wal"
    with walship.open(store=MemoryStore(), durability="none", archive=archive) as log:
        log.append(b"a")
        with pytest.raises(CheckpointError, match="injected failure") as caught:
            log.checkpoint(1, snapshot=b"state")
        assert isinstance(caught.value.__cause__, OSError)
        assert log.checkpoint_seq is None  # the local checkpoint did not move
        assert failing.failures == 3  # every attempt, then the error


def test_edge_checkpoints_restore_to_logs_that_go_on(tmp_path: Path) -> None:
    """A checkpoint before any frame, one whose next frame is not archived yet (the active
    segment), and a restore that ends exactly at the checkpoint."""
    url = f"memory://ckpt-{tmp_path.name}/wal"
    archive = {"url": url, "upload_process": False}
    with walship.open(store=MemoryStore(), archive=archive, max_segment_bytes=400) as log:
        log.checkpoint(0, snapshot=b"empty")
        for i in range(30):
            log.append(b"frame %d" % i)
        log.rotate()
        log.append(b"in the active segment")
        log.checkpoint(31, snapshot=b"all of it")
        assert log.archiver is not None and log.archiver.flush(timeout=10)
        frames = list(log.read())
        active = log.stats()["active_segment"]
    result = restore(url, tmp_path / "zero", from_checkpoint=0)
    assert result.checkpoint == 0 and _restored(tmp_path / "zero")[0] == frames[:30]
    result = restore(url, tmp_path / "last", from_checkpoint="latest")
    assert result.segments == 0 and result.active_segment == active  # it goes on there
    with walship.open(tmp_path / "last") as log:
        assert log.first_seq == 32 and list(log.read()) == []
        assert log.append(b"after") == 32
    result = restore(url, tmp_path / "at", from_checkpoint=0, to_seq=0)
    with walship.open(tmp_path / "at") as log:
        assert list(log.read()) == [] and log.append(b"next") == 1


def test_a_lost_record_of_a_log_restored_from_a_checkpoint_is_rebuilt_with_it(
    shared: tuple[Checkpointed, Archive], tmp_path: Path
) -> None:
    """The rebuilt record knew nothing of the checkpoint: ``first_seq`` fell back to the first
    local frame and ``read()`` handed out again frames that are in the snapshot (applied twice
    by the application). The snapshot beside the log names its checkpoint (size, BLAKE3)."""
    done, archive = shared
    target = tmp_path / "r"
    restore(archive.url, target, storage_options=archive.storage_options, from_checkpoint=35)
    settings = {"url": archive.url, "storage_options": archive.storage_options}
    (target / "walship.archive.json").unlink()
    with walship.open(target, archive=settings) as log:
        assert log.recovery.record_rebuilt
        assert log.first_seq == 36
        assert list(log.read()) == done.after(35)
    with walship.open(target) as log:  # and it stays so: the record is durable
        assert log.first_seq == 36
    (target / "walship.archive.json").unlink()
    (target / "walship.snapshot").write_bytes(b"not the snapshot of any checkpoint")
    with walship.open(target, archive=settings) as log:  # nothing to go by: as before
        assert log.first_seq < 36
