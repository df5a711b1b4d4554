"""Process crashes: SIGKILL a real writer process at random moments, over and over.

The writer (``crash_writer.py``) appends from several threads with durability ``always`` into
small segments (rotation by size and age all the time) and reports every acknowledged commit_seq
on a pipe. The parent kills it at a random moment (also during its start-up and recovery), then
checks the directory: every acknowledged frame is there with its payload, the frames are
``1..M`` without a gap, nothing corrupt is returned, the BLAKE3 chain verifies, and the commit_seq
continues. Half of the checks are read-only (the next writer recovers the log itself); the
others open the log, append a frame and close it.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import walship
from walship.backends.posix import PosixStore
from walship.core import frame as framing
from walship.core.frame import Frame
from walship.core.header import HEADER_SIZE
from walship.core.scan import ProblemKind, scan_store

from .support import FIGURES, Ledger, check_frames, make_payload, payload_key

WRITER = Path(__file__).with_name("crash_writer.py")
THREADS = 4


@dataclass
class Incarnation:
    """What one writer process reported before it died."""

    ready_last_seq: int | None = None
    acks: list[tuple[int, str]] = field(default_factory=list)


def run_writer(
    path: Path, incarnation: int, rng: random.Random, durability: str = "always"
) -> Incarnation:
    """Start a writer, kill it at a random moment, return what it acknowledged."""
    r, w = os.pipe()
    env = dict(os.environ, PYTHONPATH=str(WRITER.parent))
    proc = subprocess.Popen(
        [
            sys.executable,
            str(WRITER),
            str(path),
            str(w),
            str(incarnation),
            str(THREADS),
            durability,
        ],
        pass_fds=(w,),
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    os.close(w)
    chunks: list[bytes] = []
    ready = threading.Event()

    def drain() -> None:
        while data := os.read(r, 65536):
            chunks.append(data)
            if not ready.is_set() and b"ready" in b"".join(chunks[:3]):
                ready.set()
        ready.set()

    reader = threading.Thread(target=drain)
    reader.start()
    if rng.random() < 0.3:
        time.sleep(rng.uniform(0, 0.4))  # anywhere: start-up, recovery, or writing
    else:
        ready.wait(30)
        time.sleep(rng.uniform(0, 0.25))
    proc.send_signal(signal.SIGKILL)
    _, err = proc.communicate()
    reader.join()
    os.close(r)
    assert proc.returncode == -signal.SIGKILL, f"the writer died on its own: {err.decode()}"
    out = Incarnation()
    for line in b"".join(chunks).decode().splitlines():
        first, _, rest = line.partition(" ")
        if first == "ready":
            out.ready_last_seq = int(rest)
        else:
            out.acks.append((int(first), rest))
    return out


def frames_read_only(path: Path) -> list[Frame]:
    """Check the log without changing it: the chain verifies, the only damage is a torn tail
    of the last segment; return the frames up to it."""
    store = PosixStore(path)
    scan = scan_store(store)
    for p in scan.problems:
        assert p.kind is ProblemKind.TRUNCATED_TAIL and p.repairable, f"damage: {p}"
        assert p.segment == scan.segments[-1].name
        FIGURES["crash.torn_tails_seen"] += 1
    assert all(s.chain_ok is not False for s in scan.segments)
    frames: list[Frame] = []
    for seg in scan.segments:
        if seg.valid_end <= HEADER_SIZE:
            continue
        data = store.read(seg.name, 0, seg.valid_end)
        frames.extend(framing.decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE))
    return frames


def check_keys(frames: list[Frame]) -> None:
    """Every frame is one the writers made, and none was written twice."""
    keys = [payload_key(f.payload) for f in frames]
    assert len(set(keys)) == len(keys), "a frame was written twice"


def crash_loop(path: Path, kills: int, seed: int, durability: str = "always") -> None:
    """``kills`` writers in turn, each killed; in every durability mode an acknowledged frame
    is in the page cache when the process dies, so it must survive a process crash."""
    rng = random.Random(seed)
    ledger = Ledger()
    max_acked = 0
    for n in range(kills):
        inc = run_writer(path, n, rng, durability)
        if inc.ready_last_seq is not None:  # the writer's own recovery lost nothing
            assert inc.ready_last_seq >= max_acked, "recovery lost acknowledged frames"
        seqs = [s for s, _ in inc.acks]
        assert len(set(seqs)) == len(seqs), "a commit_seq was acknowledged twice"
        if seqs:
            assert min(seqs) > max_acked, "commit_seq did not continue after the restart"
        ledger.ack(seqs, [make_payload(k) for _, k in inc.acks])
        max_acked = max([max_acked, *seqs])
        ledger.durable = max_acked  # a process crash: acknowledged means kept, in every mode
        FIGURES["crash.kills"] += 1
        FIGURES["crash.acknowledged_frames"] += len(seqs)
        if rng.random() < 0.5:
            frames = frames_read_only(path)
            check_frames(frames, ledger, must_have=max_acked)
            check_keys(frames)
        else:
            with walship.open(path, entry_point_plugins=False) as log:
                FIGURES["crash.torn_tails_repaired"] += len(log.recovery.repairs)
                frames = list(log.read())
                last = check_frames(frames, ledger, must_have=max_acked)
                check_keys(frames)
                key = f"parent.{n}"
                seq = log.append(make_payload(key))
                assert seq == last + 1, "commit_seq did not continue"
                assert [f.payload for f in log.read(from_seq=seq)] == [make_payload(key)]
                ledger.ack([seq], [make_payload(key)])
                max_acked = ledger.durable = seq
            assert scan_store(PosixStore(path)).ok, "a cleanly closed log does not verify"
        FIGURES["crash.frames_verified"] += len(frames)
    final = frames_read_only(path)
    check_frames(final, ledger, must_have=max_acked)
    segments = sum(1 for n in os.listdir(path) if n.endswith(".aedbwal"))
    assert segments > 1, "the writers never rotated"
    FIGURES["crash.segments"] += segments


def test_process_crashes(tmp_path: Path) -> None:
    crash_loop(tmp_path / "wal", kills=20, seed=20240601)


@pytest.mark.parametrize("durability", ["interval", "none"])
def test_process_crashes_without_a_sync_per_append(tmp_path: Path, durability: str) -> None:
    """Killed mid-append with ``interval`` or ``none``: unsynced is not lost to a process
    crash, and a kill in the middle of a write leaves a torn tail, never a damaged frame
    followed by valid ones; every reopen needs no salvage."""
    crash_loop(tmp_path / "wal", kills=8, seed=len(durability), durability=durability)


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_process_crashes_long(tmp_path: Path) -> None:
    for log_no in range(10):  # 10 logs x 50 kills: a fresh directory keeps each check quick
        durability = ("always", "interval", "none")[log_no % 3]
        crash_loop(tmp_path / f"wal{log_no}", kills=50, seed=log_no, durability=durability)
