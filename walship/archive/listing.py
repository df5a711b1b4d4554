"""What one LIST of an archive finds, every name validated: :class:`ArchiveListing`."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from walship.archive.names import (
    MAX_MANIFEST_BYTES,
    TEMP_PREFIX,
    is_foreign_name,
    parse_object_name,
)
from walship.errors import ArchiveNameError

log = logging.getLogger("walship.archive")


class WarnedNames:
    """The objects of each archive this process has warned about already, so that one is named
    in one warning however often the archive is loaded again (verify's passes, a follower's
    rounds, a restore after a read). Thread-safe."""

    def __init__(self) -> None:
        self._seen: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def new(self, url: str, names: Iterable[str]) -> list[str]:
        """Those of ``names`` not warned about yet for ``url`` (now counted as warned)."""
        with self._lock:
            fresh = [n for n in names if (url, n) not in self._seen]
            self._seen.update((url, n) for n in fresh)
        return fresh


_foreign_warned = WarnedNames()
_SHOWN_FOREIGN = 5
_OTHER_KINDS = {
    "snapshot": "snapshots",
    "checkpoint_manifest": "checkpoint_manifests",
    "prune_marker": "prune_markers",
    "epoch": "epochs",
}


@dataclass
class ArchiveListing:
    """One LIST of the archive, classified.

    ``objects`` maps a segment_seq to its data objects (compression -> size), ``manifests`` to
    its manifest's size. ``rejected`` holds (name, reason) of everything refused (a name that
    looks like walship's but is not one it writes, or a hostile one: see
    :func:`walship.archive.names.is_foreign_name`); ``temporary`` the names of leftover
    temporary objects (skipped); ``foreign`` the names of objects that are not walship's at all
    (a ``README.txt``, a ``notes/`` prefix, a ``backup.tar``): never read, only named.
    ``parts`` and ``part_manifests`` map a segment_seq to its live-shipped parts, by
    ``(start, end)``, and their sizes (:mod:`walship.archive.parts`): never counted as segments.
    """

    objects: dict[int, dict[str, int]] = field(default_factory=dict)
    manifests: dict[int, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    snapshots: dict[int, int] = field(default_factory=dict)
    """Checkpoint snapshot objects: commit_seq -> size."""
    checkpoint_manifests: dict[int, int] = field(default_factory=dict)
    """Checkpoint manifests: commit_seq -> size."""
    prune_markers: dict[int, int] = field(default_factory=dict)
    """Prune markers: version -> size."""
    epochs: dict[int, int] = field(default_factory=dict)
    """Epoch objects (:mod:`walship.archive.epoch`): epoch -> size."""
    parts: dict[int, dict[tuple[int, int], int]] = field(default_factory=dict)
    part_manifests: dict[int, dict[tuple[int, int], int]] = field(default_factory=dict)

    @property
    def segment_seqs(self) -> list[int]:
        """Every segment_seq with a manifest or an object, ascending."""
        return sorted(set(self.objects) | set(self.manifests))

    def raise_rejected(self, url: str) -> None:
        """Raise :class:`ArchiveNameError` naming the first refused object, if any."""
        if self.rejected:
            more = f" (and {len(self.rejected) - 1} more)" if len(self.rejected) > 1 else ""
            raise ArchiveNameError(f"{url}: {self.rejected[0][1]}{more}")

    def foreign_note(self) -> str | None:
        """One line naming the foreign objects (``None``: there are none)."""
        if not self.foreign:
            return None
        shown = ", ".join(repr(n) for n in self.foreign[:_SHOWN_FOREIGN])
        more = len(self.foreign) - _SHOWN_FOREIGN
        tail = f" (and {more} more)" if more > 0 else ""
        return f"ignored {len(self.foreign)} object(s) that are not walship's: {shown}{tail}"

    def warn_foreign(self, url: str) -> None:
        """Log one warning line on the ``walship.archive`` logger naming the foreign objects
        (nothing when there are none, or when this process named each of them already for
        ``url``). On the calling thread."""
        note = self.foreign_note()
        if note is not None and _foreign_warned.new(url, self.foreign):
            log.warning("%s: %s", url, note)

    @classmethod
    def classify(
        cls, entries: Iterable[Mapping[str, Any]], root: str, url: str, max_object_bytes: int
    ) -> ArchiveListing:
        """The listing of ``entries`` (fsspec ``ls(root, detail=True)`` of the archive at
        ``url``): every name validated, each larger than its limit refused, every foreign
        name (:func:`~walship.archive.names.is_foreign_name`) set aside in ``foreign``. Pure."""
        listing = cls()

        prefix = root + "/"
        for e in entries:
            raw = str(e.get("name", ""))
            full = raw.rstrip("/")
            if not full.startswith(prefix):
                if full == root:
                    if e.get("type") == "directory" and raw.endswith("/"):
                        # S3 lists keys "<prefix>//..." as a directory with an empty name
                        listing.rejected.append(
                            ("/", "object '/...' refused: not a plain name (an absolute path)")
                        )
                    continue
                listing.rejected.append((full, f"object {full!r} refused: outside {url}"))
                continue
            rel = full[len(prefix) :]
            if rel.startswith(TEMP_PREFIX):
                listing.temporary.append(rel)
                continue
            if is_foreign_name(rel):
                listing.foreign.append(rel)
                continue
            try:
                parsed = parse_object_name(rel)
            except ArchiveNameError as err:
                listing.rejected.append((rel, str(err)))
                continue
            if e.get("type") != "file":
                listing.rejected.append(
                    (rel, f"object {rel!r} refused: it is a {e.get('type')}, not a file")
                )
                continue
            size = int(e.get("size") or 0)
            small = "manifest" in parsed.kind or parsed.kind in ("prune_marker", "epoch")
            limit = MAX_MANIFEST_BYTES if small else max_object_bytes
            if size > limit:
                listing.rejected.append(
                    (rel, f"object {rel!r} refused: {size} bytes, more than the {limit} limit")
                )
                continue
            if parsed.kind in _OTHER_KINDS:
                getattr(listing, _OTHER_KINDS[parsed.kind])[parsed.segment_seq] = size
            elif parsed.kind in ("part", "part_manifest"):
                into = listing.parts if parsed.kind == "part" else listing.part_manifests
                into.setdefault(parsed.segment_seq, {})[(parsed.start, parsed.end)] = size
            elif parsed.kind == "manifest":
                listing.manifests[parsed.segment_seq] = size
            else:
                listing.objects.setdefault(parsed.segment_seq, {})[parsed.compression] = size
        return listing
