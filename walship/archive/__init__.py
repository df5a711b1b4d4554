"""The archive: closed segments in object storage, over any fsspec URL.

Layout under the archive URL (``s3://bucket/prefix``, ``file:///path``, ``memory://name``, ...),
one flat namespace, three kinds of object per segment::

    segment_0000000000000007.aedbwal                  the segment's raw bytes (compression none)
    segment_0000000000000007.aedbwal.zst              or the same, zstd-compressed
    segment_0000000000000007.aedbwal.manifest.json    its manifest (written last)

The manifest (:class:`SegmentManifest`) holds the size and BLAKE3 of the **raw** segment bytes,
its header fields, first/last commit_seq and timestamps, and which object holds the bytes, so that
restore and verify can plan and check without downloading everything. A segment counts as
archived only once its manifest exists; the manifest is written only after the object was
verified.

Promises of :meth:`ArchiveStore.put`:

* A segment object appears whole or not at all: S3 PUTs are atomic; ``file://`` writes a
  temporary file, fsyncs it and hard-links it into place; ``memory://`` assigns the whole value;
  other stores upload a temporary object and move it into place.
* An existing object is never overwritten with different content: S3 uses a conditional create
  (``If-None-Match: *``) on a single PUT, never a multipart upload (whose completion some
  servers create unconditionally; an object of 5 GiB or more is refused), and only once a probe
  showed that the server honours it (else :class:`ArchiveUnsupportedError`, or, with
  ``conditional_create="checked"``, a look before and a read-back after each create);
  ``file://`` a link that fails if the name exists; other stores check first (a race between
  two writers of the same segment remains possible there). A refused create is recognised by
  its HTTP status and error code (:mod:`.failures`), never by its message.
* Uploading the same segment twice is harmless: the second put verifies what is there and
  succeeds without writing.
* Every upload is verified against the local bytes: a 0-byte or partial object never counts. On
  S3 the PUT carries the local MD5 (``Content-MD5``, so S3 refuses a body damaged in transit) and
  the ETag answered, the MD5 the server computed of what it stored, must equal it; elsewhere,
  or when the ETag is not an MD5 (SSE-KMS), the object is read back and its
  size and BLAKE3 checked. An upload of this put's own that does not verify is removed again, so
  that the retry can upload it whole.

Every storage failure is an
:class:`~walship.errors.ArchiveStorageError` (an ``OSError``) naming the URL,
the operation, the HTTP status and the error code; a missing bucket is an
:class:`~walship.errors.ArchiveBucketMissingError`, never an empty archive.

Object names from a listing are trusted only in their exact forms above: anything else (``../x``,
absolute paths, directories, other suffixes, objects larger than the limit) is refused with an
:class:`~walship.errors.ArchiveNameError` and never downloaded or written.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from walship.archive.credentials import redact_url
from walship.archive.listing import ArchiveListing
from walship.archive.manifest import (
    MANIFEST_FORMAT,
    MANIFEST_VERSION,
    SegmentManifest,
    describe_segment,
)
from walship.archive.names import (
    COMPRESSIONS,
    DEFAULT_MAX_OBJECT_BYTES,
    MANIFEST_SUFFIX,
    MAX_MANIFEST_BYTES,
    TEMP_PREFIX,
    ZSTD_SUFFIX,
    ObjectName,
    manifest_name,
    object_name,
    parse_object_name,
)

if TYPE_CHECKING:
    from walship.archive.objects import ArchiveStore, PutResult
    from walship.archive.read_store import ArchiveReadStore

_LAZY = {
    "ArchiveStore": "walship.archive.objects",
    "PutResult": "walship.archive.objects",
    "ArchiveReadStore": "walship.archive.read_store",
}
"""Names whose modules import fsspec: loaded on first use, so that the config (which nests
the archive's settings) and ``walship.open`` never import fsspec for a log without an
archive (nor on a platform where fsspec cannot load)."""


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'walship.archive' has no attribute {name!r}")


__all__ = [
    "COMPRESSIONS",
    "DEFAULT_MAX_OBJECT_BYTES",
    "MANIFEST_FORMAT",
    "MANIFEST_SUFFIX",
    "MANIFEST_VERSION",
    "MAX_MANIFEST_BYTES",
    "TEMP_PREFIX",
    "ZSTD_SUFFIX",
    "ArchiveListing",
    "ArchiveReadStore",
    "ArchiveStore",
    "ObjectName",
    "PutResult",
    "SegmentManifest",
    "describe_segment",
    "manifest_name",
    "object_name",
    "parse_object_name",
    "redact_url",
]
