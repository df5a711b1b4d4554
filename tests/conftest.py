"""Shared fixtures."""

from __future__ import annotations

import pytest

from walship.backends.memory import MemoryStore
from walship.core.rotation import ManualClock


@pytest.fixture
def mem() -> MemoryStore:
    return MemoryStore()


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()
