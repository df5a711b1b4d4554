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
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.core.header import SegmentHeader, segment_name
from walship.core.recovery import scan_store
from walship.core.rotation import ManualClock
from walship.errors import LogClosedError, LogFailedError
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
        for i in range(18):
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
    log.close()  # releases the store; syncs nothing
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


def sweep_one(op: str, k: int, error: str, durability: str, *, persistent: bool = False) -> None:
    """Fail the k-th ``op``; check fail-closed, then power loss now (A) and reopen, more
    appends and a power loss later (B)."""
    try:
        _sweep_one(op, k, error, durability, persistent)
    except BaseException as e:
        e.add_note(f"fault: {op} #{k} {error} persistent={persistent} durability={durability}")
        raise


def _sweep_one(op: str, k: int, error: str, durability: str, persistent: bool) -> None:
    store = FaultyStore(MemoryStore(), Fault(op, k, error, persistent))
    run = FaultRun(store, durability)
    err = run_workload(run)
    if not store.injected:
        assert err is None
        return
    FIGURES["faults.injected"] += len(store.injected)
    assert err is not None, f"{store.injected[0]} was swallowed"
    check_fail_closed(run, err)
    run.store.disarm()
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
    FIGURES["faults.runs"] += 1


def workload_counts(durability: str) -> dict[str, int]:
    store = FaultyStore(MemoryStore())
    assert run_workload(FaultRun(store, durability)) is None
    return dict(store.counts)


def sweep(durability: str, stride: int = 1, persistent: bool = False) -> int:
    counts = workload_counts(durability)
    runs = 0
    for op in SWEPT_OPS:
        assert counts.get(op, 0) > 0, f"the workload never calls {op}"
        for k in range(1, counts[op] + 1, stride):
            for error in errors_for(op):
                sweep_one(op, k, error, durability, persistent=persistent)
                runs += 1
    return runs


def test_sweep_always() -> None:
    assert sweep("always") > 150


@pytest.mark.parametrize("durability", ["interval", "none"])
def test_sweep_interval_and_none(durability: str) -> None:
    sweep(durability, stride=3)


@pytest.mark.slow
@pytest.mark.parametrize("durability", ["always", "interval", "none"])
@pytest.mark.parametrize("persistent", [False, True])
def test_sweep_long(durability: str, persistent: bool) -> None:
    sweep(durability, persistent=persistent)
