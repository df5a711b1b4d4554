"""The event dispatcher lives in :mod:`walship.core.events` (the log uses it); this name
re-exports it."""

from walship.core.events import EventDispatcher

__all__ = ["EventDispatcher"]
