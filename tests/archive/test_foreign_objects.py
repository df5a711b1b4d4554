"""Objects in the archive prefix that are not walship's (a README.txt, ``notes/x``, a
``backup.tar``) are ignored by restore, verify, ``open_archive().read()`` and the archive view
(``walship dump URL``), named in one warning line (and as a note in verify's report, never a
problem); names that look like walship's but are hostile or malformed are still refused. On
memory://, file:// and moto; one end-to-end case on radosgw."""

from __future__ import annotations

import logging
import posixpath
from collections.abc import Iterator
from pathlib import Path

import pytest
from archive_target import Archive, archived_log, frames_in, make_archive, verify_json
from click.testing import CliRunner

import walship
from walship.archive import ArchiveStore, manifest_name
from walship.archive.listing import ArchiveListing
from walship.archive.names import is_foreign_name
from walship.archive.read_store import ArchiveReadStore
from walship.archive.restore import restore
from walship.cli import build_cli
from walship.core.header import segment_name
from walship.errors import ArchiveNameError

FOREIGN = {"README.txt": b"this bucket holds the WAL\n", "notes/x": b"n", "backup.tar": b"t" * 99}
FOREIGN_LISTED = ["README.txt", "backup.tar", "notes"]
"""What one LIST shows of them: ``notes/x`` is the prefix ``notes``."""


def plant(archive: Archive, name: str, data: bytes) -> None:
    store = ArchiveStore(archive.url, archive.storage_options)
    path = f"{store.root}/{name}"
    if store.fs.protocol in ("file", ("file", "local")) or archive.url.startswith("file:"):
        store.fs.makedirs(posixpath.dirname(path), exist_ok=True)
    store.fs.pipe_file(path, data)
    store.fs.invalidate_cache()


@pytest.fixture(params=["memory", "file", "moto"])
def archive(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Archive]:
    a = make_archive(request.param, tmp_path)
    yield a
    a.remove()


def with_foreign(archive: Archive) -> list[object]:
    written = archived_log(archive, segments=3, frames=5)
    for name, data in FOREIGN.items():
        plant(archive, name, data)
    return written


def warnings_of(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "walship.archive" and r.levelno == logging.WARNING
    ]


def assert_one_warning(caplog: pytest.LogCaptureFixture) -> None:
    lines = [m for m in warnings_of(caplog) if "not walship's" in m]
    assert len(lines) == 1, lines
    for name in FOREIGN_LISTED:
        assert repr(name) in lines[0]
    assert "\n" not in lines[0]


# --- the names ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["README.txt", "notes", "backup.tar", "..evil", ".DS_Store", "walship.archive.json"]
)
def test_names_that_are_not_walships_are_foreign(name: str) -> None:
    assert is_foreign_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "segment_3.aedbwal",
        "segment_0000000000000003.aedbwal.orig",
        "SEGMENT_0000000000000001.AEDBWAL",
        "x.aedbwal",
        "segment_",
        "..",
        ".",
        "",
        "a\\b",
        "a\0b",
        "../etc/passwd",
    ],
)
def test_names_that_look_like_walships_or_are_hostile_are_not_foreign(name: str) -> None:
    assert not is_foreign_name(name)


def test_a_listing_sets_foreign_objects_aside_and_refuses_the_rest() -> None:
    root = "bucket/wal"
    entries = [
        {"name": f"{root}/{segment_name(1)}", "type": "file", "size": 100},
        {"name": f"{root}/{manifest_name(1)}", "type": "file", "size": 300},
        {"name": f"{root}/README.txt", "type": "file", "size": 10_000_000},
        {"name": f"{root}/notes", "type": "directory", "size": 0},
        {"name": f"{root}/{segment_name(9)}", "type": "directory", "size": 0},
        {"name": f"{root}/segment_9.aedbwal", "type": "file", "size": 1},
        {"name": f"{root}/../etc/passwd", "type": "file", "size": 5},
        {"name": f"{root}/", "type": "directory", "size": 0},
    ]
    listing = ArchiveListing.classify(entries, root, "s3://bucket/wal", max_object_bytes=1000)
    assert listing.objects == {1: {"none": 100}} and listing.manifests == {1: 300}
    assert listing.foreign == ["README.txt", "notes"]
    assert [n for n, _ in listing.rejected] == [
        segment_name(9),
        "segment_9.aedbwal",
        "../etc/passwd",
        "/",
    ]
    note = listing.foreign_note()
    assert note is not None and "'README.txt'" in note and "'notes'" in note
    assert ArchiveListing().foreign_note() is None


def test_many_foreign_objects_are_named_in_one_short_line() -> None:
    listing = ArchiveListing(foreign=[f"f{i}" for i in range(40)])
    note = listing.foreign_note()
    assert note is not None and "40 object(s)" in note and "(and 35 more)" in note


# --- restore, verify, read, the archive view ---------------------------------------------------


def test_restore_ignores_foreign_objects(
    archive: Archive, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    written = with_foreign(archive)
    caplog.set_level(logging.WARNING, "walship.archive")
    result = restore(archive.url, tmp_path / "r", storage_options=archive.storage_options)
    assert result.segments == 3 and result.frames == 15
    assert frames_in(tmp_path / "r") == written
    assert_one_warning(caplog)


def test_verify_reports_foreign_objects_as_a_note_not_damage(archive: Archive) -> None:
    with_foreign(archive)
    code, doc = verify_json(archive)
    assert code == 0 and doc["ok"] and doc["problems"] == []
    assert sorted(doc["foreign"]) == sorted(FOREIGN_LISTED)
    result = CliRunner().invoke(build_cli(), ["verify", archive.url, *archive.cli_options()])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert any("README.txt" in n and "not walship's" in n for n in notes), result.output
    assert "DAMAGED" not in result.output


def test_open_archive_reads_past_foreign_objects(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    written = with_foreign(archive)
    caplog.set_level(logging.WARNING, "walship.archive")
    assert list(walship.open_archive(archive.url, archive.storage_options).read()) == written
    assert_one_warning(caplog)


def test_the_archive_view_lists_past_foreign_objects(archive: Archive) -> None:
    with_foreign(archive)
    view = ArchiveReadStore(archive.url, archive.storage_options)
    assert view.list_names() == [segment_name(s) for s in (1, 2, 3)]
    result = CliRunner().invoke(build_cli(), ["dump", archive.url, *archive.cli_options()])
    assert result.exit_code == 0, result.output
    assert result.output.count("\n") == 15  # one line per frame


def test_a_log_archives_into_a_prefix_holding_only_foreign_objects(
    archive: Archive, tmp_path: Path
) -> None:
    for name, data in FOREIGN.items():
        plant(archive, name, data)
    settings = {"url": archive.url, "storage_options": archive.storage_options}
    with walship.open(tmp_path / "wal", archive=settings) as log:  # not refused as "holds segments"
        log.append(b"one")
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=30)
    restore(archive.url, tmp_path / "r", storage_options=archive.storage_options)
    assert [f.payload for f in frames_in(tmp_path / "r")] == [b"one"]


@pytest.mark.parametrize(
    "name", ["segment_3.aedbwal", "segment_0000000000000003.aedbwal.orig", "x.aedbwal"]
)
def test_names_that_look_like_walships_are_still_refused(
    archive: Archive, tmp_path: Path, name: str
) -> None:
    with_foreign(archive)
    plant(archive, name, b"#!/bin/sh\n")
    with pytest.raises(ArchiveNameError, match="refused"):
        restore(archive.url, tmp_path / "r", storage_options=archive.storage_options)
    assert not (tmp_path / "r").exists()
    result = CliRunner().invoke(build_cli(), ["verify", archive.url, *archive.cli_options()])
    assert result.exit_code != 0 and name in result.output
    with pytest.raises(ArchiveNameError):
        list(walship.open_archive(archive.url, archive.storage_options).read())


def test_a_segment_named_prefix_is_still_refused(archive: Archive, tmp_path: Path) -> None:
    with_foreign(archive)
    plant(archive, f"{segment_name(9)}/x", b"x")
    with pytest.raises(ArchiveNameError, match="not a file"):
        restore(archive.url, tmp_path / "r", storage_options=archive.storage_options)


# --- end to end on radosgw -----------------------------------------------------------------------


def test_radosgw_foreign_objects_end_to_end(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    a = make_archive("radosgw", tmp_path)
    try:
        written = with_foreign(a)
        caplog.set_level(logging.WARNING, "walship.archive")
        restore(a.url, tmp_path / "r", storage_options=a.storage_options)
        assert frames_in(tmp_path / "r") == written
        assert_one_warning(caplog)
        code, doc = verify_json(a)
        assert code == 0 and sorted(doc["foreign"]) == sorted(FOREIGN_LISTED)
        assert doc["problems"] == []
        assert list(walship.open_archive(a.url, a.storage_options).read()) == written
    finally:
        a.remove()


def test_a_process_names_each_foreign_object_once(
    archive: Archive, caplog: pytest.LogCaptureFixture
) -> None:
    """Loading the archive again (a follower's every round, a read after a restore) names no
    object it named already; a new one is named, alone."""
    written = with_foreign(archive)
    caplog.set_level(logging.WARNING, "walship.archive")
    assert list(walship.open_archive(archive.url, archive.storage_options).read()) == written
    assert_one_warning(caplog)
    caplog.clear()
    assert list(walship.open_archive(archive.url, archive.storage_options).read()) == written
    assert [m for m in warnings_of(caplog) if "not walship's" in m] == []
    plant(archive, "ANOTHER.txt", b"x")
    assert list(walship.open_archive(archive.url, archive.storage_options).read()) == written
    [line] = [m for m in warnings_of(caplog) if "not walship's" in m]
    assert "ANOTHER.txt" in line
