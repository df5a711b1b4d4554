"""What a follower says of its replica, for ``walship status``: ``walship.follower.json`` in the
replica's directory, replaced atomically after every round of :class:`~walship.archive.follow.
Follower` (the store's ``write_atomic``), so that a reader sees the last round's whole document.

It holds the archive URL followed (without a password), the follower's process id, when the
round ended (``updated_at_micros``, wall clock), how many rounds it took, the commit_seq of the
replica's last frame and of the archive's, the lag in frames and seconds
(:class:`~walship.archive.follow.FollowLag`), and what the round waited for (an upload under
way, a gap), if anything. It is information only: nothing reads it to decide anything, and a
missing or unreadable one just means no follower wrote here.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from typing import Any

from walship.store import SegmentStore

FOLLOWER_STATUS = "walship.follower.json"
FORMAT = "walship-follower-status"
VERSION = 1


@dataclass(frozen=True)
class FollowerStatus:
    """The last round of the follower of a replica directory (module docstring)."""

    url: str
    pid: int
    updated_at_micros: int
    rounds: int
    replica_seq: int | None
    archive_seq: int | None
    lag_frames: int
    lag_seconds: float
    waiting_for: str | None = None

    def save(self, store: SegmentStore) -> None:
        """Replace the directory's status with this one, atomically (on the follower's
        thread).

        Raises:
            OSError: the write failed (the old status, if any, stays).
        """
        doc = {"format": FORMAT, "version": VERSION, **asdict(self)}
        store.write_atomic(FOLLOWER_STATUS, json.dumps(doc, indent=1).encode() + b"\n")

    @classmethod
    def load(cls, store: SegmentStore) -> FollowerStatus | None:
        """The status a follower left in ``store``'s directory; ``None`` when there is none
        or it is not a follower status of this version (information only: never an error)."""
        try:
            doc: Any = json.loads(store.read(FOLLOWER_STATUS))
        except (OSError, ValueError):
            return None
        if not isinstance(doc, dict) or (doc.get("format"), doc.get("version")) != (
            FORMAT,
            VERSION,
        ):
            return None
        try:
            return cls(**{f.name: doc[f.name] for f in fields(cls) if f.name in doc})
        except TypeError:  # a field missing
            return None


__all__ = ["FOLLOWER_STATUS", "FollowerStatus"]
