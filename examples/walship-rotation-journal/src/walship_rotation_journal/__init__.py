"""An example walship plugin: one JSON line per closed segment, appended to a journal file.

A compaction or indexing job can tail the journal to learn, durably and in order, which segments
are complete. Installed, it is loaded by every log through its entry point (group
``walship.plugins``, name ``rotation-journal``); a config can also name it with options::

    plugins:
      - name: rotation-journal
        options: {path: /var/lib/app/rotations.jsonl}
"""

from __future__ import annotations

import json
import os
from typing import Any

from walship import hookimpl

__all__ = ["RotationJournal"]


class RotationJournal:
    """Appends ``{"segment", "segment_seq", "reason", "size", "frames", "first_commit_seq",
    "last_commit_seq", "blake3"}`` per closed segment to ``path`` (default: the environment
    variable ``WALSHIP_ROTATION_JOURNAL``; with neither, entries are only kept in
    ``self.entries``). Each line is fsynced before the hook returns."""

    def __init__(self, path: str | None = None) -> None:
        self.path = path or os.environ.get("WALSHIP_ROTATION_JOURNAL")
        self.entries: list[dict[str, Any]] = []

    @hookimpl
    def segment_closed(self, segment: Any, reason: str) -> None:
        entry = {
            "segment": segment.name,
            "segment_seq": segment.segment_seq,
            "reason": reason,
            "size": segment.size,
            "frames": segment.frame_count,
            "first_commit_seq": segment.first_commit_seq,
            "last_commit_seq": segment.last_commit_seq,
            "blake3": segment.blake3.hex(),
        }
        self.entries.append(entry)
        if self.path:
            with open(self.path, "a", encoding="utf-8") as journal:
                journal.write(json.dumps(entry) + "\n")
                journal.flush()
                os.fsync(journal.fileno())
