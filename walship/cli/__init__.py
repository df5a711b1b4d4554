"""The ``walship`` command line (click). Imported only by the ``walship`` script, never by
``import walship``.

Each command family lives in its own module below; ``COMMAND_MODULES`` lists them, and each
module defines click commands that :func:`build_cli` attaches to the group.
"""

from __future__ import annotations

import importlib
import sys

import click

import walship
from walship.cli.errors import WalshipGroup
from walship.errors import WalshipError

COMMAND_MODULES = (
    "walship.cli.demo",
    "walship.cli.init",
    "walship.cli.append",
    "walship.cli.dump",
    "walship.cli.tail",
    "walship.cli.follow",
    "walship.cli.promote",
    "walship.cli.inspect",
    "walship.cli.verify",
    "walship.cli.plugins",
    "walship.cli.archive",
    "walship.cli.checkpoint",
    "walship.cli.prune",
    "walship.cli.repair",
    "walship.cli.status",
    "walship.cli.bench",
)


@click.group(cls=WalshipGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(walship.__version__, prog_name="walship")
def cli() -> None:
    """walship: a durable, segmented, tamper-evident write-ahead log."""


def build_cli() -> click.Group:
    """The group with every command of ``COMMAND_MODULES`` attached."""
    for module_name in COMMAND_MODULES:
        module = importlib.import_module(module_name)
        for obj in vars(module).values():
            if isinstance(obj, click.Command) and obj.name and obj.name not in cli.commands:
                cli.add_command(obj)
    return cli


def main() -> None:
    """Entry point of the ``walship`` script: one-line errors, never a traceback."""
    try:
        build_cli()(standalone_mode=True)
    except WalshipError as e:
        click.echo(f"walship: error: {e}", err=True)
        sys.exit(2)
