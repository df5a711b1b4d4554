"""Segment manifests: what the archive says of each segment (size and BLAKE3 of the raw bytes,
header fields, commit_seq and timestamp ranges, the object holding it), and how a local
segment's manifest is made."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from walship.archive.names import (
    COMPRESSIONS,
    MAX_MANIFEST_BYTES,
    manifest_name,
    object_name,
)
from walship.archive.sealing import Seal
from walship.core.header import parse_segment_name, segment_name
from walship.core.scan import scan_segment
from walship.errors import ArchiveIntegrityError, ArchiveNameError

MANIFEST_FORMAT = "walship-segment-manifest"
MANIFEST_VERSION = 1

_INT_FIELDS = ("segment_seq", "instance_id", "size", "created_at_micros", "frame_count")
_OPT_INT_FIELDS = (
    "first_commit_seq",
    "last_commit_seq",
    "first_timestamp_micros",
    "last_timestamp_micros",
)


@dataclass(frozen=True)
class SegmentManifest:
    """What the archive knows of one segment without reading its bytes.

    ``size`` and ``blake3`` are of the raw segment bytes (the chain is always over raw bytes);
    ``stored_size`` is the size of the object (compressed or not) named by :attr:`object`.
    """

    name: str
    segment_seq: int
    instance_id: int
    size: int
    blake3: bytes
    prev_segment_hash: bytes
    created_at_micros: int
    frame_count: int
    first_commit_seq: int | None
    last_commit_seq: int | None
    first_timestamp_micros: int | None
    last_timestamp_micros: int | None
    compression: str = "none"
    stored_size: int = 0
    seal: Seal | None = None
    """How the object is encrypted (``None``: it is not); see :mod:`walship.archive.sealing`."""
    epoch: int = 0
    """The epoch of the writer that uploaded it (:mod:`walship.archive.epoch`; 0: before any
    takeover, or a manifest without the field)."""

    @property
    def object(self) -> str:
        """The name of the object holding the bytes."""
        return object_name(self.segment_seq, self.compression)

    @property
    def manifest_object(self) -> str:
        return manifest_name(self.segment_seq)

    def same_segment(self, other: SegmentManifest) -> bool:
        """Whether both describe the same raw bytes (compression may differ)."""
        return (
            self.segment_seq == other.segment_seq
            and self.size == other.size
            and self.blake3 == other.blake3
        )

    def to_json(self) -> bytes:
        doc: dict[str, Any] = {"format": MANIFEST_FORMAT, "version": MANIFEST_VERSION}
        doc.update(
            name=self.name,
            segment_seq=self.segment_seq,
            instance_id=self.instance_id,
            size=self.size,
            blake3=self.blake3.hex(),
            prev_segment_hash=self.prev_segment_hash.hex(),
            created_at_micros=self.created_at_micros,
            frame_count=self.frame_count,
            first_commit_seq=self.first_commit_seq,
            last_commit_seq=self.last_commit_seq,
            first_timestamp_micros=self.first_timestamp_micros,
            last_timestamp_micros=self.last_timestamp_micros,
            compression=self.compression,
            object=self.object,
            stored_size=self.stored_size,
        )
        if self.seal is not None:
            doc["encryption"] = self.seal.as_dict()
        if self.epoch:  # (absent before the first takeover: the manifests of before, unchanged)
            doc["epoch"] = self.epoch
        return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"

    @classmethod
    def from_json(cls, data: bytes, segment_seq: int, where: str = "") -> SegmentManifest:
        """Parse and validate a manifest that should describe segment ``segment_seq``.

        Raises:
            ArchiveIntegrityError: not JSON, a field missing or of the wrong type, or a manifest
                of another segment.
        """
        name = segment_name(segment_seq)
        where = where or manifest_name(segment_seq)

        def bad(what: str) -> ArchiveIntegrityError:
            return ArchiveIntegrityError(f"manifest {where} is invalid: {what}", name)

        doc = load_document(data, MANIFEST_FORMAT, MANIFEST_VERSION, bad)
        values: dict[str, Any] = {}
        for key in _INT_FIELDS:
            v = doc.get(key)
            if type(v) is not int or v < 0:
                raise bad(f"{key} is {v!r}, expected a non-negative integer")
            values[key] = v
        for key in _OPT_INT_FIELDS:
            v = doc.get(key)
            if v is not None and (type(v) is not int or v < 0):
                raise bad(f"{key} is {v!r}, expected a non-negative integer or null")
            values[key] = v
        for key in ("blake3", "prev_segment_hash"):
            v = doc.get(key)
            try:
                raw = bytes.fromhex(v) if isinstance(v, str) else b""
            except ValueError:
                raw = b""
            if len(raw) != 32:
                raise bad(f"{key} is not 64 hex digits")
            values[key] = raw
        compression = doc.get("compression")
        if compression not in COMPRESSIONS:
            raise bad(f"compression is {compression!r}, expected one of {COMPRESSIONS}")
        stored = doc.get("stored_size")
        if type(stored) is not int or stored < 0:
            raise bad(f"stored_size is {stored!r}, expected a non-negative integer")
        if doc.get("name") != name or values["segment_seq"] != segment_seq:
            raise bad(f"it describes {doc.get('name')!r}, not {name}")
        if doc.get("object") != object_name(segment_seq, compression):
            raise bad(f"object is {doc.get('object')!r}")
        seal = None
        if "encryption" in doc:
            try:
                seal = Seal.from_dict(doc["encryption"])
            except ValueError as e:
                raise bad(str(e)) from None
        values["epoch"] = manifest_epoch(doc, bad)
        return cls(name=name, compression=compression, stored_size=stored, seal=seal, **values)


def load_document(
    data: bytes, fmt: str, version: int, bad: Callable[[str], Exception]
) -> dict[str, Any]:
    """The JSON object of a small archive document (a segment, part or checkpoint manifest,
    a prune marker) of format ``fmt`` and ``version``, its size and header checked.

    Raises:
        Exception: what ``bad`` makes, naming what is wrong.
    """
    if len(data) > MAX_MANIFEST_BYTES:
        raise bad(f"larger than {MAX_MANIFEST_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as e:
        raise bad(f"not JSON ({e})") from None
    if not isinstance(doc, dict) or doc.get("format") != fmt:
        raise bad(f"not a {fmt} document")
    if doc.get("version") != version:
        raise bad(f"unsupported version {doc.get('version')!r}")
    return doc


def manifest_epoch(doc: dict[str, Any], bad: Callable[[str], Exception]) -> int:
    """The optional ``epoch`` of a segment or part manifest ``doc`` (absent: 0).

    Raises:
        Exception: what ``bad`` makes, when it is not a non-negative integer.
    """
    epoch = doc.get("epoch", 0)
    if type(epoch) is not int or epoch < 0:
        raise bad(f"epoch is {epoch!r}, expected a non-negative integer")
    return epoch


def describe_segment(name: str, raw: bytes) -> SegmentManifest:
    """Read a closed segment's bytes and return its manifest (compression ``none``).

    Every frame is checked (length, CRC-32C, commit_seq order) before anything is shipped.

    Raises:
        ArchiveNameError: ``name`` is not a segment name.
        ArchiveIntegrityError: the bytes are not one whole, valid segment.
    """
    seq = parse_segment_name(name)
    if seq is None:
        raise ArchiveNameError(f"{name!r} is not a segment name")
    scan = scan_segment(name, raw)
    if scan.problems:
        raise ArchiveIntegrityError(f"segment {name} is damaged: {scan.problems[0]}", name)
    seg = scan.segments[0]
    assert seg.header is not None
    return SegmentManifest(
        name=name,
        segment_seq=seq,
        instance_id=seg.header.instance_id,
        size=len(raw),
        blake3=seg.blake3,
        prev_segment_hash=seg.header.prev_segment_hash,
        created_at_micros=seg.header.created_at_micros,
        frame_count=seg.frame_count,
        first_commit_seq=seg.first_commit_seq,
        last_commit_seq=seg.last_commit_seq,
        first_timestamp_micros=seg.first_timestamp_micros,
        last_timestamp_micros=seg.last_timestamp_micros,
        compression="none",
        stored_size=len(raw),
    )
