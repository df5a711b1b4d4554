"""Reproductions of the defects the reliability harnesses found, kept as regular tests.

Each test names the harness that found the defect and what was wrong.
"""

from __future__ import annotations

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.core.recovery import scan_store


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
        store.crash(keep_unsynced=10, garbage=garbage)
        with pytest.raises(walship.LogFailedError):  # its handles died in the crash
            log.close()
        log = _open(store, durability="none")
        [repair] = log.recovery.repairs
        cut.append(store.read(repair.side_file))
        log.close()
    sides = sorted(n for n in store.list_names() if ".torn-" in n)
    assert len(sides) == 2
    assert sorted(store.read(n) for n in sides) == sorted(cut)
    assert cut[0] != cut[1]
