"""A read-only segment store over an archive, so that recovery's scan can verify one."""

from __future__ import annotations

import errno
import threading
from typing import Any

from walship.archive.listing import ArchiveListing
from walship.archive.manifest import SegmentManifest
from walship.archive.objects import ArchiveStore
from walship.archive.sealing import Keyring
from walship.core.header import parse_segment_name, segment_name
from walship.errors import ArchiveReadOnlyError
from walship.store import SegmentFile, SegmentStore, StoreCapabilities


class ArchiveReadStore(SegmentStore):
    """A read-only :class:`~walship.store.SegmentStore` over an archive, for reading
    frames from it in place (``walship dump URL``).

    ``list_names``, ``read`` and ``size`` work (objects are decompressed): each segment with a
    manifest is checked against it (size and BLAKE3) by ``read``, which raises
    :class:`ArchiveIntegrityError` (naming the segment) on a mismatch and
    :class:`ArchiveMissingError` when a manifest's object is gone; an object without its
    manifest is served as it is (nothing vouches for it). To *verify* an archive, use
    :func:`walship.archive.check.verify_archive` (``walship verify URL``): it checks what a
    restore relies on (the log's start, a missing manifest, numbering across segments) with
    the restore's own plan. Every mutating method raises :class:`ArchiveReadOnlyError`.

    Raises (``list_names``):
        ArchiveNameError: the archive holds an object named like walship's that is not a
            segment, manifest or temporary object, or a hostile name (named); objects that are
            not walship's are ignored (one warning).
    """

    capabilities = StoreCapabilities(durable=True, locking=False, persistent=True)

    def __init__(
        self,
        url: str,
        storage_options: dict[str, Any] | None = None,
        keyring: Keyring | None = None,
    ) -> None:
        self.archive = ArchiveStore(url, storage_options, keyring=keyring)
        self.location = self.archive.url
        self._listing: ArchiveListing | None = None
        self._manifests: dict[int, SegmentManifest | None] = {}
        self._cache: tuple[str, bytes] | None = None
        self._mutex = threading.Lock()

    def __repr__(self) -> str:
        return f"ArchiveReadStore({self.location!r})"

    def _refuse(self, what: str) -> ArchiveReadOnlyError:
        return ArchiveReadOnlyError(f"{self.location} is a read-only archive: cannot {what}")

    def _listed(self) -> ArchiveListing:
        if self._listing is None:
            listing = self.archive.list()
            listing.raise_rejected(self.location)
            listing.warn_foreign(self.location)
            self._listing = listing
        return self._listing

    def _seq(self, name: str) -> int:
        seq = parse_segment_name(name)
        if seq is None or seq not in self._listed().segment_seqs:
            raise FileNotFoundError(errno.ENOENT, f"no segment {name} in {self.location}", name)
        return seq

    def manifest(self, name: str) -> SegmentManifest | None:
        """The manifest of segment ``name`` (``None`` when it has none)."""
        seq = self._seq(name)
        if seq not in self._manifests:
            self._manifests[seq] = (
                self.archive.stat(name) if seq in self._listed().manifests else None
            )
        return self._manifests[seq]

    def _raw(self, name: str) -> bytes:
        with self._mutex:
            if self._cache is not None and self._cache[0] == name:
                return self._cache[1]
        m = self.manifest(name)
        if m is not None:
            data = self.archive.get(m)
        else:
            seq = self._seq(name)
            objects = self._listed().objects.get(seq, {})
            compression = "none" if "none" in objects else "zstd"
            data = self.archive.get_unverified(seq, compression)
        with self._mutex:
            self._cache = (name, data)
        return data

    def list_names(self) -> list[str]:
        """Every segment with a manifest or an object (a fresh LIST on each call)."""
        self._listing = None
        self._manifests.clear()
        return [segment_name(s) for s in self._listed().segment_seqs]

    def read(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        data = self._raw(name)
        end = len(data) if length is None else offset + length
        return data[offset:end]

    def size(self, name: str) -> int:
        m = self.manifest(name)
        if m is not None:
            return m.size
        return len(self._raw(name))

    def lock(self) -> None:
        raise self._refuse("take the writer lock")

    def unlock(self) -> None:
        pass

    def create(self, name: str, data: bytes) -> SegmentFile:
        raise self._refuse(f"create {name}")

    def open_append(self, name: str) -> SegmentFile:
        raise self._refuse(f"append to {name}")

    def truncate(self, name: str, size: int) -> None:
        raise self._refuse(f"truncate {name}")

    def remove(self, name: str) -> None:
        raise self._refuse(f"remove {name}")

    def rename(self, src: str, dst: str) -> None:
        raise self._refuse(f"rename {src}")

    def write_atomic(self, name: str, data: bytes) -> None:
        raise self._refuse(f"write {name}")

    def close(self) -> None:
        self._cache = None
