"""Repair from the archive, a rebuilt archive record, and salvage that never forks the archive
(issue 10 items 5 and 6)."""

from __future__ import annotations

import json
import secrets
import struct
from collections.abc import Iterator
from pathlib import Path

import pytest
from crc32c import crc32c

import walship
from walship.archive import ArchiveListing, ArchiveStore, manifest_name, object_name
from walship.archive.restore import restore
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import HEADER_SIZE, segment_name
from walship.core.record import RECORD_NAME, ArchiveRecord, check_continues
from walship.core.scan import scan_store
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveRecordError,
    ConfigError,
    LogCorruptError,
)
from walship.store import SegmentStore

S1, S2, S3, S4 = (segment_name(n) for n in (1, 2, 3, 4))


@pytest.fixture(params=["memory", "file"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "memory":
        return f"memory://walship-repair-{secrets.token_hex(6)}"
    return f"file://{tmp_path}/archive"


@pytest.fixture(params=["posix", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> SegmentStore:
    return PosixStore(tmp_path / "wal") if request.param == "posix" else MemoryStore()


def _open(store: SegmentStore, url: str, keep: str = "all", **options: object) -> walship.Log:
    return walship.open(
        store=store,
        entry_point_plugins=False,
        archive={"url": url, "retries": {"attempts": 2, "backoff": 0.01}, "upload_process": False},
        retention={"keep_local": keep},
        **options,  # type: ignore[arg-type]
    )


def _payload(seq: int) -> bytes:
    return b"frame-%d-" % seq + bytes([seq % 251]) * (seq % 40)


def _write(store: SegmentStore, url: str, keep: str = "all", segments: int = 3) -> None:
    """``segments`` archived segments of 5 frames each, and an empty active one."""
    with _open(store, url, keep) as log:
        for _ in range(segments):
            for _ in range(5):
                seq = log.last_seq + 1
                assert log.append(_payload(seq)) == seq
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)


def _read(log: walship.Log) -> list[int]:
    out = []
    for f in log.read():
        assert f.payload == _payload(f.commit_seq)
        out.append(f.commit_seq)
    return out


def _flip(store: SegmentStore, name: str, offset: int) -> None:
    data = bytearray(store.read(name))
    data[offset] ^= 0x20
    store.truncate(name, 0)
    store.open_append(name).write(bytes(data))


def _restored_frames(url: str, tmp_path: Path) -> Iterator[int]:
    target = tmp_path / f"restored-{secrets.token_hex(4)}"
    restore(url, target)
    with walship.open(target, entry_point_plugins=False) as log:
        for f in log.read():
            yield f.commit_seq


# --- item 6: a lost or damaged record never restarts numbering -------------------------------


@pytest.mark.parametrize("how", ["moved-aside", "damaged", "emptied"])
def test_a_lost_record_is_rebuilt_and_numbering_continues(
    store: SegmentStore, url: str, tmp_path: Path, how: str
) -> None:
    """The issue's reproduction: retention removed segments 1..3 (commit_seqs 1..15 are only in
    the archive); after the record is moved aside or damaged, the next append was commit_seq 1
    and the archiver uploaded it. Now the record is rebuilt from the archive."""
    _write(store, url, keep="until_archived")
    assert [n for n in store.list_names() if n.startswith("segment_")] == [S4]
    original = store.read(RECORD_NAME)
    if how == "moved-aside":
        store.rename(RECORD_NAME, "walship.archive.json.old")
    elif how == "damaged":
        store.write_atomic(RECORD_NAME, b'{"format": "walship-archive-rec')
    else:
        store.write_atomic(RECORD_NAME, b"")
    with _open(store, url, keep="until_archived") as log:
        assert log.recovery.record_rebuilt
        assert "archive record rebuilt" in log.recovery.summary()
        assert log.append(_payload(16)) == 16
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    if how != "moved-aside":
        assert f"{RECORD_NAME}.damaged" in store.list_names()  # kept, never deleted
    rebuilt = json.loads(store.read(RECORD_NAME))
    assert rebuilt["last_commit_seq"] == 16
    assert json.loads(original)["removed_through"] <= rebuilt["removed_through"]
    assert list(_restored_frames(url, tmp_path)) == list(range(1, 17))


def test_the_rebuilt_record_keeps_the_anchor_and_lets_retention_go_on(
    store: SegmentStore, url: str
) -> None:
    _write(store, url, keep="last:1")
    assert sorted(n for n in store.list_names() if n.startswith("segment_")) == [S3, S4]
    store.remove(RECORD_NAME)
    with _open(store, url, keep="last:1") as log:
        assert log.recovery.record_rebuilt and log.recovery.anchored
        assert _read(log) == list(range(11, 16))
        for seq in range(16, 21):
            assert log.append(_payload(seq)) == seq
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    local = sorted(n for n in store.list_names() if n.startswith("segment_"))
    assert local == [S4, segment_name(5)]


def _count_lists(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record the URL of every LIST of an archive from now on."""
    calls: list[str] = []
    real = ArchiveStore.list

    def counted(self: ArchiveStore) -> ArchiveListing:
        calls.append(self.url)
        return real(self)

    monkeypatch.setattr(ArchiveStore, "list", counted)
    return calls


def test_a_new_log_lists_its_empty_archive_once_and_gets_an_empty_record(
    store: SegmentStore, url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    lists = _count_lists(monkeypatch)
    with _open(store, url) as log:
        assert not log.recovery.record_rebuilt
        log.append(_payload(1))
    assert len(lists) == 1
    assert ArchiveRecord.load(store).entries() == []  # written at creation
    with _open(store, url) as log:  # the record is there: no request at all
        assert not log.recovery.record_rebuilt
        assert _read(log) == [1]
    assert len(lists) == 1


def test_a_wiped_directory_never_numbers_from_1_again(
    store: SegmentStore, url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Issue 10 item 6 for a new log: a directory wiped (or a second log given the same prefix)
    while the archive holds segments 1..3 (commit_seqs 1..15) would hand out commit_seq 1
    again. The open refuses in one line naming restore and repair, and writes nothing."""
    _write(store, url, segments=3)
    for name in store.list_names():
        store.remove(name)
    lists = _count_lists(monkeypatch)
    with pytest.raises(
        ArchiveConflictError, match=f"holds 3 segments \\({S1}..{S3}\\) already"
    ) as e:
        _open(store, url)
    message = str(e.value)
    assert "\n" not in message and "would number from 1 again" in message
    assert f"walship restore {ArchiveStore(url).url} NEWDIR" in message
    assert f"walship repair {store.location} -c CONFIG" in message
    assert len(lists) == 1
    assert not [n for n in store.list_names() if n.startswith("segment_") or n == RECORD_NAME]
    store.lock()  # released
    store.unlock()
    # repair continues the archive here: numbering after its last frame, without its frames
    with _open(store, url, repair=True) as log:
        assert log.recovery.record_rebuilt
        assert log.append(_payload(16)) == 16
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    assert list(_restored_frames(url, tmp_path)) == list(range(1, 17))


def test_a_new_log_opens_on_its_own_when_its_archive_cannot_be_listed(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A new log holds its whole history: an unreachable archive does not stop it (a warning);
    no record is written, so that its next open lists the archive again."""
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file where the archive directory should be")
    store = MemoryStore()
    url = (blocker / "archive").as_uri()
    with _open(store, url) as log:
        assert log.append(b"one") == 1
        log.rotate()
    assert f"{url} cannot be listed" in caplog.text
    assert RECORD_NAME not in store.list_names()
    caplog.clear()
    with _open(store, url) as log:  # an existing log, its whole history local: the same
        assert log.append(b"two") == 2
    assert f"{url} cannot be listed (" in caplog.text and "ArchiveStore(" not in caplog.text


def test_a_local_segment_that_differs_from_its_archived_copy_is_refused(
    store: SegmentStore, url: str
) -> None:
    _write(store, url)
    store.remove(RECORD_NAME)
    _flip(store, S2, HEADER_SIZE + 30)
    with pytest.raises(LogCorruptError, match=f"{S2} differs from its archived copy") as e:
        _open(store, url)
    assert "walship repair DIR -c CONFIG" in str(e.value) and "\n" not in str(e.value)


def test_without_the_archive_a_lost_record_is_refused_not_renumbered(store: SegmentStore) -> None:
    """Opened without its archive: section, a log whose only local segment is empty and whose
    older segments were removed cannot know its numbering: it refuses instead of starting at 1."""
    url = f"memory://walship-repair-{secrets.token_hex(6)}"
    _write(store, url, keep="until_archived")
    store.remove(RECORD_NAME)
    with pytest.raises(LogCorruptError, match="open the log with its archive: section"):
        walship.open(store=store, entry_point_plugins=False)
    store.write_atomic(RECORD_NAME, b"not json")
    with pytest.raises(ArchiveRecordError, match="never just delete it") as e:
        walship.open(store=store, entry_point_plugins=False)
    assert "rebuild it from the archive" in str(e.value)


def test_local_numbering_that_went_back_is_refused_and_never_archived(
    store: SegmentStore, url: str
) -> None:
    """An explicit anchor gets past the check above: frames 1.. land in segment 4 locally. With
    the archive configured again, the open refuses, and the archiver would not upload it."""
    _write(store, url, keep="until_archived")
    anchor = ArchiveRecord.load(store).entry(3)
    assert anchor is not None
    store.remove(RECORD_NAME)
    with walship.open(store=store, entry_point_plugins=False, anchor=anchor.blake3) as log:
        assert log.append(b"again") == 1  # without the archive, nothing can know better
    with pytest.raises(LogCorruptError, match=f"{S4} holds commit_seq 1, but the archive holds"):
        _open(store, url)
    archive = ArchiveStore(url)
    record = ArchiveRecord(store)
    with pytest.raises(ArchiveConflictError, match="first commit_seq 1 is not above 15"):
        check_continues(store, 4, record, archive.stat)
    assert archive.stat(S4) is None


def test_the_archiver_refuses_a_segment_that_forks_the_chain(tmp_path: Path, url: str) -> None:
    first = PosixStore(tmp_path / "one")
    _write(first, url, segments=1)
    other = MemoryStore()  # another log, archived to the same URL by mistake
    with walship.open(store=other, entry_point_plugins=False, instance_id=9) as log:
        log.append(b"x")
        log.rotate()
        log.append(b"y")
        log.rotate()
    with pytest.raises(ArchiveConflictError, match="prev_segment_hash is not the BLAKE3"):
        check_continues(other, 2, ArchiveRecord(other), ArchiveStore(url).stat)


def test_an_unreachable_archive_refuses_a_rebuild(tmp_path: Path) -> None:
    store = MemoryStore()
    _write(store, f"memory://walship-repair-{secrets.token_hex(6)}", keep="until_archived")
    store.remove(RECORD_NAME)
    blocker = tmp_path / "blocker"
    blocker.write_bytes(b"a file where the archive directory should be")
    with pytest.raises(ArchiveError, match="cannot list the archive"):
        _open(store, (blocker / "archive").as_uri())
    store.lock()  # released
    store.unlock()


# --- item 5: salvage never writes into an archived segment; repair puts it back ---------------


def test_salvage_refuses_to_cut_an_archived_segment(store: SegmentStore, url: str) -> None:
    """The issue's reproduction: salvage cut the damaged archived segment and appended to it;
    the archive kept the old frames, flush() reported success, the next open refused."""
    _write(store, url)
    _flip(store, S3, HEADER_SIZE + 30)
    before = {n: store.read(n) for n in store.list_names()}
    for salvage in (False, True):
        with pytest.raises(LogCorruptError, match="salvage never cuts or writes into") as e:
            _open(store, url, salvage=salvage)
        assert f"{S3} is archived" in str(e.value) and "repair=True" in str(e.value)
    assert {n: store.read(n) for n in store.list_names()} == before


@pytest.mark.parametrize("damage", ["flip", "missing", "header", "truncated", "last-archived"])
def test_repair_puts_damaged_archived_segments_back(
    store: SegmentStore, url: str, damage: str
) -> None:
    _write(store, url)
    if damage == "flip":
        _flip(store, S2, HEADER_SIZE + 30)
    elif damage == "missing":
        store.remove(S2)
    elif damage == "header":
        _flip(store, S2, 2)
    elif damage == "truncated":
        store.truncate(S2, store.size(S2) - 7)
    else:  # the last local segment is archived and cut short (its successor is gone)
        store.remove(S4)
        store.truncate(S3, store.size(S3) - 7)
    with pytest.raises(LogCorruptError):
        _open(store, url)
    with _open(store, url, repair=True) as log:
        damaged = S3 if damage == "last-archived" else S2
        assert log.recovery.restored == [damaged]
        assert f"put back from the archive: {damaged}" in log.recovery.summary()
        assert _read(log) == list(range(1, 16))
        assert log.append(_payload(16)) == 16
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    if damage != "missing":
        assert f"{damaged}.damaged" in store.list_names()  # the local copy is kept
    assert scan_store(store).ok
    with _open(store, url) as log:  # a plain open again
        assert _read(log) == list(range(1, 17))


def test_repair_leaves_unarchived_damage_to_salvage(store: SegmentStore, url: str) -> None:
    """Bit rot in the active segment (not archived): repair cannot fetch it; salvage then cuts
    it (it is not archived), and an archived segment put back first."""
    _write(store, url)
    with _open(store, url) as log:
        for seq in range(16, 20):
            log.append(_payload(seq))
    _flip(store, S2, HEADER_SIZE + 30)
    active_second = HEADER_SIZE + len(_payload(16)) + 25
    _flip(store, S4, active_second + 30)  # commit_seq 17; 18 and 19 follow: not torn
    with pytest.raises(LogCorruptError, match=f"{S4} at offset {active_second}: corrupt_frame"):
        _open(store, url, repair=True)
    assert scan_store(store).problems[0].segment == S4  # S2 was put back already
    with _open(store, url, repair=True, salvage=True) as log:
        assert log.recovery.restored == []
        assert [(r.segment, r.offset) for r in log.recovery.repairs] == [(S4, active_second)]
        assert _read(log) == list(range(1, 17))
        assert log.append(b"after") == 17  # 17 was never archived: the local log owns it


def test_salvage_after_the_archived_segments_starts_a_new_segment(
    store: SegmentStore, url: str
) -> None:
    """Damage at the first frame of the active segment: salvage moves it aside, and the log
    continues in a new segment after the archived ones, never in one of them."""
    _write(store, url)
    with _open(store, url) as log:
        for seq in range(16, 19):
            log.append(_payload(seq))
    _flip(store, S4, HEADER_SIZE + 30)
    with _open(store, url, salvage=True) as log:
        assert log.recovery.salvaged == [S4]
        assert log.recovery.continued_after == S3
        assert log.append(_payload(16)) == 16
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    with _open(store, url) as log:
        assert _read(log) == list(range(1, 17))


def test_repair_refuses_an_archived_copy_that_does_not_match(url: str) -> None:
    store = MemoryStore()
    _write(store, url)
    _flip(store, S2, HEADER_SIZE + 30)
    archive = ArchiveStore(url)
    with archive.fs.open(f"{archive.root}/{object_name(2)}", "rb") as f:
        data = bytearray(f.read())
    data[HEADER_SIZE + 31] ^= 1
    archive.fs.rm(f"{archive.root}/{object_name(2)}")
    with archive.fs.open(f"{archive.root}/{object_name(2)}", "wb") as f:
        f.write(bytes(data))
    before = store.files()
    with pytest.raises(ArchiveIntegrityError, match=S2):
        _open(store, url, repair=True)
    assert store.files() == before
    assert archive.fs.exists(f"{archive.root}/{manifest_name(2)}")


def _lie_about(url: str, seq: int, tmp_path: Path) -> bytes:
    """Replace archived segment ``seq`` by a consistent forgery: one payload byte changed, its
    frame's CRC recomputed, the header (prev hash) kept, and a manifest that matches it."""
    archive = ArchiveStore(url)
    with archive.fs.open(f"{archive.root}/{object_name(seq)}", "rb") as f:
        data = bytearray(f.read())
    (length,) = struct.unpack_from(">I", data, HEADER_SIZE)
    body = HEADER_SIZE + 4 + length - 4
    data[body - 1] ^= 0x01
    struct.pack_into(">I", data, body, crc32c(bytes(data[HEADER_SIZE:body])))
    forger = ArchiveStore(f"file://{tmp_path}/forger-{secrets.token_hex(4)}")
    forger.put(segment_name(seq), bytes(data))
    for name in (object_name(seq), manifest_name(seq)):
        with forger.fs.open(f"{forger.root}/{name}", "rb") as f:
            forged = f.read()
        archive.fs.rm(f"{archive.root}/{name}")
        with archive.fs.open(f"{archive.root}/{name}", "wb") as f:
            f.write(forged)
    return bytes(data)


@pytest.mark.parametrize("record", ["kept", "lost"])
def test_repair_never_replaces_an_intact_segment_by_a_forged_archived_copy(
    url: str, tmp_path: Path, record: str
) -> None:
    """The archive lies consistently about segment 2 (a frame altered, CRC and manifest made to
    match, the prev hash kept): the local segment 2 is intact, and its local successor's prev
    hash is the BLAKE3 of the local copy, not of the forgery. Repair refuses and changes
    nothing, and the log still opens."""
    store = MemoryStore()
    _write(store, url)
    _lie_about(url, 2, tmp_path)
    if record == "lost":
        store.remove(RECORD_NAME)
    before = store.files()
    with pytest.raises(ArchiveIntegrityError, match=S2) as e:
        _open(store, url, repair=True)
    assert "\n" not in str(e.value)
    assert store.files() == before
    if record == "kept":
        with _open(store, url) as log:
            assert _read(log) == list(range(1, 16))


def test_repair_needs_an_archive(store: SegmentStore) -> None:
    with pytest.raises(ConfigError, match="repair=True needs the log's archive: section"):
        walship.open(store=store, entry_point_plugins=False, repair=True)


def test_a_planted_far_manifest_is_named_not_walked(tmp_path: Path) -> None:
    """A hostile object named like the manifest of segment 10^15 in the archive: the rebuild
    reads only the manifests the listing holds, and refuses the invalid one in one line."""
    import time

    url = f"file://{tmp_path}/archive"
    store = MemoryStore()
    _write(store, url, keep="until_archived")
    store.remove(RECORD_NAME)
    far = 10**15
    (tmp_path / "archive" / manifest_name(far)).write_bytes(b'{"format": "nope"}')
    started = time.perf_counter()
    with pytest.raises(ArchiveIntegrityError, match=manifest_name(far)) as e:
        _open(store, url, keep="until_archived")
    assert time.perf_counter() - started < 10 and "\n" not in str(e.value)


@pytest.mark.parametrize("seq", [1, 2])
def test_a_repair_interrupted_between_its_steps_is_finished_by_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, seq: int
) -> None:
    """Killed after the damaged copy was moved aside and before the archived one was in place
    (here: an interrupt at the write): the segment is missing locally, and the next repair
    fetches it; the damaged copy is still kept. Segment 1 too: the first local segment gone
    is not a segment retention removed (the record says which those are)."""
    url = f"file://{tmp_path}/archive"
    store = PosixStore(tmp_path / "wal")
    name = segment_name(seq)
    _write(store, url)
    _flip(store, name, HEADER_SIZE + 30)
    damaged = store.read(name)
    real = PosixStore.write_atomic

    def interrupted(self: PosixStore, target: str, data: bytes) -> None:
        if target == name:
            raise KeyboardInterrupt
        real(self, target, data)

    with monkeypatch.context() as m:
        m.setattr(PosixStore, "write_atomic", interrupted)
        with pytest.raises(KeyboardInterrupt):
            _open(store, url, repair=True)
    assert name not in store.list_names() and store.read(f"{name}.damaged") == damaged
    with _open(store, url, repair=True) as log:
        assert log.recovery.restored == [name]
        assert _read(log) == list(range(1, 16))
    assert store.read(f"{name}.damaged") == damaged
