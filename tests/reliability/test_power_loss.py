"""Power loss on the memory store: crash at every point of random histories, with torn writes.

The memory store models a disk: it knows which bytes were synced, and ``crash()`` drops the rest,
tearing the last write (a prefix survives, maybe followed by garbage). For random sequences of
appends, batches, syncs, forced, size and age rotations, checkpoints and clean reopens, under each
durability, with and without an archive (``memory://``) and retention (``until_archived``,
``last:1``):

* every frame up to the ``durable_seq`` the log reported survives with its payload;
* frames that were not durable vanish cleanly: what comes back is ``1..M`` without a gap, each
  frame exactly as appended, and nothing invented;
* recovery never raises on a torn tail, keeps every cut byte in a side file, and leaves a log
  whose chain verifies and whose commit_seq continues at ``M + 1`` (also when retention removed
  every closed segment: the numbering goes on after the archive);
* a checkpoint is durable when ``checkpoint()`` returns: a reopen after any crash knows it;
* retention removes a segment only once it is archived (its bytes are in the archive) and, when
  a checkpoint is set, only when every frame in it is at or below the checkpoint; the local
  segments stay one contiguous run, and the frames ``1..M`` are the archived ones below the
  first local segment followed by the local ones.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import walship
from walship.archive import ArchiveStore
from walship.backends.memory import MemoryStore
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE, parse_segment_name, segment_name
from walship.core.rotation import ManualClock
from walship.core.scan import scan_store

from .support import FIGURES, Ledger, abandon, check_frames, make_payload, snapshot

DURABILITIES = ("always", "interval", "none")
RETENTIONS = (None, "until_archived", "last:1")
"""``None``: no archive; else archive to ``memory://`` and keep only this locally."""

op_strategy = st.one_of(
    st.tuples(st.just("append"), st.integers(0, 120)),
    st.tuples(st.just("batch"), st.lists(st.integers(0, 120), min_size=1, max_size=5)),
    st.tuples(st.just("sync")),
    st.tuples(st.just("rotate")),
    st.tuples(st.just("advance")),
    st.tuples(st.just("reopen")),
    st.tuples(st.just("checkpoint"), st.floats(0, 1)),
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
    keep_local: str | None = None
    store: MemoryStore = field(default_factory=MemoryStore)
    clock: ManualClock = field(default_factory=ManualClock)
    ledger: Ledger = field(default_factory=Ledger)
    log: Any = None
    n: int = 0
    cut_bytes: int = 0
    url: str | None = None
    """The archive (shared by every copy of this disk)."""
    archiving: bool = True
    """Open with the archive and retention (a copy of a disk replayed alone does not: the
    original went on archiving a future the copy never had)."""
    checkpoint: int | None = None
    """The last checkpoint a ``checkpoint()`` call returned from."""
    local: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.keep_local is not None and self.url is None:
            self.url = f"memory://walship-power-loss-{secrets.token_hex(8)}"

    def open(self) -> None:
        options: dict[str, Any] = {}
        if self.keep_local is not None and self.archiving:
            options = {
                "archive": {"url": self.url, "workers": 1, "retries": {"attempts": 1}},
                "retention": {"keep_local": self.keep_local},
            }
        self.log = walship.open(
            store=self.store,
            durability=self.durability,
            sync_interval=3600,  # no background flush: only the history's syncs
            max_segment_bytes=self.max_segment_bytes,
            max_segment_age=5.0,
            clock=self.clock,
            entry_point_plugins=False,
            **options,
        )
        assert self.log.checkpoint_seq == self.checkpoint, "a returned checkpoint was lost"
        self.settle()

    def segments(self) -> set[int]:
        return {s for n in self.store.list_names() if (s := parse_segment_name(n)) is not None}

    def settle(self) -> None:
        """Let the archiver finish (deterministic states), then check what retention removed:
        archived first, and wholly at or below the checkpoint."""
        if self.log.archiver is not None:
            assert self.log.archiver.flush(timeout=30), self.log.archiver.stalled()
        now = self.segments()
        gone = sorted(s for s in self.local - now if s < min(now))
        if gone:
            archive = ArchiveStore(self.url or "")
            for seq in gone:
                m = archive.stat(segment_name(seq))
                assert m is not None, f"segment {seq} was removed before it was archived"
                if self.checkpoint is not None and m.last_commit_seq is not None:
                    assert m.last_commit_seq <= self.checkpoint, (
                        f"segment {seq} (up to {m.last_commit_seq}) removed above the "
                        f"checkpoint {self.checkpoint}"
                    )
                FIGURES["power_loss.segments_removed"] += 1
        assert now == set(range(min(now), max(now) + 1)), f"local segments not contiguous: {now}"
        self.local = now

    def frames(self) -> list[Frame]:
        """The archived frames below the first local segment, then the local ones."""
        out: list[Frame] = []
        first = min(self.segments())
        if first > 1:
            archive = ArchiveStore(self.url or "")
            for seq in range(1, first):
                m = archive.stat(segment_name(seq))
                assert m is not None, f"segment {seq} is neither local nor archived"
                data = archive.get(m)
                out.extend(framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE))
        return out + list(self.log.read())

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
        elif kind == "checkpoint":
            commit_seq = int(log.last_seq * op[1])
            log.checkpoint(commit_seq)
            self.checkpoint = commit_seq
            FIGURES["power_loss.checkpoints"] += 1
        if kind != "reopen":
            self.settle()
        self.ledger.saw_durable(log.durable_seq)
        if self.durability == "always" and kind in ("append", "batch"):
            assert log.durable_seq == log.last_seq, "an append returned before it was durable"

    def tear(self, fraction: float) -> int:
        name = self.store._last_written
        if name is None or name not in self.store.list_names():  # removed by retention since
            return 0
        return int(self.store.unsynced_bytes(name) * fraction)

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
        last = check_frames(self.frames(), self.ledger, must_have=self.ledger.durable)
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
    keep_local = data.draw(st.sampled_from(RETENTIONS), label="keep_local")
    ops = data.draw(st.lists(op_strategy, max_size=25), label="ops")
    run = Run(durability, max_bytes, keep_local)
    run.open()
    points = []
    for i in range(len(ops) + 1):
        if i:
            run.apply(ops[i - 1])
        durable = run.log.durable_seq
        points.append((durable, snapshot(run.store), dict(run.ledger.payloads), run.checkpoint))
    run.log.close()
    for durable, disk, payloads, checkpoint in points:
        fraction = data.draw(st.floats(0, 1), label="tear")
        garbage = data.draw(garbage_strategy, label="garbage")
        crashed = Run(durability, max_bytes, keep_local, store=disk, url=run.url, archiving=False)
        crashed.ledger.payloads = payloads
        crashed.ledger.durable = durable
        crashed.checkpoint = checkpoint
        crashed.n = run.n
        crashed.store.crash(crashed.tear(fraction), garbage)
        crashed.verify_reopen()
        crashed.log.close()
        FIGURES["power_loss.crashes"] += 1


def crash_history(
    durability: str, max_bytes: int, keep_local: str | None, history: list[tuple[Any, ...]]
) -> None:
    run = Run(durability, max_bytes, keep_local)
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
@given(
    st.sampled_from(DURABILITIES),
    st.sampled_from([150, 600, 1 << 20]),
    st.sampled_from(RETENTIONS),
    history_strategy,
)
def test_crash_histories(
    durability: str, max_bytes: int, keep_local: str | None, history: list[tuple[Any, ...]]
) -> None:
    crash_history(durability, max_bytes, keep_local, history)


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)
@given(st.data())
def test_crash_at_every_point_long(data: st.DataObject) -> None:
    crash_at_every_point(data)


@pytest.mark.slow
@settings(max_examples=1500, **SETTINGS)
@given(
    st.sampled_from(DURABILITIES),
    st.sampled_from([150, 600, 1 << 20]),
    st.sampled_from(RETENTIONS),
    history_strategy,
)
def test_crash_histories_long(
    durability: str, max_bytes: int, keep_local: str | None, history: list[tuple[Any, ...]]
) -> None:
    crash_history(durability, max_bytes, keep_local, history)
