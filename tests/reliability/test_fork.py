"""fork harness: a log belongs to the process that opened it.

os.fork and multiprocessing's fork start method with open logs (posix, real files, the real
flock): in the child every use raises LogForkedError, and its close(), ``with`` exit and garbage
collection touch nothing (not the files, not the lock it shares with its parent); the parent
goes on and loses nothing, also while its own threads append during the fork.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

import walship
from reliability.support import FIGURES, make_payload
from walship.errors import LogForkedError, StoreLockedError
from walship.log import Log

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="no os.fork")


def _open(path: Path, **kw: object) -> Log:
    return walship.open(path, entry_point_plugins=False, **kw)  # type: ignore[arg-type]


# What the child does with the parent's log; each returns normally only if it got the error.


def _child_append(log: Log) -> None:
    with pytest.raises(LogForkedError, match="belongs to process"):
        log.append(b"child")
    with pytest.raises(LogForkedError):
        log.append_batch([b"c1", b"c2"])


def _child_everything(log: Log) -> None:
    for call in (
        log.sync,
        log.rotate,
        lambda: log.checkpoint(1),
        log.stats,
        lambda: list(log.read()),
        log.close,
    ):
        with pytest.raises(LogForkedError):
            call()


def _child_with_exit(log: Log) -> None:
    with pytest.raises(LogForkedError), log:  # leaving the block: close() in the child
        pass
    try:  # and with an error on its way out: that error, nothing added, nothing touched
        with log:
            raise ValueError("child's own")
    except ValueError:
        pass


def _child_gc(log: Log) -> None:
    del log
    gc.collect()


def _child_opens_anew(log: Log) -> None:
    path = Path(log.store.location)
    with pytest.raises(StoreLockedError):  # the parent still holds the lock
        _open(path)


CHILD: dict[str, Callable[[Log], None]] = {
    "append": _child_append,
    "every call": _child_everything,
    "with exit": _child_with_exit,
    "gc": _child_gc,
    "open anew": _child_opens_anew,
}


def _in_child(fn: Callable[[Log], None], log: Log) -> int:
    pid = os.fork()
    if pid == 0:  # the child: never return into pytest
        code = 0
        try:
            fn(log)
        except BaseException:
            import traceback

            traceback.print_exc()
            code = 1
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _check_parent(path: Path, log: Log, acked: dict[int, bytes]) -> None:
    """The parent appends on, closes, reopens: every frame it acknowledged is there, in order."""
    for i in range(5):
        p = make_payload(f"after{i}")
        acked[log.append(p)] = p
    log.close()
    with _open(path) as again:
        frames = {f.commit_seq: f.payload for f in again.read()}
        assert not again.recovery.repairs, again.recovery.summary()
    assert sorted(frames) == list(range(1, len(frames) + 1))
    for seq, p in acked.items():
        assert frames.get(seq) == p, f"the parent's commit_seq {seq} was lost or changed"


@pytest.mark.parametrize("mode", ["always", "interval", "none"])
@pytest.mark.parametrize("what", list(CHILD))
def test_os_fork_child_gets_the_error_and_touches_nothing(
    what: str, mode: str, tmp_path: Path
) -> None:
    log = _open(tmp_path, durability=mode, sync_interval=60.0)
    acked: dict[int, bytes] = {}
    for i in range(20):
        p = make_payload(f"before{i}", 300)
        acked[log.append(p)] = p  # under interval and none: bytes the child must not cut
    assert _in_child(CHILD[what], log) == 0
    _check_parent(tmp_path, log, acked)
    FIGURES["fork.children"] += 1


def _mp_child(log: Log, queue: multiprocessing.Queue[str]) -> None:
    try:
        log.append(b"from the child")
        queue.put("no error")
    except LogForkedError as e:
        queue.put(f"ok: {e}")
    del log
    gc.collect()


def test_multiprocessing_fork_child(tmp_path: Path) -> None:
    ctx = multiprocessing.get_context("fork")
    log = _open(tmp_path, durability="none")
    acked = {log.append(b"x" * 100): b"x" * 100 for _ in range(3)}
    queue: multiprocessing.Queue[str] = ctx.Queue()
    procs = [ctx.Process(target=_mp_child, args=(log, queue)) for _ in range(3)]
    for p in procs:
        p.start()
    answers = [queue.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    assert all(a.startswith("ok: ") and "belongs to process" in a for a in answers), answers
    _check_parent(tmp_path, log, acked)
    FIGURES["fork.children"] += 3


def test_fork_while_parent_threads_append(tmp_path: Path) -> None:
    """Forks while other threads of the parent append (the log's mutex may be held at the
    fork): the child gets the error at once, never a deadlock; the parent loses nothing."""
    _forks_during_appends(tmp_path, 8)


@pytest.mark.slow
def test_fork_while_parent_threads_append_long(tmp_path: Path) -> None:
    _forks_during_appends(tmp_path, int(os.environ.get("WALSHIP_FORK_RUNS", "300")))


def _forks_during_appends(tmp_path: Path, forks: int) -> None:
    log = _open(tmp_path, durability="always", max_segment_bytes=64 * 1024)
    acked: dict[int, bytes] = {}
    lock = threading.Lock()
    stop = threading.Event()

    def appender(k: int) -> None:
        i = 0
        while not stop.is_set():
            p = make_payload(f"t{k}-{i}")
            seq = log.append(p)
            with lock:
                acked[seq] = p
            i += 1

    threads = [threading.Thread(target=appender, args=(k,)) for k in range(3)]
    for t in threads:
        t.start()
    try:
        for _ in range(forks):
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    log.append(b"child")
                    code = 2
                except LogForkedError:
                    pass
                except BaseException:
                    code = 1
                os._exit(code)
            _, status = os.waitpid(pid, 0)  # a deadlocked child would hang here
            assert os.waitstatus_to_exitcode(status) == 0
            FIGURES["fork.children"] += 1
    finally:
        stop.set()
        for t in threads:
            t.join()
    _check_parent(tmp_path, log, acked)


def test_the_child_of_a_closed_log_can_open_it(tmp_path: Path) -> None:
    """Once the parent closed it, a child may open the log itself and use it normally."""
    log = _open(tmp_path)
    log.append(b"parent")
    log.close()

    def child(_: Log) -> None:
        with _open(tmp_path) as own:
            assert own.append(b"child") == 2

    assert _in_child(child, log) == 0
    with _open(tmp_path) as again:
        assert [f.payload for f in again.read()] == [b"parent", b"child"]
