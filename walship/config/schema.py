"""The config's pydantic models (one per section) and what a validated config hands the
:class:`~walship.log.Log`: its keyword arguments, the store, the archive and retention dicts."""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails, InitErrorDetails, PydanticCustomError

from walship.archive.settings import (
    ArchiveSettings,
    RetentionPolicy,
    RetrySettings,
    duplicate_destination,
    keep_local_rule,
    retention_without_archive,
)
from walship.config.values import U64_MAX, fsspec_url, plugin_entry
from walship.errors import ConfigError
from walship.values import Bool, Duration, Name, SegmentSize, expected, integer_in, one_of

if TYPE_CHECKING:
    from walship.store import SegmentStore


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


ArchiveConfig = ArchiveSettings
"""``archive:``: where closed segments are shipped: the archive's own model (one model for the
config and the Log's arguments); the config checks besides that fsspec knows the URL's
protocol."""
RetriesConfig = RetrySettings
"""``archive.retries:``: exponential backoff of failed uploads (the archive's model)."""


class RetentionConfig(_Section):
    """``retention:``: which closed local segments may be removed (archived ones only)."""

    keep_local: Annotated[str, BeforeValidator(keep_local_rule)] = "all"


def _again(err: ErrorDetails) -> InitErrorDetails:
    """A nested model's error, to be raised again with the URL's."""
    ctx = err.get("ctx") or {}
    kind: Any = err["type"]
    if kind == "walship":
        kind = PydanticCustomError("walship", "{expected}", dict(ctx))
    line: InitErrorDetails = {"type": kind, "loc": err["loc"], "input": err["input"]}
    if ctx and kind is err["type"]:
        line["ctx"] = dict(ctx)
    return line


def _checked_archive(value: object, handler: Callable[[object], object]) -> object:
    """``handler(value)`` (the archive's model), and besides that fsspec must know the URL's
    protocol: its error comes first, at ``url``, and the section's other errors after it."""
    if not isinstance(value, Mapping) or "url" not in value:
        return handler(value)
    try:
        fsspec_url(value["url"])
    except PydanticCustomError as e:
        first: InitErrorDetails = {"type": e, "loc": ("url",), "input": value["url"]}
    else:
        return handler(value)
    lines = [first]
    try:
        handler(value)
    except ValidationError as e:
        lines += [_again(err) for err in e.errors() if err["loc"][:1] != ("url",)]
    raise ValidationError.from_exception_data("ArchiveSettings", lines)


class PluginEntry(_Section):
    """One entry of ``plugins:``: a spec and the options its class is created with."""

    name: Name = Field(description="'module:attr' or an entry-point name")
    options: dict[str, Any] = Field(default_factory=dict, repr=False)


class WalshipConfig(_Section):
    """A whole, validated config. Build it with :func:`load_config` or :func:`parse_config`."""

    store: StoreConfig = Field(
        default_factory=lambda: StoreConfig.model_validate({"path": "./wal"})
    )
    instance_id: Annotated[int, integer_in(0, U64_MAX)] | None = None
    durability: Annotated[str, one_of("always", "interval", "none")] = "always"
    sync_interval: Duration = 0.01
    rotation: RotationConfig = Field(default_factory=RotationConfig)
    archive: ArchiveSettings | None = None
    archives: list[ArchiveSettings] | None = None
    """Several destinations, each what ``archive:`` takes; never beside ``archive:``."""
    retention: RetentionConfig | None = None
    plugins: list[Annotated[PluginEntry, BeforeValidator(plugin_entry)]] = Field(
        default_factory=list
    )
    entry_point_plugins: Bool = True

    _base_dir: Path | None = PrivateAttr(default=None)

    @field_validator("archive", mode="wrap")
    @classmethod
    def _known_protocol(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        """The archive's model, and besides that fsspec must know the URL's protocol: its
        error comes first, at ``archive.url``, and the section's other errors after it."""
        return _checked_archive(value, handler)

    @field_validator("archives", mode="wrap")
    @classmethod
    def _destinations(cls, value: object, handler: ValidatorFunctionWrapHandler) -> object:
        """Each entry as ``archive:`` (its URL's protocol first), and no two with one URL."""
        if value == []:
            raise expected("a list of at least one destination, each what archive: takes")
        if isinstance(value, list):
            lines: list[InitErrorDetails] = []
            for i, item in enumerate(value):
                try:
                    _checked_archive(item, ArchiveSettings.model_validate)
                except ValidationError as e:
                    lines += [{**_again(err), "loc": (i, *err["loc"])} for err in e.errors()]
            if lines:
                raise ValidationError.from_exception_data("archives", lines)
        out: list[ArchiveSettings] | None = handler(value)
        twice = duplicate_destination([a.url for a in out or ()])
        if out is not None and twice is not None:
            i, j = twice
            what = f"a URL no other destination has (archives[{i}].url is the same)"
            err = PydanticCustomError("walship", "{expected}", {"expected": what})
            line: InitErrorDetails = {"type": err, "loc": (j, "url"), "input": out[j].url}
            raise ValidationError.from_exception_data("archives", [line])
        return out

    @model_validator(mode="after")
    def _one_form(self) -> WalshipConfig:
        if self.archive is not None and self.archives is not None:
            raise expected(
                "no archive: section beside archives: (archive: is the one-destination form: "
                "move it into the archives: list)",
                "archive",
            )
        return self

    @property
    def destinations(self) -> list[ArchiveSettings]:
        """Every destination: ``archives:``, or ``archive:`` as a list of one (empty without
        either)."""
        if self.archives is not None:
            return list(self.archives)
        return [self.archive] if self.archive is not None else []

    @model_validator(mode="after")
    def _retention_needs_archive(self) -> WalshipConfig:
        if self.retention is not None and self.archive is None and self.archives is None:
            error = retention_without_archive(RetentionPolicy.parse(self.retention.keep_local))
            if error is not None:
                raise error
        return self

    @property
    def base_dir(self) -> Path | None:
        """The directory a relative ``store.path`` is resolved against (the file's)."""
        return self._base_dir

    def set_base_dir(self, base_dir: Path) -> None:
        """Resolve a relative ``store.path`` against ``base_dir`` from now on (the loader sets
        the config file's directory)."""
        self._base_dir = base_dir

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
        """``archive:`` as the plain dict ``Log(archive=...)`` takes, or ``None`` without one

        (:meth:`~walship.archive.settings.ArchiveSettings.as_options`)."""
        if self.archive is None:
            return None
        return self.archive.as_options()

    def retention_options(self) -> dict[str, Any] | None:
        """``retention:`` as ``{"keep_local": "all" | "until_archived" | "last:N"}``, or
        ``None`` without one."""
        return None if self.retention is None else {"keep_local": self.retention.keep_local}

    def log_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :class:`~walship.log.Log` (without store and plugins);
        ``archive``, ``archives`` and ``retention`` only when their section is present."""
        kwargs: dict[str, Any] = {
            "instance_id": self.instance_id,
            "durability": self.durability,
            "sync_interval": self.sync_interval,
            "max_segment_bytes": self.rotation.max_segment_bytes,
            "max_segment_age": self.rotation.max_segment_age,
        }
        if self.archive is not None:
            kwargs["archive"] = self.archive_options()
        if self.archives is not None:
            kwargs["archives"] = [a.as_options() for a in self.archives]
        if self.retention is not None:
            kwargs["retention"] = self.retention_options()
        return kwargs

    def plugin_specs(self) -> list[dict[str, Any]]:
        """``plugins:`` as ``[{"name": spec, "options": {...}}, ...]``."""
        return [{"name": p.name, "options": dict(p.options)} for p in self.plugins]
