"""The test servers themselves: moto and radosgw both store and return an object, and radosgw
checks what moto does not (credentials), so a test on it means something."""

from __future__ import annotations

import json

import pytest
from s3server import RadosGW, S3Bucket, radosgw_server


def test_both_servers_store_and_list(s3_target: S3Bucket) -> None:
    import fsspec

    fs = fsspec.filesystem("s3", **s3_target.storage_options)
    fs.pipe_file(f"{s3_target.bucket}/wal/x", b"hello")
    assert s3_target.get("x") == b"hello"
    assert s3_target.names() == ["x"]
    assert s3_target.url == f"s3://{s3_target.bucket}/wal"


def test_radosgw_checks_credentials() -> None:
    from botocore.exceptions import ClientError

    server = radosgw_server()
    wrong = RadosGW(server.endpoint, server.access_key, "not-the-secret", server.ceph_conf)
    with pytest.raises(ClientError) as err:
        wrong.client().list_buckets()
    assert err.value.response["Error"]["Code"] == "SignatureDoesNotMatch"
    users = json.loads(server.admin("user", "list"))
    assert isinstance(users, list) and users  # the admin tool reaches the same cluster
