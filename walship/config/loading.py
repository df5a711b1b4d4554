"""Reading a config: YAML text or a file (``yaml.safe_load`` only), ``${VAR}`` expansion,
overrides, validation into a :class:`WalshipConfig`."""

from __future__ import annotations

import difflib
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from walship.config.environment import expand
from walship.config.keys import Loc
from walship.config.messages import check_store, error_line
from walship.config.schema import WalshipConfig
from walship.errors import ConfigError

_SHORTCUTS = {
    "path": ("store", "path"),
    "max_segment_bytes": ("rotation", "max_segment_bytes"),
    "max_segment_age": ("rotation", "max_segment_age"),
}


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = _merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def _apply_overrides(data: dict[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    known = [*WalshipConfig.model_fields, *_SHORTCUTS]
    nested: dict[str, Any] = {}
    for key, value in overrides.items():
        if key not in known:
            close = difflib.get_close_matches(key, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"override {key}: unknown option ({hint}expected one of: {', '.join(known)})"
            )
        if key in _SHORTCUTS:
            section, sub = _SHORTCUTS[key]
            nested = _merge(nested, {section: {sub: value}})
        elif key == "plugins":
            nested["plugins"] = [*(data.get("plugins") or []), *value]
        else:
            nested = _merge(nested, {key: value})
    return _merge(data, nested)


def _overridden(section: str, overrides: Mapping[str, Any]) -> bool:
    return section in overrides or any(
        _SHORTCUTS[k][0] == section for k in overrides if k in _SHORTCUTS
    )


def validate_config(
    data: object,
    source: str = "<config>",
    *,
    base_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
    mark_overrides: bool = True,
) -> WalshipConfig:
    """Validate already-parsed config data (a mapping; ``None`` means all defaults).

    Args:
        source: the name messages start with (the file's path).
        base_dir: what a relative ``store.path`` is relative to.
        overrides: top-level keys (and the shortcuts ``path``, ``max_segment_bytes``,
            ``max_segment_age``) that replace the file's; mappings merge key by key and
            ``plugins`` are added to the file's. They are not ``${}``-expanded.
        env: the environment for ``${VAR}`` (default ``os.environ``).
        mark_overrides: a message about an overridden key says ``SOURCE (with overrides)``
            (``False``: the overrides are all there is, :func:`walship.open`'s arguments).
    Raises:
        ConfigError: one line: the source, the key path, the value, what was expected.
    """
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(
            f"{source}: expected a mapping of settings (store:, durability:, ...) at the top "
            f"level, got {type(data).__name__}"
        )
    refs: dict[Loc, str] = {}
    expanded = expand(data, (), source, os.environ if env is None else env, refs)
    assert isinstance(expanded, dict)
    if overrides:
        expanded = _apply_overrides(expanded, overrides)
    try:
        cfg = WalshipConfig.model_validate(expanded)
    except ValidationError as e:
        # a misspelt key also makes its correct name "missing": report the unknown key first
        errors = sorted(e.errors(include_url=False), key=lambda x: x["type"] != "extra_forbidden")
        n = len(errors) - 1
        more = f" (and {n} more problem{'s' if n > 1 else ''})" if n else ""
        first = errors[0]
        if (
            mark_overrides
            and overrides
            and first["loc"]
            and _overridden(str(first["loc"][0]), overrides)
        ):
            source = f"{source} (with overrides)"
        raise ConfigError(f"{source}: {error_line(first, refs, expanded)}{more}") from None
    check_store(cfg, source, refs)
    if base_dir is not None:
        cfg.set_base_dir(Path(base_dir))
    return cfg


def parse_config(
    text: str,
    source: str = "<string>",
    *,
    base_dir: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> WalshipConfig:
    """Parse YAML text (``yaml.safe_load``) and validate it. Raises :class:`ConfigError`."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or type(e).__name__
        raise ConfigError(f"{source}: invalid YAML{where}: {problem}") from None
    return validate_config(data, source, base_dir=base_dir, overrides=overrides, env=env)


def load_config(
    path: str | os.PathLike[str],
    *,
    overrides: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
) -> WalshipConfig:
    """Read and validate a YAML config file. A relative ``store.path`` in it is relative to
    the file's directory.

    Raises:
        ConfigError: the file is missing or unreadable, not YAML, or invalid (one line).
    """
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{p}: no such config file (`walship init` writes one)") from None
    except IsADirectoryError:
        raise ConfigError(f"{p}: is a directory, expected a YAML config file") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{p}: not UTF-8 text (byte {e.start})") from None
    except OSError as e:
        raise ConfigError(f"{p}: cannot read: {e.strerror or e}") from None
    return parse_config(text, str(p), base_dir=p.resolve().parent, overrides=overrides, env=env)
