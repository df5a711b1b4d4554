"""A typed ``walship.open``: its keyword arguments (``walship.options.OpenOptions``) take what
the YAML takes and are validated by the config's model, with the config's one-line messages;
``path=`` is relative to the current directory, also next to ``config=``; and a user's script
over the public API type-checks under ``mypy --strict`` and pyright, where a misspelt keyword is
an error."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.config import WalshipConfig, parse_config
from walship.config.loading import validate_config
from walship.core.header import HEADER_SIZE
from walship.errors import ConfigError
from walship.options import OPEN_OPTIONS, RUNTIME_OPTIONS, OpenOptions
from walship.plugins.hookspecs import hookimpl
from walship.values import SEGMENT_SIZE_MIN

pytestmark = pytest.mark.one_python  # (pyproject.toml: CI runs it on its main Python)

ROOT = Path(__file__).resolve().parents[2]
TYPING = Path(__file__).resolve().parents[1] / "typing"

# --- the config's values and messages -------------------------------------------------------


def test_sizes_and_durations_as_in_the_yaml() -> None:
    with walship.open(
        store=MemoryStore(),
        durability="interval",
        sync_interval="5ms",
        max_segment_bytes="2KiB",
        max_segment_age="1m30s",
        instance_id=7,
        entry_point_plugins=False,
    ) as log:
        assert log.durability is walship.Durability.INTERVAL
        assert log.sync_interval == pytest.approx(0.005)
        assert log._state.manager.policy.max_segment_bytes == 2048
        assert log._state.manager.policy.max_segment_age == 90.0
        assert log.instance_id == 7
    with walship.open(
        store=MemoryStore(), rotation={"max_segment_bytes": "1MiB"}, durability="none"
    ) as log:
        assert log._state.manager.policy.max_segment_bytes == 1 << 20
        assert log.durability is walship.Durability.NONE
    with walship.open(store=MemoryStore(), durability=walship.Durability.NONE) as log:
        assert log.durability is walship.Durability.NONE


# (keyword arguments, the YAML that says the same) -> the same line after the source
SAME_AS_THE_CONFIG: list[tuple[dict[str, Any], str]] = [
    ({"durability": "alway"}, "durability: alway"),
    ({"durability": "sometimes"}, "durability: sometimes"),
    ({"max_segment_bytes": 10}, "rotation: {max_segment_bytes: 10}"),
    ({"max_segment_bytes": "64 Mb!"}, "rotation: {max_segment_bytes: 64 Mb!}"),
    ({"rotation": {"max_segmnt_bytes": "1MiB"}}, "rotation: {max_segmnt_bytes: 1MiB}"),
    ({"max_segment_age": "soon"}, "rotation: {max_segment_age: soon}"),
    ({"sync_interval": "0ms"}, "sync_interval: 0ms"),
    ({"instance_id": -1}, "instance_id: -1"),
    ({"archive": {"url": "s3://b/w", "workers": 0}}, "archive: {url: s3://b/w, workers: 0}"),
    ({"archive": {"url": "s3://b/w", "wrokers": 2}}, "archive: {url: s3://b/w, wrokers: 2}"),
    ({"archive": {"url": "s4://b/w"}}, "archive: {url: s4://b/w}"),
    ({"archive": {"storage_options": {}}}, "archive: {storage_options: {}}"),
    (
        {"archive": {"url": "s3://b/w", "retries": {"backoff": "2s", "max_backoff": "1s"}}},
        "archive: {url: s3://b/w, retries: {backoff: 2s, max_backoff: 1s}}",
    ),
    (
        {"archive": {"url": "s3://b/w", "storage_options": "key=hunter2"}},
        "archive: {url: s3://b/w, storage_options: key=hunter2}",
    ),
    ({"archive": "s3://b/w"}, "archive: s3://b/w"),
    ({"retention": {"keep_local": "until_archived"}}, "retention: {keep_local: until_archived}"),
    ({"plugins": [{"nam": "x"}]}, "plugins: [{nam: x}]"),
    ({"entry_point_plugins": "maybe"}, "entry_point_plugins: maybe"),
]


@pytest.mark.parametrize(("options", "yaml"), SAME_AS_THE_CONFIG)
def test_a_bad_keyword_argument_is_the_configs_one_line(options: dict[str, Any], yaml: str) -> None:
    mem = MemoryStore()
    with pytest.raises(ConfigError) as config:
        parse_config(yaml, "walship.yaml", env={})
    with pytest.raises(ConfigError) as python:
        walship.open(store=mem, **options)
    expected = str(config.value).removeprefix("walship.yaml: ")
    assert str(python.value) == f"walship.open: {expected}"
    assert "\n" not in str(python.value) and "hunter2" not in str(python.value)
    assert mem.list_names() == []  # refused before the store was touched
    walship.open(store=mem).close()  # and left unlocked


def test_the_examples_of_the_issue() -> None:
    mem = MemoryStore()
    with pytest.raises(ConfigError) as info:
        walship.open(store=mem, durability="alway")
    assert str(info.value) == (
        "walship.open: durability = 'alway': expected one of always, interval, none "
        "(did you mean 'always'?)"
    )
    with pytest.raises(ConfigError) as info:
        walship.open(store=mem, max_segment_bytes=10)
    assert str(info.value) == (
        "walship.open: rotation.max_segment_bytes = 10: expected a size of at least 64 bytes, "
        "like 64MiB, 512KiB or 1048576"
    )
    with pytest.raises(ConfigError) as info:
        walship.open(store=mem, archive={"url": "memory://x", "workers": "many"})
    assert str(info.value) == (
        "walship.open: archive.workers = 'many': expected an integer from 1 to 256"
    )
    with walship.open(store=mem, max_segment_bytes="64MiB") as log:
        assert log._state.manager.policy.max_segment_bytes == 64 << 20


def test_a_misspelt_keyword_argument_gets_a_did_you_mean(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        walship.open(tmp_path / "wal", durabilty="none")  # type: ignore[call-arg]
    assert str(info.value) == (
        "walship.open: unknown keyword argument 'durabilty' (did you mean 'durability'?)"
    )
    with pytest.raises(ConfigError) as info:
        walship.open(tmp_path / "wal", colour="blue")  # type: ignore[call-arg]
    assert str(info.value).startswith(
        "walship.open: unknown keyword argument 'colour' (expected one of: anchor, archive, "
    )
    assert not (tmp_path / "wal").exists()
    with pytest.raises(ValueError, match="exactly one of path or store"):
        walship.open()
    with pytest.raises(ValueError, match="exactly one of path or store"):
        walship.open(tmp_path, store=MemoryStore())


def test_the_floor_of_a_segment_is_its_header() -> None:
    assert SEGMENT_SIZE_MIN == HEADER_SIZE
    with walship.open(store=MemoryStore(), max_segment_bytes=HEADER_SIZE) as log:
        log.append(b"x")
        log.append(b"y")
        assert log.stats()["rotations_size"] >= 1
    with pytest.raises(ConfigError, match="at least 64 bytes"):
        parse_config("rotation: {max_segment_bytes: 63}")


def test_the_typed_dict_names_every_key_the_config_and_the_log_take() -> None:
    config_keys = set(WalshipConfig.model_fields) - {"store"}
    shortcuts = {"max_segment_bytes", "max_segment_age"}
    assert set(OPEN_OPTIONS) == config_keys | shortcuts | RUNTIME_OPTIONS
    assert RUNTIME_OPTIONS.isdisjoint(WalshipConfig.model_fields)
    assert OpenOptions.__required_keys__ == frozenset()


def test_a_store_section_as_a_mapping_and_python_values_are_taken_as_they_are() -> None:
    with walship.open(store={"backend": "memory"}, instance_id=3) as log:
        assert isinstance(log.store, MemoryStore)
        assert log.instance_id == 3
    # keyword arguments are never ${}-expanded: a secret with a $ stays what it was
    options = {"url": "memory://typed-open", "storage_options": {"token": "a$${B}c"}}
    with walship.open(store=MemoryStore(), archive=options) as log:  # type: ignore[arg-type]
        assert log.archiver is not None
    cfg = validate_config({}, overrides={"archive": options}, mark_overrides=False)
    assert cfg.archive is not None and cfg.archive.storage_options == {"token": "a$${B}c"}


class _Named:
    def __init__(self, name: str, heard: list[str]) -> None:
        self.name = name
        self.heard = heard

    @hookimpl
    def log_recovered(self) -> None:
        self.heard.append(self.name)


def test_plugins_are_registered_in_the_order_given() -> None:
    heard: list[str] = []
    first, last = _Named("first", heard), _Named("last", heard)
    with walship.open(
        store=MemoryStore(),
        plugins=[first, "walship.plugins.metrics", ("walship.plugins.logging", None), last],
        entry_point_plugins=False,
    ) as log:
        names = [type(p).__name__ for _, p in log.plugins.list_name_plugin()]
        assert log._events.wait_idle(timeout=30)
    assert names == ["_Named", "MetricsPlugin", "LoggingPlugin", "_Named"]
    assert sorted(heard) == ["first", "last"]


# --- path= is the caller's: relative to the current directory -------------------------------


def test_path_next_to_config_is_relative_to_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    conf = tmp_path / "etc" / "walship.yaml"
    conf.parent.mkdir()
    conf.write_text("store: {path: wal}\nentry_point_plugins: false\n")
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    with walship.open(config=conf) as log:  # store.path in the file: the file's directory
        assert log.store.path == tmp_path / "etc" / "wal"  # type: ignore[attr-defined]
    with walship.open("here", config=conf) as log:  # path=: the current directory
        assert log.store.path == work / "here"  # type: ignore[attr-defined]
        log.append(b"x")
    with walship.open("here") as log:  # the same log without the config
        assert [f.payload for f in log.read()] == [b"x"]
    assert not (tmp_path / "etc" / "here").exists()


# --- stats are typed and always whole -------------------------------------------------------


def test_stats_dump_to_json() -> None:
    with walship.open(store=MemoryStore()) as log:
        log.append(b"x")
        assert json.loads(json.dumps(log.stats()))["frames"] == 1


# --- type checkers: mypy --strict and pyright -----------------------------------------------


def _refused_lines(path: Path) -> set[int]:
    lines = path.read_text().splitlines()
    return {n for n, text in enumerate(lines, 1) if text.endswith("# refused")}


def _mypy(*files: Path) -> dict[str, set[int]]:
    """Lines with an error, per file name, of one ``mypy --strict`` run over ``files``."""
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--no-error-summary", *map(str, files)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    assert proc.returncode in (0, 1), proc.stdout + proc.stderr
    out: dict[str, set[int]] = {}
    for line in proc.stdout.splitlines():
        parts = line.split(":", 3)
        if len(parts) == 4 and parts[2].strip() == "error":
            out.setdefault(Path(parts[0]).name, set()).add(int(parts[1]))
    return out


def test_a_user_script_passes_mypy_strict_and_a_misspelt_keyword_does_not() -> None:
    user, misspelt = TYPING / "user_script.py", TYPING / "misspelt.py"
    errors = _mypy(user, misspelt)
    assert errors.get(user.name, set()) == set(), errors
    assert errors.get(misspelt.name, set()) == _refused_lines(misspelt)
    assert len(_refused_lines(misspelt)) >= 10


def _pyright() -> list[str]:
    """The pyright command, or skip (with why) where it cannot run here."""
    found = Path(sys.executable).with_name("pyright")
    command = [str(found)] if found.exists() else []
    if not command:
        pytest.skip("pyright is not installed (pip install pyright: the dev extra has it)")
    try:
        probe = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as e:
        pytest.skip(f"pyright cannot run here: {e}")
    if probe.returncode != 0:  # its first run fetches node from the npm registry
        pytest.skip(f"pyright cannot run here: {(probe.stderr or probe.stdout).strip()[-300:]}")
    return command


def test_a_user_script_passes_pyright_and_a_misspelt_keyword_does_not() -> None:
    command = _pyright()
    user, misspelt = TYPING / "user_script.py", TYPING / "misspelt.py"
    proc = subprocess.run(
        [*command, "--outputjson", "--pythonpath", sys.executable, str(user), str(misspelt)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    report = json.loads(proc.stdout)
    errors: dict[str, set[int]] = {}
    for d in report["generalDiagnostics"]:
        if d["severity"] == "error":
            errors.setdefault(Path(d["file"]).name, set()).add(d["range"]["start"]["line"] + 1)
    assert errors.get(user.name, set()) == set(), report["generalDiagnostics"]
    assert errors.get(misspelt.name, set()) == _refused_lines(misspelt)
