"""A plugin that watches the archiver and checks the archive behind it (straight from the
S3 server, never through a fault proxy)."""

from __future__ import annotations

import json
import threading
from typing import Any

from blake3 import blake3 as Blake3
from s3server import S3Bucket

from walship.archive import manifest_name
from walship.core.header import segment_name
from walship.plugins.hookspecs import hookimpl


class Watch:
    """A plugin that records the archive hooks and checks every removal against the archive.

    On ``segment_removed`` it reads the segment and its manifest straight from the server (not
    through the proxy) and checks that they hold the bytes the segment had when it was closed.
    """

    def __init__(self, bucket: S3Bucket, check_archived: bool = False) -> None:
        self.bucket = bucket
        self.check_archived = check_archived
        self.closed: dict[int, str] = {}
        self.ranges: dict[int, tuple[int | None, int | None]] = {}
        self.archived: list[int] = []
        self.failed: list[tuple[int, int, str]] = []
        self.removed: list[int] = []
        self.violations: list[str] = []
        self.checks = 0
        self._client = bucket.server.client()
        self._lock = threading.Lock()

    def _get(self, name: str) -> bytes:
        body = self._client.get_object(Bucket=self.bucket.bucket, Key=self.bucket.key(name))
        return bytes(body["Body"].read())

    def _check_archive(self, segment_seq: int, why: str) -> None:
        """The archive holds the segment's closed bytes, with a manifest that describes them."""
        name = segment_name(segment_seq)
        with self._lock:
            expected = self.closed.get(segment_seq)
        try:
            data = self._get(name)
            manifest = json.loads(self._get(manifest_name(segment_seq)))
        except Exception as e:
            self.violations.append(f"{name} {why}, not in the archive: {e}")
            return
        digest = Blake3(data).hexdigest()
        if manifest["blake3"] != digest or manifest["size"] != len(data):
            self.violations.append(f"{name} {why}, its archived copy does not verify")
        if expected is not None and digest != expected:
            self.violations.append(f"{name} {why}, the archive holds other bytes")
        with self._lock:
            self.checks += 1

    @hookimpl
    def segment_closed(self, segment: Any) -> None:
        with self._lock:
            self.closed[segment.segment_seq] = segment.blake3.hex()
            self.ranges[segment.segment_seq] = (segment.first_commit_seq, segment.last_commit_seq)

    @hookimpl
    def segment_archived(self, segment_seq: int, blake3: str) -> None:
        with self._lock:
            self.archived.append(segment_seq)
            if self.closed.get(segment_seq, blake3) != blake3:
                self.violations.append(f"segment {segment_seq} archived with other bytes")
        if self.check_archived:
            self._check_archive(segment_seq, "archived")

    @hookimpl
    def archive_failed(self, segment_seq: int, attempt: int, error: str) -> None:
        with self._lock:
            self.failed.append((segment_seq, attempt, error))
            if not error or "\n" in error:
                self.violations.append(f"archive_failed of {segment_seq}: error {error!r}")

    @hookimpl
    def segment_removed(self, segment_seq: int) -> None:
        with self._lock:
            self.removed.append(segment_seq)
            if segment_seq not in self.archived:
                self.violations.append(f"{segment_name(segment_seq)} removed before archived")
        self._check_archive(segment_seq, "removed locally")
