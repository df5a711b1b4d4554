"""Restore and verify agree on what an archive lacks, built on one plan (walship.archive.plan):
a restore that does not start at the log's first segment, or would leave out a segment (a gap,
an object whose manifest never arrived, a manifest whose object is gone), or whose numbering goes
back, fails naming every piece, unless a partial restore was asked for; ``walship verify URL``
reports the same pieces. A point-in-time restore checks every frame it keeps.

Every case runs on memory:// and file:// (``archive``), and those that take ``any_archive`` on
the S3 servers too."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from archive_target import (
    ALL_KINDS,
    LOCAL_KINDS,
    Archive,
    archived_log,
    frames_in,
    make_archive,
)
from archive_target import verify_json as verify
from blake3 import blake3

import walship
from walship.archive import ArchiveStore, manifest_name
from walship.archive.plan import ArchiveIncompleteError, ArchivePlanError
from walship.archive.restore import restore
from walship.core.frame import encode
from walship.core.header import SegmentHeader, segment_name
from walship.errors import ArchiveIntegrityError, RestoreError

T0 = 1_700_000_000_000_000


@pytest.fixture(params=LOCAL_KINDS)
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    made = make_archive(request.param, tmp_path)
    yield made
    made.remove()


@pytest.fixture(params=ALL_KINDS)
def any_archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    made = make_archive(request.param, tmp_path)
    yield made
    made.remove()


def problem_kinds(doc: dict[str, Any]) -> list[tuple[str, str]]:
    return [(p["file"], p["kind"]) for p in doc["problems"]]


def must_refuse(archive: Archive, tmp_path: Path, **kwargs: Any) -> ArchivePlanError:
    """The restore is refused (before anything is downloaded) and leaves nothing behind;
    missing pieces alone raise :class:`ArchiveIncompleteError`."""
    with pytest.raises(ArchivePlanError) as e:
        restore(archive.url, tmp_path / "r", storage_options=archive.storage_options, **kwargs)
    assert not (tmp_path / "r").exists()
    assert [p.name for p in tmp_path.iterdir() if "walship-restore" in p.name] == []
    return e.value


def partial(archive: Archive, tmp_path: Path, name: str = "partial", **kwargs: Any) -> Any:
    return restore(
        archive.url,
        tmp_path / name,
        storage_options=archive.storage_options,
        allow_partial=True,
        **kwargs,
    )


# --- the archive does not start at the log's first segment ----------------------------------


def test_an_archive_without_its_first_segments_is_refused_and_verify_says_so(
    any_archive: Archive, tmp_path: Path
) -> None:
    written = archived_log(any_archive)
    for seq in (1, 2):
        any_archive.delete(segment_name(seq))
        any_archive.delete(manifest_name(seq))
    e = must_refuse(any_archive, tmp_path)
    assert isinstance(e, ArchiveIncompleteError)  # only missing pieces
    assert e.segment == f"{segment_name(1)}..{segment_name(2)}"
    assert "does not start at the log's first segment" in str(e) and "--allow-partial" in str(e)
    code, doc = verify(any_archive)
    assert code == 1 and problem_kinds(doc) == [(e.segment, "missing_segment")]
    # a point-in-time restore cannot reach back past the missing start either
    for target in ({"to_seq": 5}, {"to_seq": 45}, {"to_time": T0 + 5_000_000}):
        must_refuse(any_archive, tmp_path, **target)
    result = partial(any_archive, tmp_path)
    assert result.partial and not result.anchored
    assert result.left_out == (
        f"{segment_name(1)}..{segment_name(2)}: the archive does not start at the log's first "
        f"segment ({segment_name(1)}): its first segment is {segment_name(3)}",
    )
    assert frames_in(tmp_path / "partial") == written[20:]


# --- a segment left out: gap, object without manifest, manifest without object -------------


@pytest.mark.parametrize(
    ("remove", "kind", "detail"),
    [
        ("both", "missing_segment", "nothing of it is in"),
        ("manifest", "missing_manifest", "its object is in"),
        ("object", "missing_segment", "its manifest is in the archive, its object"),
    ],
)
def test_a_segment_left_out_fails_the_restore_and_verify(
    any_archive: Archive, tmp_path: Path, remove: str, kind: str, detail: str
) -> None:
    written = archived_log(any_archive)
    if remove in ("both", "object"):
        any_archive.delete(segment_name(4))
    if remove in ("both", "manifest"):
        any_archive.delete(manifest_name(4))
    e = must_refuse(any_archive, tmp_path)
    assert isinstance(e, ArchiveIncompleteError)  # only missing pieces
    assert [(p.segment, p.kind) for p in e.problems] == [(segment_name(4), kind)]
    assert detail in str(e)
    code, doc = verify(any_archive)
    assert code == 1 and problem_kinds(doc) == [(segment_name(4), kind)]
    assert detail in doc["problems"][0]["detail"]
    # before the piece: a point-in-time restore needs nothing of it
    ok = restore(
        any_archive.url, tmp_path / "pit", to_seq=30, storage_options=any_archive.storage_options
    )
    assert ok.last_commit_seq == 30 and frames_in(tmp_path / "pit") == written[:30]
    # a partial restore stops before it, and says what it left out
    result = partial(any_archive, tmp_path)
    assert result.anchored and result.last_commit_seq == 30
    assert result.left_out[0].startswith(f"{segment_name(4)}: ")
    assert result.left_out[1] == (
        f"2 archived segment(s) after {segment_name(4)} (commit_seq 41..60) not restored: a log "
        "cannot go on past a missing segment"
    )
    assert frames_in(tmp_path / "partial") == written[:30]


def test_the_last_segment_without_its_manifest_is_not_silently_dropped(
    any_archive: Archive, tmp_path: Path
) -> None:
    """What verify used to call ok: the newest segment's upload never finished."""
    archived_log(any_archive)
    any_archive.delete(manifest_name(6))
    e = must_refuse(any_archive, tmp_path)
    assert isinstance(e, ArchiveIncompleteError)  # only missing pieces
    assert [(p.segment, p.kind) for p in e.problems] == [(segment_name(6), "missing_manifest")]
    code, doc = verify(any_archive)
    assert code == 1 and problem_kinds(doc) == [(segment_name(6), "missing_manifest")]
    assert partial(any_archive, tmp_path).last_commit_seq == 50


def test_every_missing_piece_is_named_at_once(any_archive: Archive, tmp_path: Path) -> None:
    archived_log(any_archive, segments=8)
    any_archive.delete(segment_name(1))
    any_archive.delete(manifest_name(1))
    any_archive.delete(manifest_name(3))
    for seq in (5, 6):
        any_archive.delete(segment_name(seq))
        any_archive.delete(manifest_name(seq))
    expected = [
        (segment_name(1), "missing_segment"),
        (segment_name(3), "missing_manifest"),
        (f"{segment_name(5)}..{segment_name(6)}", "missing_segment"),
    ]
    e = must_refuse(any_archive, tmp_path)
    assert isinstance(e, ArchiveIncompleteError)  # only missing pieces
    assert [(p.segment, p.kind) for p in e.problems] == expected
    assert (
        f"{segment_name(5)}..{segment_name(6)} are missing (missing_segment): nothing of it"
        in str(e)
    )
    assert f"after {segment_name(4)} and before {segment_name(7)}" in str(e)
    code, doc = verify(any_archive)
    assert code == 1 and problem_kinds(doc) == expected
    result = partial(any_archive, tmp_path)  # segment 2 only: 3 is incomplete
    assert (result.first_commit_seq, result.last_commit_seq) == (11, 20)
    assert [line.split(":")[0] for line in result.left_out[:2]] == [
        segment_name(1),
        segment_name(3),
    ]


def test_a_partial_restore_refuses_damage_all_the_same(
    any_archive: Archive, tmp_path: Path
) -> None:
    archived_log(any_archive)
    any_archive.delete(segment_name(1))
    any_archive.delete(manifest_name(1))
    raw = any_archive.read(segment_name(3))
    any_archive.write(segment_name(3), raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ArchiveIntegrityError, match=segment_name(3)) as e:
        partial(any_archive, tmp_path)
    assert "altered_segment" in str(e.value) and "corrupt_frame" in str(e.value)
    assert not (tmp_path / "partial").exists()


# --- commit_seq must rise from segment to segment ----------------------------------------


def chained_segment(
    prev: bytes, seq: int, instance_id: int, first_seq: int, stamps: list[int]
) -> bytes:
    """Segment ``seq`` chained to ``prev`` (its bytes), one frame per stamp from ``first_seq``."""
    buf = bytearray(SegmentHeader(instance_id, seq, stamps[0], blake3(prev).digest()).encode())
    for i, ts in enumerate(stamps):
        buf += encode(first_seq + i, ts, 0, b"frame %d at %d" % (first_seq + i, ts))
    return bytes(buf)


def poison(archive: Archive, segments: int) -> None:
    """Archive a segment after the last, chained to it, whose numbering restarts at 1: what a
    log that lost its archive record (issue 10, item 6) uploaded."""
    store = ArchiveStore(archive.url, archive.storage_options)
    last = store.stat(segment_name(segments))
    assert last is not None
    prev = archive.read(segment_name(segments))
    raw = chained_segment(
        prev, segments + 1, last.instance_id, 1, [T0 + 10**8 + i for i in range(5)]
    )
    store.put(segment_name(segments + 1), raw)


def test_an_archive_whose_numbering_restarts_is_refused(
    any_archive: Archive, tmp_path: Path
) -> None:
    written = archived_log(any_archive, segments=3)
    poison(any_archive, 3)
    e = must_refuse(any_archive, tmp_path)
    assert [(p.segment, p.kind) for p in e.problems] == [(segment_name(4), "corrupt_frame")]
    assert "commit_seq 1 does not follow 30" in str(e)
    code, doc = verify(any_archive)
    assert code == 1 and problem_kinds(doc) == [(segment_name(4), "corrupt_frame")]
    assert not isinstance(e, ArchiveIncompleteError)  # damage, not a missing piece
    with pytest.raises(ArchivePlanError, match="does not follow 30"):
        partial(any_archive, tmp_path)  # damage: not something a partial restore skips
    with pytest.raises(ArchivePlanError, match="does not follow 30"):
        list(walship.open_archive(any_archive.url, any_archive.storage_options).read())
    # the prefix before the poisoned segment is a sound log
    result = restore(
        any_archive.url, tmp_path / "pit", to_seq=30, storage_options=any_archive.storage_options
    )
    assert result.segments == 3 and frames_in(tmp_path / "pit") == written


def test_a_manifest_that_hides_the_restart_is_caught_by_the_bytes(
    archive: Archive, tmp_path: Path
) -> None:
    """The plan checks the numbering on the manifests' claims; each claim is checked against
    the bytes when they are downloaded, so a manifest that lies about them is named."""
    archived_log(archive, segments=3)
    poison(archive, 3)
    doc = json.loads(archive.read(manifest_name(4)))
    doc.update(first_commit_seq=31, last_commit_seq=35)
    archive.write(manifest_name(4), json.dumps(doc).encode())
    with pytest.raises(ArchiveIntegrityError, match="first_commit_seq is 31, the segment says 1"):
        restore(archive.url, tmp_path / "r")
    code, out = verify(archive)
    assert code == 1 and problem_kinds(out) == [
        (segment_name(4), "bad_manifest"),
        (segment_name(4), "bad_manifest"),
        (segment_name(4), "corrupt_frame"),  # on the bytes, the numbering does go back
    ]


# --- restore and verify agree ------------------------------------------------------------


def _flip(archive: Archive) -> None:
    raw = archive.read(segment_name(2))
    archive.write(segment_name(2), raw[:100] + bytes([raw[100] ^ 0x10]) + raw[101:])


def _forge_manifest_chain(archive: Archive) -> None:
    doc = json.loads(archive.read(manifest_name(3)))
    doc["prev_segment_hash"] = "22" * 32
    archive.write(manifest_name(3), json.dumps(doc).encode())


def _bad_manifest(archive: Archive) -> None:
    archive.write(manifest_name(2), b"{not json")


def _drop(*names: str) -> Callable[[Archive], None]:
    def drop(archive: Archive) -> None:
        for name in names:
            archive.delete(name)

    return drop


AGREEMENT: dict[str, tuple[Callable[[Archive], None], list[tuple[str, str]]]] = {
    "intact": (lambda archive: None, []),
    "no start": (
        _drop(segment_name(1), manifest_name(1)),
        [(segment_name(1), "missing_segment")],
    ),
    "gap": (_drop(segment_name(3), manifest_name(3)), [(segment_name(3), "missing_segment")]),
    "no manifest": (_drop(manifest_name(3)), [(segment_name(3), "missing_manifest")]),
    "no object": (_drop(segment_name(3)), [(segment_name(3), "missing_segment")]),
    "flipped byte": (
        _flip,
        [(segment_name(2), "altered_segment"), (segment_name(2), "corrupt_frame")],
    ),
    # the manifest lies about the prev hash; the bytes (which its BLAKE3 vouches for) chain
    "forged chain": (_forge_manifest_chain, [(segment_name(3), "bad_manifest")]),
    "bad manifest": (_bad_manifest, [(segment_name(2), "bad_manifest")]),
    "restarted numbering": (
        lambda archive: poison(archive, 4),
        [(segment_name(5), "corrupt_frame")],
    ),
}


@pytest.mark.parametrize("case", sorted(AGREEMENT))
def test_restore_fails_exactly_when_verify_reports_damage(
    archive: Archive, tmp_path: Path, case: str
) -> None:
    damage, expected = AGREEMENT[case]
    archived_log(archive, segments=4)
    damage(archive)
    code, doc = verify(archive)
    assert problem_kinds(doc) == expected and code == (1 if expected else 0)
    if not expected:
        assert restore(archive.url, tmp_path / "r").frames == doc["frames"] == 40
        return
    with pytest.raises(ArchiveIntegrityError) as e:  # ArchiveIncompleteError is one
        restore(archive.url, tmp_path / "r")
    assert e.value.segment == expected[0][0]
    assert any(kind in str(e.value) for name, kind in expected if name == e.value.segment)
    assert not (tmp_path / "r").exists()


# --- a point in time: every frame kept is checked ----------------------------------------


def stepped_archive(archive: Archive) -> list[tuple[int, int]]:
    """Three segments written by a writer whose clock stepped back in the second one (T0 + s):
    1: 1..3 at 10, 20, 30; 2: 4..7 at 40, 200, 50, 60; 3: 8..10 at 70, 80, 90. Returns
    (commit_seq, seconds) of every frame."""
    stamps = [[10, 20, 30], [40, 200, 50, 60], [70, 80, 90]]
    store = ArchiveStore(archive.url, archive.storage_options)
    prev = b""
    seq = 1
    frames = []
    for i, seconds in enumerate(stamps, start=1):
        micros = [T0 + s * 1_000_000 for s in seconds]
        raw = chained_segment(prev, i, 7, seq, micros)
        if i == 1:  # the first segment of a log: a zero prev hash
            raw = raw[:32] + bytes(32) + raw[64:]
        store.put(segment_name(i), raw)
        frames += [(seq + k, s) for k, s in enumerate(seconds)]
        prev, seq = raw, seq + len(seconds)
    return frames


@pytest.mark.parametrize(
    ("target", "kept"),
    [
        (100, [1, 2, 3, 4]),  # frame 5 (at 200) is the first past it: the rest is left out
        (45, [1, 2, 3, 4]),
        (35, [1, 2, 3]),
        (300, list(range(1, 11))),
        (10, [1]),
    ],
)
def test_a_point_in_time_never_yields_a_frame_stamped_after_it(
    any_archive: Archive, tmp_path: Path, target: int, kept: list[int]
) -> None:
    frames = dict(stepped_archive(any_archive))
    when = T0 + target * 1_000_000
    result = restore(
        any_archive.url, tmp_path / "r", to_time=when, storage_options=any_archive.storage_options
    )
    got = frames_in(tmp_path / "r")
    assert [f.commit_seq for f in got] == kept
    assert all(f.timestamp_micros <= when for f in got)
    assert all(frames[f.commit_seq] * 1_000_000 + T0 == f.timestamp_micros for f in got)
    assert result.last_commit_seq == kept[-1] and result.frames == len(kept)
    # the restored log goes on after its last segment, chained to it
    with walship.open(tmp_path / "r") as log:
        assert log.append(b"after the point in time") == kept[-1] + 1


# --- times on the command line, on every Python -------------------------------------------


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("2023-11-14T22:13:45.5", 25.5),  # Python 3.10's fromisoformat refuses this one
        ("2023-11-14T22:13:45.5Z", 25.5),
        ("2023-11-14T22:13:45.500000Z", 25.5),
        ("2023-11-14T22:13:45.5000009Z", 25.5),  # finer than a microsecond: cut, never rounded up
        ("2023-11-14T22:13:45,25+00:00", 25.25),
        ("2023-11-14T23:13:45.5+01:00", 25.5),
        ("2023-11-14T23:13:45.5+0100", 25.5),
        ("2023-11-14T17:13:45.5-05", 25.5),
        ("2023-11-14 22:13:45.5 Z", 25.5),
        ("2023-11-14T22:13:45", 25),
        ("2023-11-14T22:13", -20),
        ("2023-11-14t22:13:45.123z", 25.123),
    ],
)
def test_iso_times_parse_the_same_on_every_python(text: str, seconds: float) -> None:
    from walship.archive.restore import parse_time

    assert parse_time(text) == T0 + round(seconds * 1_000_000)


@pytest.mark.parametrize(
    "text", ["yesterday", "2023-02-30", "2023-11-14T24:00", "2023-11-14T22:13:45+24:00", "12:00"]
)
def test_bad_times_are_one_clear_error(text: str) -> None:
    from walship.archive.restore import parse_time

    with pytest.raises(RestoreError, match="is not an ISO 8601 time"):
        parse_time(text)


def test_a_day_is_a_time_too() -> None:
    from walship.archive.restore import parse_time

    assert parse_time("2023-11-14") == 1_699_920_000_000_000  # midnight UTC


def test_whatever_a_log_that_lost_its_record_uploaded_restore_never_writes_a_broken_log(
    tmp_path: Path,
) -> None:
    """Issue 10, item 6, end to end: a log archived with retention, its archive record moved
    aside (as an old error message advised), reopened and written again. Whether the log
    restarts its numbering (a poisoned archive) or goes on from the archive, the restore
    either refuses, naming the segment, with verify reporting it too, or writes a directory
    that opens with every frame in order."""
    archive = make_archive("file", tmp_path)
    wal = tmp_path / "wal"
    settings = {"url": archive.url, "workers": 2, "upload_process": False}
    with walship.open(wal, archive=settings, retention={"keep_local": "until_archived"}) as log:
        for s in range(3):
            log.append_batch([b"first life %d/%d" % (s, i) for i in range(5)])
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    (wal / "walship.archive.json").rename(tmp_path / "record.aside")
    try:
        with walship.open(wal, archive=settings) as log:
            log.append_batch([b"second life %d" % i for i in range(5)])
            log.rotate()
            assert log.archiver is not None
            log.archiver.flush(timeout=30)
    except walship.WalshipError:
        pass  # a log that refuses to go on without its record poisons nothing
    code, doc = verify(archive)
    try:
        result = restore(archive.url, tmp_path / "r")
    except ArchivePlanError as e:
        assert code == 1 and e.segment in {p["file"] for p in doc["problems"]}
        assert not (tmp_path / "r").exists()
        return
    assert code == 0, doc
    seqs = [f.commit_seq for f in frames_in(tmp_path / "r")]
    assert seqs == sorted(set(seqs)) and len(seqs) == result.frames >= 15
