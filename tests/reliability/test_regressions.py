"""Reproductions of the defects the reliability harnesses found, kept as regular tests.

Each test names the harness that found the defect and what was wrong.
"""

from __future__ import annotations

import json
import os
import secrets
from dataclasses import replace
from pathlib import Path

import pytest
from blake3 import blake3

import walship
from walship.archive import ArchiveReadStore, manifest_name
from walship.archive.restore import restore
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import HEADER_SIZE, SegmentHeader, parse_segment_name, segment_name
from walship.core.record import RECORD_NAME
from walship.core.scan import scan_store
from walship.errors import ArchiveIntegrityError, ArchiveNameError
from walship.store import SegmentStore
from walship.testing.faults import Fault, FaultyStore

from .support import abandon


def _open(store: MemoryStore, **options: object) -> walship.Log:
    return walship.open(store=store, entry_point_plugins=False, **options)  # type: ignore[arg-type]


def test_crash_garbage_tears_only_a_write_in_flight() -> None:
    """Power-loss harness: ``MemoryStore.crash(garbage=...)`` appended garbage to the last
    written file even when all of it was synced (a sealed segment after a rotation), which no
    disk does; recovery then rightly refused the log. Garbage only follows a torn write."""
    store = MemoryStore()
    log = _open(store)
    log.append(b"one")
    log.rotate()  # segment 1 is synced and sealed; segment 2 is empty
    store.crash(keep_unsynced=0, garbage=b"\0")
    assert scan_store(store).ok
    log2 = _open(store)
    assert [f.payload for f in log2.read()] == [b"one"]
    log2.close()


def test_read_from_seq_finds_frames_appended_to_a_resumed_segment() -> None:
    """Power-loss harness: after a reopen, ``read(from_seq=n)`` skipped the active segment when
    ``n`` was past the last frame recovery had found in it, so new frames were invisible."""
    store = MemoryStore()
    log = _open(store)
    log.append(b"one")
    log.close()
    log = _open(store)
    seq = log.append(b"two")
    assert seq == 2
    assert [f.payload for f in log.read(from_seq=2)] == [b"two"]
    log.close()


def test_a_second_torn_tail_at_the_same_offset_keeps_both_side_files() -> None:
    """Power-loss harness: two crashes that tore the tail at the same offset made recovery
    overwrite the first ``.torn-<offset>`` side file, destroying the bytes it had kept."""
    store = MemoryStore()
    cut: list[bytes] = []
    for garbage in (b"first", b"second"):
        log = _open(store, durability="none")
        log.append(b"x" * 40)  # never synced
        abandon(log)
        store.crash(keep_unsynced=10, garbage=garbage)
        log = _open(store, durability="none")
        [repair] = log.recovery.repairs
        cut.append(store.read(repair.side_file))
        log.close()
    sides = sorted(n for n in store.list_names() if ".torn-" in n)
    assert len(sides) == 2
    assert sorted(store.read(n) for n in sides) == sorted(cut)
    assert cut[0] != cut[1]


def test_a_failed_sync_does_not_leave_bytes_a_reopen_would_build_on() -> None:
    """Fault harness (fsyncgate): after a failed fsync the log failed closed but left the
    unsynced frame in the file; a reopen read it (from the page cache), appended after it and
    acknowledged; a power loss then zeroed the never-written bytes and the acknowledged frame
    behind them was lost (or the log refused to open). Now the log cuts the file back to what
    the last good sync made durable, and keeps the cut bytes in a side file."""
    store = FaultyStore(MemoryStore(), Fault("sync", at=2))
    log = _open(store)
    assert log.append(b"durable") == 1
    with pytest.raises(walship.LogFailedError):
        log.append(b"never durable")  # the second fdatasync fails
    with pytest.raises(walship.LogFailedError):
        log.close()
    assert any(".unsynced-" in n for n in store.list_names())
    store.disarm()
    log = _open(store)  # same machine, no crash: the page cache still shows what it shows
    acked = log.append(b"acknowledged")
    log.close()
    store.crash()
    log = _open(store)
    assert [(f.commit_seq, f.payload) for f in log.read()] == [
        (1, b"durable"),
        (acked, b"acknowledged"),
    ]
    log.close()


def test_durable_seq_after_reopen_covers_only_synced_bytes() -> None:
    """Fault harness: a reopen set durable_seq to the last frame it found, although under
    ``interval`` durability that frame could still be only in the page cache (the previous
    instance failed before syncing it); a power loss then lost a frame below durable_seq.
    Now the reopen syncs what it found before claiming it."""
    store = FaultyStore(MemoryStore(), Fault("write", at=2))
    log = _open(store, durability="interval", sync_interval=3600)
    log.append(b"written, not synced")
    with pytest.raises(walship.LogFailedError):
        log.append(b"fails")
    with pytest.raises(walship.LogFailedError):
        log.close()
    store.disarm()
    log = _open(store, durability="interval", sync_interval=3600)
    assert log.durable_seq == 1
    abandon(log)
    store.crash()
    log = _open(store)
    assert [f.payload for f in log.read()] == [b"written, not synced"]
    log.close()


def test_salvage_names_a_gap_between_segments_with_more_than_16_digits() -> None:
    """Hostile-input fuzz: salvaging a store whose segments skip numbers above 10**16 (names
    longer than 16 digits) died on an ``AssertionError`` instead of moving them aside."""
    store = MemoryStore()
    store.write_atomic(segment_name(10**16 - 1), b"")
    store.write_atomic(segment_name(2**64 - 1), b"")
    with pytest.raises(walship.LogCorruptError):
        _open(store)
    log = _open(store, salvage=True)
    assert list(log.read()) == []
    log.close()


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="needs /proc")
def test_a_failed_close_or_open_releases_the_segment_file(tmp_path: Path) -> None:
    """Fault harness (POSIX sweep): when the sync in ``close()`` failed, the active segment's
    descriptor stayed open; when an open failed after recovery had opened the last segment
    (e.g. its first sync failed), that descriptor stayed open too."""
    store = FaultyStore(PosixStore(tmp_path / "wal"))
    log = _open(store)
    log.append(b"one")
    fds = _open_fds()
    assert isinstance(store.inner, PosixStore)
    held = 3 if store.inner._dir_fd is not None else 2  # the directory's own lock, if any
    store.arm(Fault("sync", at=store.counts["sync"] + 1))  # the sync in close()
    with pytest.raises(walship.LogFailedError):
        log.close()
    assert _open_fds() == fds - held  # the segment, the lock file (and the directory)
    fds = _open_fds()
    store.arm(Fault("sync", at=store.counts["sync"] + 1))  # the sync of what recovery found
    with pytest.raises(OSError):
        _open(store)
    assert _open_fds() == fds
    store.disarm()
    log = _open(store)
    assert [f.payload for f in log.read()] == [b"one"]
    log.close()


def test_close_reports_a_failure_no_call_has_reported() -> None:
    """Fault harness (long sweep): the rotation after an acknowledged append failed, the log
    was failed, yet the following ``close()`` returned normally; under ``interval`` the frame
    was acknowledged, never synced, and the caller was never told. ``close()`` now raises."""
    store = FaultyStore(MemoryStore(), Fault("sync", at=1))  # the sync of the rotation
    log = _open(store, durability="interval", sync_interval=3600, max_segment_bytes=64)
    assert log.append(b"acknowledged, then rotated") == 1  # the append itself succeeded
    assert log.failed is not None
    with pytest.raises(walship.LogFailedError):
        log.close()
    assert log.closed and log.durable_seq == 0
    store.arm(Fault("sync", at=store.counts["sync"] + 2))  # the first append's sync
    with pytest.raises(walship.LogFailedError) as info, _open(store) as again:
        assert [f.payload for f in again.read()] == []
        again.append(b"fails")
    assert again.closed
    # leaving the with block added no second error on top of the append's
    assert not isinstance(info.value.__context__, walship.LogFailedError)


# --- the numbering after retention (defect found while closing issue 6) ---------------------


def _archived(store: SegmentStore, url: str, **options: object) -> walship.Log:
    """A log that archives to ``url`` and keeps only what is not archived yet."""
    return walship.open(
        store=store,
        entry_point_plugins=False,
        archive={"url": url, "retries": {"attempts": 3, "backoff": 0.01}},
        retention={"keep_local": "until_archived"},
        **options,  # type: ignore[arg-type]
    )


def _archive_url(tmp_path: Path, kind: str) -> str:
    if kind == "memory":
        return f"memory://walship-regressions-{secrets.token_hex(6)}"
    return f"file://{tmp_path}/archive"


def _flush(log: walship.Log) -> None:
    assert log.archiver is not None and log.archiver.flush(timeout=30)


def _die(log: walship.Log) -> None:
    """The process dies: every thread stops, nothing is closed or synced."""
    abandon(log)
    if log.archiver is not None:
        log.archiver.close()
    log.store.unlock()


def _torn(store: SegmentStore, name: str) -> None:
    """Leave ``name`` as a creation torn by a crash: a header cut short."""
    header = store.read(name, 0, HEADER_SIZE)
    if isinstance(store, PosixStore):
        os.truncate(Path(store.location) / name, 40)
    else:
        store.write_atomic(name, header[:40])


def _restored_frames(url: str, where: Path) -> list[tuple[int, bytes]]:
    """Every frame of the archive at ``url``, restored into ``where`` and read back; the
    archive's chain must verify."""
    assert scan_store(ArchiveReadStore(url)).ok
    restore(url, where)
    with walship.open(where, entry_point_plugins=False) as log:
        return [(f.commit_seq, f.payload) for f in log.read()]


def _local_segments(store: SegmentStore) -> list[int]:
    return sorted(s for n in store.list_names() if (s := parse_segment_name(n)) is not None)


@pytest.mark.parametrize("kind", ["memory", "posix"])
@pytest.mark.parametrize("how", ["close", "crash"])
def test_numbering_goes_on_after_retention_removed_every_closed_segment(
    tmp_path: Path, kind: str, how: str
) -> None:
    """Issue 6, item 7 (and wider than reported): once retention had removed every closed
    segment, the active segment held no frame (it always does right after a rotation), so a
    reopen (clean or after a crash) found no frame locally and started again at commit_seq 1,
    reusing numbers the archive holds. Recovery now continues from the archive record."""
    store: SegmentStore = MemoryStore() if kind == "memory" else PosixStore(tmp_path / "wal")
    url = _archive_url(tmp_path, kind)
    log = _archived(store, url)
    assert log.append_batch([b"a", b"b", b"c"]) == [1, 2, 3]
    log.rotate()
    _flush(log)
    assert _local_segments(store) == [2]
    if how == "close":
        log.close()
    else:
        _die(log)
        if isinstance(store, MemoryStore):
            store.crash()
    log = _archived(store, url)
    assert (log.last_seq, log.durable_seq) == (3, 3)
    assert log.append(b"d") == 4
    log.rotate()
    _flush(log)
    log.close()
    assert _restored_frames(url, tmp_path / "r") == [(1, b"a"), (2, b"b"), (3, b"c"), (4, b"d")]


@pytest.mark.parametrize("kind", ["memory", "posix"])
def test_a_torn_creation_after_retention_continues_after_the_archive(
    tmp_path: Path, kind: str
) -> None:
    """Issue 6, item 7: retention removed every closed segment and the active segment's creation
    was torn (a header shorter than 64 bytes; recovery removes it): the log restarted at
    segment 1 and commit_seq 1, with segment 1 chained to the archive's last segment. Now the
    log continues in the next segment after the archived one, at the next commit_seq."""
    store: SegmentStore = MemoryStore() if kind == "memory" else PosixStore(tmp_path / "wal")
    url = _archive_url(tmp_path, kind)
    log = _archived(store, url)
    log.append_batch([b"a", b"b"])
    log.rotate()
    _flush(log)
    _die(log)
    if isinstance(store, MemoryStore):
        store.crash()
    _torn(store, segment_name(2))
    log = _archived(store, url)
    assert [r.segment for r in log.recovery.repairs] == [segment_name(2)]
    assert log.recovery.continued_after == segment_name(1)
    assert log.stats()["active_segment"] == segment_name(2)
    assert log.append(b"c") == 3
    log.rotate()
    _flush(log)
    log.close()
    assert _restored_frames(url, tmp_path / "r") == [(1, b"a"), (2, b"b"), (3, b"c")]


@pytest.mark.parametrize("kind", ["memory", "posix"])
def test_a_failed_creation_after_retention_keeps_the_numbering(tmp_path: Path, kind: str) -> None:
    """Issue 6, item 7: retention removed segment 1, the empty segment 2 was rotated and the
    creation of segment 3 failed half-way (a torn header); the reopen removed segment 3, resumed
    the empty segment 2 and handed out commit_seq 1 again.

    ``Log.rotate()`` no longer rotates an empty segment, so a walship of today never leaves
    this state; one from before did, and recovery must still number on after the archive."""
    inner: SegmentStore = MemoryStore() if kind == "memory" else PosixStore(tmp_path / "wal")
    store = FaultyStore(inner)
    url = _archive_url(tmp_path, kind)
    log = _archived(store, url)
    log.append_batch([b"a", b"b"])
    log.rotate()
    _flush(log)
    creates = store.counts["create"]
    assert log.rotate() is None  # segment 2 is empty: nothing is created that could fail
    assert store.counts["create"] == creates
    log.close()
    # what the failed creation of segment 3 left behind: a header cut short
    data = store.read(segment_name(2))
    third = replace(
        SegmentHeader.decode(data), segment_seq=3, prev_segment_hash=blake3(data).digest()
    )
    store.write_atomic(segment_name(3), third.encode()[:40])
    assert _local_segments(store) == [2, 3]
    log = _archived(store, url)
    assert [r.segment for r in log.recovery.repairs] == [segment_name(3)]
    assert log.append(b"c") == 3
    log.rotate()
    _flush(log)
    log.close()
    assert _restored_frames(url, tmp_path / "r") == [(1, b"a"), (2, b"b"), (3, b"c")]


def test_a_sealed_segment_whose_successor_was_torn_is_never_appended_to(tmp_path: Path) -> None:
    """Issue 6, item 7 (a neighbour): with every segment kept, a torn creation of segment 3 made
    recovery resume segment 2 although it was archived; new frames went into it, the archive
    skipped it (recorded already) and its copy no longer matched: the archive's chain broke, and
    retention would later have removed frames that were never archived. The log now continues
    in a new segment 3 after the sealed segment 2."""
    store = PosixStore(tmp_path / "wal")
    url = _archive_url(tmp_path, "posix")
    options = {"url": url, "retries": {"attempts": 3, "backoff": 0.01}}
    log = walship.open(store=store, entry_point_plugins=False, archive=options)
    for i in range(2):
        log.append(b"frame %d" % i)
        log.rotate()
    _flush(log)
    log.close()
    sealed = store.read(segment_name(2))
    _torn(store, segment_name(3))
    log = walship.open(store=store, entry_point_plugins=False, archive=options)
    assert log.recovery.continued_after == segment_name(2)
    assert log.append(b"frame 2") == 3
    log.rotate()
    _flush(log)
    log.close()
    assert store.read(segment_name(2)) == sealed
    assert scan_store(store).ok
    assert [p for _, p in _restored_frames(url, tmp_path / "r")] == [
        b"frame 0",
        b"frame 1",
        b"frame 2",
    ]


def test_a_lone_torn_segment_without_a_record_starts_a_fresh_log() -> None:
    """Issue 6, item 7: without an archive record nothing is known before a torn segment: the
    log starts fresh at segment 1 and commit_seq 1."""
    store = MemoryStore()
    store.write_atomic(segment_name(5), b"AEDB" + bytes(30))
    log = _open(store)
    assert log.stats()["active_segment"] == segment_name(1)
    assert log.append(b"first") == 1
    log.close()
    assert _local_segments(store) == [1]


@pytest.mark.parametrize("torn", [False, True])
def test_a_restored_log_keeps_its_numbering_after_retention(tmp_path: Path, torn: bool) -> None:
    """Issue 6, item 7, on a restored directory: a restored log that archives to the same URL
    drops its restored segments (recorded as archived by the restore); its reopen, clean or
    with the active segment torn, continues after the archive."""
    url = _archive_url(tmp_path, "posix")
    with walship.open(tmp_path / "wal", entry_point_plugins=False, archive={"url": url}) as log:
        for i in range(3):
            log.append_batch([b"%d.%d" % (i, j) for j in range(4)])
            log.rotate()
        _flush(log)
    restore(url, tmp_path / "restored")
    store = PosixStore(tmp_path / "restored")
    log = _archived(store, url)
    _flush(log)
    assert _local_segments(store) == [4]
    log.close()
    if torn:
        _torn(store, segment_name(4))
    log = _archived(store, url)
    assert log.last_seq == 12
    assert log.append(b"after") == 13
    log.rotate()
    _flush(log)
    log.close()
    frames = _restored_frames(url, tmp_path / "again")
    assert [s for s, _ in frames] == list(range(1, 14)) and frames[-1][1] == b"after"


def test_a_record_that_does_not_know_the_numbering_refuses_to_guess() -> None:
    """Issue 6, item 7: a record written before walship kept the highest archived commit_seq
    cannot tell where the numbering goes on when no local frame is left: the open refuses
    with one line rather than start again at 1."""
    store = MemoryStore()
    url = f"memory://walship-regressions-{secrets.token_hex(6)}"
    log = _archived(store, url)
    log.append(b"a")
    log.rotate()
    _flush(log)
    log.close()
    doc = json.loads(store.read(RECORD_NAME))
    del doc["last_commit_seq"]
    for entry in doc["segments"]:
        del entry["last_commit_seq"]
    store.write_atomic(RECORD_NAME, json.dumps(doc).encode())
    with pytest.raises(walship.LogCorruptError, match="does not say where") as e:
        _archived(store, url)
    assert "\n" not in str(e.value)


def test_a_last_segment_shorter_than_its_archived_copy_is_refused(tmp_path: Path) -> None:
    """Issue 6, item 7 (a neighbour): the last local segment is recorded as archived, but holds
    fewer bytes than its archived copy (its successor is gone and its tail was cut). Appending
    to it would fork the archived segment: the open refuses, and so does ``salvage=True``
    (issue 10 item 5: salvage never writes into an archived segment); ``repair=True`` puts the
    archived copy back and the log continues after it."""
    store = PosixStore(tmp_path / "wal")
    options = {"url": _archive_url(tmp_path, "posix")}
    with walship.open(store=store, entry_point_plugins=False, archive=options) as log:
        log.append_batch([b"x" * 30] * 3)
        log.rotate()
        _flush(log)
    store.remove(segment_name(2))
    size = store.size(segment_name(1))
    os.truncate(Path(store.location) / segment_name(1), size - 10)
    with pytest.raises(walship.LogCorruptError, match="differs from its archived copy"):
        walship.open(store=store, entry_point_plugins=False, archive=options)
    with pytest.raises(walship.LogCorruptError, match="walship repair DIR -c CONFIG"):
        walship.open(store=store, entry_point_plugins=False, salvage=True)
    with walship.open(store=store, entry_point_plugins=False, archive=options, repair=True) as log:
        assert log.recovery.restored == [segment_name(1)]
        assert log.last_seq == 3  # commit_seq 3 is in the archive: never handed out again
        assert log.append(b"next") == 4
        assert log.stats()["active_segment"] == segment_name(2)  # not appended to segment 1


# --- restore from a hostile bucket (test_hostile_bucket.py) ---------------------------------


def _archive_of(tmp_path: Path, segments: int = 3) -> str:
    url = f"file://{tmp_path}/archive"
    with walship.open(tmp_path / "wal", entry_point_plugins=False, archive={"url": url}) as log:
        for s in range(segments):
            log.append_batch([b"%d.%d" % (s, i) for i in range(5)])
            log.rotate()
        _flush(log)
    return url


def _lie(tmp_path: Path, seq: int, **fields: object) -> None:
    path = tmp_path / "archive" / manifest_name(seq)
    doc = json.loads(path.read_bytes())
    doc.update(fields)
    path.write_text(json.dumps(doc))


def test_restore_checks_every_claim_of_a_manifest(tmp_path: Path) -> None:
    """Hostile-bucket harness: restore checked a manifest's size and BLAKE3 against its object
    but trusted its commit range. A manifest claiming last_commit_seq 10**12 went into the
    restored archive record, and the restored log went on at commit_seq 10**12 + 1."""
    url = _archive_of(tmp_path)
    _lie(tmp_path, 3, last_commit_seq=10**12)
    with pytest.raises(ArchiveIntegrityError, match="last_commit_seq is 1000000000000") as e:
        restore(url, tmp_path / "r")
    assert e.value.segment == segment_name(3) and "\n" not in str(e.value)
    assert not (tmp_path / "r").exists()


def test_point_in_time_restore_never_skips_a_segment_on_a_manifest_s_word(
    tmp_path: Path,
) -> None:
    """Hostile-bucket harness: a point-in-time restore chose its segments by the manifests'
    commit ranges without reading the segments it left out. Segment 2's manifest claiming
    1000..1004 made ``to_seq=7`` restore only 1..5 and report success: frames 6 and 7, in the
    archive, were silently missing. Every segment the plan leaves out on its manifest's word
    is now downloaded and checked."""
    url = _archive_of(tmp_path)
    _lie(tmp_path, 2, first_commit_seq=1000, last_commit_seq=1004)
    with pytest.raises(ArchiveIntegrityError, match="first_commit_seq is 1000"):
        restore(url, tmp_path / "r", to_seq=7)
    assert not (tmp_path / "r").exists()


def test_an_absolute_object_name_in_s3_is_refused(tmp_path: Path) -> None:
    """Hostile-bucket harness: a key ``<prefix>//abs/path`` (an object name starting with
    ``/``) was listed by s3fs as a directory with the prefix's own name and skipped silently,
    although the archive promises to refuse absolute names. It is now refused, named."""
    from s3server import moto_endpoint, new_bucket

    bucket = new_bucket(moto_endpoint())
    bucket.put("/abs/path", b"hostile")
    with pytest.raises(ArchiveNameError, match="absolute path"):
        restore(bucket.url, tmp_path / "r", storage_options=bucket.storage_options)
    with pytest.raises(ArchiveNameError, match="absolute path"):
        scan_store(ArchiveReadStore(bucket.url, bucket.storage_options))


# --- credentials and storage-library errors (test_credentials.py) ---------------------------


def test_the_archive_settings_repr_hides_the_storage_options() -> None:
    """Credentials harness: ``repr(log.archiver.settings)`` printed every storage option, keys
    and secrets included (the config's own model hid them, the log's did not)."""
    from walship.archive.archiver import ArchiveSettings

    settings = ArchiveSettings.from_mapping(
        {"url": "https://user:pass-word-1@host/wal", "storage_options": {"secret": "sec-ret-2"}}
    )
    assert "sec-ret-2" not in repr(settings) and "pass-word-1" not in repr(settings)
    assert "sec-ret-2" not in str(settings) and "user:***@host" in repr(settings)


def test_the_config_repr_hides_an_archive_url_password() -> None:
    """Credentials harness: ``repr(config)`` showed the password of an archive URL
    (``sftp://user:${PASSWORD}@host/...``), although its error messages hid it."""
    from walship.config import validate_config

    cfg = validate_config(
        {"archive": {"url": "sftp://user:${P}@host/wal"}}, source="x", env={"P": "pass-word-4"}
    )
    assert "pass-word-4" not in repr(cfg) + str(cfg) and "user:***@host" in repr(cfg)


def test_a_password_in_the_archive_url_is_redacted(tmp_path: Path) -> None:
    """Credentials harness: the archive URL, password and all, went into ``log.stats()``, every
    ``archive_failed`` error, the archiver's log lines and the archive record."""
    from socket import socket

    with socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://walship:pass-word-3@127.0.0.1:{port}/wal"
    log = walship.open(
        tmp_path / "wal",
        entry_point_plugins=False,
        archive={"url": url, "retries": {"attempts": 1}},
    )
    log.append(b"one")
    log.rotate()
    assert log.archiver is not None and not log.archiver.flush(timeout=30)
    text = json.dumps(log.stats()) + json.dumps(log.archiver.stalled()) + repr(log.archiver)
    log.close()
    assert "pass-word-3" not in text and f"walship:***@127.0.0.1:{port}" in text


def test_an_unreachable_endpoint_is_an_os_error_not_a_traceback(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Credentials harness: ``walship verify s3://...`` (and ``restore``, ``inspect``) against
    an endpoint that does not answer died with botocore's ``EndpointConnectionError`` and a
    traceback: it is not an ``OSError``, and s3fs lets it through. The archive now turns
    errors of the storage libraries into ``OSError`` (one line on the command line)."""
    from click.testing import CliRunner
    from s3server import FAKE_ENV, free_port

    from walship.cli import build_cli

    for k, v in FAKE_ENV.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr("s3fs.S3FileSystem.retries", 1)  # s3fs's own retries: quick
    endpoint = f"http://127.0.0.1:{free_port()}"
    options = {"endpoint_url": endpoint, "config_kwargs": {"retries": {"total_max_attempts": 1}}}
    with pytest.raises(OSError, match="EndpointConnectionError"):
        restore("s3://walship-nowhere/wal", tmp_path / "r", storage_options=options)
    result = CliRunner().invoke(
        build_cli(),
        [
            "verify",
            "s3://walship-nowhere/wal",
            "-o",
            f"endpoint_url={endpoint}",
            "-o",
            "config_kwargs={retries: {total_max_attempts: 1}}",
        ],
        prog_name="walship",
    )
    assert result.exit_code == 2 and isinstance(result.exception, SystemExit)
    [line] = result.stderr.splitlines()
    assert line.startswith("walship: error: s3://walship-nowhere/wal: list failed: ")
    assert "EndpointConnectionError" in line


def test_a_failed_rotation_never_archives_or_removes_the_last_segment(tmp_path: Path) -> None:
    """Review finding: when creating the next segment failed, the segment being closed has no
    successor and got no ``segment_closed``; it was still archived and removed by retention,
    and the reopened log started over at segment 1 and commit_seq 1."""
    mem = MemoryStore()
    store = FaultyStore(mem, Fault("create", at=3))  # segments 1 and 2 fine, 3 fails
    archive = {"url": (tmp_path / "bucket").as_uri(), "retries": {"attempts": 1, "backoff": 0.01}}
    retention = {"keep_local": "until_archived"}
    log = walship.open(store=store, archive=archive, retention=retention, entry_point_plugins=False)
    log.append(b"a")
    log.rotate()  # segment 1: closed, archived, removed
    log.append(b"b")
    with pytest.raises(walship.LogFailedError):
        log.rotate()  # segment 2 synced, segment 3 cannot be created
    assert log.archiver is not None
    log.archiver.flush(timeout=10)
    assert segment_name(2) in mem.list_names()  # never removed: it was never closed
    assert not (tmp_path / "bucket" / segment_name(2)).exists()
    with pytest.raises(walship.LogFailedError):
        log.close()
    with walship.open(
        store=mem, archive=archive, retention=retention, entry_point_plugins=False
    ) as again:
        assert [f.payload for f in again.read()] == [b"b"]
        assert again.append(b"c") == 3  # the numbering goes on
