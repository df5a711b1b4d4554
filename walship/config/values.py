"""The validated value types of the config's fields (sizes, durations, integers in a range,
choices, booleans, URLs, retention rules, plugin entries), each failing with what it expected.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Annotated

from pydantic import BeforeValidator
from pydantic_core import PydanticCustomError

from walship.config.units import parse_duration, parse_size

U64_MAX = (1 << 64) - 1


def expected(what: str, path: str | None = None) -> PydanticCustomError:
    """A validation error whose message is what was expected; ``path`` (dotted, below the
    location of the failing model) points at the offending key."""
    return PydanticCustomError("walship", "{expected}", {"expected": what, "path": path})


def _size(minimum: int) -> BeforeValidator:
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
    most = f" of at most {maximum:g}s" if maximum is not None else ""
    what = f"a positive duration{most}, like 10ms, 60s, 5m or 1.5 (seconds)"

    def check(value: object) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise expected(what) from None
        if not seconds > 0 or (maximum is not None and seconds > maximum):
            raise expected(what)
        return seconds

    return BeforeValidator(check)


def integer_in(lo: int, hi: int) -> BeforeValidator:
    what = f"an integer from {lo} to {hi}"

    def check(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise expected(what)
        return value

    return BeforeValidator(check)


def one_of(*choices: str) -> BeforeValidator:
    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise expected(f"one of {', '.join(choices)}{hint}")

    return BeforeValidator(check)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise expected("true or false")


def fsspec_url(value: object) -> str:
    what = "an fsspec URL like s3://bucket/prefix, gs://bucket/prefix or file:///path"
    if not isinstance(value, str) or "://" not in value:
        raise expected(what)
    scheme = value.split("://", 1)[0]
    import fsspec

    known = set(fsspec.available_protocols())
    if scheme not in known:
        close = difflib.get_close_matches(scheme, sorted(known), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise expected(f"{what} (fsspec knows no protocol {scheme!r}{hint})")
    return value


def keep_local_rule(value: object) -> str:
    what = "all, until_archived or last:N (N >= 1 closed segments)"
    if value in ("all", "until_archived"):
        return str(value)
    if isinstance(value, str) and (m := re.fullmatch(r"last:(\d+)", value)) and int(m[1]) >= 1:
        return f"last:{int(m[1])}"
    raise expected(what)


def compression_name(value: object) -> str:
    if value not in ("none", "zstd"):
        raise expected("one of none, zstd")
    if value == "zstd":
        import importlib.util

        if importlib.util.find_spec("zstandard") is None:
            raise expected("none, or zstd with the zstandard package (pip install walship[zstd])")
    return str(value)


def plugin_entry(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping):
        return value
    raise expected("a plugin name ('module:attr' or an entry-point name) or {name:, options:}")


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise expected("a non-empty string")
    return value.strip()


Size = Annotated[int, _size(1)]
SegmentSize = Annotated[int, _size(1024)]
Duration = Annotated[float, duration_at_most()]
Bool = Annotated[bool, BeforeValidator(_boolean)]
Name = Annotated[str, BeforeValidator(_name)]
