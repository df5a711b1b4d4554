"""A :class:`~walship.log.Log` opened as a config says."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from walship.config.schema import WalshipConfig
    from walship.log import Log

_RUNTIME = ("store", "salvage", "repair", "seed_restarts", "clock", "anchor")


def open_log(
    config: str | os.PathLike[str] | Mapping[str, Any] | WalshipConfig, **overrides: Any
) -> Log:
    """Open a log as ``config`` says (a file path, a mapping, or a :class:`WalshipConfig`).

    ``overrides`` replace config keys (see :func:`validate_config`); besides, ``store`` (a
    :class:`~walship.store.SegmentStore` object used instead of the ``store:``
    section), ``salvage``, ``repair``, ``seed_restarts``, ``clock`` and ``anchor`` go to the Log
    as they are, and plugin objects in ``plugins`` are registered after the configured ones.

    Raises:
        ConfigError: the config or an override is invalid.
        PluginError: a plugin the config names failed to import, to be created or to validate
            (named); an entry-point plugin that fails is skipped with a warning instead.
        LogCorruptError, StoreLockedError: as :class:`~walship.log.Log`.
    """
    from walship.config.loading import load_config, validate_config
    from walship.config.schema import WalshipConfig
    from walship.plugins.manager import collect_plugins
    from walship.wiring import build_log

    runtime = {k: overrides.pop(k) for k in _RUNTIME if k in overrides}
    objects: list[object] = []
    if "plugins" in overrides:
        specs: list[object] = []
        for item in overrides.pop("plugins"):
            (specs if isinstance(item, (str, Mapping)) else objects).append(item)
        overrides["plugins"] = specs
    if isinstance(config, WalshipConfig):
        if overrides:
            data = {k: v for k, v in config.model_dump().items() if v is not None}
            data["store"] = {"backend": config.store.backend, **config.store_options()}
            cfg = validate_config(data, "<config>", overrides=overrides)
        else:
            cfg = config
    elif isinstance(config, Mapping):
        cfg = validate_config(dict(config), "<config>", overrides=overrides)
    else:
        cfg = load_config(config, overrides=overrides)
    store = runtime.pop("store", None) or cfg.create_store()
    plugins = collect_plugins(cfg.plugin_specs(), autoload=cfg.entry_point_plugins) + objects
    return build_log(
        store, plugins=plugins, entry_point_plugins=False, **cfg.log_kwargs(), **runtime
    )
