"""Live shipping through real S3 endpoints (moto's server and Ceph radosgw, through s3fs): the
parts are created conditionally and verified by their ETag, a restore from them ends with the
last shipped frame, ``walship verify URL`` checks them, and they are removed once their segment
is archived sealed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from s3server import S3Bucket

import walship
from walship.archive import ArchiveStore
from walship.archive.check import verify_archive
from walship.archive.shipper import Shipper
from walship.restore import restore


def test_parts_on_a_real_s3_server(s3_target: S3Bucket, tmp_path: Path) -> None:
    archive = {
        "url": s3_target.url,
        "storage_options": s3_target.storage_options,
        "ship_interval": 3600,
        "retries": {"attempts": 5, "backoff": 0.05, "max_backoff": 0.2},
    }
    with walship.open(tmp_path / "wal", archive=archive, entry_point_plugins=False) as log:
        archiver: Any = log.archiver
        shipper: Shipper = archiver.shipper
        for i in range(3):
            log.append_batch([b"frame %d" % i] * 5)
            assert shipper.ship_now() > 0
        parts = [n for n in s3_target.names() if ".part-" in n]
        assert len(parts) == 6  # three parts, three manifests
        result = restore(s3_target.url, tmp_path / "r", storage_options=s3_target.storage_options)
        assert (result.last_commit_seq, result.parts) == (15, 3)
        store = ArchiveStore(s3_target.url, s3_target.storage_options)
        assert verify_archive(store).problems == []
        reader = walship.open_archive(s3_target.url, s3_target.storage_options)
        assert [f.commit_seq for f in reader.read()] == list(range(1, 16))
        log.rotate()
        assert archiver.flush(30)
        log.append(b"next")
        shipper.ship_now()
        names = s3_target.names()
        assert [n for n in names if ".part-" in n and "0001.aedbwal" in n] == []
        assert len([n for n in names if ".part-" in n]) == 2
    with walship.open(tmp_path / "r", entry_point_plugins=False) as restored:
        assert restored.append(b"after") == 16
