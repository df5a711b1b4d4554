"""Key paths: where a value sits in a config, and how messages spell it (``archive.url``,
``plugins[0].name``)."""

from __future__ import annotations

Loc = tuple[str | int, ...]


def dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"
