"""``walship.open(DIR, read_only=True)`` and ``read(follow=True)``: a reader without the lock
beside a writer in another process that appends, rotates, is killed mid-write, repairs on its
open and removes segments by retention; and ``Log.read(follow=True)`` in the writer's process.

Every payload is ``frame-<commit_seq>``, so a reader checks each frame it gets on its own."""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import walship
from walship import Frame, FramesUnavailableError, FramesWithdrawnError, LogCorruptError
from walship.core.header import HEADER_SIZE, segment_name, segment_seqs
from walship.core.readonly import ReadOnlyLog

WRITER = r"""
import random, sys, walship
directory, url, count, batch, size, seed = sys.argv[1:7]
count, batch, size = int(count), int(batch), int(size)
rng = random.Random(int(seed))
options = dict(max_segment_bytes=size, durability=sys.argv[7])
if url != "-":
    options.update(archive={"url": url, "workers": 1}, retention={"keep_local": "last:30"})
with walship.open(directory, **options) as log:
    done = log.last_seq
    print("ready", len(log.recovery.repairs), flush=True)
    while count < 0 or done < count:
        n = rng.randint(1, batch)
        if count >= 0:
            n = min(n, count - done)
        pad = b"." * rng.randint(0, 64)
        log.append_batch([b"frame-%d|" % (done + i + 1) + pad for i in range(n)])
        done += n
        if url != "-" and done % 500 < n:  # retention removes segments while readers read
            assert log.archiver.flush(timeout=30)
print("done", flush=True)
"""


def start_writer(
    directory: Path,
    count: int,
    *,
    url: str = "-",
    batch: int = 8,
    size: int = 2048,
    seed: int = 1,
    durability: str = "always",
) -> subprocess.Popen[str]:
    args = [str(directory), url, str(count), str(batch), str(size), str(seed), durability]
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, *args], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    ready = proc.stdout.readline().split()  # the log is open: the reader may start
    assert ready[0] == "ready"
    proc.repairs = int(ready[1])  # type: ignore[attr-defined]
    return proc


def check(frames: list[Frame], first: int = 1) -> None:
    """Every frame once, in order, whole: commit_seqs first, first+1, ... and each payload the
    one its writer wrote."""
    assert [f.commit_seq for f in frames] == list(range(first, first + len(frames)))
    for f in frames:
        assert f.payload.split(b"|")[0] == b"frame-%d" % f.commit_seq, f


def test_reads_what_the_writer_wrote_without_its_lock(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=1024) as log:
        log.append_batch([b"frame-%d|" % i for i in range(1, 201)])
        with walship.open(tmp_path, read_only=True) as ro:  # the writer holds the lock
            assert isinstance(ro, ReadOnlyLog)
            got = list(ro.read())
            check(got)
            assert len(got) == 200 and got == list(log.read())
            assert [f.commit_seq for f in ro.read(150, 160)] == list(range(150, 161))
            assert (ro.first_seq, ro.last_seq) == (1, 200)
    before = sorted(os.listdir(tmp_path))
    list(walship.open(tmp_path, read_only=True).read())
    assert sorted(os.listdir(tmp_path)) == before  # nothing written, nothing locked


def test_follows_a_writer_process_that_rotates_and_removes_by_retention(tmp_path: Path) -> None:
    wal = tmp_path / "wal"
    count = 3000
    proc = start_writer(wal, count, url=(tmp_path / "archive").as_uri())
    got: list[Frame] = []
    with walship.open_read_only(wal, poll_interval=0.002) as ro:
        for f in ro.read(follow=True, timeout=10):
            got.append(f)
            if f.commit_seq == count:
                break
    assert proc.wait(timeout=30) == 0
    check(got)
    assert len(got) == count
    seqs = segment_seqs(walship.open_read_only(wal).store)
    assert seqs[0] > 1, "retention removed segments while the reader followed"


def follow(ro: ReadOnlyLog, got: list[Frame], errors: list[BaseException]) -> None:
    try:
        got.extend(ro.read(follow=True))
    except BaseException as e:
        errors.append(e)


def test_the_reader_never_returns_a_torn_frame_of_a_killed_writer(tmp_path: Path) -> None:
    """The writer is killed (SIGKILL) in the middle of large writes, three times; each time a
    new writer recovers the log (cutting the torn tail) and goes on. The reader follows all
    along and sees every frame of the final log once, in order, and nothing else."""
    wal = tmp_path / "wal"
    rng = random.Random(7)
    got: list[Frame] = []
    errors: list[BaseException] = []
    ro: ReadOnlyLog | None = None
    reader: threading.Thread | None = None
    for round_ in range(3):
        proc = start_writer(wal, -1, batch=100, size=256 * 1024, seed=round_, durability="none")
        if ro is None:  # the directory exists now
            ro = walship.open_read_only(wal, poll_interval=0.005)
            reader = threading.Thread(target=follow, args=(ro, got, errors))
            reader.start()
        time.sleep(rng.uniform(0.1, 0.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    assert ro is not None and reader is not None
    with walship.open(wal) as log:  # the last recovery; then a last, clean batch
        log.append_batch([b"frame-%d|" % (log.last_seq + i + 1) for i in range(10)])
        final = list(log.read())
    deadline = time.monotonic() + 30
    while (not got or got[-1].commit_seq < final[-1].commit_seq) and time.monotonic() < deadline:
        if errors:
            break
        time.sleep(0.01)
    ro.close()
    reader.join()
    assert not errors, errors
    check(got)
    assert got == final


def test_a_torn_write_is_waited_for_then_cut_by_the_writer(tmp_path: Path) -> None:
    """Deterministic: half a frame at the end of the active segment is never returned; the
    writer's recovery cuts it and the frames written after it are read next."""
    with walship.open(tmp_path, durability="none") as log:
        log.append_batch([b"frame-%d|" % i for i in range(1, 11)])
        active = tmp_path / segment_name(1)
    with open(active, "ab") as f:  # a crash in the middle of frame 11
        f.write(b"\x00\x00\x00\x40" + (11).to_bytes(8, "big") + b"torn")
    ro = walship.open_read_only(tmp_path, poll_interval=0.001)
    frames = ro.read(follow=True, timeout=5)
    first = [next(frames) for _ in range(10)]
    check(first)
    with walship.open(tmp_path) as log:  # recovery cuts the torn tail
        assert log.recovery.repairs
        log.append_batch([b"frame-%d|" % i for i in range(11, 21)])
    rest = [next(frames) for _ in range(10)]
    check(first + rest)
    frames.close()


def test_frames_the_writer_cut_are_reported(tmp_path: Path) -> None:
    """A failed writer cuts what it never made durable: a reader that returned those frames
    hears it (FramesWithdrawnError) rather than going on as if they had stayed."""
    with walship.open(tmp_path, durability="none") as log:
        log.append_batch([b"frame-%d|" % i for i in range(1, 11)])
    ro = walship.open_read_only(tmp_path, poll_interval=0.001)
    frames = ro.read(follow=True, timeout=5)
    check([next(frames) for _ in range(10)])
    active = tmp_path / segment_name(1)
    os.truncate(active, os.path.getsize(active) - 30)  # frame 10 is gone
    with pytest.raises(FramesWithdrawnError, match="up to commit_seq 10"):
        next(frames)


def test_frames_before_the_first_local_one_are_unavailable(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=512) as log:
        for i in range(1, 101):
            log.append(b"frame-%d|" % i)
    os.remove(tmp_path / segment_name(1))  # as retention does, after archiving
    ro = walship.open_read_only(tmp_path)
    first = ro.first_seq
    assert first is not None and first > 1
    with pytest.raises(FramesUnavailableError, match="commit_seq 1 "):
        next(ro.read(1))
    check(list(ro.read()), first)


def test_a_broken_chain_is_corruption(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=512) as log:
        for i in range(1, 101):
            log.append(b"frame-%d|" % i)
    sealed = tmp_path / segment_name(2)
    data = bytearray(sealed.read_bytes())
    data[HEADER_SIZE + 30] ^= 0xFF  # a payload byte: the CRC fails, in a sealed segment
    sealed.write_bytes(bytes(data))
    with pytest.raises(LogCorruptError, match=segment_name(2)):
        list(walship.open_read_only(tmp_path).read())


def test_log_read_follow_in_the_writers_process(tmp_path: Path) -> None:
    """``log.read(follow=True)`` yields what there is, then each frame once it is durable,
    across rotations, until the log is closed (or a timeout passes without a frame)."""
    log = walship.open(tmp_path, max_segment_bytes=1024, durability="interval")
    log.append_batch([b"frame-%d|" % i for i in range(1, 51)])
    got: list[Frame] = []
    reader = threading.Thread(target=lambda: got.extend(log.read(follow=True)))
    reader.start()
    for i in range(51, 1001):
        log.append(b"frame-%d|" % i)
    log.close()  # ends the follower once it has every durable frame
    reader.join(timeout=30)
    assert not reader.is_alive()
    check(got)
    assert len(got) == 1000

    with walship.open(tmp_path) as log:
        assert [f.commit_seq for f in log.read(995, follow=True, timeout=0.2)] == list(
            range(995, 1001)
        )
        frames = log.read(follow=True, to_seq=1002)
        assert next(frames).commit_seq == 1
        log.append_batch([b"frame-1001|", b"frame-1002|"])
        check(list(frames), 2)  # ends with 1002, without waiting for more


def test_a_successor_torn_while_created_does_not_seal_the_segment(tmp_path: Path) -> None:
    """A writer killed while it created segment N+1 leaves a header cut short; its recovery
    removes it and appends to N again. The reader waits on N meanwhile and reads on there."""
    with walship.open(tmp_path) as log:
        log.append_batch([b"frame-%d|" % i for i in range(1, 6)])
    (tmp_path / segment_name(2)).write_bytes(b"AEDB\x00\x01")  # a header cut short
    ro = walship.open_read_only(tmp_path, poll_interval=0.001)
    frames = ro.read(follow=True, timeout=5)
    check([next(frames) for _ in range(5)])
    with walship.open(tmp_path) as log:
        assert log.recovery.repairs  # the torn segment 2 is set aside
        assert log.stats()["active_segment"] == segment_name(1)
        log.append_batch([b"frame-%d|" % i for i in range(6, 9)])
    assert [next(frames).commit_seq for _ in range(3)] == [6, 7, 8]
    frames.close()


def test_log_read_follow_hears_the_log_fail_and_never_sees_an_unsynced_frame() -> None:
    """A follower in the writer's process gets only durable frames; when a sync fails it gets
    LogFailedError, never the frames the failed sync did not make durable."""
    from walship.backends.memory import MemoryStore
    from walship.testing.faults import Fault, FaultyStore

    store = FaultyStore(MemoryStore(), Fault("sync", at=12))
    log = walship.open(store=store, durability="interval", sync_interval=60)
    got: list[Frame] = []
    failure: list[BaseException] = []
    first_ten = threading.Event()

    def follow() -> None:
        try:
            for f in log.read(follow=True):
                got.append(f)
                if f.commit_seq == 10:
                    first_ten.set()
        except walship.LogFailedError as e:
            failure.append(e)

    log.append_batch([b"frame-%d|" % i for i in range(1, 11)])
    durable = log.sync()
    reader = threading.Thread(target=follow)
    reader.start()
    assert first_ten.wait(timeout=30)
    with pytest.raises(walship.LogFailedError):
        for i in range(11, 1000):
            log.append(b"frame-%d|" % i)
            if i % 10 == 0:
                durable = log.sync()
    reader.join(timeout=30)
    assert failure and not reader.is_alive()
    check(got)
    assert got[-1].commit_seq == durable  # every durable frame, never past them
    with contextlib.suppress(walship.LogFailedError):
        log.close()


def test_a_last_segment_put_in_place_over_a_shorter_copy_is_read_on(tmp_path: Path) -> None:
    """A follower puts a sealed segment in place (rename) over its shorter copy from parts,
    before the next segment exists: a following reader reopens it by name and reads on."""
    from walship.core.frame import FrameScan

    with walship.open(tmp_path / "wal") as log:
        log.append_batch([b"frame-%d" % i for i in range(1, 11)])
        log.rotate()
    name = segment_name(1)
    whole = (tmp_path / "wal" / name).read_bytes()
    ends = [end for _, end, _, _, _ in FrameScan(whole, HEADER_SIZE)]
    replica = tmp_path / "replica"
    replica.mkdir()
    (replica / name).write_bytes(whole[: ends[4]])
    seen: list[int] = []
    with walship.open_read_only(replica, poll_interval=0.01) as reader:
        frames = reader.read(follow=True, timeout=5)
        thread = threading.Thread(target=lambda: seen.extend(f.commit_seq for f in frames))
        thread.start()
        deadline = time.monotonic() + 10
        while len(seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        (replica / "tmp").write_bytes(whole)
        os.rename(replica / "tmp", replica / name)
        while len(seen) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        reader.close()
        thread.join(timeout=10)
    assert seen == list(range(1, 11))
