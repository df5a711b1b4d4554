"""Segment header, names, the segment manager and rotation: the seed's scenarios, ported."""

from __future__ import annotations

import struct

import pytest
from blake3 import blake3

from walship.core.frame import decode_all, encode
from walship.core.header import (
    HEADER_SIZE,
    SEGMENT_MAGIC,
    ZERO_HASH,
    SegmentHeader,
    parse_segment_name,
    segment_name,
)
from walship.core.rotation import ManualClock, RotationPolicy, RotationReason
from walship.core.segment import SegmentManager
from walship.errors import SegmentHeaderError
from walship.store import SegmentStore


def _manager(
    store: SegmentStore, max_bytes: int = 10_000, max_age: float = 3600.0, instance: int = 1
) -> tuple[SegmentManager, ManualClock]:
    clock = ManualClock()
    return SegmentManager(store, instance, RotationPolicy(max_bytes, max_age), clock), clock


def _append(m: SegmentManager, seq: int, payload: bytes, ptype: int = 1, sync: bool = True) -> None:
    m.append(encode(seq, seq, ptype, payload), 1, seq, seq, seq, sync)


# --- header ---------------------------------------------------------------------------------


def test_segment_header_roundtrip_and_magic_validation() -> None:
    header = SegmentHeader(42, 7, 1_000, bytes([9]) * 32)
    raw = header.encode()
    assert len(raw) == HEADER_SIZE
    assert struct.unpack(">I", raw[:4])[0] == SEGMENT_MAGIC
    assert SegmentHeader.decode(raw, expected_seq=7) == header
    bad = bytearray(raw)
    bad[0] = 0
    with pytest.raises(SegmentHeaderError, match="bad magic 0x00454442"):
        SegmentHeader.decode(bytes(bad))


@pytest.mark.parametrize(
    ("offset", "value", "message"),
    [
        (4, b"\x00\x02", "unsupported format_version 2 at offset 4"),
        (6, b"\x00\x01", "reserved field at offset 6 is 1"),
        (
            16,
            struct.pack(">Q", 8),
            "segment_seq 8 at offset 16 does not match the file name \\(7\\)",
        ),
    ],
)
def test_header_validation_names_the_field(offset: int, value: bytes, message: str) -> None:
    raw = bytearray(SegmentHeader(1, 7, 0).encode())
    raw[offset : offset + len(value)] = value
    with pytest.raises(SegmentHeaderError, match=message):
        SegmentHeader.decode(bytes(raw), "segment_0000000000000007.aedbwal", expected_seq=7)


def test_short_header_is_rejected() -> None:
    with pytest.raises(SegmentHeaderError, match="header is 10 bytes"):
        SegmentHeader.decode(b"\x00" * 10)


def test_segment_names() -> None:
    assert segment_name(1) == "segment_0000000000000001.aedbwal"
    assert parse_segment_name("segment_0000000000000001.aedbwal") == 1
    assert parse_segment_name(segment_name(2**64 - 1)) == 2**64 - 1
    for bad in [
        "../segment_0000000000000001.aedbwal",
        "/abs/segment_0000000000000001.aedbwal",
        "segment_1.aedbwal",
        "segment_0000000000000001.aedbwal.torn-64",
        "segment_00000000000000001.aedbwal",  # 17 digits for a small number: not the canonical name
        "segment_99999999999999999999.aedbwal",  # beyond u64
        "walship.lock",
    ]:
        assert parse_segment_name(bad) is None, bad


# --- the manager (the seed's tests) ----------------------------------------------------------


def test_size_rotation_trigger_and_no_split_invariant(store: SegmentStore) -> None:
    m, _ = _manager(store, max_bytes=160)
    m.open_new(1)
    _append(m, 1, bytes(128))
    assert m.should_rotate() is RotationReason.SIZE
    closed = m.rotate()
    assert closed.segment_seq == 1
    assert closed.size > 160  # overshoots by one batch rather than splitting it
    assert closed.reason is RotationReason.SIZE
    # a batch that crosses the limit lands whole in one segment
    buf = b"".join(encode(seq, 2, 1, bytes(60)) for seq in range(2, 7))
    m.append(buf, 5, 2, 6, 2, True)
    closed2 = m.rotate()
    data = store.read(closed2.name)
    assert [f.commit_seq for f in decode_all(memoryview(data)[HEADER_SIZE:])] == [2, 3, 4, 5, 6]


def test_time_rotation_trigger(store: SegmentStore) -> None:
    m, clock = _manager(store, max_age=0.010)
    m.open_new(1)
    assert m.should_rotate(clock.mono + 0.020) is None  # an empty segment never ages out
    _append(m, 1, b"\x01")
    assert m.should_rotate() is None
    assert m.should_rotate(clock.mono + 0.020) is RotationReason.AGE
    clock.advance(0.020)
    assert m.should_rotate() is RotationReason.AGE


def test_rotation_priority_forced_size_age(store: SegmentStore) -> None:
    m, clock = _manager(store, max_bytes=100, max_age=1.0)
    m.open_new(1)
    _append(m, 1, bytes(100))
    clock.advance(2)
    assert m.should_rotate() is RotationReason.SIZE
    m.force_rotate()
    assert m.should_rotate() is RotationReason.FORCED
    assert m.rotate().reason is RotationReason.FORCED
    assert m.should_rotate() is None  # the force is consumed


def test_hash_chain_propagates_across_rotations(store: SegmentStore) -> None:
    m, _ = _manager(store, max_bytes=200, instance=3)
    m.open_new(1)
    closed = []
    for i in range(1, 6):
        _append(m, i, bytes([i]) * 128)
        if m.should_rotate() is not None:
            closed.append(m.rotate())
    closed.append(m.close())
    assert len(closed) >= 2
    by_seq = {c.segment_seq: c for c in closed}
    for c in closed:
        data = store.read(c.name)
        header = SegmentHeader.decode(data, c.name, c.segment_seq)
        assert header.instance_id == 3
        if c.segment_seq == 1:
            assert header.prev_segment_hash == ZERO_HASH
        else:
            assert header.prev_segment_hash == by_seq[c.segment_seq - 1].blake3
            assert (
                header.prev_segment_hash
                == blake3(store.read(by_seq[c.segment_seq - 1].name)).digest()
            )


def test_close_hash_matches_segment_bytes(store: SegmentStore) -> None:
    m, _ = _manager(store, instance=11)
    m.open_new(1)
    _append(m, 1, b"segment-payload")
    closed = m.close()
    raw = store.read(closed.name)
    assert closed.blake3 == blake3(raw).digest()
    assert closed.size == len(raw)
    assert (closed.first_commit_seq, closed.last_commit_seq, closed.frame_count) == (1, 1, 1)
    assert closed.reason is None


def test_append_frames_batch_writes_multiple_frames_in_order(store: SegmentStore) -> None:
    m, _ = _manager(store, instance=9)
    m.open_new(1)
    batch = encode(11, 111, 0x01, b"first") + encode(12, 222, 0x02, b"second")
    m.append(batch, 2, 11, 12, 222, False)
    closed = m.close()
    frames = list(decode_all(memoryview(store.read(closed.name))[HEADER_SIZE:]))
    assert [(f.commit_seq, f.timestamp_micros, f.payload_type, f.payload) for f in frames] == [
        (11, 111, 1, b"first"),
        (12, 222, 2, b"second"),
    ]
    assert (closed.first_commit_seq, closed.last_commit_seq, closed.frame_count) == (11, 12, 2)


def test_same_inputs_same_bytes(tmp_path: object) -> None:
    from walship.backends.memory import MemoryStore

    outputs = []
    for _ in range(2):
        store = MemoryStore()
        m, clock = _manager(store, max_bytes=300)
        m.open_new(1)
        for i in range(1, 20):
            clock.advance(0.001)
            _append(m, i, bytes([i]) * 50)
            if m.should_rotate():
                m.rotate()
        m.close()
        outputs.append(store.files())
    assert outputs[0] == outputs[1]
    assert len(outputs[0]) > 3


def test_closed_segment_is_synced_before_its_hash_is_used() -> None:
    from walship.backends.memory import MemoryStore

    store = MemoryStore()
    m, _ = _manager(store)
    m.open_new(1)
    _append(m, 1, b"x" * 10, sync=False)
    assert store.unsynced_bytes(segment_name(1)) > 0
    m.rotate()
    assert store.unsynced_bytes(segment_name(1)) == 0
    store.crash()
    assert (
        SegmentHeader.decode(store.read(segment_name(2))).prev_segment_hash
        == blake3(store.read(segment_name(1))).digest()
    )
