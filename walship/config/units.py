"""Sizes and durations as a config writes them: ``64MiB``, ``512KiB``, ``10ms``, ``1m30s``."""

from __future__ import annotations

import re

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*$")
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)")


def parse_size(value: object) -> int:
    """Bytes from ``1048576``, ``"64MiB"``, ``"1.5 GiB"``, ``"10MB"``.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, int):
        return value
    if isinstance(value, str) and (m := _SIZE.match(value)):
        unit = _SIZE_UNITS.get(m.group(2).lower())
        if unit is not None and (unit > 1 or "." not in m.group(1)):
            return int(float(m.group(1)) * unit)
    raise ValueError(value)


def parse_duration(value: object) -> float:
    """Seconds from ``1.5``, ``"250us"``, ``"10ms"``, ``"60s"``, ``"5m"``, ``"1h"``, ``"1m30s"``.

    Raises:
        ValueError: anything else.
    """
    if isinstance(value, bool):
        raise ValueError(value)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        text = value.strip()
        try:
            return float(text)
        except ValueError:
            pass
        parts = _DURATION_PART.findall(text)
        if parts and "".join(n + u for n, u in parts) == text:
            return sum(float(n) * _DURATION_UNITS[u] for n, u in parts)
    raise ValueError(value)
