"""Load: a bounded soak with 16 appending threads, readers, and rotation by size and age.

Invariants are checked while it runs, not only at the end:

* each appender's commit_seqs strictly increase, a batch's are consecutive, no commit_seq is
  handed out twice, and (durability ``always``) ``durable_seq`` covers every acknowledged frame;
* a monitor sees ``durable_seq`` and ``last_seq`` never go back, and ``durable_seq <= last_seq``;
* readers read ranges ending at ``last_seq`` (mostly in the active segment, while it is written
  and rotated): every frame in the range comes back, in order, without a gap, well-formed, with
  the payload its appender was acknowledged for.

Load alternates bursts (segments fill up: rotation by size) with a trickle (segments age out:
rotation by age). At the end the log closes cleanly, verifies, and a reopen returns exactly the
acknowledged frames, ``1..N``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

import walship
from walship.backends.posix import PosixStore
from walship.core.recovery import scan_store

from .support import FIGURES, make_payload, payload_key

APPENDERS = 16
READERS = 3


def soak(path: Path, seconds: float, seed: int = 1) -> None:
    log = walship.open(
        path,
        durability="always",
        max_segment_bytes=32 * 1024,
        max_segment_age=0.3,
        entry_point_plugins=False,
    )
    acked: dict[int, str] = {}
    acked_lock = threading.Lock()
    stop = threading.Event()
    trickle = threading.Event()
    errors: list[BaseException] = []
    counts: Counter[str] = Counter()

    def guarded(fn: Callable[..., None], *args: object) -> Callable[[], None]:
        def run() -> None:
            try:
                fn(*args)
            except BaseException as e:
                errors.append(e)
                stop.set()

        return run

    def appender(t: int) -> None:
        rng = random.Random(seed * 1000 + t)
        last, i = 0, 0
        while not stop.is_set():
            i += 1
            keys = [f"a{t}.{i}.{j}" for j in range(1 if rng.random() < 0.8 else rng.randint(2, 8))]
            payloads = [make_payload(k) for k in keys]
            seqs = log.append_batch(payloads) if len(keys) > 1 else [log.append(payloads[0])]
            assert seqs[0] > last, f"appender {t}: commit_seq went from {last} to {seqs[0]}"
            assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a batch was split"
            assert log.durable_seq >= seqs[-1], "acknowledged before durable"
            with acked_lock:
                for s, k in zip(seqs, keys, strict=True):
                    assert s not in acked, f"commit_seq {s} handed out twice"
                    acked[s] = k
                counts["appends"] += 1
                counts["frames"] += len(seqs)
            last = seqs[-1]
            if trickle.is_set():
                time.sleep(0.05)

    def reader(r: int) -> None:
        rng = random.Random(seed * 2000 + r)
        while not stop.is_set():
            top = log.last_seq
            if top == 0:
                time.sleep(0.001)
                continue
            lo = 1 if rng.random() < 0.2 else max(1, top - 400)
            start = rng.randint(lo, top)
            end = min(start + 150, top)
            prev = start - 1
            for f in log.read(start, end):
                assert f.commit_seq == prev + 1, f"read gave {f.commit_seq} after {prev}"
                key = payload_key(f.payload)
                known = acked.get(f.commit_seq)
                assert known is None or known == key, f"commit_seq {f.commit_seq}: wrong frame"
                prev = f.commit_seq
            assert prev == end, f"read({start}, {end}) stopped at {prev}"
            with acked_lock:
                counts["reads"] += 1
                counts["frames_read"] += end - start + 1

    def monitor() -> None:
        durable = last = 0
        while not stop.is_set():
            d = log.durable_seq
            n = log.last_seq
            assert d >= durable, f"durable_seq went back from {durable} to {d}"
            assert n >= last, f"last_seq went back from {last} to {n}"
            assert d <= n, f"durable_seq {d} is past last_seq {n}"
            durable, last = d, n
            counts["monitor_checks"] += 1
            time.sleep(0.0005)

    threads = [threading.Thread(target=guarded(appender, t)) for t in range(APPENDERS)]
    threads += [threading.Thread(target=guarded(reader, r)) for r in range(READERS)]
    threads.append(threading.Thread(target=guarded(monitor)))
    started = time.monotonic()
    for th in threads:
        th.start()
    while not stop.is_set() and time.monotonic() - started < seconds:
        phase = time.monotonic() - started
        if phase % 3.0 < 2.0:  # 2 s burst, 1 s trickle
            trickle.clear()
        else:
            trickle.set()
        time.sleep(0.05)
    stop.set()
    for th in threads:
        th.join()
    elapsed = time.monotonic() - started
    if errors:
        raise errors[0]
    stats = log.stats()
    log.close()
    assert stats.get("rotations_size", 0) > 0, "no rotation by size"
    assert stats.get("rotations_age", 0) > 0, "no rotation by age"
    assert scan_store(PosixStore(path)).ok
    with walship.open(path, entry_point_plugins=False) as again:
        frames = list(again.read())
    assert [f.commit_seq for f in frames] == list(range(1, len(acked) + 1)), "gap or loss"
    assert all(payload_key(f.payload) == acked[f.commit_seq] for f in frames)
    FIGURES["soak.seconds"] += round(elapsed)
    FIGURES["soak.appends"] += counts["appends"]
    FIGURES["soak.frames"] += counts["frames"]
    FIGURES["soak.reads"] += counts["reads"]
    FIGURES["soak.frames_read"] += counts["frames_read"]
    FIGURES["soak.monitor_checks"] += counts["monitor_checks"]
    FIGURES["soak.rotations_size"] += stats.get("rotations_size", 0)
    FIGURES["soak.rotations_age"] += stats.get("rotations_age", 0)
    FIGURES["soak.syncs"] += stats.get("syncs", 0)


def test_soak(tmp_path: Path) -> None:
    soak(tmp_path / "wal", seconds=15)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_long(tmp_path: Path) -> None:
    soak(tmp_path / "wal", seconds=300)
