"""Restore from a hostile bucket (moto's S3 server and Ceph radosgw, through s3fs).

A valid archive of four segments gets one hostile addition at a time: object names that climb
out (``../x``), start at the root (``/abs/path``), hide traversal behind a segment name
(``segment_...aedbwal/../../x``), are no segment at all, or claim a size beyond the object
limit; manifests that lie about the size, the BLAKE3, the commit range, the frame count or the
timestamps; a forged segment with a manifest that matches it. For each:

* the restore (the library call, click's runner and, for a few, the installed script) is
  refused with walship's own error, one line that names the object;
* nothing is written outside the target directory: the whole tree around it (and ``/abs``) is
  exactly as before;
* nothing half-restored is left behind: no target, no staging directory;
* a point-in-time restore refuses the same lies, and never returns frames beyond the target.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from s3server import S3Bucket, S3Server, moto_endpoint, new_bucket, radosgw_server

import walship
from walship.archive import manifest_name
from walship.archive.restore import restore
from walship.cli import build_cli
from walship.core.header import segment_name
from walship.errors import ArchiveError, WalshipError

from .s3proxy import FaultProxy
from .support import FIGURES

SEGMENTS = 4
FRAMES = 5
WALSHIP = Path(sys.executable).parent / "walship"


class Archived(dict[str, bytes]):
    """The objects of a valid archive (name -> bytes) and the server they came from."""

    def __init__(self, server: S3Server, objects: dict[str, bytes]) -> None:
        super().__init__(objects)
        self.server = server


@pytest.fixture(scope="module", params=["moto", "radosgw"])
def archived(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Archived:
    """The objects of a valid archive of four segments, to copy per case (on moto, then on
    radosgw)."""
    server: S3Server = moto_endpoint() if request.param == "moto" else radosgw_server()
    bucket = new_bucket(server)
    path = tmp_path_factory.mktemp("source") / "wal"
    options = {"url": bucket.url, "storage_options": bucket.storage_options}
    with walship.open(path, entry_point_plugins=False, archive=options) as log:
        for s in range(SEGMENTS):
            log.append_batch([b"segment %d frame %d" % (s, i) for i in range(FRAMES)])
            log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
    return Archived(server, {name: bucket.get(name) for name in bucket.names()})


def cli_options(bucket: S3Bucket) -> list[str]:
    """``-o`` options of the command line for the bucket's server (its endpoint and keys)."""
    o = bucket.storage_options
    return [arg for k in ("endpoint_url", "key", "secret") for arg in ("-o", f"{k}={o[k]}")]


def fresh(objects: Archived) -> S3Bucket:
    bucket = new_bucket(objects.server)
    client = bucket.server.client()
    for name, data in objects.items():
        client.put_object(Bucket=bucket.bucket, Key=bucket.key(name), Body=data)
    return bucket


def tree(root: Path) -> dict[str, str]:
    """Every path under ``root`` with what it is (a digest of each file's bytes)."""
    out: dict[str, str] = {}
    for dirpath, dirs, files in os.walk(root):
        for d in dirs:
            out[os.path.relpath(os.path.join(dirpath, d), root)] = "dir"
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.blake2b(Path(p).read_bytes()).hexdigest()
    return out


def manifest(bucket: S3Bucket, seq: int) -> dict[str, Any]:
    return dict(json.loads(bucket.get(manifest_name(seq))))


def lie(seq: int, **fields: Any) -> Callable[[S3Bucket], None]:
    """Rewrite fields of segment ``seq``'s manifest (the object stays as it is)."""

    def plant(bucket: S3Bucket) -> None:
        doc = manifest(bucket, seq)
        doc.update(fields)
        bucket.put(manifest_name(seq), json.dumps(doc).encode())

    return plant


def plant(name: str, data: bytes = b"hostile") -> Callable[[S3Bucket], None]:
    return lambda bucket: bucket.put(name, data)


def forged(bucket: S3Bucket) -> None:
    """Segment 3 replaced by garbage, with a manifest that matches the garbage exactly."""
    from blake3 import blake3 as Blake3

    data = b"AEDB" + bytes(60) + b"not frames at all" * 10
    doc = manifest(bucket, 3)
    doc.update(size=len(data), stored_size=len(data), blake3=Blake3(data).hexdigest())
    bucket.put(segment_name(3), data)
    bucket.put(manifest_name(3), json.dumps(doc).encode())


def frame_count(bucket: S3Bucket) -> int:
    return int(manifest(bucket, 2)["frame_count"])


CASES: dict[str, tuple[Callable[[S3Bucket], None], str]] = {
    # name: (what is planted, what the one-line error must say)
    "parent": (plant("../x"), "'..' refused"),
    "absolute": (plant("/abs/path"), "refused"),
    "hidden_traversal": (plant(segment_name(1) + "/../../x"), "is a directory"),
    "not_a_segment": (
        plant("segment_2.aedbwal"),
        "'segment_2.aedbwal' refused: not a segment name",
    ),
    "almost_a_segment": (plant(segment_name(2) + ".bak"), "refused: not a segment name"),
    "backslashes": (plant(segment_name(2) + "\\..\\x"), "not a plain name"),
    "manifest_size": (lie(2, size=999_999, stored_size=999_999), segment_name(2)),
    "manifest_blake3": (lie(2, blake3="ab" * 32), segment_name(2)),
    "manifest_commit_range": (lie(2, first_commit_seq=1000, last_commit_seq=1004), "manifest"),
    "manifest_last_commit": (lie(4, last_commit_seq=10**12), "manifest"),
    "manifest_frame_count": (lie(2, frame_count=FRAMES + 1), "manifest"),
    "manifest_timestamps": (lie(2, last_timestamp_micros=1), "manifest"),
    "manifest_garbage": (plant(manifest_name(2), b"{not json"), "not JSON"),
    "forged_segment": (forged, segment_name(3)),
}


CLI_CASES = {"parent", "absolute", "hidden_traversal", "manifest_commit_range", "forged_segment"}
"""The cases also run through ``walship restore`` (click's runner)."""


def check_refused(error: BaseException, expected: str) -> None:
    assert isinstance(error, WalshipError), repr(error)
    text = str(error)
    assert "\n" not in text and expected in text, text


@pytest.mark.parametrize("case", sorted(CASES))
def test_restore_refuses_a_hostile_bucket(archived: Archived, tmp_path: Path, case: str) -> None:
    action, expected = CASES[case]
    bucket = fresh(archived)
    action(bucket)
    target = tmp_path / "a" / "b" / "target"
    target.parent.mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(ArchiveError) as e:
        restore(bucket.url, target, storage_options=bucket.storage_options)
    check_refused(e.value, expected)
    assert tree(tmp_path) == before, "something was written around the target"
    assert not os.path.exists("/abs")
    if case not in CLI_CASES:
        return
    # the command line: one line, exit 1 or 2, nothing written
    result = CliRunner().invoke(
        build_cli(),
        ["restore", bucket.url, str(target), *cli_options(bucket)],
        prog_name="walship",
    )
    assert result.exit_code in (1, 2) and result.stdout == "", result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    [line] = result.stderr.splitlines()
    assert line.startswith("walship: ") and expected in line, line
    assert tree(tmp_path) == before
    FIGURES["hostile_bucket.refused"] += 1


@pytest.mark.parametrize("case", ["manifest_commit_range", "manifest_frame_count"])
def test_point_in_time_restore_refuses_a_lying_manifest(
    archived: Archived, tmp_path: Path, case: str
) -> None:
    """A manifest that lies about segment 2's range could make a point-in-time restore leave
    frames out silently (the plan skips a segment on its manifest's word): every manifest the
    plan relied on is checked against its segment's bytes. A restore that does not need the
    lying manifest (the target is in segment 1) is exact."""
    action, expected = CASES[case]
    bucket = fresh(archived)
    action(bucket)
    for to_seq in (3, 7, 12):
        target = tmp_path / f"to{to_seq}"
        try:
            restore(bucket.url, target, to_seq=to_seq, storage_options=bucket.storage_options)
        except ArchiveError as e:
            assert to_seq > FRAMES, f"refused though segment 2 is not needed for {to_seq}"
            check_refused(e, expected)
            assert not target.exists()
            assert sorted(os.listdir(tmp_path)) == []
            FIGURES["hostile_bucket.refused"] += 1
            continue
        assert to_seq <= FRAMES, f"restored up to {to_seq} on a lying manifest"
        with walship.open(target, entry_point_plugins=False) as log:
            assert [f.commit_seq for f in log.read()] == list(range(1, to_seq + 1))
        shutil.rmtree(target)


def test_an_object_listed_beyond_the_size_limit_is_refused(
    archived: Archived, tmp_path: Path
) -> None:
    """The listing says an object is 5 GiB (a proxy rewrites the server's answer): refused
    before anything is downloaded."""
    bucket = fresh(archived)
    bucket.put(segment_name(9), b"small, but listed as huge")
    name = bucket.key(segment_name(9)).encode()

    def rewrite(method: str, path: str, body: bytes) -> bytes:
        if method == "GET" and b"<ListBucketResult" in body:
            quoted = name.replace(b"/", b"%2F")  # radosgw answers encoding-type=url
            at = body.find(b"<Key>" + name + b"</Key>")
            at = at if at >= 0 else body.index(b"<Key>" + quoted + b"</Key>")
            start = body.index(b"<Size>", at)
            end = body.index(b"</Size>", start)
            return body[: start + 6] + str(5 * 1024**3).encode() + body[end:]
        return body

    proxy = FaultProxy(int(bucket.server.endpoint.rsplit(":", 1)[1]), rewrite=rewrite).start()
    try:
        before = tree(tmp_path)
        with pytest.raises(ArchiveError) as e:
            options = proxy.storage_options(credentials=bucket.storage_options)
            restore(bucket.url, tmp_path / "target", storage_options=options)
        check_refused(e.value, "more than the")
        assert segment_name(9) in str(e.value)
        assert tree(tmp_path) == before
        assert not any(r.method == "GET" and segment_name(9) in r.path for r in proxy.requests)
    finally:
        proxy.stop()
    FIGURES["hostile_bucket.refused"] += 1


def test_a_bucket_with_only_leftover_temporary_objects_besides_restores(
    archived: Archived, tmp_path: Path
) -> None:
    """Temporary objects (an upload that died) are skipped, not refused: the restore works."""
    bucket = fresh(archived)
    bucket.put(".walship-tmp-0123456789abcdef-" + segment_name(5), b"half an upload")
    result = restore(bucket.url, tmp_path / "target", storage_options=bucket.storage_options)
    assert result.segments == SEGMENTS and result.frames == SEGMENTS * FRAMES


def test_the_installed_script_refuses_a_hostile_bucket(archived: Archived, tmp_path: Path) -> None:
    bucket = fresh(archived)
    CASES["parent"][0](bucket)
    CASES["manifest_blake3"][0](bucket)
    before = tree(tmp_path)
    proc = subprocess.run(
        [
            str(WALSHIP),
            "restore",
            bucket.url,
            str(tmp_path / "target"),
            *cli_options(bucket),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode in (1, 2) and proc.stdout == ""
    assert "Traceback" not in proc.stderr and len(proc.stderr.splitlines()) == 1, proc.stderr
    assert "refused" in proc.stderr
    assert tree(tmp_path) == before
