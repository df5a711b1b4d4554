"""The archive store: one fsspec URL holding closed segments (see the package docstring for
its promises): put and verify, stat, list, get. Creating an object is :mod:`.create`'s job,
classifying a listing :mod:`.listing`'s."""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, BinaryIO

import fsspec
from blake3 import blake3 as Blake3
from fsspec.registry import known_implementations

from walship.archive.create import ObjectCreator
from walship.archive.credentials import redact_url, secret_values, storage_errors
from walship.archive.failures import (
    is_missing_bucket,
    is_unsatisfiable_range,
)
from walship.archive.listing import ArchiveListing
from walship.archive.manifest import SegmentManifest, describe_segment
from walship.archive.names import (
    COMPRESSIONS,
    DEFAULT_MAX_OBJECT_BYTES,
    MAX_MANIFEST_BYTES,
    manifest_name,
    object_name,
    parse_object_name,
)
from walship.archive.settings import CONDITIONAL_CREATE
from walship.core.header import parse_segment_name, segment_name
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
)

_CHUNK = 1024 * 1024
logger = logging.getLogger("walship.archive")


@dataclass(frozen=True)
class PutResult:
    """What :meth:`ArchiveStore.put` did."""

    manifest: SegmentManifest
    uploaded: bool
    """False when the archive held the segment already (an idempotent re-put)."""
    url: str
    """The URL of the object holding the segment."""


# --- the store ------------------------------------------------------------------------------


def _zstd() -> Any:
    try:
        import zstandard
    except ImportError:
        raise ArchiveError(
            "compression 'zstd' needs the zstandard package: pip install 'walship[zstd]'"
        ) from None
    return zstandard


class _Counting:
    """A reader that counts bytes and refuses to read more than ``limit`` of them."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._limit = limit
        self.count = 0
        self.over = False

    def read(self, n: int = -1) -> bytes:
        room = self._limit + 1 - self.count
        if room <= 0:
            self.over = True
            return b""
        data = self._f.read(room if n < 0 else min(n, room))
        self.count += len(data)
        if self.count > self._limit:
            self.over = True
        return bytes(data)


@dataclass
class _Digest:
    stored_size: int
    raw_size: int
    blake3: bytes
    data: bytes | None
    too_large: bool


class ArchiveStore:
    """Closed segments in object storage at ``url`` (any fsspec URL). Thread-safe.

    Args:
        url: ``s3://bucket/prefix``, ``file:///path``, ``memory://name``, a local path, ...
        storage_options: handed to fsspec as they are (endpoint, credentials, ...).
        compression: ``none`` or ``zstd`` for new uploads (reading handles both).
        max_object_bytes: listed objects larger than this are refused.
        conditional_create: ``required`` (default): on S3, write only where the server is
            known (probed once per endpoint and bucket in this process) to honour
            ``If-None-Match: *`` on PUT, else every create raises
            :class:`ArchiveUnsupportedError`; ``checked``: where it is not honoured, look
            before and read back after each create (two writers racing can still overwrite
            each other there).
    Raises:
        ArchiveError: the URL cannot be opened (unknown protocol, s3fs not installed, ...),
            ``zstd`` was asked for without the zstandard package, or an unknown
            ``conditional_create``.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        compression: str = "none",
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
        conditional_create: str = "required",
    ) -> None:
        if conditional_create not in CONDITIONAL_CREATE:
            raise ArchiveError(
                f"conditional_create {conditional_create!r} is not one of {CONDITIONAL_CREATE}"
            )
        self.conditional_create = conditional_create
        anon = (storage_options or {}).get("anon", False)  # "true" from ``-o anon=true``
        self.anon = anon.lower() in ("1", "true", "yes") if isinstance(anon, str) else bool(anon)
        if compression not in COMPRESSIONS:
            raise ArchiveError(f"compression {compression!r} is not one of {COMPRESSIONS}")
        if compression == "zstd":
            _zstd()
        if not url:
            raise ArchiveError("the archive URL is empty")
        self.url = redact_url(url.rstrip("/") or url)  # shown in messages, stats, events
        self._secrets = secret_values(url, storage_options or {})
        self.compression = compression
        self.max_object_bytes = max_object_bytes
        self._source = (url, dict(storage_options or {}))
        fs, root = self._open_fs()
        self.fs: Any = fs
        self.credentials_generation = 0
        """How many times :meth:`renew_credentials` built a fresh filesystem."""
        self._renew_lock = threading.Lock()
        self.root: str = root.rstrip("/")
        protocols = set(fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,))
        # by protocol, not class: a subclass may not keep its parent's write semantics
        if protocols & {"file", "local"}:
            self._kind = "local"
        elif "memory" in protocols:
            self._kind = "memory"
        elif protocols & {"s3", "s3a"}:
            self._kind = "s3"
        else:
            self._kind = "generic"
        self._creator = ObjectCreator(
            self.fs, self.root, self.url, self._kind, conditional_create, self._read_small
        )

    def _open_fs(self, fresh: bool = False) -> tuple[Any, str]:
        """The filesystem of the URL and the root path in it (``fresh``: a new instance, never
        fsspec's cached one, so that credentials are resolved again)."""
        url, options = self._source
        if fresh:
            options = {**options, "skip_instance_cache": True}
        try:
            fs, root = fsspec.core.url_to_fs(url, **options)
        except (ImportError, ValueError, TypeError) as e:
            s3 = isinstance(e, ImportError) and fsspec.utils.get_protocol(url) in ("s3", "s3a")
            hint = ": pip install 'walship[s3]'" if s3 else ""
            raise ArchiveError(f"cannot open archive {self.url}: {e}{hint}") from None
        return fs, str(root)

    def renew_credentials(self, generation: int) -> None:
        """The store refused expired credentials: build a fresh filesystem object (s3fs with
        ``skip_instance_cache=True``: the credentials are resolved again from the storage
        options, the environment, the profile or the instance metadata), unless another
        thread did since ``generation`` (the :attr:`credentials_generation` its call saw).
        Requests already under way finish on the old one. Thread-safe; called by the
        ``storage_errors`` wrapper before it retries a call once.

        Raises:
            ArchiveError: the filesystem cannot be built any more.
        """
        with self._renew_lock:
            if self.credentials_generation != generation:
                return
            fs, _root = self._open_fs(fresh=True)
            self.fs = self._creator.fs = fs
            self.credentials_generation += 1
        logger.warning(
            "walship archive %s: the store refused expired credentials; renewed them and retrying",
            self.url,
        )

    @property
    def shared_across_processes(self) -> bool:
        """Whether another process reaches the same archive with the same URL and options: the
        URL's filesystem is the one fsspec knows by name for its protocol (not one registered
        in this process only), and not ``memory://`` (fsspec's memory store is this process's)."""
        if self._kind == "memory":
            return False
        protocol = self.fs.protocol[0] if isinstance(self.fs.protocol, (tuple, list)) else None
        known = known_implementations.get(protocol or self.fs.protocol, {})
        module, _, attr = str(known.get("class", "")).rpartition(".")
        try:
            return getattr(importlib.import_module(module), attr) is type(self.fs)
        except (ImportError, AttributeError, ValueError):
            return False

    def __repr__(self) -> str:
        return f"ArchiveStore({self.url!r}, compression={self.compression!r})"

    def redact(self, text: str) -> str:
        """``text`` without any credential of this archive (URL password, secret storage
        options), for messages built from errors of the libraries below."""
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    def path(self, name: str) -> str:
        """The fsspec path of object ``name`` (validated first)."""
        parse_object_name(name)
        return f"{self.root}/{name}"

    def object_url(self, name: str) -> str:
        return f"{self.url}/{name}"

    # --- low-level object I/O -----------------------------------------------------------

    @storage_errors
    def _create(self, name: str, data: bytes, md5: str | None = None) -> str | None:
        """:meth:`ObjectCreator.create` of object ``name`` (validated first), storage errors
        turned into walship's."""
        self.path(name)
        return self._creator.create(name, data, md5)

    def _remove_own(self, name: str) -> None:
        """Best effort: remove object ``name``, which this put created and which did not verify,
        so that a retry can upload it again (left in place, it would block every retry)."""
        with contextlib.suppress(Exception):
            self.fs.rm_file(self.path(name))

    @storage_errors
    def _read_small(self, name: str, limit: int) -> bytes | None:
        """Object ``name`` (at most ``limit + 1`` bytes read), or ``None`` if it is absent."""
        # a ranged GET: one request, no HEAD and no LIST (which open() would add on S3)
        try:
            return bytes(self.fs.cat_file(self.path(name), start=0, end=limit + 1))
        except FileNotFoundError as e:
            if is_missing_bucket(e):
                raise
            return None
        except OSError as e:
            if is_unsatisfiable_range(e):
                return b""  # S3 answers a range on an empty object with 416
            raise

    @storage_errors
    def _digest(
        self, name: str, compression: str, max_stored: int, max_raw: int, keep: bool
    ) -> _Digest:
        """Stream object ``name``: its stored size, raw size and raw BLAKE3 (and raw bytes when
        ``keep``), never reading more than ``max_stored + 1`` stored or ``max_raw + 1`` raw bytes.

        Raises:
            ArchiveMissingError: the object does not exist.
            ArchiveIntegrityError: the object does not decompress.
        """
        seq = parse_object_name(name).segment_seq
        missing = ArchiveMissingError(
            f"{self.object_url(name)} is missing from the archive", segment_name(seq)
        )
        if keep and compression == "none":
            # the caller keeps the bytes anyway: one ranged GET, no HEAD, no chunked reads
            data = self._read_small(name, min(max_stored, max_raw))
            if data is None:
                raise missing
            if len(data) > min(max_stored, max_raw):
                return _Digest(len(data), len(data), b"", None, True)
            return _Digest(len(data), len(data), Blake3(data).digest(), data, False)
        try:
            f = self.fs.open(self.path(name), "rb")
        except FileNotFoundError as e:
            if is_missing_bucket(e):
                raise
            raise missing from None
        h = Blake3()
        out = bytearray() if keep else None
        raw_size = 0
        too_large = False
        with f:
            src = _Counting(f, max_stored)
            reader: Any = src
            if compression == "zstd":
                reader = _zstd().ZstdDecompressor().stream_reader(src, read_across_frames=True)
            try:
                while True:
                    chunk = reader.read(min(_CHUNK, max_raw + 1 - raw_size))
                    if not chunk:
                        break
                    raw_size += len(chunk)
                    if raw_size > max_raw:
                        too_large = True
                        break
                    h.update(chunk)
                    if out is not None:
                        out += chunk
                    if src.over:
                        too_large = True
                        break
                if not too_large:
                    src.read(-1)  # count what follows a zstd frame, too
            except Exception as e:
                if type(e).__name__ == "ZstdError":
                    raise ArchiveIntegrityError(
                        f"{self.object_url(name)} does not decompress: {e}", segment_name(seq)
                    ) from None
                raise
        return _Digest(
            src.count,
            raw_size,
            h.digest(),
            bytes(out) if out is not None else None,
            too_large or src.over,
        )

    def _check(self, m: SegmentManifest, keep: bool, verb: str = "is") -> bytes | None:
        """Verify the object of manifest ``m`` (stored size, raw size, raw BLAKE3).

        Raises:
            ArchiveMissingError / ArchiveIntegrityError, naming the object and what differs.
        """
        d = self._digest(m.object, m.compression, m.stored_size, m.size, keep)
        where = self.object_url(m.object)
        if d.too_large:
            raise ArchiveIntegrityError(
                f"{where} {verb} larger than its manifest says ({m.stored_size} bytes stored, "
                f"{m.size} raw)",
                m.name,
            )
        if d.stored_size != m.stored_size or d.raw_size != m.size:
            raise ArchiveIntegrityError(
                f"{where} {verb} {d.stored_size} bytes ({d.raw_size} raw), its manifest says "
                f"{m.stored_size} ({m.size} raw): partial or altered",
                m.name,
            )
        if d.blake3 != m.blake3:
            raise ArchiveIntegrityError(
                f"{where} {verb} altered: BLAKE3 {d.blake3.hex()[:16]}... is not the "
                f"manifest's {m.blake3.hex()[:16]}...",
                m.name,
            )
        return d.data

    # --- the archive interface ----------------------------------------------------------

    @storage_errors
    def stat(self, name: str) -> SegmentManifest | None:
        """The manifest of segment ``name``, or ``None`` when it is not archived.

        Raises:
            ArchiveNameError: ``name`` is not a segment name.
            ArchiveIntegrityError: the manifest exists but is invalid.
            OSError: the store failed.
        """
        seq = parse_segment_name(name)
        if seq is None:
            raise ArchiveNameError(f"{name!r} is not a segment name")
        data = self._read_small(manifest_name(seq), MAX_MANIFEST_BYTES)
        if data is None:
            return None
        return SegmentManifest.from_json(data, seq, self.object_url(manifest_name(seq)))

    @storage_errors
    def put(self, name: str, raw: bytes, *, expected_blake3: bytes | None = None) -> PutResult:
        """Archive closed segment ``name`` holding ``raw``, verified; idempotent.

        The object is created whole or not at all and never replaces different content; it is
        verified (S3: the ETag against the local MD5; elsewhere, or when that cannot tell, read
        back: size and BLAKE3 of the raw bytes) before the manifest is written.

        Args:
            expected_blake3: the hash the segment had when it was closed; a local file that no
                longer has it is refused.
        Raises:
            ArchiveNameError: ``name`` is not a segment name.
            ArchiveIntegrityError: the local bytes are damaged or changed, or the uploaded object
                does not verify.
            ArchiveConflictError: the archive holds different content under this name.
            OSError: the store failed (retry).
        """
        local = describe_segment(name, raw)
        if expected_blake3 is not None and local.blake3 != expected_blake3:
            raise ArchiveIntegrityError(
                f"local segment {name} changed since it was closed (BLAKE3 "
                f"{local.blake3.hex()[:16]}..., expected {expected_blake3.hex()[:16]}...); "
                "not archived",
                name,
            )
        manifest = replace(local, compression=self.compression)
        stored = self._encode(raw, manifest.compression)
        manifest = replace(manifest, stored_size=len(stored))
        # a new segment, the common case, costs the object's PUT and the manifest's, no lookup:
        # whatever is there already shows up as a refused conditional create
        try:
            self._upload(manifest, stored)
        except FileExistsError:
            return self._put_again(local, raw)
        try:
            self._create(manifest.manifest_object, manifest.to_json())
        except FileExistsError:
            other = self.stat(name)
            if (
                other is not None
                and other.same_segment(manifest)
                and (other.object, other.stored_size) == (manifest.object, manifest.stored_size)
            ):
                # its object had vanished: it is back, exactly as the manifest describes it
                return PutResult(other, True, self.object_url(other.object))
            self._remove_own(manifest.object)
            return self._put_again(local, raw)
        return PutResult(manifest, True, self.object_url(manifest.object))

    def _encode(self, raw: bytes, compression: str) -> bytes:
        if compression == "zstd":
            return bytes(
                _zstd()
                .ZstdCompressor(level=3, write_content_size=True, write_checksum=True)
                .compress(raw)
            )
        return raw

    def _upload(self, manifest: SegmentManifest, stored: bytes) -> None:
        """Create the object of ``manifest`` holding ``stored`` and verify it.

        Raises:
            FileExistsError: the object exists (nothing was written).
            ArchiveIntegrityError: the upload did not verify (it was removed again).
        """
        # S3 answers a single-request PUT with the MD5 of what it stored (its ETag): equal to
        # ours, the object is verified without reading it back
        md5 = hashlib.md5(stored, usedforsecurity=False).hexdigest() if self._kind == "s3" else None
        etag = self._create(manifest.object, stored, md5)
        if md5 is not None and etag == md5:
            return
        # elsewhere, or an ETag that is no MD5 (SSE-KMS): read it back
        try:
            self._check(manifest, keep=False)
        except ArchiveIntegrityError as e:
            self._remove_own(manifest.object)
            raise ArchiveIntegrityError(f"upload did not verify: {e}", manifest.name) from None

    def _put_again(self, local: SegmentManifest, raw: bytes) -> PutResult:
        """``put`` when the archive holds something under the segment's names already: an
        idempotent re-put, an object whose manifest was never written, a manifest whose object
        vanished, or different content (refused)."""
        name = local.name
        existing = self.stat(name)
        if existing is not None:
            if not existing.same_segment(local):
                raise ArchiveConflictError(
                    f"{self.object_url(existing.manifest_object)} describes different content "
                    f"({existing.size} bytes, BLAKE3 {existing.blake3.hex()[:16]}...) than the "
                    f"local {name} ({local.size} bytes, BLAKE3 {local.blake3.hex()[:16]}...); "
                    "refusing to overwrite"
                )
            try:
                self._check(existing, keep=False)
                return PutResult(existing, False, self.object_url(existing.object))
            except ArchiveMissingError:
                manifest = existing  # the object vanished: put it back exactly as described
        else:
            manifest = replace(local, compression=self.compression)
        stored = self._encode(raw, manifest.compression)
        if existing is None:
            manifest = replace(manifest, stored_size=len(stored))
        elif len(stored) != manifest.stored_size:
            raise ArchiveIntegrityError(
                f"{self.object_url(manifest.object)} is missing and cannot be recreated as its "
                f"manifest describes ({manifest.stored_size} bytes stored)",
                name,
            )
        uploaded = True
        try:
            self._upload(manifest, stored)
        except FileExistsError:
            uploaded = False
            try:
                self._check(manifest, keep=False, verb="exists but is")
            except ArchiveMissingError:
                raise
            except ArchiveIntegrityError as e:
                raise ArchiveConflictError(f"{e}; refusing to overwrite it") from None
        if existing is None:
            try:
                self._create(manifest.manifest_object, manifest.to_json())
            except FileExistsError:
                other = self.stat(name)
                if other is None or not other.same_segment(manifest):
                    raise ArchiveConflictError(
                        f"{self.object_url(manifest.manifest_object)} appeared with different "
                        "content while archiving; refusing to overwrite"
                    ) from None
                manifest = other
        return PutResult(manifest, uploaded, self.object_url(manifest.object))

    @storage_errors
    def list(self) -> ArchiveListing:
        """One LIST of the archive prefix, every name validated (see :class:`ArchiveListing`).

        Raises:
            OSError: the store failed.
        """
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.root)
        try:
            entries = self.fs.ls(self.root, detail=True)
        except FileNotFoundError as missing:
            if is_missing_bucket(missing):
                raise
            entries = []
        with contextlib.suppress(Exception):
            self.fs.invalidate_cache(self.root)  # never answer a later lookup from this LIST
        return ArchiveListing.classify(entries, self.root, self.url, self.max_object_bytes)

    @storage_errors
    def get(self, manifest: SegmentManifest) -> bytes:
        """The raw bytes of the segment ``manifest`` describes, verified against it.

        Raises:
            ArchiveMissingError: the object is not there.
            ArchiveIntegrityError: it is partial, larger, or altered (BLAKE3).
        """
        data = self._check(manifest, keep=True)
        assert data is not None
        return data

    @storage_errors
    def get_unverified(self, segment_seq: int, compression: str = "none") -> bytes:
        """The raw bytes of a segment object that has no manifest (nothing to verify against).

        Raises:
            ArchiveMissingError / ArchiveIntegrityError: absent, too large, or undecodable.
        """
        name = object_name(segment_seq, compression)
        limit = self.max_object_bytes
        d = self._digest(name, compression, limit, limit, keep=True)
        if d.too_large:
            raise ArchiveIntegrityError(
                f"{self.object_url(name)} is larger than {limit} bytes", segment_name(segment_seq)
            )
        assert d.data is not None
        return d.data
