"""Group commit: concurrent appenders share one write and one sync.

The log's I/O (a batch's write and sync, a rotation, a sync, the close) runs under one *I/O
turn*, held by one thread at a time. An appender that finds the turn free takes it and becomes
the *leader*: it takes every request queued so far, has the :class:`BatchWriter` write them with
one write (and one sync), and stays on for what queued meanwhile (at most
:data:`LEADER_BATCHES` batches). The other appenders (*followers*) block on a lock of their own
until a leader releases it: their request is done, or the lead is theirs now. On a slow disk a
leader waits briefly for the appenders it just woke (see :meth:`GroupCommit._gather_locked`).
A caller of :meth:`GroupCommit.exclusive` (a sync, a rotation, the close) waits for the turn,
appenders queue behind it, and turns alternate so that neither side starves.

Threads: every method runs on its caller's thread; a leader runs the :class:`BatchWriter` on
its own thread, holding the turn.

*Detached* requests (the asyncio API's, :meth:`GroupCommit.submit_detached`) have no thread
waiting: they queue with the others and ride in the same batches; their outcome goes to their
:class:`Sink` (which resolves an asyncio future through its loop). A detached request is never
handed the lead: when one is at the head of the queue as the turn is passed on (or finds the
turn free), the *driver*, a thread of the group commit's own, is handed the lead instead, the
same way a queued thread is.

Interrupts (KeyboardInterrupt, SystemExit, a bug's exception), wherever CPython delivers them:
the interrupted operation either completes or, once it touched the file, fails the log (the
writer's job, see DESIGN.md "Failing closed"); the group commit's own duty is that every
thread waiting on the interrupted one gets its answer and the turn is always passed on. So:

* the exception goes on out of the thread it interrupted, once that thread did its duty to the
  others: a leader settles its batch (:meth:`GroupCommit._settle_locked`: each request
  acknowledged, failed, or queued again, never written twice) and passes the turn on; a
  follower passes its wake-up on and, handed the lead, passes the turn on;
* every hand-off is idempotent (a turn is given up once, by its number; a wake-up is marked
  delivered only at the end) and retried (:data:`RETRIES` times) when an interrupt hits it;
* between moving the turn and the release that wakes its next holder there is no call, so no
  point an interrupt can land at (CPython delivers them at function entries, loop back-edges
  and after calls); locks are taken with their C ``with`` (no ``threading.Condition``, whose
  Python ``__enter__`` and ``wait`` an interrupt can cut short, CPython bpo-29988).
"""

from __future__ import annotations

import threading
import time
from _thread import LockType
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

from walship.errors import WalshipError

T = TypeVar("T")

LEADER_BATCHES = 4
"""How many batches a leader writes in a row before it hands the lead on."""
GATHER_FRACTION = 0.4
"""Gather when woken appenders return in under this fraction of a sync's time."""
GATHER_PROBE = 64
"""When gathering does not pay, try it again every this many batches (the disk may change)."""
GATHER_MAX = 0.002
"""A leader never waits longer than this for appenders to return."""
RETRIES = 5
"""How often a clean-up that an interrupt hit is run again (each is idempotent)."""
ATTEMPTS = tuple(range(RETRIES))
"""Iterated by the clean-ups, never built there: ``range(RETRIES)`` is a call, and CPython
delivers a signal's exception right after a call returns, outside the clean-up's ``try``."""
WAIT_CHECK = 0.05
"""An exclusive caller looks again this often while it waits for the I/O turn, so that a
wake-up lost to an interrupt costs this long, no more."""

_allocate_lock = threading.Lock


class Sink(Protocol):
    """Where the outcome of detached requests goes (see :meth:`GroupCommit.submit_detached`)."""

    def deliver(self, requests: list[Request]) -> None:
        """``requests`` are done (``first_seq`` or ``error`` set). Called on the thread that
        finished them (a leader's, maybe holding the group commit's mutex), so it never blocks,
        never calls back into the group commit and raises nothing but an interrupt; it may be
        called again for the same requests (a wake-up retried after an interrupt)."""


class Request:
    """One append or batch waiting for the group commit. The writer sets ``first_seq``."""

    __slots__ = (
        "done",
        "error",
        "first_seq",
        "lead",
        "nbytes",
        "payload_type",
        "payloads",
        "sink",
        "then",
        "turn",
        "waiter",
        "wake",
        "woken",
    )

    def __init__(
        self, payloads: Sequence[bytes | bytearray | memoryview], payload_type: int, nbytes: int
    ) -> None:
        self.payloads = payloads
        self.payload_type = payload_type
        self.nbytes = nbytes
        self.first_seq = 0
        self.done = False
        self.error: BaseException | None = None
        self.wake: LockType | None = None
        """A lock its thread holds and blocks on until a leader releases it (``None``: the
        thread leads it)."""
        self.lead = False
        """Set with the release: the thread is the leader now, in ``turn``."""
        self.turn = -1
        """The I/O turn handed over with the lead, which the thread must give up."""
        self.then: Request | None = None
        """The next request of the same batch, whose thread this one wakes once woken."""
        self.woken = False
        """Put in a wake-up chain already (a request is woken once)."""
        self.sink: Sink | None = None
        """A detached request's (no thread waits for it): where its outcome goes."""
        self.waiter: Any = None
        """What the sink resolves (an asyncio future): the group commit never looks at it."""


class BatchWriter(Protocol):
    """What the group commit asks of the log it serves.

    ``check_usable`` runs on any appender's thread (holding the group commit's mutex); every
    other method on the thread that holds the I/O turn.
    """

    def check_usable(self) -> None:
        """Raise the log's error (failed, closed) when it takes no appends."""

    def write(self, batch: list[Request], begin_io: Callable[[], None]) -> bool:
        """Give each request its ``first_seq``, encode the batch, call ``begin_io()`` just
        before the write, write it (and sync). Returns whether it was synced.

        Raises:
            WalshipError: nothing of the batch is acknowledged (every request gets it).
            BaseException: anything else (an interrupt), after failing the log if the write
                had begun; the group commit settles the batch and passes it on.
        """

    def rotation_due(self) -> bool:
        """Whether the active segment is due for rotation after this batch."""

    def rotate_due(self) -> None:
        """Rotate now (the batch before is acknowledged); a failure fails the log, raises
        nothing but an interrupt."""

    def written_seq(self) -> int:
        """The highest commit_seq written (a failed write never advances it)."""

    def refusal(self) -> BaseException | None:
        """The error for a request not written (the log failed or closed), or ``None``."""


def wake(requests: list[Request]) -> None:
    """Mark ``requests`` done and let their threads return (each request once: those woken
    already are skipped).

    Only the first waiting thread is woken here; each woken thread wakes the next (see
    :meth:`GroupCommit.submit`), so the leader pays for one wake-up, not one per follower (each
    costs a system call and often a context switch while the leader holds the interpreter lock).
    The chain is linked before any request is marked done: a follower interrupted while it
    waits and sees ``done`` finds its successor already linked, and passes the wake-up on.
    Requests count as woken only at the end: a call that an interrupt cut short can be made
    again (a lock released twice is harmless here).
    """
    first: Request | None = None
    last: Request | None = None
    chained: list[Request] = []
    detached: list[Request] = []
    for r in requests:
        if r.woken:
            continue
        chained.append(r)
        if r.wake is not None:
            if last is None:
                first = r
            else:
                last.then = r
            last = r
        elif r.sink is not None:
            detached.append(r)
    for r in chained:
        r.done = True
    if first is not None:
        assert first.wake is not None
        try:  # noqa: SIM105 - not contextlib.suppress: its Python __enter__ can be interrupted
            first.wake.release()
        except RuntimeError:  # released by a call an interrupt cut short
            pass
    if detached:
        _deliver(detached)
    for r in chained:
        r.woken = True


def _deliver(requests: list[Request]) -> None:
    """Hand done detached requests to their sinks, one call per sink (a sink resolves them on
    its event loop, and each call costs a wake-up of that loop)."""
    by_sink: dict[int, tuple[Sink, list[Request]]] = {}
    for r in requests:
        assert r.sink is not None
        entry = by_sink.get(id(r.sink))
        if entry is None:
            by_sink[id(r.sink)] = (r.sink, [r])
        else:
            entry[1].append(r)
    for sink, done in by_sink.values():
        sink.deliver(done)


def _open_gate(gate: LockType | None) -> None:
    """Wake the thread blocked on ``gate`` (nothing if it is open already or ``None``)."""
    if gate is not None:
        try:  # noqa: SIM105 - not contextlib.suppress (see wake)
            gate.release()
        except RuntimeError:
            pass


def _pass_wakeup(req: Request) -> None:
    """A woken follower's duty: wake the next thread of its batch. Idempotent: a second call
    (after an interrupt) does what the first did not."""
    then = req.then
    if then is not None:
        assert then.wake is not None
        try:  # noqa: SIM105 - not contextlib.suppress (see wake)
            then.wake.release()  # pass the wake-up on along the batch
        except RuntimeError:  # released already (an interrupted call)
            pass
        req.then = None


class _Driver:
    """The thread that leads for detached requests (see :meth:`GroupCommit.submit_detached`):
    it blocks on ``gate`` until the lead is handed to it (``lead``, ``own``, ``turn``, set
    before the release, as for a queued thread) or it is told to stop."""

    __slots__ = ("exited", "gate", "lead", "own", "stopping", "thread", "turn")

    def __init__(self) -> None:
        self.gate = _allocate_lock()
        self.gate.acquire()
        self.lead = False
        self.own: Request | None = None
        self.turn = -1
        self.stopping = False
        self.exited = False
        self.thread: threading.Thread | None = None


class GroupCommit:
    """The request queue, the I/O turn, leader election, gathering and the hand-offs of one
    log (see the module docstring). Thread-safe.

    Args:
        writer: writes the batches (:class:`BatchWriter`).
    """

    def __init__(self, writer: BatchWriter) -> None:
        self._writer = writer
        # Taken with its C ``with``; waits go through _wait_unlocked and a gate: a lock the
        # waiter holds and blocks on, released to wake it. Reentrant only so that it knows its
        # owner (see _wait_unlocked); it is never taken twice.
        self._mutex = threading.RLock()
        self._owned: Callable[[], bool] = self._mutex._is_owned  # type: ignore[attr-defined]
        self._turn_gates: list[LockType] = []  # exclusive callers waiting for the I/O turn
        self._gather_gate: LockType | None = None  # a leader gathering a batch
        self._gather_target = 0
        self._gather_skips = 0
        self._sync_seconds = 0.0  # moving average of a synced batch's write + sync
        self._return_seconds = 0.0  # moving average of how long woken appenders take to return
        self._io_started = 0.0
        self._early: list[Request] = []  # the previous batch, woken as this one's I/O begins
        self._begin_io = self._wake_early
        self._busy = False  # a thread holds the I/O turn (leader, sync, rotate, close)
        self._turn = 0  # the number of the turn whoever holds _busy is in: moves on each hand-off
        self._queue: list[Request] = []
        self._exclusive_waiters = 0  # threads in exclusive() waiting for the turn
        self._driver: _Driver | None = None  # leads for detached requests (started on demand)
        self._driver_lock = _allocate_lock()
        self._driver_stopped = False

    # --- appending ----------------------------------------------------------------------

    def submit(self, req: Request) -> int:
        """Queue ``req`` and wait until it is written (and synced, as the writer does); return
        its first commit_seq.

        A thread that finds the turn free leads: it writes every queued request (see
        :meth:`_lead`); the others block on their own lock, which a leader releases when their
        request is done, or when it hands them the lead.

        Raises:
            WalshipError: the writer's refusal or failure (``check_usable``, ``write``).
            BaseException: an interrupt in this thread, once the thread did its duty to the
                others (see the module docstring).
        """
        lead = queued = False
        turn = -1
        try:
            with self._mutex:
                self._writer.check_usable()
                lead = not (self._busy or self._exclusive_waiters)
                if lead:
                    self._busy = True
                    turn = self._turn
                else:
                    wake_lock = req.wake = _allocate_lock()
                    wake_lock.acquire()
                    queued = True  # (before the append: an interrupt comes only after a call)
                    self._queue.append(req)
                    if self._gather_target and len(self._queue) >= self._gather_target:
                        _open_gate(self._gather_gate)  # the leader waits for us (_gather_locked)
            if lead:
                self._lead(req, turn)
            else:
                wake_lock.acquire()  # released by a leader: done, or ours is the lead now
                _pass_wakeup(req)
                if req.lead:
                    self._lead(req, req.turn)
        finally:
            if queued or lead:
                error: BaseException | None = None
                for _ in ATTEMPTS:  # an interrupt here is retried: every step is idempotent
                    try:
                        if queued:
                            # Other threads count on this one to pass a wake-up or the lead on:
                            # interrupted before the outcome (even before waiting), wait for it.
                            if not (req.done or req.lead):
                                wake_lock.acquire()
                            _pass_wakeup(req)
                            if req.lead:  # (given up by _lead already unless it never began)
                                self._release_turn(req.turn)
                        else:  # (given up by _lead already unless it never began)
                            self._release_turn(turn)
                        break
                    except BaseException as e:
                        error = error or e
                if error is not None:
                    raise error
        if req.error is not None:
            raise req.error
        return req.first_seq

    def submit_detached(self, req: Request) -> None:
        """Queue ``req``, whose ``sink`` gets its outcome (no thread waits for it), and return
        at once: the caller's thread never writes, never waits for the I/O turn, and blocks
        only on the mutex, which others hold for short bookkeeping, never across I/O.

        Whoever leads writes it with the others; when it finds the turn free, the turn is
        handed on at once, to the driver thread as it leads for the detached requests
        (started on the first call). ``req`` must not be submitted again.

        Raises:
            WalshipError: the writer's refusal (``check_usable``); nothing was queued.
            BaseException: an interrupt in this thread; ``req`` is then queued (and gets its
                outcome) or not, and the turn, if it was taken here, is passed on.
        """
        self._ensure_driver()
        turn = -1
        try:
            with self._mutex:
                self._writer.check_usable()
                if not (self._busy or self._exclusive_waiters):
                    self._busy = True  # (no call before the append below: both, or neither)
                    turn = self._turn
                self._queue.append(req)
                if self._gather_target and len(self._queue) >= self._gather_target:
                    _open_gate(self._gather_gate)
        finally:
            if turn != -1:  # hand the free turn on: to the queue's head, the driver for ours
                error: BaseException | None = None
                for _ in ATTEMPTS:  # an interrupt here is retried (idempotent)
                    try:
                        self._release_turn(turn)
                        break
                    except BaseException as e:
                        error = error or e
                if error is not None:
                    raise error

    def withdraw(self, req: Request) -> bool:
        """Take the detached ``req`` back out of the queue if no leader took it yet: then it is
        never written and its sink never hears of it (``True``). ``False``: a leader has it
        (it is written, or fails with the log, and its sink gets the outcome) or it is done."""
        with self._mutex:
            if req.done or req.lead or req not in self._queue:
                return False
            self._queue.remove(req)
            return True

    def _ensure_driver(self) -> None:
        """Start the driver thread, once (not after :meth:`stop_driver`)."""
        if self._driver is not None:
            return
        with self._driver_lock:
            if self._driver is None and not self._driver_stopped:
                driver = _Driver()
                driver.thread = threading.Thread(
                    target=self._drive, args=(driver,), name="walship-commit", daemon=True
                )
                driver.thread.start()
                self._driver = driver

    def _drive(self, d: _Driver) -> None:
        """The driver thread: lead each time the lead is handed to it (its own request is the
        detached one that was at the head of the queue). What interrupts its lead (a bug's
        exception, or an interrupt a store raised) goes to that request, as it would go out of
        the thread of a threaded one; once that request was acknowledged (an interrupted
        rotation after its batch), the exception goes no further than the log's failed state,
        which every later call reports. Ends once stopped with no detached request left queued
        (a closed log queues none: it refuses them)."""
        while True:
            d.gate.acquire(True, WAIT_CHECK if d.stopping else -1)
            if d.lead:
                own, turn = d.own, d.turn
                d.lead = False
                d.own = None
                assert own is not None
                try:
                    self._lead(own, turn)
                except BaseException as e:
                    if not own.done:
                        own.error = e
                        wake([own])
                continue
            if d.stopping:
                with self._mutex:
                    if not d.lead and not any(r.sink is not None for r in self._queue):
                        d.exited = True
                        return

    def stop_driver(self, timeout: float = 10.0) -> None:
        """Let the driver thread end and wait for it (at most ``timeout`` s); no driver starts
        after this. For the log's close (every detached request is refused from then on).
        Idempotent."""
        with self._driver_lock:
            self._driver_stopped = True
            driver = self._driver
        if driver is None:
            return
        driver.stopping = True
        _open_gate(driver.gate)
        thread = driver.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def _lead(self, own: Request, turn: int) -> None:
        """Leader (holds the turn ``turn``): write ``own`` plus whatever queued meanwhile, batch
        by batch until the queue is empty, at most :data:`LEADER_BATCHES` batches; then hand
        the turn on (:meth:`_release_busy_locked`).

        Staying on for the requests that queued up during our sync saves a thread hand-off per
        batch (with the interpreter lock, waking another thread costs more than the work).

        An exception other than the log's own (an interrupt, a bug) goes on out of here, after
        the batch in hand is settled (:meth:`_settle_locked`) and the turn handed on."""
        rounds = 0
        pending: list[Request] = []
        batch = [own]
        try:
            with self._mutex:
                batch += self._queue
                self._queue = []
            while True:
                if batch:
                    pending = self._write_batch(batch, pending)
                rounds += 1
                with self._mutex:
                    if pending and not self._exclusive_waiters and self._gather_pays():
                        # (also before a hand-off: the next leader then starts with everyone)
                        followers = sum(
                            1 for r in pending if r.wake is not None or r.sink is not None
                        )
                        wake(pending)
                        pending = []
                        if followers:
                            self._gather_locked(len(self._queue) + followers)
                    if not self._queue or rounds >= LEADER_BATCHES or self._exclusive_waiters:
                        self._release_busy_locked(turn)
                        break
                    batch, self._queue = self._queue, []
        finally:
            error: BaseException | None = None
            for _ in ATTEMPTS:  # an interrupt here is retried: every step is idempotent
                try:
                    if self._turn == turn:  # an interrupt or a bug's exception is on its way out
                        with self._mutex:
                            self._settle_locked(batch)
                            self._release_busy_locked(turn)
                    wake(pending)  # (also what _early still holds: the same list)
                    break
                except BaseException as e:
                    error = error or e
            if error is not None:
                raise error

    def _wake_early(self) -> None:
        """The writer's ``begin_io``: wake the previous batch (durable already) so that its
        threads run while the leader waits in the write and sync; start the sync's clock."""
        if self._early:
            wake(self._early)
            self._early = []
        self._io_started = time.perf_counter()

    def _write_batch(self, batch: list[Request], pending: list[Request]) -> list[Request]:
        """Leader: have the writer write ``batch``; then rotate if due. ``pending`` (the
        previous batch: durable, not yet woken) is woken as the write begins.

        Returns the requests still to wake: this batch when it was synced and no rotation
        followed, else none."""
        self._early = pending
        try:
            synced = self._writer.write(batch, self._begin_io)
        except WalshipError as e:  # the log's own: every request of the batch gets it
            wake(pending)
            for r in batch:
                r.error = e
            wake(batch)
            return []
        # (anything else, an interrupt, goes on to _lead, which settles the batch)
        if synced:
            spent = time.perf_counter() - self._io_started
            self._sync_seconds += 0.25 * (spent - self._sync_seconds)
        rotate = self._writer.rotation_due()
        if not rotate and synced:
            return batch
        wake(batch)  # followers return now, not after a rotation
        if rotate:
            self._writer.rotate_due()
        return []

    def _settle_locked(self, batch: list[Request]) -> None:
        """An exception interrupted the leader with ``batch`` in hand: give each request its
        outcome and wake it, or queue it again at the head. Idempotent.

        * done (acknowledged or given an error): woken, if they were not yet;
        * written before the interrupt (its commit_seq is at most the writer's
          ``written_seq``, which a failed write never advances): acknowledged;
        * not written, and the log failed or closed: the error;
        * not written, the log fine (the interrupt came before the file was touched): queued
          again for the next leader, never written twice;
        * the leader's own, not written: left to its thread, which raises the exception (the
          driver's own, a detached request: the driver gives it the exception, see
          :meth:`_drive`).
        """
        to_wake: list[Request] = []
        back: list[Request] = []
        written = self._writer.written_seq()
        refusal = self._writer.refusal()
        for r in batch:
            if r.done or 0 < r.first_seq <= written:
                to_wake.append(r)
            elif r.lead and r.sink is not None:  # the driver's own: the exception goes to it
                continue
            elif refusal is not None:
                r.error = refusal
                to_wake.append(r)
            elif (r.wake is not None or r.sink is not None) and r not in self._queue:
                r.first_seq = 0  # (the leader's own goes out)
                back.append(r)
        self._queue[:0] = back
        wake(to_wake)

    # --- gathering ----------------------------------------------------------------------

    def _gather_pays(self) -> bool:
        """Whether to wait for the threads just woken to append again (see
        :meth:`_gather_locked`): when they came back in well under a sync's time so far (a
        slow disk), or, now and then, to measure that again."""
        if self._return_seconds < GATHER_FRACTION * self._sync_seconds:
            return True
        self._gather_skips += 1
        return self._gather_skips % GATHER_PROBE == 0

    def _gather_locked(self, target: int) -> None:
        """Wait (the mutex released while waiting) until ``target`` requests are queued, at most
        a sync's time (and :data:`GATHER_MAX`); learn how long that took.

        The threads of the batch just synced usually append again at once. Without waiting,
        concurrent appenders split into two groups that take turns, each sync carrying half of
        them; with a sync much slower than their return (a real disk), waiting for them lets
        one sync carry all. Where a sync is about as fast as their return (a host cache), the
        wait costs more than it gathers, and :meth:`_gather_pays` stops it."""
        budget = min(self._sync_seconds, GATHER_MAX)
        started = time.monotonic()
        deadline = started + budget
        gate = self._gather_gate = _allocate_lock()
        gate.acquire()
        self._gather_target = target
        try:
            while len(self._queue) < target:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    break
                self._wait_unlocked(gate, remaining)
        finally:
            self._gather_target = 0
            self._gather_gate = None
        took = time.monotonic() - started if len(self._queue) >= target else budget
        self._return_seconds += 0.25 * (took - self._return_seconds)

    # --- the turn -----------------------------------------------------------------------

    def _release_turn(self, turn: int, after_exclusive: bool = False) -> None:
        with self._mutex:
            self._release_busy_locked(turn, after_exclusive)

    def _release_busy_locked(self, turn: int, after_exclusive: bool = False) -> None:
        """Give up the turn ``turn`` (the caller holds the mutex and that turn). Idempotent: a
        turn is given up once, later calls with it do nothing (a clean-up retried after an
        interrupt).

        Turns alternate so that neither side starves: after a leader's batch a thread waiting in
        :meth:`exclusive` goes first; after such an exclusive section the oldest queued appender
        does (it is handed the lead); otherwise whoever waits.
        """
        if turn != self._turn:
            return
        self._turn += 1  # first: nothing below may run twice for one turn
        if self._queue and (after_exclusive or not self._exclusive_waiters):
            # Handed over whole, with no call an interrupt could land after (only the release,
            # last): the request leaves the queue, is no longer woken through its lock (its
            # thread leads it), and carries the turn its thread must give up.
            head = self._queue[0]
            del self._queue[0]
            wake_lock = head.wake
            if wake_lock is None:  # detached (no thread waits on it): the driver leads it
                driver = self._driver
                assert driver is not None  # (started before any detached request queued)
                driver.own = head
                driver.turn = self._turn
                head.lead = True
                driver.lead = True
                wake_lock = driver.gate
            else:
                head.wake = None
                head.turn = self._turn
                head.lead = True
            try:  # noqa: SIM105 - not contextlib.suppress (see wake)
                wake_lock.release()
            except RuntimeError:  # (released by an interrupted call)
                pass
        else:
            self._busy = False
            for gate in self._turn_gates:  # (a wake-up an interrupt cuts short: see WAIT_CHECK)
                _open_gate(gate)

    def _wait_unlocked(self, gate: LockType, timeout: float) -> None:
        """Release the mutex (the caller holds it), wait until ``gate`` opens or ``timeout``
        passes, take the mutex again. The mutex is held again however this ends, an interrupt
        included: every step is inside the ``try``.

        Taking it again is the delicate step: a signal handler's exception ends a blocking
        acquire unacquired, or lands right after one succeeded, and only the lock knows which
        (CPython's own Condition asks it the same way). Unheld, the caller's ``with`` would
        release the mutex under the thread that holds it. So the acquire is retried until the
        lock says it is ours, inline (a function call is a point an interrupt can land at)."""
        try:
            self._mutex.release()
            gate.acquire(True, timeout)
        finally:
            error: BaseException | None = None
            while True:
                try:
                    if not self._owned():
                        self._mutex.acquire()
                    break
                except BaseException as e:
                    error = error or e
            if error is not None:
                raise error

    def _wait_busy_locked(self) -> None:
        """Wait (holding the mutex) until nobody holds the turn; appenders queue behind."""
        self._exclusive_waiters += 1
        try:
            while self._busy:
                gate = _allocate_lock()
                gate.acquire()
                self._turn_gates.append(gate)
                try:
                    self._wait_unlocked(gate, WAIT_CHECK)
                finally:
                    self._turn_gates.remove(gate)
        except BaseException:
            self._exclusive_waiters -= 1
            if not self._busy and self._queue and not self._exclusive_waiters:
                # interrupted after a leader stepped aside for us: the queue goes on without us
                self._busy = True
                self._release_busy_locked(self._turn, after_exclusive=True)
            raise
        self._exclusive_waiters -= 1

    def exclusive(self, call: Callable[[], T], finish: Callable[[], None] | None = None) -> T:
        """Run ``call`` holding the I/O turn alone (appenders queue behind), then hand the turn
        on; ``finish`` (idempotent) runs once the turn was taken, however ``call`` ended, just
        before the turn is handed on.

        Not a ``with`` block: a context manager's ``__enter__`` is Python code, and an interrupt
        delivered as it returns would skip ``__exit__`` and keep the turn for good. Here the
        turn is taken and released inside one ``try``. Interrupted while waiting for the turn,
        nothing ran.

        Raises: what ``call`` raises; an interrupt.
        """
        turn = -1
        try:
            with self._mutex:
                self._wait_busy_locked()
                self._busy = True
                turn = self._turn
            return call()
        finally:
            if turn != -1:
                error: BaseException | None = None
                for _ in ATTEMPTS:  # an interrupt here is retried (idempotent)
                    try:
                        if finish is not None:
                            finish()
                        if self._turn == turn:
                            self._release_turn(turn, after_exclusive=True)
                        break
                    except BaseException as e:
                        error = error or e
                if error is not None:
                    raise error

    def state(self) -> str:
        """The hand-off state, one line (for a hang's report)."""
        queue = [(r.done, r.lead, r.woken, r.first_seq) for r in self._queue]
        driver = self._driver
        drives = "none" if driver is None else f"lead={driver.lead} exited={driver.exited}"
        return (
            f"busy={self._busy} turn={self._turn} queue={queue} "
            f"exclusive_waiters={self._exclusive_waiters} gates={len(self._turn_gates)} "
            f"driver={drives}"
        )

    def queued(self) -> int:
        """How many requests wait in the queue now."""
        return len(self._queue)


__all__ = ["ATTEMPTS", "BatchWriter", "GroupCommit", "Request", "Sink", "wake"]
