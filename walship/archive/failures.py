"""What an object store answered, read from the error the storage library raised: the one place
that classifies storage errors by HTTP status and error code, never by message text (Ceph
radosgw sends empty ``<Message>`` elements; s3fs then raises ``OSError(22, None)`` and keeps the
botocore ``ClientError``, which holds the answer, as its ``__cause__``)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from walship.errors import ArchiveBucketMissingError, ArchiveStorageError

REFUSED_CREATE_CODES = frozenset({"PreconditionFailed", "ConditionalRequestConflict"})
"""A create with ``If-None-Match: *`` refused because the object exists (AWS and radosgw answer
412 ``PreconditionFailed``; AWS answers 409 ``ConditionalRequestConflict`` to a create racing
another one)."""

EXPIRED_CREDENTIALS_CODES = frozenset(
    {"ExpiredToken", "InvalidToken", "TokenRefreshRequired", "ExpiredTokenException"}
)
"""The store refused temporary credentials that expired (or were replaced): fresh ones, from
the environment, the profile or the instance metadata, may succeed at once."""

_HINTS = {
    "ExpiredToken": "the temporary credentials expired; renewed and retried",
    "InvalidToken": "the session token is not valid (expired or replaced); renewed and retried",
    "TokenRefreshRequired": "the session token must be refreshed; renewed and retried",
    "ExpiredTokenException": "the temporary credentials expired; renewed and retried",
    "SignatureDoesNotMatch": "the secret key does not match the access key",
    "InvalidAccessKeyId": "the server does not know this access key",
    "AccessDenied": "these credentials may not do this",
    "QuotaExceeded": "the bucket's or the user's quota is used up; retried, nothing is lost",
    "BadDigest": "the body did not match its Content-MD5 (damaged in transit); retried",
    "SlowDown": "the server asks for fewer requests; retried",
    "ServiceUnavailable": "the server is unavailable; retried",
    "InternalError": "the server failed; retried",
    "RequestTimeTooSkewed": "this machine's clock differs too much from the server's",
    "EntityTooLarge": "the object is larger than the server accepts in one request",
}
_NO_CREDENTIALS_HINT = (
    "give key and secret in storage_options, the AWS_* environment or ~/.aws, "
    "or anon=true for a public bucket"
)


@dataclass(frozen=True)
class ServerAnswer:
    """An error answer of the server: HTTP status (``None`` when unknown), error code, the
    operation that got it (``PutObject``...) and the message (often empty)."""

    status: int | None
    code: str
    operation: str
    message: str
    bucket: str


def server_answer(e: BaseException) -> ServerAnswer | None:
    """The server's answer behind ``e`` (``e`` itself or any exception it was raised from, as
    botocore's ``ClientError`` under s3fs's ``OSError``), or ``None`` when there was none."""
    seen: set[int] = set()
    cur: BaseException | None = e
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        response = getattr(cur, "response", None)
        if isinstance(response, Mapping) and isinstance(response.get("Error"), Mapping):
            error = response["Error"]
            meta = response.get("ResponseMetadata")
            status = meta.get("HTTPStatusCode") if isinstance(meta, Mapping) else None
            return ServerAnswer(
                int(status) if isinstance(status, int) else None,
                str(error.get("Code") or ""),
                str(getattr(cur, "operation_name", "") or ""),
                str(error.get("Message") or ""),
                str(error.get("BucketName") or ""),
            )
        cur = cur.__cause__ or cur.__context__
    return None


def is_refused_create(e: BaseException) -> bool:
    """Whether ``e`` is a conditional create the server refused because the object exists."""
    answer = server_answer(e)
    return answer is not None and (answer.code in REFUSED_CREATE_CODES or answer.status == 412)


def is_expired_credentials(e: BaseException) -> bool:
    """Whether ``e`` is the server refusing expired (or replaced) temporary credentials: an
    error code of :data:`EXPIRED_CREDENTIALS_CODES` in a 400, 401 or 403 answer (or one whose
    status is unknown)."""
    answer = server_answer(e)
    return (
        answer is not None
        and answer.code in EXPIRED_CREDENTIALS_CODES
        and answer.status in (None, 400, 401, 403)
    )


def is_unsatisfiable_range(e: BaseException) -> bool:
    """Whether ``e`` is a ranged GET refused because the object is empty (416
    ``InvalidRange``)."""
    answer = server_answer(e)
    return answer is not None and (answer.code == "InvalidRange" or answer.status == 416)


def is_missing_bucket(e: BaseException) -> bool:
    """Whether ``e`` says the bucket itself does not exist (not just the object)."""
    if isinstance(e, ArchiveBucketMissingError):
        return True
    answer = server_answer(e)
    return answer is not None and answer.code == "NoSuchBucket"


def describe_failure(
    e: BaseException, url: str, operation: str, anon: bool = False
) -> ArchiveStorageError:
    """One error for ``e``, a failed request of ``operation`` on archive ``url``, naming the
    URL, the operation, the HTTP status and the error code, with what it means. The caller
    redacts credentials from the message (none of the parts above holds one)."""
    answer = server_answer(e)
    if answer is None:
        kind = type(e).__name__
        text = (e.strerror if isinstance(e, OSError) else None) or str(e) or kind
        if kind == "NoCredentialsError":
            text = f"{kind}: {text} ({_NO_CREDENTIALS_HINT})"
        elif not isinstance(e, OSError) or not text.startswith(kind):
            text = f"{kind}: {text}"
        return ArchiveStorageError(f"{url}: {operation} failed: {text}", None, "", operation)
    op = answer.operation or operation
    status = f"HTTP {answer.status}" if answer.status is not None else "an error"
    code = answer.code or "no error code"
    if answer.code == "NoSuchBucket":
        bucket = answer.bucket or url.partition("://")[2].partition("/")[0]
        return ArchiveBucketMissingError(
            f"{url}: the bucket {bucket!r} does not exist ({op}: {status} NoSuchBucket)",
            answer.status,
            answer.code,
            op,
        )
    hint = _HINTS.get(answer.code, "")
    if anon and answer.code in ("AccessDenied", "AllAccessDisabled"):
        hint = "anonymous access (anon=true) was refused; give credentials"
    message = f"; the server says: {answer.message}" if answer.message else ""
    return ArchiveStorageError(
        f"{url}: {op} refused: {status} {code}{f' ({hint})' if hint else ''}{message}",
        answer.status,
        answer.code,
        op,
    )
