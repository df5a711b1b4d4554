"""The keyword arguments of :func:`walship.open`, as types: what a type checker (mypy, pyright)
holds a call to, and what :func:`walship.open` accepts at run time (:data:`OPEN_OPTIONS`).

Each key is the config's key of the same name (:mod:`walship.config`), with the same values:
sizes as ``int`` bytes or text like ``"64MiB"``, durations as seconds or text like ``"10ms"``,
and the sections (``rotation``, ``archive``, ``retention``) as dicts (``archives`` as a list of
``archive`` dicts) with the section's keys.
They are validated by the config's own model, with its one-line messages: a misspelt keyword
is a type error before it runs, and a :class:`~walship.errors.ConfigError` (with a "did you
mean") when it runs. A few keys exist only in Python: ``salvage``, ``repair``,
``seed_restarts``, ``clock``, ``anchor``, ``takeover`` and plugin objects in ``plugins``.

A leaf of typing only (no pydantic): ``import walship`` stays light. ::

    import walship
    from walship.options import OpenOptions

    options: OpenOptions = {"durability": "interval", "sync_interval": "5ms"}
    log = walship.open("./wal", **options)
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Literal, TypedDict

from walship.core.rotation import Clock
from walship.log import Durability

DurabilityName = Literal["always", "interval", "none"]
"""The names of :class:`~walship.log.Durability`."""
SizeValue = int | str
"""Bytes: ``1048576``, ``"512KiB"``, ``"64MiB"``, ``"1GiB"`` or ``"64MB"`` (decimal)."""
DurationValue = float | str
"""Seconds: ``1.5``, ``"250us"``, ``"10ms"``, ``"60s"``, ``"5m"``, ``"1h"``, ``"1m30s"``."""


class RotationOptions(TypedDict, total=False):
    """``rotation=``: when the active segment is closed and the next one opened."""

    max_segment_bytes: SizeValue
    """At least 64 bytes (the segment's header), header included; default ``64MiB``."""
    max_segment_age: DurationValue
    """A segment holding frames is rotated when this old; default ``60s``."""


class RetriesOptions(TypedDict, total=False):
    """``archive={"retries": ...}``: exponential backoff of failed uploads."""

    attempts: int
    """Upload attempts per segment, 1 to 1000; default 10."""
    backoff: DurationValue
    """The first backoff, at most 1h; default ``500ms``."""
    max_backoff: DurationValue
    """The longest backoff, at least ``backoff``, at most 24h; default ``60s``."""


class _ArchiveURL(TypedDict):
    url: str
    """Any fsspec URL whose protocol fsspec knows: ``s3://bucket/prefix``, ``file:///path``."""


class ArchiveOptions(_ArchiveURL, total=False):
    """``archive=``: where closed segments are shipped (``url`` is required)."""

    storage_options: Mapping[str, Any]
    """Handed to fsspec as they are (credentials, endpoint); never shown in messages."""
    workers: int
    """Parallel uploads, 1 to 256; default 4."""
    compression: Literal["none", "zstd"]
    """``zstd`` needs ``walship[zstd]``; default ``none``."""
    retries: RetriesOptions
    """Backoff of failed uploads."""
    lag_warning: int
    """Pending segments before the log warns, 1 to 10**9; default 64."""
    upload_process: bool
    """Upload from one shared child process at a lower priority; default ``True``."""
    conditional_create: Literal["required", "checked"]
    """``required``: only where S3 honours ``If-None-Match: *``; ``checked``: look before and
    read back after each create; default ``required``."""


class RetentionOptions(TypedDict, total=False):
    """``retention=``: which closed local segments may be removed (archived ones only)."""

    keep_local: str
    """``all`` (the default), ``until_archived`` or ``last:N``; the last two need ``archive``
    (or ``archives``)."""


class OpenOptions(TypedDict, total=False):
    """Every keyword argument of :func:`walship.open` besides ``path``, ``config`` and
    ``store`` (all optional; without ``config``, each default is the config's)."""

    instance_id: int | None
    """0 to 2**64-1, written in every header; default: the log's, or random for a new log."""
    durability: Durability | DurabilityName
    """When ``append`` returns: ``always`` (durable, the default), ``interval``, ``none``."""
    sync_interval: DurationValue
    """The ``interval`` flusher's period; default ``10ms``."""
    max_segment_bytes: SizeValue
    """Shortcut for ``rotation={"max_segment_bytes": ...}``."""
    max_segment_age: DurationValue
    """Shortcut for ``rotation={"max_segment_age": ...}``."""
    rotation: RotationOptions
    """The ``rotation:`` section."""
    archive: ArchiveOptions | None
    """The ``archive:`` section: ship closed segments to an fsspec URL (``None``: none)."""
    archives: list[ArchiveOptions] | None
    """The ``archives:`` section: several destinations, each what ``archive`` takes, each with
    its own workers, retries and record entries (never together with ``archive``)."""
    retention: RetentionOptions | None
    """The ``retention:`` section (``None``: keep every segment)."""
    plugins: Iterable[object]
    """Plugin objects, and specs as in the config: ``"module:attr"``, an entry-point name, a
    built-in (``walship.plugins.metrics``) or ``{"name": ..., "options": {...}}``; registered
    in this order, after the config's own."""
    entry_point_plugins: bool
    """Also load every installed ``walship.plugins`` entry point; default ``True``."""
    salvage: bool
    """Open a damaged log by cutting it back to its last good frame (see the README)."""
    repair: bool
    """With ``archive``: first put back every archived segment damaged or missing locally."""
    seed_restarts: bool
    """Accept the seed's zero prev hash after each restart (``log.recovery.chain_restarts``)."""
    clock: Clock
    """Where the log gets time (:class:`walship.ManualClock` in tests)."""
    takeover: bool
    """With ``archive``: take the archive over first (a follower's replica becomes its writer,
    fencing the old one: see ``walship promote`` and :mod:`walship.archive.promote`)."""
    anchor: bytes | None
    """The BLAKE3 the first local segment's prev hash must match (default: from the archive
    record)."""


OPEN_OPTIONS: frozenset[str] = OpenOptions.__required_keys__ | OpenOptions.__optional_keys__
"""The keyword arguments :func:`walship.open` takes (besides path, config and store)."""
RUNTIME_OPTIONS: frozenset[str] = frozenset(
    {"salvage", "repair", "seed_restarts", "clock", "anchor", "takeover"}
)
"""The keys of :class:`OpenOptions` that are not config keys: they go to the log as they are."""

__all__ = [
    "OPEN_OPTIONS",
    "RUNTIME_OPTIONS",
    "ArchiveOptions",
    "DurabilityName",
    "DurationValue",
    "OpenOptions",
    "RetentionOptions",
    "RetriesOptions",
    "RotationOptions",
    "SizeValue",
]
