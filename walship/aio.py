"""The asyncio API: :class:`AsyncLog`, opened with ``await walship.open_async(...)``.

::

    async with await walship.open_async("./wal") as log:
        seq = await log.append(b"hello")
        async for frame in log.read(from_seq=seq):
            ...

An awaited append joins the same group commit as the threads' appends: it is queued without
blocking the event loop, whoever leads writes (and syncs) it with the others, and the leader
(a thread appending, or the log's commit thread, which leads when only the loop's appends
wait) resolves its future through the loop's ``call_soon_threadsafe``, once per batch. The
event loop never does I/O: opening, ``sync``, ``read``'s chunks, ``rotate``, ``checkpoint``
and ``close`` run in the loop's default executor.

Cancelling an awaited ``append`` (or ``append_batch``) is safe. If no leader took the request
yet, it is withdrawn and never written (:attr:`AsyncLog.cancelled` counts it as
``withdrawn``); otherwise it is written as if nothing happened, durable with its own
commit_seq (or failed with the log, as every append of its batch), and counted as
``in_flight``. No commit_seq is reused either way and nothing waits on the cancelled task. To
learn the commit_seq of an append even when the awaiting task is cancelled, hold its future:
``fut = log.submit(payload)`` and ``seq = await asyncio.shield(fut)``; ``fut`` completes
whatever happens to the task that awaits it.

This module loads only when used (``walship.AsyncLog`` and ``walship.open_async`` import it on
first access): ``import walship`` does not import asyncio.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
from collections.abc import AsyncIterator, Callable, Coroutine, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ParamSpec, TypeVar

import walship
from walship.core.commit import ATTEMPTS, Request
from walship.core.frame import Frame, as_payloads, check_payload
from walship.core.segment import ClosedSegment
from walship.errors import LogFailedError, LogForkedError
from walship.log import Log

P = ParamSpec("P")
T = TypeVar("T")

READ_CHUNK = 1024
"""``read`` fetches this many frames per trip to the executor."""


@dataclass
class Cancellations:
    """What became of the cancelled appends of an :class:`AsyncLog` (counted on the loop)."""

    withdrawn: int = 0
    """Taken back before a leader took them: never written."""
    in_flight: int = 0
    """A leader had them: written with their own commit_seq (or failed with the log)."""


class _LoopSink:
    """The :class:`~walship.core.commit.Sink` of one event loop: resolves the futures of done
    requests on that loop, one ``call_soon_threadsafe`` per batch (each wakes the loop).

    ``as_list``: the futures take the list of commit_seqs (``append_batch``), else the first.
    """

    __slots__ = ("_as_list", "_loop")

    def __init__(self, loop: asyncio.AbstractEventLoop, as_list: bool) -> None:
        self._loop = loop
        self._as_list = as_list

    def deliver(self, requests: list[Request]) -> None:
        """On the leader's thread (see :class:`~walship.core.commit.Sink`)."""
        try:  # noqa: SIM105 - not contextlib.suppress: its Python __enter__ can be interrupted
            self._loop.call_soon_threadsafe(_resolve, requests, self._as_list)
        except RuntimeError:  # the loop is closed: nobody can await these futures any more
            pass


def _resolve(requests: list[Request], as_list: bool) -> None:
    """On the loop: each request's future gets its commit_seq(s) or its error (a future done
    already, cancelled or resolved by a repeated delivery, is left alone). An interrupt here is
    retried (each step is idempotent), so that no future is left pending, then goes on."""
    error: BaseException | None = None
    for _ in ATTEMPTS:
        try:
            for r in requests:
                fut: asyncio.Future[Any] = r.waiter
                if fut.done():
                    continue
                if r.error is not None:
                    fut.set_exception(r.error)
                elif as_list:
                    fut.set_result(list(range(r.first_seq, r.first_seq + len(r.payloads))))
                else:
                    fut.set_result(r.first_seq)
            break
        except BaseException as e:
            error = error or e
    if error is not None:
        raise error


def _take(frames: Iterator[Frame], n: int) -> list[Frame]:
    return list(itertools.islice(frames, n))


class AsyncLog:
    """A :class:`~walship.log.Log` for asyncio code: the same log, its appends awaited.

    Open one with ``await walship.open_async(...)`` (the arguments of :func:`walship.open`), or
    wrap an open log: ``AsyncLog(walship.open(...))`` (it then owns the log: its ``close``
    closes it). Usable from any number of tasks, on one event loop or several; the wrapped
    log may be used from threads at the same time (:attr:`log`), their appends and the
    loop's sharing group commits.

    Every coroutine raises what the :class:`~walship.log.Log` method of the same name raises.
    """

    def __init__(self, log: Log) -> None:
        self._log = log
        # the sinks of the loop last used (one tuple: read whole by any loop's thread)
        self._bound: tuple[asyncio.AbstractEventLoop | None, _LoopSink | None, _LoopSink | None]
        self._bound = (None, None, None)
        self.cancelled = Cancellations()
        """How many cancelled appends were withdrawn, how many were in flight."""
        self.stats = log.stats
        """:meth:`Log.stats <walship.log.Log.stats>` (read from memory: no I/O)."""
        archiver = log.archiver
        self._gate = getattr(archiver, "append_gate", None) if archiver is not None else None
        """The archive's append gate: fenced, or ``archive.max_pending``'s backpressure."""

    def _sink(self, loop: asyncio.AbstractEventLoop, as_list: bool) -> _LoopSink:
        bound = self._bound
        if bound[0] is not loop:
            bound = self._bound = (loop, _LoopSink(loop, False), _LoopSink(loop, True))
        sink = bound[2] if as_list else bound[1]
        assert sink is not None
        return sink

    # --- appending ----------------------------------------------------------------------

    def submit(
        self, payload: bytes | bytearray | memoryview, payload_type: int = 0
    ) -> asyncio.Future[int]:
        """Queue an append on the running loop and return its future (its commit_seq, or the
        error :meth:`Log.append <walship.log.Log.append>` would raise). Never blocks the loop.

        The future completes whatever happens to a task awaiting it through
        ``asyncio.shield``; cancelling the future itself withdraws the append if no leader
        took it yet (else it is written all the same).

        While the archive is too far behind (``archive.max_pending``) the future is the task of
        an :meth:`append`, which waits first (and may fail with ``ArchiveBackpressureError``).

        Raises: a bad payload's error, or the log's refusal (failed, closed), at once.
        """
        gate = self._gate
        if gate is not None and gate.blocked:
            [item] = as_payloads((payload,))  # a bad payload fails now, as below
            check_payload(len(item), payload_type)
            return asyncio.ensure_future(self.append(payload, payload_type))
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        req = self._log.submit_detached((payload,), payload_type, self._sink(loop, False), fut)
        fut.add_done_callback(functools.partial(self._on_done, req))
        return fut

    def _on_done(self, req: Request, fut: asyncio.Future[Any]) -> None:
        if fut.cancelled():
            self._count_cancelled(req)

    def _count_cancelled(self, req: Request) -> None:
        if self._log.withdraw(req):
            self.cancelled.withdrawn += 1
        else:
            self.cancelled.in_flight += 1

    async def _backpressure(self) -> None:
        """Wait while the archive is too far behind (``archive.max_pending``), as
        :meth:`Log.append <walship.log.Log.append>` does before the group commit: in the
        executor, never on the loop; the wait's refusal (``ArchiveBackpressureError``) is the
        append's. A log that failed or closed refuses at once instead (at the submit)."""
        gate = self._gate
        if gate is not None and gate.blocked and not self._log.closed and not self._log.failed:
            await self._run(gate.wait)

    async def _await(self, req: Request, fut: asyncio.Future[T]) -> T:
        try:
            return await fut
        except asyncio.CancelledError:
            if fut.cancelled():
                self._count_cancelled(req)
            else:  # (resolved, its task cancelled before it resumed: written all the same)
                self.cancelled.in_flight += 1
            raise

    async def append(self, payload: bytes | bytearray | memoryview, payload_type: int = 0) -> int:
        """Append one record and return its commit_seq (durable on return under ``always``),
        sharing a group commit with every append waiting meanwhile, the threads' too.

        Cancelled: withdrawn if no leader took it yet, else written all the same (see the
        module docstring).

        Raises: as :meth:`Log.append <walship.log.Log.append>`.
        """
        await self._backpressure()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[int] = loop.create_future()
        req = self._log.submit_detached((payload,), payload_type, self._sink(loop, False), fut)
        return await self._await(req, fut)

    async def append_batch(
        self, payloads: Iterable[bytes | bytearray | memoryview], payload_type: int = 0
    ) -> list[int]:
        """Append records with one write (and one sync under ``always``); return their
        commit_seqs, consecutive and in order. Cancelled: as :meth:`append`, the batch whole.

        Raises: as :meth:`Log.append_batch <walship.log.Log.append_batch>`.
        """
        items = payloads if isinstance(payloads, (list, tuple)) else list(payloads)
        if not items:
            return []
        await self._backpressure()
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[list[int]] = loop.create_future()
        req = self._log.submit_detached(items, payload_type, self._sink(loop, True), fut)
        return await self._await(req, fut)

    # --- in the executor ----------------------------------------------------------------

    async def _run(self, call: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(None, call)

    async def sync(self) -> int:
        """Make everything appended so far durable; return ``durable_seq`` (in the executor)."""
        return await self._run(self._log.sync)

    async def rotate(self) -> ClosedSegment | None:
        """:meth:`Log.rotate <walship.log.Log.rotate>`, in the executor."""
        return await self._run(self._log.rotate)

    async def checkpoint(self, commit_seq: int) -> None:
        """:meth:`Log.checkpoint <walship.log.Log.checkpoint>`, in the executor."""
        await self._run(functools.partial(self._log.checkpoint, commit_seq))

    async def read(
        self, from_seq: int | None = None, to_seq: int | None = None
    ) -> AsyncIterator[Frame]:
        """``async for frame in log.read(...)``: :meth:`Log.read <walship.log.Log.read>`, its
        segments read in the executor, :data:`READ_CHUNK` frames per trip."""
        frames = self._log.read(from_seq, to_seq)  # (a generator: nothing runs yet)
        while True:
            chunk = await self._run(functools.partial(_take, frames, READ_CHUNK))
            if not chunk:
                return
            for f in chunk:
                yield f

    async def close(self) -> None:
        """Close the log (:meth:`Log.close <walship.log.Log.close>`: sync, release), in the
        executor. Appends still queued get their outcome first. Idempotent."""
        await self._run(self._log.close)

    async def __aenter__(self) -> AsyncLog:
        return self

    async def __aexit__(self, exc_type: object, *exc: object) -> None:
        if exc_type is None:
            await self.close()
        else:  # an error is on its way out already: release everything, add nothing
            with contextlib.suppress(LogFailedError, LogForkedError):
                await self.close()

    # --- what the log shows -------------------------------------------------------------

    @property
    def log(self) -> Log:
        """The wrapped :class:`~walship.log.Log` (for threads, and everything not here)."""
        return self._log

    @property
    def durable_seq(self) -> int:
        """The highest commit_seq known to be durable (0 when none)."""
        return self._log.durable_seq

    @property
    def last_seq(self) -> int:
        """The highest commit_seq handed out and written (maybe not yet durable)."""
        return self._log.last_seq

    @property
    def first_seq(self) -> int:
        """The lowest commit_seq ``read`` can return (see :attr:`Log.first_seq`)."""
        return self._log.first_seq

    @property
    def failed(self) -> BaseException | None:
        """The error that failed the log, or ``None``."""
        return self._log.failed

    @property
    def closed(self) -> bool:
        return self._log.closed

    def __repr__(self) -> str:
        return f"Async{self._log!r}"


def _close_opened(loop: asyncio.AbstractEventLoop, opening: asyncio.Future[Log]) -> None:
    """A cancelled ``open_async``'s log, once open: closed in the executor (nobody has it)."""
    if not opening.cancelled() and opening.exception() is None:
        loop.run_in_executor(None, opening.result().close)


def _opener(open_log: Callable[P, Log]) -> Callable[P, Coroutine[Any, Any, AsyncLog]]:
    """``open_async``: ``open_log`` (:func:`walship.open`, whose parameters it takes) run in
    the loop's default executor (opening recovers the log: I/O)."""

    async def open_async(*args: P.args, **kwargs: P.kwargs) -> AsyncLog:
        """Open (or create) a log and recover it, in the running loop's default executor;
        return it as an :class:`AsyncLog`. Takes exactly the arguments of
        :func:`walship.open`, raises what it raises.

        ::

            async with await walship.open_async("./wal", durability="always") as log:
                await log.append(b"hello")
        """
        loop = asyncio.get_running_loop()
        opening = loop.run_in_executor(None, functools.partial(open_log, *args, **kwargs))
        try:
            log = await asyncio.shield(opening)
        except asyncio.CancelledError:  # the open goes on: close what it opens, off the loop
            opening.add_done_callback(functools.partial(_close_opened, loop))
            raise
        return AsyncLog(log)

    return open_async


open_async = _opener(walship.open)

__all__ = ["READ_CHUNK", "AsyncLog", "Cancellations", "open_async"]
