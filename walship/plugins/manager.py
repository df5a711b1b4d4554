"""The plugin manager: walship's hook specifications, and plugins found three ways.

1. The entry-point group ``walship.plugins``: every installed plugin is loaded when a log opens
   (unless ``entry_point_plugins`` is off). An entry point names a module, an instance, or a class
   (instantiated without arguments). One that fails to load, to be created or to validate is
   skipped with a warning (logger ``walship.plugins``) and listed in the manager's
   :attr:`~WalshipPluginManager.skipped`, so that one broken installed package cannot stop every
   log from opening; ``walship plugins`` shows its error.
2. The config's ``plugins:`` list (:func:`resolve_plugin`): ``module:attr``, an entry-point name,
   or a built-in (``walship.plugins.logging``, ``walship.plugins.metrics``,
   ``walship.plugins.prometheus``), each with optional ``options`` given to a class as keyword
   arguments. A plugin named there that fails is an error: the open fails with one line.
3. ``log.plugins.register(obj)`` at any time.

Every plugin is checked when it is registered, before anything changes: each ``@hookimpl`` must
name a walship hook and take only that hook's arguments, wrappers are refused (hooks are
notifications delivered one by one), a method named like a hook but not marked is an error (a
forgotten ``@hookimpl`` would otherwise be silently ignored), and a plugin must implement at least
one hook. Any failure raises :class:`PluginError` naming the plugin (except for a plugin only
discovered through its entry point, see 1.).
"""

from __future__ import annotations

import difflib
import importlib
import importlib.util
import inspect
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint
from types import ModuleType
from typing import Any, TypeVar

import pluggy

from walship.backends import entry_points as entrypoints
from walship.errors import PluginError
from walship.plugins import hookspecs

ENTRY_POINT_GROUP = "walship.plugins"

log = logging.getLogger("walship.plugins")

BUILTIN_PLUGINS = {
    "walship.plugins.logging": "walship.plugins.logging:LoggingPlugin",
    "walship.plugins.metrics": "walship.plugins.metrics:MetricsPlugin",
    "walship.plugins.prometheus": "walship.plugins.prometheus:PrometheusPlugin",
}
"""Names the config may use for the built-in plugins, and the class each one makes."""

HOOK_NAMES = frozenset(
    name
    for name, obj in vars(hookspecs).items()
    if callable(obj) and hasattr(obj, f"{hookspecs.PROJECT}_spec")
)

T = TypeVar("T")


@dataclass(frozen=True)
class NamedPlugin:
    """A plugin object and the name to register it under (its config spec or entry point)."""

    name: str
    plugin: object
    discovered: bool = False
    """Found through its entry point and named by nobody: if it fails to validate, it is
    skipped with a warning instead of failing the registration."""


@dataclass(frozen=True)
class SkippedPlugin:
    """An entry-point plugin, named by nobody, that failed to load or to be created: registering
    it records it in :attr:`WalshipPluginManager.skipped` (with a warning) instead."""

    name: str
    error: str
    """One line: what failed, naming the plugin, its entry point and its distribution."""


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _describe(obj: object) -> str:
    if isinstance(obj, ModuleType):
        return f"module {obj.__name__}"
    return f"{type(obj).__module__}.{type(obj).__qualname__} instance"


class WalshipPluginManager(pluggy.PluginManager):
    """A ``pluggy.PluginManager("walship")`` with the hook specifications added and every
    registration validated up front (see the module docstring)."""

    def __init__(self) -> None:
        super().__init__(hookspecs.PROJECT)
        self.add_hookspecs(hookspecs)
        self.skipped: dict[str, str] = {}
        """Entry-point plugins left out because they failed (name -> the one-line error)."""

    def get_canonical_name(self, plugin: object) -> str:
        """A module's name, or ``module:Class`` of an instance."""
        if isinstance(plugin, ModuleType):
            return plugin.__name__
        return f"{type(plugin).__module__}:{type(plugin).__qualname__}"

    def _unique_name(self, base: str) -> str:
        name, n = base, 1
        while self.has_plugin(name):
            n += 1
            name = f"{base}#{n}"
        return name

    def register(self, plugin: object, name: str | None = None) -> str:
        """Validate and register ``plugin`` (or a :class:`NamedPlugin`); return its name.

        Without a name, instances of one class get ``module:Class``, ``module:Class#2``, ...
        A :class:`SkippedPlugin`, or a discovered :class:`NamedPlugin` that fails to validate,
        is not registered but logged as a warning and kept in :attr:`skipped`; its name is
        returned all the same.

        Raises:
            PluginError: the plugin is invalid or already registered (nothing was changed).
        """
        if isinstance(plugin, SkippedPlugin):
            return self._skip(plugin.name, plugin.error)
        discovered = False
        if isinstance(plugin, NamedPlugin):
            name = name or plugin.name
            discovered = plugin.discovered
            plugin = plugin.plugin
        if plugin is None:
            raise PluginError("cannot register None as a walship plugin")
        if name is None:
            name = self._unique_name(self.get_canonical_name(plugin))
        elif self.has_plugin(name):
            raise PluginError(f"plugin {name!r}: a plugin of that name is registered already")
        if self.is_registered(plugin):
            raise PluginError(
                f"plugin {name!r}: this object is registered already as {self.get_name(plugin)!r}"
            )
        try:
            self._validate(plugin, name)
        except PluginError as e:
            if not discovered:
                raise
            return self._skip(name, str(e))
        try:
            registered = super().register(plugin, name)
        except pluggy.PluginValidationError as e:  # _validate should have caught it
            raise PluginError(f"plugin {name!r} is invalid: {' '.join(str(e).split())}") from e
        except ValueError as e:
            raise PluginError(f"plugin {name!r}: {' '.join(str(e).split())}") from e
        assert registered is not None
        return registered

    def _skip(self, name: str, error: str) -> str:
        self.skipped[name] = error
        log.warning(
            "%s; skipped: it was only discovered through its entry point (name it in the "
            "config's plugins: to make this an error, or set entry_point_plugins: false)",
            error,
        )
        return name

    def _validate(self, plugin: object, name: str) -> None:
        if isinstance(plugin, type):
            raise PluginError(
                f"plugin {name!r} is the class {plugin.__qualname__}; register an instance "
                "(a class named in the config is instantiated for you)"
            )
        found = 0
        for attr in dir(plugin):
            opts = self.parse_hookimpl_opts(plugin, attr)
            if opts is None:
                if attr in HOOK_NAMES and callable(getattr(plugin, attr, None)):
                    raise PluginError(
                        f"plugin {name!r} defines {attr} without @walship.hookimpl, so it would "
                        "never be called; mark it"
                    )
                continue
            hook = opts.get("specname") or attr
            if hook not in HOOK_NAMES:
                if opts.get("optionalhook"):
                    continue
                close = difflib.get_close_matches(hook, sorted(HOOK_NAMES), n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PluginError(
                    f"plugin {name!r}: {attr} implements {hook!r}, which is not a walship hook "
                    f"({hint}hooks: {', '.join(sorted(HOOK_NAMES))})"
                )
            if opts.get("wrapper") or opts.get("hookwrapper"):
                raise PluginError(
                    f"plugin {name!r}: {attr} is a hook wrapper; walship hooks are notifications "
                    "delivered to each plugin in turn, so wrappers are not supported"
                )
            self._check_arguments(plugin, name, attr, hook)
            found += 1
        if not found:
            raise PluginError(
                f"plugin {name!r} ({_describe(plugin)}) implements no walship hook "
                f"(hooks: {', '.join(sorted(HOOK_NAMES))}; mark methods with @walship.hookimpl)"
            )

    def _check_arguments(self, plugin: object, name: str, attr: str, hook: str) -> None:
        spec = getattr(self.hook, hook).spec
        assert spec is not None
        try:
            params = inspect.signature(getattr(plugin, attr)).parameters.values()
        except (TypeError, ValueError):  # no signature to check: leave it to pluggy
            return
        required = [
            p.name
            for p in params
            if p.default is inspect.Parameter.empty
            and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        unknown = [a for a in required if a not in spec.argnames]
        if unknown:
            raise PluginError(
                f"plugin {name!r}: {attr}() takes {', '.join(unknown)}, which hook {hook!r} "
                f"does not give (it gives: {', '.join(spec.argnames)})"
            )


def _import_target(spec: str, target: str) -> object:
    """``module`` or ``module:attr.path`` -> the object."""
    module_name, _, attr_path = target.partition(":")
    try:
        obj: object = importlib.import_module(module_name)
    except Exception as e:
        raise PluginError(
            f"plugin {spec!r}: cannot import module {module_name!r}: {type(e).__name__}: "
            f"{_one_line(str(e))}"
        ) from e
    for part in attr_path.split(".") if attr_path else ():
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise PluginError(
                f"plugin {spec!r}: module {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return obj


def _load_entry_point(ep: EntryPoint) -> object:
    try:
        return ep.load()
    except Exception as e:
        dist = f" of {ep.dist.name}" if ep.dist is not None else ""
        raise PluginError(
            f"plugin {ep.name!r} (entry point {ep.value}{dist}) failed to load: "
            f"{type(e).__name__}: {_one_line(str(e))}"
        ) from e


def _instantiate(spec: str, obj: object, options: Mapping[str, Any] | None) -> object:
    if isinstance(obj, type):
        try:
            return obj(**(options or {}))
        except Exception as e:
            given = ", ".join(sorted(options or {})) or "none"
            raise PluginError(
                f"plugin {spec!r}: creating {obj.__qualname__} failed (options given: {given}): "
                f"{type(e).__name__}: {_one_line(str(e))}"
            ) from e
    if options:
        raise PluginError(
            f"plugin {spec!r} is a {_describe(obj)}, not a class, so it takes no options; "
            "remove 'options' or point at a class"
        )
    return obj


def _plugin_entry_points() -> dict[str, EntryPoint | PluginError]:
    """The installed entry points by name; a name two of them give differently maps to the
    error that says so."""
    found: dict[str, EntryPoint | PluginError] = {}
    for ep in entrypoints.group(ENTRY_POINT_GROUP):
        other = found.get(ep.name)
        if isinstance(other, EntryPoint) and other.value != ep.value:
            found[ep.name] = PluginError(
                f"plugin {ep.name!r}: two installed entry points in group {ENTRY_POINT_GROUP!r} "
                f"have that name ({other.value} and {ep.value})"
            )
        elif other is None:
            found[ep.name] = ep
    return found


def _load_named_entry_point(ep: EntryPoint | PluginError) -> object:
    if isinstance(ep, PluginError):
        raise PluginError(str(ep))
    return _load_entry_point(ep)


def resolve_plugin(spec: str, options: Mapping[str, Any] | None = None) -> NamedPlugin:
    """Turn a config entry into a plugin object, named ``spec``.

    ``spec`` is ``module:attr`` (a dotted attribute path is allowed), a built-in name, an
    entry-point name of group ``walship.plugins``, or an importable module. A class is created
    with ``options`` as keyword arguments; a module or an instance with options is an error.

    Raises:
        PluginError: it cannot be found, imported or created (the message names ``spec``).
    """
    if not spec or not isinstance(spec, str):
        raise PluginError(f"plugin {spec!r}: expected 'module:attr' or an entry-point name")
    if ":" in spec:
        obj = _import_target(spec, spec)
    elif spec in BUILTIN_PLUGINS:
        obj = _import_target(spec, BUILTIN_PLUGINS[spec])
    else:
        eps = _plugin_entry_points()
        if spec in eps:
            obj = _load_named_entry_point(eps[spec])
        else:
            try:
                found = importlib.util.find_spec(spec) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                names = sorted(set(eps) | set(BUILTIN_PLUGINS))
                close = difflib.get_close_matches(spec, names, n=1)
                hint = f"did you mean {close[0]!r}? " if close else ""
                raise PluginError(
                    f"plugin {spec!r}: no entry point of that name in group "
                    f"{ENTRY_POINT_GROUP!r} and no module of that name ({hint}known: "
                    f"{', '.join(names)}; or write 'module:attr')"
                )
            obj = _import_target(spec, spec)
    return NamedPlugin(spec, _instantiate(spec, obj, options))


def entry_point_plugins(exclude: Iterable[str] = ()) -> list[NamedPlugin | SkippedPlugin]:
    """Every installed plugin of group ``walship.plugins`` except those in ``exclude``, loaded
    (a class is instantiated without arguments) and named after its entry point: a
    :class:`NamedPlugin` marked ``discovered``, or a :class:`SkippedPlugin` for one that failed
    to load or to be created (registering it warns). Never raises for a plugin's failure.
    """
    skip = set(exclude)
    out: list[NamedPlugin | SkippedPlugin] = []
    for name, ep in sorted(_plugin_entry_points().items()):
        if name in skip:
            continue
        try:
            plugin = _instantiate(name, _load_named_entry_point(ep), None)
        except PluginError as e:
            out.append(SkippedPlugin(name, str(e)))
            continue
        out.append(NamedPlugin(name, plugin, discovered=True))
    return out


def collect_plugins(items: Iterable[object], *, autoload: bool = True) -> list[object]:
    """The plugins to give a log: ``items`` resolved, then (if ``autoload``) every entry-point
    plugin that ``items`` did not name already.

    Each item is a spec string, a mapping ``{"name": spec, "options": {...}}``, a ``(spec,
    options)`` pair, or a plugin object (kept as it is).

    Raises:
        PluginError: as :func:`resolve_plugin`.
    """
    out: list[object] = []
    named: set[str] = set()
    for item in items:
        if isinstance(item, str):
            resolved = resolve_plugin(item)
        elif isinstance(item, Mapping):
            resolved = resolve_plugin(item.get("name"), item.get("options"))  # type: ignore[arg-type]
        elif isinstance(item, tuple) and len(item) == 2 and isinstance(item[0], str):
            resolved = resolve_plugin(item[0], item[1])
        else:
            out.append(item)
            continue
        named.add(resolved.name)
        out.append(resolved)
    if autoload:
        out.extend(entry_point_plugins(exclude=named))
    return out


def new_plugin_manager(entry_points: bool = True) -> WalshipPluginManager:
    """A :class:`WalshipPluginManager` with, if ``entry_points``, every plugin of the
    ``walship.plugins`` entry-point group registered (those that fail are skipped, see
    :attr:`WalshipPluginManager.skipped`)."""
    pm = WalshipPluginManager()
    if entry_points:
        for plugin in entry_point_plugins():
            pm.register(plugin)
    return pm


def find_plugin(pm: pluggy.PluginManager, cls: type[T]) -> T | None:
    """The first registered plugin that is an instance of ``cls``, or ``None``."""
    for plugin in pm.get_plugins():
        if isinstance(plugin, cls):
            return plugin
    return None
