"""Hostile input: fuzz the frame decoder, the header decoder, segment names and recovery.

Random bytes and mutated valid data (bit flips, overwritten bytes, cuts, insertions, hostile
frame lengths, segments renamed, dropped, swapped, huge sequence numbers, junk files, an archive
record that is garbage or lies about hashes, commit_seqs and instance_ids) must only ever raise
walship's own errors, never return a damaged frame as data, never hang, and never allocate more
than the 64 MiB frame limit because a length field says so. Recovery runs on a memory store and
on a real directory, with and without ``salvage``.

``walship verify`` runs on the same hostile directories (click's runner; a few through the
installed script): exit 0 when the scan is clean, 1 with every problem listed (text and
``--json``), 2 only with one ``walship: error:`` line when there is no segment at all or the
archive record is invalid; never a traceback, never another exit status.
"""

from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import tempfile
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3 as Blake3
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.cli import build_cli
from walship.core import frame as framing
from walship.core.frame import MAX_FRAME_LENGTH, FrameReader, encode
from walship.core.header import HEADER_SIZE, SegmentHeader, parse_segment_name, segment_name
from walship.core.record import RECORD_NAME, load_anchor
from walship.core.rotation import ManualClock
from walship.core.scan import ProblemKind, scan_store
from walship.errors import FrameError, SegmentHeaderError, WalshipError
from walship.store import SegmentStore

from .support import FIGURES, make_payload

_U32 = struct.Struct(">I")
HOSTILE_LENGTHS = [0, 1, 20, 21, 22, MAX_FRAME_LENGTH, MAX_FRAME_LENGTH + 1, 2**31, 2**32 - 1]

# --- mutations ------------------------------------------------------------------------------

mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 10**6), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 10**6), st.integers(0, 255)),
    st.tuples(st.just("cut"), st.integers(0, 10**6)),
    st.tuples(st.just("insert"), st.integers(0, 10**6), st.binary(min_size=1, max_size=30)),
    st.tuples(st.just("length"), st.integers(0, 10**6), st.sampled_from(HOSTILE_LENGTHS)),
)


def mutate(data: bytes, mutations: list[tuple[Any, ...]]) -> bytes:
    buf = bytearray(data)
    for m in mutations:
        if not buf:
            break
        at = m[1] % len(buf)
        if m[0] == "flip":
            buf[at] ^= 1 << m[2]
        elif m[0] == "set":
            buf[at] = m[2]
        elif m[0] == "cut":
            del buf[at:]
        elif m[0] == "insert":
            buf[at:at] = m[2]
        elif m[0] == "length" and at + 4 <= len(buf):
            buf[at : at + 4] = _U32.pack(m[2])
    return bytes(buf)


frames_strategy = st.lists(
    st.tuples(
        st.integers(0, 2**64 - 1),
        st.integers(0, 2**64 - 1),
        st.integers(0, 255),
        st.binary(max_size=80),
    ),
    max_size=6,
)

SETTINGS: dict[str, Any] = {
    "deadline": 2000,  # a hang fails the example
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.data_too_large],
}

# --- frames ---------------------------------------------------------------------------------


def check_decode(data: bytes) -> None:
    """Only FrameError, and whatever decodes re-encodes to exactly the input (nothing damaged
    comes back as data). The streaming reader agrees with the buffer decoder."""
    FIGURES["fuzz.cases"] += 1
    try:
        frames = list(framing.decode_all(data))
    except FrameError as e:
        assert 0 <= e.offset <= len(data)
        frames = None
    try:
        streamed = list(FrameReader(io.BytesIO(data)))
    except FrameError:
        streamed = None
    assert streamed == frames, "the stream reader and the decoder disagree"
    if frames is not None:
        assert b"".join(encode(*f) for f in frames) == data


def decode_random(data: bytes) -> None:
    check_decode(data)


def decode_mutated(frames: list[tuple[int, int, int, bytes]], muts: list[tuple[Any, ...]]) -> None:
    check_decode(mutate(b"".join(encode(*f) for f in frames), muts))


# --- headers and names ----------------------------------------------------------------------

header_strategy = st.builds(
    SegmentHeader,
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.binary(min_size=32, max_size=32),
)


def check_header(data: bytes, expected: int | None) -> None:
    FIGURES["fuzz.cases"] += 1
    try:
        header = SegmentHeader.decode(data, "segment", expected)
    except SegmentHeaderError as e:
        assert "\n" not in str(e)
        return
    assert header.encode() == data[:HEADER_SIZE]
    assert expected is None or header.segment_seq == expected


def header_mutated(header: SegmentHeader, muts: list[tuple[Any, ...]], tail: bytes) -> None:
    check_header(mutate(header.encode(), muts) + tail, header.segment_seq)


def check_name(name: str) -> None:
    FIGURES["fuzz.cases"] += 1
    seq = parse_segment_name(name)
    if seq is not None:
        assert 0 <= seq < 2**64 and segment_name(seq) == name and "/" not in name


# --- recovery -------------------------------------------------------------------------------


def base_log() -> tuple[dict[str, bytes], dict[int, bytes]]:
    """A valid log of five segments, and its frames (commit_seq -> payload)."""
    store = MemoryStore()
    log = walship.open(
        store=store,
        instance_id=7,
        max_segment_bytes=300,
        clock=ManualClock(),
        entry_point_plugins=False,
    )
    payloads = {}
    for i in range(14):
        p = make_payload(f"b{i}", 10 + i * 7 % 50)
        payloads[log.append(p)] = p
    log.close()
    files = store.files()
    assert len(files) >= 4
    return files, payloads


BASE_FILES, BASE_PAYLOADS = base_log()
BASE_NAMES = sorted(BASE_FILES)
seq_strategy = st.one_of(st.integers(1, 9), st.integers(10**16 - 2, 10**16 + 3), st.just(2**64 - 1))
file_plan = st.one_of(
    st.tuples(st.just("keep")),
    st.tuples(st.just("drop")),
    st.tuples(st.just("mutate"), st.lists(mutation, min_size=1, max_size=4)),
    st.tuples(st.just("rename"), seq_strategy),
    st.tuples(st.just("swap"), st.integers(0, 10)),
    st.tuples(st.just("garbage"), st.binary(max_size=200)),
)
extra_files = st.lists(
    st.tuples(
        st.one_of(
            seq_strategy.map(segment_name),
            st.sampled_from(["walship.lock", "segment_1.aedbwal", "x.torn-64", "notes.txt"]),
        ),
        st.one_of(st.binary(max_size=120), st.sampled_from(list(BASE_FILES.values()))),
    ),
    max_size=3,
)


BASE_HASHES = {parse_segment_name(n): Blake3(d).hexdigest() for n, d in BASE_FILES.items()}


def record_doc(
    entries: list[tuple[int, bool, int | None, int | None]], last: int | None, removed: int
) -> bytes:
    """An archive record: each entry (seq, true hash?, last_commit_seq, instance_id)."""
    return json.dumps(
        {
            "format": "walship-archive-record",
            "version": 1,
            "checkpoint": None,
            "removed_through": removed,
            "last_commit_seq": last,
            "segments": [
                {
                    "segment_seq": seq,
                    "size": 100,
                    "blake3": BASE_HASHES.get(seq, "ab" * 32) if true else "cd" * 32,
                    "url": "memory://elsewhere",
                    "last_commit_seq": last_seq,
                    "instance_id": instance,
                }
                for seq, true, last_seq, instance in entries
            ],
        }
    ).encode()


record_strategy = st.one_of(
    st.none(),
    st.binary(max_size=60),
    st.builds(
        record_doc,
        st.lists(
            st.tuples(
                st.integers(0, 8),
                st.booleans(),
                st.none() | st.integers(0, 30),
                st.none() | st.just(7) | st.integers(0, 2**63),
            ),
            max_size=4,
        ),
        st.none() | st.integers(0, 30),
        st.integers(0, 8),
    ),
)


def hostile_files(
    plans: list[tuple[Any, ...]], extra: list[tuple[str, bytes]], record: bytes | None = None
) -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for name, plan in zip(BASE_NAMES, plans, strict=False):
        data = BASE_FILES[name]
        if plan[0] == "drop":
            continue
        if plan[0] == "mutate":
            data = mutate(data, plan[1])
        elif plan[0] == "rename":
            name = segment_name(plan[1])
        elif plan[0] == "swap":
            data = BASE_FILES[BASE_NAMES[plan[1] % len(BASE_NAMES)]]
        elif plan[0] == "garbage":
            data = plan[1]
        files[name] = data
    files.update(extra)
    if record is not None:
        files[RECORD_NAME] = record
    return files


def check_recovery(store: SegmentStore, record: bool = False) -> None:
    """scan_store never raises; an open raises only WalshipError; an opened log returns only
    true frames, in order, and appends after them (with a record: maybe after the commit_seq
    the record says the archive holds, never before)."""
    FIGURES["fuzz.cases"] += 1
    scan_store(store)
    for salvage in (False, True):
        try:
            log = walship.open(store=store, salvage=salvage, entry_point_plugins=False)
        except WalshipError as e:
            assert "\n" not in str(e)
            continue
        try:
            frames = list(log.read(from_seq=log.first_seq))
            seqs = [f.commit_seq for f in frames]
            assert seqs == sorted(set(seqs)), "frames out of order"
            for f in frames:
                assert BASE_PAYLOADS.get(f.commit_seq) == f.payload, "a damaged frame came back"
            last = log.last_seq
            assert last == (seqs[-1] if seqs else 0) or (record and last > (seqs or [0])[-1])
            assert log.append(b"after") == last + 1
        finally:
            log.close()
        if not salvage:
            break  # opened (and maybe repaired) without salvage: nothing left to salvage


def recover_memory(
    plans: list[tuple[Any, ...]], extra: list[tuple[str, bytes]], record: bytes | None
) -> None:
    store = MemoryStore()
    for name, data in hostile_files(plans, extra, record).items():
        store.write_atomic(name, data)
    check_recovery(store, record is not None)


def recover_posix(
    plans: list[tuple[Any, ...]], extra: list[tuple[str, bytes]], record: bytes | None
) -> None:
    with tempfile.TemporaryDirectory() as d:
        for name, data in hostile_files(plans, extra, record).items():
            (Path(d) / name).write_bytes(data)
        check_recovery(PosixStore(d), record is not None)


# --- walship verify -------------------------------------------------------------------------

CLI = build_cli()


def expected_verify(directory: str) -> tuple[int, int]:
    """(exit status, problems) that ``walship verify`` owes for ``directory``."""
    store = PosixStore(directory)
    if not any(parse_segment_name(n) is not None for n in store.list_names()):
        return 2, 0
    try:
        anchor = load_anchor(store)
    except WalshipError:
        return 2, 0
    scan = scan_store(store, anchor=anchor)
    return (0 if scan.ok else 1), len(scan.problems)


def check_verify_output(code: int, out: str, err: str, as_json: bool, expected: int) -> None:
    assert "Traceback" not in out + err
    if code == 2:
        assert out == "" and len(err.splitlines()) == 1 and err.startswith("walship: error: ")
        return
    if as_json:
        doc = json.loads(out)
        assert doc["ok"] is (code == 0) and len(doc["problems"]) == expected
        for p in doc["problems"]:
            assert p["kind"] in {k.value for k in ProblemKind}
            assert "\n" not in p["detail"] and isinstance(p["offset"], int) and p["file"]
    else:
        lines = out.splitlines()
        listed = [line for line in lines if ": offset " in line]
        assert len(listed) == expected
        summary = [line for line in lines if line.startswith(("ok: ", "DAMAGED: "))]
        assert len(summary) == 1 and summary[0].startswith("ok: " if code == 0 else "DAMAGED: ")


def verify_cli(
    plans: list[tuple[Any, ...]], extra: list[tuple[str, bytes]], record: bytes | None
) -> None:
    FIGURES["fuzz.cases"] += 1
    with tempfile.TemporaryDirectory() as d:
        for name, data in hostile_files(plans, extra, record).items():
            (Path(d) / name).write_bytes(data)
        status, problems = expected_verify(d)
        FIGURES[f"fuzz.verify_exit_{status}"] += 1
        for as_json in (False, True):
            args = ["verify", d, *(["--json"] if as_json else [])]
            result = CliRunner().invoke(CLI, args, prog_name="walship")
            assert result.exception is None or isinstance(result.exception, SystemExit), (
                result.exception
            )
            assert result.exit_code == status, (result.exit_code, result.output)
            check_verify_output(status, result.stdout, result.stderr, as_json, problems)


plans_strategy = st.lists(file_plan, min_size=len(BASE_NAMES), max_size=len(BASE_NAMES))

# --- the tests: a short run by default, 100,000 cases in the long run -----------------------

TARGETS: list[tuple[str, Any, tuple[Any, ...], int]] = [
    ("decode_random", decode_random, (st.binary(max_size=300),), 10_000),
    ("decode_mutated", decode_mutated, (frames_strategy, st.lists(mutation, max_size=5)), 30_000),
    (
        "header_random",
        check_header,
        (st.binary(max_size=100), st.none() | st.integers(0, 2**64 - 1)),
        5_000,
    ),
    (
        "header_mutated",
        header_mutated,
        (header_strategy, st.lists(mutation, max_size=4), st.binary(max_size=8)),
        10_000,
    ),
    ("names", check_name, (st.text(max_size=40) | seq_strategy.map(segment_name),), 10_000),
    ("recover_memory", recover_memory, (plans_strategy, extra_files, record_strategy), 20_000),
    ("recover_posix", recover_posix, (plans_strategy, extra_files, record_strategy), 8_000),
    ("verify_cli", verify_cli, (plans_strategy, extra_files, record_strategy), 7_000),
]
assert sum(t[3] for t in TARGETS) == 100_000


def run_target(target: Any, strategies: tuple[Any, ...], examples: int) -> None:
    settings(max_examples=examples, **SETTINGS)(given(*strategies)(target))()


@pytest.mark.parametrize("name", [t[0] for t in TARGETS])
def test_fuzz(name: str) -> None:
    _, target, strategies, long_examples = next(t for t in TARGETS if t[0] == name)
    run_target(target, strategies, max(100, long_examples // 100))


@pytest.mark.slow
@pytest.mark.timeout(1800)
@pytest.mark.parametrize("name", [t[0] for t in TARGETS])
def test_fuzz_long(name: str) -> None:
    _, target, strategies, long_examples = next(t for t in TARGETS if t[0] == name)
    run_target(target, strategies, long_examples)


# --- memory: a hostile length never costs more than the frame limit -------------------------


def peak_bytes(fn: Any) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return int(peak)


@pytest.mark.parametrize("length", HOSTILE_LENGTHS)
def test_hostile_length_allocates_within_the_frame_limit(length: int, tmp_path: Path) -> None:
    data = _U32.pack(length) + b"\xab" * 200
    small = 1 << 20

    def buffer() -> None:
        with pytest.raises(FrameError):
            list(framing.decode_all(data))

    def stream() -> None:
        with pytest.raises(FrameError):
            list(FrameReader(io.BytesIO(data)))

    path = tmp_path / "frames"
    path.write_bytes(data)

    def real_file() -> None:
        with path.open("rb") as f, pytest.raises(FrameError):
            list(FrameReader(f))

    seg = SegmentHeader(1, 1, 0).encode() + data
    store = MemoryStore()
    store.write_atomic(segment_name(1), seg)

    def recovery() -> None:
        scan_store(store)

    assert peak_bytes(buffer) < small
    assert peak_bytes(stream) < small
    assert peak_bytes(recovery) < small
    # a file object may reserve the claimed length before reading it: never beyond the limit
    assert peak_bytes(real_file) < (
        small if length > MAX_FRAME_LENGTH else MAX_FRAME_LENGTH + small
    )


# --- walship verify as the installed script -------------------------------------------------

WALSHIP = Path(sys.executable).parent / "walship"


@pytest.mark.parametrize("seed", range(4))
def test_verify_script_on_hostile_directories(tmp_path: Path, seed: int) -> None:
    """The installed ``walship`` script on a few hostile directories: the same exit statuses
    and listings as in-process, never a traceback."""
    import random

    rng = random.Random(seed)
    plans: list[tuple[Any, ...]] = []
    for _ in BASE_NAMES:
        roll = rng.random()
        if roll < 0.5:
            plans.append(("keep",))
        elif roll < 0.8:
            plans.append(("mutate", [("flip", rng.randrange(10**6), rng.randrange(8))]))
        else:
            plans.append(("drop",))
    record = [None, b"{not json", None, record_doc([(2, False, 9, 7)], 9, 0)][seed]
    for name, data in hostile_files(plans, [], record).items():
        (tmp_path / name).write_bytes(data)
    status, problems = expected_verify(str(tmp_path))
    for as_json in (False, True):
        proc = subprocess.run(
            [str(WALSHIP), "verify", str(tmp_path), *(["--json"] if as_json else [])],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONWARNINGS": "error::DeprecationWarning:walship"},
        )
        assert proc.returncode == status, proc.stderr
        check_verify_output(status, proc.stdout, proc.stderr, as_json, problems)
