"""What ``inspect``, ``verify`` and ``dump`` read: a local directory or an archive URL."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import yaml

from walship.cli.errors import CliError
from walship.core.header import ZERO_HASH, segment_name, segment_seqs
from walship.core.scan import LogScan, ProblemKind, scan_store
from walship.store import SegmentStore


def open_target(
    target: str, storage_options: dict[str, Any] | None = None, config: str | None = None
) -> SegmentStore:
    """A read-only view of ``target``: a directory (a
    :class:`~walship.backends.posix.PosixStore`, used only to list and read: never locked,
    never written) or, when ``target`` contains ``://``, an archive URL (an
    ``ArchiveReadStore`` over fsspec with ``storage_options`` and ``config``'s keys).

    Raises:
        CliError: the directory is missing or not a directory, or archive support is missing.
    """
    if "://" in target:
        try:
            from walship.archive import ArchiveReadStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as e:
            raise CliError(f"{target}: cannot read archive URLs here ({e})") from e
        store: SegmentStore = ArchiveReadStore(
            target, storage_options or {}, keyring_from(config, target)
        )
        return store
    from walship.backends.posix import PosixStore

    path = Path(target)
    if not path.exists():
        raise CliError(f"{target}: no such directory")
    if not path.is_dir():
        raise CliError(f"{target}: not a directory")
    if not os.access(path, os.R_OK | os.X_OK):
        raise CliError(f"{target}: permission denied")
    return PosixStore(path)


def segment_names(store: SegmentStore, target: str) -> list[str]:
    """The segment file names of ``store`` in sequence order.

    Raises:
        CliError: there are none ("not a segment directory").
    """
    seqs = segment_seqs(store)
    if not seqs:
        raise CliError(f"{target}: not a segment directory (no segment_<seq>.aedbwal files in it)")
    return [segment_name(s) for s in seqs]


def destination_of(config: str | None, url: str | None) -> Any:
    """The destination of ``config`` (its ``archive:``, or the entry of ``archives:``) that
    ``url`` is at or below, else its first one; ``None`` without a config or an archive."""
    if config is None:
        return None
    from walship.archive.settings import destination_url
    from walship.config import load_config

    destinations = load_config(config).destinations
    if url is not None:
        wanted = destination_url(url)
        for d in destinations:
            base = destination_url(d.url)
            if wanted == base or wanted.startswith(base + "/"):
                return d
    return destinations[0] if destinations else None


def storage_options_from(
    config: str | None, pairs: tuple[str, ...], url: str | None = None
) -> dict[str, Any]:
    """fsspec storage options: ``storage_options`` of ``config``'s destination for ``url``
    (:func:`destination_of`; if given), then each ``KEY=VALUE`` of ``pairs`` (the value read as
    a YAML scalar: ``true``, ``3``, ``text``)."""
    options: dict[str, Any] = {}
    destination = destination_of(config, url)
    if destination is not None:
        options.update(destination.storage_options)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--storage-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            options[key] = value
    return options


_KEYS_META = "walship.encryption_keys"
"""Where ``--key`` and ``--key-file`` leave the keys they read (the click context's meta)."""


def _keys_given() -> dict[str, bytes]:
    ctx = click.get_current_context(silent=True)
    return ctx.meta.setdefault(_KEYS_META, {}) if ctx is not None else {}


def _read_key_options(ctx: click.Context, param: click.Parameter, value: Any) -> None:
    """The callback of ``--key ID=ENVVAR`` (the key read from that environment variable, never
    from argv) and ``--key-file PATH`` (YAML or JSON, as ``archive.encryption`` takes it):
    the keys go to the context's meta, for :func:`keyring_from`.

    Raises:
        click.BadParameter: a malformed spec, an unset variable, an unreadable file or a key
            that is no key; one line naming the key id or the file, never a key's value.
    """
    from walship.archive.sealing import Keyring, check_key_id, parse_key

    keys = ctx.meta.setdefault(_KEYS_META, {})
    if param.name == "key_file":
        if value is None:
            return
        try:
            with open(value, encoding="utf-8") as f:
                doc = yaml.safe_load(f)
            keys.update(Keyring.from_mapping(doc).keys)
        except (OSError, yaml.YAMLError, ValueError) as e:
            reason = e.strerror if isinstance(e, OSError) and e.strerror else e
            raise click.BadParameter(f"{value}: {reason}") from None
        return
    for spec in value:
        key_id, sep, env = spec.partition("=")
        if not sep or not key_id or not env:
            raise click.BadParameter(
                f"{spec!r}: expected ID=ENVVAR (the environment variable holding the key)"
            )
        text = os.environ.get(env)
        if text is None:
            raise click.BadParameter(f"key {key_id!r}: environment variable {env} is not set")
        try:
            keys[check_key_id(key_id)] = parse_key(text)
        except ValueError as e:
            raise click.BadParameter(f"key {key_id!r} (from ${env}): {e}") from None


def keyring_from(config: str | None, url: str | None = None) -> Any:
    """The keys that open an encrypted archive URL: the ``encryption`` of ``config``'s
    destination for ``url`` (:func:`destination_of`; if given) and those of ``--key`` /
    ``--key-file`` (they win on the same id), as a keyring that only opens; ``None`` when there
    are none."""
    keys: dict[str, bytes] = {}
    destination = destination_of(config, url)
    if destination is not None and destination.encryption is not None:
        keys.update(destination.encryption.keys)
    keys.update(_keys_given())
    if not keys:
        return None
    from walship.archive.sealing import Keyring

    return Keyring(keys)


def target_options(f: Any) -> Any:
    """The ``-c/--config``, ``-o/--storage-option``, ``--key`` and ``--key-file`` options of a
    command reading a target (the keys reach the command through :func:`keyring_from`)."""
    return storage_target_options(key_options(f))


def key_options(f: Any) -> Any:
    """``--key ID=ENVVAR`` and ``--key-file PATH`` (read by :func:`keyring_from`)."""
    f = click.option(
        "--key-file",
        "key_file",
        default=None,
        metavar="PATH",
        expose_value=False,
        callback=_read_key_options,
        help="Encryption keys of an archive URL from this YAML/JSON file, as "
        "archive.encryption takes them ({keys: {ID: KEY}}).",
    )(f)
    f = click.option(
        "--key",
        "key",
        multiple=True,
        metavar="ID=ENVVAR",
        expose_value=False,
        callback=_read_key_options,
        help="An encryption key of an archive URL: key ID, read from environment variable "
        "ENVVAR (repeatable; never the key itself on the command line).",
    )(f)
    return f


def storage_target_options(f: Any) -> Any:
    """The ``-c/--config`` and ``-o/--storage-option`` options of a command on an archive."""
    f = click.option(
        "-o",
        "--storage-option",
        "storage_option",
        multiple=True,
        metavar="KEY=VALUE",
        help="An fsspec storage option for an archive URL (repeatable).",
    )(f)
    return click.option(
        "-c",
        "--config",
        default=None,
        help="Take an archive URL's storage options (and encryption keys) from this config's "
        "archive: section.",
    )(f)


def config_option(help: str, required: bool = True) -> Callable[[Any], Any]:
    """The ``-c/--config`` option of a command that works on the log of a config: an existing
    file, passed as a ``pathlib.Path`` (``None`` when not ``required`` and not given)."""
    return click.option(
        "-c",
        "--config",
        "config",
        required=required,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help=help,
    )


def scan_target(
    target: str,
    config: str | None = None,
    storage_option: tuple[str, ...] = (),
    seed_restarts: bool = False,
) -> LogScan:
    """Open ``target`` read-only and scan every segment (:func:`scan_store`: reads everything,
    changes nothing). With ``seed_restarts`` a zero prev hash in a later segment is accepted as
    a restart of the chain (the seed's marker) and listed in ``chain_restarts``.

    Raises:
        CliError: the target is missing or holds no segment.
        OSError: a segment could not be read.
    """
    options = storage_options_from(config, storage_option, target) if "://" in target else {}
    store = open_target(target, options, config)
    segment_names(store, target)
    anchor = None
    if "://" not in target:  # segments removed by retention: the record anchors the chain
        from walship.core.record import load_anchor

        anchor = load_anchor(store)
    return scan_store(store, anchor=anchor, seed_restarts=seed_restarts)


def seed_restarts_option(f: Any) -> Any:
    """The ``--seed-restarts`` flag of a command that checks the chain."""
    return click.option(
        "--seed-restarts",
        is_flag=True,
        help="Accept a zero prev_segment_hash in a later segment as a restart of the chain "
        "(the seed wrote one after each restart); each such segment is named.",
    )(f)


def seed_restart_hints(scan: LogScan) -> list[str]:
    """The segments whose chain_mismatch is a zero prev hash (what the seed writes after a
    restart, which ``--seed-restarts`` accepts), in order."""
    zero = {
        s.name
        for s in scan.segments[1:]  # the first one's is checked only against an anchor
        if s.header is not None and s.header.prev_segment_hash == ZERO_HASH
    }
    return [
        p.segment
        for p in scan.problems
        if p.kind is ProblemKind.CHAIN_MISMATCH and p.offset == 32 and p.segment in zero
    ]
