"""``walship init [PATH]``: write a commented example config."""

from __future__ import annotations

from pathlib import Path

import click

from walship.cli.errors import CliError

TEMPLATE = """\
# walship configuration. Every key is optional; the values shown are the defaults unless
# marked "example". Sizes: 1048576, 512KiB, 64MiB, 1GiB (or 64MB, decimal). Durations: 1.5
# (seconds), 250us, 10ms, 60s, 5m, 1h. ${VAR} and ${VAR:-default} expand from the environment.

store:                        # where the active log lives
  backend: posix              # posix | memory | a name from the walship.backends entry points
  path: ./wal                 # relative to this file's directory
  # other keys are handed to the backend's class as keyword arguments

# instance_id: 1              # example; default: taken from the log, or random for a new one

durability: always            # always: append returns once fdatasync'ed (group commit)
                              # interval: a flusher syncs every sync_interval
                              # none: the OS decides; synced at rotation and close
sync_interval: 10ms           # for durability: interval

rotation:                     # a segment is closed when either limit is reached
  max_segment_bytes: 64MiB    # header included; a batch may overshoot it once
  max_segment_age: 60s        # only a segment holding frames is rotated for age

# archive:                    # example: ship every closed segment to object storage
#   url: s3://my-bucket/wal   # any fsspec URL (s3://, gs://, file://, memory://)
#   storage_options:          # handed to fsspec as they are
#     endpoint_url: ${S3_ENDPOINT_URL:-https://s3.amazonaws.com}
#   workers: 4
#   compression: none         # none | zstd (needs walship[zstd])
#   retries: {attempts: 10, backoff: 500ms, max_backoff: 60s}
#   lag_warning: 64           # pending segments before the log warns
#   upload_process: true      # upload from a lower-priority child process
#   drain_on_close: 30s       # close waits this long for pending uploads (0: no wait)
#   max_pending: 1GiB         # backpressure: appends wait when more waits for upload
#   backpressure_timeout: 30s # ... this long, then fail (ArchiveBackpressureError)

# retention:                  # example: remove local segments once archived and verified
#   keep_local: until_archived   # all | until_archived | last:N

plugins:                      # module:attr, an entry-point name, or a built-in
  - walship.plugins.logging   # one structured log line per event
  # - name: walship.plugins.metrics
  #   options: {window: 1024}

entry_point_plugins: true     # also load every installed plugin (group walship.plugins)
"""


@click.command("init")
@click.argument("path", default="walship.yaml", type=click.Path(dir_okay=False))
@click.option("--force", is_flag=True, help="Overwrite PATH if it exists.")
def init_command(path: str, force: bool) -> None:
    """Write a commented example config to PATH (default: ./walship.yaml)."""
    target = Path(path)
    if target.exists() and not force:
        raise CliError(f"{path}: exists already (use --force to overwrite it)")
    if not target.parent.is_dir():
        raise CliError(f"{target.parent}: no such directory")
    target.write_text(TEMPLATE, encoding="utf-8")
    click.echo(f"wrote {path}; open it with walship.open(config={str(path)!r})")
