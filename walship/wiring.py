"""A :class:`~walship.log.Log` wired with what sits above it: its plugin manager and its
archive. The one place both :func:`walship.open` and :func:`walship.config.open_log` build a
log (the log itself imports neither ``walship.plugins`` nor ``walship.archive``)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from walship.log import Log
    from walship.store import SegmentStore


def build_log(
    store: SegmentStore,
    *,
    plugins: Iterable[object] = (),
    entry_point_plugins: bool = True,
    archive: Mapping[str, Any] | None = None,
    archives: Sequence[Mapping[str, Any]] | None = None,
    retention: Mapping[str, Any] | None = None,
    takeover: bool = False,
    **options: Any,
) -> Log:
    """Wire a :class:`~walship.log.Log` over ``store``: its plugin manager (the entry points'
    plugins, when ``entry_point_plugins``, then ``plugins``), its archive (``archive``: one
    destination; ``archives``: several) and retention (see
    :func:`~walship.archive.wiring.build_archiving`; ``takeover``: the log takes its archive
    over first, :mod:`walship.archive.promote`); ``options`` go to the Log as they are.

    Raises:
        ConfigError: a bad ``archive``, ``archives`` or ``retention`` (before the store is
            touched).
        LogCorruptError, StoreLockedError: as :class:`~walship.log.Log`.
    """
    from walship.log import Log
    from walship.plugins.manager import new_plugin_manager

    archiving = None
    if archive is not None or archives is not None or retention is not None or takeover:
        from walship.archive.wiring import build_archiving  # fsspec loads only when used

        archiving = build_archiving(archive, retention, archives, takeover)
    manager = new_plugin_manager(entry_points=entry_point_plugins)
    for plugin in plugins:
        manager.register(plugin)
    return Log(store, plugins=manager, archiving=archiving, **options)


__all__ = ["build_log"]
