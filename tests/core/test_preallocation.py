"""Preallocated active segments: fast synced appends, yet every sealed or closed file is exactly
the seed's format, and recovery reads the unused reserved tail as the log's end while still
reporting a real torn tail."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from blake3 import blake3
from crc32c import crc32c

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core import frame as framing
from walship.core.header import HEADER_SIZE, parse_segment_name
from walship.core.scan import scan_store


def segments(d: Path) -> list[Path]:
    return sorted(p for p in d.iterdir() if parse_segment_name(p.name) is not None)


def frames_of(path: Path) -> list[framing.Frame]:
    """Decode a whole file strictly, as the seed's reader does: zero padding would fail."""
    data = path.read_bytes()
    return list(framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE))


def test_active_segment_is_preallocated_and_trimmed_on_close(tmp_path: Path) -> None:
    log = walship.open(tmp_path, max_segment_bytes=1 << 20)
    log.append(b"a" * 100)
    active = tmp_path / log.stats()["active_segment"]
    assert active.stat().st_size == (1 << 20) + 64 * 1024  # reserved past max_segment_bytes
    assert scan_store(PosixStore(tmp_path)).ok  # a live log's reserved tail is not damage
    log.close()
    (seg,) = segments(tmp_path)
    assert seg.stat().st_size == HEADER_SIZE + 125
    assert [f.payload for f in frames_of(seg)] == [b"a" * 100]


def test_sealed_segments_are_exact_and_chained(tmp_path: Path) -> None:
    closed = []

    class Record:
        @walship.hookimpl
        def segment_closed(self, segment: walship.ClosedSegment) -> None:
            closed.append(segment)

    with walship.open(tmp_path, max_segment_bytes=64 * 1024, plugins=[Record()]) as log:
        for i in range(2000):
            log.append(i.to_bytes(4, "big") * 25)
    files = segments(tmp_path)
    assert len(files) > 3 and len(closed) == len(files) - 1
    for seg in closed:
        data = (tmp_path / seg.name).read_bytes()
        assert len(data) == seg.size  # no padding in a sealed file
        assert blake3(data).digest() == seg.blake3  # its hash is over its real bytes
    total = sum(len(frames_of(f)) for f in files)
    assert total == 2000
    scan = scan_store(PosixStore(tmp_path))
    assert scan.ok and scan.frame_count == 2000


def test_no_preallocation_without_syncs(tmp_path: Path) -> None:
    with walship.open(tmp_path, durability="none") as log:
        log.append(b"x")
        active = tmp_path / log.stats()["active_segment"]
        assert active.stat().st_size == HEADER_SIZE + 26


_KILLED_WRITER = textwrap.dedent(
    """
    import os, signal, sys, walship
    log = walship.open(sys.argv[1])
    for i in range(int(sys.argv[2])):
        log.append(b"record %d" % i)
    print(log.durable_seq, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


def _kill_writer(d: Path, n: int) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _KILLED_WRITER, str(d), str(n)], capture_output=True, text=True
    )
    assert proc.returncode == -signal.SIGKILL
    return int(proc.stdout)


def test_killed_writer_leaves_a_reserved_tail_that_recovery_reads_as_the_end(
    tmp_path: Path,
) -> None:
    durable = _kill_writer(tmp_path, 300)
    assert durable == 300
    (seg,) = segments(tmp_path)
    assert seg.stat().st_size == (64 + 1 / 16) * 1024 * 1024  # nobody trimmed it
    logical = HEADER_SIZE + sum(len(b"record %d" % i) + 25 for i in range(300))
    with walship.open(tmp_path) as log:
        report = log.recovery
        assert report.repairs == [] and report.problems == []
        assert report.unused_tail_bytes == (64 + 1 / 16) * 1024 * 1024 - logical
        assert report.last_commit_seq == 300
        assert log.append(b"after") == 301
    assert seg.stat().st_size == logical + len(b"after") + 25
    assert [f.payload for f in frames_of(seg)][-2:] == [b"record 299", b"after"]
    assert not [p for p in tmp_path.iterdir() if ".torn-" in p.name]


def test_torn_write_inside_the_reserved_space_is_still_reported(tmp_path: Path) -> None:
    _kill_writer(tmp_path, 50)
    (seg,) = segments(tmp_path)
    logical = HEADER_SIZE + sum(len(b"record %d" % i) + 25 for i in range(50))
    torn = framing.encode(51, 1, 0, b"never acknowledged")[:30]  # a frame cut mid-way
    with open(seg, "r+b") as f:
        f.seek(logical)
        f.write(torn)
    with walship.open(tmp_path) as log:
        (repair,) = log.recovery.repairs
        assert repair.offset == logical
        assert repair.cut_bytes == len(torn.rstrip(b"\0"))
        assert log.recovery.last_commit_seq == 50
    side = tmp_path / repair.side_file
    assert side.read_bytes() == torn.rstrip(b"\0")  # the torn bytes, not 64 MiB of zeros
    assert len(frames_of(seg)) == 50


def test_garbage_after_zeros_in_the_reserved_space_is_reported(tmp_path: Path) -> None:
    _kill_writer(tmp_path, 10)
    (seg,) = segments(tmp_path)
    logical = HEADER_SIZE + sum(len(b"record %d" % i) + 25 for i in range(10))
    with open(seg, "r+b") as f:  # a later page reached the disk, an earlier one did not
        f.seek(logical + 8192)
        f.write(b"\x07" * 100)
    with walship.open(tmp_path) as log:
        (repair,) = log.recovery.repairs
        assert repair.offset == logical and repair.cut_bytes == 8192 + 100
        assert log.recovery.last_commit_seq == 10


def test_zero_tail_is_still_a_torn_tail_on_a_store_that_does_not_preallocate(
    mem: MemoryStore,
) -> None:
    log = walship.open(store=mem)
    log.append(b"kept")
    log.close()
    name = next(n for n in mem.list_names() if parse_segment_name(n) is not None)
    with mem._mutex:
        mem._files[name].data += bytes(40)  # zero-filled tail after a crash
    with walship.open(store=mem) as log:
        (repair,) = log.recovery.repairs
        assert repair.cut_bytes == 40 and "zero bytes" in repair.detail
        assert log.recovery.unused_tail_bytes == 0


def test_reopen_without_close_then_close_leaves_exact_files(tmp_path: Path) -> None:
    _kill_writer(tmp_path, 5)
    for _ in range(3):  # kill again and again: each open trims and re-reserves
        log = walship.open(tmp_path)
        log.append(b"more")
        log.close()
    (seg,) = segments(tmp_path)
    payloads = [f.payload for f in frames_of(seg)]
    assert payloads == [b"record %d" % i for i in range(5)] + [b"more"] * 3


@pytest.mark.parametrize("size", [100, 4096, 65536])
def test_batch_encoders_write_the_seed_bytes(tmp_path: Path, size: int) -> None:
    """The three encode paths (small, in place, gathering) produce identical frames."""
    clock = walship.ManualClock()
    payloads = [os.urandom(size) for _ in range(300)]
    with walship.open(tmp_path, clock=clock, durability="none") as log:
        log.append_batch(payloads, payload_type=7)
        log.append(b"tail", payload_type=1)
    (seg,) = segments(tmp_path)
    expected = b"".join(
        framing.encode(i + 1, clock.micros, 7, p) for i, p in enumerate(payloads)
    ) + framing.encode(301, clock.micros, 1, b"tail")
    assert seg.read_bytes()[HEADER_SIZE:] == expected


def test_encode_batch_at_and_pieces_match_encode_batch() -> None:
    payloads = [b"", b"a", os.urandom(5000), memoryview(b"xyz"), bytearray(b"q" * 70)]
    frames = [struct.pack(">IQQB", 21 + len(p), 10 + i, 99, 3) + p for i, p in enumerate(payloads)]
    ref = b"".join(f + struct.pack(">I", crc32c(f)) for f in frames)
    buf = bytearray(len(ref) + 7)
    end = framing.encode_batch_at(buf, 7, 10, 99, 3, payloads)
    assert end == len(buf) and buf[7:] == ref
    pieces: list[bytes | bytearray | memoryview] = []
    heads = bytearray(25 * len(payloads))
    assert framing.encode_batch_at(heads, 0, 10, 99, 3, payloads, pieces) == len(heads)
    assert b"".join(bytes(p) for p in pieces) == ref
    with pytest.raises(ValueError, match="too short"):
        framing.encode_batch_at(bytearray(10), 0, 1, 1, 0, [b"x" * 20])
    with pytest.raises(walship.FrameTooLargeError):
        framing.encode_batch_at(
            heads, 0, 1, 1, 0, [memoryview(bytes(framing.MAX_PAYLOAD + 1))], pieces
        )


def test_decode_all_fast_loop_keeps_the_exact_errors() -> None:
    good = framing.encode(1, 2, 3, b"abc") + framing.encode(2, 2, 3, b"")
    assert [f.commit_seq for f in framing.decode_all(good)] == [1, 2]
    cases = [
        (good[:-1], walship.TruncatedFrameError, 64 + 28),
        (good[:10] + b"\xff" + good[11:], walship.CorruptFrameError, 64),
        (good + b"\0\0", walship.TruncatedFrameError, 64 + 53),
        (good + bytes(30), walship.CorruptFrameError, 64 + 53),
    ]
    for data, error, offset in cases:
        with pytest.raises(error) as info:
            list(framing.decode_all(data, 64))
        assert info.value.offset == offset


def test_a_live_log_always_verifies_clean(tmp_path: Path) -> None:
    """Reserved space always ends in whole never-written blocks, whatever the fill level."""
    with walship.open(tmp_path, max_segment_bytes=8192) as log:
        for i in range(400):
            log.append(b"live %d " % i * (i % 7 + 1))
            if i % 9 == 0:
                scan = scan_store(PosixStore(tmp_path))
                assert scan.ok, scan.problems
                assert scan.frame_count == i + 1


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_hashes_large_batches_too(tmp_path: Path) -> None:
    """The helper thread that hashes large batches is the parent's; a forked child gets its own
    (a child that reused the parent's executor would wait forever)."""
    big = [b"x" * 4096] * 400  # over the 1 MiB that goes to the helper
    with walship.open(tmp_path / "parent", durability="none") as log:
        log.append_batch(big)
    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        code = 1
        try:
            with walship.open(tmp_path / "child", durability="none") as log:
                log.append_batch(big)
            code = 0
        finally:
            os._exit(code)
    for _ in range(600):
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            assert os.waitstatus_to_exitcode(status) == 0
            break
        time.sleep(0.05)
    else:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        pytest.fail("the forked child hung appending a large batch")
    assert len(frames_of(segments(tmp_path / "child")[0])) == 400
