"""The built-in ``logging`` plugin: one structured log line per event.

Config: ``plugins: [walship.plugins.logging]``, or with options::

    plugins:
      - name: walship.plugins.logging
        options: {level: INFO, logger: walship.events, format: logfmt}   # or format: json

A line (logfmt)::

    event=segment_closed log=/var/wal segment=segment_0000000000000003.aedbwal segment_seq=3
    reason=size size=65601 frames=744 first_commit_seq=1489 last_commit_seq=2232 blake3=9f2c...

Each record also carries the event as ``record.walship_event`` and its fields as the dict
``record.walship_fields``, for handlers that ship structured logs. Failures and lag are logged at
WARNING whatever ``level`` says; so is a recovery that cut a torn tail or salvaged.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from walship.plugins.hookspecs import hookimpl

_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


def _logfmt_value(value: object) -> str:
    text = str(value)
    if text and not any(c in text for c in ' ="\\\n\t'):
        return text
    return json.dumps(text)


class LoggingPlugin:
    """Logs every walship event as one line.

    Args:
        level: the level of ordinary events (``DEBUG``, ``INFO``, ...; default ``INFO``).
        logger: the logger's name (default ``walship.events``).
        format: ``logfmt`` (``key=value`` pairs, the default) or ``json`` (one object).
    Raises:
        ValueError: an unknown level or format.
    """

    def __init__(
        self, level: str | int = "INFO", logger: str = "walship.events", format: str = "logfmt"
    ) -> None:
        if isinstance(level, str):
            if level.upper() not in _LEVELS:
                raise ValueError(f"level {level!r} is not one of {', '.join(_LEVELS)}")
            level = logging.getLevelName(level.upper())
        if format not in ("logfmt", "json"):
            raise ValueError(f"format {format!r} is not one of logfmt, json")
        self.level: int = int(level)
        self.format = format
        self.logger = logging.getLogger(logger)

    def _emit(self, event: str, log: Any, level: int | None = None, **fields: Any) -> None:
        level = self.level if level is None else level
        if not self.logger.isEnabledFor(level):
            return
        record = {"event": event, "log": getattr(getattr(log, "store", None), "location", None)}
        record.update(fields)
        if self.format == "json":
            line = json.dumps(record, default=str, separators=(",", ":"))
        else:
            line = " ".join(f"{k}={_logfmt_value(v)}" for k, v in record.items() if v is not None)
        self.logger.log(
            level, "%s", line, extra={"walship_event": event, "walship_fields": dict(fields)}
        )

    @hookimpl
    def log_recovered(self, log: Any, report: Any) -> None:
        repaired = bool(report.repairs or report.salvaged)
        self._emit(
            "log_recovered",
            log,
            logging.WARNING if repaired else None,
            segments=report.segments,
            frames=report.frames,
            last_commit_seq=report.last_commit_seq,
            repairs=len(report.repairs),
            salvaged=len(report.salvaged),
            seconds=round(report.elapsed_seconds, 6),
            summary=report.summary() if repaired else None,
        )

    @hookimpl
    def segment_opened(
        self, log: Any, name: str, segment_seq: int, prev_segment_hash: bytes
    ) -> None:
        self._emit(
            "segment_opened",
            log,
            segment=name,
            segment_seq=segment_seq,
            prev_segment_hash=prev_segment_hash.hex(),
        )

    @hookimpl
    def segment_closed(self, log: Any, segment: Any, reason: str) -> None:
        self._emit(
            "segment_closed",
            log,
            segment=segment.name,
            segment_seq=segment.segment_seq,
            reason=reason,
            size=segment.size,
            frames=segment.frame_count,
            first_commit_seq=segment.first_commit_seq,
            last_commit_seq=segment.last_commit_seq,
            blake3=segment.blake3.hex(),
        )

    @hookimpl
    def segment_archived(
        self,
        log: Any,
        name: str,
        segment_seq: int,
        url: str,
        size: int,
        blake3: str,
        seconds: float,
    ) -> None:
        self._emit(
            "segment_archived",
            log,
            segment=name,
            segment_seq=segment_seq,
            url=url,
            size=size,
            blake3=blake3,
            seconds=round(seconds, 6),
        )

    @hookimpl
    def archive_failed(
        self, log: Any, name: str, segment_seq: int, attempt: int, error: str, url: str
    ) -> None:
        self._emit(
            "archive_failed",
            log,
            logging.WARNING,
            segment=name,
            segment_seq=segment_seq,
            attempt=attempt,
            error=error,
            url=url,
        )

    @hookimpl
    def archive_lagging(self, log: Any, pending: int, oldest_pending: str, url: str) -> None:
        self._emit(
            "archive_lagging",
            log,
            logging.WARNING,
            pending=pending,
            oldest_pending=oldest_pending,
            url=url,
        )

    @hookimpl
    def segment_removed(self, log: Any, name: str, segment_seq: int, reason: str) -> None:
        self._emit("segment_removed", log, segment=name, segment_seq=segment_seq, reason=reason)
