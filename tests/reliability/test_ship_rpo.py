"""The promise of live shipping, measured (issue 14): with durability ``always`` and
``archive.ship_interval`` I, a writer process killed with SIGKILL at a random moment, its
directory deleted, and the log restored from the archive loses no frame the shipper had shipped,
so none acknowledged more than I plus the upload time before the kill.

The writer (``ship_writer.py``) reports every acknowledged frame (commit_seq, key, time) and
every advance of the shipper; after the kill the parent deletes the directory, restores from the
archive and checks: the restored frames are a prefix of the log (commit_seq 1, 2, ..., each
payload the one acknowledged under its commit_seq), every frame the shipper reported shipped is
there, and the restored log opens and appends after its last frame. The recovery point of a kill
is the time between the acknowledgement of the oldest lost frame and the kill (0 when nothing
acknowledged is lost); its median and worst go to the figures (``docs/RELIABILITY.md``).

A few kills run in the normal suite (moto, and one on radosgw); ``-m slow`` runs many on both.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from archive_target import s3_server_of
from s3server import S3Bucket, new_bucket, remove_bucket

import walship
from reliability.support import FIGURES, payload_key
from walship.archive.restore import RestoreResult
from walship.errors import ArchiveIncompleteError
from walship.restore import restore

pytestmark = pytest.mark.one_python  # (pyproject.toml: CI runs it on its main Python)

WRITER = Path(__file__).with_name("ship_writer.py")


@dataclass
class Kill:
    """What one writer reported before it was killed, and when it was killed."""

    acks: dict[int, tuple[str, float]] = field(default_factory=dict)
    shipped: int = 0
    killed_at: float = 0.0
    slowest_round: float = 0.0


class WriterProcess:
    """A shipping writer (``ship_writer.py``) in its own process, its reports parsed as they
    come (on a reader thread): every acknowledged frame and the shipper's progress."""

    def __init__(self, path: Path, target: S3Bucket, url: str, interval: float) -> None:
        r, w = os.pipe()
        env = dict(os.environ, PYTHONPATH=str(WRITER.parent))
        options = json.dumps(target.storage_options)
        self.proc = subprocess.Popen(
            [sys.executable, str(WRITER), str(path), str(w), url, options, str(interval), "2"],
            pass_fds=(w,),
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        os.close(w)
        self._r = r
        self._lock = threading.Lock()
        self.report = Kill()
        """What it reported so far (``killed_at`` set by :meth:`kill`)."""
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._drain)
        self._reader.start()
        assert self._ready.wait(60), "the writer never got ready"

    def _drain(self) -> None:
        rest = b""
        while data := os.read(self._r, 65536):
            lines = (rest + data).split(b"\n")
            rest = lines.pop()
            with self._lock:
                for line in lines:
                    self._parse(line.decode())
        self._ready.set()

    def _parse(self, line: str) -> None:
        kind, *rest = line.split()
        out = self.report
        if kind == "ready":
            self._ready.set()
        elif kind == "A":
            out.acks[int(rest[0])] = (rest[1], float(rest[2]))
        elif kind == "S":
            out.shipped = max(out.shipped, int(rest[0]))
            out.slowest_round = max(out.slowest_round, float(rest[2]))

    def acked_after(self, seq: int) -> tuple[int, float | None]:
        """The last commit_seq acknowledged so far, and when ``seq + 1`` was acknowledged
        (``None``: not yet)."""
        with self._lock:
            acks = self.report.acks
            last = max(acks, default=0)
            nxt = acks.get(seq + 1)
        return last, nxt[1] if nxt is not None else None

    def kill(self) -> Kill:
        """SIGKILL it; everything it reported."""
        self.report.killed_at = time.monotonic()
        self.proc.send_signal(signal.SIGKILL)
        _, err = self.proc.communicate()
        self._reader.join()
        os.close(self._r)
        assert self.proc.returncode == -signal.SIGKILL, f"the writer died: {err.decode()}"
        return self.report


def run_writer(path: Path, target: S3Bucket, url: str, interval: float, run_for: float) -> Kill:
    """Start a shipping writer, kill it (SIGKILL) ``run_for`` seconds after it is ready."""
    writer = WriterProcess(path, target, url, interval)
    time.sleep(run_for)
    return writer.kill()


def kill_and_restore(
    tmp_path: Path, target: S3Bucket, n: int, interval: float, rng: random.Random
) -> tuple[float, bool]:
    """One kill: run, kill, delete, restore, check. Returns the recovery point (seconds), and
    whether the shipper had shipped a part before the kill."""
    url = f"{target.url}-{n}"
    wal, restored = tmp_path / f"wal-{n}", tmp_path / f"restored-{n}"
    kill = run_writer(wal, target, url, interval, rng.uniform(interval, interval + 1.5))
    shutil.rmtree(wal)  # the machine is gone
    # killed before the first part (the first round comes an interval after the open): empty
    options = target.storage_options
    result: RestoreResult | None
    try:
        result = restore(url, restored, storage_options=options, allow_empty=True)
    except ArchiveIncompleteError as e:
        # killed between the last sealed segment's two PUTs with nothing shipped after it (a
        # part after it would prove it): the object without its manifest is refused (never
        # silently dropped); on purpose, a partial restore ends before it (counted)
        assert all(p.kind == "missing_manifest" for p in e.problems), e
        FIGURES["ship_rpo.restores_needing_allow_partial"] += 1
        try:
            result = restore(url, restored, storage_options=options, allow_partial=True)
        except ArchiveIncompleteError:
            # that object is the log's first segment: nothing before it to restore, which
            # the promise allows only when the shipper had shipped nothing
            assert kill.shipped == 0, f"shipped frames lost: {kill.shipped} shipped, 0 restored"
            result = None  # the new machine starts an empty log
    with walship.open(restored, entry_point_plugins=False) as log:
        frames = list(log.read())
        last = frames[-1].commit_seq if frames else 0
        assert [f.commit_seq for f in frames] == list(range(1, last + 1))
        for f in frames:
            key = payload_key(f.payload)
            if f.commit_seq in kill.acks:
                assert kill.acks[f.commit_seq][0] == key, f"commit_seq {f.commit_seq} altered"
        assert last >= kill.shipped, f"shipped frames lost: {last} < {kill.shipped}"
        assert log.append(b"after the restore") == last + 1
    assert result is None or result.last_commit_seq == (last or None)
    FIGURES["ship_rpo.kills_before_the_first_part"] += result is None or result.outcome == "created"
    lost = sorted(s for s in kill.acks if s > last)
    rpo = kill.killed_at - kill.acks[lost[0]][1] if lost else 0.0
    # the promise in time (a figure, not an assertion: the machine is shared): the interval
    # plus the slowest round the shipper reported
    # plus the slowest round the shipper reported (unknown when it was killed before its first)
    FIGURES["ship_rpo.kills_beyond_interval_plus_slowest_round"] += kill.slowest_round > 0 and (
        rpo > interval + kill.slowest_round
    )
    FIGURES["ship_rpo.slowest_round_ms"] = max(
        FIGURES["ship_rpo.slowest_round_ms"], round(kill.slowest_round * 1000)
    )
    FIGURES["ship_rpo.kills"] += 1
    FIGURES["ship_rpo.frames_acknowledged"] += len(kill.acks)
    FIGURES["ship_rpo.frames_lost"] += len(lost)
    return rpo, kill.shipped > 0


def measure(tmp_path: Path, kind: str, kills: int, interval: float, seed: int) -> list[float]:
    target = new_bucket(s3_server_of(kind))
    rng = random.Random(seed)
    try:
        runs = [kill_and_restore(tmp_path, target, n, interval, rng) for n in range(kills)]
    finally:
        remove_bucket(target)
    rpos = [rpo for rpo, _ in runs]
    steady = [rpo for rpo, shipped in runs if shipped]  # killed after the first part
    name = f"ship_rpo.{kind}.interval_{interval:g}s"
    FIGURES[f"{name}.median_ms"] = round(statistics.median(rpos) * 1000)
    FIGURES[f"{name}.worst_ms"] = round(max(rpos) * 1000)
    if steady:
        FIGURES[f"{name}.after_first_part.kills"] = len(steady)
        FIGURES[f"{name}.after_first_part.median_ms"] = round(statistics.median(steady) * 1000)
        FIGURES[f"{name}.after_first_part.worst_ms"] = round(max(steady) * 1000)
    return rpos


def test_a_few_kills_on_moto(tmp_path: Path) -> None:
    measure(tmp_path, "moto", 3, 0.25, seed=14)


def test_one_kill_on_radosgw(tmp_path: Path) -> None:
    measure(tmp_path, "radosgw", 1, 0.25, seed=15)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["moto", "radosgw"])
@pytest.mark.parametrize("interval", [1.0, 0.25])
def test_many_kills(tmp_path: Path, kind: str, interval: float) -> None:
    rpos = measure(tmp_path, kind, 20, interval, seed=140)
    print(
        f"\n{kind} interval {interval}s: recovery point median "
        f"{statistics.median(rpos) * 1000:.0f} ms, worst {max(rpos) * 1000:.0f} ms over "
        f"{len(rpos)} kills"
    )
