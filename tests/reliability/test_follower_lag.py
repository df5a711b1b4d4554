"""A follower's lag under load (issue 14), measured: a shipping writer in its own process
(``ship_writer.py``: 2 threads appending as fast as durability ``always`` lets them,
``archive.ship_interval`` I) and a follower in this process (:class:`walship.archive.follow.
Follower`, a round every 0.2 s). After every round the lag is taken against what the writer
acknowledged: in frames (its last acknowledged commit_seq minus the replica's last), and in
seconds (how long ago the oldest acknowledged frame the replica does not hold yet was
acknowledged; 0 when it holds them all). Rounds before the replica's first frame are not
counted (the first part comes an interval after the writer opens).

Checked, whatever the timing: the replica holds exactly a prefix of what the writer
acknowledged (commit_seq 1, 2, ..., each payload the one acknowledged under it), and its last
frame never goes back from a round to the next. The median and worst go to the figures
(``docs/RELIABILITY.md``); nothing here asserts a time.

One short run on moto runs in the normal suite; ``-m slow`` runs 30 s on both servers at two
intervals.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
from archive_target import s3_server_of
from s3server import new_bucket, remove_bucket

import walship
from reliability.support import FIGURES, payload_key
from reliability.test_ship_rpo import WriterProcess
from walship.archive.follow import Follower

FOLLOW_EVERY = 0.2


def measure(
    tmp_path: Path, kind: str, interval: float, seconds: float
) -> tuple[list[int], list[float]]:
    """One run (module docstring): the lag after each counted round, in frames and seconds."""
    target = new_bucket(s3_server_of(kind))
    url = f"{target.url}-lag"
    frames: list[int] = []
    behind: list[float] = []
    reached = 0
    writer = WriterProcess(tmp_path / "wal", target, url, interval)
    try:
        with Follower(
            url, tmp_path / "replica", target.storage_options, interval=FOLLOW_EVERY
        ) as follower:
            deadline = time.monotonic() + seconds
            while time.monotonic() < deadline:
                started = time.monotonic()
                follower.poll()
                now = time.monotonic()
                last = follower.end.last_commit_seq or 0
                assert last >= reached, f"the replica went back: {last} < {reached}"
                reached = last
                acked, oldest = writer.acked_after(reached)
                if reached:
                    frames.append(acked - reached)
                    behind.append(now - oldest if oldest is not None else 0.0)
                time.sleep(max(0.0, FOLLOW_EVERY - (time.monotonic() - started)))
    finally:
        kill = writer.kill()
        remove_bucket(target)
    with walship.open(tmp_path / "replica", read_only=True) as replica:
        taken = [(f.commit_seq, payload_key(f.payload)) for f in replica.read()]
    assert [seq for seq, _ in taken] == list(range(1, len(taken) + 1))
    assert all(kill.acks[seq][0] == key for seq, key in taken), "a frame was altered"
    assert frames, "the follower never took a frame"
    name = f"follower_lag.{kind}.interval_{interval:g}s"
    FIGURES[f"{name}.rounds"] = len(frames)
    FIGURES[f"{name}.frames_acknowledged"] = len(kill.acks)
    FIGURES[f"{name}.frames_median"] = round(statistics.median(frames))
    FIGURES[f"{name}.frames_worst"] = max(frames)
    FIGURES[f"{name}.seconds_median_ms"] = round(statistics.median(behind) * 1000)
    FIGURES[f"{name}.seconds_worst_ms"] = round(max(behind) * 1000)
    return frames, behind


def test_follower_lag_on_moto(tmp_path: Path) -> None:
    measure(tmp_path, "moto", 0.25, 3.0)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["moto", "radosgw"])
@pytest.mark.parametrize("interval", [1.0, 0.25])
def test_follower_lag_under_load(tmp_path: Path, kind: str, interval: float) -> None:
    frames, behind = measure(tmp_path, kind, interval, 30.0)
    print(
        f"\n{kind} interval {interval}s: follower lag median {statistics.median(frames):.0f} "
        f"frames / {statistics.median(behind) * 1000:.0f} ms, worst {max(frames)} frames / "
        f"{max(behind) * 1000:.0f} ms over {len(frames)} rounds"
    )
