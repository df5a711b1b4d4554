"""What an archived object's bytes say: its stored and raw size and raw BLAKE3, read within
the bounds its manifest allows, and the verdict against that manifest.

Pure of I/O beyond the file object or bytes it is handed: :class:`walship.archive.ArchiveStore`
fetches (one ranged GET, or a stream) and calls these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, BinaryIO

from blake3 import blake3 as Blake3

from walship.archive.manifest import SegmentManifest
from walship.archive.sealing import Keyring, Seal
from walship.errors import ArchiveError, ArchiveIntegrityError

CHUNK = 1024 * 1024
"""A streamed object is read this many bytes at a time."""


def zstd() -> Any:
    """The ``zstandard`` module.

    Raises:
        ArchiveError: it is not installed (the ``walship[zstd]`` extra).
    """
    try:
        import zstandard
    except ImportError:
        raise ArchiveError(
            "compression 'zstd' needs the zstandard package: pip install 'walship[zstd]'"
        ) from None
    return zstandard


class _Counting:
    """A reader that counts bytes and refuses to read more than ``limit`` of them."""

    def __init__(self, f: BinaryIO, limit: int) -> None:
        self._f = f
        self._limit = limit
        self.count = 0
        self.over = False

    def read(self, n: int = -1) -> bytes:
        room = self._limit + 1 - self.count
        if room <= 0:
            self.over = True
            return b""
        data = self._f.read(room if n < 0 else min(n, room))
        self.count += len(data)
        if self.count > self._limit:
            self.over = True
        return bytes(data)


@dataclass
class Digest:
    """An object as read: its sizes, the raw bytes' BLAKE3, the raw bytes (when kept), and
    whether it was larger than the bounds (then the rest is not meaningful)."""

    stored_size: int
    raw_size: int
    blake3: bytes
    data: bytes | None
    too_large: bool


def digest_bytes(data: bytes, limit: int) -> Digest:
    """The digest of an uncompressed object read whole (at most ``limit + 1`` bytes)."""
    if len(data) > limit:
        return Digest(len(data), len(data), b"", None, True)
    return Digest(len(data), len(data), Blake3(data).digest(), data, False)


def digest_stream(
    f: BinaryIO,
    compression: str,
    max_stored: int,
    max_raw: int,
    keep: bool,
    undecodable: Callable[[Exception], Exception],
) -> Digest:
    """Stream ``f``: never more than ``max_stored + 1`` stored or ``max_raw + 1`` raw bytes.

    Raises:
        ArchiveIntegrityError: ``undecodable(error)``, when a zstd object does not decompress.
    """
    h = Blake3()
    out = bytearray() if keep else None
    raw_size = 0
    too_large = False
    src = _Counting(f, max_stored)
    reader: Any = src
    if compression == "zstd":
        reader = zstd().ZstdDecompressor().stream_reader(src, read_across_frames=True)
    try:
        while True:
            chunk = reader.read(min(CHUNK, max_raw + 1 - raw_size))
            if not chunk:
                break
            raw_size += len(chunk)
            if raw_size > max_raw:
                too_large = True
                break
            h.update(chunk)
            if out is not None:
                out += chunk
            if src.over:
                too_large = True
                break
        if not too_large:
            src.read(-1)  # count what follows a zstd frame, too
    except Exception as e:
        if type(e).__name__ == "ZstdError":
            raise undecodable(e) from None
        raise
    return Digest(
        src.count,
        raw_size,
        h.digest(),
        bytes(out) if out is not None else None,
        too_large or src.over,
    )


def digest_sealed(
    stored: bytes,
    keyring: Keyring,
    seal: Seal,
    name: str,
    compression: str,
    max_stored: int,
    max_raw: int,
    undecodable: Callable[[Exception], Exception],
) -> Digest:
    """The digest of sealed object ``name`` read whole (AES-GCM opens only the whole object):
    opened under ``keyring``, then decompressed.

    Raises:
        ArchiveIntegrityError: it does not open, or (``undecodable(error)``) decompress.
        ArchiveKeyError: it is sealed under a key ``keyring`` does not hold.
    """
    if len(stored) > max_stored:
        return Digest(len(stored), 0, b"", None, True)
    data = keyring.open(stored, seal, name)
    if compression == "zstd":
        try:
            data = zstd().ZstdDecompressor().decompress(data, max_output_size=max_raw + 1)
        except Exception as e:
            raise undecodable(e) from None
    too_large = len(data) > max_raw
    return Digest(len(stored), len(data), Blake3(data).digest(), data, too_large)


def check_digest(d: Digest, m: SegmentManifest, where: str, verb: str = "is") -> bytes | None:
    """The raw bytes of the object ``d`` (at ``where``) when it is what manifest ``m``
    describes (stored size, raw size, raw BLAKE3).

    Raises:
        ArchiveIntegrityError: naming the object and what differs.
    """
    if d.too_large:
        raise ArchiveIntegrityError(
            f"{where} {verb} larger than its manifest says ({m.stored_size} bytes stored, "
            f"{m.size} raw)",
            m.name,
        )
    if d.stored_size != m.stored_size or d.raw_size != m.size:
        raise ArchiveIntegrityError(
            f"{where} {verb} {d.stored_size} bytes ({d.raw_size} raw), its manifest says "
            f"{m.stored_size} ({m.size} raw): partial or altered",
            m.name,
        )
    if d.blake3 != m.blake3:
        raise ArchiveIntegrityError(
            f"{where} {verb} altered: BLAKE3 {d.blake3.hex()[:16]}... is not the "
            f"manifest's {m.blake3.hex()[:16]}...",
            m.name,
        )
    return d.data


__all__ = [
    "CHUNK",
    "Digest",
    "check_digest",
    "digest_bytes",
    "digest_sealed",
    "digest_stream",
    "zstd",
]
