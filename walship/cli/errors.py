"""One-line errors for the command line: ``walship: error: <what>`` on stderr, exit 2 (1 for
a missing encryption key).

:class:`WalshipGroup` turns every :class:`~walship.errors.WalshipError` and ``OSError`` a command
lets out into such a line, so bad input (a missing directory, an unreadable or invalid config)
never prints a traceback.
"""

from __future__ import annotations

import os
import sys
from typing import IO, Any

import click

from walship.errors import ArchiveKeyError, WalshipError

USAGE_ERROR = 2
"""Exit status of usage and I/O errors (``verify`` exits 1 when it finds damage)."""
PROBLEM_FOUND = 1
"""Exit status of a problem found in what was read: damage, or an encrypted object whose key
was not given (:class:`~walship.errors.ArchiveKeyError`, naming the key id)."""


class CliError(click.ClickException):
    """A one-line error (whitespace folded); exit status 2."""

    exit_code = USAGE_ERROR

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(message.split()))

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"walship: error: {self.format_message()}", err=True, file=file)


class ProblemFoundError(CliError):
    """A one-line error about what was read (an encryption key not given); exit status 1."""

    exit_code = PROBLEM_FOUND


def describe_os_error(e: OSError) -> str:
    """``path: reason`` for an ``OSError``, without errno noise."""
    what = e.strerror or str(e) or type(e).__name__
    where = e.filename if e.filename is not None else None
    return f"{where}: {what}" if where is not None else what


class WalshipGroup(click.Group):
    """A click group whose commands report walship and I/O errors in one line (exit 2)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except BrokenPipeError:
            # the reader went away (``walship dump | head``): stop quietly, as cat does
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            ctx.exit(1)
        except ArchiveKeyError as e:  # a problem found in the archive, not a usage error
            raise ProblemFoundError(str(e)) from e
        except WalshipError as e:
            raise CliError(str(e)) from e
        except OSError as e:
            raise CliError(describe_os_error(e)) from e
