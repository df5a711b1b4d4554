"""Archive retention end to end on moto and on radosgw: ``walship prune`` (and ``archive.prune``
after each checkpoint) removes what no kept checkpoint needs, a prune marker first; ``--dry-run``
lists what would go and the bytes; verify and restore of a pruned archive stay clean (restore
from the oldest kept checkpoint, byte for byte), and any gap after the marker is still refused."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from archive_target import Archive, bucket_archive, verify_json
from checkpoint_target import checkpointed_log, snapshot_of
from click.testing import CliRunner
from s3server import S3Bucket

import walship
from walship.archive import ArchiveStore
from walship.archive.checkpoint_manifest import CheckpointManifest
from walship.archive.names import (
    checkpoint_manifest_name,
    manifest_name,
    prune_marker_name,
    snapshot_name,
)
from walship.archive.prune import (
    apply_prune,
    kept_checkpoints,
    load_for_prune,
    plan_prune,
    prune,
)
from walship.archive.settings import PruneSettings
from walship.cli import build_cli
from walship.core.header import ZERO_HASH, segment_name
from walship.errors import (
    ArchiveIncompleteError,
    ArchiveIntegrityError,
    ArchivePlanError,
    PruneError,
    RestoreError,
)
from walship.restore import restore

MOTO_NOW_RADOSGW_SLOW = pytest.mark.parametrize(
    "s3_server", ["moto", pytest.param("radosgw", marks=pytest.mark.slow)], indirect=True
)
"""The normal suite runs the test on moto, the slow one on radosgw too (CI's time budget)."""


def _frames(directory: Path) -> list[Any]:
    with walship.open(directory) as log:
        assert log.recovery.problems == []
        return list(log.read())


def test_dry_run_lists_then_prune_removes_and_the_pruned_archive_verifies_and_restores(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    done = checkpointed_log(s3_target.url, s3_target.storage_options, tmp_path, segments=6)
    archive = bucket_archive(s3_target, tmp_path)
    before = s3_target.names()
    keep_from = done.manifests[35].segment_seq
    runner = CliRunner()
    args = ["prune", archive.url, "--keep-checkpoints", "1", *archive.cli_options()]
    out = runner.invoke(build_cli(), [*args, "--dry-run"])
    assert out.exit_code == 0, out.output
    going = [segment_name(s) for s in range(1, keep_from)] + [snapshot_name(15)]
    for name in going:
        assert f"would remove {name} (" in out.output
    sizes = {
        o["Key"].split("/", 1)[1]: o["Size"]
        for o in s3_target.server.client().list_objects_v2(Bucket=s3_target.bucket)["Contents"]
    }
    expected = [
        n
        for n in before
        if (n.startswith("segment_") and n < segment_name(keep_from))
        or n.startswith("checkpoint_00000000000000000015")
    ]
    assert f"would free {len(expected)} object(s), {sum(sizes[n] for n in expected)} bytes" in (
        out.output
    ), out.output
    assert s3_target.names() == before  # nothing went

    out = runner.invoke(build_cli(), args)
    assert out.exit_code == 0, out.output
    after = s3_target.names()
    assert prune_marker_name(1) in after
    assert sorted(set(before) - set(after)) == sorted(expected)
    marker = json.loads(s3_target.get(prune_marker_name(1)))
    assert marker["first_segment"] == keep_from and marker["checkpoint"] == 35

    code, doc = verify_json(archive)
    assert code == 0 and doc["problems"] == [], doc
    result = restore(archive.url, tmp_path / "r", storage_options=archive.storage_options)
    assert result.checkpoint == 35  # a pruned archive restores from its oldest checkpoint
    assert (tmp_path / "r" / "walship.snapshot").read_bytes() == snapshot_of(35)
    assert _frames(tmp_path / "r") == done.after(35)
    with pytest.raises(RestoreError, match="no checkpoint at commit_seq 15"):
        restore(
            archive.url, tmp_path / "x", storage_options=archive.storage_options, from_checkpoint=15
        )
    again = prune(archive.url, keep_checkpoints=1, storage_options=archive.storage_options)
    assert again.objects == {} and again.marker is None
    # read straight from the pruned archive: all of it starts after the prune point; a read
    # from before it is refused, naming where the archive starts (never silently later)
    reader = walship.open_archive(archive.url, archive.storage_options)
    kept = list(reader.read())
    first = kept[0].commit_seq
    assert first > 1 and [f.commit_seq for f in kept] == list(range(first, kept[-1].commit_seq + 1))
    assert [f.commit_seq for f in reader.read(first, first + 2)] == [first, first + 1, first + 2]
    with pytest.raises(walship.FramesUnavailableError, match=f"read from commit_seq {first},"):
        next(iter(reader.read(1)))


def _pruned(s3_target: S3Bucket, tmp_path: Path) -> tuple[Any, Archive, int]:
    done = checkpointed_log(s3_target.url, s3_target.storage_options, tmp_path, segments=6)
    archive = bucket_archive(s3_target, tmp_path)
    pp = prune(archive.url, keep_checkpoints=1, storage_options=archive.storage_options)
    assert pp.marker is not None
    return done, archive, pp.marker.first_segment


def test_a_gap_after_the_prune_marker_or_a_marker_off_the_chain_is_refused(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    done, archive, first = _pruned(s3_target, tmp_path)
    opts = archive.storage_options
    # a newer marker (the one in force) whose anchor is not the chain's
    doc = json.loads(archive.read(prune_marker_name(1)))
    doc["marker_version"], doc["prev_segment_hash"] = 2, ZERO_HASH.hex()
    archive.write(prune_marker_name(2), json.dumps(doc).encode())
    code, report = verify_json(archive)
    assert code == 1 and report["problems"][0]["kind"] == "chain_mismatch"
    with pytest.raises(ArchivePlanError, match="chain_mismatch"):
        restore(archive.url, tmp_path / "m", storage_options=opts)
    archive.write(prune_marker_name(3), b"{}")
    with pytest.raises(ArchiveIntegrityError, match="walship-prune-marker"):
        restore(archive.url, tmp_path / "n", storage_options=opts)
    archive.delete(prune_marker_name(3))
    # a marker that would hide everything: its checkpoint is not there
    doc["marker_version"], doc["first_segment"], doc["checkpoint"] = 3, 10**6, 10**9
    archive.write(prune_marker_name(3), json.dumps(doc).encode())
    with pytest.raises(ArchiveIncompleteError, match="is not in the archive"):
        restore(archive.url, tmp_path / "h", storage_options=opts, from_checkpoint="latest")
    archive.delete(prune_marker_name(3))
    archive.delete(prune_marker_name(2))
    assert _frames(_restore(archive, tmp_path / "ok")) == done.after(35)
    # a gap after the marker's first segment
    archive.delete(segment_name(first + 1))
    archive.delete(manifest_name(first + 1))
    code, report = verify_json(archive)
    assert code == 1 and [p["kind"] for p in report["problems"]] == ["missing_segment"]
    assert report["problems"][0]["segment"] == segment_name(first + 1)
    with pytest.raises(ArchiveIncompleteError, match=segment_name(first + 1)):
        restore(archive.url, tmp_path / "a", storage_options=opts)
    archive.delete(segment_name(first))  # the segment the marker says the archive starts at
    archive.delete(manifest_name(first))
    with pytest.raises(ArchiveIncompleteError, match=segment_name(first)):
        restore(archive.url, tmp_path / "a", storage_options=opts, from_checkpoint="latest")
    assert not any((tmp_path / n).exists() for n in ("m", "n", "h", "a"))


@MOTO_NOW_RADOSGW_SLOW
def test_an_interrupted_prune_leaves_a_clean_archive_and_the_next_one_finishes(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    done = checkpointed_log(s3_target.url, s3_target.storage_options, tmp_path, segments=5)
    archive = bucket_archive(s3_target, tmp_path)
    store = ArchiveStore(archive.url, archive.storage_options)
    pp = plan_prune(load_for_prune(store), PruneSettings(keep_checkpoints=1), 0)
    assert pp.marker is not None and pp.objects
    store.create_object(pp.marker.object, pp.marker.to_json())  # killed right after the marker
    code, doc = verify_json(archive)
    assert code == 0 and doc["problems"] == []
    assert _frames(_restore(archive, tmp_path / "r")) == done.after(35)
    again = prune(archive.url, keep_checkpoints=1, storage_options=archive.storage_options)
    assert sorted(again.objects) == sorted(pp.objects) and again.marker is None
    assert not set(pp.objects) & set(s3_target.names())
    # two prunes racing for the same marker version: the second removes nothing
    racing = plan_prune(load_for_prune(store), PruneSettings(keep_checkpoints=1), 0)
    store.create_object(prune_marker_name(2), pp.marker.to_json())
    if racing.marker is not None:
        with pytest.raises(PruneError, match="another prune"):
            apply_prune(store, racing)


def _restore(archive: Archive, directory: Path) -> Path:
    restore(archive.url, directory, storage_options=archive.storage_options)
    return directory


@MOTO_NOW_RADOSGW_SLOW
def test_the_archiver_prunes_after_each_checkpoint(s3_target: S3Bucket, tmp_path: Path) -> None:
    done = checkpointed_log(
        s3_target.url,
        s3_target.storage_options,
        tmp_path,
        segments=6,
        checkpoints=(15, 35, 45),
        prune={"keep_checkpoints": 2},
    )
    names = s3_target.names()
    assert [n for n in names if n.endswith(".snapshot")] == [snapshot_name(35), snapshot_name(45)]
    assert segment_name(1) not in names and prune_marker_name(2) in names
    assert prune_marker_name(1) not in names  # superseded
    archive = bucket_archive(s3_target, tmp_path)
    assert verify_json(archive)[0] == 0
    assert _frames(_restore(archive, tmp_path / "r")) == done.after(35)


def _cp(seq: int, micros: int) -> CheckpointManifest:
    return CheckpointManifest(seq, 1, b"\1" * 32, micros, 7, seq // 10 + 1, b"\2" * 32, None)


def test_which_checkpoints_the_rules_keep() -> None:
    day = 86_400 * 1_000_000
    now = 100 * day
    cps = {s: _cp(s, now - age * day) for s, age in ((10, 40), (20, 35), (30, 20), (40, 1))}
    assert kept_checkpoints(cps, PruneSettings(keep_checkpoints=1), now) == [40]
    assert kept_checkpoints(cps, PruneSettings(keep_checkpoints=9), now) == [10, 20, 30, 40]
    # the window: everything newer, and the newest one before it (a restore to a time needs one)
    assert kept_checkpoints(cps, PruneSettings(older_than="30d"), now) == [20, 30, 40]
    assert kept_checkpoints(cps, PruneSettings(older_than="2d"), now) == [30, 40]
    assert kept_checkpoints(cps, PruneSettings(older_than="1h"), now) == [40]
    both = PruneSettings(older_than="30d", keep_checkpoints=4)
    assert kept_checkpoints(cps, both, now) == [10, 20, 30, 40]
    with pytest.raises(PruneError, match="--older-than, --keep-checkpoints"):
        prune("memory://nothing/here")
    with pytest.raises(PruneError, match="older_than"):
        prune("memory://nothing/here", older_than="soon")
    assert checkpoint_manifest_name(3).endswith(".manifest.json")
