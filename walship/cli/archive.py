"""``walship archive`` (upload what is pending) and ``walship restore`` (from an archive)."""

from __future__ import annotations

import inspect
import json
import os
import re
import sys
import time
from pathlib import Path
from typing import Any

import click

import walship
from walship.backends.archive_errors import ArchiveIntegrityError
from walship.errors import ConfigError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h)?\s*$")
_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}


def _expand(value: Any, where: str) -> Any:
    if isinstance(value, str):

        def sub(m: re.Match[str]) -> str:
            if m.group(1) in os.environ:
                return os.environ[m.group(1)]
            if m.group(2) is not None:
                return m.group(2)
            raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")

        return _VAR.sub(sub, value)
    if isinstance(value, dict):
        return {k: _expand(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list):
        return [_expand(v, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def _seconds(value: Any, where: str) -> float:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(value) if isinstance(value, str) else None
    if m is None:
        raise ConfigError(f"{where}: {value!r} is not a duration (e.g. 500ms, 10s, 1m)")
    return float(m.group(1)) * _UNIT[m.group(2)]


def _open_with_minimal_config(path: Path) -> walship.Log:
    """Read the parts of a config file ``walship archive`` needs: ``store`` (posix ``path``),
    ``instance_id``, ``archive`` and ``retention``, with ``${VAR}`` / ``${VAR:-default}`` and
    durations like ``500ms``. Used until the full configuration layer (``walship.open(config=)``)
    is installed."""
    import yaml

    try:
        doc = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ConfigError(f"{path}: cannot read the config: {e}") from None
    if not isinstance(doc, dict):
        raise ConfigError(f"{path}: the config must be a mapping")
    doc = _expand(doc, path.name)
    store = doc.get("store") or {}
    if (
        not isinstance(store, dict)
        or store.get("backend", "posix") != "posix"
        or not store.get("path")
    ):
        raise ConfigError(f"{path}: store: needs backend posix and a path")
    archive = doc.get("archive")
    if isinstance(archive, dict) and isinstance(archive.get("retries"), dict):
        retries = dict(archive["retries"])
        for key in ("backoff", "max_backoff"):
            if key in retries:
                retries[key] = _seconds(retries[key], f"archive.retries.{key}")
        archive = {**archive, "retries": retries}
    return walship.open(
        Path(store["path"]),
        instance_id=doc.get("instance_id"),
        archive=archive,
        retention=doc.get("retention"),
    )


def open_configured_log(path: Path) -> walship.Log:
    """Open the log a YAML config describes (through ``walship.open(config=...)`` when the
    configuration layer provides it)."""
    if "config" in inspect.signature(walship.open).parameters:
        return walship.open(config=str(path))  # type: ignore[call-arg,unused-ignore]
    return _open_with_minimal_config(path)


@click.command("archive")
@click.option(
    "-c",
    "--config",
    "config",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="The log's YAML config (with an archive: section).",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=None,
    help="Stop waiting after this many seconds (default: until every attempt is used).",
)
def archive(config: Path, timeout: float | None) -> None:
    """Upload every closed segment that is not archived yet, verified, with a progress bar.

    Exits 1 when some segment could not be archived (each is named with its last error).
    """
    from tqdm import tqdm

    log = open_configured_log(config)
    try:
        archiver = log.archiver
        if archiver is None:
            raise click.UsageError(f"{config} has no archive: section")
        archiver.requeue()
        start = archiver.stats()
        total = start["archived"] + start["pending"]
        deadline = None if timeout is None else time.monotonic() + timeout
        with tqdm(
            total=total, unit="segment", desc="archive", file=sys.stderr, disable=None
        ) as bar:
            while True:
                st = archiver.stats()
                bar.update(st["archived"] - bar.n)
                if st["pending"] == st["stalled_now"]:
                    break
                if deadline is not None and time.monotonic() >= deadline:
                    break
                archiver.wait_for_progress(0.2)
        st = archiver.stats()
        click.echo(
            f"archived {st['archived']} segments ({st['bytes']} bytes; "
            f"{st['already_archived']} were there already) to {archiver.url}"
        )
        if st["removed"]:
            click.echo(f"removed {st['removed']} local segments (retention)")
        left = archiver.pending()
        if left:
            stalled = archiver.stalled()
            click.echo(f"{len(left)} segments are not archived:", err=True)
            for name in left:
                click.echo(f"  {name}: {stalled.get(name, 'still in progress')}", err=True)
            sys.exit(1)
    finally:
        log.close()


def _storage_options(pairs: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r} is not KEY=VALUE", param_hint="--storage-option")
        try:
            out[key] = json.loads(value)
        except ValueError:
            out[key] = value
    return out


@click.command("restore")
@click.argument("url")
@click.argument("directory", type=click.Path(file_okay=False, path_type=Path))
@click.option("--to-seq", type=click.IntRange(min=0), default=None, help="Stop at this commit_seq.")
@click.option(
    "--to-time",
    default=None,
    metavar="ISO8601",
    help="Stop at the last frame stamped at or before this time (no offset: UTC).",
)
@click.option(
    "--jobs", type=click.IntRange(1, 256), default=4, show_default=True, help="Parallel downloads."
)
@click.option(
    "-o",
    "--storage-option",
    "options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An fsspec storage option (JSON values allowed), e.g. -o endpoint_url=http://...",
)
def restore(
    url: str,
    directory: Path,
    to_seq: int | None,
    to_time: str | None,
    jobs: int,
    options: tuple[str, ...],
) -> None:
    """Restore the log archived at URL into DIRECTORY (new or empty), whole or up to a point.

    Every segment is checked against its manifest (size, BLAKE3) and the chain; a missing or
    altered segment is named and the restore exits 1 without leaving a directory behind.
    """
    from tqdm import tqdm

    from walship.restore import RestoreProgress
    from walship.restore import restore as run_restore

    if to_seq is not None and to_time is not None:
        raise click.UsageError("give at most one of --to-seq and --to-time")
    bar: Any = None

    def progress(p: RestoreProgress) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(
                total=p.total_bytes,
                unit="B",
                unit_scale=True,
                desc="restore",
                file=sys.stderr,
                disable=None,
            )
        bar.update(p.done_bytes - bar.n)

    try:
        result = run_restore(
            url,
            directory,
            to_seq=to_seq,
            to_time=to_time,
            jobs=jobs,
            progress=progress,
            storage_options=_storage_options(options),
        )
    except ArchiveIntegrityError as e:
        click.echo(f"walship: restore failed: {e}", err=True)
        sys.exit(1)
    finally:
        if bar is not None:
            bar.close()
    click.echo(f"restored {result.summary()}")
    click.echo(f"from     {result.url}")
    click.echo(f"into     {result.directory} (continues in {result.active_segment})")
    target = to_seq if to_seq is not None else to_time
    if target is not None:
        if result.cut_segment is None and result.last_commit_seq == result.archive_last_commit_seq:
            click.echo(
                f"target   {target} is at or beyond the archive's last commit_seq "
                f"{result.archive_last_commit_seq}: restored everything"
            )
        else:
            click.echo(f"target   {target}: ends at commit_seq {result.last_commit_seq}")
