"""The value types only the config's own fields have: an fsspec URL (its protocol known to
fsspec) and a plugin entry; the generic ones (sizes, durations, integers, choices, booleans) are
in :mod:`walship.values`, shared with the archive's settings model."""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from walship.values import expected

U64_MAX = (1 << 64) - 1


def fsspec_url(value: object) -> str:
    what = "an fsspec URL like s3://bucket/prefix, gs://bucket/prefix or file:///path"
    if not isinstance(value, str) or "://" not in value:
        raise expected(what)
    scheme = value.split("://", 1)[0]
    import fsspec

    # the built-in names and those registered at run time (fsspec.register_implementation)
    known = set(fsspec.available_protocols()) | set(fsspec.registry)
    if scheme not in known:
        close = difflib.get_close_matches(scheme, sorted(known), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise expected(f"{what} (fsspec knows no protocol {scheme!r}{hint})")
    return value


def plugin_entry(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping):
        return value
    raise expected("a plugin name ('module:attr' or an entry-point name) or {name:, options:}")
