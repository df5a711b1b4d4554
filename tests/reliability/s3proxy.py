"""A fault-injecting HTTP proxy in front of an S3 endpoint (moto's server or radosgw: it
forwards the client's signed headers as they are), on 127.0.0.1.

s3fs talks to the proxy as if it were S3; the proxy forwards every request to the real endpoint
and counts them (from 1, in the order they arrive). A fault plan chooses, per request, what goes
wrong:

* ``error``: answer ``500 InternalError`` without forwarding (the server never saw it).
* ``lost``: forward, then answer ``500``: the server acted, its answer was lost.
* ``slowdown``: answer ``503 SlowDown`` without forwarding (s3fs retries these itself).
* ``expired``: answer ``400`` with error code ``expired_code`` (default ``ExpiredToken``)
  without forwarding: the credentials expired (walship renews them and retries).
* ``reset``: close the connection without an answer (s3fs retries these itself).
* ``late``: forward, then answer only after ``late_seconds`` (past the client's read timeout).
* ``truncate``: forward, then send the headers and half of the body and close.
* ``slow``: wait ``slow_seconds``, then forward normally.
* ``hold``: wait until :meth:`FaultProxy.release` (the test stops the server meanwhile), then
  forward; ``hold_after``: forward first, then wait, then answer.

When the upstream cannot be reached (the server is stopped), the proxy closes the connection
without an answer, as a dead endpoint would. ``rewrite(method, path, body)`` may change the body
of every answer (e.g. make a listing claim a huge object); ``damage(method, path, body)`` may
change the body of a request on its way to the server (a body damaged in transit: the
request's integrity headers, ``Content-MD5`` and ``x-amz-checksum-*``, are dropped with it, as if
the client had never sent them). ``strip_headers`` names request headers never forwarded (e.g.
``if-none-match``: a server that ignores the conditional create; moto only, since radosgw
checks the signature over them).
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

MODES = (
    "error",
    "lost",
    "slowdown",
    "expired",
    "reset",
    "late",
    "truncate",
    "slow",
    "hold",
    "hold_after",
)
_HOP = {
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailers",
    "transfer-encoding",
    "upgrade",
}
_ERROR_XML = (
    '<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
    "<Message>{message}</Message><RequestId>walship-fault</RequestId></Error>"
)

Plan = Callable[[int, str, str], str | None]
"""``plan(n, method, path)``: the fault mode for request ``n``, or ``None``."""


@dataclass
class Request:
    """One request the proxy saw, and the fault it injected into it (``None``: none)."""

    n: int
    method: str
    path: str
    fault: str | None
    effective: bool = True
    """False for a ``truncate`` of an answer without a body (nothing to cut)."""
    headers: dict[str, str] = field(default_factory=dict)
    """The request's headers as the client sent them, names in lower case."""


@dataclass
class FaultProxy:
    """See the module docstring. ``upstream``: the endpoint's port on 127.0.0.1."""

    upstream: int
    plan: Plan = field(default=lambda n, method, path: None)
    slow_seconds: float = 0.05
    late_seconds: float = 2.0
    expired_code: str = "ExpiredToken"
    rewrite: Callable[[str, str, bytes], bytes] | None = None
    damage: Callable[[str, str, bytes], bytes | None] | None = None
    """Returns the damaged request body, or ``None`` to forward it as it is."""
    strip_headers: tuple[str, ...] = ()
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _released: threading.Event = field(default_factory=threading.Event)
    _holding: threading.Event = field(default_factory=threading.Event)
    _server: ThreadingHTTPServer | None = None

    # --- control --------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        server.daemon_threads = True
        threading.Thread(
            target=server.serve_forever, args=(0.02,), name="s3-fault-proxy", daemon=True
        ).start()
        self._server = server
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def port(self) -> int:
        assert self._server is not None
        return int(self._server.server_address[1])

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def storage_options(
        self,
        read_timeout: float = 1.0,
        retries: int = 0,
        credentials: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """s3fs options through this proxy: the ``key`` and ``secret`` of ``credentials`` (the
        upstream server's storage options; default moto's fake keys), no caches, ``retries``
        botocore retries (none by default, so that faults reach s3fs's own retries and
        walship's)."""
        keys = credentials or {}
        return {
            "endpoint_url": self.endpoint,
            "key": keys.get("key", "testing"),
            "secret": keys.get("secret", "testing"),
            "skip_instance_cache": True,
            "use_listings_cache": False,
            "config_kwargs": {
                "retries": {"total_max_attempts": retries + 1, "mode": "standard"},
                "connect_timeout": 1,
                "read_timeout": read_timeout,
            },
        }

    def wait_holding(self, timeout: float = 30.0) -> bool:
        """Wait until a ``hold`` or ``hold_after`` request is being held."""
        return self._holding.wait(timeout)

    def release(self) -> None:
        self._released.set()

    def faults(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.fault is not None]

    def access_keys(self) -> list[str]:
        """The access key id each request was signed with (its ``Authorization`` header's
        ``Credential=<key id>/...``), in order; ``""`` for an unsigned request."""
        with self._lock:
            out = []
            for r in self.requests:
                auth = r.headers.get("authorization", "")
                out.append(auth.partition("Credential=")[2].partition("/")[0])
            return out

    def count(self) -> int:
        with self._lock:
            return len(self.requests)

    def _admit(self, method: str, path: str) -> Request:
        with self._lock:
            n = len(self.requests) + 1
            req = Request(n, method, path, self.plan(n, method, path))
            self.requests.append(req)
            return req

    def _hold(self) -> None:
        self._holding.set()
        self._released.wait(60)


class _Handler(BaseHTTPRequestHandler):
    owner: FaultProxy
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def _body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            out = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(out)
                out += self.rfile.read(size)
                self.rfile.readline()
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _error(self, status: int, code: str, message: str) -> None:
        body = _ERROR_XML.format(code=code, message=message).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/xml")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _forward(self, body: bytes) -> tuple[int, list[tuple[str, str]], bytes] | None:
        strip = _HOP | set(self.owner.strip_headers)
        headers = {k: v for k, v in self.headers.items() if k.lower() not in strip}
        damaged = self.owner.damage(self.command, self.path, body) if self.owner.damage else None
        if damaged is not None:
            body = damaged
            for k in list(headers):
                if k.lower() in (
                    "content-md5",
                    "x-amz-sdk-checksum-algorithm",
                ) or k.lower().startswith("x-amz-checksum-"):
                    del headers[k]
        if body or self.command in ("PUT", "POST"):
            headers["Content-Length"] = str(len(body))
        conn = http.client.HTTPConnection("127.0.0.1", self.owner.upstream, timeout=30)
        try:
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            return resp.status, resp.getheaders(), data
        except OSError:
            return None  # the endpoint is down
        finally:
            conn.close()

    def _answer(self, status: int, headers: list[tuple[str, str]], data: bytes, cut: bool) -> None:
        self.send_response(status)
        for k, v in headers:
            if k.lower() in _HOP or (k.lower() == "content-length" and self.command != "HEAD"):
                continue
            self.send_header(k, v)
        if self.command != "HEAD":
            self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if self.command == "HEAD":
            return
        if cut:
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        self.wfile.write(data)

    def _handle(self) -> None:
        try:
            self._serve()
        except (BrokenPipeError, ConnectionResetError):  # the client gave up on us (a timeout)
            self.close_connection = True

    def _serve(self) -> None:
        owner = self.owner
        body = self._body()
        req = owner._admit(self.command, self.path)
        req.headers = {k.lower(): v for k, v in self.headers.items()}
        mode = req.fault
        if mode == "error":
            return self._error(500, "InternalError", "injected: we encountered an internal error")
        if mode == "slowdown":
            return self._error(503, "SlowDown", "injected: please reduce your request rate")
        if mode == "expired":
            return self._error(400, owner.expired_code, "injected: the token has expired")
        if mode == "reset":
            self.close_connection = True
            return
        if mode == "slow":
            time.sleep(owner.slow_seconds)
        if mode == "hold":
            owner._hold()
        result = self._forward(body)
        if mode == "hold_after":
            owner._hold()
        if result is None:
            self.close_connection = True
            return
        if mode == "lost":
            return self._error(500, "InternalError", "injected: the answer was lost")
        if owner.rewrite is not None:
            status, headers, data = result
            result = status, headers, owner.rewrite(self.command, self.path, data)
        if mode == "late":
            time.sleep(owner.late_seconds)
        if mode == "truncate" and (self.command == "HEAD" or len(result[2]) < 2):
            req.effective = False
        self._answer(*result, cut=mode == "truncate")

    do_GET = do_PUT = do_POST = do_HEAD = do_DELETE = _handle
