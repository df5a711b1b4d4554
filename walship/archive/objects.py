"""The archive store: one fsspec URL holding closed segments (see the package docstring for
its promises): put and verify, stat, list, get. Creating an object is :mod:`.create`'s job,
classifying a listing :mod:`.listing`'s, what an object's bytes say :mod:`.digest`'s, how a
segment and its manifest are put :mod:`.segment_put`'s."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Concatenate, ParamSpec, TypeVar

import fsspec
from blake3 import blake3 as Blake3
from fsspec.registry import known_implementations

from walship.archive.create import ObjectCreator
from walship.archive.credentials import redact_url, secret_values, storage_errors
from walship.archive.digest import (
    Digest,
    check_digest,
    digest_bytes,
    digest_sealed,
    digest_stream,
    zstd,
)
from walship.archive.failures import (
    is_missing_bucket,
    is_unsatisfiable_range,
)
from walship.archive.listing import ArchiveListing
from walship.archive.manifest import SegmentManifest
from walship.archive.names import (
    COMPRESSIONS,
    DEFAULT_MAX_OBJECT_BYTES,
    MAX_MANIFEST_BYTES,
    manifest_name,
    object_name,
    parse_object_name,
)
from walship.archive.sealing import Keyring, Seal, no_keyring
from walship.archive.settings import CONDITIONAL_CREATE
from walship.core.header import parse_segment_name, segment_name
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
)

logger = logging.getLogger("walship.archive")

Offload = Callable[[str, tuple[Any, ...], dict[str, Any]], Any]
"""Runs ``ArchiveStore.<method>(*args, **kwargs)`` elsewhere (the upload process) and returns
its result or raises its error: see :meth:`ArchiveStore.offload`."""

OFFLOADABLE = frozenset(
    {
        "read_object",
        "stat",
        "remove_object",
        "create_part_object",
        "create_sealed_part",
        "prepare_create",
    }
)
"""The methods :meth:`ArchiveStore.offload` sends elsewhere: the requests a log's own
background threads make while it appends (the fence's GET, the predecessor's manifest, live
shipping's parts)."""

_P = ParamSpec("_P")
_R = TypeVar("_R")


def _offloadable(
    method: Callable[Concatenate[ArchiveStore, _P], _R],
) -> Callable[Concatenate[ArchiveStore, _P], _R]:
    """Run ``method`` through the store's :meth:`~ArchiveStore.offload` target when it has
    one, else here."""
    name = method.__name__
    assert name in OFFLOADABLE

    @functools.wraps(method)
    def wrapper(self: ArchiveStore, /, *args: _P.args, **kwargs: _P.kwargs) -> _R:
        if self._offload is not None:
            return self._offload(name, args, kwargs)  # type: ignore[no-any-return]
        return method(self, *args, **kwargs)

    return wrapper


@dataclass(frozen=True)
class PutResult:
    """What :meth:`ArchiveStore.put` did."""

    manifest: SegmentManifest
    uploaded: bool
    """False when the archive held the segment already (an idempotent re-put)."""
    url: str
    """The URL of the object holding the segment."""


# --- the store ------------------------------------------------------------------------------


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
        keyring: the encryption keys (:mod:`walship.archive.sealing`): new objects are sealed
            under its current key (when it has one), sealed objects opened under theirs.
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
        keyring: Keyring | None = None,
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
            zstd()
        if not url:
            raise ArchiveError("the archive URL is empty")
        self.url = redact_url(url.rstrip("/") or url)  # shown in messages, stats, events
        self._secrets = secret_values(url, storage_options or {})
        self.compression = compression
        self.keyring = keyring
        self.writer_epoch = 0
        """The epoch :meth:`put` writes into segment manifests (the writer's, set by its
        :class:`~walship.archive.epoch.Fence`; 0: before any takeover)."""
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
        self.overlay: dict[int, bytes] = {}
        """Segments assembled from live-shipped parts (:func:`walship.archive.parts.attach_tail`,
        already checked), served by :meth:`get_unverified` as if they were objects."""
        self._offload: Offload | None = None

    def offload(self, call: Offload | None) -> None:
        """From now on, the methods in :data:`OFFLOADABLE` run as ``call(method, args,
        kwargs)`` (``None``: here again): the upload process
        (:func:`walship.archive.upload_process.offload`) runs them on its own store of the
        same URL and options, so that their Python work (botocore's signing, aiohttp, s3fs's
        event loop, the MD5 of a part) never holds this process's interpreter lock while an
        appender waits for it. Same results, same errors (rebuilt: an ``OSError`` when that
        process is gone). Any thread."""
        self._offload = call

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
    def source(self) -> tuple[str, dict[str, Any]]:
        """The URL and storage options this store was built from (credentials included: never
        log or show them), to build the same store in another process."""
        url, options = self._source
        return url, dict(options)

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

    def etag_md5(self, data: bytes) -> str | None:
        """The MD5 of ``data`` an S3 store's ETag of its single-request PUT carries (equal:
        the object is verified without reading it back); ``None`` elsewhere."""
        return hashlib.md5(data, usedforsecurity=False).hexdigest() if self._kind == "s3" else None

    # --- low-level object I/O -----------------------------------------------------------

    @storage_errors
    def create(self, name: str, data: bytes, md5: str | None = None) -> str | None:
        """:meth:`ObjectCreator.create` of object ``name`` (validated first), storage errors
        turned into walship's: the conditional create, unverified (``md5``: what an S3 ETag
        of ``data`` must say; returns the ETag).

        Raises:
            FileExistsError: the object exists (nothing was written).
            OSError: the store failed.
        """
        self.path(name)
        return self._creator.create(name, data, md5)

    def remove_own(self, name: str) -> None:
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
        self,
        name: str,
        compression: str,
        max_stored: int,
        max_raw: int,
        keep: bool,
        seal: Seal | None = None,
    ) -> Digest:
        """Stream object ``name``: its stored size, raw size and raw BLAKE3 (and raw bytes when
        ``keep``), never reading more than ``max_stored + 1`` stored or ``max_raw + 1`` raw bytes.

        Raises:
            ArchiveMissingError: the object does not exist.
            ArchiveIntegrityError: the object does not decompress (or, sealed, does not open).
            ArchiveKeyError: it is sealed under a key this store was not given.
        """
        seq = parse_object_name(name).segment_seq
        missing = ArchiveMissingError(
            f"{self.object_url(name)} is missing from the archive", segment_name(seq)
        )
        if seal is not None:
            return self._digest_sealed(name, compression, max_stored, max_raw, seal, missing)
        if keep and compression == "none":
            # the caller keeps the bytes anyway: one ranged GET, no HEAD, no chunked reads
            data = self._read_small(name, min(max_stored, max_raw))
            if data is None:
                raise missing
            return digest_bytes(data, min(max_stored, max_raw))
        try:
            f = self.fs.open(self.path(name), "rb")
        except FileNotFoundError as e:
            if is_missing_bucket(e):
                raise
            raise missing from None
        with f:
            return digest_stream(f, compression, max_stored, max_raw, keep, self._undecodable(name))

    def _undecodable(self, name: str) -> Callable[[Exception], ArchiveIntegrityError]:
        """The error of object ``name`` that does not decompress."""

        def error(e: Exception) -> ArchiveIntegrityError:
            return ArchiveIntegrityError(
                f"{self.object_url(name)} does not decompress: {e}",
                segment_name(parse_object_name(name).segment_seq),
            )

        return error

    def _digest_sealed(
        self,
        name: str,
        compression: str,
        max_stored: int,
        max_raw: int,
        seal: Seal,
        missing: ArchiveMissingError,
    ) -> Digest:
        """:meth:`_digest` of a sealed object: AES-GCM opens only the whole object, so it is
        read whole (one ranged GET), opened, then decompressed."""
        if self.keyring is None:
            raise no_keyring(self.object_url(name), seal.key_id)
        stored = self._read_small(name, max_stored)
        if stored is None:
            raise missing
        return digest_sealed(
            stored,
            self.keyring,
            seal,
            name,
            compression,
            max_stored,
            max_raw,
            self._undecodable(name),
        )

    def check(self, m: SegmentManifest, keep: bool, verb: str = "is") -> bytes | None:
        """Verify the object of manifest ``m`` (stored size, raw size, raw BLAKE3).

        Raises:
            ArchiveMissingError / ArchiveIntegrityError: naming the object and what differs.
        """
        d = self._digest(m.object, m.compression, m.stored_size, m.size, keep, m.seal)
        return check_digest(d, m, self.object_url(m.object), verb)

    # --- other walship objects (checkpoints, prune markers) ------------------------------

    @storage_errors
    def create_object(self, name: str, data: bytes) -> None:
        """Create object ``name`` (a walship name, validated) holding ``data``, whole or not
        at all, never replacing what is there, and verify it: S3's ETag against the MD5 of
        ``data``, elsewhere (or when the ETag is no MD5) read back and compared. An object
        that does not verify is removed again.

        Raises:
            FileExistsError: the object exists (nothing was written).
            ArchiveIntegrityError: the object did not verify.
            OSError: the store failed.
        """
        self.path(name)
        md5 = self.etag_md5(data)
        etag = self._creator.create(name, data, md5)
        if md5 is not None and etag == md5:
            return
        back = self._read_small(name, len(data))
        if back is None or Blake3(back).digest() != Blake3(data).digest():
            self.remove_own(name)
            raise ArchiveIntegrityError(
                f"upload of {self.object_url(name)} did not verify (it reads back "
                f"{'as nothing' if back is None else f'as {len(back)} other bytes'})",
                name,
            )

    @_offloadable
    @storage_errors
    def read_object(self, name: str, limit: int) -> bytes | None:
        """Object ``name`` (a walship name, validated), at most ``limit + 1`` bytes of it
        (more than ``limit`` bytes: it is larger than the caller allows), or ``None`` when it
        is absent.

        Raises:
            OSError: the store failed.
        """
        self.path(name)
        return self._read_small(name, limit)

    @_offloadable
    @storage_errors
    def remove_object(self, name: str) -> bool:
        """Remove object ``name`` (a walship name, validated); False when it was not there.

        Raises:
            OSError: the store failed.
        """
        try:
            self.fs.rm_file(self.path(name))
        except FileNotFoundError as e:
            if is_missing_bucket(e):
                raise
            return False
        return True

    # --- the archive interface ----------------------------------------------------------

    @_offloadable
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
        from walship.archive.segment_put import put_segment

        return put_segment(self, name, raw, expected_blake3)

    @staticmethod
    def compress(raw: bytes, compression: str) -> bytes:
        """``raw`` as an object of ``compression`` stores it (``zstd``: with its content size
        and checksum; anything else: as it is)."""
        if compression != "zstd":
            return raw
        return bytes(
            zstd()
            .ZstdCompressor(level=3, write_content_size=True, write_checksum=True)
            .compress(raw)
        )

    def seal_bytes(self, name: str, data: bytes) -> tuple[bytes, Seal | None]:
        """What object ``name`` holding ``data`` stores: ``data`` sealed under the current key
        when this store has one (:meth:`~walship.archive.sealing.Keyring.seal`: the same bytes
        give the same object, so a retried create finds it in place), else ``data`` and no
        seal. Thread-safe.

        Raises:
            ConfigError: the cryptography package is missing.
        """
        if self.keyring is None or not self.keyring.current:
            return data, None
        return self.keyring.seal(data, name)

    def open_bytes(self, name: str, stored: bytes, seal: Seal | None) -> bytes:
        """The bytes sealed in ``stored`` (object ``name``; ``seal`` ``None``: not sealed, the
        bytes themselves). Thread-safe.

        Raises:
            ArchiveKeyError: its key (named) is not held, or no keys were given at all.
            ArchiveIntegrityError: it does not open (altered, or another key under that id).
        """
        if seal is None:
            return stored
        if self.keyring is None:
            raise no_keyring(self.object_url(name), seal.key_id)
        return self.keyring.open(stored, seal, name)

    def seal_found(self, name: str, data: bytes, stored: bytes | None) -> Seal | None:
        """The seal under which ``data`` became ``stored``, the object ``name`` an earlier run
        created (perhaps under a key that is no longer current) without its manifest; ``None``
        when no key this store holds gives those bytes (or there are none, or no keys).

        Raises:
            ConfigError: the cryptography package is missing.
        """
        if stored is None or self.keyring is None:
            return None
        return self.keyring.sealed_as(data, name, stored)

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
        data = self.check(manifest, keep=True)
        assert data is not None
        return data

    @storage_errors
    def get_unverified(
        self, segment_seq: int, compression: str = "none", seal: Seal | None = None
    ) -> bytes:
        """The raw bytes of a segment object, not checked against a manifest (one that has none,
        or whose every claim the caller checks itself); ``seal``: it is sealed so.

        Raises:
            ArchiveMissingError / ArchiveIntegrityError: absent, too large, or undecodable.
            ArchiveKeyError: sealed under a key this store was not given.
        """
        if compression == "none" and segment_seq in self.overlay:
            return self.overlay[segment_seq]
        name = object_name(segment_seq, compression)
        limit = self.max_object_bytes
        data: bytes | None
        if compression == "none" and seal is None:
            # the caller checks every claim, the BLAKE3 too: one ranged GET, nothing hashed
            data = self._read_small(name, limit)
            if data is None:
                raise ArchiveMissingError(
                    f"{self.object_url(name)} is missing from the archive",
                    segment_name(segment_seq),
                )
            too_large = len(data) > limit
        else:
            d = self._digest(name, compression, limit, limit, keep=True, seal=seal)
            data, too_large = d.data, d.too_large
        if too_large:
            raise ArchiveIntegrityError(
                f"{self.object_url(name)} is larger than {limit} bytes", segment_name(segment_seq)
            )
        assert data is not None
        return data

    # --- plain objects (parts of the active segment and their manifests) ----------------

    @_offloadable
    def create_part_object(self, name: str, data: bytes) -> bool:
        """Create object ``name`` (validated) holding ``data``: conditionally, like a segment
        (never over an existing object), and verified (the ETag against the MD5 on S3, else
        read back). True when created; False when the archive held exactly ``data`` already.

        Raises:
            ArchiveNameError: not a name walship writes.
            ArchiveConflictError: the archive holds different bytes under ``name``.
            ArchiveIntegrityError: the object did not verify (it was removed again).
            OSError: the store failed (retry).
        """
        try:
            self.create_object(name, data)
        except FileExistsError:
            if self.read_object(name, len(data)) == data:
                return False
            raise ArchiveConflictError(
                f"{self.object_url(name)} holds different content; refusing to overwrite"
            ) from None
        return True

    @_offloadable
    def create_sealed_part(self, name: str, data: bytes) -> Seal | None:
        """:meth:`create_part_object` of ``data`` as :meth:`seal_bytes` stores it; returns the
        seal of the object (``None``: in the clear). An object an earlier run left under
        ``name`` sealed from these same bytes under another key held (a key rotated since) is
        taken as it is, with its own seal.

        Raises:
            ArchiveConflictError: the archive holds other bytes under ``name``.
            ArchiveIntegrityError: the object did not verify (it was removed again).
            OSError: the store failed (retry).
        """
        stored, seal = self.seal_bytes(name, data)
        try:
            self.create_part_object(name, stored)
        except ArchiveConflictError:
            found = self.seal_found(name, data, self.read_object(name, len(stored)))
            if seal is None or found is None:
                raise
            return found
        return seal

    @_offloadable
    @storage_errors
    def prepare_create(self) -> None:
        """Find out now, not at the first create, whether the server honours the conditional
        create (S3: the probe of :class:`~walship.archive.create.ObjectCreator`, once per
        endpoint and bucket in this process); nothing elsewhere.

        Raises:
            ArchiveUnsupportedError: it does not, and ``conditional_create`` is ``required``.
            OSError: the store failed.
        """
        if self._kind == "s3":
            self._creator.conditional_create_holds()
