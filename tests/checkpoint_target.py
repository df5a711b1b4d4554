"""A log archived to an S3 bucket with checkpoints (snapshots) in it, for the checkpoint and
prune tests: :func:`checkpointed_log`."""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import walship
from walship.backends.memory import MemoryStore
from walship.core.rotation import ManualClock

T0 = 1_700_000_000_000_000


@dataclass
class Checkpointed:
    """What :func:`checkpointed_log` wrote: every frame, each checkpoint's snapshot bytes and
    manifest, and the archive's URL and options."""

    url: str
    storage_options: dict[str, Any]
    frames: list[Any]
    snapshots: dict[int, bytes] = field(default_factory=dict)
    manifests: dict[int, Any] = field(default_factory=dict)

    def after(self, seq: int) -> list[Any]:
        return [f for f in self.frames if f.commit_seq > seq]


def snapshot_of(seq: int) -> bytes:
    return f"state after {seq} frames ".encode() * (seq % 7 + 1)


def checkpointed_log(
    url: str,
    storage_options: dict[str, Any],
    tmp_path: Path,
    segments: int = 6,
    frames: int = 10,
    checkpoints: tuple[int, ...] = (15, 35),
    **settings: Any,
) -> Checkpointed:
    """A log of ``segments`` closed segments of ``frames`` frames archived to ``url``, with a
    checkpoint and its snapshot at each of ``checkpoints`` (taken when the log reaches it: as
    bytes, from a path, from a file object in turn)."""
    clock = ManualClock(micros=T0)
    options = {
        "url": url,
        "storage_options": storage_options,
        "workers": 2,
        "upload_process": False,
        **settings,
    }
    out = Checkpointed(url, storage_options, [])
    with walship.open(store=MemoryStore(), clock=clock, archive=options) as log:
        for _ in range(segments):
            for _ in range(frames):
                clock.advance(1)
                seq = log.append(f"frame {clock.micros} ".encode() * 3, payload_type=2)
                if seq in checkpoints:
                    data = snapshot_of(seq)
                    kind = len(out.snapshots) % 3
                    given: Any = data
                    if kind == 1:
                        given = tmp_path / f"snapshot-{seq}"
                        given.write_bytes(data)
                    elif kind == 2:
                        given = io.BytesIO(data)
                    out.manifests[seq] = log.checkpoint(seq, snapshot=given)
                    out.snapshots[seq] = data
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        out.frames = list(log.read())
    return out
