"""Fault injection: fail the k-th write, sync, create, rename, truncate or remove of a workload.

For every k over a whole workload (appends, batches, syncs, forced, size and age rotations,
clean reopens, recovery of a torn tail and of a torn segment creation), and each way to fail
(EIO, ENOSPC with half the bytes written, a short write), the log must:

* fail closed: every later call raises ``LogFailedError`` and hands out no commit_seq;
  ``durable_seq`` and ``last_seq`` stay where they were;
* never report durable what was not synced: after a power loss (the memory store's model, with
  fsyncgate: bytes of a failed sync read back as zeros even if a later sync succeeded) every
  frame up to the highest ``durable_seq`` any instance reported is there, with its payload;
* reopen: a fault-free open recovers, finds every acknowledged frame, and continues; and after
  more appends on that reopened log and another power loss, still nothing acknowledged is lost.
"""

from __future__ import annotations

import contextlib
import os
import random
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import SegmentHeader, segment_name
from walship.core.rotation import ManualClock
from walship.core.scan import scan_store
from walship.errors import LogClosedError, LogFailedError
from walship.store import SegmentStore
from walship.testing.faults import Fault, FaultyStore

from .support import FIGURES, Ledger, check_frames, make_payload, segment_names, snapshot

BYTE_OPS = ("write", "create")
SWEPT_OPS = ("write", "sync", "create", "truncate", "remove", "write_atomic")


def errors_for(op: str) -> tuple[str, ...]:
    return ("EIO", "ENOSPC", "short") if op in BYTE_OPS else ("EIO", "ENOSPC")


@dataclass
class FaultRun:
    """One workload on one faulty store."""

    store: FaultyStore
    durability: str
    clock: ManualClock = field(default_factory=ManualClock)
    ledger: Ledger = field(default_factory=Ledger)
    log: Any = None
    n: int = 0
    rounds: int = 18

    def open(self) -> None:
        self.log = None
        self.log = walship.open(
            store=self.store,
            durability=self.durability,
            sync_interval=3600,
            max_segment_bytes=400,
            max_segment_age=5.0,
            clock=self.clock,
            entry_point_plugins=False,
        )
        self.ledger.saw_durable(self.log.durable_seq)

    def payloads(self, count: int) -> list[bytes]:
        out = []
        for _ in range(count):
            self.n += 1
            out.append(make_payload(f"f{self.n}", (self.n * 37) % 150))
        return out

    def append(self, count: int = 1) -> None:
        ps = self.payloads(count)
        seqs = [self.log.append(ps[0])] if count == 1 else self.log.append_batch(ps)
        self.ledger.ack(seqs, ps)
        self.ledger.saw_durable(self.log.durable_seq)
        if self.durability == "always":
            assert self.log.durable_seq >= seqs[-1], "acknowledged before durable"

    def sync(self) -> None:
        self.ledger.saw_durable(self.log.sync())

    def rotate(self) -> None:
        self.log.rotate()
        self.ledger.saw_durable(self.log.durable_seq)

    def age(self) -> None:
        self.clock.advance(6.0)  # past max_segment_age: this append rotates by age
        self.append()

    def close(self) -> None:
        self.log.close()
        self.ledger.saw_durable(self.log.durable_seq)

    def tear_tail(self) -> None:
        """What a crash mid-write leaves: garbage after the last frame (not counted)."""
        last = segment_names(self.store)[-1]
        f = self.store.inner.open_append(last)
        f.write(b"\x00\x00\x01\x00garbage")
        f.close()

    def tear_create(self) -> None:
        """What a crash while creating the next segment leaves: part of a header."""
        names = segment_names(self.store)
        seq = len(names) + 1 if names else 1
        header = SegmentHeader(1, seq, 0).encode()
        self.store.inner.create(segment_name(seq), header[:20]).close()

    def steps(self) -> Iterator[Callable[[], None]]:
        """The workload, one step at a time."""
        yield self.open
        for i in range(self.rounds):
            yield (lambda: self.append(3)) if i % 4 == 3 else self.append
            if i % 5 == 4:
                yield self.sync
            if i % 7 == 6:
                yield self.age
            if i % 9 == 8:
                yield self.rotate
        yield self.close
        yield self.open
        yield self.append
        yield self.close
        yield self.tear_tail
        yield self.open  # recovery: side file (write_atomic) and truncate
        yield lambda: self.append(2)
        yield self.close
        yield self.tear_create
        yield self.open  # recovery: side file and remove
        for _ in range(4):
            yield self.append
        yield self.rotate
        yield self.append
        yield self.close


LIVE_CALLS: dict[str, Callable[[Any], object]] = {
    "append": lambda log: log.append(b"after the failure"),
    "append_batch": lambda log: log.append_batch([b"a", b"b"]),
    "sync": lambda log: log.sync(),
    "rotate": lambda log: log.rotate(),
    "read": lambda log: next(iter(log.read())),
}


def check_fail_closed(run: FaultRun, error: BaseException) -> None:
    """The log that saw the fault refuses everything after it."""
    log = run.log
    if log is None or (log.closed and log.failed is None):
        assert isinstance(error, OSError), f"open failed with {error!r}, not the store's error"
        return
    assert isinstance(error, LogFailedError), f"a live log raised {error!r}"
    assert log.failed is not None
    durable, last = log.durable_seq, log.last_seq
    refusal = LogClosedError if log.closed else LogFailedError  # close() itself failed
    for name, call in LIVE_CALLS.items():
        with pytest.raises(refusal):
            call(log)
            pytest.fail(f"{name} worked on a failed log")
    assert (log.durable_seq, log.last_seq) == (durable, last)
    if log.closed:
        log.close()  # idempotent
    else:
        with pytest.raises(LogFailedError):  # releases the store, syncs nothing, and says so
            log.close()
    assert log.closed
    assert (log.durable_seq, log.last_seq) == (durable, last)


def clone(store: FaultyStore) -> FaultyStore:
    """An independent copy of a faulty memory store, fsyncgate state included."""
    assert isinstance(store.inner, MemoryStore)
    copy = FaultyStore(snapshot(store.inner))
    copy.doomed = {n: list(r) for n, r in store.doomed.items()}
    copy._synced = dict(store._synced)
    return copy


def reopen_and_check(run: FaultRun) -> None:
    """A fault-free open recovers every promised frame and continues after them."""
    run.store.disarm()
    run.open()
    log = run.log
    last = check_frames(list(log.read()), run.ledger, must_have=run.ledger.durable)
    run.ledger.forget_after(last)
    assert log.last_seq == last
    run.append()
    assert run.ledger.payloads.get(last + 1) is not None, "commit_seq did not continue"


def power_loss(run: FaultRun) -> None:
    with contextlib.suppress(LogFailedError):
        if run.log is not None:
            run.log.close()
    run.store.crash()
    reopen_and_check(run)
    run.close()


def run_workload(run: FaultRun) -> BaseException | None:
    """Play the workload until its first error; return it (``None``: no error)."""
    for step in run.steps():
        try:
            step()
        except (OSError, LogFailedError) as e:
            return e
    return None


StoreFactory = Callable[[], SegmentStore]


def open_fds() -> int:
    """How many file descriptors this process has open."""
    return len(os.listdir("/proc/self/fd"))


def sweep_one(
    op: str,
    k: int,
    error: str,
    durability: str,
    *,
    persistent: bool = False,
    make_store: StoreFactory = MemoryStore,
    rounds: int = 18,
) -> None:
    """Fail the k-th ``op``; check fail-closed, then power loss now (A) and reopen, more
    appends and a power loss later (B). On a real directory (no power-loss model): reopen,
    more appends, close, reopen."""
    fds = open_fds()
    try:
        _sweep_one(op, k, error, durability, persistent, make_store, rounds)
        assert open_fds() == fds, "file descriptors leaked"
    except BaseException as e:
        e.add_note(f"fault: {op} #{k} {error} persistent={persistent} durability={durability}")
        raise


def _sweep_one(
    op: str,
    k: int,
    error: str,
    durability: str,
    persistent: bool,
    make_store: StoreFactory,
    rounds: int,
) -> None:
    store = FaultyStore(make_store(), Fault(op, k, error, persistent))
    run = FaultRun(store, durability, rounds=rounds)
    err = run_workload(run)
    if not store.injected:
        assert err is None
        return
    FIGURES["faults.injected"] += len(store.injected)
    FIGURES["faults.runs"] += 1
    assert err is not None, f"{store.injected[0]} was swallowed"
    check_fail_closed(run, err)
    run.store.disarm()
    if not isinstance(store.inner, MemoryStore):
        reopen_and_check(run)
        run.append(3)
        run.close()
        reopen_and_check(run)
        run.close()
        assert scan_store(store).ok
        return
    # B: reopen at once on the same "disk" (the page cache of a live machine), append, crash
    later = FaultRun(
        clone(store), durability, run.clock, Ledger(dict(run.ledger.payloads)), n=run.n
    )
    later.ledger.durable = run.ledger.durable
    reopen_and_check(later)
    later.append(3)
    later.sync()
    later.close()
    power_loss(later)
    # A: power loss right after the fault
    power_loss(run)
    assert scan_store(run.store).ok


def workload_counts(durability: str, make_store: StoreFactory, rounds: int) -> dict[str, int]:
    store = FaultyStore(make_store())
    assert run_workload(FaultRun(store, durability, rounds=rounds)) is None
    return dict(store.counts)


def sweep(
    durability: str,
    stride: int = 1,
    persistent: bool = False,
    make_store: StoreFactory = MemoryStore,
    rounds: int = 18,
) -> int:
    counts = workload_counts(durability, make_store, rounds)
    runs = 0
    for op in SWEPT_OPS:
        assert counts.get(op, 0) > 0, f"the workload never calls {op}"
        for k in range(1, counts[op] + 1, stride):
            for error in errors_for(op):
                sweep_one(
                    op,
                    k,
                    error,
                    durability,
                    persistent=persistent,
                    make_store=make_store,
                    rounds=rounds,
                )
                runs += 1
    return runs


def posix_stores(base: Path) -> StoreFactory:
    n = iter(range(1_000_000))
    return lambda: PosixStore(base / f"wal{next(n)}")


@pytest.mark.parametrize("durability", ["always", "interval", "none"])
def test_sweep_memory(durability: str) -> None:
    assert sweep(durability) > 150


def test_sweep_posix(tmp_path: Path) -> None:
    assert sweep("always", stride=7, make_store=posix_stores(tmp_path)) > 30


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["always", "interval", "none"])
@pytest.mark.parametrize("persistent", [False, True])
def test_sweep_memory_long(durability: str, persistent: bool) -> None:
    sweep(durability, persistent=persistent, rounds=120)


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["always", "interval", "none"])
def test_sweep_posix_long(durability: str, tmp_path: Path) -> None:
    sweep(durability, make_store=posix_stores(tmp_path))


# --- many threads: group commit under faults ------------------------------------------------


def threaded_run(op: str, k: int, error: str, threads: int = 8, per_thread: int = 25) -> None:
    """Appenders in many threads share writes and syncs; the k-th ``op`` fails."""
    store = FaultyStore(MemoryStore(), Fault(op, k, error))
    try:
        log = walship.open(store=store, max_segment_bytes=900, entry_point_plugins=False)
    except OSError:  # the fault hit the open (creating the first segment)
        assert store.injected
        FIGURES["faults.injected"] += 1
        FIGURES["faults.runs"] += 1
        store.disarm()
        store.reset()
        log = walship.open(store=store, max_segment_bytes=900, entry_point_plugins=False)
    ledger = Ledger()
    refused: list[int] = []

    def worker(t: int) -> None:
        for i in range(per_thread):
            ps = [make_payload(f"t{t}.{i}.{j}") for j in range(1 + (i % 3 == 2))]
            try:
                seqs = log.append_batch(ps)
            except LogFailedError:
                refused.append(t)
                for call in LIVE_CALLS.values():  # and refused for good
                    with pytest.raises(LogFailedError):
                        call(log)
                return
            assert log.durable_seq >= seqs[-1], "acknowledged before durable"
            ledger.ack(seqs, ps)

    pool = [threading.Thread(target=worker, args=(t,)) for t in range(threads)]
    for th in pool:
        th.start()
    for th in pool:
        th.join()
    if store.injected:
        FIGURES["faults.injected"] += len(store.injected)
        FIGURES["faults.runs"] += 1
        assert log.failed is not None and refused, "the fault was swallowed"
        assert max(ledger.payloads, default=0) <= log.durable_seq
    ledger.durable = log.durable_seq
    with contextlib.suppress(LogFailedError):
        log.close()
    store.disarm()
    store.crash()
    run = FaultRun(store, "always", ledger=ledger, n=10**6)
    reopen_and_check(run)
    run.close()


def threaded_counts() -> dict[str, int]:
    store = FaultyStore(MemoryStore())
    log = walship.open(store=store, max_segment_bytes=900, entry_point_plugins=False)
    for i in range(200):
        log.append(make_payload(f"c{i}"))
    log.close()
    return dict(store.counts)


@pytest.mark.parametrize("seed", range(12))
def test_threads(seed: int) -> None:
    rng = random.Random(seed)
    counts = threaded_counts()
    op = rng.choice(["write", "sync", "create"])
    threaded_run(op, rng.randint(1, counts[op]), rng.choice(errors_for(op)))


@pytest.mark.slow
def test_threads_long() -> None:
    rng = random.Random(1)
    counts = threaded_counts()
    for _ in range(2000):
        op = rng.choice(["write", "sync", "create"])
        threaded_run(op, rng.randint(1, counts[op]), rng.choice(errors_for(op)))


# --- rename: salvage that fails half-way ----------------------------------------------------


def salvage_run(k: int, error: str, make_store: StoreFactory) -> None:
    """A bit flips in a sealed segment; opening with ``salvage=True`` moves the later segments
    aside (renames), and the k-th rename fails. A second salvage open finishes the job: the log
    keeps the valid prefix, and every byte of the moved segments is still in a file."""
    store = FaultyStore(make_store())
    run = FaultRun(store, "always")
    run.open()
    for i in range(20):
        run.append()
        if i % 4 == 3:
            run.rotate()
    run.close()
    names = segment_names(store)
    victim = names[1]
    data = bytearray(store.read(victim))
    flip = len(data) - 30
    data[flip] ^= 0x40
    store.inner.write_atomic(victim, bytes(data))
    before = {n: store.read(n) for n in names}
    store.reset()
    store.arm(Fault("rename", k, error))
    with contextlib.suppress(OSError):
        walship.open(store=store, salvage=True, entry_point_plugins=False).close()
    if store.injected:
        FIGURES["faults.injected"] += 1
        FIGURES["faults.runs"] += 1
    store.disarm()
    log = walship.open(store=store, salvage=True, entry_point_plugins=False)
    frames = list(log.read())
    kept = [f for f in frames if f.commit_seq in run.ledger.payloads]
    assert kept == frames and frames, "salvage returned frames it was not given"
    assert all(run.ledger.payloads[f.commit_seq] == f.payload for f in frames)
    first_lost = min(s for s in run.ledger.payloads if s > frames[-1].commit_seq)
    assert all(s >= first_lost for s in run.ledger.payloads if s > frames[-1].commit_seq)
    log.close()
    everything = b"".join(store.read(n) for n in store.list_names())
    for name in names[2:]:
        assert before[name] in everything, f"{name} was lost, not moved aside"


@pytest.mark.parametrize("error", ["EIO", "ENOSPC"])
@pytest.mark.parametrize("k", [1, 2, 3])
def test_salvage_rename_fault(k: int, error: str) -> None:
    salvage_run(k, error, MemoryStore)


@pytest.mark.parametrize("k", [1, 3])
def test_salvage_rename_fault_posix(k: int, tmp_path: Path) -> None:
    salvage_run(k, "EIO", posix_stores(tmp_path))
