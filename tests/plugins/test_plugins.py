"""Plugins: delivery (order, isolation, never blocking appends), the three ways to register,
validation at registration, the built-in logging and metrics plugins, and store backends by
name. The example package in examples/ is pip-installed into a throwaway venv and heard."""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
import sys
import sysconfig
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest

import walship
from walship import hookimpl
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.backends.registry import BackendError, backend_names, create_store, load_backend
from walship.core.rotation import ManualClock
from walship.core.scan import scan_store
from walship.errors import ConfigError
from walship.plugins.logging import LoggingPlugin
from walship.plugins.manager import (
    PluginError,
    WalshipPluginManager,
    collect_plugins,
    resolve_plugin,
)
from walship.plugins.metrics import MetricsPlugin

REPO = Path(__file__).resolve().parents[2]
EXAMPLE = REPO / "examples" / "walship-rotation-journal"


class Recorder:
    """Hears every event, in order."""

    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    @hookimpl
    def log_recovered(self, report: Any) -> None:
        self.events.append(("log_recovered", report.segments))

    @hookimpl
    def segment_opened(self, name: str, segment_seq: int) -> None:
        self.events.append(("segment_opened", segment_seq))

    @hookimpl
    def segment_closed(self, segment: Any, reason: str) -> None:
        self.events.append(("segment_closed", (segment.segment_seq, reason)))

    def closed(self) -> list[tuple[int, str]]:
        return [e[1] for e in self.events if e[0] == "segment_closed"]


class Raiser:
    def __init__(self) -> None:
        self.calls = 0

    @hookimpl
    def segment_closed(self, segment: Any) -> None:
        self.calls += 1
        raise RuntimeError(f"boom on {segment.name}")


def _wait(log: walship.Log) -> None:
    assert log._events.wait_idle(timeout=30), "events were not delivered"


def _closed_segments(store: Any) -> list[tuple[int, str]]:
    """(segment_seq, blake3 hex) of every segment but the active (last) one."""
    scan = scan_store(store)
    assert scan.ok, scan.problems
    return [(s.segment_seq, s.blake3.hex()) for s in scan.segments[:-1]]


# --- delivery ---------------------------------------------------------------------------


@pytest.mark.parametrize("raiser_first", [True, False])
def test_a_raising_plugin_hides_nothing_from_a_healthy_one(
    mem: MemoryStore, caplog: pytest.LogCaptureFixture, raiser_first: bool
) -> None:
    recorder, raiser = Recorder(), Raiser()
    plugins = [raiser, recorder] if raiser_first else [recorder, raiser]
    caplog.set_level(logging.ERROR, logger="walship.plugins")
    with walship.open(store=mem, plugins=plugins, max_segment_bytes=1024) as log:
        seqs = [log.append(b"x" * 100) for _ in range(60)]
        log.rotate()
        _wait(log)
        closed = len(recorder.closed())
        assert closed >= 6
        assert raiser.calls == closed
        errors = log.stats()["plugin_errors"]
        assert errors == {"test_plugins:Raiser": closed}
        assert log.append(b"after") == seqs[-1] + 1  # the log goes on
    assert [f.commit_seq for f in walship.open(store=mem).read()] == [*seqs, seqs[-1] + 1]
    failures = [r for r in caplog.records if r.name == "walship.plugins"]
    assert len(failures) == closed
    assert "plugin test_plugins:Raiser failed in hook segment_closed" in failures[0].message
    assert "boom on segment_0000000000000001.aedbwal" in caplog.text


def test_a_plugin_that_exits_does_not_kill_delivery(mem: MemoryStore) -> None:
    class Exiter:
        @hookimpl
        def segment_opened(self) -> None:
            raise SystemExit(3)

    recorder, exiter = Recorder(), Exiter()
    with walship.open(store=mem, plugins=[exiter, recorder]) as log:
        log.append(b"a")
        log.rotate()
        log.append(b"b")
        log.rotate()
        _wait(log)
        assert log.stats()["plugin_errors"] == {log.plugins.get_name(exiter): 3}
    assert recorder.closed() == [(1, "forced"), (2, "forced")]


def test_a_blocked_plugin_never_blocks_appends(tmp_path: Path) -> None:
    release = threading.Event()
    entered = threading.Event()

    class Blocker:
        def __init__(self) -> None:
            self.closed: list[int] = []

        @hookimpl
        def segment_closed(self, segment: Any) -> None:
            entered.set()
            release.wait()
            self.closed.append(segment.segment_seq)

    blocker = Blocker()
    log = walship.open(tmp_path / "wal", plugins=[blocker], max_segment_bytes=2048)
    done = threading.Event()
    appended: list[int] = []

    def writer() -> None:
        for i in range(400):  # ~20 rotations while the plugin is stuck in the first one
            appended.append(log.append(b"%06d" % i * 20))
        done.set()

    try:
        t = threading.Thread(target=writer)
        t.start()
        assert entered.wait(30), "the plugin never heard the first rotation"
        # the plugin is stuck in its first event; every append still completes
        assert done.wait(60), "appends stalled behind a blocked plugin"
        assert appended == list(range(1, 401))
        assert log.durable_seq == 400
        assert log.stats().get("rotations_size", 0) >= 10
        assert blocker.closed == []
    finally:
        release.set()
        t.join()
        _wait(log)
        log.close()
    assert blocker.closed == [seq for seq, _ in _closed_segments(PosixStore(tmp_path / "wal"))]


def test_events_come_in_order_and_after_the_segment_is_durable(mem: MemoryStore) -> None:
    seen: list[str] = []

    class Checker:
        @hookimpl
        def segment_closed(self, log: Any, segment: Any, reason: str) -> None:
            # nothing of the closed segment is left for a crash to drop
            assert mem.unsynced_bytes(segment.name) == 0
            assert len(mem.read(segment.name)) == segment.size
            seen.append(f"closed {segment.segment_seq} {reason}")

        @hookimpl
        def segment_opened(self, name: str, segment_seq: int, prev_segment_hash: bytes) -> None:
            header = mem.read(name, 0, 64)
            assert header[32:64] == prev_segment_hash
            seen.append(f"opened {segment_seq}")

        @hookimpl
        def log_recovered(self) -> None:
            seen.append("recovered")

    with walship.open(store=mem, durability="none", plugins=[Checker()]) as log:
        log.append(b"a")
        log.rotate()
        log.append(b"b")
        log.rotate()
        _wait(log)
        assert log.stats()["plugin_errors"] == {}
    assert seen == [
        "opened 1",
        "recovered",
        "closed 1 forced",
        "opened 2",
        "closed 2 forced",
        "opened 3",
    ]


def test_every_hook_is_documented_with_when_and_what() -> None:
    from walship.plugins import hookspecs
    from walship.plugins.manager import HOOK_NAMES

    expected = {
        "segment_opened",
        "segment_closed",
        "log_recovered",
        "segment_archived",
        "archive_failed",
        "archive_lagging",
        "archive_backpressure",
        "segment_removed",
        "follower_lag",
    }
    assert expected == HOOK_NAMES
    for name in HOOK_NAMES:
        doc = getattr(hookspecs, name).__doc__
        assert doc and "Receives" in doc, name
    assert "walship-events" in (hookspecs.__doc__ or "")


# --- registration -----------------------------------------------------------------------


def test_register_on_an_open_log_hears_later_rotations(mem: MemoryStore) -> None:
    with walship.open(store=mem) as log:
        _wait(log)
        recorder = Recorder()
        assert log.plugins.register(recorder) == "test_plugins:Recorder"
        log.append(b"x")
        log.rotate()
        _wait(log)
        assert recorder.events == [("segment_closed", (1, "forced")), ("segment_opened", 2)]
        second = Recorder()
        assert log.plugins.register(second) == "test_plugins:Recorder#2"


def test_config_plugins_with_options_and_builtins(tmp_path: Path) -> None:
    config = tmp_path / "walship.yaml"
    config.write_text(
        textwrap.dedent(
            """
            store: {path: wal}
            rotation: {max_segment_bytes: 1KiB}
            entry_point_plugins: false
            plugins:
              - walship.plugins.metrics
              - name: walship.plugins.logging
                options: {format: json, logger: test.events}
              - name: test_plugins:Recorder
            """
        )
    )
    with walship.open(config=config) as log:
        for _ in range(30):
            log.append(b"y" * 100)
        _wait(log)
        names = {log.plugins.get_name(p) for p in log.plugins.get_plugins()}
        assert names == {
            "walship.plugins.metrics",
            "walship.plugins.logging",
            "test_plugins:Recorder",
        }
        metrics = MetricsPlugin.of(log)
        assert metrics is not None
        logging_plugin = log.plugins.get_plugin("walship.plugins.logging")
        assert isinstance(logging_plugin, LoggingPlugin)
        assert logging_plugin.format == "json"
        assert logging_plugin.logger.name == "test.events"
        closed = metrics.snapshot()["segments_closed"]
        assert closed == log.stats()["rotations_size"] >= 3


BAD_PLUGINS: list[tuple[object, str]] = [
    (
        "no_such_module_xyz:Plugin",
        "plugin 'no_such_module_xyz:Plugin': cannot import module 'no_such_module_xyz': "
        "ModuleNotFoundError: No module named 'no_such_module_xyz'",
    ),
    (
        "walship.plugins.metrics:NoSuchClass",
        "plugin 'walship.plugins.metrics:NoSuchClass': module 'walship.plugins.metrics' has no "
        "attribute 'NoSuchClass'",
    ),
    (
        "walship.plugins.metrix",
        "plugin 'walship.plugins.metrix': no entry point of that name in group "
        "'walship.plugins' and no module of that name (did you mean 'walship.plugins.metrics'? "
        "known: walship.plugins.logging, walship.plugins.metrics, walship.plugins.prometheus; "
        "or write 'module:attr')",
    ),
    (
        {"name": "walship.plugins.metrics", "options": {"window": 0}},
        "plugin 'walship.plugins.metrics': creating MetricsPlugin failed (options given: "
        "window): ValueError: window must be at least 1, got 0",
    ),
    (
        {"name": "walship.plugins.logging", "options": {"colour": "red"}},
        "plugin 'walship.plugins.logging': creating LoggingPlugin failed (options given: "
        "colour): TypeError: LoggingPlugin.__init__() got an unexpected keyword argument "
        "'colour'",
    ),
    (
        {"name": "test_plugins:RECORDER", "options": {"a": 1}},
        "plugin 'test_plugins:RECORDER' is a test_plugins.Recorder instance, not a "
        "class, so it takes no options; remove 'options' or point at a class",
    ),
    (
        "test_plugins:Misspelt",
        "plugin 'test_plugins:Misspelt': segment_close implements 'segment_close', which "
        "is not a walship hook (did you mean 'segment_closed'? hooks: archive_backpressure, "
        "archive_failed, archive_lagging, follower_lag, log_recovered, segment_archived, "
        "segment_closed, segment_opened, segment_removed)",
    ),
    (
        "test_plugins:WrongArgs",
        "plugin 'test_plugins:WrongArgs': segment_closed() takes seg, which hook "
        "'segment_closed' does not give (it gives: log, segment, reason)",
    ),
    (
        "test_plugins:Wrapper",
        "plugin 'test_plugins:Wrapper': segment_closed is a hook wrapper; walship hooks "
        "are notifications delivered to each plugin in turn, so wrappers are not supported",
    ),
    (
        "test_plugins:Unmarked",
        "plugin 'test_plugins:Unmarked' defines segment_closed without "
        "@walship.hookimpl, so it would never be called; mark it",
    ),
    (
        "test_plugins:Nothing",
        "plugin 'test_plugins:Nothing' (test_plugins.Nothing instance) implements "
        "no walship hook (hooks: archive_backpressure, archive_failed, archive_lagging, "
        "follower_lag, log_recovered, segment_archived, segment_closed, segment_opened, "
        "segment_removed; mark methods with @walship.hookimpl)",
    ),
]


class Misspelt:
    @hookimpl
    def segment_close(self, segment: Any) -> None: ...


class WrongArgs:
    @hookimpl
    def segment_closed(self, seg: Any) -> None: ...


class Wrapper:
    @hookimpl(wrapper=True)
    def segment_closed(self, segment: Any) -> Any:
        return (yield)


class Unmarked:
    def segment_closed(self, segment: Any) -> None: ...


class Nothing:
    pass


RECORDER = Recorder()


@pytest.mark.parametrize(("spec", "message"), BAD_PLUGINS)
def test_a_bad_plugin_is_a_clear_error_at_open(tmp_path: Path, spec: object, message: str) -> None:
    with pytest.raises(PluginError) as info:
        walship.open(config={"store": {"path": str(tmp_path / "wal")}, "plugins": [spec]})
    assert str(info.value) == message
    # nothing was locked or left open: the log opens right after
    walship.open(tmp_path / "wal").close()


def test_duplicates_and_classes_are_refused() -> None:
    pm = WalshipPluginManager()
    recorder = Recorder()
    pm.register(recorder, "rec")
    with pytest.raises(PluginError, match="plugin 'rec': a plugin of that name is registered"):
        pm.register(Recorder(), "rec")
    with pytest.raises(PluginError, match="this object is registered already as 'rec'"):
        pm.register(recorder, "other")
    with pytest.raises(PluginError, match="is the class Recorder; register an instance"):
        pm.register(Recorder)


def test_a_module_is_a_plugin_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "modplugin_for_walship.py").write_text(
        "from walship import hookimpl\n"
        "closed = []\n"
        "@hookimpl\n"
        "def segment_closed(segment):\n"
        "    closed.append(segment.segment_seq)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    plugin = resolve_plugin("modplugin_for_walship")
    assert plugin.name == "modplugin_for_walship"
    with walship.open(store=MemoryStore(), plugins=["modplugin_for_walship"]) as log:
        log.append(b"one frame")
        log.rotate()
    assert plugin.plugin.closed == [1]  # type: ignore[attr-defined]


def test_collect_plugins_keeps_objects_and_names_specs() -> None:
    recorder = Recorder()
    out = collect_plugins(
        [recorder, "walship.plugins.metrics", ("walship.plugins.logging", {"level": "DEBUG"})],
        autoload=False,
    )
    assert out[0] is recorder
    assert [p.name for p in out[1:]] == ["walship.plugins.metrics", "walship.plugins.logging"]


# --- built-in plugins -------------------------------------------------------------------


def test_logging_plugin_writes_one_structured_line_per_event(
    mem: MemoryStore, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="walship.events")
    with walship.open(store=mem, plugins=[LoggingPlugin()]) as log:
        log.append(b"abc")
        closed = log.rotate()
    records = [r for r in caplog.records if r.name == "walship.events"]
    assert [r.walship_event for r in records] == [  # type: ignore[attr-defined]
        "segment_opened",
        "log_recovered",
        "segment_closed",
        "segment_opened",
    ]
    line = records[2].getMessage()
    assert "\n" not in line
    assert line == (
        "event=segment_closed log=memory: segment=segment_0000000000000001.aedbwal "
        f"segment_seq=1 reason=forced size={closed.size} frames=1 first_commit_seq=1 "
        f"last_commit_seq=1 blake3={closed.blake3.hex()}"
    )
    assert records[2].walship_fields["blake3"] == closed.blake3.hex()  # type: ignore[attr-defined]


def test_logging_plugin_json_and_warning_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="x.events")
    plugin = LoggingPlugin(level="DEBUG", logger="x.events", format="json")
    plugin.archive_failed(
        log=None, name="s", segment_seq=3, attempt=2, error="503 SlowDown", url="s3://b"
    )
    plugin.segment_archived(
        log=None, name="s", segment_seq=3, url="s3://b/s", size=10, blake3="ab", seconds=0.25
    )
    failed, archived = caplog.records
    assert failed.levelno == logging.WARNING
    assert archived.levelno == logging.DEBUG
    assert json.loads(failed.getMessage()) == {
        "event": "archive_failed",
        "log": None,
        "segment": "s",
        "segment_seq": 3,
        "attempt": 2,
        "error": "503 SlowDown",
        "url": "s3://b",
    }
    with pytest.raises(ValueError, match="level 'LOUD' is not one of"):
        LoggingPlugin(level="LOUD")
    with pytest.raises(ValueError, match="format 'xml' is not one of logfmt, json"):
        LoggingPlugin(format="xml")


def test_metrics_count_rotations_by_reason_bytes_and_frames(mem: MemoryStore) -> None:
    clock = ManualClock()
    metrics = MetricsPlugin()
    with walship.open(
        store=mem, plugins=[metrics], clock=clock, max_segment_bytes=1024, max_segment_age=30
    ) as log:
        for _ in range(25):
            log.append(b"z" * 100)  # size rotations
        log.append(b"old")
        clock.advance(31)
        log.append(b"now aged")  # rotates for age after this append
        log.append(b"last")
        log.rotate()
        stats = log.stats()
    snap = metrics.snapshot()
    scan = scan_store(mem)
    closed = scan.segments[:-1]
    assert snap["segments_closed_by_reason"] == {
        "forced": 1,
        "size": stats["rotations_size"],
        "age": 1,
    }
    assert snap["segments_closed"] == len(closed)
    assert snap["segments_opened"] == len(scan.segments)
    assert snap["bytes_closed"] == sum(s.size for s in closed)
    assert snap["frames_closed"] == 28
    assert snap["recoveries"] == 1
    assert snap["segment_bytes"]["count"] == len(closed)
    assert snap["segment_bytes"]["max"] == max(s.size for s in closed)
    assert snap["segment_seconds"]["max"] >= 31
    assert json.loads(json.dumps(snap)) == snap
    text = metrics.render()
    assert (
        f"segments closed    {len(closed)} (forced 1, size {stats['rotations_size']}, age 1)"
        in text
    )


def test_metrics_archive_results_and_summaries() -> None:
    metrics = MetricsPlugin(window=4)
    for seconds in (0.1, 0.2, 0.3, 0.4, 0.5):
        metrics.segment_archived(size=100, seconds=seconds)
    metrics.archive_failed()
    metrics.archive_lagging(pending=7)
    metrics.segment_removed()
    snap = metrics.snapshot()
    assert snap["segments_archived"] == 5
    assert snap["bytes_archived"] == 500
    assert snap["archive_failures"] == 1
    assert snap["archive_lag_warnings"] == 1
    assert snap["archive_lag_pending"] == 7
    assert snap["segments_removed"] == 1
    summary = snap["archive_seconds"]
    assert summary["count"] == 5
    assert summary["min"] == 0.1 and summary["max"] == 0.5
    assert summary["mean"] == pytest.approx(0.3)
    assert summary["p50"] == 0.4  # percentiles over the last 4: 0.2 0.3 0.4 0.5
    assert "archive_seconds    n=5 mean=300.0ms" in metrics.render()


# --- store backends ---------------------------------------------------------------------


def test_builtin_backends_come_from_real_entry_points() -> None:
    from importlib.metadata import entry_points

    eps = {ep.name: ep for ep in entry_points(group="walship.backends")}
    assert eps["posix"].dist is not None and eps["posix"].dist.name == "walship"
    assert {"posix", "memory"} <= set(backend_names())
    assert load_backend("posix") is PosixStore
    assert isinstance(create_store("memory"), MemoryStore)


def _fake_distribution(site: Path, name: str, entry_points: str, module: str, code: str) -> None:
    (site / f"{module}.py").write_text(code)
    info = site / f"{name}-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(entry_points)


def test_a_third_party_backend_by_name(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(
        site,
        "thirdparty_store",
        "[walship.backends]\nlabelled = thirdparty_store_mod:LabelledStore\n"
        "notastore = thirdparty_store_mod:NotAStore\n",
        "thirdparty_store_mod",
        "from walship.backends.posix import PosixStore\n"
        "class LabelledStore(PosixStore):\n"
        "    def __init__(self, path, label):\n"
        "        super().__init__(path)\n"
        "        self.label = label\n"
        "class NotAStore:\n"
        "    pass\n",
    )
    monkeypatch.syspath_prepend(str(site))
    assert "labelled" in backend_names()
    config = {"store": {"backend": "labelled", "path": str(tmp_path / "wal"), "label": "blue"}}
    with walship.open(config=config) as log:
        assert type(log.store).__name__ == "LabelledStore"
        assert log.store.label == "blue"  # type: ignore[attr-defined]
        log.append(b"third party")
    assert [f.payload for f in walship.open(tmp_path / "wal").read()] == [b"third party"]
    with pytest.raises(ConfigError) as info:
        walship.open(config={"store": {"backend": "labelled", "path": "x", "lable": "b"}})
    assert str(info.value) == (
        "<config>: store.lable: unknown key for backend 'labelled' (did you mean 'label'?)"
    )
    with pytest.raises(ConfigError) as info:
        walship.open(config={"store": {"backend": "labelled", "path": "x"}})
    assert str(info.value) == (
        "<config>: store.label: missing, expected a value (backend 'labelled' requires 'label')"
    )
    with pytest.raises(BackendError, match=r"is <class 'thirdparty_store_mod\.NotAStore'>, not a"):
        load_backend("notastore")


def test_entry_point_plugins_load_and_a_config_can_configure_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(
        site,
        "counting_plugin",
        "[walship.plugins]\ncounter = counting_plugin_mod:Counter\n",
        "counting_plugin_mod",
        "from walship import hookimpl\n"
        "class Counter:\n"
        "    def __init__(self, start=0):\n"
        "        self.closed = start\n"
        "    @hookimpl\n"
        "    def segment_closed(self):\n"
        "        self.closed += 1\n",
    )
    monkeypatch.syspath_prepend(str(site))
    with walship.open(tmp_path / "a") as log:  # loaded by its entry point, without options
        log.append(b"one frame")
        log.rotate()
        _wait(log)
        counter: Any = log.plugins.get_plugin("counter")
        assert type(counter).__name__ == "Counter" and counter.closed == 1
    config = {
        "store": {"path": str(tmp_path / "b")},
        "plugins": [{"name": "counter", "options": {"start": 10}}],
    }
    with walship.open(config=config) as log:  # named in the config: created once, with options
        log.append(b"one frame")
        log.rotate()
        _wait(log)
        counters = [p for p in log.plugins.get_plugins() if type(p).__name__ == "Counter"]
        assert len(counters) == 1 and counters[0].closed == 11
    with walship.open(tmp_path / "c", entry_point_plugins=False) as log:
        assert log.plugins.get_plugin("counter") is None


_BROKEN_EPS = (
    "[walship.plugins]\nbroken = broken_plugin_missing_mod:Plugin\n"
    "hookless = broken_plugin_mod:Hookless\nfussy = broken_plugin_mod:Fussy\n"
)
_BROKEN_CODE = (
    "class Hookless:\n"  # loads, but implements no hook: refused at registration
    "    pass\n"
    "class Fussy:\n"  # needs an argument no entry point gives
    "    def __init__(self, colour):\n"
    "        pass\n"
)
_MISSING = (
    "plugin 'broken' (entry point broken_plugin_missing_mod:Plugin of broken_plugin) failed "
    "to load: ModuleNotFoundError: No module named 'broken_plugin_missing_mod'"
)


@pytest.fixture
def broken_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Installs (on sys.path) a distribution with the three broken entry points above."""
    site = tmp_path / "site"
    site.mkdir()
    _fake_distribution(site, "broken_plugin", _BROKEN_EPS, "broken_plugin_mod", _BROKEN_CODE)
    monkeypatch.syspath_prepend(str(site))


@pytest.mark.usefixtures("broken_plugins")
def test_a_broken_discovered_plugin_is_skipped_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    recorder = Recorder()
    caplog.set_level(logging.WARNING, logger="walship.plugins")
    for how in ("path", "plugins", "config"):  # the three ways an open finds entry points
        caplog.clear()
        if how == "path":
            log = walship.open(tmp_path / how)
        elif how == "plugins":
            log = walship.open(tmp_path / how, plugins=[recorder])
        else:
            log = walship.open(config={"store": {"path": str(tmp_path / how)}})
        with log:
            log.append(b"opened all the same")
            skipped = log.plugins.skipped  # type: ignore[attr-defined]
            assert sorted(skipped) == ["broken", "fussy", "hookless"]
            assert skipped["broken"] == _MISSING
            assert skipped["fussy"].startswith(
                "plugin 'fussy': creating Fussy failed (options given: none): TypeError:"
            )
            assert skipped["hookless"].startswith("plugin 'hookless' (broken_plugin_mod.Hookless")
            assert not {"broken", "fussy", "hookless"} & {
                n for n, _ in log.plugins.list_name_plugin()
            }
        warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
        assert len(warnings) == 3, [r.getMessage() for r in warnings]
        assert warnings[0].getMessage().startswith(_MISSING + "; skipped: it was only discovered")
        assert all("\n" not in r.getMessage() for r in warnings)
    assert recorder.events  # the healthy plugin next to them heard its events


@pytest.mark.usefixtures("broken_plugins")
def test_a_broken_plugin_named_in_the_config_fails_the_open_in_one_line(tmp_path: Path) -> None:
    for name, message in (
        ("broken", _MISSING),
        ("hookless", "plugin 'hookless' (broken_plugin_mod.Hookless instance) implements no "),
        ("fussy", "plugin 'fussy': creating Fussy failed (options given: none): TypeError: "),
    ):
        config = {"store": {"path": str(tmp_path / "wal")}, "plugins": [name]}
        with pytest.raises(PluginError) as info:
            walship.open(config=config)
        assert str(info.value).startswith(message) and "\n" not in str(info.value)
    walship.open(tmp_path / "wal", entry_point_plugins=False).close()  # nothing was locked


@pytest.mark.usefixtures("broken_plugins")
def test_walship_plugins_shows_why_a_plugin_is_skipped() -> None:
    from click.testing import CliRunner

    from walship.cli import build_cli

    result = CliRunner().invoke(build_cli(), ["plugins", "--json"])
    assert result.exit_code == 0, result.output
    listed = {p["name"]: p for p in json.loads(result.stdout)["plugins"]}
    assert listed["broken"] == {
        "name": "broken",
        "value": "broken_plugin_missing_mod:Plugin",
        "distribution": "broken_plugin",
        "version": "1.0",
        "error": _MISSING,
    }
    assert listed["hookless"]["error"].startswith("plugin 'hookless' (broken_plugin_mod.Hookless")
    result = CliRunner().invoke(build_cli(), ["plugins"])
    assert result.exit_code == 0, result.output
    assert (
        "  broken = broken_plugin_missing_mod:Plugin [broken_plugin 1.0]\n"
        f"    FAILED, skipped by every log: {_MISSING}\n" in result.stdout
    )


def test_two_entry_points_of_one_name_are_skipped_unless_named(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    site.mkdir()
    code = (
        "from walship import hookimpl\n"
        "class P:\n"
        "    @hookimpl\n"
        "    def segment_opened(self):\n"
        "        pass\n"
    )
    _fake_distribution(
        site, "twin_a", "[walship.plugins]\ntwin = twin_a_mod:P\n", "twin_a_mod", code
    )
    _fake_distribution(
        site, "twin_b", "[walship.plugins]\ntwin = twin_b_mod:P\n", "twin_b_mod", code
    )
    monkeypatch.syspath_prepend(str(site))
    with walship.open(tmp_path / "wal") as log:
        assert "two installed entry points" in log.plugins.skipped["twin"]  # type: ignore[attr-defined]
    with pytest.raises(PluginError, match="'twin': two installed entry points"):
        walship.open(config={"store": {"path": str(tmp_path / "wal")}, "plugins": ["twin"]})


def test_an_unknown_backend_suggests_a_name() -> None:
    with pytest.raises(BackendError) as info:
        load_backend("memroy")
    assert str(info.value).startswith("no store backend named 'memroy' (did you mean 'memory'?")


# --- the example package, installed for real --------------------------------------------


@pytest.fixture(scope="session")
def example_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A throwaway venv (on top of this environment's packages) with examples/ installed by
    pip; returns its python."""
    root = tmp_path_factory.mktemp("example-venv")
    venv = root / "venv"
    subprocess.run(
        [sys.executable, "-m", "venv", "--without-pip", "--system-site-packages", str(venv)],
        check=True,
    )
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    # This environment (walship, pip, setuptools) as a site dir of the new venv: a venv made
    # from a venv's python would otherwise see only the base interpreter's packages.
    parents = [p for p in {sysconfig.get_path("purelib"), sysconfig.get_path("platlib")}]
    Path(purelib, "_walship_test_parent.pth").write_text(
        "".join(f"import site; site.addsitedir({p!r})\n" for p in parents)
    )
    source = root / "walship-rotation-journal"
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
         "--no-index", str(source)],
        check=True,
    )  # fmt: skip
    return python


ROTATE_SCRIPT = """
import sys, walship
kind, directory = sys.argv[1], sys.argv[2]
if kind == "autoload":
    log = walship.open(directory, max_segment_bytes=2048)
else:
    log = walship.open(config=sys.argv[3])
with log:
    for i in range(300):
        log.append(b"record %06d " % i * 4, payload_type=i % 3)
    log.append_batch([b"b" * 3000, b"c"])   # one batch, bigger than a segment
    assert log.rotate() is None             # which left an empty segment: nothing to rotate
    log.append(b"d")
    log.rotate()
    names = [log.plugins.get_name(p) for p in log.plugins.get_plugins()]
print(",".join(sorted(names)))
"""


def _run(python: Path, *args: str, env: dict[str, str] | None = None) -> str:
    import os

    proc = subprocess.run(
        [str(python), "-c", ROTATE_SCRIPT, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def _journal_matches_log(journal: Path, directory: Path) -> None:
    entries = [json.loads(line) for line in journal.read_text().splitlines()]
    scan = scan_store(PosixStore(directory))
    assert scan.ok
    closed = scan.segments[:-1]
    assert len(closed) >= 10
    assert [e["segment_seq"] for e in entries] == [s.segment_seq for s in closed]
    for entry, seg in zip(entries, closed, strict=True):
        assert entry["segment"] == seg.name
        assert entry["blake3"] == seg.blake3.hex()
        assert entry["size"] == seg.size
        assert entry["frames"] == seg.frame_count
        assert entry["first_commit_seq"] == seg.first_commit_seq
        assert entry["last_commit_seq"] == seg.last_commit_seq
    assert {e["reason"] for e in entries[:-1]} == {"size"}
    assert entries[-1]["reason"] == "forced"
    assert sum(e["frames"] for e in entries) == 303


def test_example_package_installed_hears_every_rotation(
    example_python: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "rotations.jsonl"
    names = _run(
        example_python,
        "autoload",
        str(tmp_path / "wal"),
        env={"WALSHIP_ROTATION_JOURNAL": str(journal)},
    )
    assert names == "rotation-journal"  # found through its entry point alone
    _journal_matches_log(journal, tmp_path / "wal")


def test_example_package_named_in_a_config_with_options(
    example_python: Path, tmp_path: Path
) -> None:
    journal = tmp_path / "from-config.jsonl"
    config = tmp_path / "walship.yaml"
    config.write_text(
        textwrap.dedent(
            f"""
            store: {{path: wal}}
            rotation: {{max_segment_bytes: 2KiB}}
            entry_point_plugins: false
            plugins:
              - name: rotation-journal
                options: {{path: {json.dumps(str(journal))}}}
              - walship.plugins.metrics
            """
        )
    )
    names = _run(example_python, "config", str(tmp_path / "wal"), str(config))
    assert names == "rotation-journal,walship.plugins.metrics"
    _journal_matches_log(journal, tmp_path / "wal")


def test_example_package_is_listed_by_the_cli(example_python: Path) -> None:
    proc = subprocess.run(
        [str(example_python), "-m", "walship.cli", "plugins", "--json"],
        capture_output=True,
        text=True,
        check=True,
    )
    doc = json.loads(proc.stdout)
    assert {
        "name": "rotation-journal",
        "value": "walship_rotation_journal:RotationJournal",
        "distribution": "walship-rotation-journal",
        "version": "0.1.0",
        "error": None,
    } in doc["plugins"]


def test_entry_points_are_read_once_per_state_of_the_import_path(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each open looked the backend up twice and discovered the plugins once, each a read of
    every installed distribution's metadata; a reopen reads none now, and a distribution
    installed meanwhile into a directory already on sys.path is still seen at once."""
    import importlib.metadata

    from walship.backends import entry_points as entrypoints

    reads: list[str] = []

    def counting(**kw: Any) -> Any:
        reads.append(kw["group"])
        return importlib.metadata.entry_points(**kw)

    site = tmp_path / "site"
    site.mkdir()
    monkeypatch.syspath_prepend(str(site))
    monkeypatch.setattr(entrypoints, "entry_points", counting)
    walship.open(tmp_path / "wal").close()
    first = len(reads)
    assert first >= 1
    walship.open(tmp_path / "wal").close()
    assert len(reads) == first  # nothing changed: nothing read again
    _fake_distribution(
        site,
        "late_store",
        "[walship.backends]\nlate = late_store_mod:LateStore\n",
        "late_store_mod",
        "from walship.backends.posix import PosixStore\nclass LateStore(PosixStore):\n    pass\n",
    )
    assert "late" in backend_names()  # installed while the process runs: seen
    assert len(reads) == first + 1
