"""walship.AsyncLog: the asyncio API on the same group commit as the threads.

Proven structurally, never by timing: no store call ever runs on the event loop's thread (every
call is recorded with its thread); many tasks share few syncs (counted); a thread's append and
the loop's share one batch (counted); a cancelled append is withdrawn (never written) or written
with its own commit_seq, as :attr:`AsyncLog.cancelled` says, at fixed points and at many.
"""

from __future__ import annotations

import asyncio
import random
import threading
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

import pytest
from reliability.support import HeldSyncs

import walship
from walship import aio
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.store import SegmentFile, SegmentStore

TASKS = 64
PER_TASK = 20


def run(main: Callable[[], Coroutine[Any, Any, Any]]) -> Any:
    return asyncio.run(main())


class Recorded:
    """A store (or a file of it) whose every call is recorded with the thread it ran on."""

    def __init__(self, inner: Any, calls: list[tuple[str, int]]) -> None:
        self._inner = inner
        self._calls = calls

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._inner, name)
        if not callable(attr):
            return attr

        def call(*args: Any, **kwargs: Any) -> Any:
            self._calls.append((name, threading.get_ident()))
            out = attr(*args, **kwargs)
            return Recorded(out, self._calls) if isinstance(out, SegmentFile) else out

        return call


def frames_of(store: SegmentStore) -> dict[int, bytes]:
    with walship.open(store=store, entry_point_plugins=False) as log:
        assert not log.recovery.salvaged
        frames = {f.commit_seq: f.payload for f in log.read()}
    assert list(frames) == list(range(1, len(frames) + 1)), "commit_seqs not 1..N"
    return frames


async def until(done: Callable[[], bool]) -> None:
    """Yield to the loop until ``done()`` (a state another thread reaches)."""
    for _ in range(100_000):
        if done():
            return
        await asyncio.sleep(0.0005)
    raise AssertionError("state never reached")


# --- the API ------------------------------------------------------------------------------


def test_the_async_api_end_to_end(tmp_path: Path) -> None:
    async def main() -> None:
        async with await walship.open_async(tmp_path, max_segment_bytes=4096) as log:
            assert isinstance(log, walship.AsyncLog)
            assert (log.first_seq, log.last_seq, log.durable_seq) == (1, 0, 0)
            assert await log.append(b"one") == 1
            assert await log.append_batch([b"two", b"three"]) == [2, 3]
            assert await log.append_batch(iter([b"four"]), payload_type=7) == [4]
            assert await log.append_batch([]) == []
            assert await log.submit(b"five") == 5
            assert await log.sync() == 5
            await log.rotate()
            await log.checkpoint(2)
            assert (log.last_seq, log.durable_seq) == (5, 5)
            stats = log.stats()
            assert stats["frames"] == 5 and log.failed is None and not log.closed
            # awaited appends are timed as the threads' are: one observation per batch, and
            # (durability always) one per sync; the explicit sync() had nothing left to sync
            assert stats["append_seconds"]["count"] == stats["batches"] == 4
            assert stats["fsync_seconds"]["count"] >= 4
            got = [(f.commit_seq, f.payload, f.payload_type) async for f in log.read(2, 4)]
            assert got == [(2, b"two", 0), (3, b"three", 0), (4, b"four", 7)]
            with pytest.raises(walship.PayloadError):
                await log.append(b"x", payload_type=256)
            assert "AsyncLog(" in repr(log)
        assert log.closed
        with pytest.raises(walship.LogClosedError):
            await log.append(b"late")
        await log.close()  # idempotent

    run(main)
    assert frames_of(PosixStore(tmp_path))[5] == b"five"


def test_read_goes_on_across_chunks_and_an_adopted_log(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(aio, "READ_CHUNK", 7)

    async def main() -> None:
        log = walship.AsyncLog(walship.open(tmp_path, durability="none"))
        try:
            seqs = await log.append_batch([b"%d" % i for i in range(50)])
            assert [f.commit_seq async for f in log.read()] == seqs
            assert [f.commit_seq async for f in log.read(from_seq=48)] == [48, 49, 50]
        finally:
            await log.close()

    run(main)


def test_import_walship_does_not_import_asyncio() -> None:
    import subprocess
    import sys

    code = "import sys, walship; print('asyncio' in sys.modules, walship.AsyncLog.__name__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "AsyncLog"]
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        walship.nope  # type: ignore[attr-defined]  # noqa: B018


# --- the loop never does I/O; the group commit groups ---------------------------------------


def test_the_loop_thread_makes_no_store_call_and_tasks_share_syncs(tmp_path: Path) -> None:
    calls: list[tuple[str, int]] = []
    store: Any = Recorded(PosixStore(tmp_path), calls)
    loop_thread: list[int] = []

    async def main() -> None:
        loop_thread.append(threading.get_ident())
        async with await walship.open_async(store=store, entry_point_plugins=False) as log:

            async def task(t: int) -> list[int]:
                return [await log.append(b"t%d-%d" % (t, i)) for i in range(PER_TASK)]

            seqs = await asyncio.gather(*(task(t) for t in range(TASKS)))
            assert sorted(s for ss in seqs for s in ss) == list(range(1, TASKS * PER_TASK + 1))
            assert [f.commit_seq async for f in log.read()][-1] == TASKS * PER_TASK
            await log.sync()

    run(main)
    on_loop = [name for name, ident in calls if ident == loop_thread[0]]
    assert calls and on_loop == [], f"store calls on the event loop's thread: {on_loop}"
    syncs = sum(1 for name, _ in calls if name in ("sync", "write_durable"))
    appends = TASKS * PER_TASK
    assert syncs * 8 <= appends, f"{syncs} syncs for {appends} appends: no group commit"


def test_a_threads_append_and_the_loops_share_one_batch() -> None:
    """A thread leads and waits in its sync; another thread and ten tasks queue meanwhile; the
    leader's next batch carries all eleven: one batch more, not eleven."""
    store = HeldSyncs()

    async def main() -> None:
        log = await walship.open_async(store=store, entry_point_plugins=False)
        sync_log = log.log
        sync_log.append(b"warm")
        batches = sync_log.stats()["batches"]
        store.hold.clear()
        leader = threading.Thread(target=sync_log.append, args=(b"leader",))
        leader.start()
        await asyncio.to_thread(store.entered.wait, 10)
        follower = threading.Thread(target=sync_log.append, args=(b"thread",))
        follower.start()
        await until(lambda: sync_log._commit.queued() == 1)
        tasks = [asyncio.ensure_future(log.append(b"task%d" % i)) for i in range(10)]
        await until(lambda: sync_log._commit.queued() == 11)
        store.hold.set()
        seqs = await asyncio.gather(*tasks)
        await asyncio.to_thread(leader.join, 10)
        await asyncio.to_thread(follower.join, 10)
        assert sync_log.stats()["batches"] == batches + 2  # the leader's, then all eleven
        assert sorted(seqs) == list(range(4, 14))
        await log.close()

    run(main)
    assert len(frames_of(store)) == 13


# --- cancellation ---------------------------------------------------------------------------


def test_a_cancelled_append_still_queued_is_withdrawn_and_never_written() -> None:
    store = HeldSyncs()

    async def main() -> None:
        log = await walship.open_async(store=store, entry_point_plugins=False)
        log.log.append(b"warm")
        store.hold.clear()
        leader = asyncio.ensure_future(log.append(b"leader"))
        await asyncio.to_thread(store.entered.wait, 10)  # the commit thread holds the turn
        queued = asyncio.ensure_future(log.append(b"cancelled"))
        await until(lambda: log.log._commit.queued() == 1)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        assert log.log._commit.queued() == 0
        assert (log.cancelled.withdrawn, log.cancelled.in_flight) == (1, 0)
        store.hold.set()
        assert await leader == 2
        assert await log.append(b"next") == 3  # never a commit_seq skipped or reused
        await log.close()

    run(main)
    assert list(frames_of(store).values()) == [b"warm", b"leader", b"next"]


def test_a_cancelled_append_in_flight_is_written_with_its_own_commit_seq() -> None:
    store = HeldSyncs()

    async def main() -> None:
        log = await walship.open_async(store=store, entry_point_plugins=False)
        store.hold.clear()
        task = asyncio.ensure_future(log.append(b"in flight"))
        await asyncio.to_thread(store.entered.wait, 10)  # being synced now
        shielded = log.submit(b"shielded")  # queued behind it, its future held
        outer = asyncio.ensure_future(asyncio.shield(shielded))
        await asyncio.sleep(0)
        task.cancel()
        outer.cancel()
        for t in (task, outer):
            with pytest.raises(asyncio.CancelledError):
                await t  # at once, though the sync still waits: nothing waits on the task
        assert log.durable_seq == 0
        store.hold.set()
        assert await shielded == 2  # the outcome, for whoever held the future
        assert (log.cancelled.withdrawn, log.cancelled.in_flight) == (0, 1)
        await log.close()

    run(main)
    assert frames_of(store) == {1: b"in flight", 2: b"shielded"}


def test_a_task_cancelled_after_its_future_was_resolved(monkeypatch: pytest.MonkeyPatch) -> None:
    """The result is set, the task is cancelled before it resumes: written, counted in flight."""
    delivered = threading.Event()
    real = aio._LoopSink.deliver

    def deliver(self: Any, requests: Any) -> None:
        real(self, requests)
        delivered.set()

    monkeypatch.setattr(aio._LoopSink, "deliver", deliver)
    store = HeldSyncs()

    async def main() -> None:
        log = await walship.open_async(store=store, entry_point_plugins=False)
        store.hold.clear()
        task = asyncio.ensure_future(log.append(b"resolved"))
        await asyncio.to_thread(store.entered.wait, 10)
        store.hold.set()
        delivered.wait(10)  # (blocks the loop on purpose: _resolve is queued, the task not yet)
        asyncio.get_running_loop().call_soon(task.cancel)  # runs after _resolve, before the task
        with pytest.raises(asyncio.CancelledError):
            await task
        assert (log.cancelled.withdrawn, log.cancelled.in_flight) == (0, 1)
        await log.close()

    run(main)
    assert frames_of(store) == {1: b"resolved"}


async def _cancel_run(
    log: walship.AsyncLog, rng: random.Random, run_no: int, step: int, store: HeldSyncs
) -> tuple[dict[int, bytes], set[bytes]]:
    """Tasks append (single and batches) while some are cancelled ``step`` loop turns in (and
    at random turns before), in every other run with the first sync held meanwhile (the rest
    queued behind it); returns what was acknowledged and the payloads of cancelled appends."""
    acked: dict[int, bytes] = {}
    cancelled: set[bytes] = set()
    ops: list[tuple[asyncio.Future[Any], list[bytes]]] = []
    plug: asyncio.Future[Any] | None = None
    if run_no % 2 and log.log.durability is walship.Durability.ALWAYS:
        # a first append held in its sync (in flight, cancelled), the rest queued behind it
        store.hold.clear()
        store.entered.clear()
        ps = [b"r%d-plug-0" % run_no]
        plug = asyncio.ensure_future(log.append(ps[0]))
        ops.append((plug, ps))
        await asyncio.to_thread(store.entered.wait, 10)
    for i in range(24):
        ps = [b"r%d-%d-%d" % (run_no, i, j) for j in range(rng.choice([1, 1, 3]))]
        coro = log.append(ps[0]) if len(ps) == 1 else log.append_batch(ps)
        ops.append((asyncio.ensure_future(coro), ps))
    for turn in range(step + 1):
        for fut, _ in ops:
            chosen = rng.random() < 0.3 and (turn == step or rng.random() < 0.2)
            if not fut.done() and (chosen or (fut is plug and turn == step)):
                fut.cancel()
        await asyncio.sleep(0)
    store.hold.set()
    for fut, ps in ops:
        try:
            got = await fut
        except asyncio.CancelledError:
            cancelled.update(ps)
            continue
        seqs = [got] if isinstance(got, int) else got
        for s, p in zip(seqs, ps, strict=True):
            assert s not in acked, f"commit_seq {s} handed out twice"
            acked[s] = p
    return acked, cancelled


@pytest.mark.parametrize("durability", ["always", "none"])
def test_cancellations_at_many_points_withdraw_or_write_never_both(durability: str) -> None:
    """Each cancelled append is withdrawn (never on disk) or in flight (on disk once, with its
    own commit_seq): exactly as many cancelled payloads are on disk as were counted in
    flight; every acknowledged one is there; the commit_seqs are 1..N."""
    store = HeldSyncs()
    rng = random.Random(16)

    async def main() -> tuple[dict[int, bytes], set[bytes], int, int]:
        log = await walship.open_async(
            store=store, durability=durability, entry_point_plugins=False
        )
        acked: dict[int, bytes] = {}
        cancelled: set[bytes] = set()
        for run_no in range(40):
            a, c = await _cancel_run(log, rng, run_no, run_no % 8, store)
            assert not acked.keys() & a.keys()
            acked.update(a)
            cancelled |= c
        await log.close()
        return acked, cancelled, log.cancelled.withdrawn, log.cancelled.in_flight

    acked, cancelled, withdrawn, in_flight = run(main)
    frames = frames_of(store)
    for s, p in acked.items():
        assert frames[s] == p
    on_disk = [p for p in frames.values() if p in cancelled]
    assert len(on_disk) == len(set(on_disk))
    batches_in_flight = {p.rsplit(b"-", 1)[0] for p in on_disk}
    assert len(batches_in_flight) == in_flight  # one count per cancelled append (or batch)
    if durability == "always":  # (its syncs are held: the plug in flight, the rest queued)
        assert withdrawn > 0 and in_flight > 0  # both cases happened
    assert len(frames) == len(acked) + len(on_disk)


def test_wait_for_timeouts_at_random_moments_with_threads_appending(tmp_path: Path) -> None:
    """``asyncio.wait_for`` cancels appends at random moments while threads append to the same
    log: no hang, no commit_seq twice, every acknowledged frame there."""
    rng = random.Random(7)

    async def main() -> tuple[dict[int, bytes], int]:
        log = await walship.open_async(tmp_path, entry_point_plugins=False)
        stop = threading.Event()
        thread_acks: dict[int, bytes] = {}

        def thread_appender(t: int) -> None:
            i = 0
            while not stop.is_set():
                i += 1
                p = b"thread%d-%d" % (t, i)
                thread_acks[log.log.append(p)] = p

        threads = [threading.Thread(target=thread_appender, args=(t,)) for t in range(2)]
        for t in threads:
            t.start()
        acked: dict[int, bytes] = {}

        async def task(t: int) -> None:
            for i in range(15):
                p = b"task%d-%d" % (t, i)
                try:
                    seq = await asyncio.wait_for(log.append(p), rng.uniform(0, 0.004))
                except asyncio.TimeoutError:
                    continue
                assert seq not in acked
                acked[seq] = p

        await asyncio.gather(*(task(t) for t in range(16)))
        stop.set()
        for t in threads:
            await asyncio.to_thread(t.join, 30)
            assert not t.is_alive()
        assert not acked.keys() & thread_acks.keys()
        acked.update(thread_acks)
        await log.close()
        return acked, log.cancelled.in_flight

    acked, in_flight = run(main)
    frames = frames_of(PosixStore(tmp_path))
    assert all(frames[s] == p for s, p in acked.items())
    assert len(frames) == len(acked) + in_flight


def test_appends_after_a_failure_and_on_a_closed_log_fail_cleanly() -> None:
    from walship.testing.faults import Fault, FaultyStore

    store = FaultyStore(MemoryStore(), Fault("sync", at=3))

    async def main() -> None:
        log = await walship.open_async(store=store, entry_point_plugins=False)
        ok: list[int] = []

        async def task(t: int) -> BaseException | None:
            for i in range(50):
                try:
                    ok.append(await log.append(b"%d-%d" % (t, i)))
                except walship.LogFailedError as e:
                    return e
            return None

        failed = await asyncio.gather(*(task(t) for t in range(8)))
        assert all(isinstance(e, walship.LogFailedError) for e in failed)  # every task heard
        assert ok and all(s <= log.durable_seq for s in ok)
        with pytest.raises(walship.LogFailedError):
            await log.append(b"after")
        with pytest.raises(walship.LogFailedError):
            await log.close()
        # this log's own commit thread (another test's log in this process may have one too)
        driver = log.log._commit._driver
        assert driver is not None and driver.thread is not None  # the loop's appends started it
        driver.thread.join(10)
        assert not driver.thread.is_alive(), "the commit thread outlived the close"
        assert driver.exited

    run(main)


def test_a_cancelled_open_closes_the_log_it_opened(tmp_path: Path) -> None:
    async def main() -> None:
        task = asyncio.ensure_future(walship.open_async(tmp_path))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        for _ in range(2000):  # the open finishes in the executor, then the close
            try:
                async with await walship.open_async(tmp_path) as log:
                    assert log.last_seq == 0
                return
            except walship.StoreLockedError:
                await asyncio.sleep(0.005)
        raise AssertionError("the cancelled open's log was never closed")

    run(main)
