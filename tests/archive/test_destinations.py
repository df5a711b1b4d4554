"""Several destinations (``archives:``): every closed segment reaches each one, verified, with
its own workers, retries and record entries; a destination down keeps the local segments
(retention needs every destination), is named by status, stats, metrics and hooks, and never
holds the others back; it catches up once it is back; each destination restores the log byte
for byte; a writer killed with uploads pending finishes them at the next open."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from s3server import FlakyFileSystem, Recorder, S3Bucket, remove_bucket, wait_until

import walship
from walship.archive import ArchiveReadStore, ArchiveStore
from walship.archive.attempts import ERRORS_NAME, load_attempts
from walship.archive.backpressure import Backpressure
from walship.archive.destinations import AllGates, Destinations
from walship.archive.restore import restore
from walship.archive.status import gather_status
from walship.archive.wiring import build_archiving
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.config import load_config
from walship.core.header import parse_segment_name, segment_name
from walship.core.record import RECORD_NAME, ArchiveRecord
from walship.core.scan import scan_store
from walship.errors import ArchiveBackpressureError, CheckpointError, ConfigError

ROOT = Path(__file__).resolve().parents[2]
QUICK = {"attempts": 3, "backoff": 0.005, "max_backoff": 0.02}


def mem_url() -> str:
    return f"memory://dests-{secrets.token_hex(6)}/wal"


def flaky_url(fails: int = 10**9) -> tuple[Any, str]:
    """A destination whose puts fail (``fails`` times; by default until told otherwise)."""
    fs = FlakyFileSystem.make(fail_puts=fails)
    return fs, f"{fs.protocol[0]}://bucket/wal"


def local_segments(store: Any) -> list[int]:
    return sorted(s for n in store.list_names() if (s := parse_segment_name(n)) is not None)


def write_segments(log: walship.Log, count: int, tag: str = "") -> list[bytes]:
    payloads = []
    for s in range(count):
        batch = [f"{tag}segment {s} frame {i} ".encode() * 4 for i in range(8)]
        log.append_batch(batch)
        payloads += batch
        log.rotate()
    return payloads


def destination(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "retries": QUICK, "workers": 2, **extra}


def frames_of(directory: Path) -> list[bytes]:
    with walship.open(directory) as log:
        return [f.payload for f in log.read()]


# --- both destinations fill -----------------------------------------------------------------


def test_every_segment_reaches_every_destination_with_its_own_record_entry(
    tmp_path: Path,
) -> None:
    a, b = mem_url(), (tmp_path / "b").as_uri()
    rec = Recorder()
    store = PosixStore(tmp_path / "wal")
    with walship.open(store=store, archives=[destination(a), destination(b)], plugins=[rec]) as log:
        assert isinstance(log.archiver, Destinations)
        assert [d.url for d in log.archiver.destinations] == [a, b]
        assert log.archiver.destination(b + "/").url == b
        write_segments(log, 3)
        assert log.archiver.flush(timeout=20)
        stats = log.stats()["archive"]
        assert stats is not None and stats["destinations"] is not None
        assert [(d["url"], d["archived"]) for d in stats["destinations"]] == [(a, 3), (b, 3)]
        assert stats["archived"] == 6 and stats["pending"] == 0 and stats["url"] == f"{a}, {b}"
    for url in (a, b):
        assert scan_store(ArchiveReadStore(url)).ok
        assert [e.segment_seq for e in ArchiveRecord.load(store).entries(url)] == [1, 2, 3]
    archived = {(seq, url.split("/segment_")[0]) for _, seq, url, *_ in rec.of("archived")}
    assert archived == {(s, u) for s in (1, 2, 3) for u in (a, b)}


def test_one_destination_is_a_plain_archiver_with_destinations_stat_none() -> None:
    with walship.open(store=MemoryStore(), archives=[destination(mem_url())]) as log:
        assert not isinstance(log.archiver, Destinations)
        stats = log.stats()["archive"]
        assert stats is not None and stats["destinations"] is None


# --- one destination down -------------------------------------------------------------------


def test_a_destination_down_keeps_local_segments_names_its_url_and_catches_up(
    tmp_path: Path,
) -> None:
    good = mem_url()
    flaky, bad = flaky_url()
    failed: list[tuple[int, str]] = []

    class Failures:
        @walship.hookimpl
        def archive_failed(self, segment_seq: int, url: str) -> None:
            failed.append((segment_seq, url))

    store = PosixStore(tmp_path / "wal")
    log = walship.open(
        store=store,
        archives=[destination(good), destination(bad)],
        retention={"keep_local": "until_archived"},
        plugins=[Failures()],
    )
    try:
        write_segments(log, 3)
        assert not log.archiver.flush(timeout=20)  # type: ignore[union-attr]
        # the good destination filled; nothing local went, as the bad one misses all
        assert scan_store(ArchiveReadStore(good)).ok
        assert len(scan_store(ArchiveReadStore(good)).segments) == 3
        assert local_segments(store) == [1, 2, 3, 4]
        assert {url for _, url in failed} == {bad}
        stats = log.stats()["archive"]
        assert stats is not None and stats["destinations"] is not None
        by_url = {d["url"]: d for d in stats["destinations"]}
        assert by_url[good]["pending"] == 0 and by_url[good]["archived"] == 3
        assert by_url[bad]["stalled_now"] == 3 and by_url[bad]["failed_attempts"] >= 9
        assert stats["pending"] == 3 and stats["stalled_now"] == 3 and stats["removed"] == 0
        errors = log.archiver.last_errors()  # type: ignore[union-attr]
        assert set(errors) == {segment_name(s) for s in (1, 2, 3)}
        assert all(e.startswith(f"{bad}: ") for e in errors.values())
        # what another process sees: walship status
        st = gather_status(tmp_path / "wal", [good, bad])
        sides = {d.url: d for d in st.destinations}
        assert sides[good].pending == [] and sides[good].last_archived_segment == segment_name(3)
        assert [p.name for p in sides[bad].pending] == [segment_name(s) for s in (1, 2, 3)]
        assert {p.state for p in sides[bad].pending} == {"stalled"}
        assert all(bad in (p.error or "") for p in st.pending)
        assert st.last_archived_segment is None  # the destination furthest behind has none
        assert {(n, u) for n, u in load_attempts(store)} == {
            (segment_name(s), bad) for s in (1, 2, 3)
        }
        # it comes back: the stalled segments go, and retention then removes them locally
        flaky.failures_left = 0
        assert log.archiver.flush(timeout=20)  # type: ignore[union-attr]
        assert wait_until(lambda: local_segments(store) == [4])
        assert scan_store(ArchiveReadStore(bad)).ok
        assert gather_status(tmp_path / "wal", [good, bad]).pending == []
        assert load_attempts(store) == {}
    finally:
        log.close()


def test_prometheus_names_each_destination(tmp_path: Path) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    from walship.plugins.prometheus import PrometheusPlugin

    registry = prometheus_client.CollectorRegistry()
    good = mem_url()
    _, bad = flaky_url()
    plugin = PrometheusPlugin(registry=registry)
    with walship.open(
        tmp_path / "wal", archives=[destination(good), destination(bad)], plugins=[plugin]
    ) as log:
        write_segments(log, 2)
        log.archiver.flush(timeout=20)  # type: ignore[union-attr]

        def value(name: str, url: str) -> float | None:
            v: float | None = registry.get_sample_value(name, {"url": url})
            return v

        assert value("walship_archive_destination_uploads_total", good) == 2
        assert value("walship_archive_destination_uploads_total", bad) == 0
        assert value("walship_archive_destination_pending_segments", good) == 0
        assert value("walship_archive_destination_pending_segments", bad) == 2
        assert value("walship_archive_destination_stalled_segments", bad) == 2
        assert (value("walship_archive_destination_failures_total", bad) or 0) >= 6
        assert (value("walship_archive_destination_pending_bytes", bad) or 0) > 0
        assert registry.get_sample_value("walship_archive_pending_segments") == 2
        assert registry.get_sample_value("walship_archive_uploads_total") == 2
        failures = value("walship_archive_destination_failures_total", bad) or 0
    # reopened in the same process: each destination's counters go on from the old log's
    with walship.open(
        tmp_path / "wal", archives=[destination(good), destination(bad)], plugins=[plugin]
    ) as log:
        write_segments(log, 1)
        log.archiver.flush(timeout=20)  # type: ignore[union-attr]
        assert plugin.followed()[0] is log
        [now_good, now_bad] = log.stats()["archive"]["destinations"]
        assert now_good["url"] == good and now_good["uploaded"] >= 1
        assert value("walship_archive_destination_uploads_total", good) == (
            2 + now_good["uploaded"]
        )
        assert value("walship_archive_destination_uploads_total", bad) == 0
        # (at least: the old log may have retried once more before it closed)
        assert (value("walship_archive_destination_failures_total", bad) or 0) >= (
            failures + now_bad["failed_attempts"]
        )
    plugin.close()


def test_backpressure_counts_what_some_destination_misses(tmp_path: Path) -> None:
    good = mem_url()
    _, bad = flaky_url()
    with walship.open(
        tmp_path / "wal",
        archives=[
            destination(good),
            destination(bad, max_pending=600, backpressure_timeout=0.2),
        ],
    ) as log:
        with pytest.raises(ArchiveBackpressureError, match=bad.replace("/", ".")):
            for _ in range(20):
                write_segments(log, 1)
        assert log.stats()["archive"]["backpressure"]  # type: ignore[index]


def test_shut_destinations_make_an_append_wait_their_longest_timeout_not_their_sum() -> None:
    def gate(url: str, timeout: float) -> Backpressure:
        g = Backpressure(100, timeout, url, lambda *a, **k: None, lambda: None)
        g.update(200, "segment_0000000000000001.aedbwal")  # shut
        return g

    first, second = gate("s3://first", 1.0), gate("s3://second", 0.5)
    threading.Timer(0.3, first.update, (0, None)).start()  # the first opens after 0.3 s
    start = time.monotonic()
    with pytest.raises(ArchiveBackpressureError, match="s3://second"):
        AllGates([first, second]).wait()
    # the second's 0.5 s counted from the start of the wait (waiting for the first, then
    # 0.5 s more for the second, took 0.8 s)
    assert time.monotonic() - start < 0.75
    with pytest.raises(ArchiveBackpressureError, match="s3://second"):
        AllGates([first, second]).wait(since=time.monotonic() - 10)  # past its timeout: at once


def test_a_checkpoint_goes_to_every_destination_and_names_one_that_failed(
    tmp_path: Path,
) -> None:
    a, b = mem_url(), (tmp_path / "b").as_uri()
    flaky, bad = flaky_url()
    with walship.open(tmp_path / "wal", archives=[destination(a), destination(b)]) as log:
        write_segments(log, 2)
        log.checkpoint(8, snapshot=b"state at 8")
        for url in (a, b):
            assert list(ArchiveStore(url).list().checkpoint_manifests) == [8]
    with walship.open(tmp_path / "wal2", archives=[destination(a + "2"), destination(bad)]) as log:
        write_segments(log, 2)
        with pytest.raises(CheckpointError, match=f"not stored at 1 of 2 destinations \\({bad}"):
            log.checkpoint(8, snapshot=b"state at 8")
        assert list(ArchiveStore(a + "2").list().checkpoint_manifests) == [8]
        flaky.failures_left = 0


# --- on S3 (moto and radosgw) ---------------------------------------------------------------


def second_prefix(target: S3Bucket) -> S3Bucket:
    return S3Bucket(target.server, target.bucket, "replica")


def missing_bucket(target: S3Bucket) -> S3Bucket:
    """A bucket on the same server that does not exist yet: a destination that is down."""
    return S3Bucket(target.server, f"walship-{secrets.token_hex(6)}")


def s3_destination(bucket: S3Bucket) -> dict[str, Any]:
    return destination(bucket.url, storage_options=bucket.storage_options)


def test_on_s3_both_destinations_fill_and_each_restores_byte_for_byte(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    replica = second_prefix(s3_target)
    with walship.open(
        tmp_path / "wal",
        archives=[s3_destination(s3_target), s3_destination(replica)],
        retention={"keep_local": "until_archived"},
    ) as log:
        written = write_segments(log, 3)
        assert log.archiver.flush(timeout=60)  # type: ignore[union-attr]
    names = [segment_name(s) for s in (1, 2, 3)]
    for bucket in (s3_target, replica):
        assert [n for n in bucket.names() if n.endswith(".aedbwal")] == names
        out = tmp_path / f"restored-{bucket.prefix}"
        restore(bucket.url, out, storage_options=bucket.storage_options)
        assert frames_of(out) == written
        for name in names:
            assert bucket.get(name) == (out / name).read_bytes()


def test_on_s3_a_destination_down_holds_retention_and_catches_up(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    down = missing_bucket(s3_target)
    store = PosixStore(tmp_path / "wal")
    log = walship.open(
        store=store,
        archives=[s3_destination(s3_target), s3_destination(down)],
        retention={"keep_local": "until_archived"},
    )
    try:
        written = write_segments(log, 2)
        assert not log.archiver.flush(timeout=60)  # type: ignore[union-attr]
        assert local_segments(store) == [1, 2, 3]
        assert [n for n in s3_target.names() if n.endswith(".aedbwal")] == [
            segment_name(1),
            segment_name(2),
        ]
        stats = log.stats()["archive"]
        assert stats is not None and stats["destinations"] is not None
        assert stats["destinations"][1]["url"] == down.url
        assert stats["destinations"][1]["stalled_now"] == 2
        side = gather_status(tmp_path / "wal", [s3_target.url, down.url]).destinations[1]
        assert side.url == down.url and len(side.pending) == 2
        down.server.create_bucket(down.bucket)  # back
        assert log.archiver.flush(timeout=60)  # type: ignore[union-attr]
        assert wait_until(lambda: local_segments(store) == [3])
    finally:
        log.close()
    try:
        out = tmp_path / "restored"
        restore(down.url, out, storage_options=down.storage_options)
        assert frames_of(out) == written
    finally:
        remove_bucket(down)


def test_on_s3_a_killed_writer_finishes_uploading_to_both_at_its_next_open(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    down = missing_bucket(s3_target)
    config = tmp_path / "walship.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": str(tmp_path / "wal")},
                "archives": [s3_destination(s3_target), s3_destination(down)],
                "retention": {"keep_local": "until_archived"},
            }
        )
    )
    child = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent(
                f"""
                import sys, time, walship
                log = walship.open(config={str(config)!r})
                for s in range(3):
                    log.append_batch([b"killed %d %d" % (s, i) for i in range(6)])
                    log.rotate()
                log.append(b"in the active segment")
                log.archiver.destinations[0].flush(timeout=60)
                print("ready", flush=True)
                time.sleep(600)
                """
            ),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ, PYTHONPATH=f"{ROOT}:{ROOT / 'tests'}"),
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
    finally:
        os.kill(child.pid, signal.SIGKILL)
        child.wait()
    store = PosixStore(tmp_path / "wal")
    assert local_segments(store) == [1, 2, 3, 4]  # nothing went: the second destination missed all
    down.server.create_bucket(down.bucket)
    try:
        with walship.open(config=config) as log:
            assert log.archiver is not None and log.archiver.flush(timeout=60)
            assert wait_until(lambda: local_segments(store) == [4])
            log.rotate()
            assert log.archiver.flush(timeout=60)
        expected = [b"killed %d %d" % (s, i) for s in range(3) for i in range(6)]
        expected.append(b"in the active segment")
        for i, bucket in enumerate((s3_target, down)):
            out = tmp_path / f"restored-{i}"
            restore(bucket.url, out, storage_options=bucket.storage_options)
            assert frames_of(out) == expected
        record = ArchiveRecord.load(store)
        assert {e.url for e in record.entries()} <= {s3_target.url, down.url}
    finally:
        remove_bucket(down)


# --- the config -----------------------------------------------------------------------------


def write_config(tmp_path: Path, body: dict[str, Any]) -> Path:
    path = tmp_path / "walship.yaml"
    path.write_text(yaml.safe_dump({"store": {"path": str(tmp_path / "wal")}, **body}))
    return path


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (
            {"archive": {"url": "memory://a"}, "archives": [{"url": "memory://b"}]},
            "archive = {...}: expected no archive: section beside archives:",
        ),
        (
            {"archives": [{"url": "memory://a"}, {"url": "memory://a/"}]},
            "archives[1].url = 'memory://a/': expected a URL no other destination has "
            "(archives[0].url is the same)",
        ),
        ({"archives": []}, "archives = [...]: expected a list of at least one destination"),
        ({"archives": {"url": "memory://a"}}, "archives = {...}: expected a list"),
        (
            {"archives": [{"url": "memory://a"}, {"url": "memory://b", "workerz": 2}]},
            "archives[1].workerz: unknown key (did you mean 'workers'?)",
        ),
        (
            {"archives": [{"url": "memory://a"}, {"url": "nope://b"}]},
            "archives[1].url = 'nope://b': expected an fsspec URL",
        ),
    ],
)
def test_config_errors_are_one_line_each(
    tmp_path: Path, body: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as e:
        load_config(write_config(tmp_path, body))
    assert "\n" not in str(e.value)
    assert message in str(e.value)


def test_build_archiving_refuses_the_same_errors() -> None:
    with pytest.raises(ConfigError, match=r"^archive and archives: give one of them"):
        build_archiving({"url": "memory://a"}, None, [{"url": "memory://b"}])
    with pytest.raises(ConfigError, match=r"^archives\[1\].url: 'memory://a' is the URL of"):
        build_archiving(None, None, [{"url": "memory://a"}, {"url": "memory://a/"}])
    with pytest.raises(ConfigError, match=r"^archives\[1\].workers: "):
        build_archiving(None, None, [{"url": "memory://a"}, {"url": "memory://b", "workers": 0}])
    with pytest.raises(ConfigError, match=r"^archives: expected at least one destination"):
        build_archiving(None, None, [])


def test_retention_with_archives_needs_no_archive_section(tmp_path: Path) -> None:
    cfg = load_config(
        write_config(
            tmp_path,
            {"archives": [{"url": mem_url()}], "retention": {"keep_local": "until_archived"}},
        )
    )
    assert [d.url for d in cfg.destinations] == [cfg.archives[0].url]  # type: ignore[index]


def test_walship_status_prints_each_destination(tmp_path: Path) -> None:
    good = (tmp_path / "good").as_uri()
    bad = (tmp_path / "bad").as_uri()
    (tmp_path / "bad").write_text("a file, not a directory: every put fails")
    config = write_config(
        tmp_path,
        {"archives": [destination(good), destination(bad, upload_process=False)]},
    )
    with walship.open(config=config) as log:
        write_segments(log, 1)
        log.archiver.flush(timeout=20)  # type: ignore[union-attr]
    from click.testing import CliRunner

    from walship.cli import build_cli

    out = CliRunner().invoke(build_cli(), ["status", "-c", str(config)])
    assert out.exit_code == 0, out.output
    assert f"archive     {good}\n" in out.output and f"archive     {bad}\n" in out.output
    bad_part = out.output.split(f"archive     {bad}\n")[1]
    assert "pending     1 segments" in bad_part and "stalled" in bad_part
    result = CliRunner().invoke(build_cli(), ["status", "-c", str(config), "--json"])
    doc = json.loads(result.output)
    assert [d["url"] for d in doc["destinations"]] == [good, bad]
    assert doc["destinations"][0]["pending"] == [] and doc["pending_count"] == 1


# --- formats --------------------------------------------------------------------------------


def test_a_record_and_errors_file_from_before_archives_still_read(tmp_path: Path) -> None:
    url = mem_url()
    store = PosixStore(tmp_path / "wal")
    with walship.open(store=store, archive=destination(url)) as log:
        write_segments(log, 2)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
    doc = json.loads(store.read(RECORD_NAME))
    assert [e["url"] for e in doc["segments"]] == [url, url]  # one entry per segment, as before
    store.write_atomic(
        ERRORS_NAME,
        json.dumps(
            {
                "format": "walship-archive-errors",
                "version": 1,
                "segments": {
                    segment_name(3): {
                        "url": url,
                        "error": "503",
                        "attempts": 2,
                        "state": "retrying",
                        "conflict": False,
                        "at_micros": 1,
                    }
                },
            }
        ).encode(),
    )
    assert load_attempts(store)[segment_name(3), url].error == "503"
    second = mem_url()
    with walship.open(store=store, archives=[destination(url), destination(second)]) as log:
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert log.stats()["archive"]["destinations"][0]["archived"] == 0  # type: ignore[index]
    record = ArchiveRecord.load(store)
    assert [(e.segment_seq, e.url) for e in record.entries()] == [
        (1, url),
        (1, second),
        (2, url),
        (2, second),
    ]


# --- live shipping, the CLI, the backpressure hook ------------------------------------------


def test_live_shipping_runs_per_destination_and_restores_the_active_segment_from_each(
    tmp_path: Path,
) -> None:
    urls = [(tmp_path / "a").as_uri(), (tmp_path / "b").as_uri()]
    shipping = [destination(u, ship_interval=3600, upload_process=False) for u in urls]
    log = walship.open(tmp_path / "wal", archives=shipping)
    try:
        written = write_segments(log, 1)
        log.append_batch([b"live %d" % i for i in range(5)])
        written += [b"live %d" % i for i in range(5)]
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        for d in log.archiver.destinations:  # type: ignore[attr-defined]
            assert d.shipper is not None
            d.shipper.ship_now()  # (its own thread, woken by the rotation, may have shipped)
        stats = log.stats()["archive"]
        assert stats is not None and stats["destinations"] is not None
        assert all(d["shipping"]["parts"] >= 1 for d in stats["destinations"])  # type: ignore[index]
        # while the log runs (the active segment not sealed): each destination alone brings
        # back every durable frame, the active segment's shipped parts included
        for i, url in enumerate(urls):
            out = tmp_path / f"restored-{i}"
            restore(url, out)
            assert frames_of(out) == written
    finally:
        log.close(drain=0)


def test_walship_archive_names_each_destination_and_what_it_misses(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from walship.cli import build_cli

    good = (tmp_path / "good").as_uri()
    bad = (tmp_path / "bad").as_uri()
    (tmp_path / "bad").write_text("a file, not a directory: every put fails")
    config = write_config(
        tmp_path,
        {
            "archives": [
                destination(good, drain_on_close=0),
                destination(bad, upload_process=False, drain_on_close=0),
            ]
        },
    )
    with walship.open(config=config) as log:
        write_segments(log, 2)
    out = CliRunner().invoke(build_cli(), ["archive", "-c", str(config), "--timeout", "20"])
    assert out.exit_code == 1, out.output
    assert f"  {good}: " in out.output and f"  {bad}: 0 archived" in out.output
    assert f"{segment_name(1)}: {bad}: " in out.output
    assert scan_store(ArchiveReadStore(good)).ok


def test_archive_backpressure_names_the_destination_that_shut(tmp_path: Path) -> None:
    events: list[tuple[bool, str]] = []

    class Gate:
        @walship.hookimpl
        def archive_backpressure(self, blocked: bool, url: str) -> None:
            events.append((blocked, url))

    good = mem_url()
    flaky, bad = flaky_url()
    with walship.open(
        tmp_path / "wal",
        archives=[destination(good), destination(bad, max_pending=300, backpressure_timeout=5)],
        plugins=[Gate()],
    ) as log:
        write_segments(log, 2)
        assert wait_until(lambda: (True, bad) in events)
        flaky.failures_left = 0
        assert log.archiver is not None and log.archiver.flush(timeout=20)
        assert wait_until(lambda: (False, bad) in events)
        log.append(b"goes on")
    assert {u for _, u in events} == {bad}


def test_a_lost_record_is_rebuilt_from_the_next_destination_when_the_first_is_down(
    tmp_path: Path,
) -> None:
    flaky, first = flaky_url(fails=0)
    second = (tmp_path / "second").as_uri()
    store = PosixStore(tmp_path / "wal")
    archives = [destination(first), destination(second)]
    retention = {"keep_local": "until_archived"}
    with walship.open(store=store, archives=archives, retention=retention) as log:
        written = write_segments(log, 3)
        assert log.archiver is not None and log.archiver.flush(timeout=20)
    assert local_segments(store) == [4]
    store.remove(RECORD_NAME)  # lost: the numbering must come from an archive again

    def down(self: Any, path: str, detail: bool = True, **kw: Any) -> Any:
        raise OSError(f"{path}: connection refused")

    flaky.ls = down
    with walship.open(store=store, archives=archives, retention=retention) as log:
        assert log.append(b"after") == len(written) + 1  # numbering continues the archive
        record = ArchiveRecord.load(store)
        assert record.removed_through == 3 and record.entry(3, second) is not None
