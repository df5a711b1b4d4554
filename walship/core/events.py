"""Delivering events to plugins: one thread, in order, each plugin isolated from the others.

pluggy stops a hook call at the first implementation that raises; walship calls each
implementation on its own, so one failing plugin never hides an event from the others. The
queue is unbounded: :meth:`EventDispatcher.emit` never blocks, so a slow or stuck plugin delays
only the events behind it, never an append.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections import Counter
from typing import Any

import pluggy

log = logging.getLogger("walship.plugins")  # (the plugins' logger, where their failures go)

_STOP = object()


class EventDispatcher:
    """Runs hooks of ``pm`` on a daemon thread, in the order :meth:`emit` was called.

    The thread starts with the first event (a log whose open is refused starts none) and ends
    with :meth:`stop`, which may be called from a hook, on that very thread.
    """

    def __init__(self, pm: pluggy.PluginManager, context: Any) -> None:
        self._pm = pm
        self._context = context
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.errors: Counter[str] = Counter()
        """Failures per plugin name."""
        self.delivered = 0
        self._pending = 0
        # ``with self._lock``, not ``with self._idle``: Condition.__enter__ is Python code, and
        # an interrupt delivered as it returns would leave the lock held (CPython bpo-29988)
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._thread = threading.Thread(target=self._run, name="walship-events", daemon=True)
        self._stopped = False

    def emit(self, hook: str, **kwargs: Any) -> None:
        """Queue an event; returns at once. After :meth:`stop`, the event is dropped."""
        with self._lock:
            if self._stopped:
                return
            self._pending += 1
            if self._thread.ident is None:
                self._thread.start()
        self._queue.put((hook, kwargs))

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            hook_name, kwargs = item
            try:
                self._deliver(hook_name, kwargs)
            except BaseException:  # never let the event thread die: later events still go out
                log.exception("walship could not deliver event %s", hook_name)
            finally:
                with self._lock:
                    self._pending -= 1
                    self.delivered += 1
                    self._idle.notify_all()

    def _deliver(self, hook_name: str, kwargs: dict[str, Any]) -> None:
        hook = getattr(self._pm.hook, hook_name)
        args = {"log": self._context, **kwargs}
        # pluggy calls implementations last-registered first (honouring tryfirst/trylast)
        for impl in reversed(hook.get_hookimpls()):
            try:
                impl.function(*[args[a] for a in impl.argnames])
            except BaseException:  # SystemExit from a plugin too: isolate it like any failure
                self.errors[impl.plugin_name] += 1
                log.exception("plugin %s failed in hook %s", impl.plugin_name, hook_name)

    def wait_idle(self, timeout: float | None = None) -> bool:
        """Wait until every emitted event was delivered; False on timeout."""
        with self._lock:
            return self._idle.wait_for(lambda: self._pending == 0, timeout)

    def stop(self, timeout: float | None = 30.0) -> bool:
        """Deliver what is queued, then end the thread. False if it did not end in time.

        Called from a hook (on the event thread itself), it returns at once: the thread ends
        once that hook returns and the events queued before the stop are delivered.
        Idempotent."""
        with self._lock:
            first = not self._stopped
            self._stopped = True
            started = self._thread.ident is not None
        if not started:
            return True
        if first:
            self._queue.put(_STOP)
        if self._thread is threading.current_thread():
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()
