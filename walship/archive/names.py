"""Archive object names: the only names walship writes and the only ones it trusts in a
listing (segment objects, their zstd form, manifests; parts of the active segment and their
manifests; checkpoint snapshots and their manifests, prune markers, epoch objects), and the
size limits that go with them."""

from __future__ import annotations

import re
from dataclasses import dataclass

from walship.core.header import parse_segment_name, segment_name
from walship.errors import ArchiveNameError

COMPRESSIONS = ("none", "zstd")
ZSTD_SUFFIX = ".zst"
MANIFEST_SUFFIX = ".manifest.json"
TEMP_PREFIX = ".walship-tmp-"
"""Temporary objects (``file://`` and generic stores) start with this; listings skip them."""
MAX_MANIFEST_BYTES = 64 * 1024
PART_MARK = ".part-"
"""A part of a segment (live shipping): ``<segment name>.part-<start>-<end>`` (16 digits each)."""
_PART = re.compile(r"\.part-(\d{16})-(\d{16})")
DEFAULT_MAX_OBJECT_BYTES = 4 * 1024**3
"""Objects larger than this are refused (a segment is 64 MiB by default, plus one batch)."""
_MAX_NAME = 100


@dataclass(frozen=True)
class ObjectName:
    """A validated archive object name."""

    name: str
    segment_seq: int
    kind: str
    """``segment`` (the bytes) or ``manifest``; ``snapshot`` or ``checkpoint_manifest`` (then
    ``segment_seq`` is the checkpoint's commit_seq); ``prune_marker`` (then it is the marker's
    version); ``epoch`` (then it is the epoch); ``part`` or ``part_manifest`` (a live-shipped
    part of segment ``segment_seq``)."""
    compression: str = "none"
    start: int = 0
    """A part's first byte in its segment (0 for every other kind)."""
    end: int = 0
    """A part's end (exclusive) in its segment (0 for every other kind)."""


def object_name(segment_seq: int, compression: str = "none") -> str:
    """The object holding segment ``segment_seq``'s bytes under ``compression``."""
    base = segment_name(segment_seq)
    return base + ZSTD_SUFFIX if compression == "zstd" else base


def manifest_name(segment_seq: int) -> str:
    """The manifest object of segment ``segment_seq``."""
    return segment_name(segment_seq) + MANIFEST_SUFFIX


def part_name(segment_seq: int, start: int, end: int) -> str:
    """The object holding bytes ``start..end`` (exclusive) of segment ``segment_seq``."""
    return f"{segment_name(segment_seq)}{PART_MARK}{start:016}-{end:016}"


def part_manifest_name(segment_seq: int, start: int, end: int) -> str:
    """The manifest of part ``start..end`` of segment ``segment_seq``."""
    return part_name(segment_seq, start, end) + MANIFEST_SUFFIX


_OURS = ("segment_", ".aedbwal")

CHECKPOINT_PREFIX = "checkpoint_"
SNAPSHOT_SUFFIX = ".snapshot"
PRUNE_PREFIX = "prune_"
PRUNE_SUFFIX = ".json"
EPOCH_PREFIX = "walship-epoch-"
"""An epoch object (:mod:`walship.archive.epoch`): ``walship-epoch-<20 digits>.json``."""
EPOCH_SUFFIX = ".json"
_OTHER_PREFIXES = (CHECKPOINT_PREFIX, PRUNE_PREFIX, EPOCH_PREFIX)
_NUMBER_DIGITS = 20


def snapshot_name(commit_seq: int) -> str:
    """The object holding the snapshot of the checkpoint at ``commit_seq``."""
    return f"{CHECKPOINT_PREFIX}{commit_seq:0{_NUMBER_DIGITS}d}{SNAPSHOT_SUFFIX}"


def checkpoint_manifest_name(commit_seq: int) -> str:
    """The manifest object of the checkpoint at ``commit_seq``."""
    return f"{CHECKPOINT_PREFIX}{commit_seq:0{_NUMBER_DIGITS}d}{MANIFEST_SUFFIX}"


def prune_marker_name(version: int) -> str:
    """The prune marker object of ``version`` (the highest version is the one in force)."""
    return f"{PRUNE_PREFIX}{version:0{_NUMBER_DIGITS}d}{PRUNE_SUFFIX}"


def epoch_name(epoch: int) -> str:
    """The epoch object of ``epoch`` (the highest epoch is the archive's writer)."""
    return f"{EPOCH_PREFIX}{epoch:0{_NUMBER_DIGITS}d}{EPOCH_SUFFIX}"


def _parse_other(name: str, shown: str) -> ObjectName:
    """A checkpoint, prune marker or epoch name (``name`` starts with one of their
    prefixes)."""
    kinds: tuple[tuple[str, str], ...]
    if name.startswith(EPOCH_PREFIX):
        prefix, kinds = EPOCH_PREFIX, ((EPOCH_SUFFIX, "epoch"),)
    elif name.startswith(CHECKPOINT_PREFIX):
        prefix, kinds = (
            CHECKPOINT_PREFIX,
            (
                (SNAPSHOT_SUFFIX, "snapshot"),
                (MANIFEST_SUFFIX, "checkpoint_manifest"),
            ),
        )
    else:
        prefix, kinds = PRUNE_PREFIX, ((PRUNE_SUFFIX, "prune_marker"),)
    for suffix, kind in kinds:
        digits = name[len(prefix) : len(name) - len(suffix)]
        if (
            name.endswith(suffix)
            and len(digits) == _NUMBER_DIGITS
            and digits.isascii()
            and digits.isdigit()
        ):
            return ObjectName(name, int(digits), kind)
    expected = " or ".join(f"{prefix}<{_NUMBER_DIGITS} digits>{suffix}" for suffix, _ in kinds)
    raise ArchiveNameError(f"object {shown} refused: not a walship name (expected {expected})")


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
    if lower.startswith(_OTHER_PREFIXES):
        return False
    return not lower.startswith(_OURS[0]) and _OURS[1] not in lower


def parse_object_name(name: str) -> ObjectName:
    """Validate an object name relative to the archive URL.

    Raises:
        ArchiveNameError: anything but ``segment_<16+ digits>.aedbwal`` with an optional
            ``.zst`` or ``.manifest.json`` suffix, or a part ``segment_<16+ digits>.aedbwal
            .part-<16 digits>-<16 digits>`` (start below end) with an optional
            ``.manifest.json`` (path separators, ``..``, absolute paths and every other name
            are refused).
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
    if name.startswith(_OTHER_PREFIXES):
        return _parse_other(name, shown)
    if PART_MARK in name:
        return _parse_part(name, shown)
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


def _parse_part(name: str, shown: str) -> ObjectName:
    """A part's name (the ``.part-`` mark is in it), validated."""
    manifest = name.endswith(MANIFEST_SUFFIX)
    body = name[: -len(MANIFEST_SUFFIX)] if manifest else name
    base, mark, tail = body.rpartition(PART_MARK)
    seq = parse_segment_name(base)
    m = _PART.fullmatch(mark + tail)
    if seq is None or m is None or int(m.group(1)) >= int(m.group(2)):
        raise ArchiveNameError(
            f"object {shown} refused: not a part name (expected segment_<16 digits>.aedbwal"
            f"{PART_MARK}<16 digits start>-<16 digits end>, start below end, optionally with "
            f"{MANIFEST_SUFFIX})"
        )
    kind = "part_manifest" if manifest else "part"
    return ObjectName(name, seq, kind, "none", int(m.group(1)), int(m.group(2)))
