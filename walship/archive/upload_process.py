"""The upload process: archive uploads run in a child process, at a lower priority.

Uploading is Python work (botocore's signing, aiohttp, s3fs, the segment's check and MD5) that
holds the interpreter lock for milliseconds at a time. In the log's own process it makes a synced
``append`` that returns from its ``fdatasync`` wait for the lock, up to the interpreter's switch
interval (5 ms): that is what the p99 of appends while archiving showed. In a child process it
competes only for a CPU, and at niceness :data:`NICENESS` it yields one to the appenders.

One child serves every archive of this process: ``python -m walship.archive.upload_process``,
started on first use (a new interpreter: not forked, since the parent has threads, and not
multiprocessing's spawn, which would import the user's main module again), talking over a
socket pair. It runs :meth:`ArchiveStore.put` on a thread pool, one
:class:`~walship.archive.ArchiveStore` per (URL, options, compression). When the child
dies, every put in flight fails with an ``OSError`` (the archiver retries it) and the next put
starts a new child.

The child never prints a traceback (it shares the parent's stderr): every log record, uncaught
exception (thread or main), unraisable exception and asyncio loop error (aiohttp's "Unclosed
client session", an exception never retrieved) is one line, ``walship upload process: ...``;
it ends with ``os._exit`` when the parent goes (puts in flight are not waited for: nobody is
left to record them), so no finalizer speaks at interpreter exit.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
import logging
import os
import socket
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from multiprocessing.connection import Connection
from typing import Any

from walship import errors as archive_errors
from walship.archive import ArchiveStore, PutResult
from walship.archive.objects import OFFLOADABLE
from walship.archive.sealing import keyring_argument
from walship.errors import ArchiveError, ArchiveStorageError, SegmentReadError

StoreKey = tuple[str, Mapping[str, Any], str, str, "dict[str, Any] | None", int]
"""An archive as the child builds its store: URL, storage options, compression,
conditional_create, the keyring's mapping (``None``: no encryption), the writer's epoch (what
its segment and part manifests carry)."""

NICENESS = 10
"""Added to the child's niceness: uploads are background work."""
_THREADS = 64
"""Puts the child runs at once (each archive's own ``workers`` bound what it sends)."""


class UploadProcess:
    """A handle on the shared child process. Thread-safe."""

    _lock = threading.Lock()
    _shared: UploadProcess | None = None

    def __init__(self) -> None:
        ours, theirs = socket.socketpair()
        env = dict(os.environ)
        # the child imports walship from wherever this process did
        env["PYTHONPATH"] = os.pathsep.join(p for p in sys.path if isinstance(p, str) and p)
        try:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "walship.archive.upload_process", str(theirs.fileno())],
                pass_fds=[theirs.fileno()],
                stdin=subprocess.DEVNULL,
                env=env,
                close_fds=True,
            )
        finally:
            theirs.close()
        self._conn = Connection(ours.detach())
        self._send_lock = threading.Lock()
        self._ids = itertools.count()
        self._futures: dict[int, Future[PutResult]] = {}
        self._futures_lock = threading.Lock()
        self.alive = True
        threading.Thread(target=self._receive, name="walship-upload-results", daemon=True).start()

    @classmethod
    def shared(cls) -> UploadProcess:
        """The running child, started anew when there is none or it died."""
        with cls._lock:
            if cls._shared is None or not cls._shared.alive:
                cls._shared = cls()
            return cls._shared

    def put(
        self,
        key: StoreKey,
        name: str,
        raw: bytes | str,
        expected_blake3: bytes | None,
    ) -> PutResult:
        """``ArchiveStore(url, options, compression=..., conditional_create=..., keyring=...)
        .put(name, raw, expected_blake3=...)`` in the child, for ``key = (url, options,
        compression, conditional_create, keys, epoch)`` (``epoch``: the writer's, which the
        manifest carries; ``keys``: the keyring as
        :meth:`~walship.archive.sealing.Keyring.as_mapping` gives it, sent over the pipe,
        never on a command line or in the environment); ``raw`` is the segment's bytes
        or the path of its file (the child reads it: the bytes never pass through this
        process). Raises what that put raises, and ``OSError`` when the child dies
        meanwhile."""
        path = raw if isinstance(raw, str) else None
        payload = None if isinstance(raw, str) else raw
        result: PutResult = self._request(key, "put", (name, expected_blake3), path, payload)
        return result

    def call(
        self, key: StoreKey, method: str, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> Any:
        """``ArchiveStore(...).<method>(*args, **kwargs)`` in the child (``key`` as for
        :meth:`put`; ``method`` one of :data:`~walship.archive.objects.OFFLOADABLE`): its
        result, or what it raises (rebuilt by :func:`rebuild_error`), and ``OSError`` when the
        child dies meanwhile. Arguments and result are pickled."""
        return self._request(key, method, (args, kwargs), None, None)

    def _request(
        self, key: StoreKey, op: str, args: tuple[Any, ...], path: str | None, payload: bytes | None
    ) -> Any:
        fut: Future[Any] = Future()
        n = next(self._ids)
        with self._futures_lock:
            if not self.alive:
                raise OSError(errno.EIO, "the walship upload process is gone")
            self._futures[n] = fut
        try:
            with self._send_lock:  # the segment's bytes unpickled: no copy under the lock
                message = (n, (key[0], dict(key[1]), *key[2:]), op, args, path, payload is not None)
                self._conn.send(message)
                if payload is not None:
                    self._conn.send_bytes(payload)
        except (OSError, ValueError) as e:
            self._died(f"cannot reach the walship upload process: {e}")
        return fut.result()

    def _receive(self) -> None:
        while True:
            try:
                n, ok, value = self._conn.recv()
            except (EOFError, OSError) as e:
                self._died(f"the walship upload process ended ({type(e).__name__})")
                return
            with self._futures_lock:
                fut = self._futures.pop(n, None)
            if fut is None:
                continue
            if ok:
                fut.set_result(value)
            else:
                fut.set_exception(rebuild_error(*value))

    def _died(self, why: str) -> None:
        with self._futures_lock:
            self.alive = False
            pending, self._futures = self._futures, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(OSError(errno.EIO, why))
        with contextlib.suppress(Exception):
            self._conn.close()
        if self._process.poll() is None:
            self._process.kill()
        with contextlib.suppress(Exception):
            self._process.wait(5)


def store_key(store: ArchiveStore) -> StoreKey:
    """The key the child builds a store like ``store`` from (the archiver's own for the same
    settings, so that both use one store in the child)."""
    url, options = store.source
    keys = store.keyring.as_mapping() if store.keyring is not None else None
    return (url, options, store.compression, store.conditional_create, keys, store.writer_epoch)


def offload(store: ArchiveStore) -> None:
    """Run ``store``'s requests of :data:`~walship.archive.objects.OFFLOADABLE` in the shared
    child from now on (:meth:`ArchiveStore.offload`): the fence's GET, the manifest of a
    segment's predecessor and live shipping's parts stop holding this process's interpreter
    lock. The child starts at the first such request. Only for a store that
    :attr:`~ArchiveStore.shared_across_processes`."""

    def call(method: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        # (the key of each call: a takeover moves the store's writer_epoch)
        return UploadProcess.shared().call(store_key(store), method, args, kwargs)

    store.offload(call)


def flatten_error(
    e: BaseException,
) -> tuple[str, str, str, int | None, tuple[int | None, str, str] | None]:
    """What the parent needs to raise ``e`` again: class name, message, segment, errno, and a
    storage error's HTTP status, error code and operation."""
    segment = e.segment if isinstance(e, SegmentReadError) else ""
    code = e.errno if isinstance(e, OSError) else None
    message = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
    answer = (e.status, e.code, e.operation) if isinstance(e, ArchiveStorageError) else None
    return type(e).__name__, message or type(e).__name__, segment, code, answer


def rebuild_error(
    kind: str,
    message: str,
    segment: str,
    code: int | None,
    answer: tuple[int | None, str, str] | None = None,
) -> BaseException:
    """The error :func:`flatten_error` flattened, as the parent raises it: walship's own class
    when it is one (a storage error with its status, code and operation), else an
    ``OSError`` with its errno (``FileNotFoundError``, ``FileExistsError``... by that errno),
    else an :class:`ArchiveError`."""
    cls = getattr(archive_errors, kind, None)
    if isinstance(cls, type) and issubclass(cls, SegmentReadError):
        return cls(message, segment)
    if isinstance(cls, type) and issubclass(cls, ArchiveStorageError) and answer is not None:
        return cls(message, *answer)
    if isinstance(cls, type) and issubclass(cls, ArchiveError):
        return cls(message)
    if code is not None:
        return OSError(code, message)
    return ArchiveError(f"{kind}: {message}")


class _OneLine(logging.Formatter):
    """A record as one line: its message and, instead of a traceback, the exception's type and
    text."""

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            text = f"{text}: {type(exc).__name__}: {exc}"
        return " ".join(f"walship upload process: {record.name}: {text}".split())


def quiet_child() -> None:
    """Make everything the child could print one line without a traceback (see the module
    docstring). Called once, first thing in the child."""
    import asyncio

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_OneLine())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    say = logging.getLogger("walship.upload_process")

    def uncaught(kind: type[BaseException], e: BaseException, _tb: Any) -> None:
        say.error("uncaught %s: %s", kind.__name__, e)

    def in_thread(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit:
            say.error("uncaught %s in a thread: %s", args.exc_type.__name__, args.exc_value)

    def unraisable(u: Any) -> None:
        say.warning("ignored %s: %s", type(u.exc_value).__name__, u.exc_value)

    def loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        message = str(context.get("message", ""))
        if message.startswith("Unclosed"):
            return  # aiohttp's sessions and connectors at exit: nothing to act on
        e = context.get("exception")
        say.warning("%s%s", message, f": {type(e).__name__}: {e}" if e is not None else "")

    sys.excepthook = uncaught
    threading.excepthook = in_thread
    sys.unraisablehook = unraisable
    try:
        from fsspec.asyn import get_loop

        get_loop().set_exception_handler(loop_error)
    except Exception as e:  # fsspec without its loop: nothing asynchronous to quiet
        say.warning("cannot quiet the fsspec loop: %s", e)


def perform(store: ArchiveStore, op: str, args: tuple[Any, ...], raw: bytes | str | None) -> Any:
    """What the child does for one request on ``store``: ``put`` (``args``: name and expected
    BLAKE3; ``raw``: the bytes, or the path of the file to read them from), or one of
    :data:`~walship.archive.objects.OFFLOADABLE` (``args``: its positional and keyword
    arguments). Raises what that raises; ``ArchiveError`` for any other ``op``."""
    if op == "put":
        if isinstance(raw, str):
            with open(raw, "rb") as f:
                raw = f.read()
        assert raw is not None
        name, b3 = args
        return store.put(name, raw, expected_blake3=b3)
    if op not in OFFLOADABLE:
        raise ArchiveError(f"the walship upload process does not run {op!r}")
    positional, keywords = args
    return getattr(store, op)(*positional, **keywords)


def _child_main(conn: Connection) -> None:  # pragma: no cover - runs in the child
    quiet_child()
    with contextlib.suppress(OSError):
        os.nice(NICENESS)
    stores: dict[str, ArchiveStore] = {}
    stores_lock = threading.Lock()
    send_lock = threading.Lock()

    def store_of(key: StoreKey) -> ArchiveStore:
        ident = repr(key)
        with stores_lock:
            store = stores.get(ident)
            if store is None:
                store = stores[ident] = ArchiveStore(
                    key[0],
                    key[1],
                    compression=key[2],
                    conditional_create=key[3],
                    keyring=keyring_argument(key[4]),
                )
                store.writer_epoch = key[5]
            return store

    def run(n: int, key: Any, op: str, args: tuple[Any, ...], raw: bytes | str | None) -> None:
        try:
            reply: tuple[int, bool, Any] = (n, True, perform(store_of(key), op, args, raw))
        except BaseException as e:
            reply = (n, False, flatten_error(e))
        with send_lock, contextlib.suppress(OSError, ValueError):
            conn.send(reply)

    pool = ThreadPoolExecutor(_THREADS, thread_name_prefix="walship-upload")
    while True:
        try:
            n, key, op, args, path, has_payload = conn.recv()
            raw = conn.recv_bytes() if has_payload else path
        except (EOFError, OSError):
            # the parent is gone or closed us: nobody is left to record a result, so a put in
            # flight is not waited for (a hung server would keep this process, and the
            # parent's stderr it holds, alive long after the parent's timeout); the next run
            # puts it again (idempotent)
            pool.shutdown(wait=False, cancel_futures=True)
            return
        pool.submit(run, n, key, op, args, raw)


if __name__ == "__main__":  # pragma: no cover - the child
    _child_main(Connection(int(sys.argv[1])))
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(0)  # no finalizer (aiohttp's, s3fs's) speaks at interpreter exit
