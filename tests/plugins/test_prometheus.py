"""The Prometheus plugin: what a scrape shows (parsed from the exposition text, in a fresh
registry each), over HTTP, by name in the config, across a reopen, and that ``import walship``
never needs prometheus_client."""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

import walship
from walship import ManualClock
from walship.plugins.manager import PluginError

prometheus_client = pytest.importorskip("prometheus_client")
from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402
from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from walship.plugins.prometheus import PrometheusPlugin  # noqa: E402

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """``(sample name, sorted labels) -> value`` of every sample."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(registry: CollectorRegistry) -> Samples:
    return parse(generate_latest(registry).decode())


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples[(name, tuple(sorted(labels.items())))]


def _wait(log: walship.Log) -> None:
    assert log._events.wait_idle(timeout=30), "events were not delivered"


@pytest.fixture
def registry() -> Iterator[CollectorRegistry]:
    yield CollectorRegistry()


def test_a_scrape_shows_the_log_its_segments_and_its_archive(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    plugin = PrometheusPlugin(registry=registry)
    archive = (tmp_path / "archive").as_uri()
    with walship.open(
        tmp_path / "wal", max_segment_bytes=2048, archive={"url": archive}, plugins=[plugin]
    ) as log:
        for i in range(40):
            log.append(b"%03d" % i * 20)
        log.append_batch([b"batched"] * 10)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        _wait(log)
        stats = log.stats()
        s = scrape(registry)
    assert value(s, "walship_appends_total") == 50
    assert value(s, "walship_commits_total") == 41
    assert value(s, "walship_fsyncs_total") == stats["syncs"] >= 41
    assert value(s, "walship_bytes_written_total") == stats["bytes"] > 40 * 60
    assert value(s, "walship_last_seq") == value(s, "walship_durable_seq") == 50
    assert value(s, "walship_segments") == stats["segments"]
    assert value(s, "walship_failed") == 0
    closed = {r: value(s, "walship_segments_closed_total", reason=r) for r in ("size", "forced")}
    assert closed["forced"] == 1 and closed["size"] == stats["rotations_size"] >= 1
    assert value(s, "walship_segments_closed_total", reason="age") == 0
    n_closed = closed["size"] + closed["forced"]
    assert value(s, "walship_archive_uploads_total") == n_closed
    assert value(s, "walship_archive_uploaded_bytes_total") == stats["archive"]["bytes"]
    assert value(s, "walship_archive_failures_total") == 0
    assert value(s, "walship_archive_pending_segments") == 0
    assert value(s, "walship_archive_lag_seconds") == 0
    assert value(s, "walship_archive_upload_seconds_count") == n_closed
    assert value(s, "walship_archive_upload_seconds_bucket", le="+Inf") == n_closed
    assert value(s, "walship_segment_size_bytes_count") == n_closed
    assert value(s, "walship_segment_size_bytes_bucket", le="4096.0") == n_closed  # <= 2 KiB+
    assert value(s, "walship_segment_size_bytes_bucket", le="1.073741824e+09") == n_closed
    assert value(s, "walship_recoveries_total") == 1
    assert value(s, "walship_recovery_seconds_count") == 1
    plugin.close()
    assert scrape(registry) == {}  # unregistered


@pytest.mark.one_python
def test_archive_lag_counts_from_the_close_of_the_oldest_pending_segment(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    (tmp_path / "not-a-directory").write_text("uploads fail: the archive root is a file")
    clock = ManualClock()
    plugin = PrometheusPlugin(registry=registry)
    log = walship.open(
        tmp_path / "wal",
        clock=clock,
        archive={"url": (tmp_path / "not-a-directory").as_uri()},
        plugins=[plugin],
    )
    try:
        log.append(b"first")
        log.rotate()
        _wait(log)
        clock.advance(30)
        log.append(b"second")
        log.rotate()
        _wait(log)
        clock.advance(12.5)
        s = scrape(registry)
        assert value(s, "walship_archive_pending_segments") == 2
        assert value(s, "walship_archive_lag_seconds") == 42.5
        assert value(s, "walship_archive_uploads_total") == 0
        deadline = time.monotonic() + 30
        while value(scrape(registry), "walship_archive_failures_total") < 1:
            assert time.monotonic() < deadline, "no failed upload attempt counted"
            time.sleep(0.02)
    finally:
        plugin.close()
        log.close()


def test_counters_carry_over_a_reopen(tmp_path: Path, registry: CollectorRegistry) -> None:
    plugin = PrometheusPlugin(registry=registry)
    with walship.open(tmp_path / "wal", plugins=[plugin]) as log:
        log.append_batch([b"a", b"b", b"c"])
        _wait(log)
    with walship.open(tmp_path / "wal", plugins=[plugin]) as log:
        log.append(b"d")
        log.append(b"e")
        _wait(log)
        s = scrape(registry)
    assert value(s, "walship_appends_total") == 5
    assert value(s, "walship_commits_total") == 3
    assert value(s, "walship_last_seq") == 5
    assert value(s, "walship_recoveries_total") == 2
    plugin.close()


def test_two_plugins_in_one_registry_are_refused(registry: CollectorRegistry) -> None:
    first = PrometheusPlugin(registry=registry)
    with pytest.raises(ValueError, match="Duplicated timeseries"):
        PrometheusPlugin(registry=registry)
    first.close()
    PrometheusPlugin(registry=registry).close()  # its names are free again


def test_served_over_http_and_named_in_the_config(tmp_path: Path) -> None:
    config = {
        "store": {"path": str(tmp_path / "wal")},
        "entry_point_plugins": False,
        "plugins": [
            {"name": "walship.plugins.prometheus", "options": {"port": 0, "addr": "127.0.0.1"}}
        ],
    }
    with walship.open(config=config) as log:
        plugin = PrometheusPlugin.of(log)
        assert isinstance(plugin, PrometheusPlugin) and plugin.port
        try:
            log.append_batch([b"over", b"http"])
            _wait(log)
            url = f"http://127.0.0.1:{plugin.port}/metrics"
            with urllib.request.urlopen(url, timeout=10) as response:
                s = parse(response.read().decode())
            assert value(s, "walship_appends_total") == 2
            assert value(s, "walship_durable_seq") == 2
            assert value(s, "walship_recoveries_total") == 1
        finally:
            plugin.close()  # the default registry: leave it as it was
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)


def test_a_bad_option_named_in_the_config_fails_the_open_in_one_line(tmp_path: Path) -> None:
    config = {
        "store": {"path": str(tmp_path / "wal")},
        "plugins": [{"name": "walship.plugins.prometheus", "options": {"prot": 9464}}],
    }
    with pytest.raises(PluginError) as info:
        walship.open(config=config)
    assert str(info.value).startswith(
        "plugin 'walship.plugins.prometheus': creating PrometheusPlugin failed (options given: "
        "prot): TypeError: "
    )


def _run(code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return proc.stdout


def test_import_walship_does_not_import_prometheus_client(tmp_path: Path) -> None:
    out = _run(
        "import sys, walship\n"
        "import walship.plugins.manager, walship.plugins.metrics\n"
        f"walship.open({str(tmp_path / 'wal')!r}).close()\n"
        "print('prometheus_client' in sys.modules)\n"
    )
    assert out == "False\n"


def test_without_the_extra_the_error_names_the_pip_install(tmp_path: Path) -> None:
    out = _run(
        "import sys\n"
        "sys.modules['prometheus_client'] = None  # as if walship[prometheus] was not installed\n"
        "import walship\n"
        "try:\n"
        f"    walship.open(config={{'store': {{'path': {str(tmp_path / 'wal')!r}}},\n"
        "                          'plugins': ['walship.plugins.prometheus']})\n"
        "except walship.PluginError as e:\n"
        "    print(e)\n"
    )
    assert out.startswith(
        "plugin 'walship.plugins.prometheus': cannot import module 'walship.plugins.prometheus': "
        "ImportError: walship.plugins.prometheus needs prometheus_client ("
    )
    assert out.endswith("): pip install 'walship[prometheus]'\n")
    assert out.count("\n") == 1


def test_a_followers_lag_is_exported_after_each_round(
    tmp_path: Path, registry: CollectorRegistry
) -> None:
    """The ``follower_lag`` hook: what the follower misses of its archive, per URL, as gauges
    (the follower has no log: nothing of it was exported before)."""
    from walship.archive.follow import Follower

    url = (tmp_path / "archive").as_uri()
    plugin = PrometheusPlugin(registry=registry)
    with walship.open(tmp_path / "wal", max_segment_bytes=512, archive={"url": url}) as log:
        for i in range(1, 41):
            log.append(b"frame-%d|" % i)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
        with Follower(url, tmp_path / "replica", plugins=[plugin]) as follower:
            follower.poll()
            got = scrape(registry)
            assert value(got, "walship_follower_lag_frames", url=follower.url) == 0
            assert value(got, "walship_follower_replica_seq", url=follower.url) == 40
            for i in range(41, 61):
                log.append(b"frame-%d|" % i)
            log.rotate()
            assert log.archiver.flush(timeout=30)
            follower.poll()  # the gauges follow each round
            got = scrape(registry)
            assert value(got, "walship_follower_replica_seq", url=follower.url) == 60
            assert value(got, "walship_follower_lag_seconds", url=follower.url) == 0.0
    plugin.close()
