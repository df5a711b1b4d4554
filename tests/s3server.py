"""Test support for the archive.

* A real S3 endpoint: moto's ``ThreadedMotoServer`` on 127.0.0.1, reached through s3fs over
  HTTP (moto's in-process ``mock_aws`` does not work with s3fs's aiobotocore). One server per
  test session (:func:`moto_endpoint` starts it lazily, the :func:`s3_bucket` fixture gives a
  fresh bucket on it); a test that must stop the server starts its own :class:`MotoServer`.
  Credentials are fake and ``AWS_EC2_METADATA_DISABLED`` is set, so nothing ever tries an
  address off this machine.
* :class:`FlakyFileSystem`: an fsspec store that fails its first K puts.
* :func:`closed_segments`, :func:`wait_until`, :class:`Recorder` (a plugin that records hooks).

Use from a test module: ``new_bucket(moto_endpoint())`` in a fixture of its own (or register
this module with ``pytest_plugins`` for its ``s3_bucket`` fixture), and the helpers.
"""

from __future__ import annotations

import atexit
import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

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


@dataclass
class S3Bucket:
    """A fresh bucket on a moto server, and an archive URL inside it."""

    server: MotoServer
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


def new_bucket(server: MotoServer) -> S3Bucket:
    name = f"walship-{secrets.token_hex(6)}"
    server.create_bucket(name)
    return S3Bucket(server, name)


@pytest.fixture
def s3_bucket() -> Iterator[S3Bucket]:
    """A fresh bucket on the session's moto server."""
    yield new_bucket(moto_endpoint())


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
