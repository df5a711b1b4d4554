"""Shared fixtures."""

from __future__ import annotations

import pytest

from walship.backends.memory import MemoryStore
from walship.core.rotation import ManualClock
from walship.store import SegmentStore

pytest_plugins = ["s3server"]  # s3_bucket, s3_server (moto and radosgw), s3_target


@pytest.fixture
def mem() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(params=["posix", "memory"])
def store(request: pytest.FixtureRequest, tmp_path: object) -> SegmentStore:
    """Each test that takes ``store`` runs on a real directory and on the memory store."""
    if request.param == "posix":
        from pathlib import Path

        from walship.backends.posix import PosixStore

        assert isinstance(tmp_path, Path)
        return PosixStore(tmp_path / "wal")
    return MemoryStore()
