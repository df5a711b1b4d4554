"""The Log facade: API, durability policies, group commit, threads, failure, crashes."""

from __future__ import annotations

import contextlib
import errno
import random
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import walship
from walship import hookimpl
from walship.backends.memory import MemoryStore
from walship.core.frame import MAX_PAYLOAD
from walship.core.rotation import ManualClock
from walship.core.scan import scan_store
from walship.errors import FrameTooLargeError, LogClosedError, LogFailedError, StoreLockedError
from walship.store import SegmentFile


def _wait_for(cond: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        time.sleep(0.005)


# --- a store wrapper that fails or slows chosen operations ------------------------------------


class _File(SegmentFile):
    def __init__(self, inner: SegmentFile, owner: HookedStore) -> None:
        self.inner, self.owner = inner, owner

    @property
    def size(self) -> int:
        return self.inner.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self.owner.before("write", bytes(data), self.inner)
        self.inner.write(data)

    def sync(self) -> None:
        self.owner.before("sync", b"", self.inner)
        self.inner.sync()

    def close(self) -> None:
        self.inner.close()


class HookedStore(MemoryStore):
    """A memory store that calls ``on(op, data, file)`` before each write and sync."""

    def __init__(self) -> None:
        super().__init__()
        self.on: Callable[[str, bytes, SegmentFile], None] | None = None

    def before(self, op: str, data: bytes, inner: SegmentFile) -> None:
        if self.on is not None:
            self.on(op, data, inner)

    def create(self, name: str, data: bytes) -> SegmentFile:
        return _File(super().create(name, data), self)

    def open_append(self, name: str) -> SegmentFile:
        return _File(super().open_append(name), self)


# --- the API ----------------------------------------------------------------------------------


def test_append_read_sync_rotate(tmp_path: Path) -> None:
    with walship.open(tmp_path / "wal") as log:
        assert log.append(b"hello", payload_type=1) == 1
        assert log.durable_seq == 1
        assert log.append_batch([b"a", b"b", b""]) == [2, 3, 4]
        assert log.append_batch([]) == []
        assert log.sync() == 4
        closed = log.rotate()
        assert (closed.first_commit_seq, closed.last_commit_seq, closed.frame_count) == (1, 4, 4)
        assert closed.reason is walship.RotationReason.FORCED
        log.append(b"c", payload_type=9)
        frames = list(log.read())
        assert [(f.commit_seq, f.payload_type, f.payload) for f in frames] == [
            (1, 1, b"hello"),
            (2, 0, b"a"),
            (3, 0, b"b"),
            (4, 0, b""),
            (5, 9, b"c"),
        ]
        assert [f.commit_seq for f in log.read(from_seq=3, to_seq=4)] == [3, 4]
        assert [f.commit_seq for f in log.read(from_seq=5)] == [5]
        assert list(log.read(from_seq=6)) == []
    with walship.open(tmp_path / "wal") as log:
        assert log.last_seq == log.durable_seq == 5
        assert log.append(b"d") == 6


def test_close_is_idempotent_and_final(mem: MemoryStore) -> None:
    log = walship.open(store=mem)
    log.append(b"x")
    log.close()
    log.close()
    with pytest.raises(LogClosedError):
        log.append(b"y")
    with pytest.raises(LogClosedError):
        list(log.read())


def test_second_writer_is_refused(tmp_path: Path) -> None:
    with walship.open(tmp_path) as _, pytest.raises(StoreLockedError, match="locked"):
        walship.open(tmp_path)


def test_bad_payloads_write_nothing(mem: MemoryStore) -> None:
    with walship.open(store=mem) as log:
        log.append(b"ok")
        with pytest.raises(FrameTooLargeError):
            log.append_batch([b"fine", bytes(MAX_PAYLOAD + 1)])
        with pytest.raises(ValueError, match="payload_type"):
            log.append(b"x", payload_type=300)
        assert log.append(b"next") == 2  # still usable, no seq consumed
        assert [f.payload for f in log.read()] == [b"ok", b"next"]


def test_open_arguments_are_checked(mem: MemoryStore) -> None:
    with pytest.raises(ValueError, match="exactly one"):
        walship.open()
    with pytest.raises(ValueError):
        walship.open(store=mem, durability="sometimes")
    with pytest.raises(ValueError, match="max_segment_bytes"):
        walship.open(store=mem, max_segment_bytes=0)
    walship.open(store=mem).close()  # the failed opens released the lock


# --- durability policies ------------------------------------------------------------------------


def test_always_is_durable_on_return(mem: MemoryStore) -> None:
    log = walship.open(store=mem)
    for i in range(20):
        log.append(b"r%d" % i)
        assert log.durable_seq == i + 1
    mem.crash()
    with walship.open(store=mem) as log2:
        assert [f.payload for f in log2.read()] == [b"r%d" % i for i in range(20)]


def test_none_syncs_only_at_rotation_sync_and_close(mem: MemoryStore) -> None:
    log = walship.open(store=mem, durability="none")
    log.append_batch([b"a", b"b"])
    assert (log.last_seq, log.durable_seq) == (2, 0)
    log.rotate()
    assert log.durable_seq == 2
    log.append(b"c")
    assert log.durable_seq == 2
    mem.crash()  # c was never synced
    with walship.open(store=mem, durability="none") as log2:
        assert log2.last_seq == 2
        log2.append(b"d")
    with walship.open(store=mem) as log3:  # close() synced d
        assert [f.payload for f in log3.read()] == [b"a", b"b", b"d"]


def test_interval_flusher_makes_appends_durable(mem: MemoryStore) -> None:
    with walship.open(store=mem, durability="interval", sync_interval=0.01) as log:
        log.append(b"a")
        _wait_for(lambda: log.durable_seq == 1)
        log.append(b"b")
        assert log.sync() == 2


# --- group commit and threads -------------------------------------------------------------------


def test_concurrent_appenders_share_writes_and_syncs() -> None:
    store = HookedStore()

    def slow_disk(op: str, data: bytes, f: SegmentFile) -> None:
        if op == "sync":
            time.sleep(0.01)  # a disk whose fdatasync takes 10 ms

    store.on = slow_disk
    n_threads, per_thread = 16, 20
    with walship.open(store=store) as log:
        results: list[list[int]] = [[] for _ in range(n_threads)]

        def work(i: int) -> None:
            for _ in range(per_thread):
                results[i].append(log.append(b"t%d" % i))
                assert log.durable_seq >= results[i][-1]

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n_threads)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = log.stats()
    everything = sorted(s for r in results for s in r)
    assert everything == list(range(1, n_threads * per_thread + 1))  # unique and gap-free
    for r in results:
        assert r == sorted(r)
    assert stats["frames"] == n_threads * per_thread
    assert stats["batches"] < n_threads * per_thread / 2  # appenders shared leaders
    assert stats["syncs"] == stats["batches"]


def test_read_while_appending(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=2000, durability="none") as log:
        stop = threading.Event()
        errors: list[BaseException] = []

        def writer() -> None:
            try:
                for _ in range(300):
                    log.append_batch([b"w" * 30] * 5)
            except BaseException as e:  # pragma: no cover - reported below
                errors.append(e)
            finally:
                stop.set()

        t = threading.Thread(target=writer)
        t.start()
        reads = 0
        try:
            while not stop.is_set() or reads < 3:
                seqs = [f.commit_seq for f in log.read()]
                assert seqs == list(range(1, len(seqs) + 1))
                reads += 1
        finally:
            t.join()
        assert not errors
        assert log.stats()["segments"] > 10
        assert [f.commit_seq for f in log.read()] == list(range(1, 1501))


def test_age_rotates_an_idle_log(mem: MemoryStore) -> None:
    clock = ManualClock()
    closed: list[str] = []

    class Listener:
        @hookimpl
        def segment_closed(self, segment: walship.ClosedSegment, reason: str) -> None:
            closed.append(reason)

    with walship.open(store=mem, clock=clock, max_segment_age=0.05, plugins=[Listener()]) as log:
        log.append(b"x")
        clock.advance(0.06)
        _wait_for(lambda: closed == ["age"])
        clock.advance(1.0)  # the new segment is empty: it does not age out
        time.sleep(0.1)
        assert closed == ["age"]
        assert log.stats()["rotations_age"] == 1


def test_size_rotation_through_the_log(tmp_path: Path) -> None:
    with walship.open(tmp_path, max_segment_bytes=500) as log:
        for _ in range(40):
            log.append_batch([b"z" * 20] * 3)
        assert log.stats()["rotations_size"] >= 5
    scan = scan_store(walship.backends.posix.PosixStore(tmp_path))
    assert scan.ok and scan.frame_count == 120
    for s in scan.segments:
        if s.first_commit_seq is None or s.last_commit_seq is None:
            continue  # the empty active segment
        assert (s.last_commit_seq - s.first_commit_seq + 1) % 3 == 0  # batches never split


# --- failure: fail closed -----------------------------------------------------------------------


@pytest.mark.parametrize("op", ["write", "sync"])
def test_failed_io_fails_the_log_closed(op: str) -> None:
    store = HookedStore()
    log = walship.open(store=store)
    log.append_batch([b"a", b"b"])
    armed = {"on": True}

    def fail(o: str, data: bytes, f: SegmentFile) -> None:
        if o == op and armed["on"]:
            if o == "write":
                f.write(data[: len(data) // 2])  # a short write that cannot finish
                raise OSError(errno.ENOSPC, "No space left on device")
            raise OSError(errno.EIO, "Input/output error")

    store.on = fail
    with pytest.raises(LogFailedError, match="durable up to commit_seq 2"):
        log.append(b"c")
    armed["on"] = False  # the disk "recovers": the log must still refuse
    with pytest.raises(LogFailedError):
        log.append(b"d")
    with pytest.raises(LogFailedError):
        log.sync()
    assert log.durable_seq == 2
    assert log.failed is not None
    with pytest.raises(LogFailedError):
        log.close()  # a failed log says so at close too, then lets go of everything
    log.close()  # and only once
    store.crash()
    with walship.open(store=store) as log2:
        assert [f.payload for f in log2.read()] == [b"a", b"b"]
        assert log2.append(b"e") == 3


# --- crashes on the memory store ------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_random_crashes_never_lose_a_synced_frame(seed: int) -> None:
    rng = random.Random(seed)
    store = MemoryStore()
    acknowledged: dict[int, bytes] = {}
    for _round in range(6):
        durability = rng.choice(["always", "none", "interval"])
        log = walship.open(
            store=store, durability=durability, max_segment_bytes=rng.choice([300, 2000])
        )
        for _ in range(rng.randint(1, 40)):
            action = rng.random()
            if action < 0.6:
                payloads = [rng.randbytes(rng.randint(0, 60)) for _ in range(rng.randint(1, 4))]
                seqs = log.append_batch(payloads)
                for s, p in zip(seqs, payloads, strict=True):
                    acknowledged.setdefault(s, p)
            elif action < 0.8:
                log.sync()
            elif action < 0.9:
                log.rotate()
        durable = log.durable_seq
        tear = rng.choice([0, rng.randint(0, 200)])
        garbage = rng.choice([b"", b"\x00" * rng.randint(1, 50), rng.randbytes(rng.randint(1, 50))])
        store.crash(keep_unsynced=tear, garbage=garbage)
        with contextlib.suppress(LogFailedError):
            log.close()  # its handles died with the "machine": the final sync fails, loudly
        reopened = walship.open(store=store)
        frames = {f.commit_seq: f.payload for f in reopened.read()}
        for s in range(1, durable + 1):
            assert frames.get(s) == acknowledged[s], (seed, s)  # every synced frame is back
        for s, p in frames.items():
            assert acknowledged[s] == p  # nothing corrupt, nothing invented
        assert sorted(frames) == list(range(1, len(frames) + 1))
        for s in [s for s in acknowledged if s not in frames]:
            del acknowledged[s]  # unsynced and gone: those seqs may be handed out again
        reopened.close()
        assert scan_store(store).ok


# --- payloads -----------------------------------------------------------------------------------


def test_any_contiguous_buffer_is_written_as_its_bytes(mem: MemoryStore) -> None:
    import array

    wide = array.array("I", [1, 2, 3])
    with walship.open(store=mem) as log:
        assert log.append(memoryview(wide)) == 1
        assert log.append_batch([wide, bytearray(b"ba"), memoryview(b"mv")]) == [2, 3, 4]
        assert log.append(b"after") == 5
    with walship.open(store=mem) as log:
        assert not log.recovery.repairs
        assert [f.payload for f in log.read()] == [
            wide.tobytes(),
            wide.tobytes(),
            b"ba",
            b"mv",
            b"after",
        ]


@pytest.mark.parametrize(
    ("payload", "payload_type", "message"),
    [
        ("a str", 0, "must be bytes-like"),
        (memoryview(b"abcdef")[::2], 0, "C-contiguous"),
        (b"x", 1.5, "integer in 0..255"),
        (b"x", True, "integer in 0..255"),
        (b"x", -1, "integer in 0..255"),
    ],
)
def test_a_bad_payload_fails_alone_and_writes_nothing(
    payload: object, payload_type: object, message: str
) -> None:
    store = HookedStore()
    gate = threading.Event()

    def slow_sync(op: str, data: bytes, f: SegmentFile) -> None:
        if op == "sync":
            gate.wait(5)  # a leader is busy: the others queue behind it

    with walship.open(store=store) as log:
        store.on = slow_sync
        results: dict[str, object] = {}

        def good(key: str) -> None:
            results[key] = log.append(b"good " + key.encode())

        leader = threading.Thread(target=good, args=("leader",))
        leader.start()
        follower = threading.Thread(target=good, args=("follower",))
        follower.start()
        with pytest.raises(walship.PayloadError, match=message):
            log.append(payload, payload_type=payload_type)  # type: ignore[arg-type]
        gate.set()
        leader.join()
        follower.join()
        assert sorted(results.values()) == [1, 2]  # type: ignore[type-var]
        assert log.append(b"next") == 3


@pytest.mark.parametrize("durability", ["always", "none"])
def test_a_failed_batch_never_comes_back(durability: str) -> None:
    store = HookedStore()
    log = walship.open(store=store, durability=durability)
    log.append(b"kept")
    frame_size = 25 + 100

    def enospc(op: str, data: bytes, f: SegmentFile) -> None:
        if op == "write":
            f.write(data[: 5 * frame_size + 7])  # five whole frames land, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")

    store.on = enospc
    with pytest.raises(LogFailedError):
        log.append_batch([b"x" * 100] * 10)
    store.on = None
    with pytest.raises(LogFailedError):
        log.close()
    with walship.open(store=store) as log2:
        assert [f.payload for f in log2.read()] == [b"kept"]  # none of the failed batch
        assert log2.append(b"next") == 2
    assert any(".unsynced-" in n for n in store.list_names())  # the cut bytes were kept


# --- issue 10: close from a hook, refused opens, the commit_seq limit, reads and cuts ----------


def test_close_from_a_plugin_hook_releases_everything(tmp_path: Path) -> None:
    """close() on the event thread (from a hook): no "cannot join current thread", the lock
    released, the directory reopenable in the same process."""
    done = threading.Event()
    errors: list[BaseException] = []

    class Closer:
        @hookimpl
        def segment_closed(self, log: walship.Log) -> None:
            try:
                log.close()
            except BaseException as e:
                errors.append(e)
            finally:
                done.set()

    log = walship.open(tmp_path, plugins=[Closer()], entry_point_plugins=False)
    log.append(b"a")
    log.rotate()
    assert done.wait(10)
    assert not errors, errors
    assert log.closed
    with walship.open(tmp_path, entry_point_plugins=False) as again:
        assert [f.payload for f in again.read()] == [b"a"]
    log.close()  # idempotent from any thread


def _walship_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name.startswith("walship")}


def test_a_refused_open_leaks_no_thread(tmp_path: Path) -> None:
    with walship.open(tmp_path, entry_point_plugins=False) as log:
        log.append(b"a")
        before = _walship_threads()
        for _ in range(20):
            with pytest.raises(StoreLockedError):
                walship.open(tmp_path, entry_point_plugins=False)
        assert _walship_threads() == before


def test_an_open_that_fails_after_the_lock_leaks_no_thread(tmp_path: Path) -> None:
    (tmp_path / "segment_0000000000000001.aedbwal").write_bytes(b"not a segment header" * 4)
    before = _walship_threads()
    for _ in range(5):
        with pytest.raises(walship.WalshipError):
            walship.open(tmp_path, entry_point_plugins=False)
    assert _walship_threads() == before
    (tmp_path / "segment_0000000000000001.aedbwal").unlink()
    with walship.open(tmp_path, entry_point_plugins=False) as log:  # and the lock is free
        log.append(b"ok")


def _log_ending_at(path: Path, last_seq: int) -> None:
    from walship.core.frame import encode
    from walship.core.header import ZERO_HASH, SegmentHeader, segment_name

    header = SegmentHeader(7, 1, 1_700_000_000_000_000, ZERO_HASH).encode()
    frames = encode(last_seq - 1, 1_700_000_000_000_000, 0, b"x") + encode(
        last_seq, 1_700_000_000_000_001, 0, b"y"
    )
    path.mkdir(parents=True, exist_ok=True)
    (path / segment_name(1)).write_bytes(header + frames)


def test_commit_seq_limit_is_a_clear_error(tmp_path: Path) -> None:
    from walship.core.frame import MAX_COMMIT_SEQ

    _log_ending_at(tmp_path, MAX_COMMIT_SEQ - 1)
    with walship.open(tmp_path, entry_point_plugins=False) as log:
        with pytest.raises(walship.CommitSeqLimitError, match=r"2\*\*64-1"):
            log.append_batch([b"a", b"b"])  # would need MAX + 1: nothing written
        assert log.append(b"last") == MAX_COMMIT_SEQ
        with pytest.raises(walship.CommitSeqLimitError, match=str(MAX_COMMIT_SEQ)):
            log.append(b"one too many")
        assert log.failed is None and log.last_seq == MAX_COMMIT_SEQ
        assert [f.commit_seq for f in log.read()][-1] == MAX_COMMIT_SEQ
    with walship.open(tmp_path, entry_point_plugins=False) as log:
        assert log.last_seq == MAX_COMMIT_SEQ


def test_commit_seq_limit_from_the_cli(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from walship.cli import build_cli
    from walship.core.frame import MAX_COMMIT_SEQ

    _log_ending_at(tmp_path / "wal", MAX_COMMIT_SEQ)
    config = tmp_path / "walship.yaml"
    config.write_text(f"store:\n  backend: posix\n  path: {tmp_path / 'wal'}\n")
    result = CliRunner().invoke(build_cli(), ["append", "-c", str(config)], input=b"more\n")
    assert result.exit_code != 0
    assert isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "2**64-1" in lines[0], result.stderr
    assert "struct" not in result.stderr


_SIGBUS_READER = r"""
import os, sys
import walship
from walship.errors import LogFailedError

log = walship.open(sys.argv[1], durability="interval", sync_interval=3600,
                   entry_point_plugins=False)
aligned = sys.argv[3] == "aligned"  # frames of a page each, the durable end on a page boundary
payload = b"x" * (4096 - 25 if aligned else 4000)
log.append(payload[: 4096 - 64 - 25] if aligned else payload)
for _ in range(299):            # about 1.2 MB durable: the segment is big enough to be mapped
    log.append(payload)
log.sync()
for _ in range(int(sys.argv[2])):  # unsynced bytes the failure will cut
    log.append(payload)
reader = log.read()
first = next(reader)            # the reader is now inside the active segment
real_sync, real_fsync = os.fdatasync, os.fsync
def broken(fd):  # the next sync fails (once): the log fails closed and cuts the unsynced bytes
    os.fdatasync, os.fsync = real_sync, real_fsync
    raise OSError(5, "injected EIO")
os.fdatasync = os.fsync = broken
try:
    log.sync()
except LogFailedError:
    pass
seg = [n for n in os.listdir(sys.argv[1]) if n.endswith(".aedbwal")][0]
assert os.path.getsize(os.path.join(sys.argv[1], seg)) < 2_000_000  # cut under the reader
n = 1
try:
    for f in reader:
        assert f.payload == payload, "a frame read back wrong"  # (SIGBUS or CorruptFrameError)
        n += 1
    print("read", n)
except LogFailedError as e:
    print("failed", n, e)
try:
    log.close()
except LogFailedError:
    pass
with walship.open(sys.argv[1], entry_point_plugins=False) as again:
    assert sum(1 for _ in again.read()) == 300
print("ok")
"""


@pytest.mark.parametrize("unsynced", [3, 1100])  # the reader's next chunk: cut, or read already
@pytest.mark.parametrize("cut", ["aligned", "unaligned"])  # SIGBUS, or zeros, under a mapping
def test_a_failure_never_cuts_under_a_reader(tmp_path: Path, unsynced: int, cut: str) -> None:
    """A reader in the active segment while the log fails closed and cuts its unsynced bytes:
    never SIGBUS (a cut under a mapping), never a CorruptFrameError on a healthy log. In a
    subprocess, since a SIGBUS kills the whole process."""
    import subprocess
    import sys

    script = tmp_path / "reader.py"
    script.write_text(_SIGBUS_READER)
    proc = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "wal"), str(unsynced), cut],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, (proc.returncode, proc.stdout, proc.stderr[-2000:])
    assert proc.stdout.strip().endswith("ok")
