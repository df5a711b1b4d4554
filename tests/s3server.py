"""Test support for the archive.

* A real S3 endpoint: moto's ``ThreadedMotoServer`` on 127.0.0.1, reached through s3fs over
  HTTP (moto's in-process ``mock_aws`` does not work with s3fs's aiobotocore). One server per
  test session (:func:`moto_endpoint` starts it lazily, the :func:`s3_bucket` fixture gives a
  fresh bucket on it); a test that must stop the server starts its own :class:`MotoServer`.
  Credentials are fake and ``AWS_EC2_METADATA_DISABLED`` is set, so nothing ever tries an
  address off this machine.
* A production S3 server: Ceph radosgw (:class:`RadosGW`, :func:`radosgw_server`), the shared
  instance or the one ``tools/radosgw/start.sh`` starts; it checks credentials and Content-MD5
  and answers errors with empty ``<Message>`` elements, as moto does not.
* The fixtures :func:`s3_server` (parametrised ``moto`` / ``radosgw``) and :func:`s3_target`
  (a fresh bucket on it): a test that takes them runs against both servers.
* :class:`FlakyFileSystem`: an fsspec store that fails its first K puts.
* :func:`closed_segments`, :func:`wait_until`, :class:`Recorder` (a plugin that records hooks).

``tests/conftest.py`` registers this module as a plugin, so its fixtures (``s3_bucket``,
``s3_server``, ``s3_target``) are everywhere; a module may also call ``new_bucket(server)``.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import secrets
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import pytest

from walship.plugins.hookspecs import hookimpl

FAKE_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_EC2_METADATA_DISABLED": "true",
}


def _fake_credentials() -> None:
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    for k, v in FAKE_ENV.items():
        os.environ[k] = v
    for k in ("AWS_PROFILE", "AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        os.environ.pop(k, None)


class MotoServer:
    """A moto S3 server on 127.0.0.1 that can be stopped and started again on the same port
    (moto keeps its buckets in the process, so they survive a restart)."""

    name = "moto"

    def __init__(self, port: int = 0) -> None:
        _fake_credentials()
        self.port = port
        self._server: Any = None

    def start(self) -> None:
        from moto.server import ThreadedMotoServer

        deadline = time.monotonic() + 10
        while True:
            try:
                server = ThreadedMotoServer(ip_address="127.0.0.1", port=self.port, verbose=False)
                server.start()
                break
            except OSError:  # the port is still in TIME_WAIT after a stop
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        self._server = server
        self.port = server.get_host_and_port()[1]

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @property
    def running(self) -> bool:
        return self._server is not None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_options(self) -> dict[str, Any]:
        """s3fs options for this endpoint: fake keys, no instance cache, quick failures."""
        return {
            "endpoint_url": self.endpoint,
            "key": "testing",
            "secret": "testing",
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "config_kwargs": {
                "retries": {"max_attempts": 1, "mode": "standard"},
                "connect_timeout": 1,
                "read_timeout": 5,
            },
        }

    def create_bucket(self, name: str) -> None:
        import boto3

        boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1").create_bucket(
            Bucket=name
        )

    def client(self) -> Any:
        """A boto3 client on this endpoint (to plant, truncate and delete objects)."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1")


_session_server: MotoServer | None = None
_session_lock = threading.Lock()


def moto_endpoint() -> MotoServer:
    """The session's moto server, started on first use and stopped at exit."""
    global _session_server
    with _session_lock:
        if _session_server is None:
            server = MotoServer()
            server.start()
            atexit.register(server.stop)
            _session_server = server
        return _session_server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# --- Ceph radosgw ---------------------------------------------------------------------------

RADOSGW_ENDPOINT = "http://127.0.0.1:17480"
RADOSGW_ACCESS_KEY = "WALSHIPTESTACCESSKEY"
RADOSGW_SECRET_KEY = "walshipTestSecretKey0123456789abcdefghij"
CEPH_CONF = "/tmp/walship-ceph/ceph.conf"
RADOSGW_NAME = "client.rgw.a"
START_SCRIPT = Path(__file__).resolve().parent.parent / "tools" / "radosgw" / "start.sh"


class RadosGW:
    """A running Ceph radosgw: the interface of :class:`MotoServer` (``endpoint``,
    ``storage_options()``, ``create_bucket``, ``client()``), plus ``admin`` (``radosgw-admin``)
    and ``stop``/``start`` of the radosgw daemon alone (the cluster stays up; the buckets
    survive)."""

    name = "radosgw"

    def __init__(
        self,
        endpoint: str = RADOSGW_ENDPOINT,
        access_key: str = RADOSGW_ACCESS_KEY,
        secret_key: str = RADOSGW_SECRET_KEY,
        ceph_conf: str = CEPH_CONF,
        daemon: str = RADOSGW_NAME,
        overrides: tuple[str, ...] = (),
    ) -> None:
        self.endpoint = endpoint
        self.access_key = access_key
        self.secret_key = secret_key
        self.ceph_conf = ceph_conf
        self.daemon = daemon
        self.overrides = overrides  # command-line settings of the daemon (a spare's port)

    @contextlib.contextmanager
    def spare(self) -> Iterator[RadosGW]:
        """A second radosgw daemon of the same cluster (the same users and buckets) on a port
        of its own, stopped afterwards: a test that stops its daemon stops this one, never the
        shared one another test (another xdist worker) is using."""
        port = free_port()
        data = Path(self.ceph_conf).parent / f"rgw-spare-{port}"
        data.mkdir(exist_ok=True)
        spare = RadosGW(
            f"http://127.0.0.1:{port}",
            self.access_key,
            self.secret_key,
            self.ceph_conf,
            daemon=f"client.rgw.spare{port}",
            overrides=(f"--rgw_frontends=beast endpoint=127.0.0.1:{port}", f"--rgw_data={data}"),
        )
        spare.start()
        try:
            yield spare
        finally:
            spare.stop()
            shutil.rmtree(data, ignore_errors=True)

    def storage_options(self) -> dict[str, Any]:
        """s3fs options for this endpoint: its keys, no instance cache, quick failures."""
        return {
            "endpoint_url": self.endpoint,
            "key": self.access_key,
            "secret": self.secret_key,
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "config_kwargs": {
                "retries": {"max_attempts": 1, "mode": "standard"},
                "connect_timeout": 1,
                "read_timeout": 10,
            },
        }

    def client(self) -> Any:
        """A boto3 client with this server's keys."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            aws_session_token=None,
        )

    def create_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def admin(self, *args: str) -> str:
        """Run ``radosgw-admin`` on this cluster; its stdout (raises on failure)."""
        import subprocess

        done = subprocess.run(
            ["radosgw-admin", "-c", self.ceph_conf, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if done.returncode != 0:
            raise RuntimeError(f"radosgw-admin {' '.join(args)}: {done.stderr.strip()}")
        return done.stdout

    def answers(self, timeout: float = 2.0) -> bool:
        """True when the endpoint answers HTTP at all."""
        import urllib.error
        import urllib.request

        try:
            urllib.request.urlopen(self.endpoint, timeout=timeout).close()
        except urllib.error.HTTPError:
            return True
        except OSError:
            return False
        return True

    def _pid_file(self) -> Path:
        return Path(self.ceph_conf).parent / "run" / f"{self.daemon}.pid"

    def stop(self) -> None:
        """Stop the radosgw daemon (SIGTERM, then SIGKILL) and wait until the port is closed.
        Only a :meth:`spare`'s: stopping the shared daemon fails whatever another xdist worker
        asks of it meanwhile."""
        import signal

        pid = int(self._pid_file().read_text().strip())
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        while self.answers(0.5) or _alive(pid):
            if time.monotonic() > deadline:
                os.kill(pid, signal.SIGKILL)
                deadline = time.monotonic() + 15
            time.sleep(0.1)

    def start(self, timeout: float = 60.0) -> None:
        """Start the radosgw daemon (when it is not running) and wait until it answers."""
        import subprocess

        if not self.answers(0.5):
            subprocess.run(
                ["radosgw", "-c", self.ceph_conf, "-n", self.daemon, *self.overrides], check=True
            )
        if not wait_until(lambda: self.answers(0.5), timeout=timeout, interval=0.2):
            raise RuntimeError(f"radosgw at {self.endpoint} did not come back in {timeout}s")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


_radosgw: RadosGW | None = None
_radosgw_missing: str | None = None


def radosgw_server() -> RadosGW:
    """The session's radosgw (endpoint, keys and ceph.conf from ``WALSHIP_RADOSGW_ENDPOINT``,
    ``WALSHIP_RADOSGW_ACCESS_KEY``, ``WALSHIP_RADOSGW_SECRET_KEY``, ``WALSHIP_CEPH_CONF``).
    When it does not answer, ``tools/radosgw/start.sh`` starts it (as root); when it is still
    unreachable the test is skipped, or fails under ``WALSHIP_REQUIRE_RADOSGW=1``."""
    global _radosgw, _radosgw_missing
    with _session_lock:
        if _radosgw is None and _radosgw_missing is None:
            _fake_credentials()  # nothing falls back to a real account
            server = RadosGW(
                os.environ.get("WALSHIP_RADOSGW_ENDPOINT", RADOSGW_ENDPOINT),
                os.environ.get("WALSHIP_RADOSGW_ACCESS_KEY", RADOSGW_ACCESS_KEY),
                os.environ.get("WALSHIP_RADOSGW_SECRET_KEY", RADOSGW_SECRET_KEY),
                os.environ.get("WALSHIP_CEPH_CONF", CEPH_CONF),
            )
            if not server.answers() and START_SCRIPT.exists() and os.geteuid() == 0:
                import subprocess

                subprocess.run(["bash", str(START_SCRIPT)], check=False, timeout=300)
            if server.answers() or wait_until(server.answers, timeout=10, interval=0.5):
                _radosgw = server
            else:
                _radosgw_missing = f"radosgw does not answer at {server.endpoint}"
        if _radosgw is not None:
            return _radosgw
    reason = str(_radosgw_missing)
    if os.environ.get("WALSHIP_REQUIRE_RADOSGW") == "1":
        pytest.fail(reason + " (WALSHIP_REQUIRE_RADOSGW=1)")
    pytest.skip(reason)


class S3Server(Protocol):
    """What the tests use of either server."""

    @property
    def endpoint(self) -> str: ...

    def storage_options(self) -> dict[str, Any]: ...

    def create_bucket(self, name: str) -> None: ...

    def client(self) -> Any: ...


@pytest.fixture(params=["moto", "radosgw"])
def s3_server(request: pytest.FixtureRequest) -> S3Server:
    """Either server: a test that takes it runs on moto and on radosgw."""
    if request.param == "moto":
        return moto_endpoint()
    return radosgw_server()


@dataclass
class S3Bucket:
    """A fresh bucket on a server (moto or radosgw), and an archive URL inside it."""

    server: S3Server
    bucket: str
    prefix: str = "wal"

    @property
    def url(self) -> str:
        return f"s3://{self.bucket}/{self.prefix}"

    @property
    def storage_options(self) -> dict[str, Any]:
        return self.server.storage_options()

    def key(self, name: str) -> str:
        return f"{self.prefix}/{name}"

    def put(self, name: str, data: bytes) -> None:
        self.server.client().put_object(Bucket=self.bucket, Key=self.key(name), Body=data)

    def get(self, name: str) -> bytes:
        body = self.server.client().get_object(Bucket=self.bucket, Key=self.key(name))["Body"]
        return bytes(body.read())

    def delete(self, name: str) -> None:
        self.server.client().delete_object(Bucket=self.bucket, Key=self.key(name))

    def names(self) -> list[str]:
        out = self.server.client().list_objects_v2(Bucket=self.bucket, Prefix=self.prefix + "/")
        return sorted(o["Key"][len(self.prefix) + 1 :] for o in out.get("Contents", []))


def new_bucket(server: S3Server) -> S3Bucket:
    name = f"walship-{secrets.token_hex(6)}"
    server.create_bucket(name)
    return S3Bucket(server, name)


@pytest.fixture
def s3_bucket() -> Iterator[S3Bucket]:
    """A fresh bucket on the session's moto server."""
    yield new_bucket(moto_endpoint())


def remove_bucket(target: S3Bucket) -> None:
    """Best effort: empty and delete ``target``'s bucket (radosgw keeps what a test leaves, and
    CI runs the suite against one radosgw several times)."""
    client = target.server.client()
    with contextlib.suppress(Exception):
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=target.bucket):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=target.bucket, Delete={"Objects": keys})
        client.delete_bucket(Bucket=target.bucket)


@pytest.fixture
def s3_target(s3_server: S3Server) -> Iterator[S3Bucket]:
    """A fresh bucket on ``s3_server`` (``.url``, ``.storage_options``, ``.server``,
    ``.bucket``): a test that takes it runs on moto and on radosgw; removed afterwards."""
    target = new_bucket(s3_server)
    yield target
    remove_bucket(target)


# --- a store that fails ---------------------------------------------------------------------


class FlakyFileSystem:
    """Factory of a fresh fsspec filesystem class, protocol ``flaky<N>``, that keeps its objects
    in memory and fails the first ``fail_puts`` object writes (optionally leaving the first
    ``partial`` bytes behind, as a non-atomic store would). It is not a ``memory`` protocol, so
    walship's archive drives it through its generic path (temporary object, then move)."""

    _count = 0

    @classmethod
    def make(
        cls, fail_puts: int = 0, partial: int | None = None, gate: threading.Event | None = None
    ) -> Any:
        """``gate``: when given, every put waits until it is set (an upload that hangs)."""
        import errno

        import fsspec
        from fsspec.implementations.memory import MemoryFileSystem

        cls._count += 1
        protocol = f"flaky{cls._count}"

        class Flaky(MemoryFileSystem):  # type: ignore[misc]
            store: dict[str, Any] = {}  # its own objects, not memory://'s
            pseudo_dirs = [""]
            failures_left = fail_puts
            puts = 0
            failures = 0

            def pipe_file(self, path: str, value: bytes, mode: str = "overwrite", **kw: Any) -> Any:
                type(self).puts += 1
                if gate is not None:
                    gate.wait()
                if type(self).failures_left > 0:
                    type(self).failures_left -= 1
                    type(self).failures += 1
                    if partial is not None:
                        super().pipe_file(path, value[:partial], mode=mode, **kw)
                    raise OSError(errno.EIO, f"injected failure of put {type(self).puts}", path)
                super().pipe_file(path, value, mode=mode, **kw)

        Flaky.protocol = (protocol,)
        fsspec.register_implementation(protocol, Flaky, clobber=True)
        return Flaky


# --- segments to archive, events to watch ---------------------------------------------------


def closed_segments(count: int, frames: int = 20, payload: int = 40) -> dict[str, bytes]:
    """``count`` closed segments of a fresh log (on the memory store), name -> bytes."""
    import walship
    from walship.backends.memory import MemoryStore
    from walship.core.header import parse_segment_name
    from walship.core.rotation import ManualClock

    mem = MemoryStore()
    clock = ManualClock()
    with walship.open(store=mem, clock=clock, entry_point_plugins=False) as log:
        for s in range(count):
            log.append_batch([bytes([s % 251]) * payload + b"%d" % i for i in range(frames)])
            clock.advance(1)
            log.rotate()
    files = mem.files()
    names = sorted(n for n in files if parse_segment_name(n) is not None)
    return {n: files[n] for n in names[:-1]}


def wait_until(predicate: Any, timeout: float = 20.0, interval: float = 0.01) -> bool:
    """Poll ``predicate`` until it is true (True) or ``timeout`` passes (False)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


class Recorder:
    """A plugin that records the archive hooks, in the order they are delivered."""

    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []
        self._lock = threading.Lock()

    def _add(self, *event: Any) -> None:
        with self._lock:
            self.events.append(event)

    def of(self, kind: str) -> list[tuple[Any, ...]]:
        with self._lock:
            return [e for e in self.events if e[0] == kind]

    def seqs(self, kind: str) -> list[int]:
        return [e[1] for e in self.of(kind)]

    @hookimpl
    def segment_archived(self, segment_seq: int, url: str, size: int, blake3: str) -> None:
        self._add("archived", segment_seq, url, size, blake3)

    @hookimpl
    def archive_failed(self, segment_seq: int, attempt: int, error: str) -> None:
        self._add("failed", segment_seq, attempt, error)

    @hookimpl
    def segment_removed(self, segment_seq: int, reason: str) -> None:
        self._add("removed", segment_seq, reason)

    @hookimpl
    def archive_lagging(self, pending: int, oldest_pending: str) -> None:
        self._add("lagging", pending, oldest_pending)

    @hookimpl
    def segment_closed(self, segment: Any) -> None:
        self._add("closed", segment.segment_seq)
