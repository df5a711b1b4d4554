"""Fenced promotion (``walship promote``, ``walship.open(..., takeover=True)``) on real S3
endpoints (moto's server and Ceph radosgw): a follower's replica takes the archive over with a
conditional create of the next epoch object; the old writer, alive or reopened, fails closed at
its next upload; nothing the new writer archived is overwritten; verify and restore follow the
new writer's chain across the hand-over."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from s3server import S3Bucket

import walship
import walship.archive.epoch as epoch_module
import walship.archive.promote as promote_module
from walship.archive import ArchiveStore
from walship.archive.check import verify_archive
from walship.archive.epoch import LOCAL_EPOCH_FILE, EpochObject, claim_epoch, read_epoch
from walship.archive.follow import Follower
from walship.archive.names import epoch_name
from walship.archive.parts import describe_part
from walship.archive.promote import take_over
from walship.archive.settings import ArchiveSettings
from walship.backends.posix import PosixStore
from walship.cli import build_cli
from walship.core.header import segment_name
from walship.errors import ArchiveConflictError, ArchiveFencedError, ConfigError
from walship.restore import restore


def _archive(target: S3Bucket, ship: bool = True) -> dict[str, Any]:
    out: dict[str, Any] = {
        "url": target.url,
        "storage_options": target.storage_options,
        "retries": {"attempts": 3, "backoff": 0.05, "max_backoff": 0.2},
        "upload_process": False,
    }
    if ship:
        out["ship_interval"] = 3600  # shipped by hand (ship_now) for exact hand-over points
    return out


def _frames(path: Path) -> list[tuple[int, bytes]]:
    with walship.open(path, read_only=True) as log:
        return [(f.commit_seq, bytes(f.payload)) for f in log.read()]


def _open(path: Path, archive: dict[str, Any], **kw: Any) -> walship.Log:
    return walship.open(path, archive=archive, entry_point_plugins=False, **kw)


def _writer_with_history(tmp_path: Path, archive: dict[str, Any]) -> walship.Log:
    """The old writer: segment 1 archived sealed (frames 1-10), frames 11-15 of segment 2
    shipped as a part, frames 16-18 acknowledged and not shipped."""
    old = _open(tmp_path / "old", archive)
    old.append_batch([b"old %d" % i for i in range(1, 11)])
    old.rotate()
    assert old.archiver is not None and old.archiver.flush(30)
    old.append_batch([b"old %d" % i for i in range(11, 16)])
    archiver: Any = old.archiver
    archiver.shipper.ship_now()  # (or the round the rotation woke, serialised with it)
    assert archiver.shipper.shipped_seq == 15
    old.append_batch([b"old %d" % i for i in range(16, 19)])
    return old


def _replicate(target: S3Bucket, directory: Path) -> None:
    with Follower(target.url, directory, target.storage_options) as follower:
        follower.poll()


def test_promote_fences_the_live_old_writer(s3_target: S3Bucket, tmp_path: Path) -> None:
    archive = _archive(s3_target)
    old = _writer_with_history(tmp_path, archive)
    _replicate(s3_target, tmp_path / "new")
    # the follower took the sealed segment and the part after it (frames 11-15)
    assert [s for s, _ in _frames(tmp_path / "new")] == list(range(1, 16))

    with _open(tmp_path / "new", archive, takeover=True) as new:
        # the replica ends with the last frame the archive proves: the part's 11-15
        assert new.last_seq == 15
        assert new.archiver is not None and new.archiver.stats()["epoch"] == 1
        assert [new.append(b"new %d" % i) for i in range(16, 21)] == list(range(16, 21))
        new.rotate()
        assert new.archiver.flush(30)
        ours = {n: s3_target.get(n) for n in s3_target.names() if n.endswith(".aedbwal")}

        # the old writer, still alive, fails closed at its next upload
        old.rotate()
        assert old.archiver is not None
        assert not old.archiver.flush(10)
        st = old.archiver.stats()
        assert st["fenced"] is not None and "epoch 1" in st["fenced"]
        assert "fenced" in old.archiver.last_errors()["segment_0000000000000002.aedbwal"]
        with pytest.raises(ArchiveFencedError, match="taken over"):
            old.append(b"split brain")
        archiver: Any = old.archiver
        with pytest.raises(ArchiveFencedError):
            archiver.shipper.ship_now()
        # nothing the new writer archived was overwritten
        assert {n: s3_target.get(n) for n in ours} == ours
    old.close()

    # the old writer keeps what it acknowledged: nothing local removed
    assert [s for s, _ in _frames(tmp_path / "old")] == list(range(1, 19))
    store = ArchiveStore(s3_target.url, s3_target.storage_options)
    assert verify_archive(store).problems == []
    restore(s3_target.url, tmp_path / "r", storage_options=s3_target.storage_options)
    expected = [(i, b"old %d" % i) for i in range(1, 16)] + [
        (i, b"new %d" % i) for i in range(16, 21)
    ]
    assert _frames(tmp_path / "r") == expected
    got = read_epoch(store, 1)
    assert got is not None and (got.epoch, got.after_segment_seq) == (1, 1)


def test_a_reopened_old_writer_is_fenced_at_once(s3_target: S3Bucket, tmp_path: Path) -> None:
    archive = _archive(s3_target)
    _writer_with_history(tmp_path, archive).close()
    _replicate(s3_target, tmp_path / "new")
    with _open(tmp_path / "new", archive, takeover=True) as new:
        assert new.last_seq == 15  # 16-18 were never shipped: only the old directory has them
        new.append(b"new 16")
        new.rotate()
        assert new.archiver is not None and new.archiver.flush(30)
    before = {n: s3_target.get(n) for n in s3_target.names()}
    with _open(tmp_path / "old", archive) as old:
        with pytest.raises(ArchiveFencedError, match=r"epoch 1.*refuses appends"):
            old.append(b"after the takeover")
        assert old.archiver is not None and old.archiver.stats()["fenced"]
    assert {n: s3_target.get(n) for n in s3_target.names()} == before
    assert [s for s, _ in _frames(tmp_path / "old")] == list(range(1, 19))

    async def append_async() -> None:
        log = await walship.open_async(tmp_path / "old", archive=archive, entry_point_plugins=False)
        async with log:
            with pytest.raises(ArchiveFencedError):
                await log.append(b"async, after the takeover")
            with pytest.raises(ArchiveFencedError):
                await log.submit(b"submitted, after the takeover")

    asyncio.run(append_async())
    config = tmp_path / "old.yaml"
    config.write_text(json.dumps({"store": {"path": str(tmp_path / "old")}, "archive": archive}))
    shown = CliRunner().invoke(build_cli(), ["status", "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "fenced      " in shown.output and "epoch 1, taken by" in shown.output
    mine = tmp_path / "new.yaml"
    mine.write_text(json.dumps({"store": {"path": str(tmp_path / "new")}, "archive": archive}))
    shown = CliRunner().invoke(build_cli(), ["status", "-c", str(mine)])
    assert "(epoch 1)" in shown.output and "fenced " not in shown.output
    # the new writer, reopened, is the writer still
    with _open(tmp_path / "new", archive) as new:
        assert new.append(b"new 17") == 17


def _take_over(directory: Path, archive: dict[str, Any]) -> None:
    replica = PosixStore(directory)
    replica.lock()
    try:
        take_over(replica, ArchiveSettings.from_mapping(archive))  # what takeover=True does
    finally:
        replica.close()


def _manifest(target: S3Bucket, name: str) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(target.get(name + ".manifest.json"))
    return doc


@pytest.mark.parametrize("upload_process", [False, True])
def test_an_old_writer_upload_that_raced_the_takeover_is_replaced(
    s3_target: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upload_process: bool
) -> None:
    """An upload the old writer checked before the claim lands after the takeover's last
    round: the takeover, archiving the segment it took from the parts as the new epoch's,
    removes it and archives its own (never the reverse); the new writer's later segments
    carry its epoch too, also when its uploads run in the upload process."""
    archive = _archive(s3_target)
    old = _writer_with_history(tmp_path, archive)
    _replicate(s3_target, tmp_path / "new")
    name = "segment_0000000000000002.aedbwal"
    position = old.durable_position()  # its segment 2 as it will seal it: 11-18
    assert position is not None and position[0] == 2
    theirs = (tmp_path / "old" / name).read_bytes()[: position[1]]
    store = ArchiveStore(s3_target.url, s3_target.storage_options)
    real = promote_module._seal_start

    def late(*args: Any) -> Any:
        store.put(name, theirs)  # lands just now
        assert _manifest(s3_target, name).get("epoch") is None  # (an epoch 0 writer's)
        return real(*args)

    monkeypatch.setattr(promote_module, "_seal_start", late)
    _take_over(tmp_path / "new", archive)
    old.close()
    ours = (tmp_path / "new" / name).read_bytes()
    assert s3_target.get(name) == ours and _manifest(s3_target, name)["epoch"] == 1
    with pytest.raises(ArchiveConflictError):  # from now on the name is taken
        store.put(name, theirs)
    with _open(tmp_path / "new", {**archive, "upload_process": upload_process}) as new:
        new.append(b"new 16")
        new.rotate()
        assert new.archiver is not None and new.archiver.flush(30)
        assert new.archiver.stats()["stalled_now"] == 0
    assert _manifest(s3_target, "segment_0000000000000003.aedbwal")["epoch"] == 1
    scan = verify_archive(ArchiveStore(s3_target.url, s3_target.storage_options))
    assert scan.problems == [] and scan.fenced == {}
    restore(s3_target.url, tmp_path / "r", storage_options=s3_target.storage_options)
    assert [s for s, _ in _frames(tmp_path / "r")] == list(range(1, 17))
    assert _frames(tmp_path / "r")[-1] == (16, b"new 16")


def _late_part(store: ArchiveStore, directory: Path, seq: int, end: int) -> str:
    """Ship bytes ``0..end`` of ``directory``'s segment ``seq`` as one part (epoch 0), by
    hand."""
    data = (directory / segment_name(seq)).read_bytes()[:end]
    m = describe_part(seq, 0, data)
    m = replace(m, seal=store.create_sealed_part(m.object, data))
    store.create_part_object(m.manifest_object, m.to_json())
    return m.object


def test_a_fenced_writer_s_late_uploads_are_ignored_until_replaced(
    s3_target: S3Bucket, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The old writer's uploads that land after the takeover finished (its segment 3, sealed
    on its own chain and as a part, and a part of its segment 4): every reader ignores them,
    with one warning naming them (verify: a note, no problem), and restores the new writer's
    chain; the new writer's own segment 3 then replaces the sealed one."""
    archive = _archive(s3_target)
    _writer_with_history(tmp_path, archive).close()
    _replicate(s3_target, tmp_path / "new")
    _take_over(tmp_path / "new", archive)
    # the old writer goes on (as if it had not seen the claim yet: no archive here)
    with walship.open(tmp_path / "old", entry_point_plugins=False) as old:
        old.rotate()  # segment 2 (frames 11-18)
        old.append_batch([b"old %d" % i for i in range(19, 21)])
        old.rotate()  # segment 3 (19-20)
        old.append(b"old 21")
        position = old.durable_position()
    assert position is not None and position[0] == 4
    store = ArchiveStore(s3_target.url, s3_target.storage_options)
    with contextlib.suppress(ArchiveConflictError):  # refused: the takeover sealed it
        store.put(segment_name(2), (tmp_path / "old" / segment_name(2)).read_bytes())
    # its uploads checked before the claim, landing only now
    seg3 = (tmp_path / "old" / segment_name(3)).read_bytes()
    store.put(segment_name(3), seg3)
    part3 = _late_part(store, tmp_path / "old", 3, len(seg3))  # (what a follower takes next)
    part = _late_part(store, tmp_path / "old", 4, position[1])

    caplog.set_level(logging.WARNING, "walship.archive")
    expected = [(i, b"old %d" % i) for i in range(1, 16)]  # the new writer's chain
    restore(s3_target.url, tmp_path / "r", storage_options=s3_target.storage_options)
    assert _frames(tmp_path / "r") == expected
    with walship.open_archive(s3_target.url, storage_options=s3_target.storage_options) as a:
        assert [(f.commit_seq, bytes(f.payload)) for f in a.read()] == expected
    with Follower(s3_target.url, tmp_path / "f", s3_target.storage_options) as follower:
        follower.poll()
    assert _frames(tmp_path / "f") == expected

    scan = verify_archive(store)
    assert scan.problems == []
    assert set(scan.fenced) == {
        segment_name(3),
        segment_name(3) + ".manifest.json",
        part3,
        part3 + ".manifest.json",
        part,
        part + ".manifest.json",
    }
    assert all("fenced writer (epoch 0)" in why for why in scan.fenced.values())
    warned = [r.getMessage() for r in caplog.records if "of a fenced writer" in r.getMessage()]
    assert len(warned) == 2, warned  # the sealed segment's, then the parts': one line each
    config = tmp_path / "c.yaml"
    config.write_text(json.dumps({"store": {"path": str(tmp_path / "x")}, "archive": archive}))
    shown = CliRunner().invoke(build_cli(), ["verify", s3_target.url, "-c", str(config)])
    assert shown.exit_code == 0, shown.output
    assert "ok: 2 segments" in shown.output
    assert shown.output.count("note: ") == 3 and "uploaded by a fenced writer" in shown.output

    with _open(tmp_path / "new", archive) as new:  # its own segment 3 replaces the old one
        assert new.append(b"new 16") == 16
        new.rotate()
        assert new.archiver is not None and new.archiver.flush(30)
        counters: Any = new.archiver
        assert counters.counters["fenced_removed"] == 1
    assert s3_target.get(segment_name(3)) == (tmp_path / "new" / segment_name(3)).read_bytes()
    scan = verify_archive(ArchiveStore(s3_target.url, s3_target.storage_options))
    assert scan.problems == [] and set(scan.fenced) == {part, part + ".manifest.json"}
    restore(s3_target.url, tmp_path / "r2", storage_options=s3_target.storage_options)
    assert _frames(tmp_path / "r2") == [*expected, (16, b"new 16")]


def test_one_epoch_one_winner(s3_target: S3Bucket, tmp_path: Path) -> None:
    store = ArchiveStore(s3_target.url, s3_target.storage_options)
    won = claim_epoch(store, 1, 7, 3, 42)
    with pytest.raises(ArchiveFencedError, match=r"epoch 1 was taken by .* first"):
        claim_epoch(store, 1, 7, 3, 42)
    doc = json.loads(s3_target.get(epoch_name(1)))
    assert doc["format"] == "walship-epoch" and doc["epoch"] == 1
    assert EpochObject.from_json(s3_target.get(epoch_name(1)), 1, "x") == won


def test_promote_cli(s3_target: S3Bucket, tmp_path: Path) -> None:
    archive = _archive(s3_target, ship=False)
    with _open(tmp_path / "old", archive) as old:
        old.append_batch([b"a", b"b"])
        old.rotate()
        assert old.archiver is not None and old.archiver.flush(30)
    _replicate(s3_target, tmp_path / "new")
    config = tmp_path / "walship.yaml"
    config.write_text(
        json.dumps({"store": {"path": str(tmp_path / "elsewhere")}, "archive": archive})
    )
    runner = CliRunner()
    result = runner.invoke(build_cli(), ["promote", str(tmp_path / "new"), "-c", str(config)])
    assert result.exit_code == 0, result.output
    assert "(epoch 1); its next frame is commit_seq 3" in result.output
    assert json.loads((tmp_path / "new" / LOCAL_EPOCH_FILE).read_text())["epoch"] == 1
    again = runner.invoke(build_cli(), ["promote", str(tmp_path / "new"), "-c", str(config)])
    assert again.exit_code == 0 and "(epoch 1)" in again.output  # idempotent
    (tmp_path / "other").mkdir()
    _replicate(s3_target, tmp_path / "other")
    second = runner.invoke(build_cli(), ["promote", str(tmp_path / "other"), "-c", str(config)])
    assert second.exit_code == 0 and "(epoch 2)" in second.output
    with _open(tmp_path / "new", archive) as fenced, pytest.raises(ArchiveFencedError):
        fenced.append(b"x")


def test_takeover_needs_an_archive(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="takeover=True needs the log's archive"):
        walship.open(tmp_path / "wal", takeover=True)


def test_a_conflict_with_the_new_writer_fences_the_old_one(
    s3_target: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The old writer's check before its upload missed the claim (it came just after): its
    conditional create then conflicts with the new writer's segment, and the check made on
    the conflict fences it (reported as fenced, the new writer's object untouched)."""
    # every check a GET: else the check before the upload is skipped when the last one is
    # under FENCE_RECHECK old, and the check on the conflict would be the one that misses
    monkeypatch.setattr(epoch_module, "FENCE_RECHECK", 0)
    archive = _archive(s3_target, ship=False)  # (no shipper to find the claim first)
    old = _open(tmp_path / "old", archive)
    old.append_batch([b"old %d" % i for i in range(1, 11)])
    old.rotate()
    assert old.archiver is not None and old.archiver.flush(30)
    old.append_batch([b"old %d" % i for i in range(11, 16)])
    _replicate(s3_target, tmp_path / "new")
    with _open(tmp_path / "new", archive, takeover=True) as new:
        assert new.append(b"new 11") == 11
        new.rotate()
        assert new.archiver is not None and new.archiver.flush(30)
    name = "segment_0000000000000002.aedbwal"
    ours = s3_target.get(name)
    real = epoch_module.read_epoch
    calls: list[int] = []

    def late(store: ArchiveStore, epoch: int) -> EpochObject | None:
        calls.append(epoch)
        return None if len(calls) == 1 else real(store, epoch)  # the first check misses it

    monkeypatch.setattr(epoch_module, "read_epoch", late)
    try:
        old.rotate()
        assert old.archiver is not None and not old.archiver.flush(10)
        assert len(calls) == 2  # the check before the upload, and the one on the conflict
        assert "taken over" in old.archiver.last_errors()[name]
        assert old.archiver.conflicts() == []  # fenced, not a conflict to inspect by hand
        with pytest.raises(ArchiveFencedError):
            old.append(b"x")
    finally:
        old.close()
    assert s3_target.get(name) == ours


def test_a_replica_s_copy_from_parts_is_replaced_by_the_segment_sealed_since(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    """The follower took frames 11-15 of segment 2 from a part; the old writer then sealed
    segment 2 with 11-18 and stopped. The takeover puts the sealed segment over the copy (it
    starts with the copy's bytes) and the new writer goes on after 18, in segment 3."""
    archive = _archive(s3_target)
    old = _writer_with_history(tmp_path, archive)
    _replicate(s3_target, tmp_path / "new")
    assert [s for s, _ in _frames(tmp_path / "new")] == list(range(1, 16))
    old.rotate()
    assert old.archiver is not None and old.archiver.flush(30)
    old.close()
    with _open(tmp_path / "new", archive, takeover=True) as new:
        assert new.last_seq == 18
        assert new.append(b"new 19") == 19
        new.rotate()
        assert new.archiver is not None and new.archiver.flush(30)
    store = ArchiveStore(s3_target.url, s3_target.storage_options)
    assert verify_archive(store).problems == []
    restore(s3_target.url, tmp_path / "r", storage_options=s3_target.storage_options)
    expected = [(i, b"old %d" % i) for i in range(1, 19)] + [(19, b"new 19")]
    assert _frames(tmp_path / "r") == expected


def test_a_writer_with_several_destinations_is_fenced_by_a_takeover_of_one(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    """``archives:``: a newer epoch at one destination fences the writer, whose appends are
    refused (the log's gate spans every destination's fence; without it appends went on)."""
    archives = [
        _archive(s3_target, ship=False),
        {"url": (tmp_path / "second").as_uri(), "upload_process": False},
    ]
    with walship.open(tmp_path / "w", archives=archives, entry_point_plugins=False) as log:
        log.append(b"before")
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(30)
    claim_epoch(ArchiveStore(s3_target.url, s3_target.storage_options), 1, 7, 2, 1)
    again = walship.open(tmp_path / "w", archives=archives, entry_point_plugins=False)
    with again, pytest.raises(ArchiveFencedError):
        again.append(b"after the takeover")
    assert [s for s, _ in _frames(tmp_path / "w")] == [1]


def test_a_takeover_reuses_the_follower_s_copy_of_the_parts(
    s3_target: S3Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The follower's copy of segment 2 holds the first part (frames 11-15); the old writer
    ships 16-18 as a second part and stops. The takeover downloads only the second part's
    object (verified, appended to the copy), never the first again."""
    archive = _archive(s3_target)
    old = _writer_with_history(tmp_path, archive)
    _replicate(s3_target, tmp_path / "new")
    held = (tmp_path / "new" / segment_name(2)).stat().st_size
    archiver: Any = old.archiver
    archiver.shipper.ship_now()
    assert archiver.shipper.shipped_seq == 18
    old.close()
    fetched: list[str] = []
    real = ArchiveStore.read_object

    def counting(self: ArchiveStore, name: str, limit: int) -> bytes | None:
        if ".part-" in name and not name.endswith(".manifest.json"):
            fetched.append(name)
        return real(self, name, limit)

    monkeypatch.setattr(ArchiveStore, "read_object", counting)
    _take_over(tmp_path / "new", archive)
    monkeypatch.undo()
    parts = sorted(n for n in s3_target.names() if ".part-" in n and "manifest" not in n)
    assert len(parts) == 2 and parts[1].startswith(f"{segment_name(2)}.part-{held:016d}-")
    assert fetched == [parts[1]]  # the old code: both
    expected = [(i, b"old %d" % i) for i in range(1, 19)]
    assert _frames(tmp_path / "new") == expected
    assert verify_archive(ArchiveStore(s3_target.url, s3_target.storage_options)).problems == []
    restore(s3_target.url, tmp_path / "r", storage_options=s3_target.storage_options)
    assert _frames(tmp_path / "r") == expected
    with _open(tmp_path / "new", archive) as new:
        assert new.append(b"new 19") == 19
