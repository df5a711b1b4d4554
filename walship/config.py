"""YAML configuration: one file -> validated, typed settings -> an open :class:`~walship.log.Log`.

::

    store: {backend: posix, path: ./wal}   # other keys go to the store class as arguments
    instance_id: 1
    durability: always                     # always | interval | none
    sync_interval: 10ms
    rotation: {max_segment_bytes: 64MiB, max_segment_age: 60s}
    archive:
      url: s3://my-bucket/wal
      storage_options: {endpoint_url: "${S3_ENDPOINT_URL:-}"}
      workers: 4
      compression: none                    # none | zstd
      retries: {attempts: 10, backoff: 500ms, max_backoff: 60s}
      lag_warning: 64
    retention: {keep_local: until_archived}   # all | until_archived | last:N
    plugins:
      - walship.plugins.logging
      - {name: mypkg.metrics:MetricsPlugin, options: {port: 9100}}
    entry_point_plugins: true              # load every installed walship.plugins entry point

Rules:

* The file is read with ``yaml.safe_load`` only. Validation is pydantic's; every error becomes one
  :class:`~walship.errors.ConfigError` line naming the file, the key path, the value and what was
  expected; an unknown key gets a "did you mean".
* ``${VAR}`` and ``${VAR:-default}`` in string values expand from the environment (after parsing,
  so a variable cannot inject YAML); ``$$`` is a literal ``$``. A variable that is unset and has no
  default is an error.
* Secrets stay out of messages: a value that came from the environment is shown as its
  ``${VAR}`` reference, and values under ``storage_options``, plugin ``options`` or a key that
  looks secret (password, secret, token, key, credential) are shown as ``<hidden>``.
* A relative ``store.path`` is relative to the config file's directory.
* Sizes: ``1048576``, ``512KiB``, ``64MiB``, ``1GiB`` (binary) or ``64MB`` (decimal).
  Durations: ``1.5`` (seconds), ``250us``, ``10ms``, ``60s``, ``5m``, ``1h``, ``1m30s``.
"""

from __future__ import annotations

import difflib
import inspect
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import yaml
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from walship.errors import ConfigError
from walship.plugins import archive_limits as limits

if TYPE_CHECKING:
    from walship.backends.base import SegmentStore
    from walship.log import Log

U64_MAX = (1 << 64) - 1

# --- value parsers ------------------------------------------------------------------------


def _expected(what: str, path: str | None = None) -> PydanticCustomError:
    """A validation error whose message is what was expected; ``path`` (dotted, below the
    location of the failing model) points at the offending key."""
    return PydanticCustomError("walship", "{expected}", {"expected": what, "path": path})


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
_DURATION_UNITS = {"us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(us|µs|ms|s|m|h)")


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
    """Seconds from ``1.5``, ``"250us"``, ``"10ms"``, ``"60s"``, ``"5m"``, ``"1h"``, ``"1m30s"``.

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


def _size(minimum: int) -> BeforeValidator:
    what = f"a size of at least {minimum} bytes, like 64MiB, 512KiB or 1048576"

    def check(value: object) -> int:
        try:
            n = parse_size(value)
        except ValueError:
            raise _expected(what) from None
        if n < minimum:
            raise _expected(what)
        return n

    return BeforeValidator(check)


def _duration(maximum: float | None = None) -> BeforeValidator:
    most = f" of at most {maximum:g}s" if maximum is not None else ""
    what = f"a positive duration{most}, like 10ms, 60s, 5m or 1.5 (seconds)"

    def check(value: object) -> float:
        try:
            seconds = parse_duration(value)
        except ValueError:
            raise _expected(what) from None
        if not seconds > 0 or (maximum is not None and seconds > maximum):
            raise _expected(what)
        return seconds

    return BeforeValidator(check)


def _integer(lo: int, hi: int) -> BeforeValidator:
    what = f"an integer from {lo} to {hi}"

    def check(value: object) -> int:
        if isinstance(value, str) and re.fullmatch(r"\s*[+-]?\d+\s*", value):
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
            raise _expected(what)
        return value

    return BeforeValidator(check)


def _choice(*choices: str) -> BeforeValidator:
    def check(value: object) -> str:
        if isinstance(value, str) and value in choices:
            return value
        close = difflib.get_close_matches(str(value), choices, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise _expected(f"one of {', '.join(choices)}{hint}")

    return BeforeValidator(check)


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in ("true", "yes", "on", "1"):
        return True
    if isinstance(value, str) and value.strip().lower() in ("false", "no", "off", "0"):
        return False
    raise _expected("true or false")


def _url(value: object) -> str:
    what = "an fsspec URL like s3://bucket/prefix, gs://bucket/prefix or file:///path"
    if not isinstance(value, str) or "://" not in value:
        raise _expected(what)
    scheme = value.split("://", 1)[0]
    import fsspec

    known = set(fsspec.available_protocols())
    if scheme not in known:
        close = difflib.get_close_matches(scheme, sorted(known), n=1, cutoff=0.5)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise _expected(f"{what} (fsspec knows no protocol {scheme!r}{hint})")
    return value


def _keep_local(value: object) -> str:
    what = "all, until_archived or last:N (N >= 1 closed segments)"
    if value in ("all", "until_archived"):
        return str(value)
    if isinstance(value, str) and (m := re.fullmatch(r"last:(\d+)", value)) and int(m[1]) >= 1:
        return f"last:{int(m[1])}"
    raise _expected(what)


def _compression(value: object) -> str:
    if value not in ("none", "zstd"):
        raise _expected("one of none, zstd")
    if value == "zstd":
        import importlib.util

        if importlib.util.find_spec("zstandard") is None:
            raise _expected("none, or zstd with the zstandard package (pip install walship[zstd])")
    return str(value)


def _plugin_entry(value: object) -> object:
    if isinstance(value, str):
        return {"name": value}
    if isinstance(value, Mapping):
        return value
    raise _expected("a plugin name ('module:attr' or an entry-point name) or {name:, options:}")


def _name(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise _expected("a non-empty string")
    return value.strip()


Size = Annotated[int, _size(1)]
SegmentSize = Annotated[int, _size(1024)]
Duration = Annotated[float, _duration()]
Bool = Annotated[bool, BeforeValidator(_boolean)]
Name = Annotated[str, BeforeValidator(_name)]

# --- the model ----------------------------------------------------------------------------


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StoreConfig(BaseModel):
    """``store:``: the backend's name and its keyword arguments (every other key)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    backend: Name = "posix"

    @property
    def options(self) -> dict[str, Any]:
        """The keys other than ``backend``: keyword arguments of the store class."""
        return dict(self.model_extra or {})


class RotationConfig(_Section):
    """``rotation:``: when the active segment is closed and the next one opened."""

    max_segment_bytes: SegmentSize = 64 * 1024 * 1024
    max_segment_age: Duration = 60.0


class RetriesConfig(_Section):
    """``archive.retries:``: exponential backoff of failed uploads."""

    attempts: Annotated[int, _integer(1, limits.MAX_ATTEMPTS)] = 10
    backoff: Annotated[float, _duration(limits.MAX_BACKOFF)] = 0.5
    max_backoff: Annotated[float, _duration(limits.MAX_BACKOFF_CAP)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> RetriesConfig:
        if self.max_backoff < self.backoff:
            raise _expected(f"a duration of at least backoff ({self.backoff}s)", "max_backoff")
        return self


class ArchiveConfig(_Section):
    """``archive:``: where closed segments are shipped."""

    url: Annotated[str, BeforeValidator(_url)] = Field(
        description="an fsspec URL like s3://bucket/prefix"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    workers: Annotated[int, _integer(1, limits.MAX_WORKERS)] = 4
    compression: Annotated[str, BeforeValidator(_compression)] = "none"
    retries: RetriesConfig = Field(default_factory=RetriesConfig)
    lag_warning: Annotated[int, _integer(1, limits.MAX_LAG_WARNING)] = 64

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, _without_userinfo(value) if name == "url" else value  # no password


class RetentionConfig(_Section):
    """``retention:``: which closed local segments may be removed (archived ones only)."""

    keep_local: Annotated[str, BeforeValidator(_keep_local)] = "all"


class PluginEntry(_Section):
    """One entry of ``plugins:``: a spec and the options its class is created with."""

    name: Name = Field(description="'module:attr' or an entry-point name")
    options: dict[str, Any] = Field(default_factory=dict, repr=False)


class WalshipConfig(_Section):
    """A whole, validated config. Build it with :func:`load_config` or :func:`parse_config`."""

    store: StoreConfig = Field(
        default_factory=lambda: StoreConfig.model_validate({"path": "./wal"})
    )
    instance_id: Annotated[int, _integer(0, U64_MAX)] | None = None
    durability: Annotated[str, _choice("always", "interval", "none")] = "always"
    sync_interval: Duration = 0.01
    rotation: RotationConfig = Field(default_factory=RotationConfig)
    archive: ArchiveConfig | None = None
    retention: RetentionConfig | None = None
    plugins: list[Annotated[PluginEntry, BeforeValidator(_plugin_entry)]] = Field(
        default_factory=list
    )
    entry_point_plugins: Bool = True

    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _retention_needs_archive(self) -> WalshipConfig:
        keep = self.retention.keep_local if self.retention is not None else "all"
        if keep != "all" and self.archive is None:
            raise _expected(
                "'all' without an archive: section (only archived segments are ever removed)",
                "retention.keep_local",
            )
        return self

    @property
    def base_dir(self) -> Path | None:
        """The directory a relative ``store.path`` is resolved against (the file's)."""
        return self._base_dir

    # --- what the Log receives ------------------------------------------------------------

    def store_options(self) -> dict[str, Any]:
        """The store class's keyword arguments, ``path`` made absolute against the file's
        directory."""
        options = self.store.options
        path = options.get("path")
        if isinstance(path, (str, os.PathLike)):
            p = Path(os.path.expanduser(os.fspath(path)))
            if not p.is_absolute() and self._base_dir is not None:
                p = self._base_dir / p
            options["path"] = str(p)
        return options

    def create_store(self) -> SegmentStore:
        """The store the config names.

        Raises:
            ConfigError: the backend failed to load or rejected its options.
        """
        from walship.backends.registry import BackendError, create_store

        try:
            return create_store(self.store.backend, self.store_options())
        except BackendError as e:
            raise ConfigError(f"store: {e}") from e

    def archive_options(self) -> dict[str, Any] | None:
        """``archive:`` as the plain dict ``Log(archive=...)`` takes, or ``None`` without one::

        {"url": str, "storage_options": dict, "workers": int, "compression": "none"|"zstd",
         "retries": {"attempts": int, "backoff": float, "max_backoff": float},
         "lag_warning": int}
        """
        if self.archive is None:
            return None
        a = self.archive
        return {
            "url": a.url,
            "storage_options": dict(a.storage_options),
            "workers": a.workers,
            "compression": a.compression,
            "retries": {
                "attempts": a.retries.attempts,
                "backoff": a.retries.backoff,
                "max_backoff": a.retries.max_backoff,
            },
            "lag_warning": a.lag_warning,
        }

    def retention_options(self) -> dict[str, Any] | None:
        """``retention:`` as ``{"keep_local": "all" | "until_archived" | "last:N"}``, or
        ``None`` without one."""
        return None if self.retention is None else {"keep_local": self.retention.keep_local}

    def log_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~walship.log.Log` (without store and plugins);
        ``archive`` and ``retention`` only when their section is present."""
        kwargs: dict[str, Any] = {
            "instance_id": self.instance_id,
            "durability": self.durability,
            "sync_interval": self.sync_interval,
            "max_segment_bytes": self.rotation.max_segment_bytes,
            "max_segment_age": self.rotation.max_segment_age,
        }
        if self.archive is not None:
            kwargs["archive"] = self.archive_options()
        if self.retention is not None:
            kwargs["retention"] = self.retention_options()
        return kwargs

    def plugin_specs(self) -> list[dict[str, Any]]:
        """``plugins:`` as ``[{"name": spec, "options": {...}}, ...]``."""
        return [{"name": p.name, "options": dict(p.options)} for p in self.plugins]


# --- environment expansion ----------------------------------------------------------------

_REF = re.compile(r"\$\$|\$\{([^}]*)\}")
_VAR = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)

Loc = tuple[str | int, ...]


def _expand_text(text: str, loc: Loc, source: str, env: Mapping[str, str]) -> str:
    def sub(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        ref = _VAR.fullmatch(m.group(1))
        if ref is None:
            raise ConfigError(
                f"{source}: {_dotted(loc)}: {m.group(0)!r} is not a valid reference, expected "
                "${NAME} or ${NAME:-default}"
            )
        name, default = ref.group(1), ref.group(2)
        value = env.get(name)
        if value is None or (value == "" and default is not None):
            if default is None:
                raise ConfigError(
                    f"{source}: {_dotted(loc)}: environment variable {name} is not set "
                    f"(write ${{{name}:-default}} to give a default)"
                )
            return default
        return value

    return _REF.sub(sub, text)


def _expand(
    node: object, loc: Loc, source: str, env: Mapping[str, str], refs: dict[Loc, str]
) -> object:
    """Expand ``${...}`` in every string value; record in ``refs`` where it happened."""
    if isinstance(node, dict):
        return {k: _expand(v, (*loc, str(k)), source, env, refs) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand(v, (*loc, i), source, env, refs) for i, v in enumerate(node)]
    if isinstance(node, str) and "$" in node:
        expanded = _expand_text(node, loc, source, env)
        if expanded != node:
            refs[loc] = node
        return expanded
    return node


# --- error messages -----------------------------------------------------------------------

_SECRET_KEY = re.compile(r"secret|passw|token|key|credential|auth", re.IGNORECASE)
_HIDDEN_UNDER = {"storage_options", "options"}


def _dotted(loc: Loc) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def _sensitive(loc: Loc) -> bool:
    return any(isinstance(p, str) and (p in _HIDDEN_UNDER or _SECRET_KEY.search(p)) for p in loc)


def _without_userinfo(url: str) -> str:
    """``scheme://user:password@host/...`` as ``scheme://<hidden>@host/...``."""
    if "://" in url and "@" in url.split("://", 1)[1]:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://<hidden>@{rest.rsplit('@', 1)[1]}"
    return url


def _show(loc: Loc, value: object, refs: Mapping[Loc, str]) -> str:
    """The value as it may appear in a message: never a secret."""
    if _sensitive(loc):
        return "<hidden>"
    for i in range(len(loc), -1, -1):  # the value, or a string it sits in, came from ${...}
        if loc[:i] in refs:
            return f"{refs[loc[:i]]!r} (from the environment)"
    if isinstance(value, Mapping):
        return "{...}"  # its keys or values may be secret; the path says where it is
    if isinstance(value, (list, tuple)):
        return "[...]"
    if isinstance(value, str):
        value = _without_userinfo(value)
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _model_at(loc: Loc) -> type[BaseModel] | None:
    """The model class that holds the keys at ``loc`` (for "did you mean")."""
    model: type[BaseModel] | None = WalshipConfig
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        if field is None:
            return None
        model = _model_of(field.annotation)
    return model


def _model_of(annotation: object) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    origin = getattr(annotation, "__origin__", None)
    return _model_of(origin) if origin is not None and origin is not annotation else None


def _unknown_key(loc: Loc, keys: list[str], context: str = "") -> str:
    key = str(loc[-1])
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.6)
    if close:
        return f"{_dotted(loc)}: unknown key{context} (did you mean {close[0]!r}?)"
    return f"{_dotted(loc)}: unknown key{context} (expected one of: {', '.join(keys)})"


_STRUCTURE = {
    "model_type": "a mapping of keys to values",
    "model_attributes_type": "a mapping of keys to values",
    "dict_type": "a mapping of keys to values",
    "list_type": "a list",
    "string_type": "a string",
}


def _message(err: Any, refs: Mapping[Loc, str], data: object) -> str:
    loc: Loc = tuple(err["loc"])
    kind = err["type"]
    ctx = err.get("ctx") or {}
    if kind == "extra_forbidden":
        model = _model_at(loc[:-1])
        return _unknown_key(loc, list(model.model_fields) if model else [])
    if kind == "missing":
        model = _model_at(loc[:-1])
        field = model.model_fields.get(str(loc[-1])) if model else None
        what = field.description if field and field.description else "a value"
        return f"{_dotted(loc)}: missing, expected {what}"
    value = err.get("input")
    if kind == "walship":
        what = ctx["expected"]
        if ctx.get("path"):
            sub = tuple(ctx["path"].split("."))
            loc = (*loc, *sub)
            value = _lookup(data, loc)
    else:
        what = _STRUCTURE.get(kind) or str(err["msg"]).removeprefix("Input should be ")
    return f"{_dotted(loc)} = {_show(loc, value, refs)}: expected {what}"


def _lookup(data: object, loc: Loc) -> object:
    for part in loc:
        if isinstance(data, Mapping):
            data = data.get(part)
        elif isinstance(data, list) and isinstance(part, int) and part < len(data):
            data = data[part]
        else:
            return None
    return data


def _check_store(cfg: WalshipConfig, source: str, refs: Mapping[Loc, str]) -> None:
    """The backend exists and the other ``store:`` keys are arguments of its class."""
    from walship.backends.registry import BackendError, backend_names, load_backend

    backend = cfg.store.backend
    try:
        cls = load_backend(backend)
    except BackendError as e:
        known = backend_names()
        if backend not in known:
            close = difflib.get_close_matches(backend, known, n=1)
            hint = f"did you mean {close[0]!r}? " if close else ""
            raise ConfigError(
                f"{source}: store.backend = {_show(('store', 'backend'), backend, refs)}: "
                f"expected a store backend ({hint}known: {', '.join(known)})"
            ) from None
        raise ConfigError(f"{source}: store.backend: {e}") from None
    try:
        params = inspect.signature(cls).parameters
    except (TypeError, ValueError):  # no introspectable signature: the class will judge
        return
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return
    accepted = [n for n, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    for key in cfg.store.options:
        if key not in accepted:
            msg = _unknown_key(("store", key), ["backend", *accepted], f" for backend {backend!r}")
            raise ConfigError(f"{source}: {msg}")
    for name in accepted:
        if params[name].default is inspect.Parameter.empty and name not in cfg.store.options:
            raise ConfigError(
                f"{source}: store.{name}: missing, expected a value (backend {backend!r} "
                f"requires {name!r})"
            )


# --- loading ------------------------------------------------------------------------------

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
) -> WalshipConfig:
    """Validate already-parsed config data (a mapping; ``None`` means all defaults).

    Args:
        source: the name messages start with (the file's path).
        base_dir: what a relative ``store.path`` is relative to.
        overrides: top-level keys (and the shortcuts ``path``, ``max_segment_bytes``,
            ``max_segment_age``) that replace the file's; mappings merge key by key and
            ``plugins`` are added to the file's. They are not ``${}``-expanded.
        env: the environment for ``${VAR}`` (default ``os.environ``).
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
    expanded = _expand(data, (), source, os.environ if env is None else env, refs)
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
        if overrides and first["loc"] and _overridden(str(first["loc"][0]), overrides):
            source = f"{source} (with overrides)"
        raise ConfigError(f"{source}: {_message(first, refs, expanded)}{more}") from None
    _check_store(cfg, source, refs)
    if base_dir is not None:
        cfg._base_dir = Path(base_dir)
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


_RUNTIME = ("store", "salvage", "seed_restarts", "clock", "anchor")


def open_log(
    config: str | os.PathLike[str] | Mapping[str, Any] | WalshipConfig, **overrides: Any
) -> Log:
    """Open a log as ``config`` says (a file path, a mapping, or a :class:`WalshipConfig`).

    ``overrides`` replace config keys (see :func:`validate_config`); besides, ``store`` (a
    :class:`~walship.backends.base.SegmentStore` object used instead of the ``store:``
    section), ``salvage``, ``seed_restarts``, ``clock`` and ``anchor`` go to the Log as they
    are, and plugin
    objects in ``plugins`` are registered after the configured ones.

    Raises:
        ConfigError: the config or an override is invalid.
        PluginError: a plugin failed to import, to be created or to validate (named).
        LogCorruptError, StoreLockedError: as :class:`~walship.log.Log`.
    """
    from walship.log import Log
    from walship.plugins.manager import collect_plugins

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
    return Log(store, plugins=plugins, entry_point_plugins=False, **cfg.log_kwargs(), **runtime)
