"""Credentials never show: not in logs, error messages, command output, ``log.stats()`` or reprs.

Distinctive fake credentials go where users put real ones: ``archive.storage_options`` (key,
secret, session token), environment variables that a YAML config expands (``${VAR}``), and the
password of an archive URL (``scheme://user:password@host/...``). Then everything walship says
is captured and searched:

* every log record of walship's loggers at every level, and of every other logger at INFO and
  above (botocore's own DEBUG log prints the access key id and the session token of each
  request: that is botocore's, and a reason to keep it below DEBUG in production);
* ``log.stats()``, the reprs of the log, its archiver and settings, the archive store, the
  archive record and the loaded config; every ``archive_failed`` error and stalled error;
* configuration errors about values that hold secrets;
* stdout and stderr of the installed ``walship`` script: ``archive``, ``inspect``, ``verify``
  and ``restore`` of a working archive, and ``archive`` and ``verify`` against a dead endpoint.
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from s3server import S3Bucket, free_port, moto_endpoint, new_bucket, radosgw_server

import walship
from walship.config import load_config, validate_config
from walship.core.record import ArchiveRecord
from walship.errors import WalshipError
from walship.plugins.hookspecs import hookimpl
from walship.plugins.logging import LoggingPlugin
from walship.plugins.metrics import MetricsPlugin

from .support import FIGURES

WALSHIP = Path(sys.executable).parent / "walship"
_TAG = secrets.token_hex(6)
KEY = f"WALSHIPKEY{_TAG.upper()}"
SECRET = f"walship-secret-{_TAG}"
TOKEN = f"walship-session-{_TAG}"
PASSWORD = f"walship-password-{_TAG}"
CREDENTIALS = (KEY, SECRET, TOKEN, PASSWORD)


def assert_clean(where: str, text: str) -> None:
    for credential in CREDENTIALS:
        assert credential not in text, f"{where} shows a credential: {text[:300]}"
    FIGURES["credentials.texts_checked"] += 1


def secret_options(endpoint: str) -> dict[str, Any]:
    return {
        "endpoint_url": endpoint,
        "key": KEY,
        "secret": SECRET,
        "token": TOKEN,
        "skip_instance_cache": True,
        "use_listings_cache": False,
        "config_kwargs": {
            "retries": {"total_max_attempts": 1},
            "connect_timeout": 1,
            "read_timeout": 5,
        },
    }


class Errors:
    """A plugin that keeps every ``archive_failed`` error."""

    def __init__(self) -> None:
        self.errors: list[str] = []

    @hookimpl
    def archive_failed(self, error: str) -> None:
        self.errors.append(error)


@pytest.fixture
def records(caplog: pytest.LogCaptureFixture) -> Iterator[list[logging.LogRecord]]:
    caplog.set_level(logging.DEBUG)
    out: list[logging.LogRecord] = []
    yield out
    out.extend(caplog.records)


def check_records(records: list[logging.LogRecord]) -> None:
    for r in records:
        if r.name.startswith("walship") or r.levelno >= logging.INFO:
            text = r.getMessage() + (str(r.exc_info[1]) if r.exc_info else "")
            assert_clean(f"log record of {r.name}", text)


def exercise(log: walship.Log, errors: Errors) -> list[tuple[str, str]]:
    """Append, rotate, archive (or fail to), checkpoint; everything the log then says."""
    for _ in range(3):
        log.append_batch([b"frame %d" % j for j in range(10)])
        log.rotate()
    archiver = log.archiver
    assert archiver is not None
    archiver.flush(timeout=30)
    log.checkpoint(10)
    said = [
        ("stats", json.dumps(log.stats(), default=str)),
        ("repr(log)", repr(log)),
        ("repr(archiver)", repr(archiver)),
        ("repr(settings)", repr(archiver.settings)),
        ("str(settings)", str(archiver.settings)),
        ("repr(archive)", repr(archiver.archive)),
        ("archiver vars", repr(vars(archiver))),
        ("stalled", json.dumps(archiver.stalled())),
        ("pending", repr(archiver.pending())),
        ("record", repr(ArchiveRecord.load(log.store).entries())),
        ("archive_failed", json.dumps(errors.errors)),
    ]
    metrics = MetricsPlugin.of(log)
    if metrics is not None:
        said.append(("metrics", json.dumps(metrics.snapshot()) + metrics.render()))
    return said


def test_storage_options_never_show(
    tmp_path: Path, records: list[logging.LogRecord], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A working archive (moto), then a dead endpoint: the same credentials throughout."""
    monkeypatch.setattr("s3fs.S3FileSystem.retries", 1)  # s3fs's own retries: quick
    bucket = new_bucket(moto_endpoint())
    for endpoint, works in (
        (bucket.server.endpoint, True),
        (f"http://127.0.0.1:{free_port()}", False),
    ):
        errors = Errors()
        log = walship.open(
            tmp_path / ("ok" if works else "dead"),
            entry_point_plugins=False,
            plugins=[errors, MetricsPlugin(), LoggingPlugin(level="DEBUG")],
            archive={
                "url": bucket.url,
                "storage_options": secret_options(endpoint),
                "retries": {"attempts": 2, "backoff": 0.01},
            },
            retention={"keep_local": "until_archived"},
        )
        said = exercise(log, errors)
        log.close()
        if works:
            assert not errors.errors and log.stats()["archive"]["archived"] == 3
        else:
            assert len(errors.errors) == 6 and log.stats()["archive"]["stalled_now"] == 3
        for where, text in said:
            assert_clean(where, text)
    check_records(records)


def test_credentials_a_real_server_refuses_never_show(
    tmp_path: Path, records: list[logging.LogRecord]
) -> None:
    """radosgw checks credentials (moto does not): the refusal names the URL, the status and
    the code, and still no credential shows anywhere."""
    bucket = new_bucket(radosgw_server())
    errors = Errors()
    log = walship.open(
        tmp_path / "refused",
        entry_point_plugins=False,
        plugins=[errors, MetricsPlugin(), LoggingPlugin(level="DEBUG")],
        archive={
            "url": bucket.url,
            "storage_options": secret_options(bucket.server.endpoint),
            "retries": {"attempts": 2, "backoff": 0.01},
        },
    )
    said = exercise(log, errors)
    log.close()
    assert len(errors.errors) == 6
    assert all(bucket.url in e and "HTTP 403 InvalidAccessKeyId" in e for e in errors.errors)
    for where, text in said:
        assert_clean(where, text)
    check_records(records)


def test_a_password_in_the_archive_url_never_shows(
    tmp_path: Path, records: list[logging.LogRecord]
) -> None:
    """``https://user:password@host/...`` (any fsspec URL may carry one): every message, the
    stats and the record show ``user:***@host``."""
    url = f"http://walship:{PASSWORD}@127.0.0.1:{free_port()}/wal"
    errors = Errors()
    log = walship.open(
        tmp_path / "wal",
        entry_point_plugins=False,
        plugins=[errors, LoggingPlugin(level="DEBUG")],
        archive={"url": url, "retries": {"attempts": 2, "backoff": 0.01}},
    )
    said = exercise(log, errors)
    log.close()
    assert errors.errors and log.stats()["archive"]["url"].startswith("http://walship:***@")
    for where, text in said:
        assert_clean(where, text)
    check_records(records)


# --- a config that expands credentials from the environment -----------------------------


def write_config(path: Path, endpoint: str, bucket: str, **extra: str) -> Path:
    config = path / f"walship-{secrets.token_hex(3)}.yaml"
    archive = {
        "url": f"s3://{bucket}/wal",
        "storage_options": {
            "endpoint_url": endpoint,
            "key": "${WALSHIP_TEST_KEY}",
            "secret": "${WALSHIP_TEST_SECRET}",
            "token": "${WALSHIP_TEST_TOKEN}",
            "skip_instance_cache": True,
            "config_kwargs": {
                "retries": {"total_max_attempts": 1},
                "connect_timeout": 1,
                "read_timeout": 5,
            },
        },
        "retries": {"attempts": 2, "backoff": "10ms"},
        **extra,
    }
    doc = {
        "store": {"backend": "posix", "path": str(path / "wal")},
        "archive": archive,
        "retention": {"keep_local": "last:1"},
        "plugins": ["walship.plugins.logging", "walship.plugins.metrics"],
        "entry_point_plugins": False,
    }
    config.write_text(json.dumps(doc))  # JSON is YAML
    return config


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {"WALSHIP_TEST_KEY": KEY, "WALSHIP_TEST_SECRET": SECRET, "WALSHIP_TEST_TOKEN": TOKEN}
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    return env


def test_a_config_with_expanded_credentials(
    tmp_path: Path, secret_env: dict[str, str], records: list[logging.LogRecord]
) -> None:
    bucket = new_bucket(moto_endpoint())
    config = write_config(tmp_path, bucket.server.endpoint, bucket.bucket)
    cfg = load_config(config)
    assert cfg.archive is not None and cfg.archive.storage_options["secret"] == SECRET
    assert_clean("repr(config)", repr(cfg))
    assert_clean("str(config)", str(cfg))
    with_password = validate_config(
        {"archive": {"url": "sftp://walship:${WALSHIP_TEST_PASSWORD}@127.0.0.1/wal"}},
        source="inline",
        env={"WALSHIP_TEST_PASSWORD": PASSWORD},
    )
    assert with_password.archive is not None and PASSWORD in with_password.archive.url
    assert_clean("repr(config with a URL password)", repr(with_password) + str(with_password))
    log = walship.open(config=config)
    said = exercise(log, Errors())
    log.close()
    for where, text in said:
        assert_clean(where, text)
    check_records(records)
    # errors about values that hold (or sit next to) credentials
    bad_configs = [
        {"workers": "many"},
        {"wokers": 2},
        {"retries": {"attempts": "${WALSHIP_TEST_SECRET}"}},
        {"storage_options": "${WALSHIP_TEST_SECRET}"},
        {"url": "${WALSHIP_TEST_SECRET}"},
        {"compression": "${WALSHIP_TEST_KEY}"},
    ]
    for extra in bad_configs:
        with pytest.raises(WalshipError) as e:
            walship.open(config=write_config(tmp_path, "http://x", "b", **extra))  # type: ignore[arg-type]
        assert_clean(f"config error {extra}", str(e.value))
        FIGURES["credentials.config_errors"] += 1


# --- the installed script ---------------------------------------------------------------


def script(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [str(WALSHIP), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **env},
    )
    assert "Traceback" not in proc.stderr, proc.stderr
    assert_clean(f"walship {args[0]} stdout", proc.stdout)
    assert_clean(f"walship {args[0]} stderr", proc.stderr)
    FIGURES["credentials.commands"] += 1
    return proc


def test_the_command_line_never_shows_credentials(
    tmp_path: Path, secret_env: dict[str, str]
) -> None:
    bucket: S3Bucket = new_bucket(moto_endpoint())
    config = write_config(tmp_path, bucket.server.endpoint, bucket.bucket)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        for _ in range(3):
            log.append_batch([b"frame %d" % j for j in range(10)])
            log.rotate()
    proc = script("archive", "-c", config, env=secret_env)
    assert proc.returncode == 0 and "archived 3 segments" in proc.stdout, proc.stderr
    proc = script("inspect", bucket.url, "-c", config, "--json", env=secret_env)
    assert proc.returncode == 0 and json.loads(proc.stdout)
    proc = script("verify", bucket.url, "-c", config, env=secret_env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = script("inspect", tmp_path / "wal", env=secret_env)
    assert proc.returncode == 0
    proc = script("restore", bucket.url, tmp_path / "restored", "-c", config, env=secret_env)
    assert proc.returncode == 0, proc.stderr
    # a dead endpoint: errors everywhere, credentials nowhere
    dead = write_config(tmp_path, f"http://127.0.0.1:{free_port()}", bucket.bucket)
    with walship.open(tmp_path / "wal", entry_point_plugins=False) as log:
        log.append(b"one more")
        log.rotate()
    proc = script("archive", "-c", dead, env=secret_env)
    assert proc.returncode == 1 and "not archived" in proc.stderr
    proc = script(
        "verify", bucket.url, "-o", f"key={KEY}", "-o", f"secret={SECRET}", "-c", dead, env={}
    )
    assert proc.returncode == 2 and proc.stderr.startswith("walship: error: ")
