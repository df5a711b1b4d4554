"""Archives to restore from and damage, on every kind of store (:func:`make_archive`: memory://,
file://, a fresh bucket on an S3 server), a log archived to one, and the frames of a restored
directory."""

from __future__ import annotations

import json
import secrets
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

import walship
from walship.archive import ArchiveStore
from walship.backends.memory import MemoryStore
from walship.core.rotation import ManualClock

T0 = 1_700_000_000_000_000


@dataclass
class Archive:
    """An archive URL and its storage options, with raw access to its objects (to damage)."""

    url: str
    storage_options: dict[str, Any] = field(default_factory=dict)
    config: Path | None = None
    """A config whose archive: section holds the storage options (for the CLI), if any."""
    bucket: Any = None
    """The ``s3server.S3Bucket`` holding it, on an S3 server."""

    def remove(self) -> None:
        """Remove an S3 archive's bucket with everything in it (a shared server holds at most
        1000 buckets per user: a test gives back what it made)."""
        if self.bucket is None:
            return
        client = self.bucket.server.client()
        name = self.bucket.bucket
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": o["Key"]} for o in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)

    def _store(self) -> ArchiveStore:
        return ArchiveStore(self.url, self.storage_options)

    def delete(self, name: str) -> None:
        store = self._store()
        store.fs.rm_file(f"{store.root}/{name}")
        store.fs.invalidate_cache()

    def write(self, name: str, data: bytes) -> None:
        store = self._store()
        path = f"{store.root}/{name}"
        if store.fs.exists(path):
            store.fs.rm_file(path)
        store.fs.pipe_file(path, data)
        store.fs.invalidate_cache()

    def read(self, name: str) -> bytes:
        store = self._store()
        return bytes(store.fs.cat_file(f"{store.root}/{name}"))

    def cli_options(self) -> list[str]:
        """Arguments that give the CLI this archive's storage options."""
        return ["-c", str(self.config)] if self.config is not None else []


def _local(kind: str, tmp_path: Path) -> Archive:
    if kind == "memory":
        return Archive(f"memory://restore-{secrets.token_hex(6)}/wal")
    return Archive((tmp_path / "archive").as_uri())


def s3_server_of(kind: str) -> Any:
    """The session's server of ``kind``: ``moto`` or ``radosgw`` (skipped when radosgw does
    not answer, failed under ``WALSHIP_REQUIRE_RADOSGW=1``)."""
    from s3server import moto_endpoint, radosgw_server

    return moto_endpoint() if kind == "moto" else radosgw_server()


def bucket_archive(bucket: Any, tmp_path: Path) -> Archive:
    """The :class:`Archive` of an ``s3server.S3Bucket``, with a config for the CLI."""
    options = bucket.storage_options
    config = tmp_path / f"archive-{bucket.bucket}.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "store": {"path": str(tmp_path / "unused")},
                "archive": {"url": bucket.url, "storage_options": options},
            }
        )
    )
    return Archive(bucket.url, options, config, bucket)


def _s3(kind: str, tmp_path: Path) -> Archive:
    from s3server import new_bucket

    return bucket_archive(new_bucket(s3_server_of(kind)), tmp_path)


def verify_json(archive: Archive) -> tuple[int, dict[str, Any]]:
    """``walship verify URL --json`` (click's runner): its exit status and document."""
    from click.testing import CliRunner

    from walship.cli import build_cli

    result = CliRunner().invoke(
        build_cli(), ["verify", archive.url, "--json", *archive.cli_options()]
    )
    assert result.exit_code in (0, 1), result.output
    doc: dict[str, Any] = json.loads(result.output)
    return result.exit_code, doc


LOCAL_KINDS = ("memory", "file")
S3_KINDS = ("moto", "radosgw")
ALL_KINDS = (*LOCAL_KINDS, *S3_KINDS)
SHARED_KINDS = tuple(k for k in ALL_KINDS if k != "memory")
"""The kinds another process reaches too (memory:// is this process's)."""


def make_archive(kind: str, tmp_path: Path) -> Archive:
    """An empty archive of ``kind`` (one of :data:`ALL_KINDS`): memory://, file://, or a fresh
    bucket on an S3 server. For a fixture: ``make_archive(request.param, tmp_path)``."""
    if kind in LOCAL_KINDS:
        return _local(kind, tmp_path)
    return _s3(kind, tmp_path)


def archived_log(
    archive: Archive, segments: int = 6, frames: int = 10, **settings: Any
) -> list[Any]:
    """Write a log of ``segments`` closed segments of ``frames`` frames, each frame stamped
    T0 + its commit_seq seconds, archive it to ``archive`` (more archive ``settings``, e.g.
    ``compression``), and return every frame."""
    clock = ManualClock(micros=T0)
    settings = {
        "url": archive.url,
        "storage_options": archive.storage_options,
        "workers": 2,
        "upload_process": False,  # threads: no child process to start per log
        **settings,
    }
    with walship.open(store=MemoryStore(), clock=clock, archive=settings) as log:
        for _ in range(segments):
            for _ in range(frames):
                clock.advance(1)
                log.append(f"frame at {clock.micros} ".encode(), payload_type=3)
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        return list(log.read())


def frames_in(directory: Path) -> list[Any]:
    """Every frame of the restored log at ``directory``, which must open without a problem."""
    with walship.open(directory) as log:
        assert log.recovery.problems == []
        return list(log.read())
