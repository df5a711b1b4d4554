"""Fenced promotion after a crash (issue 14): a shipping writer in one process
(``ship_writer.py``, durability ``always``, ``archive.ship_interval``), a follower in another
(``walship follow URL DIR``), a tail in a third (``walship tail DIR -f`` on the follower's
replica, through the takeover and the new writer's appends: every frame once, in order, as
restored), the writer killed with SIGKILL at a random moment, the follower
stopped (SIGKILL too) and its replica promoted (``walship.open(DIR, archive=..., takeover=True)``);
the new writer appends and archives; the old writer is run again and is fenced (its appends
refused, every frame it acknowledged still in its own directory, nothing of the archive
touched); the archive verifies clean and restores to exactly: a prefix of what the old writer
acknowledged (commit_seq 1, 2, ..., each payload the one acknowledged under it, at least up to
the last frame its shipper reported shipped), then the new writer's frames.

Figures (``docs/RELIABILITY.md``): kills, frames acknowledged, frames the new writer took over,
frames kept only in the old writer's directory, and the takeover's time.

Two kills on moto and one on radosgw run in the normal suite; ``-m slow`` runs many on both.
"""

from __future__ import annotations

import base64
import json
import logging
import random
import signal
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from archive_target import s3_server_of
from s3server import S3Bucket, new_bucket, remove_bucket, wait_until

import walship
from reliability.support import FIGURES, payload_key
from reliability.test_ship_rpo import run_writer
from walship.archive import ArchiveStore
from walship.archive.check import verify_archive
from walship.errors import ArchiveFencedError
from walship.restore import restore

pytestmark = pytest.mark.one_python  # (pyproject.toml: CI runs it on its main Python)

NEW_FRAMES = 5


def _archive(target: S3Bucket, url: str) -> dict[str, object]:
    return {
        "url": url,
        "storage_options": target.storage_options,
        "upload_process": False,
        "retries": {"attempts": 20, "backoff": 0.05, "max_backoff": 0.5},
    }


class _Counting(logging.Handler):
    """Collects the messages of the ``walship.archive`` and ``walship.archiver`` loggers."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def count(self, text: str) -> int:
        return sum(text in m for m in self.messages)

    def __enter__(self) -> _Counting:
        for name in ("walship.archive", "walship.archiver"):
            logging.getLogger(name).addHandler(self)
        return self

    def __exit__(self, *exc: object) -> None:
        for name in ("walship.archive", "walship.archiver"):
            logging.getLogger(name).removeHandler(self)


def _follower(url: str, directory: Path, target: S3Bucket) -> subprocess.Popen[bytes]:
    config = directory.with_name(directory.name + ".yaml")  # for its storage options
    config.write_text(json.dumps({"archive": _archive(target, url)}))
    command = ["follow", url, str(directory), "--interval", "0.2", "-c", str(config)]
    return subprocess.Popen(
        [sys.executable, "-m", "walship", *command],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class _Tail:
    """The third process: ``walship tail REPLICA -f --from-seq 1``, started as soon as the
    follower's replica holds a segment, reading it (without the lock) while the follower
    writes it, through the takeover, and while the new writer appends; its lines to ``out``
    (``click.echo`` flushes each)."""

    def __init__(self, replica: Path, out: Path) -> None:
        self.out = out
        self.proc: subprocess.Popen[bytes] | None = None
        self._stop = threading.Event()
        self._starter = threading.Thread(target=self._start, args=(replica,))
        self._starter.start()

    def _start(self, replica: Path) -> None:
        while not self._stop.is_set():
            if any(replica.glob("segment_*")):
                command = ["tail", str(replica), "-f", "--from-seq", "1", "--interval", "0.02"]
                with self.out.open("wb") as out:
                    self.proc = subprocess.Popen(
                        [sys.executable, "-m", "walship", *command],
                        stdout=out,
                        stderr=subprocess.PIPE,
                    )
                return
            time.sleep(0.02)

    def kill(self) -> None:
        """Stop it whatever happened (idempotent)."""
        self._stop.set()
        self._starter.join()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate(timeout=30)

    def frames(self) -> list[tuple[int, bytes]]:
        """(commit_seq, payload) of every whole line so far (a line cut by a kill is not)."""
        if not self.out.exists():
            return []
        lines = self.out.read_bytes().split(b"\n")[:-1]
        return [
            (d["commit_seq"], base64.b64decode(d["payload_b64"]))
            for d in (json.loads(line) for line in lines)
        ]

    def stop(self, until_seq: int) -> list[tuple[int, bytes]]:
        """Wait (a few seconds) for the line of ``until_seq``, kill the tail, return its
        frames; it must not have failed meanwhile."""
        self._stop.set()
        self._starter.join()
        if self.proc is None:
            return []
        wait_until(lambda: any(s == until_seq for s, _ in self.frames()), timeout=15)
        alive = self.proc.poll() is None
        self.proc.send_signal(signal.SIGKILL)
        _, err = self.proc.communicate(timeout=30)
        assert alive, f"walship tail ended: {err.decode()}"
        return self.frames()


def kill_promote_fence(
    tmp_path: Path, target: S3Bucket, n: int, interval: float, rng: random.Random
) -> float:
    """One run (module docstring); returns the takeover's seconds."""
    url = f"{target.url}-p{n}"
    old_dir, replica, restored = (tmp_path / f"{k}-{n}" for k in ("old", "replica", "restored"))
    follower = _follower(url, replica, target)
    tail = _Tail(replica, tmp_path / f"tail-{n}.jsonl")
    try:
        try:
            kill = run_writer(old_dir, target, url, interval, rng.uniform(0.2, interval + 2.0))
            time.sleep(rng.uniform(0.0, 0.5))  # the follower may be mid-round
        finally:
            follower.send_signal(signal.SIGKILL)
            follower.wait()
        archive = _archive(target, url)
        started = time.monotonic()
        with _Counting() as seen:
            new = walship.open(replica, archive=archive, takeover=True, entry_point_plugins=False)
            with new:
                took = time.monotonic() - started
                taken = new.last_seq
                assert taken >= kill.shipped, f"shipped not taken over: {taken} < {kill.shipped}"
                for i in range(NEW_FRAMES):
                    assert new.append(b"new %d" % i) == taken + 1 + i
                new.rotate()
                assert new.archiver is not None and new.archiver.flush(60)
        FIGURES["promote.takeovers_that_waited_out_the_settle"] += seen.count("gave up waiting")
        FIGURES["promote.fenced_objects_replaced"] += seen.count("was a fenced writer's")
        before = {n: o for n, o in ArchiveStore(url, target.storage_options).list().objects.items()}

        # the old writer, run again, is fenced; it keeps every frame it acknowledged
        with walship.open(old_dir, archive=archive, entry_point_plugins=False) as old:
            with pytest.raises(ArchiveFencedError, match="taken over"):
                old.append(b"after the takeover")
            local = {f.commit_seq: payload_key(f.payload) for f in old.read()}
        assert all(local.get(seq) == key for seq, (key, _t) in kill.acks.items())
        store = ArchiveStore(url, target.storage_options)
        assert store.list().objects == before
        assert verify_archive(store).problems == []

        restore(url, restored, storage_options=target.storage_options)
        with walship.open(restored, read_only=True) as log:
            frames = [(f.commit_seq, bytes(f.payload)) for f in log.read()]
        assert [s for s, _ in frames] == list(range(1, taken + NEW_FRAMES + 1))
        for seq, payload in frames[:taken]:
            assert kill.acks[seq][0] == payload_key(payload), f"commit_seq {seq} altered"
        assert [p for _, p in frames[taken:]] == [b"new %d" % i for i in range(NEW_FRAMES)]
        # the tail saw each frame once, in order, as it is in the archive: the old writer's, what
        # the takeover took, the new writer's (from the first it saw on: it starts with the replica)
        tailed = tail.stop(until_seq=taken + NEW_FRAMES)
        if tailed:
            assert tailed == frames[tailed[0][0] - 1 : tailed[-1][0]], "the tail diverged"
            assert tailed[-1][0] == taken + NEW_FRAMES, "the tail missed the new writer's frames"
            FIGURES["promote.tail_frames"] += len(tailed)
        FIGURES["promote.kills"] += 1
        FIGURES["promote.frames_acknowledged"] += len(kill.acks)
        FIGURES["promote.frames_taken_over"] += taken
        FIGURES["promote.frames_kept_only_by_the_old_writer"] += len(kill.acks) - taken
    finally:
        tail.kill()
    return took


def measure(tmp_path: Path, kind: str, kills: int, interval: float, seed: int) -> None:
    target = new_bucket(s3_server_of(kind))
    rng = random.Random(seed)
    try:
        took = [kill_promote_fence(tmp_path, target, n, interval, rng) for n in range(kills)]
    finally:
        remove_bucket(target)
    FIGURES[f"promote.{kind}.takeover_median_ms"] = round(statistics.median(took) * 1000)
    FIGURES[f"promote.{kind}.takeover_worst_ms"] = round(max(took) * 1000)


def test_kill_promote_fence_on_moto(tmp_path: Path) -> None:
    measure(tmp_path, "moto", 2, 0.25, seed=1414)


def test_kill_promote_fence_on_radosgw(tmp_path: Path) -> None:
    measure(tmp_path, "radosgw", 1, 0.25, seed=1415)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["moto", "radosgw"])
def test_many_kill_promote_fence(tmp_path: Path, kind: str) -> None:
    measure(tmp_path, kind, 10, 0.25, seed=140014)
