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

With an archive (moto's S3 server through s3fs) and retention (``until_archived`` or
``last:N``), the archiver and retention run under the same load, and besides:

* every archived segment is verified as it is archived: a plugin reads it straight from the
  server and checks its BLAKE3 against the segment's at close; a segment removed locally must
  have been archived, and is checked again;
* a monitor checks that every segment since the first is local or durably recorded as archived;
* readers may find a range partly gone locally (retention), but only where every missing frame
  was in a removed segment (checked at the end);
* at the end: ``scan_store(ArchiveReadStore(...))`` verifies the whole archive, a restore returns
  exactly the acknowledged frames, and the local log reopens at ``N + 1``.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from s3server import S3Bucket, moto_endpoint, new_bucket

import walship
from walship.archive import ArchiveReadStore
from walship.archive.restore import restore
from walship.backends.posix import PosixStore
from walship.core.header import parse_segment_name
from walship.core.record import ArchiveRecord
from walship.core.scan import scan_store
from walship.errors import FramesUnavailableError
from walship.plugins.metrics import MetricsPlugin

from .archive_watch import Watch
from .support import FIGURES, make_payload, payload_key

pytestmark = pytest.mark.one_python  # (pyproject.toml: CI runs it on its main Python)

APPENDERS = 16
READERS = 3


def soak(
    path: Path,
    seconds: float,
    seed: int = 1,
    bucket: S3Bucket | None = None,
    keep_local: str = "all",
) -> None:
    options: dict[str, Any] = {}
    watch = metrics = None
    if bucket is not None:
        watch, metrics = Watch(bucket, check_archived=True), MetricsPlugin()
        options = {
            "archive": {
                "url": bucket.url,
                "storage_options": bucket.storage_options,
                "workers": 4,
                "retries": {"attempts": 1000, "backoff": 0.05, "max_backoff": 1},
            },
            "retention": {"keep_local": keep_local},
            "plugins": [watch, metrics],
        }
    log = walship.open(
        path,
        durability="always",
        max_segment_bytes=32 * 1024 if bucket is None else 64 * 1024,
        max_segment_age=0.3 if bucket is None else 0.5,
        entry_point_plugins=False,
        **options,
    )
    acked: dict[int, str] = {}
    gaps: list[tuple[int, int]] = []
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
            try:
                for f in log.read(start, end):
                    assert f.commit_seq == prev + 1, f"read gave {f.commit_seq} after {prev}"
                    key = payload_key(f.payload)
                    known = acked.get(f.commit_seq)
                    assert known is None or known == key, f"commit_seq {f.commit_seq}: wrong frame"
                    prev = f.commit_seq
            except FramesUnavailableError:  # retention removed them: read() never skips a gap
                assert bucket is not None, f"read({start}, {end}) stopped at {prev}"
                gaps.append((prev + 1, end))
            else:
                assert prev == end, f"read({start}, {end}) stopped at {prev}"
            with acked_lock:
                counts["reads"] += 1
                counts["frames_read"] += end - start + 1

    def monitor() -> None:
        durable = last = 0
        next_store_check = 0.0
        while not stop.is_set():
            d = log.durable_seq
            n = log.last_seq
            assert d >= durable, f"durable_seq went back from {durable} to {d}"
            assert n >= last, f"last_seq went back from {last} to {n}"
            assert d <= n, f"durable_seq {d} is past last_seq {n}"
            durable, last = d, n
            counts["monitor_checks"] += 1
            if bucket is not None and time.monotonic() > next_store_check:
                next_store_check = time.monotonic() + 0.25
                check_local_or_archived(path, bucket.url)
                counts["store_checks"] += 1
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
    if bucket is not None:
        counts["archived_during_load"] = log.stats()["archive"]["archived"]
        log.rotate()  # every acknowledged frame in a closed segment: all of them archived
        assert log.archiver is not None and log.archiver.flush(timeout=300)
    stats = log.stats()
    log.close()
    assert stats.get("rotations_size", 0) > 0, "no rotation by size"
    assert stats.get("rotations_age", 0) > 0, "no rotation by age"
    if bucket is None:
        assert scan_store(PosixStore(path)).ok
        with walship.open(path, entry_point_plugins=False) as again:
            frames = list(again.read())
    else:
        assert watch is not None and metrics is not None
        frames = check_archive(path, bucket, stats, watch, metrics, gaps, keep_local)
        counts["archive_checks"] = watch.checks
    assert [f.commit_seq for f in frames] == list(range(1, len(acked) + 1)), "gap or loss"
    assert all(payload_key(f.payload) == acked[f.commit_seq] for f in frames)
    if bucket is not None:
        with walship.open(path, entry_point_plugins=False) as again:
            assert again.last_seq == len(acked)
            assert again.append(b"after") == len(acked) + 1  # the numbering goes on
        FIGURES["soak_archive.seconds"] += round(elapsed)
        FIGURES["soak_archive.appends"] += counts["appends"]
        FIGURES["soak_archive.frames"] += counts["frames"]
        FIGURES["soak_archive.reads"] += counts["reads"]
        FIGURES["soak_archive.segments_archived"] += stats["archive"]["archived"]
        FIGURES["soak_archive.segments_removed"] += stats["archive"]["removed"]
        FIGURES["soak_archive.segments_verified"] += counts["archive_checks"]
        FIGURES["soak_archive.store_checks"] += counts["store_checks"]
        FIGURES["soak_archive.rotations_size"] += stats.get("rotations_size", 0)
        FIGURES["soak_archive.rotations_age"] += stats.get("rotations_age", 0)
        FIGURES["soak_archive.gaps_read"] += len(gaps)
        FIGURES["soak_archive.archived_during_load"] += counts["archived_during_load"]
        return
    FIGURES["soak.seconds"] += round(elapsed)
    FIGURES["soak.appends"] += counts["appends"]
    FIGURES["soak.frames"] += counts["frames"]
    FIGURES["soak.reads"] += counts["reads"]
    FIGURES["soak.frames_read"] += counts["frames_read"]
    FIGURES["soak.monitor_checks"] += counts["monitor_checks"]
    FIGURES["soak.rotations_size"] += stats.get("rotations_size", 0)
    FIGURES["soak.rotations_age"] += stats.get("rotations_age", 0)
    FIGURES["soak.syncs"] += stats.get("syncs", 0)


def check_local_or_archived(path: Path, url: str) -> None:
    """Every segment since the first is local or durably recorded as archived at ``url``."""
    names = [p.name for p in path.iterdir()]  # first the directory, then the (newer) record
    local = {s for n in names if (s := parse_segment_name(n)) is not None}
    record = ArchiveRecord.load(PosixStore(path))
    for seq in range(1, max(local)):
        assert seq in local or record.archived(seq, url) or seq <= record.removed_through, (
            f"segment {seq} is gone locally and not recorded as archived"
        )


def check_archive(
    path: Path,
    bucket: S3Bucket,
    stats: dict[str, Any],
    watch: Watch,
    metrics: MetricsPlugin,
    gaps: list[tuple[int, int]],
    keep_local: str,
) -> list[Any]:
    """The end of an archived soak (see the module docstring); the restored frames."""
    assert not watch.violations, watch.violations[:5]
    assert not stats["plugin_errors"], stats["plugin_errors"]
    archive = stats["archive"]
    closed = sorted(watch.closed)
    assert archive["pending"] == 0 and sorted(set(watch.archived)) == closed
    assert watch.checks >= len(closed) + len(watch.removed)  # each verified when archived
    assert archive["failed_attempts"] == metrics.snapshot()["archive_failures"]
    # a read found a range partly gone only where retention had removed segments
    removed: set[int] = set()
    for seq in watch.removed:
        first, last = watch.ranges[seq]
        if first is not None and last is not None:
            removed.update(range(first, last + 1))
    for lo, hi in gaps:
        missing = set(range(lo, hi + 1)) - removed
        assert not missing, f"read skipped {sorted(missing)[:5]}, never removed"
    local = sorted(s for p in path.iterdir() if (s := parse_segment_name(p.name)) is not None)
    keep = 0 if keep_local == "until_archived" else int(keep_local.split(":")[1])
    assert local == [*closed[len(closed) - keep :], closed[-1] + 1]
    view = ArchiveReadStore(bucket.url, bucket.storage_options)
    scan = scan_store(view)
    assert scan.ok, scan.problems[:3]
    assert [s.segment_seq for s in scan.segments] == closed
    restore(bucket.url, path.parent / "restored", storage_options=bucket.storage_options)
    with walship.open(path.parent / "restored", entry_point_plugins=False) as restored:
        return list(restored.read())


def test_soak(tmp_path: Path) -> None:
    soak(tmp_path / "wal", seconds=15)


@pytest.mark.parametrize("keep_local", ["until_archived", "last:3"])
def test_soak_with_archive_and_retention(tmp_path: Path, keep_local: str) -> None:
    soak(tmp_path / "wal", 5, bucket=new_bucket(moto_endpoint()), keep_local=keep_local)


@pytest.mark.slow
@pytest.mark.timeout(900)
@pytest.mark.parametrize("keep_local", ["until_archived", "last:3"])
def test_soak_with_archive_and_retention_long(tmp_path: Path, keep_local: str) -> None:
    soak(tmp_path / "wal", 90, bucket=new_bucket(moto_endpoint()), keep_local=keep_local)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_soak_long(tmp_path: Path) -> None:
    soak(tmp_path / "wal", seconds=300)
