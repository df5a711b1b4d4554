"""``walship follow URL DIR``: keep DIR an exact replica of the sealed segments archived at
URL and of the live-shipped parts after them, printing what each round added and the lag
(:class:`walship.archive.follow.Follower`)."""

from __future__ import annotations

import sys

import click

from walship.cli.errors import CliError
from walship.cli.target import keyring_from, storage_options_from, target_options
from walship.values import parse_duration


def _seconds(value: str, option: str) -> float:
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise CliError(f"{option} {value!r} is not a duration (e.g. 1s, 500ms, 2m)") from None
    if seconds <= 0:
        raise CliError(f"{option} must be positive, got {value!r}")
    return seconds


@click.command("follow")
@click.argument("url")
@click.argument("directory", metavar="DIR")
@click.option("--interval", default="1s", show_default=True, help="Time between two rounds.")
@click.option("--rounds", type=click.IntRange(min=1), default=None, help="Stop after N rounds.")
@click.option("--jobs", type=click.IntRange(min=1), default=4, show_default=True)
@target_options
def follow_command(
    url: str,
    directory: str,
    interval: str,
    rounds: int | None,
    jobs: int,
    config: str | None,
    storage_option: tuple[str, ...],
) -> None:
    """Keep DIR an exact replica of the sealed segments archived at URL and of the
    live-shipped parts after them: a restore when DIR holds no segment, then every INTERVAL the
    new segments and parts, each checked as a restore checks it and put in place whole, in
    order. DIR can be read meanwhile (`walship tail DIR -f`, walship.open(DIR, read_only=True)).
    One line per round: what was added (segments, parts, frames, of which from live parts) and
    the lag (frames and seconds behind the archive's newest). Runs until interrupted (or
    --rounds).

    Exit status 1 when the archive shows damage or a gap (nothing after it can be taken).
    """
    from walship.archive.follow import Follower
    from walship.errors import ArchiveIntegrityError

    every = _seconds(interval, "--interval")
    options = storage_options_from(config, storage_option, url)
    keys = keyring_from(config, url)
    with Follower(url, directory, options, interval=every, jobs=jobs, encryption=keys) as follower:
        click.echo(f"walship follow: {follower.url} -> {directory}, every {every:g} s", err=True)
        try:
            follower.run(
                rounds=rounds,
                on_step=lambda step: click.echo(step.summary()),
                on_error=lambda e: click.echo(f"walship follow: {e}; retrying", err=True),
            )
        except ArchiveIntegrityError as e:
            click.echo(f"walship: error: {e}", err=True)
            sys.exit(1)
        except KeyboardInterrupt:
            sys.exit(130)
