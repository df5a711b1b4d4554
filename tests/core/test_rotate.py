"""``Log.rotate()``: it seals a segment that holds frames, and does nothing (returns ``None``,
no event, no new segment) while the active segment holds none."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

import walship
from walship import hookimpl
from walship.backends.posix import PosixStore
from walship.core.header import segment_name
from walship.core.scan import scan_store
from walship.errors import LogClosedError


class Events:
    """Hears every segment event, in order."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []

    @hookimpl
    def segment_opened(self, segment_seq: int) -> None:
        self.seen.append(("opened", segment_seq))

    @hookimpl
    def segment_closed(self, segment: Any, reason: str) -> None:
        self.seen.append((f"closed {reason}", segment.segment_seq))


def _delivered(log: walship.Log, events: Events) -> list[tuple[str, int]]:
    assert log._events.wait_idle(timeout=30), "events were not delivered"
    return list(events.seen)


def _segment_files(path: Path) -> list[str]:
    return sorted(p.name for p in path.glob("segment_*.aedbwal"))


def test_rotate_of_a_new_log_does_nothing(tmp_path: Path) -> None:
    events = Events()
    with walship.open(tmp_path, plugins=[events], entry_point_plugins=False) as log:
        before = log.stats()
        assert log.rotate() is None
        assert log.rotate() is None
        after = log.stats()
        assert after["active_segment"] == before["active_segment"] == segment_name(1)
        assert after["segments"] == 1 and after["rotations_forced"] == 0  # every key is there
        assert _delivered(log, events) == [("opened", 1)]
        assert _segment_files(tmp_path) == [segment_name(1)]
        assert log.append(b"first") == 1  # the empty segment is still the one written to
    assert [(s.name, s.frame_count) for s in scan_store(PosixStore(tmp_path)).segments] == [
        (segment_name(1), 1)
    ]


def test_rotate_after_an_append_seals_then_the_empty_successor_stays(tmp_path: Path) -> None:
    events = Events()
    with walship.open(tmp_path, plugins=[events], entry_point_plugins=False) as log:
        log.append(b"one")
        closed = log.rotate()
        assert closed is not None
        assert (closed.segment_seq, closed.frame_count, closed.reason) == (
            1,
            1,
            walship.RotationReason.FORCED,
        )
        assert log.stats()["active_segment"] == segment_name(2)
        assert log.rotate() is None  # segment 2 holds no frame yet
        assert log.stats()["active_segment"] == segment_name(2)
        assert log.stats()["rotations_forced"] == 1
        log.append(b"two")
        second = log.rotate()
        assert second is not None and second.segment_seq == 2
        assert second.prev_segment_hash == closed.blake3
        assert _delivered(log, events) == [
            ("opened", 1),
            ("closed forced", 1),
            ("opened", 2),
            ("closed forced", 2),
            ("opened", 3),
        ]
    assert _segment_files(tmp_path) == [segment_name(s) for s in (1, 2, 3)]
    assert scan_store(PosixStore(tmp_path)).ok


def test_rotate_after_a_size_rotation_does_nothing(tmp_path: Path) -> None:
    events = Events()
    options: dict[str, Any] = dict(max_segment_bytes=256, entry_point_plugins=False)
    with walship.open(tmp_path, plugins=[events], **options) as log:
        log.append_batch([b"x" * 300])  # one batch past the limit: rotated by size after it
        assert log.stats()["active_segment"] == segment_name(2)
        assert log.rotate() is None
        assert log.stats()["active_segment"] == segment_name(2)
        assert _delivered(log, events) == [("opened", 1), ("closed size", 1), ("opened", 2)]


def test_rotate_of_a_resumed_empty_segment_does_nothing(tmp_path: Path) -> None:
    with walship.open(tmp_path, entry_point_plugins=False) as log:
        log.append(b"one")
        log.rotate()  # segment 2 is active and empty when the log closes
    events = Events()
    with walship.open(tmp_path, plugins=[events], entry_point_plugins=False) as log:
        assert log.stats()["active_segment"] == segment_name(2)
        assert log.rotate() is None
        assert _delivered(log, events) == []  # a resumed segment is not announced as opened
    assert _segment_files(tmp_path) == [segment_name(1), segment_name(2)]


def test_an_empty_rotate_archives_nothing(tmp_path: Path) -> None:
    bucket = tmp_path / "bucket"
    archive = {"url": bucket.as_uri(), "workers": 1}
    with walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False) as log:
        assert log.archiver is not None
        log.append(b"one")
        log.rotate()
        assert log.archiver.flush(timeout=30)
        assert log.rotate() is None
        assert log.archiver.flush(timeout=30)
        archived = sorted(p.name for p in bucket.glob("segment_*.aedbwal"))
    assert archived == [segment_name(1)]


def test_rotate_of_a_closed_log_still_raises(tmp_path: Path) -> None:
    log = walship.open(tmp_path, entry_point_plugins=False)
    log.close()
    with pytest.raises(LogClosedError):
        log.rotate()
