"""Repair and the rebuilt archive record through real S3 endpoints: moto's server, and the Ceph
radosgw the project runs (skipped when it does not answer, failed when
``WALSHIP_REQUIRE_RADOSGW=1``)."""

from __future__ import annotations

import os
import secrets
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from s3server import moto_endpoint, new_bucket

import walship
from walship.core.header import HEADER_SIZE, segment_name
from walship.core.record import RECORD_NAME

S2 = segment_name(2)


@dataclass
class _Target:
    url: str
    storage_options: dict[str, Any]
    client: Any = None
    """A boto3 client when the bucket is to be removed after the test (the shared radosgw
    allows 1000 buckets per user)."""


def _remove_bucket(client: Any, bucket: str) -> None:
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=bucket):
        for o in page.get("Contents", []):
            client.delete_object(Bucket=bucket, Key=o["Key"])
    client.delete_bucket(Bucket=bucket)


def _radosgw() -> _Target:
    endpoint = os.environ.get("WALSHIP_RADOSGW_ENDPOINT", "http://127.0.0.1:17480")
    key = os.environ.get("WALSHIP_RADOSGW_ACCESS_KEY", "WALSHIPTESTACCESSKEY")
    secret = os.environ.get(
        "WALSHIP_RADOSGW_SECRET_KEY", "walshipTestSecretKey0123456789abcdefghij"
    )
    try:
        urllib.request.urlopen(endpoint, timeout=2).close()
    except OSError as e:
        if os.environ.get("WALSHIP_REQUIRE_RADOSGW") == "1":
            pytest.fail(f"radosgw at {endpoint} does not answer: {e}")
        pytest.skip(f"radosgw at {endpoint} does not answer: {e}")
    import boto3

    bucket = f"walship-repair-{secrets.token_hex(6)}"
    client = boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=key,
        aws_secret_access_key=secret,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=bucket)
    options = {
        "endpoint_url": endpoint,
        "key": key,
        "secret": secret,
        "skip_instance_cache": True,
        "use_listings_cache": False,
    }
    return _Target(f"s3://{bucket}/wal", options, client)


@pytest.fixture(params=["moto", "radosgw"])
def target(request: pytest.FixtureRequest) -> Iterator[_Target]:
    if request.param == "radosgw":
        t = _radosgw()
        yield t
        _remove_bucket(t.client, t.url.removeprefix("s3://").split("/")[0])
        return
    bucket = new_bucket(moto_endpoint())
    yield _Target(bucket.url, bucket.storage_options)


def _open(wal: Path, target: _Target, **options: Any) -> walship.Log:
    return walship.open(
        wal,
        entry_point_plugins=False,
        archive={
            "url": target.url,
            "storage_options": target.storage_options,
            "retries": {"attempts": 3, "backoff": 0.05},
        },
        retention={"keep_local": "last:1"},
        **options,
    )


def test_repair_and_rebuild_through_s3(tmp_path: Path, target: _Target) -> None:
    wal = tmp_path / "wal"
    with _open(wal, target) as log:
        for seq in range(1, 16):
            assert log.append(b"frame-%d" % seq) == seq
            if seq % 5 == 0:
                log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    assert sorted(p.name for p in wal.glob("segment_*")) == [segment_name(3), segment_name(4)]
    # the record is lost and the archived segment still local is damaged
    (wal / RECORD_NAME).unlink()
    seg3 = wal / segment_name(3)
    data = bytearray(seg3.read_bytes())
    data[HEADER_SIZE + 20] ^= 0x10
    seg3.write_bytes(bytes(data))
    with pytest.raises(walship.LogCorruptError):
        _open(wal, target)
    with _open(wal, target, repair=True) as log:
        assert log.recovery.record_rebuilt
        assert log.recovery.restored == [segment_name(3)]
        assert [f.commit_seq for f in log.read()] == list(range(11, 16))
        assert log.append(b"frame-16") == 16  # never back to 1
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    with _open(wal, target) as log:
        assert not log.recovery.record_rebuilt and log.last_seq == 16
    reader = walship.open_archive(target.url, target.storage_options)
    assert [f.commit_seq for f in reader.read()] == list(range(1, 17))
