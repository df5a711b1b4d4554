"""The plugin manager: walship's hook specifications, plus plugins from entry points."""

from __future__ import annotations

import pluggy

from walship.errors import WalshipError
from walship.plugins import hookspecs

ENTRY_POINT_GROUP = "walship.plugins"


def new_plugin_manager(entry_points: bool = True) -> pluggy.PluginManager:
    """A ``PluginManager("walship")`` with the hook specifications added and, if
    ``entry_points``, every plugin of the ``walship.plugins`` entry-point group registered.

    Raises:
        WalshipError: an entry-point plugin failed to import or to validate (named).
    """
    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    if entry_points:
        try:
            pm.load_setuptools_entrypoints(ENTRY_POINT_GROUP)
        except Exception as e:
            raise WalshipError(
                f"a plugin of entry-point group {ENTRY_POINT_GROUP!r} failed to "
                f"load: {type(e).__name__}: {e}"
            ) from e
    return pm
