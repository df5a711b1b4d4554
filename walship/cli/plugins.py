"""``walship plugins``: the plugins and store backends this installation knows."""

from __future__ import annotations

import json
from importlib.metadata import entry_points

import click

from walship.backends.registry import ENTRY_POINT_GROUP as BACKENDS
from walship.backends.registry import backend_names
from walship.plugins.manager import BUILTIN_PLUGINS, new_plugin_manager
from walship.plugins.manager import ENTRY_POINT_GROUP as PLUGINS


def _entry_points(group: str) -> list[dict[str, str | None]]:
    return [
        {
            "name": ep.name,
            "value": ep.value,
            "distribution": ep.dist.name if ep.dist else None,
            "version": ep.dist.version if ep.dist else None,
        }
        for ep in sorted(entry_points(group=group), key=lambda e: e.name)
    ]


def _plugin_entry_points() -> list[dict[str, str | None]]:
    """The plugin entry points, each with ``error``: ``None`` when it loads, is created and
    validates as a log's open does it (it is imported and created here), else why every log
    skips it."""
    skipped = new_plugin_manager().skipped
    return [{**ep, "error": skipped.get(ep["name"] or "")} for ep in _entry_points(PLUGINS)]


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON document instead.")
def plugins_command(as_json: bool) -> None:
    """List installed plugins (loaded by every log unless entry_point_plugins is false; one that
    fails to load is shown with its error and skipped by every log), the built-in plugins a
    config can name, and the store backends."""
    plugins = _plugin_entry_points()
    builtins = sorted(BUILTIN_PLUGINS)
    backends = backend_names()
    doc = {
        "plugins": plugins,
        "builtin_plugins": builtins,
        "backends": backends,
        "backend_entry_points": _entry_points(BACKENDS),
    }
    if as_json:
        click.echo(json.dumps(doc, indent=2))
        return
    click.echo(f"installed plugins (entry points, group {PLUGINS}):")
    for ep in plugins:
        dist = f" [{ep['distribution']} {ep['version']}]" if ep["distribution"] else ""
        click.echo(f"  {ep['name']} = {ep['value']}{dist}")
        if ep["error"]:
            click.echo(f"    FAILED, skipped by every log: {ep['error']}")
    if not plugins:
        click.echo("  (none)")
    click.echo("built-in plugins (name them in the config's plugins:):")
    for name in builtins:
        click.echo(f"  {name}")
    click.echo(f"store backends (group {BACKENDS}):")
    for name in backends:
        click.echo(f"  {name}")
