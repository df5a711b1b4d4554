"""Creating an archive object whole or not at all, and never over an existing one: the one
job of :class:`ObjectCreator`, for each kind of filesystem (S3: one conditional PUT, and only
where a probe showed the server honours ``If-None-Match: *``; ``file://``: a hard link;
``memory://``: under one lock; elsewhere: a temporary object moved into place). The promises are
the package's (:mod:`walship.archive`); :class:`~walship.archive.objects.ArchiveStore` turns the
storage libraries' errors into walship's around every call.
"""

from __future__ import annotations

import base64
import contextlib
import errno
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from typing import Any

from walship.archive.failures import is_refused_create
from walship.archive.names import TEMP_PREFIX
from walship.backends.platform import OPEN_FLAGS, fsync_dir, write_all
from walship.errors import ArchiveConflictError, ArchiveUnsupportedError

MEMORY_LOCK = threading.Lock()  # fsspec's memory store is one global dict
MAX_PUT_BYTES = 5 * 1024**3
"""S3's limit of one PUT. An object is always created by one PUT (the conditional create is
not honoured on CompleteMultipartUpload by every server: radosgw ignores it there), so a larger
one is refused. s3fs sends less than ``min(5 GiB, 2 * chunksize)`` as one PUT."""
_PROBE_BODY = b"walship: does this server honour If-None-Match: * on PUT?\n"
_probed: dict[tuple[str, str], bool] = {}
_probe_locks: dict[tuple[str, str], threading.Lock] = {}
_probe_locks_lock = threading.Lock()


def local_create(path: str, data: bytes) -> None:
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


class ObjectCreator:
    """Creates objects under ``root`` of filesystem ``fs`` (of ``kind`` ``s3``, ``local``,
    ``memory`` or ``generic``); ``url`` names them in messages, ``conditional_create`` is the
    mode (``required`` or ``checked``), ``read_small(name, limit)`` reads an object back (or
    ``None``). Thread-safe; raises what the filesystem raises (the caller translates it)."""

    def __init__(
        self,
        fs: Any,
        root: str,
        url: str,
        kind: str,
        conditional_create: str,
        read_small: Callable[[str, int], bytes | None],
    ) -> None:
        self.fs = fs
        self.root = root
        self.url = url
        self.kind = kind
        self.conditional_create = conditional_create
        self._read_small = read_small

    def create(self, name: str, data: bytes, md5: str | None = None) -> str | None:
        """Create object ``name`` whole or not at all. Raises ``FileExistsError`` if it exists.

        Returns the ETag the store answered (S3; ``None`` elsewhere). With ``md5`` (the hex MD5
        of ``data``) and a single-request upload, S3 is sent ``Content-MD5`` and refuses a body
        that does not match it.
        """
        path = f"{self.root}/{name}"
        if self.kind == "s3":
            if len(data) >= MAX_PUT_BYTES:
                raise ArchiveUnsupportedError(
                    f"{self.url}/{name}: {len(data)} bytes, more than one PUT may carry "
                    f"({MAX_PUT_BYTES} bytes); walship never creates an object by a multipart "
                    "upload (its conditional create is not honoured everywhere): use smaller "
                    "segments (rotation.max_segment_bytes)"
                )
            checked = not self.conditional_create_holds()
            if checked and self._read_small(name, 0) is not None:
                raise FileExistsError(errno.EEXIST, "object exists", path)
            out = self._s3_create(path, data, md5)
            if checked:
                back = self._read_small(name, len(data))
                if back != data:
                    raise ArchiveConflictError(
                        f"{self.url}/{name} does not read back as written (another writer "
                        "may have created it at the same time); refusing to count it"
                    )
            etag = out.get("ETag") if isinstance(out, Mapping) else None
            return str(etag).strip('"').lower() if etag else None
        if self.kind == "local":
            local_create(path, data)
        elif self.kind == "memory":
            with MEMORY_LOCK:
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

    def conditional_create_holds(self) -> bool:
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
