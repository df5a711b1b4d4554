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

pytestmark = pytest.mark.one_python  # (pyproject.toml: CI runs it on its main Python)

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


# --- expiring credentials -------------------------------------------------------------------


@pytest.fixture
def endpoints() -> Iterator[list[str]]:
    """The proxy endpoints a test uses: afterwards every s3fs filesystem talking to one is
    closed (a renewal leaves the old one behind, for the garbage collector) and the sockets
    are waited for, so that no later test sees descriptors closing under it."""
    import gc
    import time

    import s3fs

    used: list[str] = []
    yield used
    gc.collect()
    for fs in gc.get_objects():
        if isinstance(fs, s3fs.S3FileSystem) and getattr(fs, "endpoint_url", None) in used:
            client = getattr(fs, "_s3", None)
            if client is not None:
                s3fs.S3FileSystem.close_session(fs.loop, client)
    counts = [-1]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:  # until the count holds still for half a second
        counts.append(len(os.listdir("/proc/self/fd")))
        if counts[-5:] == [counts[-1]] * 5:
            break
        time.sleep(0.1)


def segment_put(method: str, path: str) -> bool:
    return method == "PUT" and path.split("?")[0].endswith(".aedbwal")


def expiring_proxy(expired_first: int, code: str = "ExpiredToken") -> Any:
    """A fault proxy in front of moto answering ``400 <code>`` to the first ``expired_first``
    uploads of a segment object."""
    from .s3proxy import FaultProxy

    server = moto_endpoint()
    seen = [0]

    def plan(n: int, method: str, path: str) -> str | None:
        if segment_put(method, path):
            seen[0] += 1
            return "expired" if seen[0] <= expired_first else None
        return None

    return FaultProxy(server.port, plan, expired_code=code).start()


def one_segment() -> tuple[str, bytes]:
    from walship.backends.memory import MemoryStore
    from walship.core.header import segment_name

    mem = MemoryStore()
    with walship.open(store=mem) as log:
        log.append_batch([b"expiring %d" % i for i in range(5)])
        log.rotate()
    return segment_name(1), mem.read(segment_name(1))


@pytest.mark.parametrize(
    "code", ["ExpiredToken", "InvalidToken", "TokenRefreshRequired", "ExpiredTokenException"]
)
def test_expired_credentials_are_renewed_and_the_request_retried_at_once(
    code: str, endpoints: list[str]
) -> None:
    """One refusal of expired credentials: a fresh filesystem object, the same request again,
    at once; the put succeeds without the caller seeing a failure."""
    from walship.archive import ArchiveStore

    bucket = new_bucket(moto_endpoint())
    proxy = expiring_proxy(1, code)
    endpoints.append(proxy.endpoint)
    try:
        archive = ArchiveStore(bucket.url, proxy.storage_options())
        first_fs = archive.fs
        name, raw = one_segment()
        result = archive.put(name, raw)
        assert result.uploaded and archive.credentials_generation == 1
        assert archive.fs is not first_fs
        # the refused request was made again, at once: the next request
        (refused,) = proxy.faults()
        again = proxy.requests[refused.n]
        assert (again.method, again.path) == (refused.method, refused.path)
        assert again.fault is None
        assert archive.get(result.manifest) == raw
    finally:
        proxy.stop()


def test_credentials_expiring_again_go_to_the_archivers_retry_policy(
    endpoints: list[str],
) -> None:
    """Refused again after the renewal: an attempt fails (naming ExpiredToken), the archiver's
    own retries take over, and the segment is archived."""
    bucket = new_bucket(moto_endpoint())
    proxy = expiring_proxy(2)
    endpoints.append(proxy.endpoint)
    try:
        with walship.open(
            store=__import__("walship.backends.memory", fromlist=["MemoryStore"]).MemoryStore(),
            entry_point_plugins=False,
            archive={
                "url": bucket.url,
                "storage_options": proxy.storage_options(),
                "upload_process": False,
                "retries": {"attempts": 5, "backoff": 0.01, "max_backoff": 0.05},
            },
        ) as log:
            log.append(b"x")
            log.rotate()
            assert log.archiver is not None and log.archiver.flush(timeout=60)
            stats = log.archiver.stats()
        assert stats["archived"] == 1 and stats["failed_attempts"] >= 1
        assert len(proxy.faults()) == 2
    finally:
        proxy.stop()


def test_renewed_credentials_come_from_the_environment_again(
    monkeypatch: pytest.MonkeyPatch, endpoints: list[str]
) -> None:
    """The environment's credentials change between the refusal and the retry (a rotated
    session token): the retry is signed with the new ones (moto accepts any: the proxy's
    recorded Authorization headers name the access key id)."""
    from walship.archive import ArchiveStore

    from .s3proxy import FaultProxy

    bucket = new_bucket(moto_endpoint())
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "OLDKEYOLDKEYOLDKEY01")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "old-secret")
    monkeypatch.setenv("AWS_SESSION_TOKEN", "old-token")
    monkeypatch.setenv("AWS_SECURITY_TOKEN", "old-token")

    rotated: list[int] = []

    def plan(n: int, method: str, path: str) -> str | None:
        if segment_put(method, path) and not rotated:  # rotated while the old are refused
            rotated.append(n)
            os.environ["AWS_ACCESS_KEY_ID"] = "NEWKEYNEWKEYNEWKEY02"
            os.environ["AWS_SECRET_ACCESS_KEY"] = "new-secret"
            os.environ["AWS_SESSION_TOKEN"] = os.environ["AWS_SECURITY_TOKEN"] = "new-token"
            return "expired"
        return None

    proxy = FaultProxy(moto_endpoint().port, plan).start()
    endpoints.append(proxy.endpoint)
    try:
        options = proxy.storage_options()
        del options["key"], options["secret"]  # from the environment
        archive = ArchiveStore(bucket.url, options)
        name, raw = one_segment()
        assert archive.put(name, raw).uploaded
        keys = proxy.access_keys()
        n = rotated[0]  # the refused request (from 1); the retry is the next one
        assert set(keys[:n]) == {"OLDKEYOLDKEYOLDKEY01"}
        assert set(keys[n:]) == {"NEWKEYNEWKEYNEWKEY02"}
        assert (proxy.requests[n].method, proxy.requests[n].path) == (
            proxy.requests[n - 1].method,
            proxy.requests[n - 1].path,
        )
        tokens = {r.headers.get("x-amz-security-token") for r in proxy.requests[n:]}
        assert tokens == {"new-token"}
    finally:
        proxy.stop()
