"""What real S3 servers do that moto does not, and what walship does about it (issue 11): errors
named by HTTP status and code, the conditional create probed and never sent on a multipart
upload, Content-MD5 checked, a half-done upload healed. Tests taking ``s3_target`` run on moto
and on Ceph radosgw; the others need radosgw's checks (credentials, Content-MD5)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from reliability.s3proxy import FaultProxy
from s3server import S3Bucket, closed_segments, moto_endpoint, new_bucket, radosgw_server

from walship.archive import ArchiveReadStore, ArchiveStore, create, manifest_name
from walship.core.scan import scan_store
from walship.errors import (
    ArchiveBucketMissingError,
    ArchiveConflictError,
    ArchiveStorageError,
    ArchiveUnsupportedError,
)

SEGMENTS = closed_segments(2)
NAMES = sorted(SEGMENTS)


def radosgw_bucket() -> S3Bucket:
    return new_bucket(radosgw_server())


# --- errors by status and code ---------------------------------------------------------------


def test_a_refused_create_is_recognised_by_status_and_code(s3_target: S3Bucket) -> None:
    """radosgw answers 412 with an empty <Message> (s3fs: OSError(22, None)): a re-put that
    meets its own earlier upload is still recognised as "exists" and succeeds."""
    archive = ArchiveStore(s3_target.url, s3_target.storage_options)
    name = NAMES[0]
    assert archive.put(name, SEGMENTS[name]).uploaded
    again = archive.put(name, SEGMENTS[name])
    assert not again.uploaded and again.manifest.size == len(SEGMENTS[name])


def test_an_object_without_its_manifest_is_healed(s3_target: S3Bucket) -> None:
    """A put that died between the object and its manifest: the next put verifies the object
    against the local bytes and writes the manifest; a different object is a conflict."""
    archive = ArchiveStore(s3_target.url, s3_target.storage_options)
    name, other = NAMES
    s3_target.put(name, SEGMENTS[name])  # the object alone, as after a SIGKILL
    result = archive.put(name, SEGMENTS[name])
    assert not result.uploaded
    assert manifest_name(int(name[8:24])) in s3_target.names()
    assert archive.stat(name) == result.manifest
    s3_target.put(other, SEGMENTS[name])  # a foreign object under the other name
    with pytest.raises(ArchiveConflictError, match="refusing to overwrite"):
        archive.put(other, SEGMENTS[other])
    assert s3_target.get(other) == SEGMENTS[name]


def test_a_missing_bucket_is_named_as_one(s3_target: S3Bucket) -> None:
    url = f"s3://{s3_target.bucket}-gone/wal"
    archive = ArchiveStore(url, s3_target.storage_options)
    for call in (lambda: archive.put(NAMES[0], SEGMENTS[NAMES[0]]), archive.list):
        with pytest.raises(ArchiveBucketMissingError) as e:
            call()
        text = str(e.value)
        assert url in text and f"bucket '{s3_target.bucket}-gone' does not exist" in text
        assert "404 NoSuchBucket" in text and e.value.code == "NoSuchBucket"
    with pytest.raises(ArchiveBucketMissingError):
        archive.stat(NAMES[0])  # never "not archived"
    with pytest.raises(ArchiveBucketMissingError):
        ArchiveReadStore(url, s3_target.storage_options).list_names()


def assert_named(e: ArchiveStorageError, url: str, code: str, status: int, secret: str) -> None:
    text = str(e)
    assert url in text and code in text and f"HTTP {status}" in text, text
    assert e.code == code and e.status == status and e.operation
    assert secret not in text and "None" not in text.replace("NoSuch", "")


def test_wrong_credentials_are_named_on_radosgw() -> None:
    bucket = radosgw_bucket()
    secret = "walship-wrong-secret-0123456789"
    options = {**bucket.storage_options, "secret": secret}
    archive = ArchiveStore(bucket.url, options)
    for call in (lambda: archive.put(NAMES[0], SEGMENTS[NAMES[0]]), archive.list):
        with pytest.raises(ArchiveStorageError) as e:
            call()
        assert_named(e.value, bucket.url, "SignatureDoesNotMatch", 403, secret)
        assert "secret key does not match" in str(e.value)
    options = {**bucket.storage_options, "key": "WALSHIPNOSUCHKEY0000"}
    with pytest.raises(ArchiveStorageError) as e:
        ArchiveStore(bucket.url, options).list()
    assert_named(e.value, bucket.url, "InvalidAccessKeyId", 403, bucket.server.secret_key)  # type: ignore[attr-defined]


def test_anonymous_access_refused_is_named_on_radosgw() -> None:
    bucket = radosgw_bucket()
    options = {"endpoint_url": bucket.server.endpoint, "anon": True, "skip_instance_cache": True}
    with pytest.raises(ArchiveStorageError) as e:
        ArchiveStore(bucket.url, options).put(NAMES[0], SEGMENTS[NAMES[0]])
    assert_named(e.value, bucket.url, "AccessDenied", 403, "anything")
    assert "anonymous access (anon=true) was refused" in str(e.value)


def test_missing_credentials_name_the_url(monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(k, raising=False)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    bucket = new_bucket(moto_endpoint())
    options = {"endpoint_url": bucket.server.endpoint, "skip_instance_cache": True}
    with pytest.raises(ArchiveStorageError) as e:
        ArchiveStore(bucket.url, options).list()
    text = str(e.value)
    assert bucket.url in text and "NoCredentialsError: Unable to locate credentials" in text
    assert "anon=true" in text and e.value.status is None


# --- Content-MD5 -----------------------------------------------------------------------------


def test_radosgw_refuses_a_wrong_content_md5_and_takes_walships() -> None:
    """So a wrong MD5 in walship would fail the suite: radosgw checks it (moto does not)."""
    bucket = radosgw_bucket()
    client = bucket.server.client()
    body = b"walship content-md5 check"
    wrong = base64.b64encode(hashlib.md5(body + b"x").digest()).decode()
    from botocore.exceptions import ClientError

    with pytest.raises(ClientError) as e:
        client.put_object(Bucket=bucket.bucket, Key="wal/x", Body=body, ContentMD5=wrong)
    assert e.value.response["Error"]["Code"] == "BadDigest"
    assert e.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    proxy = FaultProxy(int(bucket.server.endpoint.rsplit(":", 1)[1])).start()
    try:
        options = proxy.storage_options(credentials=bucket.storage_options)
        archive = ArchiveStore(bucket.url, options)
        for name in NAMES:
            assert archive.put(name, SEGMENTS[name]).uploaded
        puts = [r for r in proxy.requests if r.method == "PUT" and r.path.endswith(NAMES[0])]
        assert len(puts) == 1
        assert (
            puts[0].headers["content-md5"]
            == base64.b64encode(hashlib.md5(SEGMENTS[NAMES[0]]).digest()).decode()
        )
    finally:
        proxy.stop()
    assert scan_store(ArchiveReadStore(bucket.url, bucket.storage_options)).ok


# --- the conditional create: probed, never on a multipart upload ------------------------------


def test_the_probe_finds_the_condition_honoured_and_cleans_up(s3_target: S3Bucket) -> None:
    proxy = FaultProxy(int(s3_target.server.endpoint.rsplit(":", 1)[1])).start()
    try:
        options = proxy.storage_options(credentials=s3_target.storage_options)
        for _ in range(2):  # the second store reuses the answer: one probe per bucket
            ArchiveStore(s3_target.url, options).put(NAMES[0], SEGMENTS[NAMES[0]])
        probes = [r for r in proxy.requests if "probe-" in r.path]
        assert [r.method for r in probes] == ["PUT", "PUT", "DELETE"]
        assert all(r.headers.get("if-none-match") == "*" for r in probes[:2])
    finally:
        proxy.stop()
    assert s3_target.names() == [NAMES[0], NAMES[0] + ".manifest.json"]


def ignoring_proxy(bucket: S3Bucket) -> FaultProxy:
    """moto behind a proxy that drops If-None-Match: a server that ignores the condition."""
    return FaultProxy(
        int(bucket.server.endpoint.rsplit(":", 1)[1]), strip_headers=("if-none-match",)
    ).start()


def test_a_server_ignoring_the_condition_is_refused_unless_checked() -> None:
    bucket = new_bucket(moto_endpoint())
    proxy = ignoring_proxy(bucket)
    try:
        options = proxy.storage_options(credentials=bucket.storage_options)
        name = NAMES[0]
        with pytest.raises(ArchiveUnsupportedError, match="does not honour If-None-Match") as e:
            ArchiveStore(bucket.url, options).put(name, SEGMENTS[name])
        assert "archive.conditional_create: checked" in str(e.value)
        assert bucket.names() == []  # nothing written, the probe removed
        checked = ArchiveStore(bucket.url, options, conditional_create="checked")
        assert checked.put(name, SEGMENTS[name]).uploaded
        assert not checked.put(name, SEGMENTS[name]).uploaded
        other = NAMES[1]
        bucket.put(other, b"planted")
        with pytest.raises(ArchiveConflictError):
            checked.put(other, SEGMENTS[other])
        assert bucket.get(other) == b"planted"  # looked before: never overwritten
    finally:
        proxy.stop()


def test_a_segment_larger_than_one_put_is_refused(
    s3_target: S3Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(create, "MAX_PUT_BYTES", 1000)
    name = NAMES[0]
    assert len(SEGMENTS[name]) >= 1000
    with pytest.raises(ArchiveUnsupportedError, match="more than one PUT may carry"):
        ArchiveStore(s3_target.url, s3_target.storage_options).put(name, SEGMENTS[name])
    assert s3_target.names() == []


def big_segment(mib: int) -> tuple[str, bytes]:
    """One closed segment of about ``mib`` MiB (frames of at most 32 MiB)."""
    import walship
    from walship.backends.memory import MemoryStore

    mem = MemoryStore()
    with walship.open(store=mem, entry_point_plugins=False, max_segment_bytes=4 << 30) as log:
        left = mib
        while left > 0:
            n = min(left, 32)
            log.append_batch([bytes([left % 251]) * (n << 20)])
            left -= n
        log.rotate()
    name = sorted(n for n in mem.files() if n.endswith(".aedbwal"))[0]
    return name, mem.files()[name]


def test_a_multipart_sized_segment_is_one_conditional_put_on_radosgw() -> None:
    """A 110 MiB segment: one PUT with If-None-Match and Content-MD5 (radosgw ignores the
    condition on CompleteMultipartUpload), so a second create is refused and verified; an
    unfinished multipart upload left under the same name (by an older version) breaks
    nothing."""
    bucket = radosgw_bucket()
    client = bucket.server.client()
    name, raw = big_segment(110)
    left = client.create_multipart_upload(Bucket=bucket.bucket, Key=bucket.key(name))
    client.upload_part(
        Bucket=bucket.bucket,
        Key=bucket.key(name),
        PartNumber=1,
        UploadId=left["UploadId"],
        Body=b"x" * (5 * 1024 * 1024),
    )
    proxy = FaultProxy(int(bucket.server.endpoint.rsplit(":", 1)[1])).start()
    try:
        options = proxy.storage_options(read_timeout=60, credentials=bucket.storage_options)
        archive = ArchiveStore(bucket.url, options)
        assert archive.put(name, raw).uploaded
        assert not archive.put(name, raw).uploaded
        puts = [r for r in proxy.requests if r.method in ("PUT", "POST") and name in r.path]
        assert [r.path.rpartition("/")[2] for r in puts] == [name, name + ".manifest.json", name]
        assert all(r.headers.get("if-none-match") == "*" for r in puts)
        assert "content-md5" in puts[0].headers
    finally:
        proxy.stop()
    assert bucket.get(name) == raw
    # walship started no multipart upload: only the old leftover is there
    uploads = client.list_multipart_uploads(Bucket=bucket.bucket).get("Uploads", [])
    assert [u["UploadId"] for u in uploads] == [left["UploadId"]]
    assert ArchiveStore(bucket.url, bucket.storage_options).get(archive.stat(name)) == raw  # type: ignore[arg-type]


def test_the_log_refuses_an_ignoring_server_and_archives_there_when_checked(
    tmp_path: Any,
) -> None:
    """Through the log and its upload process: refused (pending, the error names the option),
    then archived with ``conditional_create: checked``; a bad value is a one-line config error."""
    import walship
    from walship.errors import ConfigError

    bucket = new_bucket(moto_endpoint())
    proxy = ignoring_proxy(bucket)
    try:
        options = proxy.storage_options(credentials=bucket.storage_options)
        section = {"url": bucket.url, "storage_options": options, "retries": {"attempts": 1}}
        with walship.open(tmp_path / "wal", entry_point_plugins=False, archive=section) as log:
            log.append_batch([b"x" * 50] * 3)
            log.rotate()
            assert log.archiver is not None and not log.archiver.flush(timeout=60)
            [error] = log.archiver.stalled().values()
            assert "does not honour If-None-Match" in error and "conditional_create" in error
        assert bucket.names() == []
        section["conditional_create"] = "checked"
        with walship.open(tmp_path / "wal", entry_point_plugins=False, archive=section) as log:
            assert log.archiver is not None and log.archiver.flush(timeout=60)
        assert len(bucket.names()) == 2
    finally:
        proxy.stop()
    with pytest.raises(ConfigError, match=r"conditional_create.*one of required, checked"):
        walship.open(tmp_path / "other", archive={"url": bucket.url, "conditional_create": "x"})


def client_error(status: int, code: str, message: str = "") -> OSError:
    """What s3fs raises for a server's answer: an OSError whose cause is botocore's error."""
    from botocore.exceptions import ClientError

    answer = {"Error": {"Code": code, "Message": message}, "ResponseMetadata": {}}
    answer["ResponseMetadata"]["HTTPStatusCode"] = status  # type: ignore[index]
    e = OSError(22, None)
    e.__cause__ = ClientError(answer, "PutObject")  # type: ignore[arg-type]
    return e


def test_refused_creates_are_known_by_status_and_code_never_by_text() -> None:
    from walship.archive.failures import describe_failure, is_refused_create

    assert is_refused_create(client_error(412, "PreconditionFailed"))
    assert is_refused_create(client_error(409, "ConditionalRequestConflict"))
    assert is_refused_create(client_error(412, ""))  # a status without a code
    assert not is_refused_create(client_error(409, "BucketNotEmpty"))
    assert not is_refused_create(client_error(500, "InternalError", "PreconditionFailed"))
    assert not is_refused_create(OSError(22, "PreconditionFailed: pre-conditions you specified"))
    e = describe_failure(client_error(403, "QuotaExceeded"), "s3://b/wal", "put")
    assert str(e) == (
        "s3://b/wal: PutObject refused: HTTP 403 QuotaExceeded (the bucket's or the user's "
        "quota is used up; retried, nothing is lost)"
    )
    assert isinstance(e, OSError) and (e.status, e.code, e.operation) == (
        403,
        "QuotaExceeded",
        "PutObject",
    )
    e = describe_failure(client_error(400, "Odd", "odd thing"), "s3://b/wal", "put")
    assert str(e) == "s3://b/wal: PutObject refused: HTTP 400 Odd; the server says: odd thing"


def test_an_empty_manifest_is_an_invalid_manifest_not_a_storage_error(s3_target: S3Bucket) -> None:
    """A ranged GET of an empty object is 416 InvalidRange (radosgw: no message): read as
    empty, by its code."""
    from walship.errors import ArchiveIntegrityError

    s3_target.put(manifest_name(1), b"")
    with pytest.raises(ArchiveIntegrityError) as e:
        ArchiveStore(s3_target.url, s3_target.storage_options).stat(NAMES[0])
    assert manifest_name(1) in str(e.value)
