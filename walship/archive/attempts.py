"""The last upload error of each pending segment, kept beside the archive record for other
processes (``walship status``) to read: ``walship.archive-errors.json`` in the log's store.

The archiver writes it (atomically: a temporary file renamed, not synced, and never with the
full-disk reserve the archive record may need) only when an upload attempt
fails and when a segment that had failed is archived at last, so a healthy archive never
writes it. It is advice, not state: nothing decides anything from it. A reader keeps only the
entries of segments the archive record does not list as archived (a crash between the record
and this file leaves a stale entry, which is then ignored). One entry per segment and
destination (``archives:``: each URL fails on its own). Its shape::

    {"format": "walship-archive-errors", "version": 2,
     "segments": [{"name": "segment_0000000000000007.aedbwal",
                   "url": ..., "error": ..., "attempts": 3, "state": "retrying" | "stalled",
                   "conflict": false, "at_micros": 1700000000000000}]}

Version 1 (walship before ``archives:``) mapped each name to one entry; it is still read.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from walship.store import SegmentStore

logger = logging.getLogger("walship.archiver")

ERRORS_NAME = "walship.archive-errors.json"
ERRORS_FORMAT = "walship-archive-errors"
_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True)
class FailedAttempt:
    """The last failed upload attempt of one segment."""

    url: str
    error: str
    attempts: int
    state: str
    """``retrying`` (another attempt follows) or ``stalled`` (attempts used up, or a
    conflict)."""
    conflict: bool
    at_micros: int
    """When it failed (wall clock, microseconds since the epoch)."""


def load_attempts(store: SegmentStore) -> dict[tuple[str, str], FailedAttempt]:
    """The entries of ``store``'s errors file by (segment name, URL) (empty when there is none,
    or when it cannot be read: it is advice only, and a bad one is logged and ignored)."""
    try:
        data = store.read(ERRORS_NAME, 0, _MAX_BYTES)
    except FileNotFoundError:
        return {}
    except OSError as e:
        logger.warning("walship: cannot read %s: %s", ERRORS_NAME, e)
        return {}
    try:
        doc = json.loads(data)
        if doc.get("format") != ERRORS_FORMAT:
            raise ValueError("not a walship-archive-errors document")
        items = doc["segments"]
        if doc.get("version") == 1:
            items = [{"name": name, **e} for name, e in dict(items).items()]
        out: dict[tuple[str, str], FailedAttempt] = {}
        for item in list(items):
            a = FailedAttempt(
                str(item["url"]),
                str(item["error"]),
                int(item["attempts"]),
                str(item["state"]),
                bool(item["conflict"]),
                int(item["at_micros"]),
            )
            out[str(item["name"]), a.url] = a
        return out
    except (ValueError, TypeError, KeyError, AttributeError) as e:
        logger.warning("walship: %s is not valid (%s); ignored", ERRORS_NAME, e)
        return {}


class AttemptLog:
    """The writer's side: one per log, shared by its destinations' archivers. Thread-safe (the
    workers call it)."""

    def __init__(self, store: SegmentStore) -> None:
        self.store = store
        self._lock = threading.Lock()
        self._entries = load_attempts(store)

    def failed(
        self, name: str, url: str, error: str, attempts: int, stalled: bool, conflict: bool
    ) -> None:
        """Record a failed attempt of ``name`` (durably, best effort: a failure to write is
        logged, never raised)."""
        entry = FailedAttempt(
            url,
            error,
            attempts,
            "stalled" if stalled else "retrying",
            conflict,
            time.time_ns() // 1000,
        )
        with self._lock:
            self._entries[name, url] = entry
            self._save()

    def archived(self, name: str, url: str) -> None:
        """``name`` is archived at ``url``: drop its entry there (writes only when it had one)."""
        with self._lock:
            if self._entries.pop((name, url), None) is not None:
                self._save()

    def _save(self) -> None:
        doc: dict[str, Any] = {
            "format": ERRORS_FORMAT,
            "version": 2,
            "segments": [
                {
                    "name": name,
                    "url": e.url,
                    "error": e.error,
                    "attempts": e.attempts,
                    "state": e.state,
                    "conflict": e.conflict,
                    "at_micros": e.at_micros,
                }
                for (name, _), e in sorted(self._entries.items())
            ],
        }
        data = json.dumps(doc, indent=1).encode() + b"\n"
        try:
            path = self.store.local_path(ERRORS_NAME)
            if path is None:
                self.store.write_atomic(ERRORS_NAME, data)
                return
            # not the store's write_atomic: on a full disk that would spend the reserve kept
            # for the archive record; advice need not be synced either
            tmp = f"{os.path.dirname(path)}/.{ERRORS_NAME}.tmp"
            try:
                with open(tmp, "wb") as f:
                    f.write(data)
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as e:
            logger.warning("walship: cannot write %s: %s", ERRORS_NAME, e)
