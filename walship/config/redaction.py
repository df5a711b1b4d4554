"""Secrets stay out of messages: values from the environment are shown as their ``${VAR}``
reference; values under ``storage_options``, ``encryption``, plugin ``options`` or a
secret-looking key as ``<hidden>``; a URL's user and password as ``<hidden>`` (the one URL
redaction, :func:`walship.archive.credentials.redact_url`: config imports archive, never the
reverse)."""

from __future__ import annotations

import re
from collections.abc import Mapping

from walship.archive.credentials import redact_url
from walship.config.keys import Loc

HIDDEN = "<hidden>"
"""How the config's messages show a secret (a URL's user-info included)."""

_SECRET_KEY = re.compile(r"secret|passw|token|key|credential|auth", re.IGNORECASE)
_HIDDEN_UNDER = {"storage_options", "options", "encryption"}


def _sensitive(loc: Loc) -> bool:
    return any(isinstance(p, str) and (p in _HIDDEN_UNDER or _SECRET_KEY.search(p)) for p in loc)


def shown(loc: Loc, value: object, refs: Mapping[Loc, str]) -> str:
    """The value as it may appear in a message: never a secret."""
    if _sensitive(loc):
        return HIDDEN
    for i in range(len(loc), -1, -1):  # the value, or a string it sits in, came from ${...}
        if loc[:i] in refs:
            return f"{refs[loc[:i]]!r} (from the environment)"
    if isinstance(value, Mapping):
        return "{...}"  # its keys or values may be secret; the path says where it is
    if isinstance(value, (list, tuple)):
        return "[...]"
    if isinstance(value, str):
        value = redact_url(value, HIDDEN)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
