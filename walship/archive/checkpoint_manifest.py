"""What the archive says of a checkpoint (:class:`CheckpointManifest`) and where a pruned
archive starts on purpose (:class:`PruneMarker`): two small JSON documents, pure (no I/O).

Both are described in docs/FORMAT.md ("Checkpoints and snapshots", "The prune marker").
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from walship.archive.manifest import load_document
from walship.archive.names import (
    checkpoint_manifest_name,
    prune_marker_name,
    snapshot_name,
)
from walship.archive.sealing import TAG_BYTES, Seal
from walship.errors import ArchiveIntegrityError

CHECKPOINT_FORMAT = "walship-checkpoint-manifest"
PRUNE_FORMAT = "walship-prune-marker"
DOCUMENT_VERSION = 1


def _load(data: bytes, fmt: str, where: str, name: str) -> dict[str, Any]:
    """The JSON object of a document of format ``fmt``, its header checked
    (:func:`~walship.archive.manifest.load_document`)."""

    def bad(what: str) -> ArchiveIntegrityError:
        return ArchiveIntegrityError(f"{where} is invalid: {what}", name)

    return load_document(data, fmt, DOCUMENT_VERSION, bad)


def _int(doc: dict[str, Any], key: str, where: str, name: str, optional: bool = False) -> Any:
    v = doc.get(key)
    if optional and v is None:
        return None
    if type(v) is not int or v < 0:
        what = "a non-negative integer" + (" or null" if optional else "")
        raise ArchiveIntegrityError(f"{where} is invalid: {key} is {v!r}, expected {what}", name)
    return v


def _hash(doc: dict[str, Any], key: str, where: str, name: str) -> bytes:
    v = doc.get(key)
    try:
        raw = bytes.fromhex(v) if isinstance(v, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise ArchiveIntegrityError(f"{where} is invalid: {key} is not 64 hex digits", name)
    return raw


def _seal(doc: dict[str, Any], size: int, where: str, name: str) -> Seal | None:
    """The seal of a sealed snapshot's manifest (``encryption``, with ``stored_size`` the
    raw size plus the GCM tag), or ``None``."""
    if doc.get("encryption") is None:
        return None
    try:
        seal = Seal.from_dict(doc["encryption"])
    except ValueError as e:
        raise ArchiveIntegrityError(f"{where} is invalid: {e}", name) from None
    if doc.get("stored_size") != size + TAG_BYTES:
        raise ArchiveIntegrityError(
            f"{where} is invalid: stored_size is {doc.get('stored_size')!r}, a sealed snapshot of "
            f"{size} bytes is stored in {size + TAG_BYTES}",
            name,
        )
    return seal


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc, indent=1, sort_keys=True).encode() + b"\n"


@dataclass(frozen=True)
class CheckpointManifest:
    """The checkpoint at ``commit_seq``: the application's snapshot of its state up to that
    frame (``size`` bytes with BLAKE3 ``blake3``, in object :attr:`object`), and where the log
    goes on after it: ``segment_seq`` is the segment that holds (or, when it was taken, was to
    hold) frame ``commit_seq + 1``; every frame after the checkpoint is in that segment or a
    later one. ``prev_segment_hash`` is that segment's prev hash (the BLAKE3 of the segment
    before it), which anchors the chain of a log restored from the checkpoint;
    ``prev_last_commit_seq`` the highest commit_seq before that segment (``None``: unknown)."""

    commit_seq: int
    size: int
    blake3: bytes
    created_at_micros: int
    instance_id: int
    segment_seq: int
    prev_segment_hash: bytes
    prev_last_commit_seq: int | None
    seal: Seal | None = None
    """How the snapshot's object is sealed (``archive.encryption``), or ``None``: in the
    clear."""

    @property
    def object(self) -> str:
        return snapshot_name(self.commit_seq)

    @property
    def stored_size(self) -> int:
        """The size of the snapshot's object: ``size``, plus the GCM tag when it is sealed."""
        return self.size + (TAG_BYTES if self.seal is not None else 0)

    @property
    def manifest_object(self) -> str:
        return checkpoint_manifest_name(self.commit_seq)

    def to_json(self) -> bytes:
        sealed = {}
        if self.seal is not None:
            sealed = {"encryption": self.seal.as_dict(), "stored_size": self.stored_size}
        return _dump(
            {
                **sealed,
                "format": CHECKPOINT_FORMAT,
                "version": DOCUMENT_VERSION,
                "commit_seq": self.commit_seq,
                "size": self.size,
                "blake3": self.blake3.hex(),
                "created_at_micros": self.created_at_micros,
                "instance_id": self.instance_id,
                "object": self.object,
                "segment_seq": self.segment_seq,
                "prev_segment_hash": self.prev_segment_hash.hex(),
                "prev_last_commit_seq": self.prev_last_commit_seq,
            }
        )

    @classmethod
    def from_json(cls, data: bytes, commit_seq: int, where: str = "") -> CheckpointManifest:
        """Parse and validate the manifest of the checkpoint at ``commit_seq``.

        Raises:
            ArchiveIntegrityError: not JSON, a field missing or of the wrong type, or the
                manifest of another checkpoint.
        """
        name = checkpoint_manifest_name(commit_seq)
        where = where or name
        doc = _load(data, CHECKPOINT_FORMAT, where, name)
        values = {
            k: _int(doc, k, where, name)
            for k in ("commit_seq", "size", "created_at_micros", "instance_id", "segment_seq")
        }
        if values["commit_seq"] != commit_seq or doc.get("object") != snapshot_name(commit_seq):
            raise ArchiveIntegrityError(
                f"{where} is invalid: it describes commit_seq {values['commit_seq']!r} in "
                f"{doc.get('object')!r}, not {snapshot_name(commit_seq)}",
                name,
            )
        if values["segment_seq"] < 1:
            raise ArchiveIntegrityError(f"{where} is invalid: segment_seq is 0", name)
        return cls(
            seal=_seal(doc, values["size"], where, name),
            blake3=_hash(doc, "blake3", where, name),
            prev_segment_hash=_hash(doc, "prev_segment_hash", where, name),
            prev_last_commit_seq=_int(doc, "prev_last_commit_seq", where, name, optional=True),
            **values,
        )


@dataclass(frozen=True)
class PruneMarker:
    """Where a pruned archive starts on purpose (version ``version``; the highest version in
    the archive is in force). Segments before ``first_segment`` and checkpoints before
    ``checkpoint`` were removed by ``walship prune``; ``prev_segment_hash`` is the prev hash
    ``first_segment`` carries (the chain's anchor there). Every other gap is still an error."""

    version: int
    first_segment: int
    prev_segment_hash: bytes
    checkpoint: int
    """The commit_seq of the oldest checkpoint kept."""
    created_at_micros: int

    @property
    def object(self) -> str:
        return prune_marker_name(self.version)

    def to_json(self) -> bytes:
        return _dump(
            {
                "format": PRUNE_FORMAT,
                "version": DOCUMENT_VERSION,
                "marker_version": self.version,
                "first_segment": self.first_segment,
                "prev_segment_hash": self.prev_segment_hash.hex(),
                "checkpoint": self.checkpoint,
                "created_at_micros": self.created_at_micros,
            }
        )

    @classmethod
    def from_json(cls, data: bytes, version: int, where: str = "") -> PruneMarker:
        """Parse and validate prune marker ``version``.

        Raises:
            ArchiveIntegrityError: not JSON, a field missing or wrong, or another version.
        """
        name = prune_marker_name(version)
        where = where or name
        doc = _load(data, PRUNE_FORMAT, where, name)
        values = {
            k: _int(doc, k, where, name)
            for k in ("marker_version", "first_segment", "checkpoint", "created_at_micros")
        }
        if values.pop("marker_version") != version:
            raise ArchiveIntegrityError(f"{where} is invalid: not marker version {version}", name)
        if values["first_segment"] < 2:
            raise ArchiveIntegrityError(
                f"{where} is invalid: first_segment {values['first_segment']} (a pruned archive "
                "starts after segment 1)",
                name,
            )
        return cls(
            version=version,
            prev_segment_hash=_hash(doc, "prev_segment_hash", where, name),
            **values,
        )
