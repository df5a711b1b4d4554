"""Keeping credentials out of what the archive says: URL passwords and secret storage options
are redacted from messages, and storage-library errors become one redacted ``OSError``."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, cast

from walship.backends.archive_errors import ArchiveError

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
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except (OSError, ArchiveError):
            raise
        except Exception as e:
            if not _from_storage_library(e):
                raise
            raise OSError(errno.EIO, self.redact(f"{type(e).__name__}: {e}")) from e

    return cast(_F, wrapper)
