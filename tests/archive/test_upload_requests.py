"""What a sealed upload costs in requests, counted by a proxy in front of moto's server: the
object's PUT and its manifest's, with the fence's GET at most once a second and the
predecessor's manifest asked for only until a put of the archiver succeeded (an archive
that holds another history is refused when the log opens: tests/archive/test_repair.py)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any

from reliability.s3proxy import FaultProxy
from s3server import S3Bucket

import walship

SEGMENTS = 24


def _kinds(proxy: FaultProxy) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for r in proxy.requests:
        path = r.path.split("?")[0]
        if "walship-epoch-" in path:
            kind = "epoch"
        elif path.endswith(".aedbwal.manifest.json"):
            kind = "manifest"
        elif path.endswith(".aedbwal"):
            kind = "segment"
        else:
            kind = "other"
        out[(r.method, kind)] += 1
    return out


def _archive(bucket: S3Bucket, proxy: FaultProxy, workers: int) -> dict[str, Any]:
    return {
        "url": bucket.url,
        "storage_options": proxy.storage_options(credentials=bucket.storage_options),
        "workers": workers,
        "upload_process": False,
        "retries": {"attempts": 2, "backoff": 0.05, "max_backoff": 0.1},
    }


def test_a_segment_costs_two_puts_and_the_fence_one_get_a_second(
    s3_bucket: S3Bucket, tmp_path: Path
) -> None:
    proxy = FaultProxy(int(s3_bucket.server.endpoint.rsplit(":", 1)[1])).start()
    try:
        with walship.open(
            tmp_path / "log",
            archive=_archive(s3_bucket, proxy, workers=4),
            entry_point_plugins=False,
            durability="none",
        ) as log:
            for i in range(SEGMENTS):
                log.append(b"frame %d" % i)
                log.rotate()
            assert log.archiver is not None and log.archiver.flush(60)
        kinds = _kinds(proxy)
    finally:
        proxy.stop()
    assert kinds[("PUT", "segment")] == SEGMENTS
    assert kinds[("PUT", "manifest")] == SEGMENTS
    # the predecessor's manifest: only while no put had succeeded yet (the first workers)
    assert kinds[("GET", "manifest")] <= 4, kinds
    # the fence: at the start, then at most once a second (this run takes a few seconds)
    assert kinds[("GET", "epoch")] < SEGMENTS / 2, kinds
