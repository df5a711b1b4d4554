"""Live shipping (issue 14) against a ``file://`` archive: the durable bytes of the active
segment become parts, restore / read / verify use them after the last sealed segment (checked:
contiguous, hashes, frames, chain, numbering), parts go once their segment is archived sealed,
a restart resumes where the parts end, and every bad name or byte is refused."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import walship
from walship.archive import ArchiveStore
from walship.archive.check import verify_archive
from walship.archive.listing import ArchiveListing
from walship.archive.names import parse_object_name, part_manifest_name, part_name
from walship.archive.parts import PartManifest, describe_part
from walship.archive.shipper import Shipper
from walship.backends.posix import PosixStore
from walship.core.header import HEADER_SIZE
from walship.core.record import ArchiveRecord
from walship.errors import (
    ArchiveIntegrityError,
    ArchiveNameError,
    ArchivePlanError,
    ConfigError,
)
from walship.log import Log
from walship.restore import restore


def _url(tmp_path: Path) -> str:
    return (tmp_path / "archive").as_uri()


def _open(tmp_path: Path, **kw: Any) -> Log:
    archive = {"url": _url(tmp_path), "ship_interval": 3600, "upload_process": False}
    return walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False, **kw)


def _shipper(log: Log) -> Shipper:
    archiver: Any = log.archiver
    shipper = archiver.shipper
    assert isinstance(shipper, Shipper)
    return shipper


def _bare_shipper(log: Log, url: str) -> Shipper:
    """A shipper over a log without an archiver: nothing is ever archived sealed."""
    return Shipper(log.store, ArchiveStore(url), ArchiveRecord(log.store), log.durable_position, 9)


def _names(tmp_path: Path) -> list[str]:
    where = tmp_path / "archive"
    return sorted(p.name for p in where.iterdir()) if where.exists() else []


def _seqs(directory: Path) -> list[int]:
    with walship.open(directory, entry_point_plugins=False) as log:
        return [f.commit_seq for f in log.read()]


# --- settings -----------------------------------------------------------------------------


def test_ship_interval_is_off_by_default_and_validated(tmp_path: Path) -> None:
    with walship.open(
        tmp_path / "a", archive={"url": _url(tmp_path), "upload_process": False}
    ) as log:
        archiver: Any = log.archiver
        assert archiver.shipper is None
    with pytest.raises(ConfigError, match=r"ship_interval = '0s': expected off, or a positive"):
        walship.open(tmp_path / "b", archive={"url": _url(tmp_path), "ship_interval": "0s"})
    config = tmp_path / "w.yaml"
    config.write_text(
        f"store: {{path: {tmp_path / 'c'}}}\narchive: {{url: {_url(tmp_path)}, "
        "ship_interval: 1x}\n"
    )
    with pytest.raises(ConfigError, match=r"archive.ship_interval = '1x': expected off, or"):
        walship.open(config=str(config))
    config.write_text(
        f"store: {{path: {tmp_path / 'c'}}}\narchive: {{url: {_url(tmp_path)}, "
        "ship_interval: 250ms, upload_process: false}\n"
    )
    with walship.open(config=str(config)) as log:
        assert _shipper(log).interval == 0.25
        assert log.stats()["archive"]["shipping"]["interval"] == 0.25


# --- names ----------------------------------------------------------------------------------


def test_part_names_are_trusted_and_malformed_ones_refused() -> None:
    name = part_name(3, 0, 500)
    assert name == "segment_0000000000000003.aedbwal.part-0000000000000000-0000000000000500"
    parsed = parse_object_name(part_manifest_name(3, 0, 500))
    assert (parsed.kind, parsed.segment_seq, parsed.start, parsed.end) == (
        "part_manifest",
        3,
        0,
        500,
    )
    for bad in (
        name + ".orig",
        name.replace("-0000000000000500", "-500"),
        part_name(3, 500, 500),
        part_name(3, 600, 500),
        "segment_3.aedbwal.part-0000000000000000-0000000000000500",
        "../" + name,
    ):
        with pytest.raises(ArchiveNameError):
            parse_object_name(bad)
    entries = [
        {"name": f"b/w/{name}", "type": "file", "size": 500},
        {"name": f"b/w/{name}.manifest.json", "type": "file", "size": 300},
        {"name": "b/w/notes.part-1", "type": "file", "size": 1},
        {"name": f"b/w/{name}.bak", "type": "file", "size": 1},
    ]
    listing = ArchiveListing.classify(entries, "b/w", "s3://b/w", 1 << 30)
    assert listing.parts == {3: {(0, 500): 500}}
    assert listing.part_manifests == {3: {(0, 500): 300}}
    assert listing.segment_seqs == []  # a part is not a sealed segment
    assert listing.foreign == ["notes.part-1"]
    assert [n for n, _ in listing.rejected] == [f"{name}.bak"]


def test_a_hostile_part_name_stops_restore(tmp_path: Path) -> None:
    (tmp_path / "archive").mkdir()
    (tmp_path / "archive" / "segment_0000000000000001.aedbwal.part-1-2").write_bytes(b"x")
    with pytest.raises(ArchiveNameError, match="not a part name"):
        restore(_url(tmp_path), tmp_path / "r")


def test_a_part_manifest_is_validated() -> None:
    m = describe_part(2, 100, b"")
    assert PartManifest.from_json(m.to_json(), 2, 100, 100) == m
    with pytest.raises(ArchiveIntegrityError, match="another part"):
        PartManifest.from_json(m.to_json(), 2, 100, 101)
    with pytest.raises(ArchiveIntegrityError, match="not JSON"):
        PartManifest.from_json(b"{", 2, 100, 100)
    with pytest.raises(ArchiveIntegrityError, match="frame"):
        describe_part(2, 100, b"\x00\x00\x00\x30garbage")


# --- shipping, restore, read, verify --------------------------------------------------------


def test_parts_restore_read_and_verify_to_the_last_shipped_frame(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with _open(tmp_path) as log:
        shipper = _shipper(log)
        assert log.durable_position() == (1, HEADER_SIZE)
        shipper.ship_now()
        assert _names(tmp_path) == []  # a header alone is not shipped
        for i in range(20):
            log.append(b"a%d" % i)
        assert shipper.ship_now() > 0
        log.append_batch([b"b1", b"b2", b"b3"])
        shipper.ship_now()
        log.append(b"not shipped")
        assert shipper.stats()["parts"] == 2
        assert shipper.shipped_seq == 23
        assert len(_names(tmp_path)) == 4  # two parts, two manifests

        result = restore(url, tmp_path / "r")  # the writer's machine is gone
        assert (result.last_commit_seq, result.parts, result.segments) == (23, 2, 1)
        assert "2 live part(s)" in result.summary()
        assert [f.commit_seq for f in walship.open_archive(url).read(5, 22)] == list(range(5, 23))
        assert verify_archive(ArchiveStore(url)).problems == []
    assert _seqs(tmp_path / "r") == list(range(1, 24))
    assert ArchiveRecord.load(PosixStore(tmp_path / "r")).entries() == []  # not sealed
    with walship.open(tmp_path / "r", entry_point_plugins=False) as restored:
        assert restored.append(b"after") == 24  # appends continue after the last proven frame


def test_a_point_in_time_restore_cuts_inside_the_parts(tmp_path: Path) -> None:
    with _open(tmp_path) as log:
        for i in range(10):
            log.append(b"%d" % i)
            _shipper(log).ship_now()
        result = restore(_url(tmp_path), tmp_path / "r", to_seq=6)
    assert result.last_commit_seq == 6
    assert _seqs(tmp_path / "r") == list(range(1, 7))


def test_parts_go_once_their_segment_is_archived_sealed(tmp_path: Path) -> None:
    with _open(tmp_path) as log:
        shipper = _shipper(log)
        for i in range(5):
            log.append(b"%d" % i)
            shipper.ship_now()
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(10)
        log.append(b"next")
        shipper.ship_now()
        names = _names(tmp_path)
        assert not any(".part-" in n and n.startswith("segment_0000000000000001") for n in names)
        assert part_name(2, 0, 93) in names
        assert shipper.stats()["removed"] == 5
        assert restore(_url(tmp_path), tmp_path / "r").last_commit_seq == 6


def test_a_closed_segment_not_archived_yet_is_shipped_to_its_end(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        shipper = _bare_shipper(log, url)
        log.append(b"one")
        shipper.ship_now()
        log.append(b"two")
        log.rotate()  # its last frame never shipped as a part of the active segment
        log.append(b"three")
        shipper.ship_now()
        result = restore(url, tmp_path / "r")
    assert (result.segments, result.last_commit_seq, result.parts) == (2, 3, 3)
    assert _seqs(tmp_path / "r") == [1, 2, 3]


def test_unsynced_bytes_are_never_shipped(tmp_path: Path) -> None:
    with _open(tmp_path, durability="none") as log:
        log.append(b"written, not synced")
        assert _shipper(log).ship_now() == 0
        log.sync()
        assert _shipper(log).ship_now() > 0


def test_a_restart_resumes_after_the_parts_and_an_impostor_stops_shipping(
    tmp_path: Path,
) -> None:
    with _open(tmp_path) as log:
        log.append(b"first")
        _shipper(log).ship_now()
    with _open(tmp_path) as log:
        assert log.durable_position() == (1, HEADER_SIZE + 30)  # the same active segment
        log.append(b"second")
        shipper = _shipper(log)
        shipper.ship_now()
        assert shipper.error is None
        assert part_name(1, HEADER_SIZE + 30, HEADER_SIZE + 61) in _names(tmp_path)
    assert restore(_url(tmp_path), tmp_path / "r").last_commit_seq == 2
    # another log's part under this log's names: shipping stops with a conflict, overwrites nothing
    with walship.open(tmp_path / "other", entry_point_plugins=False) as log2:
        log2.append(b"impostor")
        shipper = _bare_shipper(log2, _url(tmp_path))
        with pytest.raises(walship.ArchiveConflictError):
            shipper.ship_now()
        assert "holds other bytes" in (shipper.error or "")


# --- damage -----------------------------------------------------------------------------------


def _shipped_three(tmp_path: Path) -> list[str]:
    with _open(tmp_path) as log:
        for i in range(3):
            log.append_batch([b"x%d" % i] * 4)
            _shipper(log).ship_now()
    return [n for n in _names(tmp_path) if ".part-" in n and not n.endswith(".json")]


def test_an_altered_part_is_refused_by_restore_read_and_verify(tmp_path: Path) -> None:
    part = tmp_path / "archive" / _shipped_three(tmp_path)[1]
    data = bytearray(part.read_bytes())
    data[-5] ^= 1
    part.chmod(0o640)
    part.write_bytes(bytes(data))
    url = _url(tmp_path)
    kinds = [p.kind for p in verify_archive(ArchiveStore(url)).problems]
    assert kinds == ["altered_segment"]
    with pytest.raises(ArchivePlanError, match="altered"):
        restore(url, tmp_path / "r")
    assert not (tmp_path / "r").exists()
    with pytest.raises(ArchivePlanError):
        list(walship.open_archive(url).read())


def test_a_missing_part_ends_the_restore_at_the_last_proven_frame(tmp_path: Path) -> None:
    (tmp_path / "archive" / _shipped_three(tmp_path)[1]).unlink()
    url = _url(tmp_path)
    problems = verify_archive(ArchiveStore(url)).problems
    assert [p.kind for p in problems] == ["missing_part"] * 2  # the second, and the third
    assert restore(url, tmp_path / "r").last_commit_seq == 4
    assert [f.commit_seq for f in walship.open_archive(url).read()] == [1, 2, 3, 4]


def test_parts_fill_a_segment_missing_between_sealed_ones_only_when_proven(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        shipper = _bare_shipper(log, url)
        for seg in range(3):
            log.append_batch([b"s%d" % seg] * 3)
            shipper.ship_now()
            log.append(b"tail of %d" % seg)
            log.rotate()
        log.append(b"active")
        shipper.ship_now()  # the rest of segment 3, and segment 4 so far
        archive = ArchiveStore(url)
        for seq in (1, 3):  # segment 2's sealed upload is still under way
            name = f"segment_{seq:016}.aedbwal"
            archive.put(name, log.store.read(name))
    result = restore(url, tmp_path / "r")
    assert (result.segments, result.last_commit_seq) == (4, 13)
    assert _seqs(tmp_path / "r") == list(range(1, 14))
    assert verify_archive(ArchiveStore(url)).problems == []
    # without segment 2's last part its parts do not chain to segment 3: still missing
    last = max(n for n in _names(tmp_path) if n.startswith("segment_0000000000000002.aedbwal.p"))
    (tmp_path / "archive" / last).unlink()
    with pytest.raises(walship.ArchiveIncompleteError, match="segment_0000000000000002"):
        restore(url, tmp_path / "r2")


def test_a_log_restored_from_parts_archives_them_sealed_and_removes_them(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        log.append_batch([b"before the loss"] * 7)
        _bare_shipper(log, url).ship_now()
    restore(url, tmp_path / "r")  # the machine is gone: a new one takes over the archive
    archive = {"url": url, "ship_interval": 3600, "upload_process": False}
    with walship.open(tmp_path / "r", archive=archive, entry_point_plugins=False) as log:
        assert log.archiver is not None and log.archiver.flush(10)  # segment 1, sealed
        log.append(b"on the new machine")
        _shipper(log).ship_now()
        names = _names(tmp_path)
        assert "segment_0000000000000001.aedbwal" in names
        assert not any(n.startswith("segment_0000000000000001.aedbwal.part-") for n in names)
    assert verify_archive(ArchiveStore(url)).problems == []
    assert restore(url, tmp_path / "r2").last_commit_seq == 8


def test_a_failing_store_is_logged_once_and_shipping_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    archive = {"url": _url(tmp_path), "ship_interval": 0.01, "upload_process": False}
    failing = threading.Event()
    failing.set()
    real = ArchiveStore.create_part_object

    def create(self: ArchiveStore, name: str, data: bytes) -> bool:
        if failing.is_set():
            raise OSError("the store is down")
        return real(self, name, data)

    monkeypatch.setattr(ArchiveStore, "create_part_object", create)
    with walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False) as log:
        shipper = _shipper(log)
        log.append(b"while the store is down")
        assert _wait(lambda: shipper.counters["failed_rounds"] >= 5)
        failing.clear()
        assert _wait(lambda: shipper.shipped_seq == 1)
        assert shipper.last_error is None
    lines = [r.getMessage() for r in caplog.records if r.name == "walship.shipper"]
    assert len([m for m in lines if "the store is down" in m]) == 1
    assert any("works again" in m for m in lines)
    assert restore(_url(tmp_path), tmp_path / "r").last_commit_seq == 1


def _wait(condition: Callable[[], bool], timeout: float = 30.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


def test_appends_never_wait_for_a_round_stuck_in_its_upload(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    entered, release = threading.Event(), threading.Event()
    real = ArchiveStore.create_part_object

    def create(self: ArchiveStore, name: str, data: bytes) -> bool:
        entered.set()
        assert release.wait(30)
        return real(self, name, data)

    monkeypatch.setattr(ArchiveStore, "create_part_object", create)
    with _open(tmp_path) as log:
        log.append(b"first")
        stuck = threading.Thread(target=_shipper(log).ship_now)
        stuck.start()
        assert entered.wait(30)  # the round is in its upload
        seqs = [log.append(b"meanwhile %d" % i) for i in range(200)]
        log.rotate()  # a rotation neither
        assert seqs[-1] == 201 and stuck.is_alive()
        release.set()
        stuck.join(30)
        _shipper(log).ship_now()  # the closed segment's rest, unless archived sealed by now
        assert restore(_url(tmp_path), tmp_path / "r").last_commit_seq == 201


def test_retention_and_a_restore_to_a_time_inside_the_parts(tmp_path: Path) -> None:
    with _open(tmp_path, retention={"keep_local": "until_archived"}) as log:
        shipper = _shipper(log)
        log.append(b"sealed")
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(10)
        for i in range(6):
            log.append(b"live %d" % i)
            shipper.ship_now()
        stamps = {f.commit_seq: f.timestamp_micros for f in log.read()}
    result = restore(_url(tmp_path), tmp_path / "r", to_time=stamps[4])
    assert result.last_commit_seq == max(s for s, t in stamps.items() if t <= stamps[4])
    assert (result.segments, result.parts) == (2, 6)


def test_a_sealed_object_whose_manifest_never_came_is_taken_from_its_parts(
    tmp_path: Path,
) -> None:
    url = _url(tmp_path)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        shipper = _bare_shipper(log, url)
        log.append_batch([b"one"] * 4)
        shipper.ship_now()
        log.append(b"two")
        log.rotate()
        log.append(b"three")
        shipper.ship_now()  # the rest of segment 1, and segment 2 so far
        name = "segment_0000000000000001.aedbwal"  # its object put, its manifest never
        ArchiveStore(url).create_part_object(
            name, log.store.read(name)
        )  # killed before its manifest
    result = restore(url, tmp_path / "r")
    assert (result.segments, result.last_commit_seq) == (2, 6)
    assert _seqs(tmp_path / "r") == list(range(1, 7))


def test_an_object_without_its_manifest_is_taken_when_the_parts_after_it_chain_to_it(
    tmp_path: Path,
) -> None:
    """Segment 1 closed before any round and its sealed upload was killed between its two PUTs
    (no part of it, no manifest); segment 2's parts hold frames the shipper reported shipped.
    Their header's prev hash proves the object whole: restore, read and verify take it. The
    archive's last such object is proven by nothing: still refused, named."""
    url = _url(tmp_path)
    name = "segment_0000000000000001.aedbwal"
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        log.append_batch([b"closed early"] * 5)
        log.rotate()
        archive = ArchiveStore(url)
        archive.create_part_object(name, log.store.read(name))  # killed before its manifest
        alone = tmp_path / "alone"
        shutil.copytree(tmp_path / "archive", alone)
        log.append_batch([b"shipped"] * 3)
        shipper = _bare_shipper(log, url)
        shipper.start()  # after segment 1 closed: shipping starts at segment 2
        try:
            shipper.ship_now()
        finally:
            shipper.close()
        assert shipper.shipped_seq == 8
        tampered = bytearray(log.store.read(name))
    result = restore(url, tmp_path / "r")
    assert (result.segments, result.parts, result.last_commit_seq) == (2, 1, 8)
    assert _seqs(tmp_path / "r") == list(range(1, 9))
    assert [f.commit_seq for f in walship.open_archive(url).read()] == list(range(1, 9))
    assert verify_archive(ArchiveStore(url)).problems == []
    with pytest.raises(walship.ArchiveIncompleteError, match=f"{name} is incomplete"):
        restore(alone.as_uri(), tmp_path / "r2")
    # an object the parts after it do not chain to is proven by nothing
    tampered[-1] ^= 1
    (tmp_path / "archive" / name).write_bytes(bytes(tampered))
    with pytest.raises(walship.ArchiveIncompleteError, match=f"{name} is incomplete"):
        restore(url, tmp_path / "r3")


def test_a_segment_closed_before_the_first_round_is_shipped_to_its_end(tmp_path: Path) -> None:
    url = _url(tmp_path)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        shipper = _bare_shipper(log, url)
        shipper.start()  # rounds every 9 s: the first one comes after all this
        try:
            log.append_batch([b"fast"] * 5)
            log.rotate()  # closed before any round
            log.append(b"next")
            shipper.ship_now()
        finally:
            shipper.close()
        result = restore(url, tmp_path / "r")
    assert (result.segments, result.last_commit_seq) == (2, 6)
