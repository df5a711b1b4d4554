"""The native codec (walship/core/_codec.c) against the pure-Python reference of
walship.core.frame: the same random valid and damaged inputs give the same frames, the same stop
offsets and reasons, the same exceptions with the same messages, and the same bytes written."""

from __future__ import annotations

import array
import contextlib
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import crc32c as crc32c_pkg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from walship.core import frame
from walship.errors import FrameError

needs_native = pytest.mark.skipif(
    frame.codec is None, reason="the native codec is not built, or WALSHIP_PURE_PYTHON is set"
)
native: Any = frame.codec
BUILT = importlib.util.find_spec("walship.core._codec") is not None

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def pure() -> Iterator[None]:
    """The pure-Python path of walship.core.frame for the duration."""
    saved = frame.codec
    frame.codec = None
    try:
        yield
    finally:
        frame.codec = saved


def both(fn: Callable[[], Any]) -> tuple[Any, Any]:
    """``fn()`` on the native path, then on the pure path: each its result, or the exception's
    type and message."""

    def run() -> Any:
        try:
            return ("ok", fn())
        except Exception as e:  # the comparison is the point
            return ("raised", type(e), str(e), getattr(e, "offset", None))

    got = run()
    with pure():
        want = run()
    return got, want


# --- CRC-32C --------------------------------------------------------------------------------


@needs_native
@SETTINGS
@given(st.binary(max_size=3000), st.integers(0, 2**32 - 1), st.integers(0, 7))
def test_crc32c_equals_the_crc32c_package(data: bytes, value: int, skip: int) -> None:
    view = memoryview(data)[min(skip, len(data)) :]  # unaligned starts too
    want = crc32c_pkg.crc32c(bytes(view), value)
    assert native.crc32c(view, value) == want
    assert native.crc32c_sw(view, value) == want


@needs_native
@pytest.mark.parametrize(
    "size", [0, 1, 7, 8, 9, 767, 768, 769, 24575, 24576, 24577, 3 * 8192 + 3 * 256 + 13, 1 << 20]
)
def test_crc32c_on_the_block_boundaries(size: int) -> None:
    data = os.urandom(size + 3)
    for start in range(4):
        piece = data[start : start + size]
        want = crc32c_pkg.crc32c(piece)
        assert native.crc32c(piece) == want
        assert native.crc32c_sw(piece) == want
        assert native.crc32c(piece, 0xDEADBEEF) == crc32c_pkg.crc32c(piece, 0xDEADBEEF)


# --- the encoder ----------------------------------------------------------------------------

payload_bytes = st.binary(max_size=300)
payload_objects = st.one_of(
    payload_bytes,
    payload_bytes.map(bytearray),
    payload_bytes.map(lambda b: memoryview(b)),
    payload_bytes.map(lambda b: memoryview(b)[::2]),  # not contiguous: PayloadError
    st.lists(st.integers(0, 2**32 - 1), max_size=20).map(lambda v: array.array("I", v)),
    st.text(max_size=5),  # not bytes-like: PayloadError
)


@needs_native
@SETTINGS
@given(
    payloads=st.lists(payload_objects, max_size=12),
    first_seq=st.one_of(
        st.integers(0, 1000), st.integers(2**64 - 20, 2**64 + 2), st.sampled_from([-1, 1.0, True])
    ),
    ts=st.one_of(st.integers(0, 2**64 - 1), st.sampled_from([-1, 2**64, 2.0, False])),
    ptype=st.one_of(st.integers(-1, 256), st.sampled_from([True, 1.0, "1"])),
    offset=st.integers(0, 40),
    slack=st.integers(-30, 30),
    fill=st.integers(0, 255),
)
def test_encoder_differential(
    payloads: list[Any], first_seq: int, ts: int, ptype: Any, offset: int, slack: int, fill: int
) -> None:
    size = max(0, offset + sum(len(bytes(p)) + 25 for p in payloads if not isinstance(p, str)))
    size = max(0, size + slack)
    bufs: list[bytearray] = []

    def run() -> int:
        buf = bytearray([fill]) * size
        bufs.append(buf)
        return frame.encode_batch_at(buf, offset, first_seq, ts, ptype, payloads)

    got, want = both(run)
    assert got == want
    assert bufs[0] == bufs[1]  # the same bytes, or nothing written on both


@needs_native
def test_encoder_large_batch_without_the_gil() -> None:
    payloads = [os.urandom(4096) for _ in range(300)]  # 1.2 MiB: the loop releases the GIL
    bufs = [bytearray(2 << 20), bytearray(2 << 20)]
    end = frame.encode_batch_at(bufs[0], 7, 5, 6, 7, payloads)
    with pure():
        assert frame.encode_batch_at(bufs[1], 7, 5, 6, 7, payloads) == end
    assert bufs[0] == bufs[1]


@needs_native
def test_encoder_takes_any_iterable() -> None:
    got, want = both(lambda: frame.encode(3, 4, 5, b"abc"))
    assert got == want
    buf = bytearray(100)
    assert frame.encode_batch_at(buf, 0, 1, 2, 3, iter([b"x", b"yz"])) == 53


# --- the scanner and decode_all -------------------------------------------------------------

HOSTILE = [0, 1, 20, 21, 22, frame.MAX_FRAME_LENGTH, frame.MAX_FRAME_LENGTH + 1, 2**32 - 1]


@st.composite
def damaged(draw: st.DrawFn) -> tuple[bytes, int]:
    """A run of valid frames after a prefix, then damage of some kind, and a start offset."""
    prefix = draw(st.binary(max_size=8))
    payloads = draw(st.lists(st.binary(max_size=200), max_size=10))
    first = draw(st.integers(0, 2**64 - 1 - len(payloads)))
    buf = bytearray(len(prefix) + sum(len(p) + 25 for p in payloads))
    buf[: len(prefix)] = prefix
    ptype = draw(st.integers(0, 255))
    ts = draw(st.integers(0, 2**64 - 1))
    with pure():
        frame.encode_batch_at(buf, len(prefix), first, ts, ptype, payloads)
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["flip", "truncate", "zeros", "length", "garbage", "none"]))
        if kind == "flip" and buf:
            i = draw(st.integers(0, len(buf) - 1))
            buf[i] ^= 1 << draw(st.integers(0, 7))
        elif kind == "truncate" and buf:
            del buf[draw(st.integers(0, len(buf) - 1)) :]
        elif kind == "zeros":
            buf += bytes(draw(st.integers(1, 100)))
        elif kind == "length" and len(buf) >= 4:
            i = draw(st.integers(0, len(buf) - 4))
            buf[i : i + 4] = draw(st.sampled_from(HOSTILE)).to_bytes(4, "big")
        elif kind == "garbage":
            buf += draw(st.binary(min_size=1, max_size=40))
    start = draw(st.one_of(st.just(len(prefix)), st.integers(0, len(buf) + 2)))
    return bytes(buf), start


def scan(data: Any, start: int) -> tuple[list[frame.FrameAt], frame.ScanStop | None]:
    s = frame.FrameScan(data, start)
    return list(s), s.stop


def decode(data: Any, base: int) -> tuple[list[frame.Frame], Any]:
    out: list[frame.Frame] = []
    try:
        for f in frame.decode_all(data, base):
            out.append(f)
    except FrameError as e:
        return out, (type(e), str(e), e.offset)
    return out, None


@needs_native
@SETTINGS
@given(damaged())
def test_scanner_differential(case: tuple[bytes, int]) -> None:
    data, start = case
    for form in (data, bytearray(data), memoryview(data)):
        got, want = both(lambda form=form: scan(form, start))  # type: ignore[misc]
        assert got == want


@needs_native
@SETTINGS
@given(damaged(), st.integers(0, 1000))
def test_decode_all_differential(case: tuple[bytes, int], base: int) -> None:
    data, start = case
    got, want = both(lambda: decode(memoryview(data)[start:], base))
    assert got == want
    for f in got[1][0]:
        assert type(f) is frame.Frame


@needs_native
def test_scan_across_chunks_and_a_mapped_file(tmp_path: Any) -> None:
    import mmap

    n = frame.SCAN_CHUNK * 2 + 5
    buf = bytearray(n * 26 + 3)
    end = frame.encode_batch_at(buf, 0, 10, 20, 30, [b"x"] * n)
    buf[end:] = b"\x00\x00\x01"
    path = tmp_path / "seg"
    path.write_bytes(buf)
    with path.open("rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as m:
        view = memoryview(m)
        try:
            got, want = both(lambda: scan(view, 0))
            assert got == want
            frames, stop = got[1]
            assert len(frames) == n and stop is not None
            assert stop.reason is frame.StopReason.TRUNCATED and stop.offset == end
            got, want = both(lambda: decode(view, 0))
            assert got == want and len(got[1][0]) == n
        finally:
            view.release()


@needs_native
def test_a_consumer_that_breaks_off_leaves_no_stop() -> None:
    data = b"".join(frame.encode(i, 0, 0, b"p") for i in range(10))
    s = frame.FrameScan(data)
    for _ in s:
        break
    assert s.stop is None


# --- the switch -----------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expect"), [("1", False), ("0", BUILT), ("", BUILT)])
def test_walship_pure_python_selects_the_pure_path(value: str, expect: bool) -> None:
    env = {**os.environ, "WALSHIP_PURE_PYTHON": value}
    out = subprocess.run(
        [sys.executable, "-c", "import walship.core.frame as f; print(f.NATIVE, f.codec is None)"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert out == [str(expect), str(not expect)]


def test_the_native_codec_is_active_where_it_is_built() -> None:
    pure_env = os.environ.get("WALSHIP_PURE_PYTHON", "") not in ("", "0")
    assert frame.NATIVE is (BUILT and not pure_env)


def test_without_the_extension_the_pure_path_runs() -> None:
    code = (
        "import sys; sys.modules['walship.core._codec'] = None\n"  # as if it was never built
        "import walship.core.frame as f\n"
        "assert f.decode_all(f.encode(1, 2, 3, b'x')).__next__().payload == b'x'\n"
        "print(f.NATIVE)"
    )
    env = {k: v for k, v in os.environ.items() if k != "WALSHIP_PURE_PYTHON"}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert out.stdout.split() == ["False"]


@needs_native
def test_decode_builds_any_frame_class() -> None:
    class Plain:  # not a tuple: built by calling it
        def __init__(self, *fields: object) -> None:
            self.fields = fields

    data = frame.encode(1, 2, 3, b"ab") + frame.encode(2, 2, 3, b"")
    frames, stop = native.decode(data, 0, 10, Plain)
    assert [f.fields for f in frames] == [(1, 2, 3, b"ab"), (2, 2, 3, b"")]
    assert stop == len(data)
    assert native.decode(data, 0, 10, frame.Frame)[0] == [(1, 2, 3, b"ab"), (2, 2, 3, b"")]
    assert hash(native.decode(data, 0, 1, frame.Frame)[0][0]) == hash(frame.Frame(1, 2, 3, b"ab"))


# --- the entry points of the read path and the gathering encoder ----------------------------


@needs_native
@SETTINGS
@given(damaged(), st.one_of(st.none(), st.integers(0, 2**64 - 1)))
def test_summarize_differential(case: tuple[bytes, int], prev: int | None) -> None:
    data, start = case
    got, want = both(lambda: frame.summarize(memoryview(data), start, prev))
    assert got == want


@needs_native
@SETTINGS
@given(
    damaged(),
    st.integers(1, 12),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 3000),
    st.booleans(),
)
def test_decode_range_differential(
    case: tuple[bytes, int], max_frames: int, a: int, b: int, trusted: int, views: bool
) -> None:
    data, start = case
    lo, hi = min(a, b), max(a, b)
    for bounds in ((0, 2**64 - 1), (lo, hi)):

        def run(bounds: tuple[int, int] = bounds) -> Any:
            got = frame.decode_range(memoryview(data), start, max_frames, *bounds, trusted, views)
            return [(type(f), f[:3], bytes(f.payload)) for f in got.frames], got[1:]

        got, want = both(run)
        assert got == want


@needs_native
def test_decode_range_walks_over_frames_below_lo_and_stops_above_hi() -> None:
    data = memoryview(b"".join(frame.encode(i, 7, 1, b"p%d" % i) for i in range(1, 101)))
    for mode in (False, True):
        with pure() if mode else contextlib.nullcontext():
            got = frame.decode_range(data, 0, 1000, 40, 45)
            assert [f.commit_seq for f in got.frames] == [40, 41, 42, 43, 44, 45] and got.done
            assert got.offset == sum(25 + len(b"p%d" % i) for i in range(1, 46))  # before 46
            views = frame.decode_range(data, 0, 1000, views=True).frames
            assert all(type(f) is frame.FrameView for f in views)
            assert [bytes(f.payload) for f in views[:2]] == [b"p1", b"p2"]


@needs_native
@SETTINGS
@given(st.lists(payload_objects, max_size=12), st.integers(0, 40), st.integers(-30, 30))
def test_gathering_encoder_differential(payloads: list[Any], offset: int, slack: int) -> None:
    size = max(0, offset + 25 * len(payloads) + slack)
    results: list[tuple[bytearray, list[Any]]] = []

    def run() -> int:
        buf, pieces = bytearray(size), [b"before"]
        results.append((buf, pieces))
        return frame.encode_batch_at(buf, offset, 5, 6, 7, payloads, pieces)

    got, want = both(run)
    assert got == want
    (b0, p0), (b1, p1) = results
    assert b0 == b1 and [bytes(x) for x in p0] == [bytes(x) for x in p1]
    if got[0] == "ok":
        encoded = b"".join(bytes(x) for x in p0[1:])
        with pure():
            assert encoded == b"".join(frame.encode(5 + i, 6, 7, p) for i, p in enumerate(payloads))


# --- one append's check and measure, and the encoder of checked payloads ---------------------


def measured(payloads: Any, ptype: Any) -> tuple[list[bytes], int, bool]:
    """measure_payloads' result as comparable values: the payloads' bytes, the total, and
    whether the sequence itself came back."""
    items, nbytes = frame.measure_payloads(payloads, ptype)
    return [bytes(p) for p in items], nbytes, items is payloads


@needs_native
@SETTINGS
@given(
    st.lists(payload_objects, max_size=12),
    st.booleans(),
    st.one_of(st.integers(-1, 256), st.sampled_from([True, 1.0, "1"])),
)
def test_measure_payloads_differential(payloads: list[Any], as_tuple: bool, ptype: Any) -> None:
    seq = tuple(payloads) if as_tuple else payloads
    got, want = both(lambda: measured(seq, ptype))
    assert got == want


@needs_native
def test_measure_payloads_of_large_batches() -> None:
    big = bytes(frame.MAX_PAYLOAD + 1)
    chunk = bytes(1 << 20)
    many = [chunk] * 65  # 65 MiB together, none too large
    got, want = both(lambda: measured(many, 0))
    assert got == want and got[0] == "ok" and got[1][1] == 65 << 20
    for bad in ([b"a", big], [big], (bytearray(b"a"), big), [chunk, memoryview(big)]):
        got, want = both(lambda bad=bad: measured(bad, 0))  # type: ignore[misc]
        assert got == want and got[0] == "raised", got
    assert native.measure([b"a", b"bc"]) == 3 and native.measure((b"",)) == 0
    assert native.measure([b"a", bytearray(b"b")]) is None  # the Python path converts
    assert native.measure(iter([b"a"])) is None  # not a list or tuple: the Python path


like_payloads = st.lists(
    st.sampled_from([0, 1, 7, 8, 9, 15, 16, 17, 32, 33, 100, 746, 747, 1000]).flatmap(
        lambda n: st.lists(st.binary(min_size=n, max_size=n), min_size=1, max_size=7)
    ),
    max_size=4,
).map(lambda runs: [p for run in runs for p in run])


@needs_native
@SETTINGS
@given(like_payloads, st.booleans(), st.integers(0, 40))
def test_encoder_of_runs_of_like_payloads(payloads: list[bytes], views: bool, offset: int) -> None:
    """Runs of payloads of one size (the native encoder CRCs three short frames at a time, each
    copied by its own short copy) encode as the reference does, frame by frame; buffers (the
    exported path) as well as bytes (the direct one)."""
    items: list[Any] = [memoryview(p) for p in payloads] if views else payloads
    size = offset + sum(len(p) + 25 for p in payloads)
    bufs: list[bytearray] = []

    def run() -> int:
        buf = bytearray(size)
        bufs.append(buf)
        return frame.encode_checked_at(buf, offset, 9, 8, 7, items)

    got, want = both(run)
    assert got == want and bufs[0] == bufs[1]
    with pure():
        expected = b"".join(frame.encode(9 + i, 8, 7, p) for i, p in enumerate(payloads))
    assert bufs[0][offset:] == expected


@needs_native
@SETTINGS
@given(
    st.lists(payload_bytes, max_size=12),
    st.one_of(st.integers(0, 1000), st.integers(2**64 - 20, 2**64 + 2)),
    st.integers(-1, 256),
    st.booleans(),
)
def test_checked_encoder_is_the_encoder(
    payloads: list[bytes], first_seq: int, ptype: int, gather: bool
) -> None:
    """encode_checked_at writes what encode_batch_at writes and raises what it raises, on
    either path (its payloads checked already: what measure_payloads returns)."""
    size = sum(len(p) + 25 for p in payloads)
    out: list[tuple[bytearray, list[Any] | None]] = []

    def run(encode: Any) -> Any:
        buf = bytearray(size)
        pieces: list[Any] | None = [] if gather else None
        out.append((buf, pieces))
        return encode(buf, 0, first_seq, 5, ptype, payloads, pieces)

    for encode in (frame.encode_batch_at, frame.encode_checked_at):
        got, want = both(lambda encode=encode: run(encode))  # type: ignore[misc]
        assert got == want
    assert len({bytes(b) for b, _ in out}) == 1
    assert len({tuple(bytes(x) for x in p or ()) for _, p in out}) == 1
