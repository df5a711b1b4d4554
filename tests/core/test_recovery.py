"""Recovery on open: torn tails are repaired and reported, other damage is named, not hidden."""

from __future__ import annotations

import pytest
from blake3 import blake3

import walship
from walship.backends.memory import MemoryStore
from walship.core.frame import encode
from walship.core.header import HEADER_SIZE, SegmentHeader, segment_name
from walship.core.repair import recover
from walship.core.scan import ProblemKind, scan_segment, scan_store
from walship.errors import LogCorruptError, SegmentHeaderError
from walship.store import SegmentStore

S1, S2, S3 = segment_name(1), segment_name(2), segment_name(3)


def _write_log(store: SegmentStore, segments: int = 3, per_segment: int = 5) -> list[int]:
    """Write ``segments`` full segments of frames whose payload is derived from commit_seq."""
    seqs = []
    with walship.open(store=store, instance_id=7) as log:
        for s in range(segments):
            for _ in range(per_segment):
                n = log.last_seq + 1
                seqs.append(log.append(_payload(n)))
            if s < segments - 1:
                log.rotate()
    return seqs


def _payload(seq: int) -> bytes:
    return f"record-{seq}".encode() * 3


def _frames(store: SegmentStore) -> list[int]:
    with walship.open(store=store) as log:
        out = []
        for f in log.read():
            assert f.payload == _payload(f.commit_seq)
            out.append(f.commit_seq)
        return out


def test_clean_log_scans_without_problems(store: SegmentStore) -> None:
    seqs = _write_log(store)
    scan = scan_store(store)
    assert scan.ok
    assert [s.segment_seq for s in scan.segments] == [1, 2, 3]
    assert scan.frame_count == 15 and scan.last_commit_seq == 15
    assert [s.chain_ok for s in scan.segments] == [None, True, True]
    assert _frames(store) == seqs


@pytest.mark.parametrize(
    ("tail", "detail"),
    [
        (encode(16, 1, 0, b"torn frame")[:-3], "ends inside a frame"),
        (b"\x00" * 100, "100 zero bytes after the last valid frame"),
        (b"\x00\x00\x00\x30garbage-garbage-garbage-garbage-garbage-garbage---", "CRC-32C mismatch"),
        (b"\xff" * 37, "frame length 4294967295 is outside"),
    ],
    ids=["cut-mid-frame", "zero-filled", "garbage", "hostile-length"],
)
def test_torn_tail_is_cut_kept_aside_and_reported(
    store: SegmentStore, tail: bytes, detail: str
) -> None:
    seqs = _write_log(store)
    size = store.size(S3)
    store.open_append(S3).write(tail)
    before = scan_store(store)
    assert [p.kind for p in before.problems] == [ProblemKind.TRUNCATED_TAIL]
    with walship.open(store=store) as log:
        report = log.recovery
        assert len(report.repairs) == 1
        r = report.repairs[0]
        assert (r.segment, r.offset, r.cut_bytes) == (S3, size, len(tail))
        assert detail in r.detail
        assert store.read(r.side_file) == tail  # the cut bytes are kept, not destroyed
        assert log.append(_payload(16)) == 16  # commit_seq continues after the last valid frame
    assert store.size(S3) > size
    assert scan_store(store).ok
    assert _frames(store) == [*seqs, 16]


def test_torn_segment_creation_is_removed_and_the_log_continues(store: SegmentStore) -> None:
    seqs = _write_log(store, segments=2)
    store.create(segment_name(3), SegmentHeader(7, 3, 123456789).encode()[:30]).close()
    with walship.open(store=store) as log:
        assert [(r.segment, r.offset, r.cut_bytes) for r in log.recovery.repairs] == [(S3, 0, 30)]
        assert segment_name(3) not in store.list_names()
        assert log.append(_payload(11)) == 11
        closed = log.rotate()
        assert closed.name == S2  # the previous segment is active again
    assert scan_store(store).ok
    assert _frames(store) == [*seqs, 11]


def _flip(store: SegmentStore, name: str, offset: int) -> None:
    data = bytearray(store.read(name))
    data[offset] ^= 0x40
    store.truncate(name, 0)
    store.open_append(name).write(bytes(data))


@pytest.mark.parametrize(
    ("damage", "kind", "where"),
    [
        (lambda s: _flip(s, S2, HEADER_SIZE + 10), ProblemKind.CORRUPT_FRAME, (S2, HEADER_SIZE)),
        (lambda s: _flip(s, S2, 0), ProblemKind.BAD_HEADER, (S2, 0)),
        (lambda s: _flip(s, S1, HEADER_SIZE + 10), ProblemKind.CORRUPT_FRAME, (S1, HEADER_SIZE)),
        (lambda s: s.remove(S2), ProblemKind.MISSING_SEGMENT, (S2, 0)),
        (lambda s: _flip(s, S2, 40), ProblemKind.CHAIN_MISMATCH, (S2, 32)),
        (lambda s: s.truncate(S1, s.size(S1) - 1), ProblemKind.CORRUPT_FRAME, None),
    ],
    ids=["sealed-frame", "bad-header", "first-segment", "missing", "chain", "sealed-truncated"],
)
def test_damage_outside_the_tail_raises_naming_file_and_offset(
    store: SegmentStore, damage: object, kind: ProblemKind, where: tuple[str, int] | None
) -> None:
    _write_log(store)
    damage(store)  # type: ignore[operator]
    files_before = {n: store.read(n) for n in store.list_names() if n.startswith("segment")}
    scan = scan_store(store)
    assert kind in [p.kind for p in scan.problems]
    problem = next(p for p in scan.problems if p.kind is kind)
    if where is not None:
        assert (problem.segment, problem.offset) == where
    with pytest.raises(LogCorruptError) as e:
        walship.open(store=store)
    assert problem.segment in str(e.value) and "salvage=True" in str(e.value)
    assert "\n" not in str(e.value)
    # nothing was changed, and the lock was released
    assert {n: store.read(n) for n in store.list_names() if n.startswith("segment")} == files_before
    store.lock()
    store.unlock()


def test_salvage_opens_the_valid_prefix_and_keeps_the_rest(store: SegmentStore) -> None:
    _write_log(store)
    frame_offset = HEADER_SIZE + 2 * len(encode(1, 1, 0, _payload(1)))
    _flip(store, S2, frame_offset + 10)  # third frame of segment 2
    with walship.open(store=store, salvage=True) as log:
        report = log.recovery
        assert report.salvaged == [S3]
        assert [(r.segment, r.offset) for r in report.repairs] == [(S2, frame_offset)]
        assert log.last_seq == 7
        assert log.append(b"after salvage") == 8
    names = store.list_names()
    assert f"{S3}.damaged" in names and f"{S2}.torn-{frame_offset}" in names
    assert scan_store(store).ok


def test_salvage_after_a_missing_segment(store: SegmentStore) -> None:
    _write_log(store)
    store.remove(S2)
    with walship.open(store=store, salvage=True) as log:
        assert log.recovery.salvaged == [S3]
        assert log.last_seq == 5
    assert scan_store(store).ok


def test_chain_continues_across_restarts(store: SegmentStore) -> None:
    _write_log(store, segments=1)
    with walship.open(store=store) as log:
        log.append(b"more")
        log.rotate()
    header = SegmentHeader.decode(store.read(S2))
    assert header.prev_segment_hash == blake3(store.read(S1)).digest() != bytes(32)
    assert scan_store(store).ok


def test_instance_id_mismatch_is_refused(store: SegmentStore) -> None:
    _write_log(store, segments=1)
    with pytest.raises(SegmentHeaderError, match="instance_id is 7, not the configured 8"):
        walship.open(store=store, instance_id=8)
    with walship.open(store=store, instance_id=7) as log:
        assert log.instance_id == 7


def test_anchor_checks_the_first_local_segment(store: SegmentStore) -> None:
    _write_log(store)
    anchor = blake3(store.read(S1)).digest()
    store.remove(S1)  # as retention does once it is archived
    assert scan_store(store).anchored is False
    assert scan_store(store, anchor=anchor).ok
    bad = scan_store(store, anchor=bytes(32))
    assert [p.kind for p in bad.problems] == [ProblemKind.CHAIN_MISMATCH]
    assert recover(MemoryStore()).next_commit_seq == 1


def test_commit_seq_regression_is_not_mistaken_for_a_torn_tail(store: SegmentStore) -> None:
    _write_log(store, segments=1)
    store.open_append(S1).write(encode(3, 1, 0, b"replayed"))
    scan = scan_store(store)
    assert [(p.kind, p.repairable) for p in scan.problems] == [(ProblemKind.CORRUPT_FRAME, False)]
    assert "commit_seq 3 does not follow 5" in scan.problems[0].detail
    with pytest.raises(LogCorruptError):
        walship.open(store=store)


def test_verify_is_read_only(store: SegmentStore) -> None:
    _write_log(store)
    store.open_append(S3).write(b"\x01" * 10)
    before = {n: store.read(n) for n in store.list_names()}
    scan = scan_store(store)
    assert not scan.ok
    assert {n: store.read(n) for n in store.list_names()} == before


def test_scan_segment_checks_one_segment_as_the_store_scan_does(store: SegmentStore) -> None:
    _write_log(store)
    whole = scan_store(store)
    for seg in whole.segments:
        one = scan_segment(seg.name, store.read(seg.name))
        assert one.ok and len(one.segments) == 1
        got = one.segments[0]
        assert (got.header, got.frame_count, got.first_commit_seq, got.last_commit_seq) == (
            seg.header,
            seg.frame_count,
            seg.first_commit_seq,
            seg.last_commit_seq,
        )
        assert got.blake3 == seg.blake3 == blake3(store.read(seg.name)).digest()
    damaged = store.read(S2)[:-3]
    (problem,) = scan_segment(S2, damaged).problems
    assert problem.kind is ProblemKind.TRUNCATED_TAIL and "ends inside a frame" in problem.detail
    assert scan_segment(S2, damaged).segments[0].valid_end < len(damaged)
    with pytest.raises(ValueError, match="not a segment file name"):
        scan_segment("segment_1.aedbwal", store.read(S2))


@pytest.mark.parametrize("where", ["crc", "length-longer", "length-shorter", "length-hostile"])
def test_bit_rot_in_the_last_segment_is_not_cut_as_a_torn_tail(
    store: SegmentStore, where: str
) -> None:
    """Issue 10 item 4: a damaged frame followed by valid frames continuing the sequence is
    corruption, named with its segment and offset; nothing is cut; salvage opens the prefix."""
    _write_log(store)
    frame_offset = HEADER_SIZE + len(encode(11, 1, 0, _payload(11)))  # commit_seq 12's frame
    size = len(encode(12, 1, 0, _payload(12)))
    data = bytearray(store.read(S3))
    if where == "crc":
        data[frame_offset + 30] ^= 0x01
    else:
        new = {"length-longer": size, "length-shorter": 30, "length-hostile": 1 << 30}[where]
        data[frame_offset : frame_offset + 4] = new.to_bytes(4, "big")
    store.truncate(S3, 0)
    store.open_append(S3).write(bytes(data))
    before = store.read(S3)
    with pytest.raises(LogCorruptError, match=f"{S3} at offset {frame_offset}: corrupt_frame") as e:
        walship.open(store=store)
    assert "a valid frame with commit_seq 13 follows" in str(e.value)
    assert "bit rot or tampering" in str(e.value) and "salvage=True" in str(e.value)
    assert store.read(S3) == before  # nothing cut
    with walship.open(store=store, salvage=True) as log:
        assert log.last_seq == 11
        assert [r.offset for r in log.recovery.repairs] == [frame_offset]
    assert _frames(store) == list(range(1, 12))


def test_damage_in_the_last_frame_is_still_a_torn_tail(store: SegmentStore) -> None:
    seqs = _write_log(store)
    last_frame = store.size(S3) - len(encode(15, 1, 0, _payload(15)))
    _flip(store, S3, last_frame + 30)
    with walship.open(store=store) as log:
        assert [(r.segment, r.offset) for r in log.recovery.repairs] == [(S3, last_frame)]
    assert _frames(store) == seqs[:-1]


@pytest.mark.parametrize("kind", ["zeros", "garbage"])
def test_a_large_damaged_tail_is_scanned_in_linear_time(kind: str) -> None:
    """The forward scan for a continuing frame never costs a CRC per offset: 16 MiB of written
    zeros or random bytes after a torn frame open in well under the time a quadratic scan
    would take (minutes)."""
    import os
    import time

    store = MemoryStore()
    seqs = _write_log(store)
    tail = bytes(16 << 20) if kind == "zeros" else os.urandom(16 << 20)
    store.open_append(S3).write(encode(16, 1, 0, b"torn")[:-2] + tail)
    started = time.perf_counter()
    with walship.open(store=store) as log:
        assert log.recovery.repairs[0].cut_bytes == len(tail) + len(encode(16, 1, 0, b"torn")) - 2
    assert time.perf_counter() - started < 20
    assert _frames(store) == seqs


def test_a_hostile_tail_cannot_make_the_scan_quadratic() -> None:
    """After a torn frame, 4 MiB of 12-byte units that each look like the head of a 2 MiB frame
    with the next commit_seq: every unit passes the cheap filters, so checking each one's CRC
    costs ~350 GB. The CRC work is bounded by a few times the tail: the open is refused
    quickly (undecided is not torn: nothing is cut), and salvage opens the prefix."""
    import struct
    import time

    store = MemoryStore()
    seqs = _write_log(store)
    unit = struct.pack(">IQ", 2 << 20, 16)
    store.open_append(S3).write(encode(16, 1, 0, b"torn")[:-2] + unit * ((4 << 20) // len(unit)))
    before = store.read(S3)
    started = time.perf_counter()
    with pytest.raises(LogCorruptError, match="too many frame-like candidates") as e:
        walship.open(store=store)
    assert time.perf_counter() - started < 5
    assert f"{S3} at offset " in str(e.value) and "\n" not in str(e.value)
    assert store.read(S3) == before
    with walship.open(store=store, salvage=True) as log:
        assert log.last_seq == 15
    assert _frames(store) == seqs
