"""Archiving one closed segment: its object (compressed, sealed under the current key) and then
its manifest, each created whole or not at all and never over different content, the object
verified before the manifest is written; a put again of what the archive holds is idempotent,
an object whose manifest was never written (or a manifest whose object vanished) is completed,
different content refused. A new manifest carries the writer's epoch (``store.writer_epoch``,
:mod:`walship.archive.epoch`). :meth:`walship.archive.objects.ArchiveStore.put` runs it; the
store does the object I/O.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING

from walship.archive.manifest import SegmentManifest, describe_segment
from walship.archive.objects import PutResult
from walship.archive.sealing import Seal, no_keyring
from walship.errors import ArchiveConflictError, ArchiveIntegrityError, ArchiveMissingError

if TYPE_CHECKING:
    from walship.archive.objects import ArchiveStore


def put_segment(
    store: ArchiveStore, name: str, raw: bytes, expected_blake3: bytes | None
) -> PutResult:
    """:meth:`ArchiveStore.put <walship.archive.objects.ArchiveStore.put>`: archive closed
    segment ``name`` holding ``raw`` in ``store``, verified; idempotent (its contract)."""
    local = describe_segment(name, raw)
    if expected_blake3 is not None and local.blake3 != expected_blake3:
        raise ArchiveIntegrityError(
            f"local segment {name} changed since it was closed (BLAKE3 "
            f"{local.blake3.hex()[:16]}..., expected {expected_blake3.hex()[:16]}...); "
            "not archived",
            name,
        )
    manifest = replace(local, compression=store.compression, epoch=store.writer_epoch)
    stored, seal = _encode(store, raw, manifest)
    manifest = replace(manifest, stored_size=len(stored), seal=seal)
    # a new segment, the common case, costs the object's PUT and the manifest's, no lookup:
    # whatever is there already shows up as a refused conditional create
    try:
        _upload(store, manifest, stored)
    except FileExistsError:
        return _put_again(store, local, raw)
    try:
        store.create(manifest.manifest_object, manifest.to_json())
    except FileExistsError:
        other = store.stat(name)
        if (
            other is not None
            and other.same_segment(manifest)
            and (other.object, other.stored_size, other.seal)
            == (manifest.object, manifest.stored_size, manifest.seal)
        ):
            # its object had vanished: it is back, exactly as the manifest describes it
            return PutResult(other, True, store.object_url(other.object))
        store.remove_own(manifest.object)
        return _put_again(store, local, raw)
    return PutResult(manifest, True, store.object_url(manifest.object))


def _encode(
    store: ArchiveStore, raw: bytes, manifest: SegmentManifest, *, as_described: bool = False
) -> tuple[bytes, Seal | None]:
    """The object bytes of segment ``raw`` under ``manifest``'s compression, sealed under
    the current key (when this store has one), or, ``as_described``, exactly as the
    manifest's seal says (an object recreated as its manifest describes it)."""
    stored = store.compress(raw, manifest.compression)
    if as_described:
        if manifest.seal is None:
            return stored, None
        if store.keyring is None:
            raise no_keyring(store.object_url(manifest.object), manifest.seal.key_id)
        return store.keyring.seal(stored, manifest.object, manifest.seal)
    return store.seal_bytes(manifest.object, stored)


def _reseal_as_found(store: ArchiveStore, raw: bytes, manifest: SegmentManifest) -> SegmentManifest:
    """``manifest`` with the seal of the object an earlier run created for it (no manifest
    came): that object may be sealed under a key that is no longer current, which still
    makes it this segment's object. ``manifest`` itself when the object is not sealed, not
    found, or not sealed from these bytes under any key held (the check that follows then
    names it)."""
    if manifest.seal is None:
        return manifest
    there = store.read_object(manifest.object, manifest.stored_size)
    stored = store.compress(raw, manifest.compression)
    seal = store.seal_found(manifest.object, stored, there)
    return replace(manifest, seal=seal) if seal is not None else manifest


def _upload(store: ArchiveStore, manifest: SegmentManifest, stored: bytes) -> None:
    """Create the object of ``manifest`` holding ``stored`` and verify it.

    Raises:
        FileExistsError: the object exists (nothing was written).
        ArchiveIntegrityError: the upload did not verify (it was removed again).
    """
    # S3 answers a single-request PUT with the MD5 of what it stored (its ETag): equal to
    # ours, the object is verified without reading it back
    md5 = store.etag_md5(stored)
    etag = store.create(manifest.object, stored, md5)
    if md5 is not None and etag == md5:
        return
    # elsewhere, or an ETag that is no MD5 (SSE-KMS): read it back
    try:
        store.check(manifest, keep=False)
    except ArchiveIntegrityError as e:
        store.remove_own(manifest.object)
        raise ArchiveIntegrityError(f"upload did not verify: {e}", manifest.name) from None


def _put_again(store: ArchiveStore, local: SegmentManifest, raw: bytes) -> PutResult:
    """``put`` when the archive holds something under the segment's names already: an
    idempotent re-put, an object whose manifest was never written, a manifest whose object
    vanished, or different content (refused)."""
    name = local.name
    existing = store.stat(name)
    if existing is not None:
        if not existing.same_segment(local):
            raise ArchiveConflictError(
                f"{store.object_url(existing.manifest_object)} describes different content "
                f"({existing.size} bytes, BLAKE3 {existing.blake3.hex()[:16]}...) than the "
                f"local {name} ({local.size} bytes, BLAKE3 {local.blake3.hex()[:16]}...); "
                "refusing to overwrite"
            )
        try:
            store.check(existing, keep=False)
            return PutResult(existing, False, store.object_url(existing.object))
        except ArchiveMissingError:
            manifest = existing  # the object vanished: put it back exactly as described
    else:
        manifest = replace(local, compression=store.compression, epoch=store.writer_epoch)
    stored, seal = _encode(store, raw, manifest, as_described=existing is not None)
    if existing is None:
        manifest = replace(manifest, stored_size=len(stored), seal=seal)
    elif len(stored) != manifest.stored_size:
        raise ArchiveIntegrityError(
            f"{store.object_url(manifest.object)} is missing and cannot be recreated as its "
            f"manifest describes ({manifest.stored_size} bytes stored)",
            name,
        )
    uploaded = True
    try:
        _upload(store, manifest, stored)
    except FileExistsError:
        uploaded = False
        if existing is None:  # an earlier run's object, perhaps under an older key
            manifest = _reseal_as_found(store, raw, manifest)
        try:
            store.check(manifest, keep=False, verb="exists but is")
        except ArchiveMissingError:
            raise
        except ArchiveIntegrityError as e:
            raise ArchiveConflictError(f"{e}; refusing to overwrite it") from None
    if existing is None:
        try:
            store.create(manifest.manifest_object, manifest.to_json())
        except FileExistsError:
            other = store.stat(name)
            if other is None or not other.same_segment(manifest):
                raise ArchiveConflictError(
                    f"{store.object_url(manifest.manifest_object)} appeared with different "
                    "content while archiving; refusing to overwrite"
                ) from None
            manifest = other
    return PutResult(manifest, uploaded, store.object_url(manifest.object))


__all__ = ["put_segment"]
