"""walship against the seed: byte-identical segments for the same inputs, and seed logs read back.

The golden fixtures under ``tests/seed_fixtures/<name>/`` were written by the seed's own segment
engine (``shared/seed/segment.rs``, run by ``tools/seedcheck``): ``scenario.jsonl`` is the input,
``segments/`` what the seed wrote, ``closed.jsonl`` the seed's record of each closed segment. This
module replays every scenario through walship and compares. Scenarios named ``seed_*`` exercise a
documented, deliberate difference (tests/seed_fixtures/README.md): for them the exact difference is
asserted instead. No cargo is needed except by the regeneration test, which skips without it.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from blake3 import blake3

import walship
from walship.backends.memory import MemoryStore
from walship.backends.posix import PosixStore
from walship.core.frame import Frame, FrameReader, decode_all, encode
from walship.core.header import (
    HEADER_SIZE,
    ZERO_HASH,
    SegmentHeader,
    parse_segment_name,
    segment_name,
)
from walship.core.repair import recover
from walship.core.rotation import ManualClock, RotationPolicy, RotationReason
from walship.core.scan import ProblemKind, scan_store
from walship.core.segment import ClosedSegment, SegmentManager
from walship.store import SegmentStore

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "seed_fixtures"
SEEDCHECK = REPO / "tools" / "seedcheck"
SCENARIOS = sorted(p.parent.name for p in FIXTURES.glob("*/scenario.jsonl"))
SHARED = [n for n in SCENARIOS if not n.startswith("seed_")]
SEED_ONLY = [n for n in SCENARIOS if n.startswith("seed_")]
# The seed's names for its rotation reasons, and for the harness's closes, in walship's terms.
SEED_REASONS = {
    "forced": RotationReason.FORCED,
    "size": RotationReason.SIZE,
    "time": RotationReason.AGE,
    "close": None,
    "restart": None,
}
STEP_KEYS = {
    "open": {"instance_id", "max_segment_bytes", "max_segment_age_micros", "wall_micros"},
    "append": {"frames"},
    "advance": {"micros"},
    "force": set(),
    "rotate": set(),
    "tick": set(),
    "restart": set(),
    "close": set(),
}
OPTIONAL_KEYS = {"open": {"walship_log"}, "append": {"sync"}, "restart": {"new_segment"}}


# --- scenarios ----------------------------------------------------------------------------


@dataclass
class Scenario:
    name: str
    steps: list[dict[str, Any]]

    @property
    def open(self) -> dict[str, Any]:
        return self.steps[0]

    @property
    def instance_id(self) -> int:
        return int(self.open["instance_id"])

    @property
    def policy(self) -> RotationPolicy:
        return RotationPolicy(
            self.open["max_segment_bytes"], self.open["max_segment_age_micros"] / 1_000_000
        )

    def frames(self) -> list[Frame]:
        """Every frame the scenario appends, in order, as a reader must return them."""
        wall = self.open["wall_micros"]
        out = []
        for step in self.steps:
            if step["op"] == "advance":
                wall += step["micros"]
            elif step["op"] == "append":
                out += [
                    Frame(f["seq"], f.get("ts", wall), f["type"], payload_of(f))
                    for f in step["frames"]
                ]
        return out


def payload_of(spec: dict[str, Any]) -> bytes:
    given = [k for k in ("payload", "payload_hex", "payload_fill") if k in spec]
    assert len(given) == 1, f"frame {spec}: give exactly one payload form"
    if "payload" in spec:
        return str(spec["payload"]).encode()
    if "payload_hex" in spec:
        return bytes.fromhex(spec["payload_hex"])
    byte, count = spec["payload_fill"]
    return bytes([int(byte)]) * int(count)


def load(name: str) -> Scenario:
    steps = [
        json.loads(line)
        for line in (FIXTURES / name / "scenario.jsonl").read_text().splitlines()
        if line.strip()
    ]
    for i, step in enumerate(steps):
        op = step.get("op")
        assert op in STEP_KEYS, f"{name} step {i + 1}: unknown op {op!r}"
        keys = set(step) - {"op"}
        allowed = STEP_KEYS[op] | OPTIONAL_KEYS.get(op, set())
        assert STEP_KEYS[op] <= keys <= allowed, f"{name} step {i + 1}: fields {sorted(keys)}"
        assert (op == "open") == (i == 0), f"{name}: open comes first, once"
    assert steps[-1]["op"] == "close", f"{name}: the last step is close"
    return Scenario(name, steps)


def seed_segments(name: str) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted((FIXTURES / name / "segments").iterdir())}


def seed_closed(name: str) -> list[dict[str, Any]]:
    text = (FIXTURES / name / "closed.jsonl").read_text()
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def store_segments(store: SegmentStore) -> dict[str, bytes]:
    names = sorted(n for n in store.list_names() if parse_segment_name(n) is not None)
    return {n: store.read(n) for n in names}


def describe_difference(name: str, seed: bytes, ours: bytes) -> str:
    """Where two segment files first differ, in the format's terms."""
    pairs = enumerate(zip(seed, ours, strict=False))
    at = next((i for i, (a, b) in pairs if a != b), min(len(seed), len(ours)))
    if at < HEADER_SIZE:
        fields = [(0, "magic"), (4, "format_version"), (6, "reserved"), (8, "instance_id")]
        fields += [(16, "segment_seq"), (24, "created_at_micros"), (32, "prev_segment_hash")]
        where = next(f for off, f in reversed(fields) if at >= off)
    else:
        where = "frames"
    return (
        f"{name}: seed {len(seed)} bytes, walship {len(ours)} bytes; first difference at offset "
        f"{at} ({where}): seed {seed[at : at + 8].hex()} walship {ours[at : at + 8].hex()}"
    )


def assert_same_segments(name: str, seed: dict[str, bytes], ours: dict[str, bytes]) -> None:
    assert sorted(ours) == sorted(seed), f"{name}: segment files differ"
    diffs = [describe_difference(n, seed[n], ours[n]) for n in seed if seed[n] != ours[n]]
    assert not diffs, "\n".join(diffs)


# --- walship replays ------------------------------------------------------------------------


class ManagerReplay:
    """Drive walship's SegmentManager as the seed harness drives the seed's: append a batch,
    ask should_rotate, rotate. A restart is walship's own: close, recover, resume."""

    def __init__(self, scenario: Scenario, store: SegmentStore) -> None:
        self.scenario = scenario
        self.store = store
        self.mono_micros = 0
        self.clock = ManualClock(micros=scenario.open["wall_micros"], mono=0.0)
        self.closed: list[tuple[ClosedSegment, RotationReason | None]] = []
        self.manager = self._new_manager()
        self.manager.open_new(1)

    def _new_manager(self) -> SegmentManager:
        return SegmentManager(
            self.store, self.scenario.instance_id, self.scenario.policy, self.clock
        )

    def _check_rotation(self) -> None:
        reason = self.manager.should_rotate()
        if reason is not None:
            self.closed.append((self.manager.rotate(reason), reason))

    def run(self) -> None:
        for step in self.scenario.steps[1:]:
            getattr(self, "op_" + step["op"])(step)

    def op_append(self, step: dict[str, Any]) -> None:
        buf = bytearray()
        frames = step["frames"]
        for f in frames:
            buf += encode(f["seq"], f.get("ts", self.clock.micros), f["type"], payload_of(f))
        last_ts = frames[-1].get("ts", self.clock.micros)
        self.manager.append(
            buf, len(frames), frames[0]["seq"], frames[-1]["seq"], last_ts, step.get("sync", True)
        )
        self._check_rotation()

    def op_advance(self, step: dict[str, Any]) -> None:
        # Whole microseconds, the age as one division: no float drift across many advances.
        self.clock.micros += step["micros"]
        self.mono_micros += step["micros"]
        self.clock.mono = self.mono_micros / 1_000_000

    def op_force(self, step: dict[str, Any]) -> None:
        self.manager.force_rotate()

    def op_rotate(self, step: dict[str, Any]) -> None:
        self.manager.force_rotate()
        self._check_rotation()

    def op_tick(self, step: dict[str, Any]) -> None:
        self._check_rotation()

    def op_restart(self, step: dict[str, Any]) -> None:
        self.closed.append((self.manager.close(), None))
        recovered = recover(self.store, instance_id=self.scenario.instance_id, clock=self.clock)
        assert not recovered.report.problems and recovered.active is not None
        self.manager = self._new_manager()
        self.manager.resume(recovered.active)
        if step.get("new_segment", False):
            # walship never starts a new segment at a restart; the nearest is rotating right
            # after it, which is what the seed's new segment is compared with.
            self.closed.append((self.manager.rotate(RotationReason.FORCED), None))

    def op_close(self, step: dict[str, Any]) -> None:
        self.closed.append((self.manager.close(), None))


class _Rotations:
    def __init__(self) -> None:
        self.closed: list[tuple[ClosedSegment, str]] = []

    @walship.hookimpl
    def segment_closed(self, log: Any, segment: ClosedSegment, reason: str) -> None:
        self.closed.append((segment, reason))


def log_replay(scenario: Scenario, path: Path) -> tuple[list[tuple[ClosedSegment, str]], int]:
    """Replay through the public API, ``walship.open(...)`` with a ManualClock: batches get
    consecutive commit_seqs and the clock's timestamp, as the scenario must say. Returns the
    rotations the plugins heard, and how many ``rotate`` steps found the active segment empty
    (``Log.rotate()`` then does nothing and returns ``None``)."""
    clock = ManualClock(micros=scenario.open["wall_micros"], mono=0.0)
    rotations = _Rotations()
    skipped = 0

    def open_log() -> walship.Log:
        return walship.open(
            path,
            instance_id=scenario.instance_id,
            clock=clock,
            max_segment_bytes=scenario.open["max_segment_bytes"],
            max_segment_age=scenario.open["max_segment_age_micros"] / 1_000_000,
            plugins=[rotations],
            entry_point_plugins=False,
        )

    log = open_log()
    try:
        for step in scenario.steps[1:]:
            op = step["op"]
            if op == "append":
                frames = step["frames"]
                types = {f["type"] for f in frames}
                assert len(types) == 1, "a Log batch has one payload_type"
                assert all(f.get("ts", clock.micros) == clock.micros for f in frames)
                seqs = log.append_batch([payload_of(f) for f in frames], types.pop())
                assert seqs == [f["seq"] for f in frames]
            elif op == "advance":
                clock.micros += step["micros"]
                clock.mono += step["micros"] / 1_000_000
            elif op == "rotate":
                active = log.stats()["active_segment"]
                if log.rotate() is None:
                    skipped += 1
                    assert log.stats()["active_segment"] == active
            elif op == "restart":
                assert not step.get("new_segment", False)
                log.close()
                log = open_log()
                assert not log.recovery.repairs
            elif op == "close":
                log.close()
            else:
                raise AssertionError(f"op {op} cannot be replayed through the Log")
    finally:
        log.close()
    return rotations.closed, skipped


def closed_as_seed_records(
    closed: list[tuple[ClosedSegment, RotationReason | None]],
) -> list[tuple[int, RotationReason | None, int, str]]:
    return [(c.segment_seq, r, c.size, c.blake3.hex()) for c, r in closed]


def seed_records(name: str) -> list[tuple[int, RotationReason | None, int, str]]:
    return [
        (r["segment_seq"], SEED_REASONS[r["reason"]], r["size_bytes"], r["blake3"])
        for r in seed_closed(name)
    ]


# --- walship writes what the seed writes ----------------------------------------------------


def make_store(kind: str, tmp_path: Path) -> SegmentStore:
    return PosixStore(tmp_path / "wal") if kind == "posix" else MemoryStore()


@pytest.mark.parametrize("store_kind", ["posix", "memory"])
@pytest.mark.parametrize("name", SHARED)
def test_walship_writes_the_seeds_bytes(name: str, store_kind: str, tmp_path: Path) -> None:
    scenario = load(name)
    store = make_store(store_kind, tmp_path)
    replay = ManagerReplay(scenario, store)
    replay.run()
    assert_same_segments(name, seed_segments(name), store_segments(store))
    # Same rotations, for the same reasons, with the same sizes and hashes.
    assert closed_as_seed_records(replay.closed) == seed_records(name)


def header_only(segments: dict[str, bytes]) -> list[str]:
    """The segments that hold no frame, but the last (the one still active at close)."""
    return [n for n in list(segments)[:-1] if len(segments[n]) == HEADER_SIZE]


@pytest.mark.parametrize(
    "name",
    # where the seed rotated an empty segment the Log deliberately differs (the test below)
    [n for n in SHARED if load(n).open.get("walship_log") and not header_only(seed_segments(n))],
)
def test_the_log_api_writes_the_seeds_bytes(name: str, tmp_path: Path) -> None:
    scenario = load(name)
    seed = seed_segments(name)
    rotations, skipped = log_replay(scenario, tmp_path / "wal")
    assert skipped == 0
    assert_same_segments(name, seed, store_segments(PosixStore(tmp_path / "wal")))
    seed_rotations = [
        (seq, reason.value, size, digest)
        for seq, reason, size, digest in seed_records(name)
        if reason is not None
    ]
    assert [(c.segment_seq, r, c.size, c.blake3.hex()) for c, r in rotations] == seed_rotations


def test_the_log_never_rotates_an_empty_segment_the_seed_does(tmp_path: Path) -> None:
    """``forced_rotation`` rotates an empty segment (right after a rotation): the seed (and
    walship's SegmentManager, byte for byte) seal a header-only segment; ``Log.rotate()`` does
    nothing then. The Log's segments are the seed's segments that hold frames, in order, with
    the same frame bytes and instance_id, renumbered and chained among themselves."""
    name = "forced_rotation"
    seed = seed_segments(name)
    empty = header_only(seed)
    assert empty == [segment_name(2)]
    rotations, skipped = log_replay(load(name), tmp_path / "wal")
    assert skipped == len(empty)
    ours = store_segments(PosixStore(tmp_path / "wal"))
    kept = [n for n in seed if n not in empty]
    assert len(ours) == len(kept)
    for i, (n, m) in enumerate(zip(ours, kept, strict=True)):
        mine, theirs = SegmentHeader.decode(ours[n]), SegmentHeader.decode(seed[m])
        assert mine.segment_seq == i + 1 and mine.instance_id == theirs.instance_id
        assert ours[n][HEADER_SIZE:] == seed[m][HEADER_SIZE:]
    assert ours[kept[0]] == seed[kept[0]]  # the first is untouched by the difference
    scan = scan_store(PosixStore(tmp_path / "wal"))
    assert scan.ok and all(s.chain_ok for s in scan.segments[1:])
    assert [(c.segment_seq, r, c.frame_count) for c, r in rotations] == [
        (1, "forced", 1),
        (2, "forced", 2),
    ]


def test_every_log_api_scenario_is_replayed() -> None:
    # The Log's background thread rotates on age by itself, so age scenarios use the manager.
    assert {"basic", "size_rotation", "forced_rotation", "restart_resume"} <= {
        n for n in SHARED if load(n).open.get("walship_log")
    }
    assert {"age_rotation", "per_frame_fields"} <= set(SHARED)
    assert {"seed_restart_new_segment", "seed_idle_age"} == set(SEED_ONLY)


def test_a_changed_byte_is_reported_with_its_field() -> None:
    seed = seed_segments("basic")
    name, data = next(iter(seed.items()))
    for offset, field in [(27, "created_at_micros"), (40, "prev_segment_hash"), (70, "frames")]:
        ours = bytearray(data)
        ours[offset] ^= 1
        with pytest.raises(AssertionError, match=f"offset {offset} \\({field}\\)"):
            assert_same_segments("basic", seed, {name: bytes(ours)})


# --- walship reads what the seed wrote -------------------------------------------------------


@pytest.mark.parametrize("name", SCENARIOS)
def test_walship_decodes_every_seed_segment(name: str) -> None:
    scenario = load(name)
    frames: list[Frame] = []
    streamed: list[Frame] = []
    created = []
    for file_name, data in seed_segments(name).items():
        seq = parse_segment_name(file_name)
        header = SegmentHeader.decode(data, file_name, seq)
        assert header.instance_id == scenario.instance_id
        created.append(header.created_at_micros)
        frames += decode_all(memoryview(data)[HEADER_SIZE:], HEADER_SIZE)
        streamed += FrameReader(io.BytesIO(data[HEADER_SIZE:]), HEADER_SIZE)
    assert frames == streamed == scenario.frames()
    assert created == sorted(created) and created[0] == scenario.open["wall_micros"]


def copy_fixture(name: str, dest: Path) -> Path:
    shutil.copytree(FIXTURES / name / "segments", dest)
    return dest


def last_created_at(name: str) -> int:
    data = list(seed_segments(name).values())[-1]
    return SegmentHeader.decode(data).created_at_micros


@pytest.mark.parametrize("name", [*SHARED, "seed_idle_age"])
def test_walship_opens_and_continues_a_seed_log(name: str, tmp_path: Path) -> None:
    scenario = load(name)
    path = copy_fixture(name, tmp_path / "wal")
    seed = seed_segments(name)
    scan = scan_store(PosixStore(path), instance_id=scenario.instance_id)
    assert scan.ok, scan.problems
    assert all(s.chain_ok for s in scan.segments[1:])
    assert [s.blake3.hex() for s in scan.segments] == [blake3(d).hexdigest() for d in seed.values()]

    clock = ManualClock(micros=last_created_at(name), mono=0.0)
    options: dict[str, Any] = dict(clock=clock, max_segment_age=3600.0, entry_point_plugins=False)
    with walship.open(path, **options) as log:
        assert not log.recovery.repairs and not log.recovery.problems
        assert log.instance_id == scenario.instance_id
        assert list(log.read()) == scenario.frames()
        last = scenario.frames()[-1].commit_seq
        assert log.append(b"walship continues the seed's log") == last + 1
        log.rotate()
    with walship.open(path, **options) as log:
        assert not log.recovery.problems
        assert [f.commit_seq for f in log.read(from_seq=last)] == [last, last + 1]
    # The seed's closed segments are untouched; its last one was only appended to.
    names = list(seed)
    after = store_segments(PosixStore(path))
    for n in names[:-1]:
        assert after[n] == seed[n]
    assert after[names[-1]].startswith(seed[names[-1]])
    assert len(after) == len(seed) + 1


def test_manual_clock_advances_by_whole_microseconds() -> None:
    # 0.000249 * 1e6 is 248.99999999999997: truncating it would shift created_at by 1 us.
    clock = ManualClock(micros=0)
    for n in (249, 251, 489, 570_000, 1):
        before = clock.micros
        clock.advance(n / 1_000_000)
        assert clock.micros - before == n


# --- the deliberate differences ---------------------------------------------------------------


def test_seed_restart_into_a_new_segment_breaks_the_chain_walship_does_not(
    tmp_path: Path,
) -> None:
    name = "seed_restart_new_segment"
    seed = seed_segments(name)
    names = list(seed)
    assert SegmentHeader.decode(seed[names[1]]).prev_segment_hash == ZERO_HASH

    # Reading: every frame decodes; the scan names the zero prev hash, at offset 32 of segment 2.
    path = copy_fixture(name, tmp_path / "wal")
    scan = scan_store(PosixStore(path))
    assert [(p.kind, p.segment, p.offset) for p in scan.problems] == [
        (ProblemKind.CHAIN_MISMATCH, names[1], 32)
    ]
    with pytest.raises(walship.LogCorruptError, match=f"{names[1]} at offset 32"):
        walship.open(path, entry_point_plugins=False)
    assert store_segments(PosixStore(path)) == seed  # nothing was changed

    # Opening on purpose: the zero prev hash is accepted as the seed's restart, and listed.
    assert scan_store(PosixStore(path), seed_restarts=True).chain_restarts == [names[1]]
    with walship.open(path, entry_point_plugins=False, seed_restarts=True) as log:
        assert log.recovery.chain_restarts == [names[1]]
        assert [f.commit_seq for f in log.read()] == [f.commit_seq for f in load(name).frames()]
        log.append(b"walship goes on")
        log.rotate()  # and chains its own segments again
    assert store_segments(PosixStore(path))[names[1]] == seed[names[1]]
    later = scan_store(PosixStore(path), seed_restarts=True)
    assert later.ok and later.chain_restarts == [names[1]]
    # a zero prev hash is accepted only where asked, never a hash that is merely wrong
    tampered = tmp_path / "tampered"
    copy_fixture(name, tampered)
    second = tampered / names[-1]
    raw = bytearray(second.read_bytes())
    raw[40] ^= 1
    second.write_bytes(bytes(raw))
    problems = scan_store(PosixStore(tampered), seed_restarts=True).problems
    assert ProblemKind.CHAIN_MISMATCH in [p.kind for p in problems]

    # Writing: walship's files equal the seed's except for the prev hashes from segment 2 on,
    # and walship's chain is whole.
    store = MemoryStore()
    ManagerReplay(load(name), store).run()
    ours = store_segments(store)
    assert sorted(ours) == names
    for i, n in enumerate(names):
        assert ours[n][:32] == seed[n][:32] and ours[n][HEADER_SIZE:] == seed[n][HEADER_SIZE:]
        if i:
            prev = SegmentHeader.decode(ours[n]).prev_segment_hash
            assert prev == blake3(ours[names[i - 1]]).digest()
    assert ours[names[0]] == seed[names[0]]
    assert all(ours[n][32:HEADER_SIZE] != seed[n][32:HEADER_SIZE] for n in names[1:])
    assert scan_store(store).ok


def test_seed_rotates_an_idle_empty_segment_on_age_walship_does_not() -> None:
    name = "seed_idle_age"
    seed = seed_segments(name)
    names = list(seed)
    # The seed's second segment is a bare header, closed on age with no frame in it.
    assert len(seed[names[1]]) == HEADER_SIZE
    assert [r["reason"] for r in seed_closed(name)] == ["time", "time", "close"]

    store = MemoryStore()
    replay = ManagerReplay(load(name), store)
    replay.run()
    ours = store_segments(store)
    assert sorted(ours) == names
    assert ours[names[0]] == seed[names[0]]  # the age rotation of a segment with frames: same
    # walship keeps the empty segment open past its age (the same header as the seed's), the
    # next batch goes into it, and the age rotation follows that batch: a new, empty segment.
    assert ours[names[1]][:HEADER_SIZE] == seed[names[1]]
    assert ours[names[1]][HEADER_SIZE:] == seed[names[2]][HEADER_SIZE:]
    assert len(ours[names[2]]) == HEADER_SIZE
    assert [r for _, r in replay.closed] == [RotationReason.AGE, RotationReason.AGE, None]
    frames = [f for d in ours.values() for f in decode_all(memoryview(d)[HEADER_SIZE:])]
    assert frames == load(name).frames()
    assert scan_store(store).ok


# --- the fixtures are the seed's --------------------------------------------------------------


def _shared_seed() -> Path | None:
    candidates = [os.environ.get("WALSHIP_SEED", "")]
    candidates += [str(p / "shared" / "seed" / "segment.rs") for p in REPO.parents]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


def test_the_harness_runs_the_seed_verbatim() -> None:
    seed = _shared_seed()
    if seed is None:
        pytest.skip("shared/seed/segment.rs is not beside this checkout")
    assert (SEEDCHECK / "src" / "wal" / "segment.rs").read_bytes() == seed.read_bytes()


def _debian_crates_missing() -> str | None:
    if shutil.which("cargo") is None:
        return "cargo is not installed"
    registry = Path("/usr/share/cargo/registry")
    crates = ["blake3", "thiserror", "crc", "serde_json", "serde_derive", "tempfile"]
    missing = [c for c in crates if not any(registry.glob(f"{c}-[0-9]*"))]
    return f"Debian Rust crates missing: {', '.join(missing)}" if missing else None


def _files(root: Path) -> Iterator[tuple[str, bytes]]:
    for p in sorted(root.rglob("*")):
        if p.is_file():
            yield str(p.relative_to(root)), p.read_bytes()


@pytest.mark.one_python
@pytest.mark.skipif(_debian_crates_missing() is not None, reason=str(_debian_crates_missing()))
def test_regenerating_the_fixtures_gives_the_committed_bytes(tmp_path: Path) -> None:
    subprocess.run(
        ["bash", str(SEEDCHECK / "regenerate.sh"), str(tmp_path)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    assert dict(_files(tmp_path)) == {k: v for k, v in _files(FIXTURES) if k != "README.md"}, (
        "the committed fixtures are not what the seed writes: run tools/seedcheck/regenerate.sh"
    )
