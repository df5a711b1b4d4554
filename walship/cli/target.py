"""What ``inspect``, ``verify`` and ``dump`` read: a local directory or an archive URL."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import click
import yaml

from walship.cli.errors import CliError
from walship.core.header import ZERO_HASH, segment_name, segment_seqs
from walship.core.scan import LogScan, ProblemKind, scan_store
from walship.store import SegmentStore


def open_target(target: str, storage_options: dict[str, Any] | None = None) -> SegmentStore:
    """A read-only view of ``target``: a directory (a :class:`PosixStore`, used only to list
    and read: never locked, never written) or, when ``target`` contains ``://``, an archive
    URL (an ``ArchiveReadStore`` over fsspec with ``storage_options``).

    Raises:
        CliError: the directory is missing or not a directory, or archive support is missing.
    """
    if "://" in target:
        try:
            from walship.archive import ArchiveReadStore  # type: ignore[import-not-found,unused-ignore]
        except ImportError as e:
            raise CliError(f"{target}: cannot read archive URLs here ({e})") from e
        store: SegmentStore = ArchiveReadStore(target, storage_options or {})
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


def storage_options_from(config: str | None, pairs: tuple[str, ...]) -> dict[str, Any]:
    """fsspec storage options: ``archive.storage_options`` of ``config`` (if given), then each
    ``KEY=VALUE`` of ``pairs`` (the value read as a YAML scalar: ``true``, ``3``, ``text``)."""
    options: dict[str, Any] = {}
    if config is not None:
        from walship.config import load_config

        cfg = load_config(config)
        if cfg.archive is not None:
            options.update(cfg.archive.storage_options)
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--storage-option {pair!r}: expected KEY=VALUE")
        try:
            options[key] = yaml.safe_load(value) if value else ""
        except yaml.YAMLError:
            options[key] = value
    return options


def target_options(f: Any) -> Any:
    """The ``-c/--config`` and ``-o/--storage-option`` options of a command reading a target."""
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
        help="Take an archive URL's storage options from this config's archive: section.",
    )(f)


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
    options = storage_options_from(config, storage_option) if "://" in target else {}
    store = open_target(target, options)
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
