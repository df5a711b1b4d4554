"""Bit rot: flip bytes and bits of a small log's segments and open it.

A torn write can only damage the end of the last segment, with nothing valid after it; any other
damage is bit rot or tampering. For every flip, the outcome must be one of:

* **a torn tail cut at the right frame**: the flip is in the last frame of the last segment (no
  valid frame follows it), recovery cut exactly there, and every frame before it reads back with
  its own payload;
* **LogCorruptError** naming the damaged segment (and, for a damaged frame, its offset), with
  nothing changed; ``salvage=True`` then opens exactly the frames before the damage;
* **a clean open** only for the header bytes nothing can check locally (the last segment's
  ``created_at``, the first segment's prev hash without an anchor), with every frame intact.

Never a silent cut of a valid frame, never a wrong payload. CI flips a sample; ``slow`` flips
every byte (xor 0xff) and every bit of every byte.
"""

from __future__ import annotations

import contextlib
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.frame import decode_all
from walship.core.header import HEADER_SIZE, segment_name
from walship.errors import LogCorruptError
from walship.store import SegmentStore

from .support import FIGURES, abandon, snapshot

SEGMENTS = 3


@dataclass(frozen=True)
class _Frame:
    segment: str
    start: int
    end: int
    commit_seq: int


@dataclass
class _Log:
    store: MemoryStore
    payloads: dict[int, bytes]
    frames: list[_Frame]

    def frames_of(self, name: str) -> list[_Frame]:
        return [f for f in self.frames if f.segment == name]


def _archive_options(url: str) -> dict[str, Any]:
    return {"url": url, "upload_process": False}


def _write(
    store: SegmentStore, crash: bool = False, archive: str | None = None
) -> dict[int, bytes]:
    """The small log every flip starts from; returns its payloads by commit_seq. ``crash``:
    its process dies instead of closing it (the active segment keeps its preallocated space).
    ``archive``: its closed segments are archived there."""
    payloads: dict[int, bytes] = {}
    log = walship.open(
        store=store,
        instance_id=7,
        entry_point_plugins=False,
        max_segment_bytes=1 << 20,
        archive=_archive_options(archive) if archive else None,
    )
    with contextlib.ExitStack() as stack:
        if not crash:
            stack.enter_context(log)
        for s in range(SEGMENTS):
            for i, size in enumerate((0, 3, 40, 9)):
                body = bytes([s * 16 + i]) * size
                payloads[log.append(body, payload_type=i)] = body
            for seq, body in zip(log.append_batch([b"b1", b"b2-x"]), [b"b1", b"b2-x"], strict=True):
                payloads[seq] = body
            if s < SEGMENTS - 1:
                log.rotate()
        if log.archiver is not None:
            assert log.archiver.flush(timeout=60)
    if crash:
        abandon(log)
        log.store.unlock()
        assert log._state.manager.active is not None
        log._state.manager.active.file.close()
    return payloads


def _build() -> _Log:
    store = MemoryStore()
    payloads = _write(store)
    frames = []
    for n in range(1, SEGMENTS + 1):
        name = segment_name(n)
        off = HEADER_SIZE
        for f in decode_all(store.read(name)[HEADER_SIZE:], HEADER_SIZE):
            size = 25 + len(f.payload)
            frames.append(_Frame(name, off, off + size, f.commit_seq))
            off += size
    return _Log(store, payloads, frames)


@pytest.fixture(scope="module")
def built() -> _Log:
    return _build()


def _unchecked(name: str, offset: int) -> bool:
    """Header bytes no local check covers: the last segment's created_at (no successor hashes
    it), the first segment's prev hash (nothing to anchor it without an archive record)."""
    if name == segment_name(SEGMENTS) and 24 <= offset < 32:
        return True
    return name == segment_name(1) and 32 <= offset < 64


def _read_all(log: walship.Log, payloads: dict[int, bytes]) -> list[int]:
    seqs = []
    for f in log.read():
        assert f.payload == payloads[f.commit_seq], f"wrong payload for {f.commit_seq}"
        seqs.append(f.commit_seq)
    return seqs


def _files(store: SegmentStore) -> dict[str, bytes]:
    return {n: store.read(n) for n in store.list_names()}


def check_flip(
    built: _Log,
    name: str,
    offset: int,
    mask: int,
    salvage_too: bool,
    store: SegmentStore | None = None,
) -> str:
    """Flip ``mask`` at ``offset`` of ``name`` (of a copy of the built log, or of ``store``, a
    fresh log written as it was); open; check the outcome; return its kind."""
    if store is None:
        store = snapshot(built.store)
        data = bytearray(store.read(name))
        data[offset] ^= mask
        store.truncate(name, 0)
        store.open_append(name).write(bytes(data))
    else:  # a real file: flip the byte in place, the preallocated space stays as it is
        path = Path(store.location) / name
        with path.open("r+b") as f:
            f.seek(offset)
            byte = f.read(1)[0]
            f.seek(offset)
            f.write(bytes([byte ^ mask]))
    before = _files(store)
    last = segment_name(SEGMENTS)
    hit = next((f for f in built.frames if f.segment == name and f.start <= offset < f.end), None)
    everything = sorted(built.payloads)
    where = f"flip {mask:#04x} at {name}+{offset}"
    try:
        log = walship.open(store=store, entry_point_plugins=False)
    except LogCorruptError as e:
        msg = str(e)
        assert name in msg, f"{where}: {msg}"
        if hit is not None:
            assert f"{name} at offset {hit.start}:" in msg, f"{where}: {msg}"
        assert _files(store) == before, f"{where}: a refused open changed files"
        if salvage_too:
            with walship.open(store=store, salvage=True, entry_point_plugins=False) as log:
                got = _read_all(log, built.payloads)
            keep = [s for s in everything if hit is None or s < hit.commit_seq]
            if hit is None:  # a header or chain problem: the segments before it survive
                assert got == everything[: len(got)], where
            else:
                assert got == keep, f"{where}: salvage kept {got}"
        return "corrupt"
    with log:
        got = _read_all(log, built.payloads)
        repairs = log.recovery.repairs
    if not repairs:
        assert _unchecked(name, offset), f"{where}: damage went unnoticed"
        assert got == everything, where
        return "unchecked_header"
    # a torn tail: only the last frame of the last segment may be cut, exactly at its start
    assert name == last and hit is not None, f"{where}: cut {repairs}"
    assert hit == built.frames_of(last)[-1], f"{where}: a frame with valid frames after it was cut"
    assert [(r.segment, r.offset) for r in repairs] == [(last, hit.start)], where
    assert got == [s for s in everything if s < hit.commit_seq], where
    return "torn_tail"


def _run(built: _Log, byte_step: int, bit_step: int, salvage_step: int) -> None:
    started = time.perf_counter()
    n = 0
    for seg in range(1, SEGMENTS + 1):
        name = segment_name(seg)
        size = built.store.size(name)
        step = 1 if seg == SEGMENTS else byte_step  # the last segment: every byte, always
        for offset in range(0, size, step):
            masks = [0xFF] + ([1 << b for b in range(8)] if offset % bit_step == 0 else [])
            for mask in masks:
                outcome = check_flip(built, name, offset, mask, n % salvage_step == 0)
                FIGURES[f"bit_rot.{outcome}"] += 1
                n += 1
    FIGURES["bit_rot.flips"] += n
    FIGURES["bit_rot.seconds"] += round(time.perf_counter() - started)


def _run_repairs(built: _Log, step: int) -> None:
    """Flip bytes of the archived (sealed) segments of an archived copy of the log: each open
    with ``repair=True`` puts exactly the flipped segment back, and every frame reads back."""
    url = f"memory://walship-bit-rot-{secrets.token_hex(6)}"
    archived = MemoryStore()
    assert _write(archived, archive=url) == built.payloads
    for seg in range(1, SEGMENTS):
        name = segment_name(seg)
        for offset in range(seg, archived.size(name), step):
            store = snapshot(archived)
            data = bytearray(store.read(name))
            data[offset] ^= 0xFF
            store.truncate(name, 0)
            store.open_append(name).write(bytes(data))
            where = f"flip at {name}+{offset}"
            with walship.open(
                store=store, entry_point_plugins=False, archive=_archive_options(url), repair=True
            ) as log:
                assert log.recovery.restored == [name], where
                assert _read_all(log, built.payloads) == sorted(built.payloads), where
            assert store.read(f"{name}.damaged") == bytes(data), where
            FIGURES["bit_rot.repaired_from_archive"] += 1


def test_flips_of_archived_segments_are_repaired(built: _Log) -> None:
    _run_repairs(built, step=17)


@pytest.mark.slow
def test_every_byte_of_archived_segments_repaired(built: _Log) -> None:
    _run_repairs(built, step=1)


def test_flips_are_torn_tails_or_named_corruption(built: _Log) -> None:
    _run(built, byte_step=7, bit_step=29, salvage_step=11)


@pytest.mark.slow
def test_every_byte_and_bit_flipped(built: _Log) -> None:
    _run(built, byte_step=1, bit_step=1, salvage_step=1)


def test_flips_on_a_real_directory(built: _Log, tmp_path: Path) -> None:
    """A sample on a real directory: the last segment is preallocated there (the never-written
    space is told apart by SEEK_DATA/SEEK_HOLE), and flips are made in place."""
    last = segment_name(SEGMENTS)
    cases = [(last, o) for o in range(0, built.store.size(last), 23)]
    cases += [(segment_name(1), o) for o in (0, 40, HEADER_SIZE + 5, HEADER_SIZE + 60)]
    for i, (name, offset) in enumerate(cases):
        store = PosixStore(tmp_path / f"wal-{i}")
        assert _write(store, crash=True) == built.payloads
        assert store.size(last) > built.store.size(last)  # preallocated, never written
        outcome = check_flip(built, name, offset, 0xFF, i % 3 == 0, store)
        FIGURES[f"bit_rot.posix_{outcome}"] += 1
