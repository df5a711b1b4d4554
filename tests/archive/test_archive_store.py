"""The archive store over fsspec (memory://, file://, s3:// on moto and on radosgw, and a store
that fails): whole-or-nothing
puts that never overwrite, verified and idempotent; manifests; validated listings; the read-only
segment store that lets scan_store verify an archive."""

from __future__ import annotations

import json
import os
import secrets
from collections.abc import Iterator
from pathlib import Path

import pytest
from s3server import FlakyFileSystem, closed_segments, moto_endpoint, new_bucket, radosgw_server

from walship.archive import (
    MAX_MANIFEST_BYTES,
    TEMP_PREFIX,
    ArchiveReadStore,
    ArchiveStore,
    SegmentManifest,
    describe_segment,
    manifest_name,
    object_name,
    parse_object_name,
)
from walship.core.header import HEADER_SIZE, parse_segment_name
from walship.core.scan import ProblemKind, scan_store
from walship.errors import (
    ArchiveConflictError,
    ArchiveError,
    ArchiveIntegrityError,
    ArchiveMissingError,
    ArchiveNameError,
    ArchiveReadOnlyError,
    WalshipError,
)

SEGMENTS = closed_segments(4)
NAMES = sorted(SEGMENTS)


@pytest.fixture(params=["memory", "file", "moto", "radosgw"])
def url(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    """An archive URL; on S3 the server is reached through the environment (endpoint, keys),
    as a deployment without storage options would."""
    if request.param == "memory":
        yield f"memory://archive-{secrets.token_hex(6)}/wal"
        return
    if request.param == "file":
        yield (tmp_path / "archive").as_uri()
        return
    import s3fs

    server = moto_endpoint() if request.param == "moto" else radosgw_server()
    bucket = new_bucket(server)
    options = bucket.storage_options
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", server.endpoint)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", options["key"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", options["secret"])
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_SECURITY_TOKEN", raising=False)
    s3fs.S3FileSystem.clear_instance_cache()  # instances are cached by their options alone
    yield bucket.url
    s3fs.S3FileSystem.clear_instance_cache()


def plant(store: ArchiveStore, name: str, data: bytes) -> None:
    """Write an object behind the archive's back (what a person or another tool might do)."""
    path = f"{store.root}/{name}"
    store.fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
    store.fs.pipe_file(path, data)
    store.fs.invalidate_cache()


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "/etc/passwd",
        "sub/segment_0000000000000001.aedbwal",
        "..",
        "segment_1.aedbwal",
        "segment_0000000000000001.aedbwal.gz",
        "segment_0000000000000001.aedbwal.tmp",
        "SEGMENT_0000000000000001.AEDBWAL",
        "segment_0000000000000001.aedbwal\\..\\x",
        "x" * 300,
        "",
    ],
)
def test_names_other_than_segments_are_refused(name: str) -> None:
    with pytest.raises(ArchiveNameError, match="refused"):
        parse_object_name(name)


def test_segment_object_and_manifest_names_parse() -> None:
    assert parse_object_name(object_name(7)).segment_seq == 7
    zst = parse_object_name(object_name(7, "zstd"))
    assert (zst.kind, zst.compression) == ("segment", "zstd")
    assert parse_object_name(manifest_name(7)).kind == "manifest"


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_put_lists_stats_and_gets_back_every_byte(url: str, compression: str) -> None:
    store = ArchiveStore(url, compression=compression)
    for name in NAMES:
        result = store.put(name, SEGMENTS[name])
        assert result.uploaded
        assert result.url == f"{store.url}/{result.manifest.object}"
    listing = store.list()
    assert listing.rejected == [] and listing.temporary == []
    assert sorted(listing.manifests) == [parse_segment_name(n) for n in NAMES]
    for name in NAMES:
        m = store.stat(name)
        assert m is not None and m.compression == compression
        assert m.size == len(SEGMENTS[name])
        assert store.get(m) == SEGMENTS[name]
    assert store.stat("segment_0000000000000099.aedbwal") is None


def test_zstd_objects_are_smaller_and_the_chain_is_over_raw_bytes(url: str) -> None:
    store = ArchiveStore(url, compression="zstd")
    name = NAMES[1]
    m = store.put(name, SEGMENTS[name]).manifest
    assert m.stored_size < m.size
    assert m.blake3 == describe_segment(name, SEGMENTS[name]).blake3
    assert store.list().objects[m.segment_seq] == {"zstd": m.stored_size}


def test_manifest_carries_size_hash_seqs_and_times(url: str) -> None:
    store = ArchiveStore(url)
    m = store.put(NAMES[2], SEGMENTS[NAMES[2]]).manifest
    assert m.frame_count == 20
    assert m.first_commit_seq == 41 and m.last_commit_seq == 60
    assert m.first_timestamp_micros is not None and m.last_timestamp_micros is not None
    prev = describe_segment(NAMES[1], SEGMENTS[NAMES[1]])
    assert m.prev_segment_hash == prev.blake3
    doc = json.loads(store.fs.cat_file(f"{store.root}/{m.manifest_object}"))
    assert doc["blake3"] == m.blake3.hex() and doc["size"] == m.size


def test_a_second_put_is_harmless(url: str) -> None:
    store = ArchiveStore(url)
    first = store.put(NAMES[0], SEGMENTS[NAMES[0]])
    again = store.put(NAMES[0], SEGMENTS[NAMES[0]])
    assert first.uploaded and not again.uploaded
    assert again.manifest == first.manifest
    # also across compressions: the raw bytes decide, nothing is written twice
    assert not ArchiveStore(url, compression="zstd").put(NAMES[0], SEGMENTS[NAMES[0]]).uploaded
    assert len(store.list().objects[1]) == 1


def test_different_content_is_never_overwritten(url: str) -> None:
    store = ArchiveStore(url)
    store.put(NAMES[0], SEGMENTS[NAMES[0]])
    forked = closed_segments(1, frames=7)[NAMES[0]]
    with pytest.raises(ArchiveConflictError, match="refusing to overwrite"):
        store.put(NAMES[0], forked)
    assert store.get(store.stat(NAMES[0]) or pytest.fail()) == SEGMENTS[NAMES[0]]


@pytest.mark.parametrize("kind", ["truncated", "empty", "garbage"])
def test_a_planted_object_blocks_the_put_and_is_named(url: str, kind: str) -> None:
    store = ArchiveStore(url)
    name, raw = NAMES[1], SEGMENTS[NAMES[1]]
    planted = {"truncated": raw[:100], "empty": b"", "garbage": os.urandom(len(raw))}[kind]
    plant(store, name, planted)
    with pytest.raises(ArchiveConflictError) as e:
        store.put(name, raw)
    assert name in str(e.value) and "refusing to overwrite" in str(e.value)
    assert store.stat(name) is None  # no manifest: the segment does not count as archived
    store.fs.rm_file(f"{store.root}/{name}")
    assert store.put(name, raw).uploaded


def test_an_object_left_without_manifest_by_an_interrupted_put_is_completed(url: str) -> None:
    store = ArchiveStore(url)
    name, raw = NAMES[0], SEGMENTS[NAMES[0]]
    plant(store, name, raw)  # the object made it, the manifest did not
    result = store.put(name, raw)
    assert not result.uploaded and store.stat(name) == result.manifest


def test_an_object_deleted_under_its_manifest_is_put_back(url: str) -> None:
    store = ArchiveStore(url)
    name, raw = NAMES[0], SEGMENTS[NAMES[0]]
    m = store.put(name, raw).manifest
    store.fs.rm_file(f"{store.root}/{m.object}")
    with pytest.raises(ArchiveMissingError, match="missing"):
        store.get(m)
    assert store.put(name, raw).uploaded
    assert store.get(m) == raw


def test_a_vanished_object_is_put_back_in_its_manifests_compression(url: str) -> None:
    """The manifest says zstd, its object is gone, and a put without compression comes: the
    object goes back as the manifest describes it (zstd), and the uncompressed object the put
    created first is removed again: no stray object is left."""
    name, raw = NAMES[0], SEGMENTS[NAMES[0]]
    m = ArchiveStore(url, compression="zstd").put(name, raw).manifest
    store = ArchiveStore(url)
    store.fs.rm_file(f"{store.root}/{m.object}")
    result = store.put(name, raw)
    assert result.uploaded and result.manifest == m
    assert store.get(m) == raw
    assert store.list().objects[1] == {"zstd": m.stored_size}


@pytest.mark.parametrize("damage", ["truncate", "flip", "extend"])
def test_get_refuses_an_altered_object(url: str, damage: str) -> None:
    store = ArchiveStore(url)
    name, raw = NAMES[2], SEGMENTS[NAMES[2]]
    m = store.put(name, raw).manifest
    bad = {
        "truncate": raw[:-5],
        "flip": raw[:200] + bytes([raw[200] ^ 1]) + raw[201:],
        "extend": raw + b"\0" * 10,
    }[damage]
    store.fs.rm_file(f"{store.root}/{name}")
    plant(store, name, bad)
    with pytest.raises(ArchiveIntegrityError) as e:
        store.get(m)
    assert e.value.segment == name and name in str(e.value)


def test_local_damage_is_refused_before_upload(url: str) -> None:
    store = ArchiveStore(url)
    name, raw = NAMES[1], SEGMENTS[NAMES[1]]
    at = HEADER_SIZE + 30
    damaged = raw[:at] + bytes([raw[at] ^ 0xFF]) + raw[at + 1 :]
    with pytest.raises(ArchiveIntegrityError, match="damaged"):
        store.put(name, damaged)
    with pytest.raises(ArchiveIntegrityError, match="changed since it was closed"):
        store.put(name, raw, expected_blake3=b"\1" * 32)
    assert store.list().objects == {}


def test_listing_refuses_false_segments_and_skips_temporary_and_foreign_ones(url: str) -> None:
    store = ArchiveStore(url, max_object_bytes=10_000)
    store.put(NAMES[0], SEGMENTS[NAMES[0]])
    plant(store, "notes.txt", b"hello")
    plant(store, "segment_0000000000000002.aedbwal.bak", b"x")
    plant(store, "segment_0000000000000003.aedbwal", b"x" * 10_001)  # larger than the limit
    plant(store, manifest_name(4), b"{" * (MAX_MANIFEST_BYTES + 1))
    plant(store, "sub/segment_0000000000000005.aedbwal", b"x")  # a "directory"
    plant(store, f"{TEMP_PREFIX}0123-{NAMES[1]}", b"partial")
    listing = store.list()
    refused = {name for name, _ in listing.rejected}
    assert refused == {
        "segment_0000000000000002.aedbwal.bak",
        "segment_0000000000000003.aedbwal",
        manifest_name(4),
    }
    assert sorted(listing.foreign) == ["notes.txt", "sub"]  # not walship's: ignored, named
    assert listing.temporary == [f"{TEMP_PREFIX}0123-{NAMES[1]}"]
    assert listing.segment_seqs == [1]
    reasons = dict(listing.rejected)
    assert "more than the 10000" in reasons["segment_0000000000000003.aedbwal"]
    with pytest.raises(ArchiveNameError, match="refused"):
        listing.raise_rejected(store.url)


def test_invalid_manifests_are_named(url: str) -> None:
    store = ArchiveStore(url)
    name = NAMES[0]
    good = store.put(name, SEGMENTS[name]).manifest
    doc = json.loads(good.to_json())
    cases = {
        b"not json": "not JSON",
        json.dumps({**doc, "blake3": "zz"}).encode(): "blake3",
        json.dumps({**doc, "size": -1}).encode(): "size",
        json.dumps({**doc, "name": NAMES[1]}).encode(): "describes",
        json.dumps({**doc, "compression": "lz4"}).encode(): "compression",
        json.dumps({**doc, "version": 9}).encode(): "version",
    }
    for data, what in cases.items():
        with pytest.raises(ArchiveIntegrityError, match=what):
            SegmentManifest.from_json(data, 1)
    store.fs.rm_file(f"{store.root}/{manifest_name(1)}")
    plant(store, manifest_name(1), b"{}")
    with pytest.raises(ArchiveIntegrityError, match=manifest_name(1)):
        store.stat(name)


def test_a_store_that_fails_the_first_puts_leaves_nothing_behind() -> None:
    flaky = FlakyFileSystem.make(fail_puts=2, partial=50)
    store = ArchiveStore(f"{flaky.protocol[0]}://bucket/wal")
    name, raw = NAMES[0], SEGMENTS[NAMES[0]]
    for _ in range(2):
        with pytest.raises(OSError, match="injected failure"):
            store.put(name, raw)
        listing = store.list()
        assert listing.objects == {} and listing.manifests == {} and listing.rejected == []
    assert store.put(name, raw).uploaded  # generic path: temporary object, then a move
    assert store.get(store.stat(name) or pytest.fail()) == raw
    assert store.list().temporary == []


def test_unknown_protocols_and_missing_zstd_are_clear_errors() -> None:
    with pytest.raises(ArchiveError, match="cannot open archive nosuch://x"):
        ArchiveStore("nosuch://x")
    with pytest.raises(ArchiveError, match="compression 'lz4'"):
        ArchiveStore("memory://x", compression="lz4")


# --- the read-only segment store ------------------------------------------------------------


def filled(url: str, compression: str = "none") -> ArchiveStore:
    store = ArchiveStore(url, compression=compression)
    for name in NAMES:
        store.put(name, SEGMENTS[name])
    return store


@pytest.mark.parametrize("compression", ["none", "zstd"])
def test_scan_store_verifies_an_archive(url: str, compression: str) -> None:
    filled(url, compression)
    view = ArchiveReadStore(url)
    assert view.list_names() == NAMES
    assert view.size(NAMES[1]) == len(SEGMENTS[NAMES[1]])
    assert view.read(NAMES[1], 64, 10) == SEGMENTS[NAMES[1]][64:74]
    scan = scan_store(view)
    assert scan.ok and scan.frame_count == 80 and scan.last_commit_seq == 80


def test_scan_of_an_archive_names_a_missing_segment(url: str) -> None:
    store = filled(url)
    for obj in (NAMES[1], manifest_name(2)):
        store.fs.rm_file(f"{store.root}/{obj}")
    scan = scan_store(ArchiveReadStore(url))
    assert [(p.kind, p.segment) for p in scan.problems] == [(ProblemKind.MISSING_SEGMENT, NAMES[1])]


def test_scan_of_an_archive_names_an_altered_segment(url: str) -> None:
    store = filled(url)
    raw = SEGMENTS[NAMES[3]]
    store.fs.rm_file(f"{store.root}/{NAMES[3]}")
    plant(store, NAMES[3], raw[: len(raw) - 25])  # the last frame gone: still valid frames
    scan = scan_store(ArchiveReadStore(url))  # verification reports; it does not raise
    assert [(p.kind, p.segment) for p in scan.problems] == [(ProblemKind.CHAIN_MISMATCH, NAMES[3])]
    with pytest.raises(ArchiveIntegrityError) as e:
        ArchiveReadStore(url).read(NAMES[3])
    assert e.value.segment == NAMES[3]
    # a manifest's object that is gone is named too
    store.fs.rm_file(f"{store.root}/{NAMES[3]}")
    scan = scan_store(ArchiveReadStore(url))
    assert [(p.kind, p.segment) for p in scan.problems] == [(ProblemKind.MISSING_SEGMENT, NAMES[3])]
    with pytest.raises(ArchiveMissingError, match=NAMES[3]):
        ArchiveReadStore(url).read(NAMES[3])


def test_the_archive_view_is_read_only(url: str) -> None:
    filled(url)
    view = ArchiveReadStore(url, None)
    for call in (
        lambda: view.lock(),
        lambda: view.create("segment_0000000000000009.aedbwal", b""),
        lambda: view.open_append(NAMES[0]),
        lambda: view.truncate(NAMES[0], 0),
        lambda: view.remove(NAMES[0]),
        lambda: view.rename(NAMES[0], NAMES[1]),
        lambda: view.write_atomic("x", b""),
    ):
        with pytest.raises(ArchiveReadOnlyError, match="read-only archive") as e:
            call()
        assert isinstance(e.value, WalshipError)
    view.unlock()
    view.close()
    assert view.list_names() == NAMES


def test_the_archive_view_refuses_false_segments_and_ignores_foreign_objects(url: str) -> None:
    store = filled(url)
    plant(store, "evil.sh", b"#!/bin/sh")
    assert ArchiveReadStore(url).list_names() == NAMES
    plant(store, "segment_9.aedbwal", b"#!/bin/sh")
    with pytest.raises(ArchiveNameError, match=r"segment_9\.aedbwal"):
        ArchiveReadStore(url).list_names()


def test_a_listing_is_classified_without_a_bucket() -> None:
    from walship.archive.listing import ArchiveListing

    root = "bucket/wal"
    entries = [
        {"name": f"{root}/{object_name(1)}", "type": "file", "size": 100},
        {"name": f"{root}/{manifest_name(1)}", "type": "file", "size": 300},
        {"name": f"{root}/{TEMP_PREFIX}abc-{object_name(2)}", "type": "file", "size": 5},
        {"name": f"{root}/../etc/passwd", "type": "file", "size": 5},
        {"name": f"{root}/{object_name(3)}", "type": "directory", "size": 0},
        {"name": "bucket/other/x", "type": "file", "size": 1},
        {"name": f"{root}/{object_name(4)}", "type": "file", "size": 10_000},
        {"name": f"{root}/", "type": "directory", "size": 0},
    ]
    listing = ArchiveListing.classify(entries, root, "s3://bucket/wal", max_object_bytes=1000)
    assert listing.objects == {1: {"none": 100}} and listing.manifests == {1: 300}
    assert listing.temporary == [f"{TEMP_PREFIX}abc-{object_name(2)}"]
    refused = [name for name, _ in listing.rejected]
    assert refused == ["../etc/passwd", object_name(3), "bucket/other/x", object_name(4), "/"]
    with pytest.raises(ArchiveNameError, match=r"\(and 4 more\)"):
        listing.raise_rejected("s3://bucket/wal")


@pytest.mark.parametrize("url", ["memory", "file"], indirect=True)
def test_a_zstd_object_that_does_not_decompress_is_named(url: str) -> None:
    """Streamed (get, get_unverified) and read whole (a sealed one aside): a zstd object whose
    bytes were damaged is an ArchiveIntegrityError naming the object and the segment."""
    store = ArchiveStore(url, compression="zstd")
    name, raw = NAMES[1], SEGMENTS[NAMES[1]]
    m = store.put(name, raw).manifest
    stored = bytes(store.fs.cat_file(f"{store.root}/{m.object}"))
    store.fs.rm_file(f"{store.root}/{m.object}")
    plant(store, m.object, stored[:20] + bytes(40) + stored[60:])
    for read in (lambda: store.get(m), lambda: store.get_unverified(m.segment_seq, "zstd")):
        with pytest.raises(ArchiveIntegrityError, match="does not decompress") as e:
            read()
        assert e.value.segment == name and m.object in str(e.value)
