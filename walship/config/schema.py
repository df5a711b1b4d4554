"""The config's pydantic models (one per section) and what a validated config hands the
:class:`~walship.log.Log`: its keyword arguments, the store, the archive and retention dicts."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PrivateAttr,
    model_validator,
)

from walship.archive import settings as limits
from walship.archive.credentials import redact_url
from walship.config.redaction import HIDDEN
from walship.config.values import (
    U64_MAX,
    Bool,
    Duration,
    Name,
    SegmentSize,
    compression_name,
    duration_at_most,
    expected,
    fsspec_url,
    integer_in,
    keep_local_rule,
    one_of,
    plugin_entry,
)
from walship.errors import ConfigError

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


class RetriesConfig(_Section):
    """``archive.retries:``: exponential backoff of failed uploads."""

    attempts: Annotated[int, integer_in(1, limits.MAX_ATTEMPTS)] = 10
    backoff: Annotated[float, duration_at_most(limits.MAX_BACKOFF)] = 0.5
    max_backoff: Annotated[float, duration_at_most(limits.MAX_BACKOFF_CAP)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> RetriesConfig:
        if self.max_backoff < self.backoff:
            raise expected(f"a duration of at least backoff ({self.backoff}s)", "max_backoff")
        return self


def _conditional_create(value: object) -> str:
    if value not in limits.CONDITIONAL_CREATE:
        raise expected(f"one of {', '.join(limits.CONDITIONAL_CREATE)}")
    return str(value)


class ArchiveConfig(_Section):
    """``archive:``: where closed segments are shipped."""

    url: Annotated[str, BeforeValidator(fsspec_url)] = Field(
        description="an fsspec URL like s3://bucket/prefix"
    )
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)
    workers: Annotated[int, integer_in(1, limits.MAX_WORKERS)] = 4
    compression: Annotated[str, BeforeValidator(compression_name)] = "none"
    retries: RetriesConfig = Field(default_factory=RetriesConfig)
    lag_warning: Annotated[int, integer_in(1, limits.MAX_LAG_WARNING)] = 64
    upload_process: Bool = True
    conditional_create: Annotated[str, BeforeValidator(_conditional_create)] = "required"

    def __repr_args__(self) -> Any:
        for name, value in super().__repr_args__():
            yield name, redact_url(value, HIDDEN) if name == "url" else value  # no password


class RetentionConfig(_Section):
    """``retention:``: which closed local segments may be removed (archived ones only)."""

    keep_local: Annotated[str, BeforeValidator(keep_local_rule)] = "all"


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
    archive: ArchiveConfig | None = None
    retention: RetentionConfig | None = None
    plugins: list[Annotated[PluginEntry, BeforeValidator(plugin_entry)]] = Field(
        default_factory=list
    )
    entry_point_plugins: Bool = True

    _base_dir: Path | None = PrivateAttr(default=None)

    @model_validator(mode="after")
    def _retention_needs_archive(self) -> WalshipConfig:
        keep = self.retention.keep_local if self.retention is not None else "all"
        if keep != "all" and self.archive is None:
            raise expected(
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
         "lag_warning": int, "upload_process": bool, "conditional_create": str}
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
            "upload_process": a.upload_process,
            "conditional_create": a.conditional_create,
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
