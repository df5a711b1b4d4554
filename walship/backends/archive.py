"""The archive: closed segments in object storage, over any fsspec URL.

Layout under the archive URL (``s3://bucket/prefix``, ``file:///path``, ``memory://name``, ...),
one flat namespace, three kinds of object per segment::

    segment_0000000000000007.aedbwal                  the segment's raw bytes (compression none)
    segment_0000000000000007.aedbwal.zst              or the same, zstd-compressed
    segment_0000000000000007.aedbwal.manifest.json    its manifest (written last)

The manifest (:class:`SegmentManifest`) holds the size and BLAKE3 of the **raw** segment bytes,
its header fields, first/last commit_seq and timestamps, and which object holds the bytes, so that
restore and verify can plan and check without downloading everything. A segment counts as
archived only once its manifest exists; the manifest is written only after the object was read
back and verified.

Promises of :meth:`ArchiveStore.put`:

* A segment object appears whole or not at all: S3 PUTs are atomic; ``file://`` writes a
  temporary file, fsyncs it and hard-links it into place; ``memory://`` assigns the whole value;
  other stores upload a temporary object and move it into place.
* An existing object is never overwritten with different content: S3 uses a conditional create
  (``If-None-Match: *``), ``file://`` a link that fails if the name exists; other stores check
  first (a race between two writers of the same segment remains possible there).
* Uploading the same segment twice is harmless: the second put verifies what is there and
  succeeds without writing.
* Every upload is verified against the local bytes (size and BLAKE3), by reading the object back:
  a 0-byte or partial object never counts.

Object names from a listing are trusted only in their exact forms above: anything else (``../x``,
absolute paths, directories, other suffixes, objects larger than the limit) is refused with an
:class:`~walship.backends.archive_errors.ArchiveNameError` and never downloaded or written.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, BinaryIO, TypeVar, cast

import fsspec
from blake3 import blake3 as Blake3

from walship.backends.archive_errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
    ArchiveReadOnlyError,
)
from walship.backends.base import SegmentFile, SegmentStore, StoreCapabilities
from walship.backends.memory import MemoryStore
from walship.backends.posix import fsync_dir, write_all
from walship.core.header import parse_segment_name, segment_name
from walship.core.recovery import scan_store

COMPRESSIONS = ("none", "zstd")
ZSTD_SUFFIX = ".zst"
MANIFEST_SUFFIX = ".manifest.json"
TEMP_PREFIX = ".walship-tmp-"
"""Temporary objects (``file://`` and generic stores) start with this; listings skip them."""
MAX_MANIFEST_BYTES = 64 * 1024
DEFAULT_MAX_OBJECT_BYTES = 4 * 1024**3
"""Objects larger than this are refused (a segment is 64 MiB by default, plus one batch)."""
MANIFEST_FORMAT = "walship-segment-manifest"
MANIFEST_VERSION = 1
_CHUNK = 1024 * 1024
_MAX_NAME = 100
_MEMORY_LOCK = threading.Lock()  # fsspec's memory store is one global dict


# --- credentials ----------------------------------------------------------------------------

_SECRET_OPTION = ("key", "secret", "token", "password", "passw", "credential", "auth")


def redact_url(url: str) -> str:
    """``url`` with the password of a ``scheme://user:password@host/...`` replaced by ``***``."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    userinfo, _, host = netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    return f"{scheme}://{user}{':***' if colon else ''}@{host}{slash}{path}"


def _secret_values(url: str, storage_options: Mapping[str, Any]) -> list[str]:
    """The credentials in ``url`` and ``storage_options`` (string values of keys that look
    secret, at any depth), longest first."""
    found: list[str] = []
    netloc = url.partition("://")[2].partition("/")[0]
    if "@" in netloc:
        password = netloc.rpartition("@")[0].partition(":")[2]
        if password:
            found.append(password)

    def walk(options: Mapping[str, Any]) -> None:
        for k, v in options.items():
            if isinstance(v, Mapping):
                walk(v)
            elif isinstance(v, str) and len(v) >= 4 and any(s in k.lower() for s in _SECRET_OPTION):
                found.append(v)

    walk(storage_options)
    return sorted(set(found), key=len, reverse=True)


_STORAGE_LIBRARIES = frozenset(
    {"botocore", "aiobotocore", "aiohttp", "s3fs", "urllib3", "requests", "gcsfs", "google"}
    | {"adlfs", "azure", "paramiko", "fsspec"}
)
_F = TypeVar("_F", bound=Callable[..., Any])


def _from_storage_library(e: BaseException) -> bool:
    """Whether ``e`` is a storage library's error: its class is theirs, or it was raised in
    their code (botocore raises a plain ``ValueError`` for an invalid endpoint)."""
    if type(e).__module__.partition(".")[0] in _STORAGE_LIBRARIES:
        return True
    tb = e.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    module = str(tb.tb_frame.f_globals.get("__name__", "")) if tb is not None else ""
    return module.partition(".")[0] in _STORAGE_LIBRARIES


def _storage_errors(method: _F) -> _F:
    """Errors of the libraries under fsspec that are not ``OSError`` (botocore's
    ``EndpointConnectionError``, aiohttp's connection errors, ...) become ``OSError(EIO)``,
    credentials redacted: every caller of the archive handles ``OSError`` as "the store
    failed", and nothing else from below leaks out as a traceback."""

    @functools.wraps(method)
    def wrapper(self: ArchiveStore, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OSError, ArchiveError):
            raise
        except Exception as e:
            if not _from_storage_library(e):
                raise
            raise OSError(errno.EIO, self.redact(f"{type(e).__name__}: {e}")) from e

    return cast(_F, wrapper)


# --- names ----------------------------------------------------------------------------------


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


# --- manifests ------------------------------------------------------------------------------

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

        if len(data) > MAX_MANIFEST_BYTES:
            raise bad(f"larger than {MAX_MANIFEST_BYTES} bytes")
        try:
            doc = json.loads(data)
        except (ValueError, UnicodeDecodeError) as e:
            raise bad(f"not JSON ({e})") from None
        if not isinstance(doc, dict) or doc.get("format") != MANIFEST_FORMAT:
            raise bad(f"not a {MANIFEST_FORMAT} document")
        if doc.get("version") != MANIFEST_VERSION:
            raise bad(f"unsupported version {doc.get('version')!r}")
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
        return cls(name=name, compression=compression, stored_size=stored, **values)


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
    one = MemoryStore()  # scan_store is the one place that knows how to check a segment
    one.write_atomic(name, raw)
    scan = scan_store(one)
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
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o640)
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


def _is_precondition_failure(e: BaseException) -> bool:
    text = str(e)
    return "PreconditionFailed" in text or "pre-conditions you specified" in text


class ArchiveStore:
    """Closed segments in object storage at ``url`` (any fsspec URL). Thread-safe.

    Args:
        url: ``s3://bucket/prefix``, ``file:///path``, ``memory://name``, a local path, ...
        storage_options: handed to fsspec as they are (endpoint, credentials, ...).
        compression: ``none`` or ``zstd`` for new uploads (reading handles both).
        max_object_bytes: listed objects larger than this are refused.
    Raises:
        ArchiveError: the URL cannot be opened (unknown protocol, s3fs not installed, ...) or
            ``zstd`` was asked for without the zstandard package.
    """

    def __init__(
        self,
        url: str,
        storage_options: Mapping[str, Any] | None = None,
        *,
        compression: str = "none",
        max_object_bytes: int = DEFAULT_MAX_OBJECT_BYTES,
    ) -> None:
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
    def _create(self, name: str, data: bytes) -> None:
        """Create object ``name`` whole or not at all. Raises ``FileExistsError`` if it exists."""
        path = self.path(name)
        if self._kind == "s3":
            try:
                self.fs.pipe_file(path, data, mode="create")
            except FileExistsError:
                raise
            except OSError as e:
                if _is_precondition_failure(e):
                    raise FileExistsError(errno.EEXIST, "object exists", path) from e
                raise
        elif self._kind == "local":
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

    @_storage_errors
    def _read_small(self, name: str, limit: int) -> bytes | None:
        """Object ``name`` (at most ``limit + 1`` bytes read), or ``None`` if it is absent."""
        # a ranged GET: one request, no HEAD and no LIST (which open() would add on S3)
        try:
            return bytes(self.fs.cat_file(self.path(name), start=0, end=limit + 1))
        except FileNotFoundError:
            return None
        except OSError as e:
            if "range is not satisfiable" in str(e) or "InvalidRange" in str(e):
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
        try:
            f = self.fs.open(self.path(name), "rb")
        except FileNotFoundError:
            raise ArchiveMissingError(
                f"{self.object_url(name)} is missing from the archive", segment_name(seq)
            ) from None
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
        read back and checked (size and BLAKE3 of the raw bytes) before the manifest is written.

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
        stored = raw
        if manifest.compression == "zstd":
            stored = (
                _zstd()
                .ZstdCompressor(level=3, write_content_size=True, write_checksum=True)
                .compress(raw)
            )
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
            self._create(manifest.object, stored)
        except FileExistsError:
            uploaded = False
        try:
            self._check(manifest, keep=False, verb="is" if uploaded else "exists but is")
        except ArchiveMissingError:
            raise
        except ArchiveIntegrityError as e:
            if uploaded:
                raise ArchiveIntegrityError(f"upload did not verify: {e}", name) from None
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
        except FileNotFoundError:
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


# --- a read-only segment store over an archive ----------------------------------------------


class ArchiveReadStore(SegmentStore):
    """A read-only :class:`~walship.backends.base.SegmentStore` over an archive.

    ``list_names``, ``read`` and ``size`` work (objects are decompressed), so that
    ``walship.core.recovery.scan_store(ArchiveReadStore(url))`` verifies an archive: headers,
    frames and the chain through ``scan_store``; each segment's size and BLAKE3 against its
    manifest through ``read``, which raises :class:`ArchiveIntegrityError` (naming the segment)
    on a mismatch and :class:`ArchiveMissingError` when a manifest's object is gone. Every
    mutating method raises :class:`ArchiveReadOnlyError`.

    Raises (``list_names``):
        ArchiveNameError: the archive holds an object that is not a segment, manifest or
            temporary object (named).
    """

    capabilities = StoreCapabilities(durable=True, locking=False, persistent=True)

    def __init__(self, url: str, storage_options: dict[str, Any] | None = None) -> None:
        self.archive = ArchiveStore(url, storage_options)
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
