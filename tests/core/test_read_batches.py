"""Log.read_batches: the frames of read(), in lists; payload views and their lifetime; the
read path's seq bounds, its reuse of the open's verification, and its pure/native equality."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.core import frame
from walship.core.frame import Frame, FrameView
from walship.core.header import HEADER_SIZE, segment_name
from walship.errors import CorruptFrameError, LogClosedError


@contextmanager
def pure() -> Iterator[None]:
    saved = frame.codec
    frame.codec = None
    try:
        yield
    finally:
        frame.codec = saved


def _fill(log: walship.Log, n: int = 600) -> dict[int, bytes]:
    """Frames of varied sizes over several segments, the last one still active."""
    want: dict[int, bytes] = {}
    for i in range(n):
        p = os.urandom(i % 37) + b"#%d" % i
        want[log.append(p, payload_type=i % 3)] = p
        if i % 150 == 149:
            log.rotate()
    return want


@pytest.fixture(params=["posix", "memory"])
def log(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[walship.Log]:
    if request.param == "posix":
        opened = walship.open(tmp_path, durability="none")
    else:
        opened = walship.open(store=MemoryStore(), durability="none")
    with opened:
        yield opened


BOUNDS = [(None, None), (1, None), (0, 10), (149, 152), (300, 300), (451, None), (600, 10**30)]


@pytest.mark.parametrize(("lo", "hi"), BOUNDS)
@pytest.mark.parametrize("max_frames", [1, 7, 4096])
def test_batches_are_the_frames_of_read_in_order(
    log: walship.Log, lo: int | None, hi: int | None, max_frames: int
) -> None:
    want = _fill(log)
    frames = list(log.read(lo, hi))
    batches = list(log.read_batches(lo, hi, max_frames=max_frames))
    assert all(0 < len(b) <= max_frames for b in batches)
    assert [f for b in batches for f in b] == frames
    first, last = max(lo or 1, 1), min(hi if hi is not None else 600, 600)
    assert [f.commit_seq for f in frames] == list(range(first, last + 1))
    assert all(type(f) is Frame and f.payload == want[f.commit_seq] for f in frames)
    assert [f.payload_type for f in frames] == [(s - 1) % 3 for s in range(first, last + 1)]


def test_empty_ranges_and_bounds_outside_the_log(log: walship.Log) -> None:
    _fill(log, 20)
    assert list(log.read_batches(21)) == []
    assert list(log.read_batches(5, 4)) == []
    assert list(log.read_batches(-5, -1)) == []
    assert list(log.read_batches(2**64 + 3)) == []  # never wraps into the u64 range
    assert [f.commit_seq for f in log.read(-3, 2)] == [1, 2]


def test_views_are_the_same_frames_without_a_copy(log: walship.Log) -> None:
    want = _fill(log)
    got = [f for b in log.read_batches(views=True, max_frames=50) for f in b]
    assert all(type(f) is FrameView and isinstance(f.payload, memoryview) for f in got)
    assert all(f.payload.readonly or True for f in got)
    assert {f.commit_seq: bytes(f.payload) for f in got} == want
    assert [f[:3] for f in got] == [f[:3] for f in log.read()]


def test_views_outlive_the_read_and_the_log(tmp_path: Path) -> None:
    with walship.open(tmp_path, durability="none") as log:
        want = _fill(log, 300)
        views = [f for b in log.read_batches(views=True) for f in b]
    assert {f.commit_seq: bytes(f.payload) for f in views} == want  # the mapping lives on


def test_checks_wait_for_the_first_batch_but_max_frames_is_checked_at_once(
    tmp_path: Path,
) -> None:
    log = walship.open(tmp_path)
    log.append(b"x")
    log.close()
    batches = log.read_batches()  # nothing raised yet, as read()
    with pytest.raises(LogClosedError):
        next(batches)
    for bad in (0, -1, 1.5):
        with pytest.raises(ValueError, match="max_frames must be an integer of at least 1"):
            log.read_batches(max_frames=bad)  # type: ignore[arg-type]


def test_a_frame_written_since_the_open_is_checked_when_read(tmp_path: Path) -> None:
    with walship.open(tmp_path, durability="none") as log:
        log.append(b"before")
    with walship.open(tmp_path, durability="none") as log:
        seq = log.append(b"after-the-open")
        path = tmp_path / segment_name(1)
        data = bytearray(path.read_bytes())
        at = data.rindex(b"after-the-open")
        data[at] ^= 1
        path.write_bytes(data)  # damage under the open log (page cache included)
        with pytest.raises(CorruptFrameError):
            list(log.read())
        assert [f.payload for f in log.read(to_seq=seq - 1)] == [b"before"]


def test_bytes_the_open_verified_are_not_checked_again(tmp_path: Path) -> None:
    """The open's scan checked every CRC of the log; read trusts it for those bytes (so a
    payload bit flipped afterwards reads back as flipped: ``walship verify`` and the next open
    find it), but still checks every length, so nothing is read outside the segment."""
    with walship.open(tmp_path, durability="none") as log:
        log.append(b"payload-one")
        log.append(b"payload-two")
    with walship.open(tmp_path, durability="none") as log:
        path = tmp_path / segment_name(1)
        data = bytearray(path.read_bytes())
        data[data.index(b"payload-one")] ^= 0x20
        path.write_bytes(data)
        assert [f.payload for f in log.read()] == [b"Payload-one", b"payload-two"]
        data[HEADER_SIZE : HEADER_SIZE + 4] = (2**31).to_bytes(4, "big")  # a hostile length
        path.write_bytes(data)
        with pytest.raises(CorruptFrameError):
            list(log.read())


@pytest.mark.skipif(frame.codec is None, reason="the native codec is not active")
@pytest.mark.parametrize("views", [False, True])
def test_pure_and_native_read_paths_agree(log: walship.Log, views: bool) -> None:
    _fill(log)

    def run() -> list[tuple[object, ...]]:
        out = []
        for lo, hi in BOUNDS:
            for b in log.read_batches(lo, hi, max_frames=33, views=views):
                out.append(tuple((type(f), f[:3], bytes(f.payload)) for f in b))
        return out

    native = run()
    with pure():
        assert run() == native
