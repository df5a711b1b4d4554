"""Settings values as a config or a caller writes them, validated: sizes (``64MiB``), durations
(``10ms``, ``1m30s``), integers in a range, choices, booleans, each failing with what it
expected.

A leaf (it imports pydantic only), shared by :mod:`walship.config` and the archive's one settings
model (:mod:`walship.archive.settings`), which sit side by side above the log: neither may
import the other's internals. Every failure is a pydantic error of type ``walship`` that says
two things: ``ctx["expected"]``, what was expected (the config's one-line messages: ``archive.
workers = 0: expected an integer from 1 to 256``), and its message, in pydantic's own words
(what ``Log(archive={...})`` says: ``archive.workers: Input should be greater than or equal to
1``).
"""

from __future__ import annotations

import difflib
import re
from typing import Annotated, Any

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

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
_DURATION_UNITS = {
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
    "d": 86400.0,
}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h|d)")


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
    """Seconds from ``1.5``, ``"250us"``, ``"10ms"``, ``"60s"``, ``"5m"``, ``"1h"``, ``"30d"``,
    ``"1m30s"``.

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


# pydantic's own words for these failures, so that the Log's messages read as pydantic's
_NO_INTEGER = "Input should be a valid integer"
_NOT_AN_INTEGER = {
    str: f"{_NO_INTEGER}, unable to parse string as an integer",
    float: f"{_NO_INTEGER}, got a number with a fractional part",
}
_NOT_A_NUMBER = "Input should be a valid number, unable to parse string as a number"
_TRUE = ("true", "yes", "on", "1", "t", "y")
_FALSE = ("false", "no", "off", "0", "f", "n")


def expected(
    what: str, path: str | None = None, message: str = "{expected}", **context: Any
) -> PydanticCustomError:
    """A validation error: ``what`` was expected; ``path`` (dotted, below the location of the
    failing model) points at the offending key; ``message`` (a template over ``context``) is
    how it reads without the config's framing (default: ``what``)."""
    return PydanticCustomError("walship", message, {"expected": what, "path": path, **context})


def size_at_least(minimum: int) -> BeforeValidator:
    """Bytes, from an integer or a size like ``64MiB``; at least ``minimum``."""
    what = f"a size of at least {minimum} bytes, like 64MiB, 512KiB or 1048576"

    def check(value: object) -> int:
        try:
            n = parse_size(value)
        except ValueError:
            raise expected(what) from None
        if n < minimum:
            raise expected(what)
        return n

    return BeforeValidator(check)


def duration_at_most(maximum: float | None = None) -> BeforeValidator:
    """Seconds, from a number or a duration like ``10ms``; positive, at most ``maximum``."""
    most = f" of at most {maximum:g}s" if maximum is not None else ""
    what = f"a positive duration{most}, like 10ms, 60s, 5m or 1.5 (seconds)"

    def check(value: object) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise expected(what, message=_NOT_A_NUMBER) from None
        if not seconds > 0:
            raise expected(what, message="Input should be greater than 0")
        if maximum is not None and seconds > maximum:
            raise expected(what, message="Input should be less than or equal to {le:g}", le=maximum)
        return seconds

    return BeforeValidator(check)


def integer_in(lo: int, hi: int) -> BeforeValidator:
    """An integer (or its decimal digits) from ``lo`` to ``hi``."""
    what = f"an integer from {lo} to {hi}"

    def check(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, float) and value.is_integer():
            value = int(value)  # 4.0, as pydantic takes it
        if isinstance(value, bool) or not isinstance(value, int):
            raise expected(what, message=_NOT_AN_INTEGER.get(type(value), _NO_INTEGER))
        if value < lo:
            raise expected(what, message="Input should be greater than or equal to {ge}", ge=lo)
        if value > hi:
            raise expected(what, message="Input should be less than or equal to {le}", le=hi)
        return value

    return BeforeValidator(check)


def one_of(*choices: str) -> BeforeValidator:
    """One of ``choices`` (a near miss gets a "did you mean")."""

    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise expected(f"one of {', '.join(choices)}{hint}")

    return BeforeValidator(check)


def boolean(value: object) -> bool:
    """``True``/``False``, ``1``/``0``, or ``true``/``yes``/``on``/``1``/``t``/``y`` and
    ``false``/``no``/``off``/``0``/``f``/``n`` (what pydantic takes for a bool)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in _TRUE:
        return True
    if isinstance(value, str) and value.strip().lower() in _FALSE:
        return False
    raise expected(
        "true or false", message="Input should be a valid boolean, unable to interpret input"
    )


def name(value: object) -> str:
    """A non-empty string, stripped."""
    if not isinstance(value, str) or not value.strip():
        raise expected("a non-empty string")
    return value.strip()


Size = Annotated[int, size_at_least(1)]
SEGMENT_SIZE_MIN = 64
"""The smallest ``max_segment_bytes``: a segment's header (``walship.core.header.HEADER_SIZE``);
at that size every batch rotates. One floor for a config file and ``walship.open``."""
SegmentSize = Annotated[int, size_at_least(SEGMENT_SIZE_MIN)]
Duration = Annotated[float, duration_at_most()]
Bool = Annotated[bool, BeforeValidator(boolean)]
Name = Annotated[str, BeforeValidator(name)]
