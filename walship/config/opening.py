"""A :class:`~walship.log.Log` opened as a config says (:func:`open_log`), or as the keyword
arguments of :func:`walship.open` say (:func:`open_with_options`): both validated by the one
config model, with its one-line messages."""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from walship.errors import ConfigError
from walship.options import OPEN_OPTIONS

if TYPE_CHECKING:
    from walship.config.schema import WalshipConfig
    from walship.log import Log
    from walship.store import SegmentStore

_RUNTIME = ("store", "salvage", "repair", "seed_restarts", "clock", "anchor", "takeover")
_SOURCE = "walship.open"
"""What a message about a keyword argument of :func:`walship.open` (without a config) starts
with."""


def open_log(
    config: str | os.PathLike[str] | Mapping[str, Any] | WalshipConfig, **overrides: Any
) -> Log:
    """Open a log as ``config`` says (a file path, a mapping, or a :class:`WalshipConfig`).

    ``overrides`` replace config keys (see :func:`validate_config`); besides, ``store`` (a
    :class:`~walship.store.SegmentStore` object used instead of the ``store:``
    section; a mapping is a ``store:`` section), ``salvage``, ``repair``, ``seed_restarts``,
    ``clock`` and ``anchor`` go to the Log as they are, and plugin objects in ``plugins`` are
    registered after the configured plugins, in the order given among the other plugins
    of ``plugins``, before the entry points' plugins.

    Raises:
        ConfigError: the config or an override is invalid.
        PluginError: a plugin the config names failed to import, to be created or to validate
            (named); an entry-point plugin that fails is skipped with a warning instead.
        LogCorruptError, StoreLockedError: as :class:`~walship.log.Log`.
    """
    return _open(config, dict(overrides))


def open_with_options(
    path: str | os.PathLike[str] | None,
    config: str | os.PathLike[str] | Mapping[str, Any] | WalshipConfig | None,
    store: SegmentStore | Mapping[str, Any] | None,
    options: Mapping[str, Any],
) -> Log:
    """:func:`walship.open`'s body: its keyword arguments (:class:`walship.options.OpenOptions`)
    validated as config keys, over ``config`` when given, else over the config's defaults.

    A relative ``path`` is relative to the current directory, with a config too (a relative
    ``store.path`` written in a config file is relative to the file's directory).

    Raises:
        ValueError: without a config, not exactly one of ``path`` and ``store``.
        ConfigError: an unknown keyword argument ("did you mean") or a bad value, one line as
            the config's (``walship.open: durability = 'alway': expected one of always,
            interval, none (did you mean 'always'?)``).
        PluginError, LogCorruptError, StoreLockedError: as :func:`open_log`.
    """
    overrides = dict(options)
    if config is None:
        if (path is None) == (store is None):
            raise ValueError("give exactly one of path or store (or a config)")
        _check_keywords(overrides)
    if store is not None:
        overrides["store"] = dict(store) if isinstance(store, Mapping) else store
    if path is not None:
        # with a config, a relative store.path is the file's; a path given here is the caller's
        overrides["path"] = os.fspath(path) if config is None else os.path.abspath(path)
    return _open(config, overrides)


def _check_keywords(options: Mapping[str, Any]) -> None:
    for key in options:
        if key not in OPEN_OPTIONS:
            known = sorted(OPEN_OPTIONS)
            close = difflib.get_close_matches(key, known, n=1)
            hint = (
                f"did you mean {close[0]!r}?" if close else "expected one of: " + ", ".join(known)
            )
            raise ConfigError(f"{_SOURCE}: unknown keyword argument {key!r} ({hint})")


def _is_spec(item: object) -> bool:
    """A plugin named as the config names one (else a plugin object)."""
    if isinstance(item, tuple):  # (spec, options), as walship.plugins.manager takes it
        return len(item) == 2 and isinstance(item[0], str)
    return isinstance(item, (str, Mapping))


def _spec(item: object) -> object:
    if isinstance(item, tuple):
        name, options = item
        return {"name": name} if options is None else {"name": name, "options": options}
    return dict(item) if isinstance(item, Mapping) else item


def _in_order(specs: list[dict[str, Any]], items: list[object]) -> list[object]:
    """The validated specs of the config and of ``items``, with the plugin objects of
    ``items`` where they were among them."""
    given = sum(map(_is_spec, items))
    out: list[object] = list(specs[: len(specs) - given])
    validated = iter(specs[len(specs) - given :])
    out += [next(validated) if _is_spec(item) else item for item in items]
    return out


def _open(
    config: str | os.PathLike[str] | Mapping[str, Any] | WalshipConfig | None,
    overrides: dict[str, Any],
) -> Log:
    from walship.plugins.manager import collect_plugins
    from walship.wiring import build_log

    runtime = {
        k: overrides.pop(k)
        for k in _RUNTIME
        if k in overrides and not (k == "store" and isinstance(overrides[k], Mapping))
    }
    items: list[object] = []
    if "plugins" in overrides:
        given: Iterable[object] = overrides.pop("plugins") or ()
        items = list(given)
        overrides["plugins"] = [_spec(i) for i in items if _is_spec(i)]
    cfg = _validated(config, overrides)
    store = runtime.pop("store", None)
    if store is None:
        store = cfg.create_store()
    plugins = collect_plugins(
        _in_order(cfg.plugin_specs(), items), autoload=cfg.entry_point_plugins
    )
    return build_log(
        store, plugins=plugins, entry_point_plugins=False, **cfg.log_kwargs(), **runtime
    )


def _validated(
    config: str | os.PathLike[str] | Mapping[str, Any] | WalshipConfig | None,
    overrides: dict[str, Any],
) -> WalshipConfig:
    from walship.config.loading import load_config, validate_config
    from walship.config.schema import WalshipConfig

    if config is None:  # keyword arguments only: they are the config (no "with overrides")
        return validate_config({}, _SOURCE, overrides=overrides, mark_overrides=False)
    if isinstance(config, WalshipConfig):
        if not overrides:
            return config
        data = {k: v for k, v in config.model_dump().items() if v is not None}
        data["store"] = {"backend": config.store.backend, **config.store_options()}
        return validate_config(data, "<config>", overrides=overrides)
    if isinstance(config, Mapping):
        return validate_config(dict(config), "<config>", overrides=overrides)
    return load_config(config, overrides=overrides)
