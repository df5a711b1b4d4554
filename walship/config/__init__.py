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
      upload_process: true                 # upload from a lower-priority child process
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
* A relative ``store.path`` is relative to the config file's directory (a ``path`` given to
  :func:`walship.open` next to the config is the caller's: relative to the current directory).
* Sizes: ``1048576``, ``512KiB``, ``64MiB``, ``1GiB`` (binary) or ``64MB`` (decimal).
  Durations: ``1.5`` (seconds), ``250us``, ``10ms``, ``60s``, ``5m``, ``1h``, ``1m30s``.

The package, one module per purpose: :mod:`walship.values` (sizes, durations and the other
value types, shared with the archive), :mod:`~walship.config.values` (the config's own: URLs,
plugin entries), :mod:`~walship.config.schema` (the models; the ``archive:`` section is
:class:`walship.archive.settings.ArchiveSettings`, the archive's own model),
:mod:`~walship.config.environment` (``${VAR}``), :mod:`~walship.config.keys` and
:mod:`~walship.config.redaction` (key paths, secrets kept out of messages),
:mod:`~walship.config.messages` (one-line errors), :mod:`~walship.config.loading` (YAML, overrides,
validation) and :mod:`~walship.config.opening` (:func:`open_log`).
"""

from __future__ import annotations

from walship.config.keys import Loc
from walship.config.loading import load_config, parse_config, validate_config
from walship.config.opening import open_log
from walship.config.schema import (
    ArchiveConfig,
    PluginEntry,
    RetentionConfig,
    RetriesConfig,
    RotationConfig,
    StoreConfig,
    WalshipConfig,
)
from walship.config.values import U64_MAX
from walship.errors import ConfigError
from walship.values import Bool, Duration, Name, SegmentSize, Size, parse_duration, parse_size

__all__ = [
    "U64_MAX",
    "ArchiveConfig",
    "Bool",
    "ConfigError",
    "Duration",
    "Loc",
    "Name",
    "PluginEntry",
    "RetentionConfig",
    "RetriesConfig",
    "RotationConfig",
    "SegmentSize",
    "Size",
    "StoreConfig",
    "WalshipConfig",
    "load_config",
    "open_log",
    "parse_config",
    "parse_duration",
    "parse_size",
    "validate_config",
]
