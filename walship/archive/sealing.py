"""Encryption at rest of archived objects (``archive.encryption``, extra ``walship[crypto]``).

Each object is sealed with AES-256-GCM under **its own data key** and nonce (derived from the
key and the object's bytes: see :meth:`Keyring.seal`); the data key is wrapped (RFC 3394 AES
key wrap) under the **named key** the settings call ``current``. The manifest of the object
keeps what opening it needs besides the key: the key id, the nonce and the wrapped data key
(:class:`Seal`). The object's name is the associated data, so an object copied or renamed onto
another name does not open.

Keys are 32 bytes written as 64 hex digits or as base64. Rotating keys is adding one to
``keys`` and pointing ``current`` at it: new objects are sealed under it, older ones still open
under theirs; a key that is still named by an archived object must stay in ``keys`` for
restore, verify and read. Key bytes are never shown: not in a repr, a message or a log line.

What is hashed stays the raw segment bytes (the BLAKE3 chain, the manifest's ``blake3``): local
and archived segments verify the same way. A wrong key and an altered object look the same:
neither opens, and the error says so.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from blake3 import blake3 as Blake3

from walship.errors import ArchiveIntegrityError, ArchiveKeyError, ConfigError

ALGORITHM = "AES-256-GCM"
KEY_BYTES = 32
NONCE_BYTES = 12
TAG_BYTES = 16
"""How much longer a sealed object is than the bytes sealed in it (the GCM tag)."""
_WRAPPED_BYTES = KEY_BYTES + 8
_KEY_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_AAD_PREFIX = b"walship-sealed-v1\0"
KEY_HELP = "32 bytes written as 64 hex digits or as base64"
INSTALL_HINT = "pip install 'walship[crypto]'"


def parse_key(text: object) -> bytes:
    """The 32 key bytes of ``text`` (64 hex digits, or base64 / URL-safe base64 of 32 bytes).

    Raises:
        ValueError: anything else; the message names the expected form, never the value.
    """
    if isinstance(text, bytes) and len(text) == KEY_BYTES:
        return text
    if not isinstance(text, str):
        raise ValueError(f"a key must be {KEY_HELP}, got a {type(text).__name__}")
    value = text.strip()
    if re.fullmatch(r"[0-9A-Fa-f]{64}", value):
        return bytes.fromhex(value)
    try:  # URL-safe base64 read as the standard alphabet
        raw = base64.b64decode(value.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raw = b""
    if len(raw) == KEY_BYTES:
        return raw
    raise ValueError(f"a key must be {KEY_HELP} (got {len(value)} characters)")


def check_key_id(key_id: object) -> str:
    """``key_id`` if it is a valid key id (1 to 64 of letters, digits, ``_.-``, starting with a
    letter or digit), else ValueError naming the rule."""
    if not isinstance(key_id, str) or not _KEY_ID.fullmatch(key_id):
        raise ValueError(
            f"key id {key_id!r} must be 1 to 64 letters, digits, '_', '.' or '-' (starting "
            "with a letter or digit)"
        )
    return key_id


def _crypto() -> Any:
    try:
        from cryptography.hazmat.primitives import keywrap
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    except ImportError:
        raise ConfigError(
            f"archive.encryption needs the cryptography package ({INSTALL_HINT})"
        ) from None
    return AESGCM, keywrap


@dataclass(frozen=True)
class Seal:
    """How one archived object was sealed: the key id, the data's nonce, the wrapped data key
    (as the manifest keeps them)."""

    key_id: str
    nonce: bytes
    wrapped_key: bytes

    def as_dict(self) -> dict[str, str]:
        return {
            "algorithm": ALGORITHM,
            "key_id": self.key_id,
            "nonce": self.nonce.hex(),
            "wrapped_key": self.wrapped_key.hex(),
        }

    @classmethod
    def from_dict(cls, doc: object) -> Seal:
        """The seal a manifest describes.

        Raises:
            ValueError: not a seal walship writes (unknown algorithm, a bad key id, a nonce or
                wrapped key of the wrong size); the message names the field.
        """
        if not isinstance(doc, dict) or doc.get("algorithm") != ALGORITHM:
            raise ValueError(f"encryption: expected an object with algorithm {ALGORITHM}")
        key_id = check_key_id(doc.get("key_id"))
        try:
            nonce = bytes.fromhex(str(doc.get("nonce")))
            wrapped = bytes.fromhex(str(doc.get("wrapped_key")))
        except ValueError:
            raise ValueError("encryption: nonce and wrapped_key must be hex") from None
        if len(nonce) != NONCE_BYTES or len(wrapped) != _WRAPPED_BYTES:
            raise ValueError(
                f"encryption: nonce must be {NONCE_BYTES} bytes and wrapped_key "
                f"{_WRAPPED_BYTES} (got {len(nonce)} and {len(wrapped)})"
            )
        return cls(key_id, nonce, wrapped)


@dataclass(frozen=True)
class Keyring:
    """Named 32-byte keys and the one new objects are sealed under (``current``; ``None``: a
    keyring that only opens, as restore and verify take it). Immutable, safe on any thread."""

    keys: Mapping[str, bytes] = field(repr=False)
    current: str | None = None

    def __post_init__(self) -> None:
        for key_id, key in self.keys.items():
            check_key_id(key_id)
            if not isinstance(key, bytes) or len(key) != KEY_BYTES:
                raise ValueError(f"key {key_id!r} must be {KEY_HELP}")
        if self.current is not None and self.current not in self.keys:
            raise ValueError(
                f"current key {self.current!r} is not among the keys ({self._ids() or 'none'})"
            )

    def __repr__(self) -> str:
        return f"Keyring(keys=[{self._ids()}], current={self.current!r})"

    def _ids(self) -> str:
        return ", ".join(sorted(self.keys))

    @classmethod
    def from_mapping(cls, value: object) -> Keyring:
        """A keyring from what ``archive.encryption`` (or ``encryption=``) takes:
        ``{"keys": {id: key, ...}, "current": id}`` (``current`` may be left out when there is
        one key, or when the keyring only opens), or a :class:`Keyring`.

        Raises:
            ValueError: a missing or malformed part, named (never a key's value).
        """
        if isinstance(value, Keyring):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("encryption must be a mapping with 'keys' and 'current'")
        unknown = sorted(set(value) - {"keys", "current"})
        if unknown:
            raise ValueError(f"encryption: unknown key {unknown[0]!r} (expected keys, current)")
        keys = value.get("keys")
        if not isinstance(keys, Mapping) or not keys:
            raise ValueError("encryption.keys must map key ids to keys (at least one)")
        parsed: dict[str, bytes] = {}
        for key_id, key in keys.items():
            try:
                parsed[check_key_id(key_id)] = parse_key(key)
            except ValueError as e:
                raise ValueError(f"encryption.keys.{key_id}: {e}") from None
        current = value.get("current")
        if current is None and len(parsed) == 1:
            current = next(iter(parsed))
        if current is not None and not isinstance(current, str):
            raise ValueError("encryption.current must be a key id")
        return cls(parsed, current)

    def as_mapping(self) -> dict[str, Any]:
        """The keyring as :meth:`from_mapping` takes it (keys as hex): to hand it to another
        process. It holds the keys: never log or show it."""
        return {"keys": {k: v.hex() for k, v in self.keys.items()}, "current": self.current}

    def seal(
        self, data: bytes, name: str, like: Seal | None = None, key_id: str | None = None
    ) -> tuple[bytes, Seal]:
        """``data`` sealed for the object ``name``: the stored bytes (16 bytes longer) and the
        seal for the manifest.

        The data key and nonce are derived from the key and ``data`` itself (HMAC-SHA256 over
        the name and the BLAKE3 of ``data``): one data key per distinct object, and the same
        object sealed again (a retry after a crash between an object's PUT and its manifest's)
        gives the same bytes, which the conditional create then finds already there. A nonce is
        never used twice under one data key for different bytes.

        Args:
            like: seal under this seal's key id (an object recreated exactly as its manifest
                describes) instead of the current key.
            key_id: seal under this key instead of the current one (``like`` wins).
        Raises:
            ArchiveKeyError: no current key (and no ``like``), or ``like``'s key is not held.
            ArchiveIntegrityError: ``like`` does not describe these bytes under its key.
            ConfigError: the cryptography package is missing.
        """
        key_id = like.key_id if like is not None else key_id or self.current
        if key_id is None:
            raise ArchiveKeyError(f"cannot seal {name}: no current encryption key is set")
        kek = self._key(key_id, name)
        aesgcm, keywrap = _crypto()
        material = name.encode() + b"\0" + Blake3(data).digest()
        data_key = hmac.digest(kek, b"walship-data-key-v1\0" + material, "sha256")
        nonce = hmac.digest(kek, b"walship-nonce-v1\0" + material, "sha256")[:NONCE_BYTES]
        seal = Seal(key_id, nonce, keywrap.aes_key_wrap(kek, data_key))
        if like is not None and like != seal:
            raise ArchiveIntegrityError(
                f"{name} cannot be sealed again as its manifest describes: these bytes are not "
                "the ones sealed under it",
                name,
            )
        stored = aesgcm(data_key).encrypt(nonce, data, _AAD_PREFIX + name.encode())
        return stored, seal

    def sealed_as(self, data: bytes, name: str, stored: bytes) -> Seal | None:
        """The seal under which ``data`` became ``stored`` (object ``name``), trying every key
        held, the current one first: an object an earlier run created (perhaps under a key
        that is no longer current) whose manifest never came. ``None``: no key held gives
        ``stored`` (other bytes, or a key not held). One AES-GCM pass per key tried.

        Raises:
            ConfigError: the cryptography package is missing.
        """
        if len(stored) != len(data) + TAG_BYTES:
            return None
        for key_id in sorted(self.keys, key=lambda k: k != self.current):
            again, seal = self.seal(data, name, key_id=key_id)
            if hmac.compare_digest(again, stored):
                return seal
        return None

    def _key(self, key_id: str, name: str) -> bytes:
        key = self.keys.get(key_id)
        if key is None:
            raise ArchiveKeyError(
                f"{name} is encrypted under key {key_id!r}, which the keys given do not hold "
                f"({self._ids() or 'no keys given'})",
                key_id=key_id,
            )
        return key

    def open(self, stored: bytes, seal: Seal, name: str) -> bytes:
        """The bytes sealed in ``stored`` (the object ``name``).

        Raises:
            ArchiveKeyError: the key the object was sealed under is not in the keyring (named,
                with the ids the keyring has).
            ArchiveIntegrityError: the object (or its manifest's seal) was altered, renamed, or
                the key under that id is not the one it was sealed with.
            ConfigError: the cryptography package is missing.
        """
        key = self._key(seal.key_id, name)
        aesgcm, keywrap = _crypto()
        from cryptography.exceptions import InvalidTag

        try:
            data_key = keywrap.aes_key_unwrap(key, seal.wrapped_key)
            return bytes(aesgcm(data_key).decrypt(seal.nonce, stored, _AAD_PREFIX + name.encode()))
        except (InvalidTag, keywrap.InvalidUnwrap):
            raise ArchiveIntegrityError(
                f"{name} does not open under key {seal.key_id!r}: the object or its manifest "
                "was altered, or that key id holds another key",
                name,
            ) from None


def keyring_argument(value: object) -> Keyring | None:
    """The keyring an ``encryption=`` argument gives (``None``: none; a :class:`Keyring`; or
    the mapping ``archive.encryption`` takes, ``current`` optional for reading).

    Raises:
        ConfigError: a malformed argument, one line (never a key's value).
    """
    if value is None:
        return None
    try:
        return Keyring.from_mapping(value)
    except ValueError as e:
        message = str(e)
        raise ConfigError(
            message if message.startswith("encryption") else f"encryption: {message}"
        ) from None


def no_keyring(name: str, key_id: str) -> ArchiveKeyError:
    """The error for an object encrypted under ``key_id`` met without any keys."""
    return ArchiveKeyError(
        f"{name} is encrypted under key {key_id!r}: pass the keys (archive.encryption, or on "
        "the command line --key ID=ENVVAR or --key-file PATH; encryption=... in Python)",
        key_id=key_id,
    )
