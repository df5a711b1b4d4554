"""Archive object names: the only names walship writes and the only ones it trusts in a
listing (segment objects, their zstd form, manifests), and the size limits that go with them."""

from __future__ import annotations

from dataclasses import dataclass

from walship.core.header import parse_segment_name, segment_name
from walship.errors import ArchiveNameError

COMPRESSIONS = ("none", "zstd")
ZSTD_SUFFIX = ".zst"
MANIFEST_SUFFIX = ".manifest.json"
TEMP_PREFIX = ".walship-tmp-"
"""Temporary objects (``file://`` and generic stores) start with this; listings skip them."""
MAX_MANIFEST_BYTES = 64 * 1024
DEFAULT_MAX_OBJECT_BYTES = 4 * 1024**3
"""Objects larger than this are refused (a segment is 64 MiB by default, plus one batch)."""
_MAX_NAME = 100


@dataclass(frozen=True)
class ObjectName:
    """A validated archive object name."""

    name: str
    segment_seq: int
    kind: str
    """``segment`` (the bytes) or ``manifest``."""
    compression: str = "none"


def object_name(segment_seq: int, compression: str = "none") -> str:
    """The object holding segment ``segment_seq``'s bytes under ``compression``."""
    base = segment_name(segment_seq)
    return base + ZSTD_SUFFIX if compression == "zstd" else base


def manifest_name(segment_seq: int) -> str:
    """The manifest object of segment ``segment_seq``."""
    return segment_name(segment_seq) + MANIFEST_SUFFIX


_OURS = ("segment_", ".aedbwal")


def is_foreign_name(name: str) -> bool:
    """Whether ``name`` (relative to the archive URL, as one LIST shows it) is plainly not
    walship's: a plain name (no ``/``, ``\\`` or NUL, not ``.`` or ``..``, not empty) that
    neither starts with ``segment_`` nor contains ``.aedbwal`` (case-insensitively). Such an
    object (a ``README.txt``, a ``notes/`` prefix, a ``backup.tar``) is ignored and named.
    Every other name that :func:`parse_object_name` refuses (``segment_1.aedbwal``,
    ``segment_<seq>.aedbwal.orig``, traversal, separators) is refused as hostile or malformed.
    """
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        return False
    lower = name.lower()
    return not lower.startswith(_OURS[0]) and _OURS[1] not in lower


def parse_object_name(name: str) -> ObjectName:
    """Validate an object name relative to the archive URL.

    Raises:
        ArchiveNameError: anything but ``segment_<16+ digits>.aedbwal`` with an optional
            ``.zst`` or ``.manifest.json`` suffix (path separators, ``..``, absolute paths and
            every other name are refused).
    """
    shown = repr(name[:_MAX_NAME] + ("..." if len(name) > _MAX_NAME else ""))
    if not name:
        raise ArchiveNameError("empty object name refused")
    if "/" in name or "\\" in name or name in (".", "..") or "\0" in name:
        raise ArchiveNameError(
            f"object {shown} refused: not a plain name (path separators and traversal are "
            "never followed)"
        )
    if len(name) > _MAX_NAME:
        raise ArchiveNameError(f"object {shown} refused: name too long for a segment")
    if name.endswith(MANIFEST_SUFFIX):
        base, kind, compression = name[: -len(MANIFEST_SUFFIX)], "manifest", "none"
    elif name.endswith(ZSTD_SUFFIX):
        base, kind, compression = name[: -len(ZSTD_SUFFIX)], "segment", "zstd"
    else:
        base, kind, compression = name, "segment", "none"
    seq = parse_segment_name(base)
    if seq is None:
        raise ArchiveNameError(
            f"object {shown} refused: not a segment name (expected "
            f"segment_<16 digits>.aedbwal, optionally with {ZSTD_SUFFIX} or {MANIFEST_SUFFIX})"
        )
    return ObjectName(name, seq, kind, compression)
