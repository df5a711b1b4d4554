"""``log.stats()`` and the archiver's ``stats()``: typed dictionaries (``walship.stats``) whose
every key is present from the first call on, each documented, with the values they name."""

from __future__ import annotations

import ast
import inspect
import json
from collections.abc import Mapping
from pathlib import Path
from types import UnionType
from typing import Any, Union, get_args, get_origin, get_type_hints

import pytest
from typing_extensions import is_typeddict

import walship
from walship import stats as stats_module
from walship.backends.memory import MemoryStore
from walship.core import latency
from walship.stats import ArchiveStats, LatencyStats, LogStats
from walship.testing.faults import Fault, FaultyStore


def _kinds(hint: Any) -> tuple[type, ...]:
    """The run-time classes a value of the annotation ``hint`` may have."""
    if get_origin(hint) in (Union, UnionType):
        return tuple(k for arg in get_args(hint) for k in _kinds(arg))
    if is_typeddict(hint):
        return (dict,)
    return (get_origin(hint) or hint,)


def _check_types(value: Mapping[str, Any], shape: type) -> None:
    """The keys of ``value`` are those of the TypedDict ``shape``, each value of its type."""
    hints = get_type_hints(shape)
    assert set(value) == set(hints), set(value) ^ set(hints)
    for key, hint in hints.items():
        assert isinstance(value[key], _kinds(hint)), (key, value[key], hint)


def test_a_fresh_log_has_every_key_at_zero() -> None:
    with walship.open(store=MemoryStore(), entry_point_plugins=False) as log:
        s = log.stats()
        _check_types(s, LogStats)
        for key in ("frames", "batches", "bytes", "syncs", "failures", "last_seq", "durable_seq"):
            assert s[key] == 0, key
        for reason in ("forced", "size", "age"):
            assert s[f"rotations_{reason}"] == 0  # type: ignore[literal-required]
        assert s["archive"] is None and s["failed"] is None and s["plugin_errors"] == {}
        assert s["segments"] == 1 and s["active_segment"] == walship.core.header.segment_name(1)
        for latency in (s["append_seconds"], s["fsync_seconds"]):
            _check_types(latency, LatencyStats)
            assert latency["count"] == 0 and latency["sum"] == 0.0
            assert [n for _, n in latency["buckets"]] == [0] * len(latency["buckets"])
        assert json.loads(json.dumps(s)) == json.loads(json.dumps(dict(s)))


def test_the_counters_count() -> None:
    with walship.open(store=MemoryStore(), max_segment_bytes=1024) as log:
        for i in range(30):
            log.append(b"%02d" % i * 20)
        log.append_batch([b"x"] * 5)
        log.rotate()
        s = log.stats()
        assert s["frames"] == 35 and s["batches"] == 31 and s["syncs"] == 31
        assert s["bytes"] == 30 * (40 + 25) + 5 * (1 + 25)
        assert s["rotations_forced"] == 1 and s["rotations_size"] >= 1
        assert s["last_seq"] == s["durable_seq"] == 35
        assert s["segments"] == 2 + s["rotations_size"]
        assert s["append_seconds"]["count"] == 31  # one per group commit
        assert s["fsync_seconds"]["count"] == 31  # each synced batch (durability always)
    with walship.open(store=MemoryStore(), durability="interval", sync_interval=3600) as log:
        log.append(b"a")
        log.append(b"b")
        assert log.stats()["fsync_seconds"]["count"] == 0  # written, not synced
        log.sync()
        log.sync()  # nothing new: no sync
        s = log.stats()
        assert s["syncs"] == 1 and s["fsync_seconds"]["count"] == 1
        assert s["append_seconds"]["count"] == 2


def test_a_failed_log_says_why() -> None:
    store = FaultyStore(MemoryStore(), Fault("write", at=1))
    log = walship.open(store=store, entry_point_plugins=False)
    with pytest.raises(walship.LogFailedError):
        log.append(b"x")
    s = log.stats()
    assert s["failures"] == 1 and s["failed"] is not None and "injected" in s["failed"]
    with pytest.raises(walship.LogFailedError):
        log.close()


def test_the_archivers_stats_have_every_key(tmp_path: Path) -> None:
    archive = {"url": (tmp_path / "archive").as_uri(), "upload_process": False}
    with walship.open(store=MemoryStore(), archive=archive) as log:  # type: ignore[arg-type]
        assert log.archiver is not None
        before = log.archiver.stats()
        _check_types(before, ArchiveStats)
        assert before["archived"] == before["pending"] == 0 and before["seconds_max"] == 0.0
        log.append(b"x")
        log.rotate()
        assert log.archiver.flush(timeout=60)
        s = log.stats()
        assert s["archive"] is not None
        _check_types(s["archive"], ArchiveStats)
        a = s["archive"]
        assert a["archived"] == a["uploaded"] == a["queued"] == 1
        assert a["pending"] == a["stalled_now"] == a["failed_attempts"] == 0
        assert a["url"] == archive["url"] and a["lagging"] is False
        assert a["bytes"] > 0 and a["seconds_max"] >= a["seconds_mean"] > 0


def test_every_field_is_documented() -> None:
    """Each key of the TypedDicts carries a docstring (read from the source)."""
    for node in (n for m in (stats_module, latency) for n in ast.parse(inspect.getsource(m)).body):
        if not isinstance(node, ast.ClassDef):
            continue
        body = node.body
        for i, stmt in enumerate(body):
            if isinstance(stmt, ast.AnnAssign):
                following = body[i + 1] if i + 1 < len(body) else None
                assert (
                    isinstance(following, ast.Expr)
                    and isinstance(following.value, ast.Constant)
                    and isinstance(following.value.value, str)
                ), f"{node.name}.{ast.unparse(stmt.target)} has no docstring"
