"""Power loss on the memory store: crash at every point of random histories, with torn writes.

The memory store models a disk: it knows which bytes were synced, and ``crash()`` drops the rest,
tearing the last write (a prefix survives, maybe followed by garbage). For random sequences of
appends, batches, syncs, forced, size and age rotations and clean reopens, under each durability:

* every frame up to the ``durable_seq`` the log reported survives with its payload;
* frames that were not durable vanish cleanly: what comes back is ``1..M`` without a gap, each
  frame exactly as appended, and nothing invented;
* recovery never raises on a torn tail, keeps every cut byte in a side file, and leaves a log
  whose chain verifies and whose commit_seq continues at ``M + 1``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import walship
from walship.backends.memory import MemoryStore
from walship.core.recovery import scan_store
from walship.core.rotation import ManualClock

from .support import FIGURES, Ledger, abandon, check_frames, make_payload, snapshot

DURABILITIES = ("always", "interval", "none")

op_strategy = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 120)),
    st.tuples(st.just("batch"), st.lists(st.integers(0, 120), min_size=1, max_size=5)),
    st.tuples(st.just("sync")),
    st.tuples(st.just("rotate")),
    st.tuples(st.just("advance")),
    st.tuples(st.just("reopen")),
)
garbage_strategy = st.one_of(
    st.just(b""),
    st.integers(1, 90).map(lambda n: bytes(n)),
    st.binary(min_size=1, max_size=90),
)
# "crash" takes a fraction of the unsynced bytes of the last write to keep, and garbage
history_strategy = st.lists(
    st.one_of(
        op_strategy,
        st.tuples(st.just("crash"), st.floats(0, 1), garbage_strategy),
    ),
    max_size=40,
)


@dataclass
class Run:
    """One history being played on one memory disk."""

    durability: str
    max_segment_bytes: int
    store: MemoryStore = field(default_factory=MemoryStore)
    clock: ManualClock = field(default_factory=ManualClock)
    ledger: Ledger = field(default_factory=Ledger)
    log: Any = None
    n: int = 0
    cut_bytes: int = 0

    def open(self) -> None:
        self.log = walship.open(
            store=self.store,
            durability=self.durability,
            sync_interval=3600,  # no background flush: only the history's syncs
            max_segment_bytes=self.max_segment_bytes,
            max_segment_age=5.0,
            clock=self.clock,
            entry_point_plugins=False,
        )

    def apply(self, op: tuple[Any, ...]) -> None:
        log = self.log
        kind = op[0]
        if kind == "append":
            self.n += 1
            p = make_payload(f"p{self.n}", op[1])
            self.ledger.ack([log.append(p)], [p])
        elif kind == "batch":
            ps = []
            for size in op[1]:
                self.n += 1
                ps.append(make_payload(f"p{self.n}", size))
            self.ledger.ack(log.append_batch(ps), ps)
        elif kind == "sync":
            log.sync()
        elif kind == "rotate":
            log.rotate()
        elif kind == "advance":
            self.clock.advance(6.0)  # past max_segment_age: the next append rotates by age
        elif kind == "reopen":
            log.close()
            self.open()
        self.ledger.saw_durable(log.durable_seq)
        if self.durability == "always" and kind in ("append", "batch"):
            assert log.durable_seq == log.last_seq, "an append returned before it was durable"

    def tear(self, fraction: float) -> int:
        name = self.store._last_written
        return int(self.store.unsynced_bytes(name) * fraction) if name else 0

    def crash_and_recover(self, fraction: float, garbage: bytes) -> None:
        """Crash the disk under the live log, reopen, check everything, continue."""
        old = self.log
        self.ledger.saw_durable(old.durable_seq)
        abandon(old)  # its process dies with the machine
        self.store.crash(self.tear(fraction), garbage)
        self.verify_reopen()

    def verify_reopen(self) -> None:
        before = self.store.files()
        self.open()  # a torn tail must never stop a restart
        log = self.log
        for repair in log.recovery.repairs:
            side = self.store.read(repair.side_file)
            assert side == before[repair.segment][repair.offset :], "cut bytes were not kept"
            self.cut_bytes += repair.cut_bytes
        kept = sum(len(d) for n, d in self.store.files().items() if ".torn-" in n)
        assert kept == self.cut_bytes, "a side file of earlier cut bytes was overwritten"
        last = check_frames(list(log.read()), self.ledger, must_have=self.ledger.durable)
        self.ledger.forget_after(last)
        assert log.last_seq == last
        assert scan_store(self.store).ok
        # commit_seq continues, and a read from there finds the new frame
        self.n += 1
        p = make_payload(f"p{self.n}")
        seq = log.append(p)
        assert seq == last + 1
        self.ledger.ack([seq], [p])
        assert [f.payload for f in log.read(from_seq=seq)] == [p]


def crash_at_every_point(data: st.DataObject) -> None:
    durability = data.draw(st.sampled_from(DURABILITIES), label="durability")
    max_bytes = data.draw(st.sampled_from([150, 600, 1 << 20]), label="max_segment_bytes")
    ops = data.draw(st.lists(op_strategy, max_size=25), label="ops")
    run = Run(durability, max_bytes)
    run.open()
    points = []
    for i in range(len(ops) + 1):
        if i:
            run.apply(ops[i - 1])
        durable = run.log.durable_seq
        points.append((durable, snapshot(run.store), dict(run.ledger.payloads)))
    run.log.close()
    for durable, disk, payloads in points:
        fraction = data.draw(st.floats(0, 1), label="tear")
        garbage = data.draw(garbage_strategy, label="garbage")
        crashed = Run(durability, max_bytes, store=disk)
        crashed.ledger.payloads = payloads
        crashed.ledger.durable = durable
        crashed.n = run.n
        crashed.store.crash(crashed.tear(fraction), garbage)
        crashed.verify_reopen()
        crashed.log.close()
        FIGURES["power_loss.crashes"] += 1


def crash_history(durability: str, max_bytes: int, history: list[tuple[Any, ...]]) -> None:
    run = Run(durability, max_bytes)
    run.open()
    for op in history:
        if op[0] == "crash":
            run.crash_and_recover(op[1], op[2])
            FIGURES["power_loss.crashes"] += 1
        else:
            run.apply(op)
    run.crash_and_recover(1.0, b"")
    run.log.close()


SETTINGS: dict[str, Any] = {
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}


@settings(max_examples=150, **SETTINGS)
@given(st.data())
def test_crash_at_every_point(data: st.DataObject) -> None:
    crash_at_every_point(data)


@settings(max_examples=150, **SETTINGS)
@given(st.sampled_from(DURABILITIES), st.sampled_from([150, 600, 1 << 20]), history_strategy)
def test_crash_histories(durability: str, max_bytes: int, history: list[tuple[Any, ...]]) -> None:
    crash_history(durability, max_bytes, history)


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)
@given(st.data())
def test_crash_at_every_point_long(data: st.DataObject) -> None:
    crash_at_every_point(data)


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)
@given(st.sampled_from(DURABILITIES), st.sampled_from([150, 600, 1 << 20]), history_strategy)
def test_crash_histories_long(
    durability: str, max_bytes: int, history: list[tuple[Any, ...]]
) -> None:
    crash_history(durability, max_bytes, history)
