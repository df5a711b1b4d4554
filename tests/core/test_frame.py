"""The frame codec: the seed's byte layout, limits, and the three ways decoding can end."""

from __future__ import annotations

import array
import io
import struct

import pytest
from crc32c import crc32c

from walship.core import frame as fr
from walship.errors import (
    CorruptFrameError,
    FrameTooLargeError,
    PayloadError,
    TruncatedFrameError,
)


def test_known_crc32c_vector() -> None:
    assert crc32c(b"123456789") == 0xE3069283  # the Castagnoli check value


def test_golden_frame_bytes() -> None:
    raw = fr.encode(7, 1234, 2, b"hi")
    body = struct.pack(">IQQB", 23, 7, 1234, 2) + b"hi"
    assert raw == body + struct.pack(">I", crc32c(body))
    assert len(raw) == 4 + 23


def test_round_trip_1000_frames() -> None:
    buf = bytearray()
    payloads = [bytes([i % 256]) * (i % 300) for i in range(1000)]
    for i, p in enumerate(payloads):
        buf += fr.encode(i + 1, 10 * i, i % 256, p)
    frames = list(fr.decode_all(bytes(buf)))
    assert [f.commit_seq for f in frames] == list(range(1, 1001))
    assert [f.payload for f in frames] == payloads
    assert [f.payload_type for f in frames] == [i % 256 for i in range(1000)]
    assert [f.timestamp_micros for f in frames] == [10 * i for i in range(1000)]
    assert list(fr.FrameReader(io.BytesIO(bytes(buf)))) == frames


def _frame_by_hand(seq: int, ts: int, ptype: int, payload: bytes) -> bytes:
    body = struct.pack(">IQQB", 21 + len(payload), seq, ts, ptype) + payload
    return body + struct.pack(">I", crc32c(body))


def test_batch_encoding_matches_single_frames_and_reuses_buffer() -> None:
    buf = bytearray(b"\xee" * 200)
    end = fr.encode_batch_at(buf, 3, 5, 99, 3, [b"a", b"", b"ccc"])
    expected = _frame_by_hand(5, 99, 3, b"a") + _frame_by_hand(6, 99, 3, b"")
    expected += _frame_by_hand(7, 99, 3, b"ccc")
    assert end == 3 + len(expected) == 3 + 3 * fr.FRAME_OVERHEAD + 4
    assert buf[3:end] == expected and buf[:3] + buf[end:] == b"\xee" * (200 - len(expected))
    assert bytes(buf[3:end]) == fr.encode(5, 99, 3, b"a") + fr.encode(6, 99, 3) + fr.encode(
        7, 99, 3, b"ccc"
    )
    end = fr.encode_batch_at(buf, 0, 1, 1, 1, (memoryview(b"xy"), bytearray(b"z")))
    assert [f.payload for f in fr.decode_all(memoryview(buf)[:end])] == [b"xy", b"z"]
    wide = memoryview(bytes(8)).cast("Q")  # a buffer of wider items is its bytes, not items
    assert fr.encode(1, 1, 1, wide) == _frame_by_hand(1, 1, 1, bytes(8))


def test_empty_input_is_a_clean_end() -> None:
    assert list(fr.decode_all(b"")) == []
    assert fr.FrameReader(io.BytesIO(b"")).next_frame() is None


def test_two_byte_length_is_a_truncation() -> None:
    with pytest.raises(TruncatedFrameError) as e:
        list(fr.decode_all(b"\x00\x00"))
    assert e.value.offset == 0
    with pytest.raises(TruncatedFrameError):
        fr.FrameReader(io.BytesIO(b"\x00\x00")).next_frame()


def test_truncation_at_every_cut_point() -> None:
    frames = [fr.encode(1, 1, 1, b"first"), fr.encode(2, 2, 1, b""), fr.encode(3, 3, 1, b"x" * 40)]
    data = b"".join(frames)
    boundaries = {0, len(frames[0]), len(frames[0]) + len(frames[1]), len(data)}
    for cut in range(len(data) + 1):
        complete = [b for b in sorted(boundaries) if b <= cut]
        expected = len(complete) - 1
        got = []
        if cut in boundaries:
            got = list(fr.decode_all(data[:cut]))
        else:
            with pytest.raises(TruncatedFrameError) as e:
                for f in fr.decode_all(data[:cut]):
                    got.append(f)
            assert e.value.offset == max(complete)
            with pytest.raises(TruncatedFrameError):
                list(fr.FrameReader(io.BytesIO(data[:cut])))
        assert len(got) == expected, cut


def test_a_flipped_byte_is_never_returned_as_data() -> None:
    data = fr.encode(42, 777, 9, b"payload bytes")
    for i in range(len(data)):
        for bit in (0x01, 0x80):
            bad = bytearray(data)
            bad[i] ^= bit
            with pytest.raises((CorruptFrameError, TruncatedFrameError)):
                list(fr.decode_all(bytes(bad)))


def test_crc_mismatch_is_corruption_with_offset() -> None:
    good = fr.encode(1, 1, 1, b"ok")
    bad = bytearray(fr.encode(2, 2, 1, b"bad"))
    bad[-1] ^= 0xFF
    with pytest.raises(CorruptFrameError, match="CRC") as e:
        list(fr.decode_all(good + bytes(bad), base_offset=64))
    assert e.value.offset == 64 + len(good)


class _CountingStream(io.BytesIO):
    def __init__(self, data: bytes) -> None:
        super().__init__(data)
        self.requested: list[int] = []

    def read(self, n: int | None = -1) -> bytes:
        self.requested.append(-1 if n is None else n)
        return super().read(n)


@pytest.mark.parametrize("length", [0, 20, fr.MAX_FRAME_LENGTH + 1, 0xFFFFFFFF])
def test_out_of_range_length_rejected_before_allocating(length: int) -> None:
    data = struct.pack(">I", length) + b"\x00" * 32
    stream = _CountingStream(data)
    with pytest.raises(CorruptFrameError, match=r"outside 21\.\.67108864"):
        fr.FrameReader(stream).next_frame()
    assert stream.requested == [4]  # nothing beyond the length was read
    with pytest.raises(CorruptFrameError):
        list(fr.decode_all(data))


def test_limits_enforced_when_writing() -> None:
    buf = bytearray(b"keep" * 16)
    with pytest.raises(FrameTooLargeError, match="exceeds the frame limit"):
        fr.encode_batch_at(buf, 0, 1, 1, 1, [b"ok", bytes(fr.MAX_PAYLOAD + 1)])
    with pytest.raises(ValueError, match="payload_type"):
        fr.encode_batch_at(buf, 0, 1, 1, 256, [b"ok"])
    with pytest.raises(ValueError, match="64-bit"):
        fr.encode_batch_at(buf, 0, 2**64 - 1, 1, 1, [b"a", b"b"])
    with pytest.raises(ValueError, match="64-bit"):
        fr.encode_batch_at(buf, 0, 1, 2**64, 1, [b"a"])
    with pytest.raises(ValueError, match="too short"):
        fr.encode_batch_at(buf, 40, 1, 1, 1, [b"a"])
    assert buf == b"keep" * 16  # nothing written on any error
    with pytest.raises(FrameTooLargeError):
        fr.encode(1, 1, 1, bytes(fr.MAX_PAYLOAD + 1))
    raw = fr.encode(1, 1, 1, bytes(fr.MAX_PAYLOAD))  # the largest frame is fine
    assert len(raw) == 4 + fr.MAX_FRAME_LENGTH


def test_the_scanner_says_where_and_why_it_stopped() -> None:
    good = fr.encode(1, 2, 3, b"abc") + fr.encode(2, 2, 3, b"")
    cases = [
        (good, fr.StopReason.END, len(good), "end of data"),
        (good[:-1], fr.StopReason.TRUNCATED, 28, "frame needs 25 bytes, 24 remain"),
        (good + b"\0\0", fr.StopReason.TRUNCATED, 53, "2 bytes are too few for a frame length"),
        (good + bytes(30), fr.StopReason.ZEROS, 53, "frame length 0 is outside 21..67108864"),
        (good + bytes(29) + b"\1", fr.StopReason.BAD_LENGTH, 53, "frame length 0 is outside"),
        (good[:10] + b"\xff" + good[11:], fr.StopReason.BAD_CRC, 0, "CRC-32C mismatch"),
    ]
    for data, reason, offset, detail in cases:
        scan = fr.FrameScan(data)
        frames = list(scan)
        assert scan.stop is not None
        assert (scan.stop.reason, scan.stop.offset) == (reason, offset), data
        assert scan.stop.detail.startswith(detail)
        assert [f[0] for f in frames] == [0, 28][: (offset + 27) // 28]
    scan = fr.FrameScan(b"\0" * 5 + good, 5)
    assert [(off, end, seq) for off, end, seq, _, _ in scan] == [(5, 33, 1), (33, 58, 2)]


def test_measure_payloads_checks_and_measures_one_append() -> None:
    payloads = [b"ab", b"", b"cde"]
    items, nbytes = fr.measure_payloads(payloads, 7)
    assert items is payloads and nbytes == 5  # all bytes: the sequence itself
    items, nbytes = fr.measure_payloads((b"ab", bytearray(b"c"), memoryview(b"de")), 0)
    assert [bytes(p) for p in items] == [b"ab", b"c", b"de"] and nbytes == 5
    wide = array.array("I", [1, 2])  # 8 bytes, not 2 items
    assert fr.measure_payloads([wide], 0)[1] == 8
    assert fr.measure_payloads([], 255) == ([], 0)
    with pytest.raises(PayloadError, match=r"^a payload must be bytes-like .*, not str$"):
        fr.measure_payloads([b"a", "b"], 0)
    with pytest.raises(PayloadError, match=r"^a payload buffer must be C-contiguous$"):
        fr.measure_payloads([memoryview(b"abcd")[::2]], 0)
    with pytest.raises(PayloadError, match=r"^payload_type must be .* 0\.\.255, got 256$"):
        fr.measure_payloads([b"a"], 256)
    big = bytes(fr.MAX_PAYLOAD + 1)
    with pytest.raises(FrameTooLargeError, match=f"^payload of {fr.MAX_PAYLOAD + 1} bytes"):
        fr.measure_payloads([b"a", big], 0)
    with pytest.raises(FrameTooLargeError):  # too large before a bad type, as append says
        fr.measure_payloads((big,), 300)
    chunk = bytes(1 << 20)
    assert fr.measure_payloads([chunk] * 65, 0)[1] == 65 << 20  # large together is fine
