"""Fenced promotion after a crash (issue 14): a shipping writer in one process
(``ship_writer.py``, durability ``always``, ``archive.ship_interval``), a follower in another
(``walship follow URL DIR``), the writer killed with SIGKILL at a random moment, the follower
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

import json
import logging
import random
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import pytest
from archive_target import s3_server_of
from s3server import S3Bucket, new_bucket, remove_bucket

import walship
from reliability.support import FIGURES, payload_key
from reliability.test_ship_rpo import run_writer
from walship.archive import ArchiveStore
from walship.archive.check import verify_archive
from walship.errors import ArchiveFencedError
from walship.restore import restore

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


def kill_promote_fence(
    tmp_path: Path, target: S3Bucket, n: int, interval: float, rng: random.Random
) -> float:
    """One run (module docstring); returns the takeover's seconds."""
    url = f"{target.url}-p{n}"
    old_dir, replica, restored = (tmp_path / f"{k}-{n}" for k in ("old", "replica", "restored"))
    follower = _follower(url, replica, target)
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
    FIGURES["promote.kills"] += 1
    FIGURES["promote.frames_acknowledged"] += len(kill.acks)
    FIGURES["promote.frames_taken_over"] += taken
    FIGURES["promote.frames_kept_only_by_the_old_writer"] += len(kill.acks) - taken
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
