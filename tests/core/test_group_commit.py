"""Group commit under concurrency: every append gets its own commit_seq and is durable on
return; exclusive operations (sync, rotate, close) and failures never hang or lose a request."""

from __future__ import annotations

import errno
import threading
from pathlib import Path

import pytest
from reliability.support import SyncHookStore

import walship
from walship.backends.posix import PosixStore
from walship.core.scan import scan_store

THREADS = 16


def run_appenders(
    log: walship.Log, per_thread: int
) -> tuple[dict[int, bytes], list[BaseException]]:
    got: dict[int, bytes] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work(t: int) -> None:
        try:
            for i in range(per_thread):
                payload = f"t{t}-{i}".encode()
                seq = log.append(payload)
                assert log.durable_seq >= seq or log.durability is not walship.Durability.ALWAYS
                with lock:
                    got[seq] = payload
        except BaseException as e:
            with lock:
                errors.append(e)

    pool = [threading.Thread(target=work, args=(t,)) for t in range(THREADS)]
    for th in pool:
        th.start()
    for th in pool:
        th.join(timeout=120)
        assert not th.is_alive(), "an appender hung"
    return got, errors


def test_concurrent_appends_get_distinct_durable_seqs(tmp_path: Path) -> None:
    with walship.open(tmp_path) as log:
        got, errors = run_appenders(log, 100)
        assert not errors
        assert sorted(got) == list(range(1, THREADS * 100 + 1))
        assert log.stats()["syncs"] < THREADS * 100  # appenders shared syncs
        read = {f.commit_seq: f.payload for f in log.read()}
    assert read == got
    with walship.open(tmp_path) as log:
        assert {f.commit_seq: f.payload for f in log.read()} == got


def test_sync_and_rotate_interleave_with_appenders(tmp_path: Path) -> None:
    stop = threading.Event()
    with walship.open(tmp_path, max_segment_bytes=8192, durability="interval") as log:

        def exclusive() -> None:
            while not stop.is_set():
                log.sync()
                log.rotate()

        side = threading.Thread(target=exclusive)
        side.start()
        try:
            got, errors = run_appenders(log, 60)
        finally:
            stop.set()
            side.join(timeout=60)
        assert not side.is_alive() and not errors
        assert sorted(got) == list(range(1, THREADS * 60 + 1))
    scan = scan_store(PosixStore(tmp_path))
    assert scan.ok and scan.frame_count == THREADS * 60


def test_close_while_appending_never_hangs(tmp_path: Path) -> None:
    log = walship.open(tmp_path)
    started = threading.Barrier(THREADS + 1)
    outcomes: list[object] = []

    def work() -> None:
        started.wait()
        for _ in range(1000):
            try:
                log.append(b"x")
            except walship.LogClosedError as e:
                outcomes.append(e)
                return
        outcomes.append("finished")

    pool = [threading.Thread(target=work) for _ in range(THREADS)]
    for th in pool:
        th.start()
    started.wait()
    log.close()
    for th in pool:
        th.join(timeout=60)
        assert not th.is_alive()
    assert len(outcomes) == THREADS
    with walship.open(tmp_path) as again:
        assert again.recovery.repairs == []
        assert [f.commit_seq for f in again.read()] == list(range(1, again.last_seq + 1))


class _FailingSyncs(SyncHookStore):
    """A memory store whose segment syncs start failing (EIO) after ``good`` of them."""

    def __init__(self, good: int) -> None:
        super().__init__()
        self.good = good

    def before_sync(self) -> None:
        if self.good <= 0:
            raise OSError(errno.EIO, "injected fdatasync failure")
        self.good -= 1


def test_a_failed_sync_fails_every_waiting_appender_and_nobody_hangs() -> None:
    store = _FailingSyncs(good=20)
    log = walship.open(store=store)
    got, errors = run_appenders(log, 50)
    assert errors and all(isinstance(e, walship.LogFailedError) for e in errors)
    assert len(errors) == THREADS  # every thread stopped at its first failure
    assert all(seq <= log.durable_seq for seq in got)  # only what was synced was acknowledged
    with pytest.raises(walship.LogFailedError):
        log.append(b"after")
    with pytest.raises(walship.LogFailedError):
        log.close()  # a failed log says so at close too
