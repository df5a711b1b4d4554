"""``walship verify`` on an archive URL and on a directory trimmed by retention."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

import walship
from walship.cli import build_cli
from walship.core.header import segment_name


def _archived_log(tmp_path: Path, keep_local: str = "all") -> tuple[Path, Path]:
    wal, bucket = tmp_path / "wal", tmp_path / "bucket"
    archive = {"url": bucket.as_uri(), "workers": 2}
    with walship.open(wal, archive=archive, retention={"keep_local": keep_local}) as log:
        for s in range(4):
            log.append_batch([b"verify %d/%d" % (s, i) for i in range(10)])
            log.rotate()
        assert log.archiver is not None
        assert log.archiver.flush(timeout=30)
    return wal, bucket


def _verify(target: str) -> tuple[int, dict[str, object]]:
    result = CliRunner().invoke(build_cli(), ["verify", target, "--json"])
    return result.exit_code, json.loads(result.output)


def test_verify_archive_url_ok_then_altered_then_missing(tmp_path: Path) -> None:
    _, bucket = _archived_log(tmp_path)
    url = bucket.as_uri()
    code, doc = _verify(url)
    assert (code, doc["ok"]) == (0, True)

    obj = bucket / segment_name(2)
    data = bytearray(obj.read_bytes())
    data[-1] ^= 0x01  # an altered object: the manifest's BLAKE3 no longer matches
    obj.write_bytes(bytes(data))
    code, doc = _verify(url)
    assert code == 1
    problems = doc["problems"]
    assert isinstance(problems, list)
    # the altered segment itself is named, against its manifest and at the damaged frame
    assert [(p["file"], p["kind"]) for p in problems] == [
        (segment_name(2), "altered_segment"),
        (segment_name(2), "corrupt_frame"),
    ]
    assert problems[1]["offset"] == len(data) - 35  # the last frame, whose CRC no longer holds

    obj.unlink()  # now gone, while its manifest says it was archived
    code, doc = _verify(url)
    assert code == 1
    problems = doc["problems"]
    assert isinstance(problems, list)
    assert [(p["file"], p["kind"]) for p in problems] == [(segment_name(2), "missing_segment")]


def test_verify_directory_after_retention_checks_the_anchor(tmp_path: Path) -> None:
    wal, _ = _archived_log(tmp_path, keep_local="until_archived")
    with walship.open(wal):
        pass  # retention has run on every archived segment by now
    assert not (wal / segment_name(1)).exists()
    code, doc = _verify(str(wal))
    assert (code, doc["ok"]) == (0, True)
    result = CliRunner().invoke(build_cli(), ["verify", str(wal)])
    assert "was not checked" not in result.output  # the record anchored the first segment
