"""Reproductions of the defects the reliability harnesses found, kept as regular tests.

Each test names the harness that found the defect and what was wrong.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import segment_name
from walship.core.recovery import scan_store
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
    store.arm(Fault("sync", at=store.counts["sync"] + 1))  # the sync in close()
    with pytest.raises(walship.LogFailedError):
        log.close()
    assert _open_fds() == fds - 2  # the segment and the lock file
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
