"""Checkpoints with snapshots in the archive: storing one (:func:`store_checkpoint`, what
``Log.checkpoint(seq, snapshot=...)`` calls through the archiver), reading them back
(:func:`load_checkpoints`, :func:`fetch_snapshot`), choosing the one a restore starts from
(:func:`choose_checkpoint`), and the prune marker in force (:func:`load_prune_marker`).

A checkpoint is two immutable objects, each created conditionally (``If-None-Match: *``, or the
local hard-link create) and verified: the snapshot ``checkpoint_<commit_seq>.snapshot`` first,
then its manifest ``checkpoint_<commit_seq>.manifest.json``. A snapshot without its manifest
is an unfinished checkpoint: never restored (storing the same checkpoint again finishes it).
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

from blake3 import blake3 as Blake3

from walship.archive.checkpoint_manifest import CheckpointManifest, PruneMarker
from walship.archive.listing import ArchiveListing
from walship.archive.names import (
    MAX_MANIFEST_BYTES,
    checkpoint_manifest_name,
    prune_marker_name,
    snapshot_name,
)
from walship.archive.objects import ArchiveStore
from walship.core.reading import CheckpointPosition
from walship.errors import (
    ArchiveConflictError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    RestoreError,
)

SNAPSHOT_FILE = "walship.snapshot"
"""The file a restore from a checkpoint writes the snapshot to, beside the log's segments."""

_JOBS = 16


CheckpointAnchor = CheckpointPosition
"""Where the log goes on after a checkpoint, as the log knows it when it is taken (see
:class:`~walship.archive.checkpoint_manifest.CheckpointManifest`): the log's own
:class:`~walship.core.reading.CheckpointPosition` (the archive's name for it)."""


def store_checkpoint(
    archive: ArchiveStore, anchor: CheckpointAnchor, snapshot: bytes
) -> CheckpointManifest:
    """Put the checkpoint ``anchor`` describes, with ``snapshot``, into ``archive``: the
    snapshot object, verified, then its manifest; durable in the archive on return. Storing
    the same snapshot at the same commit_seq again is idempotent (it finishes an unfinished
    one, even one sealed under a key that is no longer current). On the calling thread.

    With ``archive.encryption`` (the archive store's keyring has a current key) the snapshot is
    sealed (:mod:`walship.archive.sealing`): AES-GCM seals in one pass, so the sealed copy is
    held in memory beside ``snapshot`` (twice its size while it is stored).

    Raises:
        ArchiveConflictError: the archive holds a different checkpoint at this commit_seq.
        ArchiveIntegrityError: the upload did not verify.
        OSError: the store failed.
    """
    digest = Blake3(snapshot).digest()
    stored, seal = archive.seal_bytes(snapshot_name(anchor.commit_seq), snapshot)
    manifest = CheckpointManifest(
        commit_seq=anchor.commit_seq,
        size=len(snapshot),
        blake3=digest,
        created_at_micros=time.time_ns() // 1000,
        instance_id=anchor.instance_id,
        segment_seq=anchor.segment_seq,
        prev_segment_hash=anchor.prev_segment_hash,
        prev_last_commit_seq=anchor.prev_last_commit_seq,
        seal=seal,
    )
    existing = _existing(archive, manifest.commit_seq)
    if existing is not None:
        if (existing.size, existing.blake3) != (manifest.size, manifest.blake3):
            raise _conflict(archive, existing, manifest)
        fetch_snapshot(archive, existing)  # the object must be there, as described
        return existing
    try:
        archive.create_object(manifest.object, stored)
    except FileExistsError:
        there = archive.read_object(manifest.object, len(stored))
        found = seal if there == stored else archive.seal_found(manifest.object, snapshot, there)
        if found is not None:  # an unfinished checkpoint, perhaps sealed under an older key
            manifest = replace(manifest, seal=found)
        elif seal is not None or there != stored:
            raise ArchiveConflictError(
                f"{archive.object_url(manifest.object)} holds a different snapshot at "
                f"commit_seq {manifest.commit_seq}; refusing to overwrite"
            ) from None
    try:
        archive.create_object(manifest.manifest_object, manifest.to_json())
    except FileExistsError:
        other = _existing(archive, manifest.commit_seq)
        if other is None or (other.size, other.blake3) != (manifest.size, manifest.blake3):
            raise ArchiveConflictError(
                f"{archive.object_url(manifest.manifest_object)} appeared with different "
                "content while storing the checkpoint; refusing to overwrite"
            ) from None
        return other
    return manifest


def _existing(archive: ArchiveStore, commit_seq: int) -> CheckpointManifest | None:
    name = checkpoint_manifest_name(commit_seq)
    data = archive.read_object(name, MAX_MANIFEST_BYTES)
    if data is None:
        return None
    return CheckpointManifest.from_json(data, commit_seq, archive.object_url(name))


def _conflict(
    archive: ArchiveStore, existing: CheckpointManifest, new: CheckpointManifest
) -> ArchiveConflictError:
    return ArchiveConflictError(
        f"{archive.object_url(existing.manifest_object)} describes a different snapshot "
        f"({existing.size} bytes, BLAKE3 {existing.blake3.hex()[:16]}...) than this one "
        f"({new.size} bytes, BLAKE3 {new.blake3.hex()[:16]}...) at commit_seq "
        f"{new.commit_seq}; refusing to overwrite (a checkpoint is immutable)"
    )


def read_snapshot(snapshot: bytes | bytearray | memoryview | str | object) -> bytes:
    """The bytes of a snapshot given as bytes, a path (``str`` or ``os.PathLike``) or a binary
    file object (read from where it stands to its end).

    Raises:
        TypeError: ``snapshot`` is none of these (or a file object that reads ``str``).
        OSError: the file could not be read.
    """
    if isinstance(snapshot, (bytes, bytearray, memoryview)):
        return bytes(snapshot)
    if isinstance(snapshot, str) or hasattr(snapshot, "__fspath__"):
        with open(snapshot, "rb") as f:
            return f.read()
    if hasattr(snapshot, "read"):
        data = snapshot.read()
        if not isinstance(data, (bytes, bytearray)):
            raise TypeError("snapshot file object must be opened in binary mode")
        return bytes(data)
    raise TypeError(
        f"snapshot must be bytes, a path or a binary file object, not {type(snapshot).__name__}"
    )


def fetch_snapshot(archive: ArchiveStore, m: CheckpointManifest) -> bytes:
    """The snapshot of checkpoint ``m``, checked against its manifest (size and BLAKE3;
    a sealed one opened first: AES-GCM opens the whole object at once, so a sealed snapshot is
    held in memory twice, sealed and opened, while it is read).

    Raises:
        ArchiveMissingError: the snapshot object is gone.
        ArchiveIntegrityError: it is partial, larger or altered (sealed: does not open).
        ArchiveKeyError: it is sealed under a key the archive store was not given (named).
        OSError: the store failed.
    """
    where = archive.object_url(m.object)
    data = archive.read_object(m.object, m.stored_size)
    if data is None:
        raise ArchiveMissingError(
            f"{where} is missing from the archive (its manifest is there)", m.object
        )
    if m.seal is not None:
        if len(data) != m.stored_size:
            raise ArchiveIntegrityError(
                f"{where} is {len(data)} bytes, its manifest says {m.stored_size} stored: "
                "partial or altered",
                m.object,
            )
        data = archive.open_bytes(m.object, data, m.seal)
    digest = Blake3(data).digest()
    if len(data) != m.size or digest != m.blake3:
        size = f"more than {m.size}" if len(data) > m.size else str(len(data))
        raise ArchiveIntegrityError(
            f"{where} is {size} bytes with BLAKE3 {digest.hex()[:16]}..., its manifest says "
            f"{m.size} bytes with BLAKE3 {m.blake3.hex()[:16]}...: partial or altered",
            m.object,
        )
    return data


def load_checkpoints(
    archive: ArchiveStore, listing: ArchiveListing, jobs: int = _JOBS
) -> tuple[dict[int, CheckpointManifest], dict[int, str]]:
    """Every checkpoint manifest ``listing`` names, fetched ``jobs`` at a time: the valid ones
    by commit_seq, and the reason each invalid one is refused.

    Raises:
        OSError: the store failed.
    """
    seqs = sorted(listing.checkpoint_manifests)
    valid: dict[int, CheckpointManifest] = {}
    invalid: dict[int, str] = {}

    def one(seq: int) -> CheckpointManifest | str | None:
        try:
            return _existing(archive, seq)
        except ArchiveIntegrityError as e:
            return str(e)

    if seqs:
        with ThreadPoolExecutor(max_workers=max(1, min(jobs, len(seqs)))) as pool:
            for seq, m in zip(seqs, pool.map(one, seqs), strict=True):
                if isinstance(m, CheckpointManifest):
                    valid[seq] = m
                elif isinstance(m, str):
                    invalid[seq] = m
    return valid, invalid


def load_prune_marker(archive: ArchiveStore, listing: ArchiveListing) -> PruneMarker | None:
    """The prune marker in force: the highest version listed (``None``: never pruned).

    Raises:
        ArchiveIntegrityError: that marker does not parse (named): the archive's start is then
            unknown, so nothing is planned on it.
        OSError: the store failed.
    """
    for version in sorted(listing.prune_markers, reverse=True):
        name = prune_marker_name(version)
        data = archive.read_object(name, MAX_MANIFEST_BYTES)
        if data is None:
            continue  # listed, then gone (a later prune removed a superseded one)
        return PruneMarker.from_json(data, version, archive.object_url(name))
    return None


def choose_checkpoint(
    checkpoints: Mapping[int, CheckpointManifest],
    which: str | int,
    url: str,
    to_seq: int | None = None,
    to_micros: int | None = None,
) -> CheckpointManifest:
    """The checkpoint a restore starts from: ``which`` is ``"latest"`` (the newest), a
    commit_seq, or ``"oldest"``; with a target (``to_seq`` or ``to_micros``) ``latest`` is the
    newest checkpoint at or before it (to a time: taken at or before it), and a named one must
    be at or before it.

    Raises:
        RestoreError: no such checkpoint (what there is named).
    """
    usable = sorted(checkpoints)
    if to_seq is not None:
        usable = [c for c in usable if c <= to_seq]
    elif to_micros is not None:
        usable = [c for c in usable if checkpoints[c].created_at_micros <= to_micros]
    held = ", ".join(str(c) for c in sorted(checkpoints)[-5:]) or "none"
    target = (
        f" at or before commit_seq {to_seq}"
        if to_seq is not None
        else " taken at or before the target time"
        if to_micros is not None
        else ""
    )
    if which in ("latest", "oldest"):
        if not usable:
            raise RestoreError(
                f"{url} holds no checkpoint{target} (checkpoints there: {held}; a checkpoint "
                "with a snapshot is made by Log.checkpoint(seq, snapshot=...) or "
                "walship checkpoint)"
            )
        return checkpoints[usable[-1] if which == "latest" else usable[0]]
    if type(which) is not int or which not in checkpoints:
        raise RestoreError(
            f"{url} holds no checkpoint at commit_seq {which!r} (checkpoints there: {held})"
        )
    if which not in usable:
        raise RestoreError(f"checkpoint {which} is not{target}")
    return checkpoints[which]


def remove_checkpoint(archive: ArchiveStore, commit_seq: int) -> None:
    """Remove the checkpoint at ``commit_seq``: its manifest first (so that what is left of
    it, if this is interrupted, is an unfinished checkpoint, never restored), then its
    snapshot.

    Raises:
        OSError: the store failed.
    """
    archive.remove_object(checkpoint_manifest_name(commit_seq))
    with contextlib.suppress(FileNotFoundError):
        archive.remove_object(snapshot_name(commit_seq))


__all__ = [
    "SNAPSHOT_FILE",
    "CheckpointAnchor",
    "CheckpointManifest",
    "PruneMarker",
    "choose_checkpoint",
    "fetch_snapshot",
    "load_checkpoints",
    "load_prune_marker",
    "read_snapshot",
    "remove_checkpoint",
    "store_checkpoint",
]
