"""Keeping credentials out of what the archive says: URL passwords and secret storage options
are redacted from messages, and storage-library errors become one redacted
:class:`~walship.errors.ArchiveStorageError` (an ``OSError``) that names the
URL, the operation, the HTTP status and the error code (:mod:`.failures` reads them)."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable, Mapping
from typing import Any, NoReturn, TypeVar, cast

from walship.archive.failures import (
    describe_failure,
    is_expired_credentials,
    is_missing_bucket,
    server_answer,
)
from walship.errors import ArchiveError

# --- credentials ----------------------------------------------------------------------------

_SECRET_OPTION = ("key", "secret", "token", "password", "passw", "credential", "auth")


def redact_url(url: str, hidden: str | None = None) -> str:
    """``url`` with its credentials out of sight: the password of
    ``scheme://user:password@host/...`` replaced by ``***`` (``scheme://user:***@host/...``, what
    the archive shows in its messages, stats, events and reprs); given ``hidden``, the whole
    user-info replaced by it (the config's messages: ``scheme://<hidden>@host/...``). Only the
    host part is looked at: an ``@`` in the path is no user-info. Pure; never raises."""
    scheme, sep, rest = url.partition("://")
    netloc, slash, path = rest.partition("/")
    if not sep or "@" not in netloc:
        return url
    userinfo, _, host = netloc.rpartition("@")
    user, colon, _ = userinfo.partition(":")
    shown = hidden if hidden is not None else f"{user}{':***' if colon else ''}"
    return f"{scheme}://{shown}@{host}{slash}{path}"


def secret_values(url: str, storage_options: Mapping[str, Any]) -> list[str]:
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


def storage_errors(method: _F) -> _F:
    """Errors of the storage libraries under fsspec (a server's error answer, botocore's
    ``NoCredentialsError`` or ``EndpointConnectionError``, ...) become one
    :class:`ArchiveStorageError` naming the archive URL, the operation, the HTTP status and the
    error code, credentials redacted (a missing bucket: :class:`ArchiveBucketMissingError`).
    Every caller handles ``OSError`` as "the store failed", and nothing from below leaks out
    as a traceback. Passed through as they are: walship's own errors, ``FileExistsError`` (a
    refused create) and ``FileNotFoundError`` of a missing object. The decorated method is
    called on an object with ``url``, ``redact`` and, optionally, ``anon``.

    Expired credentials (:func:`~walship.archive.failures.is_expired_credentials`): when the
    object has ``renew_credentials(generation)`` and ``credentials_generation``, it is asked
    for fresh ones and the call is made once more at once (the innermost decorated call
    retries: an outer one sees walship's error and lets it pass); a second refusal is raised
    as any other, for the caller's retry policy."""
    operation = method.__name__.strip("_")

    @functools.wraps(method)
    def wrapper(self: Any, *args: Any, **kwargs: Any) -> Any:
        generation = getattr(self, "credentials_generation", None)
        try:
            return method(self, *args, **kwargs)
        except (ArchiveError, FileExistsError):
            raise
        except Exception as e:
            if generation is None or not is_expired_credentials(e):
                raise_translated(self, e, operation)
            self.renew_credentials(generation)
        try:
            return method(self, *args, **kwargs)
        except (ArchiveError, FileExistsError):
            raise
        except Exception as e:
            raise_translated(self, e, operation)

    return cast(_F, wrapper)


def raise_translated(owner: Any, e: Exception, operation: str) -> NoReturn:
    """Raise what :func:`storage_errors` lets out for ``e``, an error of ``operation`` on
    ``owner``'s archive: ``e`` itself, or walship's redacted error for it (from ``e``)."""
    if isinstance(e, FileNotFoundError) and not is_missing_bucket(e):
        if e.strerror or server_answer(e) is None:
            raise e
        # s3fs's FileNotFoundError(None) of a 404 with an empty message: name it
        failure = describe_failure(e, owner.url, operation)
        raise FileNotFoundError(errno.ENOENT, str(failure), e.filename) from e
    answered = server_answer(e) is not None
    if not answered and (isinstance(e, OSError) or not _from_storage_library(e)):
        raise e
    failure = describe_failure(e, owner.url, operation, bool(getattr(owner, "anon", False)))
    raise type(failure)(
        owner.redact(str(failure)), failure.status, failure.code, failure.operation
    ) from e
