"""Shared pieces of the reliability harnesses: checkable payloads, ledgers, store snapshots."""

from __future__ import annotations

import hashlib
import threading
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from walship.backends.memory import MemoryStore, _File
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE, parse_segment_name
from walship.log import Log
from walship.store import SegmentFile, SegmentStore

# --- payloads that check themselves ---------------------------------------------------------


def make_payload(key: str, size: int | None = None) -> bytes:
    """A payload that names ``key`` and carries filler derived from it.

    ``size`` defaults to a length derived from the key (0..200 bytes of filler), so frames of
    many sizes appear without any state.
    """
    digest = hashlib.blake2b(key.encode(), digest_size=32).digest()
    n = digest[0] * 200 // 255 if size is None else size
    filler = (digest * (n // 32 + 1))[:n]
    return key.encode() + b"|" + filler


def payload_key(payload: bytes) -> str:
    """The key a payload was made from.

    Raises:
        AssertionError: the payload is not one :func:`make_payload` would make (corrupt data).
    """
    key, sep, _ = payload.partition(b"|")
    assert sep, f"payload without a key: {payload[:40]!r}"
    text = key.decode()
    rest = len(payload) - len(key) - 1
    assert payload == make_payload(text, rest), f"payload of {text!r} is damaged"
    return text


# --- reading a store without opening it -----------------------------------------------------


def segment_names(store: SegmentStore) -> list[str]:
    """The segment files of ``store`` in order."""
    named = [(s, n) for n in store.list_names() if (s := parse_segment_name(n)) is not None]
    return [n for _, n in sorted(named)]


def read_frames(store: SegmentStore) -> list[Frame]:
    """Every frame of every segment, read-only (raises on any damage: use on clean logs)."""
    out: list[Frame] = []
    for name in segment_names(store):
        data = store.read(name)
        out.extend(framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE))
    return out


def snapshot(store: MemoryStore) -> MemoryStore:
    """An independent copy of a memory "disk": contents, synced marks and the last write."""
    copy = MemoryStore()
    with store._mutex:
        copy._files = {n: _File(bytearray(f.data), f.synced) for n, f in store._files.items()}
        copy._last_written = store._last_written
    return copy


# --- ledgers --------------------------------------------------------------------------------


@dataclass
class Ledger:
    """What a harness handed to the log and what the log promised back."""

    payloads: dict[int, bytes] = field(default_factory=dict)
    """commit_seq -> payload of every frame an append returned (acknowledged)."""
    durable: int = 0
    """The highest durable_seq any log instance reported."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ack(self, seqs: Iterable[int], payloads: Iterable[bytes]) -> None:
        with self.lock:
            for s, p in zip(seqs, payloads, strict=True):
                assert s not in self.payloads or s > self.durable, (
                    f"commit_seq {s} handed out again although it was durable"
                )
                self.payloads[s] = p

    def saw_durable(self, durable_seq: int) -> None:
        with self.lock:
            self.durable = max(self.durable, durable_seq)

    def forget_after(self, last: int) -> None:
        """Frames after ``last`` vanished in a crash (they were never durable)."""
        with self.lock:
            assert last >= self.durable, f"durable frames {last + 1}..{self.durable} vanished"
            for s in [s for s in self.payloads if s > last]:
                del self.payloads[s]


def check_frames(frames: list[Frame], ledger: Ledger, *, must_have: int) -> int:
    """Check recovered ``frames`` against ``ledger``; return the last commit_seq.

    The frames must be ``1..M`` without a gap, ``M >= must_have``, and every frame the ledger
    knows must carry its payload; a frame it does not know must still be a well-formed payload.
    """
    for i, f in enumerate(frames, start=1):
        assert f.commit_seq == i, f"expected commit_seq {i}, found {f.commit_seq}"
        known = ledger.payloads.get(f.commit_seq)
        if known is not None:
            assert f.payload == known, f"commit_seq {f.commit_seq} carries the wrong payload"
        else:
            payload_key(f.payload)
    last = len(frames)
    assert last >= must_have, f"frames {last + 1}..{must_have} were promised and are lost"
    return last


# --- figures of a run -----------------------------------------------------------------------

FIGURES: Counter[str] = Counter()
"""Totals the harnesses report (printed at the end of the session; see conftest.py)."""


def abandon(log: Log) -> None:
    """Make ``log`` inert, as if its process had died: stop its threads, touch nothing else.

    Use it before ``MemoryStore.crash()``: a log object left running (or closed) after the
    "machine" restarted would act on the new disk, which no dead process can do.
    """
    if log._maintenance is not None:
        log._maintenance.stop()
    if log.archiver is not None:
        log.archiver.close()
    log._events.stop()


class SyncHookStore(MemoryStore):
    """A memory store whose segment files' ``sync`` runs :meth:`before_sync` first (which may
    wait, or raise instead of syncing)."""

    def before_sync(self) -> None:
        raise NotImplementedError

    def _wrap(self, f: SegmentFile) -> SegmentFile:
        real_sync = f.sync

        def sync() -> None:
            self.before_sync()
            real_sync()

        f.sync = sync  # type: ignore[method-assign]
        return f

    def create(self, name: str, data: bytes) -> SegmentFile:
        return self._wrap(super().create(name, data))

    def open_append(self, name: str) -> SegmentFile:
        return self._wrap(super().open_append(name))


class HeldSyncs(SyncHookStore):
    """A memory store whose segment syncs wait while ``hold`` is clear (``entered`` is set once
    one waits): the thread in that sync holds the log's I/O turn meanwhile."""

    def __init__(self) -> None:
        super().__init__()
        self.hold = threading.Event()
        self.hold.set()
        self.entered = threading.Event()

    def before_sync(self) -> None:
        if not self.hold.is_set():
            self.entered.set()
            self.hold.wait(30)
