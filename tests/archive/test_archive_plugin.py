"""The archiver plugin, retention and the durable archive record, on a real Log.

Faults: a store that fails its first K puts, one that never works (the segment stays pending),
a restart with uploads pending. In each case no local segment goes before its verified upload
and nothing is lost."""

from __future__ import annotations

import json
import secrets
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from s3server import FlakyFileSystem, Recorder, wait_until

import walship
from walship.archive import ArchiveReadStore, ArchiveStore
from walship.archive.archiver import backoff_delay
from walship.archive.settings import ArchiveSettings
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.header import parse_segment_name, segment_name
from walship.core.record import RECORD_NAME, ArchiveRecord, load_anchor
from walship.core.scan import scan_store
from walship.errors import (
    ArchiveRecordError,
    CheckpointError,
    ConfigError,
    LogClosedError,
    LogCorruptError,
)

QUICK = {"attempts": 50, "backoff": 0.005, "max_backoff": 0.02}


def mem_url() -> str:
    return f"memory://plugin-{secrets.token_hex(6)}/wal"


def local_segments(store: Any) -> list[int]:
    return sorted(s for n in store.list_names() if (s := parse_segment_name(n)) is not None)


def write_segments(log: walship.Log, count: int, frames: int = 10) -> list[bytes]:
    """Append ``count`` batches, rotating after each; return every payload written."""
    payloads = []
    for s in range(count):
        batch = [f"segment {s} frame {i} ".encode() * 3 for i in range(frames)]
        log.append_batch(batch)
        payloads += batch
        log.rotate()
    return payloads


def open_log(store: Any, url: str, recorder: Recorder | None = None, **archive: Any) -> Any:
    retention = archive.pop("retention", None)
    return walship.open(
        store=store,
        archive={"url": url, "retries": QUICK, **archive},
        retention=retention,
        plugins=[recorder] if recorder else [],
    )


def assert_removed_only_after_archived(rec: Recorder) -> None:
    archived_at: dict[int, int] = {}
    for i, e in enumerate(rec.events):
        if e[0] == "archived":
            archived_at.setdefault(e[1], i)
        if e[0] == "removed":
            assert e[1] in archived_at, f"segment {e[1]} removed before it was archived"


# --- archiving ------------------------------------------------------------------------------


def test_every_closed_segment_is_archived_verified_and_recorded(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "wal")
    url = mem_url()
    rec = Recorder()
    with open_log(store, url, rec, workers=2) as log:
        write_segments(log, 6)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: len(rec.of("archived")) == 6)
        stats = log.stats()["archive"]
        assert stats["archived"] == 6 and stats["uploaded"] == 6 and stats["pending"] == 0
        assert stats["failed_attempts"] == 0 and stats["bytes"] > 0
    assert sorted(rec.seqs("archived")) == [1, 2, 3, 4, 5, 6]
    assert all(e[2].startswith(url) for e in rec.of("archived"))
    record = json.loads((tmp_path / "wal" / RECORD_NAME).read_text())
    assert [e["segment_seq"] for e in record["segments"]] == [1, 2, 3, 4, 5, 6]
    assert all(e["url"] == url for e in record["segments"])
    # the active segment (7) is not closed: not archived; the archive verifies
    view = ArchiveReadStore(url)
    assert view.list_names() == [segment_name(s) for s in range(1, 7)]
    assert scan_store(view).ok


def test_a_store_that_fails_the_first_puts_is_retried_with_every_attempt_reported() -> None:
    flaky = FlakyFileSystem.make(fail_puts=3)
    url = f"{flaky.protocol[0]}://b/wal"
    mem = MemoryStore()
    rec = Recorder()
    with open_log(mem, url, rec, workers=1, retention={"keep_local": "until_archived"}) as log:
        write_segments(log, 4)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: len(rec.of("removed")) == 4)
        assert log.stats()["archive"]["failed_attempts"] == 3
    failed = rec.of("failed")
    assert [(e[1], e[2]) for e in failed] == [(1, 1), (1, 2), (1, 3)]
    assert all("injected failure" in e[3] for e in failed)
    assert_removed_only_after_archived(rec)
    assert flaky.failures == 3
    assert local_segments(mem) == [5]  # only the active segment is left
    assert scan_store(ArchiveReadStore(url)).ok


def test_a_segment_that_keeps_failing_stays_pending_and_local() -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    url = f"{flaky.protocol[0]}://b/wal"
    mem = MemoryStore()
    rec = Recorder()
    retries = {"attempts": 3, "backoff": 0.001, "max_backoff": 0.002}
    with walship.open(
        store=mem,
        archive={"url": url, "retries": retries, "workers": 1},
        retention={"keep_local": "until_archived"},
        plugins=[rec],
    ) as log:
        write_segments(log, 1)
        archiver = log.archiver
        assert archiver is not None
        assert not archiver.flush(timeout=20, retry_stalled=False)
        assert archiver.pending() == [segment_name(1)]
        assert "injected failure" in archiver.stalled()[segment_name(1)]
        assert wait_until(lambda: len(rec.of("failed")) == 3)
        assert [e[2] for e in rec.of("failed")] == [1, 2, 3]
        assert local_segments(mem) == [1, 2]  # never removed
        assert not archiver.flush(timeout=20)  # flush retries it: 3 more attempts
        assert wait_until(lambda: len(rec.of("failed")) == 6)
        flaky.failures_left = 0  # the store comes back
        assert archiver.flush(timeout=20)
        assert wait_until(lambda: rec.seqs("removed") == [1])
        assert archiver.stats()["stalled"] == 2
    assert_removed_only_after_archived(rec)


def test_a_restart_with_uploads_pending_archives_them() -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    url = f"{flaky.protocol[0]}://b/wal"
    mem = MemoryStore()
    retries = {"attempts": 1, "backoff": 0.001, "max_backoff": 0.001}
    with walship.open(store=mem, archive={"url": url, "retries": retries}) as log:
        payloads = write_segments(log, 3)
        assert log.archiver is not None
        assert not log.archiver.flush(timeout=20, retry_stalled=False)
        assert len(log.archiver.pending()) == 3
    assert ArchiveRecord.load(mem).entries() == []  # nothing recorded: nothing archived
    flaky.failures_left = 0
    rec = Recorder()
    with walship.open(
        store=mem, archive={"url": url}, retention={"keep_local": "until_archived"}, plugins=[rec]
    ) as log:
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: sorted(rec.seqs("removed")) == [1, 2, 3])
    assert_removed_only_after_archived(rec)
    from walship.archive.reader import open_archive

    assert [f.payload for f in open_archive(url).read()] == payloads


def test_appends_and_rotations_go_on_while_an_upload_hangs() -> None:
    gate = threading.Event()
    flaky = FlakyFileSystem.make(gate=gate)
    mem = MemoryStore()
    with open_log(mem, f"{flaky.protocol[0]}://b/wal", workers=1) as log:
        write_segments(log, 5)  # returns although the first upload is stuck
        assert log.last_seq == 50 and log.durable_seq == 50
        archiver = log.archiver
        assert archiver is not None
        assert wait_until(lambda: archiver.pending() == [segment_name(s) for s in range(1, 6)])
        assert wait_until(lambda: flaky.puts == 1)  # one worker, stuck in its first put
        time.sleep(0.05)
        assert flaky.puts == 1 and len(archiver.pending()) == 5
        gate.set()
        assert log.archiver.flush(timeout=20)


def test_close_does_not_wait_for_backoff() -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    mem = MemoryStore()
    retries = {"attempts": 100, "backoff": 30, "max_backoff": 60}
    log = walship.open(store=mem, archive={"url": f"{flaky.protocol[0]}://b/w", "retries": retries})
    write_segments(log, 1)
    assert wait_until(lambda: flaky.failures >= 1)
    started = time.monotonic()
    log.close(drain=0)  # (no drain wait: see tests/archive/test_drain.py)
    assert time.monotonic() - started < 10  # the 15-30 s backoff wait was cut short
    assert local_segments(mem) == [1, 2]


@pytest.mark.parametrize("through", ["archiver", "log"])
def test_an_interrupt_in_close_loses_nothing_and_the_next_open_resumes(through: str) -> None:
    """A KeyboardInterrupt inside close()'s wait for the workers (the Python code of
    Thread.join): the interrupt goes on, the archiver is sealed all the same (the upload still
    in flight finishes later and records nothing), the log closes, and the next open archives
    what was pending."""
    gate = threading.Event()
    flaky = FlakyFileSystem.make(gate=gate)
    mem = MemoryStore()
    url = f"{flaky.protocol[0]}://b/wal"
    rec = Recorder()
    log = open_log(mem, url, rec, workers=1)
    write_segments(log, 2)
    archiver = log.archiver
    assert archiver is not None
    assert wait_until(lambda: flaky.puts == 1)  # segment 1 in flight, segment 2 queued
    [worker] = archiver._workers
    join = worker.join

    def interrupted_join(timeout: float | None = None) -> None:
        worker.join = join  # type: ignore[method-assign]  # once: a retry waits as usual
        raise KeyboardInterrupt

    worker.join = interrupted_join  # type: ignore[method-assign]
    opener = threading.Timer(0.3, gate.set)  # the upload in flight finishes after the interrupt
    opener.start()
    with pytest.raises(KeyboardInterrupt):
        archiver.close() if through == "archiver" else log.close(drain=0)
    join(timeout=20)
    assert not worker.is_alive()
    assert not archiver.record.archived(1, archiver.url) and rec.seqs("archived") == []
    log.close()  # (again, through the log: idempotent)
    assert log.closed and archiver.stats()["archived"] == 0
    with open_log(mem, url) as again:
        assert again.archiver is not None and again.archiver.flush(timeout=20)
        assert again.archiver.record.archived(1, again.archiver.url)
        assert again.archiver.record.archived(2, again.archiver.url)


def test_falling_behind_fires_archive_lagging_once_per_crossing() -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    mem = MemoryStore()
    rec = Recorder()
    retries = {"attempts": 1000, "backoff": 0.05, "max_backoff": 0.05}
    with walship.open(
        store=mem,
        archive={"url": f"{flaky.protocol[0]}://b/w", "retries": retries, "lag_warning": 2},
        plugins=[rec],
    ) as log:
        write_segments(log, 5)
        assert wait_until(lambda: len(rec.of("lagging")) == 1)
        assert rec.of("lagging")[0][1:] == (3, segment_name(1))
        assert log.archiver is not None
        stats = log.archiver.stats()
        assert stats["lagging"] and stats["lag_warnings"] == 1 and stats["max_pending"] == 5
        flaky.failures_left = 0
        assert log.archiver.flush(timeout=20)
        assert not log.archiver.stats()["lagging"]
    assert len(rec.of("lagging")) == 1


def test_backoff_grows_exponentially_with_jitter_and_a_cap() -> None:
    import random

    rng = random.Random(1)
    delays = [backoff_delay(a, 0.5, 8.0, rng) for a in range(1, 10)]
    for attempt, d in enumerate(delays, start=1):
        capped = min(8.0, 0.5 * 2 ** (attempt - 1))
        assert capped / 2 <= d <= capped
    assert len({round(d, 6) for d in delays}) == len(delays)  # jittered


# --- retention ------------------------------------------------------------------------------


@pytest.mark.parametrize(("keep", "left"), [("all", 7), ("until_archived", 1), ("last:2", 3)])
def test_retention_policies(keep: str, left: int) -> None:
    mem = MemoryStore()
    rec = Recorder()
    with open_log(mem, mem_url(), rec, retention={"keep_local": keep}) as log:
        payloads = write_segments(log, 6)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: len(local_segments(mem)) == left)
        kept = local_segments(mem)
        assert kept[-1] == 7  # never the active segment
        assert log.stats()["segments"] == left
        first_kept = (kept[0] - 1) * 10 + 1
        assert [f.payload for f in log.read()] == payloads[first_kept - 1 :]
    assert_removed_only_after_archived(rec)
    assert all(e[2] == keep for e in rec.of("removed"))


def test_checkpoint_holds_back_retention_and_survives_a_restart() -> None:
    mem = MemoryStore()
    url = mem_url()
    with open_log(mem, url, retention={"keep_local": "until_archived"}) as log:
        log.append_batch([b"early"] * 25)
        log.checkpoint(20)  # segment 1 will hold 1..25: above the checkpoint, it stays
        log.rotate()
        write_segments(log, 5)  # segments 2..6 hold 26..35, ..., 66..75
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        time.sleep(0.05)
        assert local_segments(mem) == [1, 2, 3, 4, 5, 6, 7]
        log.checkpoint(25)
        assert local_segments(mem) == [2, 3, 4, 5, 6, 7]
    with open_log(mem, url, retention={"keep_local": "until_archived"}) as log:
        assert log.checkpoint_seq == 25
        assert local_segments(mem) == [2, 3, 4, 5, 6, 7]
        log.checkpoint(55)
        assert local_segments(mem) == [5, 6, 7]
        log.checkpoint(10)  # backwards: allowed, removes nothing more
        assert local_segments(mem) == [5, 6, 7]
        assert next(f.commit_seq for f in log.read()) == 56


@pytest.mark.parametrize("bad", [-1, 10**9, 2.5, "7", None])
def test_checkpoint_refuses_bad_values(bad: Any) -> None:
    with walship.open(store=MemoryStore()) as log:
        log.append(b"x")
        with pytest.raises(CheckpointError, match="checkpoint"):
            log.checkpoint(bad)
        log.checkpoint(1)  # without an archive it is kept too
        assert log.checkpoint_seq == 1
    with pytest.raises(LogClosedError):
        log.checkpoint(1)


def test_after_retention_open_and_verify_are_anchored(tmp_path: Path) -> None:
    store = PosixStore(tmp_path / "wal")
    url = mem_url()
    with open_log(store, url, retention={"keep_local": "last:1"}) as log:
        write_segments(log, 5)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: local_segments(store) == [5, 6])
    with walship.open(tmp_path / "wal") as log:  # no archive configured: still anchored
        assert log.recovery.anchored and log.recovery.segments == 2
        assert next(f.commit_seq for f in log.read()) == 41
    anchor = load_anchor(PosixStore(tmp_path / "wal"))
    assert anchor is not None
    scan = scan_store(PosixStore(tmp_path / "wal"), anchor=anchor)
    assert scan.ok and scan.anchored and scan.segments[0].chain_ok
    # the anchor is the archived segment 4's hash
    m4 = ArchiveStore(url).stat(segment_name(4))
    assert m4 is not None and m4.blake3 == anchor
    # a record whose anchor does not match the first local segment is caught
    path = tmp_path / "wal" / RECORD_NAME
    doc = json.loads(path.read_text())
    doc["segments"][0]["blake3"] = "00" * 32
    path.write_text(json.dumps(doc))
    with pytest.raises(LogCorruptError, match=segment_name(5)):
        walship.open(tmp_path / "wal")


def test_a_crash_during_retention_keeps_the_log_openable() -> None:
    mem = MemoryStore()
    url = mem_url()
    with open_log(mem, url, retention={"keep_local": "until_archived"}) as log:
        write_segments(log, 4)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: local_segments(mem) == [5])
    # the segment went, the record still lists older entries (as if the prune never ran)
    record = ArchiveRecord.load(mem)
    assert [e.segment_seq for e in record.entries()] == [4]
    mem.crash()
    with walship.open(store=mem) as log:
        assert log.recovery.anchored


def test_an_invalid_record_stops_open_with_its_name() -> None:
    mem = MemoryStore()
    with walship.open(store=mem) as log:
        log.append(b"x")
    mem.write_atomic(RECORD_NAME, b"{not json")
    with pytest.raises(ArchiveRecordError, match=RECORD_NAME):
        walship.open(store=mem)


def test_a_new_archive_url_archives_the_local_segments_again() -> None:
    mem = MemoryStore()
    first, second = mem_url(), mem_url()
    with open_log(mem, first) as log:
        write_segments(log, 2)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
    with open_log(mem, second) as log:
        assert log.archiver is not None and log.archiver.flush(timeout=20)
    assert ArchiveReadStore(second).list_names() == [segment_name(1), segment_name(2)]


# --- configuration --------------------------------------------------------------------------


def test_missing_keys_take_their_defaults() -> None:
    s = ArchiveSettings.from_mapping({"url": "memory://x"})
    assert (s.workers, s.compression, s.lag_warning, s.storage_options) == (4, "none", 64, {})
    assert (s.retries.attempts, s.retries.backoff, s.retries.max_backoff) == (10, 0.5, 60.0)


@pytest.mark.parametrize(
    ("archive", "retention", "message"),
    [
        # walship.open validates its arguments with the config's model, in the config's words
        ({}, None, r"^walship\.open: archive\.url: missing, expected an fsspec URL"),
        ({"url": ""}, None, r"archive\.url = '': expected an fsspec URL"),
        ({"url": "memory://x", "wrokers": 2}, None, r"archive\.wrokers: .*did you mean 'workers'"),
        ({"url": "memory://x", "workers": 0}, None, r"archive\.workers = 0: .*from 1 to 256$"),
        ({"url": "memory://x", "compression": "lz4"}, None, r"compression = 'lz4': .*none"),
        ({"url": "memory://x", "retries": {"attempts": 0}}, None, r"archive\.retries\.attempts"),
        ({"url": "memory://x", "retries": {"bakoff": 1}}, None, r"did you mean 'backoff'"),
        ({"url": "memory://x", "lag_warning": "many"}, None, r"archive\.lag_warning"),
        (
            {"url": "memory://x", "storage_options": "secret=hunter2"},
            None,
            r"archive\.storage_options = <hidden>: expected a mapping of keys to values$",
        ),
        (None, {"keep_local": "until_archived"}, r"retention\.keep_local = .*without an archive"),
        ({"url": "memory://x"}, {"keep_local": "last:x"}, r"retention\.keep_local = 'last:x'"),
        ({"url": "memory://x"}, {"keep_locale": "all"}, r"retention\.keep_locale: unknown key"),
        ({"url": "nosuch://x"}, None, r"archive\.url = 'nosuch://x': .*no protocol 'nosuch'"),
    ],
)
def test_bad_archive_and_retention_settings_are_named(
    archive: Any, retention: Any, message: str
) -> None:
    mem = MemoryStore()
    with pytest.raises(walship.WalshipError, match=message) as e:
        walship.open(store=mem, archive=archive, retention=retention)
    assert "hunter2" not in str(e.value)
    if isinstance(e.value, ConfigError):
        assert mem.list_names() == []  # refused before anything was written
    walship.open(store=mem).close()  # and the store was left unlocked


def test_import_walship_does_not_load_fsspec() -> None:
    import subprocess
    import sys

    code = (
        "import sys, walship; "
        "bad = [m for m in ('fsspec', 's3fs', 'pydantic', 'zstandard', 'walship.archive.restore') "
        "if m in sys.modules]; print(bad)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_python_and_yaml_archive_settings_share_their_limits(tmp_path: Path) -> None:
    from walship.archive.settings import ArchiveSettings, RetentionPolicy
    from walship.config import load_config
    from walship.errors import ConfigError

    cfg = tmp_path / "w.yaml"
    cfg.write_text("archive:\n  url: memory://limits\n  retries: {attempts: 5000}\n")
    with pytest.raises(ConfigError, match=r"attempts.*from 1 to 1000"):
        load_config(cfg)
    cfg.write_text("archive:\n  url: memory://limits\n  retries: {backoff: 2h}\n")
    with pytest.raises(ConfigError, match=r"backoff.*at most 3600s"):
        load_config(cfg)
    with pytest.raises(ConfigError, match="max_backoff must be at least backoff"):
        ArchiveSettings.from_mapping(
            {"url": "memory://x", "retries": {"backoff": 10, "max_backoff": 1}}
        )
    with pytest.raises(ConfigError, match="N >= 1"):
        RetentionPolicy.parse("last:0")


def test_read_never_skips_frames_retention_removed(tmp_path: Path) -> None:
    from walship.errors import FramesUnavailableError

    archive = {"url": (tmp_path / "bucket").as_uri()}
    with walship.open(
        tmp_path / "wal", archive=archive, retention={"keep_local": "until_archived"}
    ) as log:
        log.checkpoint(0)  # nothing may be removed yet
        for i in range(1, 7):
            log.append(b"r%d" % i)
            if i % 2 == 0:
                log.rotate()  # segments {1,2} {3,4} {5,6}, then an empty active one
        assert log.archiver is not None and log.archiver.flush(timeout=30)
        replay = log.read(from_seq=1)
        assert next(replay).commit_seq == 1
        log.checkpoint(4)  # retention removes {1,2} and {3,4} while the replay runs
        assert wait_until(lambda: log.first_seq == 5)
        got = []
        with pytest.raises(FramesUnavailableError, match="commit_seq 3"):
            for f in replay:  # the segment it was reading stays readable; the next is gone
                got.append(f.commit_seq)
        assert got == [2]  # a gap is an error, never skipped
        with pytest.raises(FramesUnavailableError, match="first local frame is 5"):
            list(log.read(from_seq=3))
        assert [f.commit_seq for f in log.read()] == [5, 6]  # the default: what is local
    with walship.open(tmp_path / "wal") as log:
        assert log.first_seq == 5
        with pytest.raises(FramesUnavailableError):
            list(log.read(from_seq=1))


def test_a_conflict_stalls_at_once_with_its_error() -> None:
    """Different content under a segment's name is no network blip: one attempt, stalled."""
    url = mem_url()
    planted = MemoryStore()
    with walship.open(store=planted) as log:
        write_segments(log, 1, frames=3)
    rec = Recorder()
    retries = {"attempts": 5, "backoff": 0.2, "max_backoff": 0.2}
    with open_log(MemoryStore(), url, rec, retries=retries) as other:
        ArchiveStore(url).put(segment_name(1), planted.read(segment_name(1)))
        started = time.monotonic()
        write_segments(other, 1)  # segment 1 again, other content
        archiver = other.archiver
        assert archiver is not None
        assert not archiver.flush(timeout=20, retry_stalled=False)
        assert time.monotonic() - started < 0.2 * 4 / 2  # no backoff waited
        assert wait_until(lambda: len(rec.of("failed")) == 1)
        assert archiver.conflicts() == [segment_name(1)]
        assert "refusing to overwrite" in archiver.stalled()[segment_name(1)]
        assert archiver.last_errors() == archiver.stalled()
        assert archiver.stats()["failed_attempts"] == 1


def test_a_backlog_found_at_open_is_no_lag_warning() -> None:
    """A catch-up (open, requeue, flush) of more than lag_warning segments does not warn: the
    warning is for a running log falling behind."""
    mem = MemoryStore()
    with walship.open(store=mem) as log:
        write_segments(log, 5)
    rec = Recorder()
    with open_log(mem, mem_url(), rec, lag_warning=2) as log:
        assert log.archiver is not None
        log.archiver.requeue()
        assert log.archiver.flush(timeout=20)
        assert rec.of("lagging") == [] and log.archiver.stats()["lag_warnings"] == 0
        assert log.archiver.stats()["max_pending"] >= 3


def test_a_failed_attempt_shows_its_error_while_it_waits_to_retry() -> None:
    flaky = FlakyFileSystem.make(fail_puts=10**6)
    retries = {"attempts": 3, "backoff": 30, "max_backoff": 30}
    archive = {"url": f"{flaky.protocol[0]}://b/w", "retries": retries, "drain_on_close": 0}
    with walship.open(store=MemoryStore(), archive=archive) as log:
        write_segments(log, 1)
        archiver = log.archiver
        assert archiver is not None
        assert wait_until(lambda: bool(archiver.last_errors()))
        assert archiver.stalled() == {}  # between attempts, not stalled
        assert segment_name(1) in archiver.last_errors()
        started = time.monotonic()
    assert time.monotonic() - started < 10  # close cuts the backoff wait short
