"""The YAML configuration: typed values, the plain dicts handed to the Log, one-line errors
(key path, value, expectation; "did you mean"), ${VAR} expansion, secrets kept out of messages,
yaml.safe_load only, and walship.open(config=..., **overrides)."""

from __future__ import annotations

import os
import textwrap
from pathlib import Path

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.config import (
    WalshipConfig,
    load_config,
    parse_config,
    parse_duration,
    parse_size,
    validate_config,
)
from walship.errors import ConfigError
from walship.plugins.metrics import MetricsPlugin

FULL = """
store:
  backend: posix
  path: ./segments
instance_id: 42
durability: interval
sync_interval: 5ms
rotation:
  max_segment_bytes: 8MiB
  max_segment_age: 1m30s
archive:
  url: s3://my-bucket/wal
  storage_options:
    endpoint_url: ${S3_ENDPOINT_URL:-}
    key: ${AWS_ACCESS_KEY_ID}
  workers: 8
  compression: zstd
  retries: {attempts: 5, backoff: 250ms, max_backoff: 30s}
  lag_warning: 50
  upload_process: no
  conditional_create: checked
retention:
  keep_local: last:3
plugins:
  - walship.plugins.logging
  - name: walship.plugins.metrics
    options: {window: 64}
entry_point_plugins: false
"""


def test_a_full_config_becomes_typed_values(tmp_path: Path) -> None:
    path = tmp_path / "conf" / "walship.yaml"
    path.parent.mkdir()
    path.write_text(FULL)
    cfg = load_config(path, env={"AWS_ACCESS_KEY_ID": "AKIA-test"})
    assert cfg.store.backend == "posix"
    assert cfg.store_options() == {"path": str(tmp_path / "conf" / "segments")}
    assert cfg.instance_id == 42
    assert cfg.durability == "interval"
    assert cfg.sync_interval == pytest.approx(0.005)
    assert cfg.rotation.max_segment_bytes == 8 * 1024 * 1024
    assert cfg.rotation.max_segment_age == 90.0
    assert cfg.entry_point_plugins is False
    assert cfg.plugin_specs() == [
        {"name": "walship.plugins.logging", "options": {}},
        {"name": "walship.plugins.metrics", "options": {"window": 64}},
    ]
    # the contract with the archiver: plain dicts of exactly this shape
    assert cfg.archive_options() == {
        "url": "s3://my-bucket/wal",
        "storage_options": {"endpoint_url": "", "key": "AKIA-test"},
        "workers": 8,
        "compression": "zstd",
        "retries": {"attempts": 5, "backoff": 0.25, "max_backoff": 30.0},
        "lag_warning": 50,
        "upload_process": False,
        "conditional_create": "checked",
        "drain_on_close": 30.0,
        "max_pending": None,
        "backpressure_timeout": 30.0,
    }
    assert cfg.retention_options() == {"keep_local": "last:3"}
    kwargs = cfg.log_kwargs()
    assert kwargs == {
        "instance_id": 42,
        "durability": "interval",
        "sync_interval": pytest.approx(0.005),
        "max_segment_bytes": 8 * 1024 * 1024,
        "max_segment_age": 90.0,
        "archive": cfg.archive_options(),
        "retention": {"keep_local": "last:3"},
    }


def test_archive_defaults_and_no_sections() -> None:
    cfg = parse_config("archive: {url: 'file:///tmp/arch'}\nretention: {keep_local: all}")
    assert cfg.archive_options() == {
        "url": "file:///tmp/arch",
        "storage_options": {},
        "workers": 4,
        "compression": "none",
        "retries": {"attempts": 10, "backoff": 0.5, "max_backoff": 60.0},
        "lag_warning": 64,
        "upload_process": True,
        "conditional_create": "required",
        "drain_on_close": 30.0,
        "max_pending": None,
        "backpressure_timeout": 30.0,
    }
    assert cfg.retention_options() == {"keep_local": "all"}
    cfg = parse_config("archive: {url: 'memory://x'}\nretention: {keep_local: until_archived}")
    assert cfg.retention_options() == {"keep_local": "until_archived"}
    bare = parse_config("durability: none")
    assert bare.archive_options() is None and bare.retention_options() is None
    assert "archive" not in bare.log_kwargs() and "retention" not in bare.log_kwargs()


def test_an_empty_file_means_every_default(tmp_path: Path) -> None:
    (tmp_path / "walship.yaml").write_text("# nothing set\n")
    cfg = load_config(tmp_path / "walship.yaml")
    assert cfg.store.backend == "posix"
    assert cfg.store_options() == {"path": str(tmp_path / "wal")}
    assert cfg.log_kwargs() == {
        "instance_id": None,
        "durability": "always",
        "sync_interval": 0.01,
        "max_segment_bytes": 64 * 1024 * 1024,
        "max_segment_age": 60.0,
    }
    assert cfg.plugins == [] and cfg.entry_point_plugins is True


@pytest.mark.parametrize(
    ("text", "size"),
    [
        (1048576, 1048576),
        ("1048576", 1048576),
        ("512KiB", 512 * 1024),
        ("64MiB", 64 * 2**20),
        ("64 mib", 64 * 2**20),
        ("1.5GiB", 3 * 2**29),
        ("10MB", 10_000_000),
        ("2TiB", 2 * 2**40),
        ("100B", 100),
    ],
)
def test_sizes(text: object, size: int) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["64 Mb!", "MiB", "1.5", "-1KiB", "64K", True, None, 1.5])
def test_bad_sizes(text: object) -> None:
    with pytest.raises(ValueError):
        parse_size(text)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        (1.5, 1.5),
        (2, 2.0),
        ("1.5", 1.5),
        ("250us", 0.00025),
        ("10ms", 0.01),
        ("60s", 60.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1m30s", 90.0),
    ],
)
def test_durations(text: object, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "10 parsecs", "s", "1m 30s", "ms10", False, None])
def test_bad_durations(text: object) -> None:
    with pytest.raises(ValueError):
        parse_duration(text)


URL_HELP = "an fsspec URL like s3://bucket/prefix, gs://bucket/prefix or file:///path"
SIZE_HELP = "a size of at least 64 bytes, like 64MiB, 512KiB or 1048576"
DURATION_HELP = "a positive duration, like 10ms, 60s, 5m or 1.5 (seconds)"
ID_HELP = "an integer from 0 to 18446744073709551615"

# (yaml, environment, the whole one-line message)
BAD_CONFIGS: list[tuple[str, dict[str, str], str]] = [
    (
        "durability: sometimes",
        {},
        "durability = 'sometimes': expected one of always, interval, none",
    ),
    (
        "durability: alway",
        {},
        "durability = 'alway': expected one of always, interval, none (did you mean 'always'?)",
    ),
    ("durabilty: none", {}, "durabilty: unknown key (did you mean 'durability'?)"),
    (
        "rotation: {max_segmnt_bytes: 1MiB}",
        {},
        "rotation.max_segmnt_bytes: unknown key (did you mean 'max_segment_bytes'?)",
    ),
    (
        "rotation: {max_segment_bytes: 64 Mb!}",
        {},
        f"rotation.max_segment_bytes = '64 Mb!': expected {SIZE_HELP}",
    ),
    (
        "rotation: {max_segment_bytes: 10}",
        {},
        f"rotation.max_segment_bytes = 10: expected {SIZE_HELP}",
    ),
    (
        "rotation: {max_segment_age: soon}",
        {},
        f"rotation.max_segment_age = 'soon': expected {DURATION_HELP}",
    ),
    ("rotation: 64MiB", {}, "rotation = '64MiB': expected a mapping of keys to values"),
    ("sync_interval: 0ms", {}, f"sync_interval = '0ms': expected {DURATION_HELP}"),
    ("instance_id: -1", {}, f"instance_id = -1: expected {ID_HELP}"),
    (
        "instance_id: ${WALSHIP_ID}",
        {"WALSHIP_ID": "abc"},
        f"instance_id = '${{WALSHIP_ID}}' (from the environment): expected {ID_HELP}",
    ),
    (
        "store: {backend: posx, path: wal}",
        {},
        "store.backend = 'posx': expected a store backend (did you mean 'posix'? known: "
        "memory, posix)",
    ),
    (
        "store: {path: wal, pth: x}",
        {},
        "store.pth: unknown key for backend 'posix' (did you mean 'path'?)",
    ),
    (
        "store: {backend: posix}",
        {},
        "store.path: missing, expected a value (backend 'posix' requires 'path')",
    ),
    (
        "store: {backend: memory, path: wal}",
        {},
        "store.path: unknown key for backend 'memory' (expected one of: backend, capacity)",
    ),
    (
        "store: {path: '${1BAD}'}",
        {},
        "store.path: '${1BAD}' is not a valid reference, expected ${NAME} or ${NAME:-default}",
    ),
    (
        "archive: {url: s4://bucket/wal}",
        {},
        f"archive.url = 's4://bucket/wal': expected {URL_HELP} (fsspec knows no protocol 's4'; "
        "did you mean 's3'?)",
    ),
    ("archive: {url: bucket/wal}", {}, f"archive.url = 'bucket/wal': expected {URL_HELP}"),
    (
        "archive: {storage_options: {}}",
        {},
        "archive.url: missing, expected an fsspec URL like s3://bucket/prefix",
    ),
    (
        "archive: {url: s3://b/w, workers: 0}",
        {},
        "archive.workers = 0: expected an integer from 1 to 256",
    ),
    (
        "archive: {url: s3://b/w, compression: gzip}",
        {},
        "archive.compression = 'gzip': expected one of none, zstd",
    ),
    (
        "archive: {url: s3://b/w, retries: {attempts: 3, backof: 1s}}",
        {},
        "archive.retries.backof: unknown key (did you mean 'backoff'?)",
    ),
    (
        "archive: {url: s3://b/w, retries: {backoff: 2s, max_backoff: 1s}}",
        {},
        "archive.retries.max_backoff = '1s': expected a duration of at least backoff (2.0s)",
    ),
    (
        "archive: {url: s3://b/w, lag_warning: lots}",
        {},
        "archive.lag_warning = 'lots': expected an integer from 1 to 1000000000",
    ),
    (
        "archive: {url: s3://b/w, storage_options: [a]}",
        {},
        "archive.storage_options = <hidden>: expected a mapping of keys to values",
    ),
    (
        "archive: {url: s3://b/w, storage_options: {secret: '${NOPE}'}}",
        {},
        "archive.storage_options.secret: environment variable NOPE is not set "
        "(write ${NOPE:-default} to give a default)",
    ),
    (
        "archive: {url: s3://b/w}\nretention: {keep_local: last:0}",
        {},
        "retention.keep_local = 'last:0': expected all, until_archived or last:N "
        "(N >= 1 closed segments)",
    ),
    (
        "retention: {keep_local: until_archived}",
        {},
        "retention.keep_local = 'until_archived': expected 'all' without an archive: section "
        "(only archived segments are ever removed)",
    ),
    (
        "plugins: walship.plugins.logging",
        {},
        "plugins = 'walship.plugins.logging': expected a list",
    ),
    (
        "plugins: [{nam: x}]",
        {},
        "plugins[0].nam: unknown key (did you mean 'name'?) (and 1 more problem)",
    ),
    (
        "plugins: [{name: x, options: [1]}]",
        {},
        "plugins[0].options = <hidden>: expected a mapping of keys to values",
    ),
    (
        "plugins: [3]",
        {},
        "plugins[0] = 3: expected a plugin name ('module:attr' or an entry-point name) or "
        "{name:, options:}",
    ),
    ("entry_point_plugins: maybe", {}, "entry_point_plugins = 'maybe': expected true or false"),
    (
        "store: {path: wal\n",
        {},
        "invalid YAML at line 2, column 1: expected ',' or '}', but got '<stream end>'",
    ),
    (
        "- store",
        {},
        "expected a mapping of settings (store:, durability:, ...) at the top level, got list",
    ),
    (
        # yaml.safe_load only: no object construction, ever
        "!!python/object/apply:os.system [echo hacked]",
        {},
        "invalid YAML at line 1, column 1: could not determine a constructor for the tag "
        "'tag:yaml.org,2002:python/object/apply:os.system'",
    ),
]


def test_the_table_is_big_enough() -> None:
    assert len(BAD_CONFIGS) >= 15


@pytest.mark.parametrize(("text", "env", "message"), BAD_CONFIGS)
def test_a_bad_config_gives_one_exact_line(text: str, env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "walship.yaml", env=env)
    assert str(info.value) == f"walship.yaml: {message}"
    assert "\n" not in str(info.value)


def test_a_bad_config_file_names_its_path(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("rotation:\n  max_segment_age: never\n")
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert (
        str(info.value) == f"{path}: rotation.max_segment_age = 'never': expected {DURATION_HELP}"
    )


def test_unreadable_config_files(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "missing.yaml")
    assert str(info.value) == (
        f"{tmp_path / 'missing.yaml'}: no such config file (`walship init` writes one)"
    )
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory, expected a YAML config file"
    (tmp_path / "latin1.yaml").write_bytes(b"durability: \xe9t\xe9\n")
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "latin1.yaml")
    assert str(info.value) == f"{tmp_path / 'latin1.yaml'}: not UTF-8 text (byte 12)"


# --- environment expansion ------------------------------------------------------------


def test_variables_expand_with_defaults_and_escapes() -> None:
    env = {"WAL_DIR": "/data/wal", "EMPTY": "", "ID": "7", "PART": "mid"}
    cfg = parse_config(
        textwrap.dedent(
            """
            store: {path: "${WAL_DIR}"}
            instance_id: ${ID}
            durability: ${DURABILITY:-interval}
            sync_interval: ${EMPTY:-20ms}
            archive:
              url: "s3://bucket/pre-${PART}-post/$${NOT_A_VAR}"
              storage_options: {token: "${TOKEN:-}", note: "a: b"}
            """
        ),
        env=env,
    )
    assert cfg.store_options() == {"path": "/data/wal"}
    assert cfg.instance_id == 7  # a string from the environment, validated as an integer
    assert cfg.durability == "interval"
    assert cfg.sync_interval == pytest.approx(0.02)  # set but empty takes the default
    assert cfg.archive is not None
    assert cfg.archive.url == "s3://bucket/pre-mid-post/${NOT_A_VAR}"
    assert cfg.archive.storage_options == {"token": "", "note": "a: b"}


def test_a_variable_cannot_inject_yaml() -> None:
    cfg = parse_config(
        "archive: {url: 's3://b/w', storage_options: {endpoint_url: '${EVIL}'}}",
        env={"EVIL": "x}\nretention: {keep_local: until_archived"},
    )
    assert cfg.retention is None
    assert cfg.archive is not None
    assert cfg.archive.storage_options["endpoint_url"].startswith("x}\nretention")


def test_os_environ_is_the_default_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("WALSHIP_TEST_DURABILITY", "none")
    assert parse_config("durability: ${WALSHIP_TEST_DURABILITY}").durability == "none"


# --- secrets ----------------------------------------------------------------------------

SECRET = "s3cr3t-Value-9f8e7d"


@pytest.mark.parametrize(
    "text",
    [
        "instance_id: ${SECRET_ENV}",  # a bad value from the environment
        "durability: ${SECRET_ENV}",
        "archive: {url: '${SECRET_ENV}'}",
        "archive: {url: s3://b/w, storage_options: 's3cr3t-Value-9f8e7d'}",
        "archive: {url: s3://b/w, storage_options: {key: 1}, workers: '${SECRET_ENV}'}",
        "archive: {url: 's3://user:s3cr3t-Value-9f8e7d@host/bucket', workers: 0}",
        "archive: {url: 'bad://user:s3cr3t-Value-9f8e7d@host/bucket'}",
        "plugins: [{name: x, options: 's3cr3t-Value-9f8e7d'}]",
        "store: {path: wal, password: 's3cr3t-Value-9f8e7d'}",
        "rotation: {max_segment_bytes: {api_token: 's3cr3t-Value-9f8e7d'}}",
    ],
)
def test_secrets_never_appear_in_messages(text: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config(text, "walship.yaml", env={"SECRET_ENV": SECRET})
    assert SECRET not in str(info.value)
    assert "s3cr3t" not in str(info.value)


def test_secrets_are_not_in_the_repr_either() -> None:
    cfg = parse_config(
        "archive: {url: s3://b/w, storage_options: {secret: '${S}'}}\n"
        "plugins: [{name: walship.plugins.metrics, options: {window: 3}}]",
        env={"S": SECRET},
    )
    assert SECRET not in repr(cfg)
    assert SECRET not in str(cfg)
    assert cfg.archive_options()["storage_options"] == {"secret": SECRET}  # type: ignore[index]


def test_a_secret_from_the_environment_shows_as_its_reference() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config("instance_id: ${SECRET_ENV}", "w.yaml", env={"SECRET_ENV": SECRET})
    assert str(info.value) == (
        f"w.yaml: instance_id = '${{SECRET_ENV}}' (from the environment): expected {ID_HELP}"
    )
    with pytest.raises(ConfigError) as info:
        parse_config("archive: {url: 'bad://user:pw@host/b'}", "w.yaml", env={})
    assert "bad://<hidden>@host/b" in str(info.value)


# --- walship.open(config=...) -----------------------------------------------------------


def test_open_from_a_file_with_overrides(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "etc" / "walship.yaml"
    conf.parent.mkdir()
    conf.write_text(
        "store: {path: wal}\ndurability: always\nrotation: {max_segment_bytes: 1MiB}\n"
        "entry_point_plugins: false\n"
    )
    monkeypatch.chdir(tmp_path)  # a relative store.path is relative to the file, not the cwd
    with walship.open(config=str(conf)) as log:
        assert isinstance(log.store, PosixStore)
        assert log.store.path == tmp_path / "etc" / "wal"
        assert log.durability.value == "always"
        log.append(b"one")
    metrics = MetricsPlugin()
    with walship.open(
        config=conf,
        durability="none",
        max_segment_bytes="2KiB",
        rotation={"max_segment_age": "5s"},
        plugins=[metrics, "walship.plugins.logging"],
    ) as log:
        assert log.durability.value == "none"
        assert log._state.manager.policy.max_segment_bytes == 2048
        assert log._state.manager.policy.max_segment_age == 5.0
        assert log.plugins.has_plugin("walship.plugins.logging")
        assert MetricsPlugin.of(log) is metrics
        for _ in range(40):
            log.append(b"x" * 100)
        assert log.last_seq == 41
    assert metrics.snapshot()["segments_closed_by_reason"]["size"] >= 1
    other = tmp_path / "elsewhere"
    with walship.open(other, config=conf) as log:  # a path overrides store.path
        assert log.store.path == other  # type: ignore[attr-defined]


def test_open_with_a_mapping_a_store_and_runtime_options() -> None:
    mem = MemoryStore()
    with walship.open(config={"durability": "none"}, store=mem, instance_id=9) as log:
        assert log.store is mem
        assert log.instance_id == 9
        log.append(b"m")
    with walship.open(config={"store": {"backend": "memory"}}) as log:
        assert isinstance(log.store, MemoryStore)


def test_bad_overrides_are_config_errors(tmp_path: Path) -> None:
    conf = tmp_path / "walship.yaml"
    conf.write_text("store: {path: wal}\n")
    with pytest.raises(ConfigError) as info:
        walship.open(config=conf, durabilty="none")
    assert str(info.value).startswith(
        "override durabilty: unknown option (did you mean 'durability'? expected one of: "
    )
    with pytest.raises(ConfigError) as info:
        walship.open(config=conf, max_segment_bytes="huge")
    assert str(info.value) == (
        f"{conf} (with overrides): rotation.max_segment_bytes = 'huge': expected {SIZE_HELP}"
    )
    assert not (tmp_path / "wal").exists()  # nothing was created


def test_a_config_object_can_be_reused_with_overrides(tmp_path: Path) -> None:
    conf = tmp_path / "walship.yaml"
    conf.write_text(
        "store: {path: wal}\narchive: {url: 'file:///tmp/x', storage_options: {a: null}}\n"
    )
    cfg = load_config(conf)
    assert isinstance(cfg, WalshipConfig)
    data = cfg.model_dump()
    assert data["archive"]["storage_options"] == {"a": None}
    again = validate_config({"store": {"backend": "posix", **cfg.store_options()}})
    assert again.store_options() == {"path": str(tmp_path / "wal")}


def test_the_library_import_stays_light() -> None:
    import subprocess
    import sys

    code = (
        "import sys, walship\n"
        "heavy = {'click', 'pydantic', 'yaml', 'fsspec', 's3fs', 'walship.config', "
        "'walship.cli'}\n"
        "print(sorted(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=os.environ
    ).stdout
    assert out.strip() == "[]"
