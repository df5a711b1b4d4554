"""The archive's settings: one model, validated once, whether they come from the YAML config
(:mod:`walship.config`, which nests these models in its own) or from ``Log(archive={...},
retention={...})``.

:class:`ArchiveSettings` (with :class:`RetrySettings`) is the ``archive:`` section, durations in
seconds; :class:`RetentionPolicy` the parsed ``retention.keep_local``. A value one entry point
accepts the other never refuses. The two entry points word their errors in their own style from
the same pydantic errors (:mod:`walship.values`): the config as ``archive.workers = 0: expected
an integer from 1 to 256``, the Log as ``archive.workers: Input should be greater than or equal
to 1 (got 0)``. Storage options are never shown: they may be secrets.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    InstanceOf,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from walship.archive.credentials import redact_url
from walship.archive.sealing import INSTALL_HINT, KEY_HELP, Keyring
from walship.errors import ConfigError
from walship.values import Bool, Size, duration_at_most, expected, integer_in, parse_duration

MAX_ATTEMPTS = 1000
"""Upload attempts per segment before it is left pending (until a flush or the next open)."""
MAX_BACKOFF = 3600.0
"""The longest first backoff, seconds."""
MAX_BACKOFF_CAP = 86400.0
"""The longest backoff cap, seconds."""
CONDITIONAL_CREATE = ("required", "checked")
"""``archive.conditional_create``: ``required`` archives only to a server that honours
``If-None-Match: *`` on PUT; ``checked`` falls back to a check before and after each create."""
MAX_WORKERS = 256
MAX_LAG_WARNING = 1_000_000_000
MAX_SHIP_INTERVAL = 3600.0
"""The longest ``archive.ship_interval``, seconds."""
SHIP_INTERVAL_HELP = (
    f"off, or a positive duration of at most {MAX_SHIP_INTERVAL:g}s, like 1s, 500ms or 5s"
)
KEEP_LOCAL_HELP = "all, until_archived or last:N (N >= 1 closed segments)"
URL_DESCRIPTION = "an fsspec URL like s3://bucket/prefix"


def _compression(value: object) -> str:
    if value not in ("none", "zstd"):
        raise expected("one of none, zstd", message="Input should be 'none' or 'zstd'")
    if value == "zstd":
        import importlib.util

        if importlib.util.find_spec("zstandard") is None:
            raise expected(
                "none, or zstd with the zstandard package (pip install walship[zstd])",
                message="zstd needs the zstandard package (pip install walship[zstd])",
            )
    return str(value)


def _encryption(value: object) -> Keyring | None:
    if value is None:
        return None
    form = "{keys: {<id>: <key>}, current: <id>}, each key " + KEY_HELP
    try:
        keyring = Keyring.from_mapping(value)
    except ValueError as e:
        reason = str(e).removeprefix("encryption.").removeprefix("encryption: ")
        raise expected(f"{form} ({reason})", message=reason) from None
    if keyring.current is None:
        reason = "current must name the key new objects are sealed under"
        raise expected(f"{form} ({reason})", message=reason)
    import importlib.util

    if importlib.util.find_spec("cryptography") is None:
        raise expected(
            f"the cryptography package ({INSTALL_HINT})",
            message=f"encryption needs the cryptography package ({INSTALL_HINT})",
        )
    return keyring


def _conditional_create(value: object) -> str:
    if value not in CONDITIONAL_CREATE:
        choices = ", ".join(CONDITIONAL_CREATE)
        raise expected(f"one of {choices}", message=f"Value error, must be one of {choices}")
    return str(value)


MAX_WAIT = 86400.0
"""The longest ``drain_on_close`` and ``backpressure_timeout``, seconds."""


def _wait(value: object) -> float:
    """A duration (``30s``, ``500ms``, seconds as a number) that may be ``0``: do not wait."""
    what = "a duration of at least 0, like 30s, 500ms, 0 (do not wait) or 1.5 (seconds)"
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise expected(what, message="Input should be a valid number, unable to parse") from None
    if not seconds >= 0 or seconds > MAX_WAIT:
        raise expected(what, message="Input should be a duration from 0 to 1 day")
    return seconds


def _ship_interval(value: object) -> float | None:
    if value is None or value is False or value == "off":
        return None
    try:
        seconds = parse_duration(value)
    except ValueError:
        raise expected(
            SHIP_INTERVAL_HELP, message=f"Value error, expected {SHIP_INTERVAL_HELP}"
        ) from None
    if not 0 < seconds <= MAX_SHIP_INTERVAL:
        raise expected(SHIP_INTERVAL_HELP, message=f"Value error, expected {SHIP_INTERVAL_HELP}")
    return seconds


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RetrySettings(_Section):
    """``archive.retries``: attempts per segment, first backoff and its cap (seconds)."""

    attempts: Annotated[int, integer_in(1, MAX_ATTEMPTS)] = 10
    backoff: Annotated[float, duration_at_most(MAX_BACKOFF)] = 0.5
    max_backoff: Annotated[float, duration_at_most(MAX_BACKOFF_CAP)] = 60.0

    @model_validator(mode="after")
    def _ordered(self) -> RetrySettings:
        if self.max_backoff < self.backoff:
            raise expected(
                f"a duration of at least backoff ({self.backoff}s)",
                "max_backoff",
                "Value error, max_backoff must be at least backoff ({backoff}s)",
                backoff=self.backoff,
            )
        return self


MAX_KEEP_CHECKPOINTS = 1_000_000
MAX_PRUNE_AGE = 100 * 365 * 86400.0


class PruneSettings(_Section):
    """``archive.prune``: what ``walship prune`` (and the archiver, after each checkpoint with a
    snapshot) removes from the archive: everything no kept checkpoint needs. A checkpoint is
    kept when it is one of the ``keep_checkpoints`` newest, or newer than ``older_than``, or
    the newest one older than that (so that any time in the window can be restored); at least
    one of the two is given (:mod:`walship.archive.prune`)."""

    older_than: Annotated[float | None, duration_at_most(MAX_PRUNE_AGE)] = None
    keep_checkpoints: Annotated[int | None, integer_in(1, MAX_KEEP_CHECKPOINTS)] = None

    @model_validator(mode="after")
    def _some_rule(self) -> PruneSettings:
        if self.older_than is None and self.keep_checkpoints is None:
            raise expected(
                "older_than (a duration like 30d) or keep_checkpoints (an integer >= 1)",
                message="Value error, give older_than, keep_checkpoints or both",
            )
        return self


class ArchiveSettings(_Section):
    """The ``archive:`` section (durations in seconds). Build it with :meth:`from_mapping`
    (the Log's arguments) or as part of a :class:`walship.config.WalshipConfig`."""

    url: str = Field(min_length=1, description=URL_DESCRIPTION)
    storage_options: dict[str, Any] = Field(default_factory=dict, repr=False)  # credentials
    workers: Annotated[int, integer_in(1, MAX_WORKERS)] = 4
    compression: Annotated[str, BeforeValidator(_compression)] = "none"
    retries: RetrySettings = Field(default_factory=RetrySettings)
    lag_warning: Annotated[int, integer_in(1, MAX_LAG_WARNING)] = 64
    upload_process: Bool = True
    """Upload from the shared child process (:mod:`walship.archive.upload_process`); a
    ``memory://`` archive, which lives in this process, always uploads from threads here."""
    conditional_create: Annotated[str, BeforeValidator(_conditional_create)] = "required"
    """``required``: archive to S3 only where the server honours ``If-None-Match: *`` on PUT
    (probed at first use); ``checked``: elsewhere, check before and read back after each
    create (weaker: two writers racing can still overwrite each other)."""
    encryption: Annotated[InstanceOf[Keyring] | None, BeforeValidator(_encryption)] = Field(
        default=None, repr=False
    )
    """``{keys: {<id>: <key>}, current: <id>}``: every archived object sealed under the
    current key (:mod:`walship.archive.sealing`); ``None``: not encrypted."""
    drain_on_close: Annotated[float, BeforeValidator(_wait)] = 30.0
    """``Log.close()`` waits up to this long for the pending uploads (0: it does not wait);
    what is still pending then is named (a warning, ``stats()["archive_pending_at_close"]``)."""
    max_pending: Size | None = None
    """Backpressure: when more bytes of closed segments than this wait for upload, appends wait
    (up to ``backpressure_timeout``) and then fail with ``ArchiveBackpressureError``
    (``None``: off)."""
    backpressure_timeout: Annotated[float, BeforeValidator(_wait)] = 30.0
    """How long an append waits for the archive to catch up under backpressure."""

    prune: PruneSettings | None = None
    """What the archiver prunes from the archive after each checkpoint (``None``: never)."""
    ship_interval: Annotated[float | None, BeforeValidator(_ship_interval)] = None
    """Live shipping (:mod:`walship.archive.shipper`): every this many seconds the durable
    frames of the active segment not in the archive yet go to it as a part; ``None`` (``off``,
    the default): only closed segments are archived."""

    def __repr_args__(self) -> Any:
        for key, value in super().__repr_args__():
            yield key, redact_url(value) if key == "url" else value  # no URL password

    def as_options(self) -> dict[str, Any]:
        """The section as the plain dict ``Log(archive=...)`` takes::

        {"url": str, "storage_options": dict, "workers": int, "compression": "none"|"zstd",
         "retries": {"attempts": int, "backoff": float, "max_backoff": float},
         "lag_warning": int, "upload_process": bool, "conditional_create": str,
         "drain_on_close": float, "max_pending": int | None, "backpressure_timeout": float,
         "ship_interval": float,
         and, when set, "encryption": {"keys": {id: hex}, "current": id}}

        (``ship_interval`` only when live shipping is on.)
        """
        out = self.model_dump(exclude={"encryption"})
        out["storage_options"] = dict(self.storage_options)
        if self.encryption is not None:
            out["encryption"] = self.encryption.as_mapping()
        if self.prune is None:
            del out["prune"]  # only when the section has one
        else:  # {"older_than": float, "keep_checkpoints": int}: what was given
            out["prune"] = self.prune.model_dump(exclude_none=True)
        if out["ship_interval"] is None:
            del out["ship_interval"]
        return out

    @classmethod
    def from_mapping(cls, archive: Mapping[str, Any], where: str = "archive") -> ArchiveSettings:
        """Validate an ``archive:`` mapping; missing keys take their defaults.

        Raises:
            ConfigError: one line naming the key path (below ``where``) and what was expected
                (storage option values are never shown: they may be secrets).
        """
        if not isinstance(archive, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {type(archive).__name__}")
        try:
            return cls.model_validate(dict(archive))
        except ValidationError as e:
            raise ConfigError(_argument_error(e, where)) from None


def destination_url(url: str) -> str:
    """``url`` as the archiver records and shows it (no password, no trailing ``/``): two
    destinations are the same when these agree."""
    return redact_url(url.rstrip("/") or url)


def duplicate_destination(urls: list[str]) -> tuple[int, int] | None:
    """The first pair ``(i, j)``, ``i < j``, of ``urls`` naming one destination (``None``:
    every URL differs)."""
    seen: dict[str, int] = {}
    for j, url in enumerate(urls):
        i = seen.setdefault(destination_url(url), j)
        if i != j:
            return i, j
    return None


BOTH_FORMS = (
    "archive and archives: give one of them (archive is the one-destination form: move it into "
    "the archives list)"
)


def destinations_from_mapping(
    archive: Mapping[str, Any] | None, archives: Sequence[Mapping[str, Any]] | None
) -> list[ArchiveSettings]:
    """Validate ``archive`` (one destination) or ``archives`` (several): their settings, in
    order (empty with neither).

    Raises:
        ConfigError: one line: both given; ``archives`` empty or not a list; a bad entry
            (``archives[1].workers: ...``); two entries with one URL.
    """
    if archive is not None and archives is not None:
        raise ConfigError(BOTH_FORMS)
    if archives is None:
        return [ArchiveSettings.from_mapping(archive)] if archive is not None else []
    if isinstance(archives, (str, bytes, Mapping)) or not isinstance(archives, Sequence):
        raise ConfigError(f"archives: expected a list of archive sections, got {archives!r}")
    if not archives:
        raise ConfigError("archives: expected at least one destination, got an empty list")
    out = [ArchiveSettings.from_mapping(a, f"archives[{i}]") for i, a in enumerate(archives)]
    twice = duplicate_destination([a.url for a in out])
    if twice is not None:
        i, j = twice
        raise ConfigError(
            f"archives[{j}].url: {destination_url(out[j].url)!r} is the URL of archives[{i}] "
            "too: each destination needs its own"
        )
    return out


def _argument_error(e: ValidationError, where: str = "archive") -> str:
    """The first error of an ``archive:`` argument as one line, in pydantic's words."""
    err = e.errors()[0]
    loc = ".".join(str(p) for p in err["loc"])
    path = f"{where}.{loc}" if loc else where
    if err["type"] == "extra_forbidden":
        parent: type[BaseModel] = ArchiveSettings if len(err["loc"]) == 1 else RetrySettings
        if len(err["loc"]) > 1 and err["loc"][0] == "prune":
            parent = PruneSettings
        known = list(parent.model_fields)
        close = difflib.get_close_matches(str(err["loc"][-1]), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else f" (known: {', '.join(known)})"
        return f"{path}: unknown key{hint}"
    hidden = loc.startswith(("storage_options", "encryption"))  # secrets
    shown = "" if hidden else f" (got {err.get('input')!r})"
    return f"{path}: {err['msg']}{shown}"


# --- retention ------------------------------------------------------------------------------

_LAST = re.compile(r"last:(\d+)")


@dataclass(frozen=True)
class RetentionPolicy:
    """A parsed ``keep_local`` value: ``all``, ``until_archived`` or ``last:N``."""

    mode: str
    """``all``, ``until_archived`` or ``last``."""
    keep_last: int = 0

    @property
    def text(self) -> str:
        return f"last:{self.keep_last}" if self.mode == "last" else self.mode

    @classmethod
    def parse(cls, value: Any) -> RetentionPolicy:
        """Parse ``all`` | ``until_archived`` | ``last:N``.

        Raises:
            ConfigError: anything else (the message names ``retention.keep_local``).
        """
        policy = cls.read(value)
        if policy is None:
            raise ConfigError(
                f"retention.keep_local: {value!r} is not one of 'all', 'until_archived', "
                "'last:N' (N >= 1 closed segments)"
            )
        return policy

    @classmethod
    def read(cls, value: object) -> RetentionPolicy | None:
        """The policy ``value`` spells, or ``None`` when it spells none (the one parser of
        ``keep_local``, for the config and the Log)."""
        if value in ("all", "until_archived"):
            return cls(str(value))
        m = _LAST.fullmatch(value) if isinstance(value, str) else None
        if m is None or int(m.group(1)) < 1:
            return None
        return cls("last", int(m.group(1)))

    @classmethod
    def from_mapping(cls, retention: Mapping[str, Any] | None) -> RetentionPolicy:
        """The policy of a ``retention:`` section (``None``: keep everything).

        Raises:
            ConfigError: an unknown key or a bad value, named.
        """
        if retention is None:
            return cls("all")
        if not isinstance(retention, Mapping):
            raise ConfigError(f"retention: expected a mapping, got {type(retention).__name__}")
        unknown = sorted(set(retention) - {"keep_local"})
        if unknown:
            raise ConfigError(f"retention.{unknown[0]}: unknown key (known: keep_local)")
        return cls.parse(retention.get("keep_local", "all"))


def keep_local_rule(value: object) -> str:
    """Pydantic validator of ``retention.keep_local``: the policy's text (``last:010`` is
    ``last:10``)."""
    policy = RetentionPolicy.read(value)
    if policy is None:
        raise expected(KEEP_LOCAL_HELP)
    return policy.text


def retention_without_archive(policy: RetentionPolicy) -> PydanticCustomError | None:
    """The one rule joining the two sections: a policy that removes local segments needs an
    archive to hold them. The error for ``policy`` when there is no ``archive:`` section
    (``None``: ``keep_local: all`` needs none); its ``path`` is ``retention.keep_local``."""
    if policy.mode == "all":
        return None
    return expected(
        "'all' without an archive: section (only archived segments are ever removed)",
        "retention.keep_local",
        "retention.keep_local: {keep} removes local segments once archived, but there is "
        "no archive: section",
        keep=repr(policy.text),
    )
