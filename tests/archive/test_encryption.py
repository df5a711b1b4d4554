"""Encryption at rest (``archive.encryption``, issue 13): every archived object sealed with
AES-256-GCM, no plaintext payload byte in any object, restore and read byte for byte with the
keys, a clear error naming the key that is missing, key rotation, tampering found, an upload
interrupted between its object and its manifest healed by the next put. Through the upload
child and in-process, on a local directory, moto and radosgw."""

from __future__ import annotations

import base64
import json
import secrets
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from s3server import S3Bucket

import walship
from walship.archive import ArchiveStore
from walship.archive.manifest import describe_segment
from walship.archive.restore import restore
from walship.archive.sealing import Keyring, parse_key
from walship.cli import build_cli
from walship.core.header import parse_segment_name
from walship.errors import ArchiveIntegrityError, ArchiveKeyError, ConfigError

MARK = b"PLAINTEXT-MARK-"
K1 = secrets.token_hex(32)
K2 = base64.b64encode(secrets.token_bytes(32)).decode()


def keys(current: str = "k1", **extra: str) -> dict[str, Any]:
    return {"keys": {"k1": K1, **extra}, "current": current}


def write_log(
    path: Path, url: str, options: dict[str, Any], encryption: Any, **kw: Any
) -> list[Any]:
    """Append frames whose payloads carry MARK over several segments, archive everything."""
    archive = {
        "url": url,
        "storage_options": options,
        "encryption": encryption,
        "retries": {"attempts": 5, "backoff": 0.05, "max_backoff": 0.2},
        **kw,
    }
    with walship.open(path, durability="none", max_segment_bytes=4096, archive=archive) as log:
        for i in range(120):
            log.append(MARK + str(i).encode() * 20)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        assert log.archiver.stalled() == {}
        return list(log.read())


def local_segments(path: Path) -> dict[str, bytes]:
    got = {p.name: p.read_bytes() for p in path.iterdir() if parse_segment_name(p.name)}
    got.pop(max(got))  # the active (empty) segment is not archived
    return got


def stored_objects(root: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in root.iterdir() if p.is_file()}


# --- keys and the keyring -------------------------------------------------------------------


def test_keys_are_64_hex_digits_or_base64_and_never_shown() -> None:
    raw = secrets.token_bytes(32)
    assert parse_key(raw.hex()) == parse_key(base64.b64encode(raw).decode()) == raw
    assert parse_key(base64.urlsafe_b64encode(raw).decode()) == raw
    for bad in ("abcd", raw.hex()[:-2], base64.b64encode(raw[:31]).decode(), 42):
        with pytest.raises(ValueError, match="64 hex digits or as base64") as e:
            parse_key(bad)
        assert str(bad) not in str(e.value) or bad == 42
    ring = Keyring.from_mapping(keys())
    assert K1 not in repr(ring) and "k1" in repr(ring)
    with pytest.raises(ConfigError) as c:
        walship.open_archive("file:///nowhere", encryption={"keys": {"k1": K1[:-4]}})
    assert "keys.k1" in str(c.value) and K1[:-4] not in str(c.value)


def test_a_bad_encryption_section_is_one_line_without_the_key(tmp_path: Path) -> None:
    url = (tmp_path / "a").as_uri()
    for bad, words in [
        ({"keys": {"k1": K1}, "current": "k2"}, "current key 'k2' is not among the keys (k1)"),
        ({"keys": {"k1": "short"}}, "keys.k1: a key must be 32 bytes"),
        ({"keys": {}}, "at least one"),
        ({"keys": {"k1": K1}, "curent": "k1"}, "unknown key 'curent'"),
    ]:
        with pytest.raises(ConfigError) as e:
            walship.open(tmp_path / "wal", archive={"url": url, "encryption": bad})
        assert words in str(e.value) and "\n" not in str(e.value) and K1 not in str(e.value)


# --- end to end -----------------------------------------------------------------------------


@pytest.mark.parametrize("upload_process", [False, True])
def test_a_local_archive_holds_no_plaintext_and_restores_byte_for_byte(
    tmp_path: Path, upload_process: bool
) -> None:
    root = tmp_path / "archive"
    frames = write_log(tmp_path / "wal", root.as_uri(), {}, keys(), upload_process=upload_process)
    segments = local_segments(tmp_path / "wal")
    objects = stored_objects(root)
    assert len(segments) >= 3
    for name, data in objects.items():
        if name.endswith(".manifest.json"):
            doc = json.loads(data)
            assert doc["encryption"]["key_id"] == "k1"
            assert doc["encryption"]["algorithm"] == "AES-256-GCM"
            assert K1 not in data.decode()
        else:
            assert MARK not in data and data != segments[name]
            assert len(data) == len(segments[name]) + 16  # the GCM tag
    result = restore(root.as_uri(), tmp_path / "restored", encryption=keys())
    assert result.segments == len(segments)
    for name, raw in segments.items():
        assert (tmp_path / "restored" / name).read_bytes() == raw
    with walship.open(tmp_path / "restored") as log:
        assert list(log.read()) == frames
    with walship.open_archive(root.as_uri(), encryption={"keys": {"k1": K1}}) as reader:
        assert list(reader.read()) == frames


def test_s3_archives_are_sealed_and_read_back_with_the_keys(
    s3_target: S3Bucket, tmp_path: Path
) -> None:
    frames = write_log(
        tmp_path / "wal", s3_target.url, s3_target.storage_options, keys(), compression="zstd"
    )
    segments = local_segments(tmp_path / "wal")
    for name in s3_target.names():
        data = s3_target.get(name)
        if not name.endswith(".manifest.json"):
            assert MARK not in data
    result = restore(
        s3_target.url,
        tmp_path / "restored",
        storage_options=s3_target.storage_options,
        encryption=keys(),
    )
    assert result.segments == len(segments)
    for name, raw in segments.items():
        assert (tmp_path / "restored" / name).read_bytes() == raw
    with walship.open(tmp_path / "restored") as log:
        assert list(log.read()) == frames
    with pytest.raises(ArchiveKeyError, match="pass the keys") as e:
        restore(s3_target.url, tmp_path / "nokeys", storage_options=s3_target.storage_options)
    assert not (tmp_path / "nokeys").exists() or not any((tmp_path / "nokeys").iterdir())
    assert e.value.key_id == "k1"  # named even when no keys were given at all


def test_key_rotation_and_the_missing_key_named(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    wal = tmp_path / "wal"
    first = write_log(wal, root.as_uri(), {}, keys())
    both = {"keys": {"k1": K1, "k2": K2}, "current": "k2"}
    with walship.open(
        wal,
        durability="none",
        max_segment_bytes=4096,
        archive={"url": root.as_uri(), "encryption": both, "upload_process": False},
    ) as log:
        for i in range(60):
            log.append(MARK + b"after rotation %d" % i)
        log.rotate()
        assert log.archiver is not None and log.archiver.flush(timeout=60)
        frames = list(log.read())
    assert frames[: len(first)] == first
    ids = {
        json.loads(p.read_bytes())["encryption"]["key_id"]
        for p in root.iterdir()
        if p.name.endswith(".manifest.json")
    }
    assert ids == {"k1", "k2"}
    restore(root.as_uri(), tmp_path / "r", encryption={"keys": {"k1": K1, "k2": K2}})
    with walship.open(tmp_path / "r") as log:
        assert list(log.read()) == frames
    with pytest.raises(
        ArchiveKeyError, match=r"under key 'k1', which the keys given do not hold \(k2\)"
    ) as e:
        restore(root.as_uri(), tmp_path / "r2", encryption={"keys": {"k2": K2}})
    assert e.value.key_id == "k1"


def test_a_wrong_key_or_a_tampered_object_does_not_open(tmp_path: Path) -> None:
    root = tmp_path / "archive"
    write_log(tmp_path / "wal", root.as_uri(), {}, keys(), upload_process=False)
    wrong = {"keys": {"k1": secrets.token_hex(32)}}
    with pytest.raises(ArchiveIntegrityError, match="does not open under key 'k1'"):
        restore(root.as_uri(), tmp_path / "r1", encryption=wrong)
    victim = sorted(p for p in root.iterdir() if p.name.endswith(".aedbwal"))[1]
    data = bytearray(victim.read_bytes())
    data[100] ^= 1
    victim.write_bytes(bytes(data))
    runner = CliRunner()
    config = tmp_path / "walship.yaml"
    config.write_text(
        f"store: {{path: {tmp_path / 'wal'}}}\narchive:\n  url: {root.as_uri()}\n"
        f"  encryption: {{keys: {{k1: '{K1}'}}, current: k1}}\n"
    )
    out = runner.invoke(build_cli(), ["verify", root.as_uri(), "-c", str(config)])
    assert out.exit_code == 1, out.output
    assert victim.name in out.output and "does not open under key 'k1'" in out.output
    assert K1 not in out.output
    nokey = runner.invoke(build_cli(), ["verify", root.as_uri()])
    assert nokey.exit_code != 0 and "encrypted" in nokey.output


def test_an_upload_cut_between_object_and_manifest_is_healed_by_the_next_put(
    tmp_path: Path,
) -> None:
    wal = tmp_path / "wal"
    with walship.open(wal, durability="none") as log:
        log.append_batch([MARK + bytes([i]) * 50 for i in range(40)])
        log.rotate()
    name, raw = next(iter(local_segments(wal).items()))
    root = tmp_path / "archive"
    store = ArchiveStore(root.as_uri(), keyring=Keyring.from_mapping(keys()))
    first = store.put(name, raw)
    (root / first.manifest.manifest_object).unlink()  # a crash after the object's PUT
    again = ArchiveStore(root.as_uri(), keyring=Keyring.from_mapping(keys()))
    healed = again.put(name, raw)
    assert healed.manifest.seal == first.manifest.seal and not healed.uploaded
    assert again.get(healed.manifest) == raw
    # and an object that vanished is put back exactly as its manifest describes it
    (root / healed.manifest.object).unlink()
    back = again.put(name, raw)
    assert back.uploaded and again.get(back.manifest) == raw
    # another key cannot pass the archived object off as its own
    other = ArchiveStore(
        root.as_uri(), keyring=Keyring.from_mapping({"keys": {"k2": K2}, "current": "k2"})
    )
    with pytest.raises(ArchiveKeyError, match="'k1'"):
        other.get(back.manifest)
    assert describe_segment(name, raw).blake3 == back.manifest.blake3  # the chain: raw bytes
