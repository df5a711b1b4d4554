"""The archive store: one fsspec URL holding closed segments (see the package docstring for
its promises), and what a listing of it finds."""

from __future__ import annotations

import base64
import contextlib
import errno
import hashlib
import importlib
import os
import secrets
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO

import fsspec
from blake3 import blake3 as Blake3
from fsspec.registry import known_implementations

from walship.archive.credentials import _secret_values, _storage_errors, redact_url
from walship.archive.failures import (
    is_missing_bucket,
    is_refused_create,
    is_unsatisfiable_range,
)
from walship.archive.manifest import SegmentManifest, describe_segment
from walship.archive.names import (
    COMPRESSIONS,
    DEFAULT_MAX_OBJECT_BYTES,
    MAX_MANIFEST_BYTES,
    TEMP_PREFIX,
    manifest_name,
    object_name,
    parse_object_name,
)
from walship.backends.platform import OPEN_FLAGS, fsync_dir, write_all
from walship.core.header import parse_segment_name, segment_name
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
    ArchiveUnsupportedError,
)

_MEMORY_LOCK = threading.Lock()  # fsspec's memory store is one global dict
_CHUNK = 1024 * 1024
MAX_PUT_BYTES = 5 * 1024**3
"""S3's limit of one PUT. An object is always created by one PUT (the conditional create is
not honoured on CompleteMultipartUpload by every server: radosgw ignores it there), so a larger
one is refused. s3fs sends less than ``min(5 GiB, 2 * chunksize)`` as one PUT."""
CONDITIONAL_CREATE_MODES = ("required", "checked")
"""``required``: archive only where the server honours ``If-None-Match: *`` on PUT (probed);
``checked``: where it does not, check before and read back after each create (weaker)."""
_PROBE_BODY = b"walship: does this server honour If-None-Match: * on PUT?\n"
_probed: dict[tuple[str, str], bool] = {}
_probe_locks: dict[tuple[str, str], threading.Lock] = {}
_probe_locks_lock = threading.Lock()


# --- listing --------------------------------------------------------------------------------


@dataclass
class ArchiveListing:
    """One LIST of the archive, classified.

    ``objects`` maps a segment_seq to its data objects (compression -> size), ``manifests`` to
    its manifest's size. ``rejected`` holds (name, reason) of everything refused; ``temporary``
    the names of leftover temporary objects (skipped).
    """

    objects: dict[int, dict[str, int]] = field(default_factory=dict)
    manifests: dict[int, int] = field(default_factory=dict)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    temporary: list[str] = field(default_factory=list)

    @property
    def segment_seqs(self) -> list[int]:
        """Every segment_seq with a manifest or an object, ascending."""
        return sorted(set(self.objects) | set(self.manifests))

    def raise_rejected(self, url: str) -> None:
        """Raise :class:`ArchiveNameError` naming the first refused object, if any."""
        if self.rejected:
            more = f" (and {len(self.rejected) - 1} more)" if len(self.rejected) > 1 else ""
            raise ArchiveNameError(f"{url}: {self.rejected[0][1]}{more}")


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


def _local_create(path: str, data: bytes) -> None:
    """Create ``path`` holding ``data``, durably, whole or not at all; never replace it."""
    directory = os.path.dirname(path)
    if not os.path.isdir(directory):
        os.makedirs(directory, mode=0o750, exist_ok=True)
        fsync_dir(os.path.dirname(directory.rstrip("/")) or "/")
    tmp = os.path.join(directory, f"{TEMP_PREFIX}{secrets.token_hex(8)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | OPEN_FLAGS, 0o640)
    try:
        try:
            write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.link(tmp, path)  # fails with EEXIST: the atomic "create if absent"
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    fsync_dir(directory)


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
        if conditional_create not in CONDITIONAL_CREATE_MODES:
            raise ArchiveError(
                f"conditional_create {conditional_create!r} is not one of "
                f"{CONDITIONAL_CREATE_MODES}"
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
        self._secrets = _secret_values(url, storage_options or {})
        self.compression = compression
        self.max_object_bytes = max_object_bytes
        try:
            fs, root = fsspec.core.url_to_fs(url, **dict(storage_options or {}))
        except (ImportError, ValueError, TypeError) as e:
            raise ArchiveError(f"cannot open archive {self.url}: {e}") from None
        self.fs: Any = fs
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

    @_storage_errors
    def _create(self, name: str, data: bytes, md5: str | None = None) -> str | None:
        """Create object ``name`` whole or not at all. Raises ``FileExistsError`` if it exists.

        Returns the ETag the store answered (S3; ``None`` elsewhere). With ``md5`` (the hex MD5
        of ``data``) and a single-request upload, S3 is sent ``Content-MD5`` and refuses a body
        that does not match it.
        """
        path = self.path(name)
        if self._kind == "s3":
            if len(data) >= MAX_PUT_BYTES:
                raise ArchiveUnsupportedError(
                    f"{self.object_url(name)}: {len(data)} bytes, more than one PUT may carry "
                    f"({MAX_PUT_BYTES} bytes); walship never creates an object by a multipart "
                    "upload (its conditional create is not honoured everywhere): use smaller "
                    "segments (rotation.max_segment_bytes)"
                )
            checked = not self._conditional_create_holds()
            if checked and self._read_small(name, 0) is not None:
                raise FileExistsError(errno.EEXIST, "object exists", path)
            out = self._s3_create(path, data, md5)
            if checked:
                back = self._read_small(name, len(data))
                if back != data:
                    raise ArchiveConflictError(
                        f"{self.object_url(name)} does not read back as written (another writer "
                        "may have created it at the same time); refusing to count it"
                    )
            etag = out.get("ETag") if isinstance(out, Mapping) else None
            return str(etag).strip('"').lower() if etag else None
        if self._kind == "local":
            _local_create(path, data)
        elif self._kind == "memory":
            with _MEMORY_LOCK:
                if self.fs.exists(path):
                    raise FileExistsError(errno.EEXIST, "object exists", path)
                self.fs.pipe_file(path, data)
        else:
            if self.fs.exists(path):
                raise FileExistsError(errno.EEXIST, "object exists", path)
            tmp = f"{self.root}/{TEMP_PREFIX}{secrets.token_hex(8)}-{name}"
            try:
                self.fs.pipe_file(tmp, data)
                if self.fs.exists(path):
                    raise FileExistsError(errno.EEXIST, "object exists", path)
                self.fs.mv(tmp, path)
            finally:
                with contextlib.suppress(OSError):
                    if self.fs.exists(tmp):
                        self.fs.rm_file(tmp)
        return None

    def _s3_create(self, path: str, data: bytes, md5: str | None = None) -> Any:
        """One conditional PUT (``If-None-Match: *``, and ``Content-MD5`` with ``md5``), never a
        multipart upload; the server's answer. Raises ``FileExistsError`` when the server
        refuses the create (by status and error code)."""
        extra: dict[str, Any] = {}
        if md5 is not None:
            extra["ContentMD5"] = base64.b64encode(bytes.fromhex(md5)).decode()
        try:
            return self.fs.pipe_file(path, data, mode="create", chunksize=MAX_PUT_BYTES, **extra)
        except FileExistsError:
            raise
        except OSError as e:
            if is_refused_create(e):
                raise FileExistsError(errno.EEXIST, "object exists", path) from e
            raise

    def _conditional_create_holds(self) -> bool:
        """Whether the S3 server honours ``If-None-Match: *`` on PUT: probed once per endpoint
        and bucket in this process (the answer is kept; a failed probe is not). Where it does
        not: ``False`` in ``checked`` mode, else :class:`ArchiveUnsupportedError`."""
        endpoint = getattr(self.fs, "endpoint_url", None) or self.fs.client_kwargs.get(
            "endpoint_url", "aws"
        )
        key = (str(endpoint), self.root.partition("/")[0])
        with _probe_locks_lock:
            lock = _probe_locks.setdefault(key, threading.Lock())
        with lock:
            holds = _probed.get(key)
            if holds is None:
                holds = _probed[key] = self._probe()
        if holds or self.conditional_create == "checked":
            return holds
        raise ArchiveUnsupportedError(
            f"{self.url}: the server at {endpoint} does not honour If-None-Match: * on PUT (a "
            "second create of a probe object was not refused), so an archived segment could be "
            "overwritten; not archiving. Set archive.conditional_create: checked to archive "
            "with a check before and after each upload (weaker: two writers racing can still "
            "overwrite each other)"
        )

    def _probe(self) -> bool:
        """Create a probe object twice with ``If-None-Match: *``: True when the second create
        is refused. The probe is removed again (a leftover is a temporary object, which every
        listing skips)."""
        path = f"{self.root}/{TEMP_PREFIX}probe-{secrets.token_hex(8)}"
        try:
            try:
                self._s3_create(path, _PROBE_BODY)
            except FileExistsError:
                return True  # a retry below us met our own first create: the name is fresh
            try:
                self._s3_create(path, _PROBE_BODY)
            except FileExistsError:
                return True
            return False
        finally:
            with contextlib.suppress(Exception):
                self.fs.rm_file(path)

    def _remove_own(self, name: str) -> None:
        """Best effort: remove object ``name``, which this put created and which did not verify,
        so that a retry can upload it again (left in place, it would block every retry)."""
        with contextlib.suppress(Exception):
            self.fs.rm_file(self.path(name))

    @_storage_errors
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

    @_storage_errors
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

    @_storage_errors
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

    @_storage_errors
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

    @_storage_errors
    def list(self) -> ArchiveListing:
        """One LIST of the archive prefix, every name validated (see :class:`ArchiveListing`).

        Raises:
            OSError: the store failed.
        """
        listing = ArchiveListing()
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
        prefix = self.root + "/"
        for e in entries:
            raw = str(e.get("name", ""))
            full = raw.rstrip("/")
            if not full.startswith(prefix):
                if full == self.root:
                    if e.get("type") == "directory" and raw.endswith("/"):
                        # S3 lists keys "<prefix>//..." as a directory with an empty name
                        listing.rejected.append(
                            ("/", "object '/...' refused: not a plain name (an absolute path)")
                        )
                    continue
                listing.rejected.append((full, f"object {full!r} refused: outside {self.url}"))
                continue
            rel = full[len(prefix) :]
            if rel.startswith(TEMP_PREFIX):
                listing.temporary.append(rel)
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
            limit = MAX_MANIFEST_BYTES if parsed.kind == "manifest" else self.max_object_bytes
            if size > limit:
                listing.rejected.append(
                    (rel, f"object {rel!r} refused: {size} bytes, more than the {limit} limit")
                )
                continue
            if parsed.kind == "manifest":
                listing.manifests[parsed.segment_seq] = size
            else:
                listing.objects.setdefault(parsed.segment_seq, {})[parsed.compression] = size
        return listing

    @_storage_errors
    def get(self, manifest: SegmentManifest) -> bytes:
        """The raw bytes of the segment ``manifest`` describes, verified against it.

        Raises:
            ArchiveMissingError: the object is not there.
            ArchiveIntegrityError: it is partial, larger, or altered (BLAKE3).
        """
        data = self._check(manifest, keep=True)
        assert data is not None
        return data

    @_storage_errors
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
