"""The archive of one log wired together: what :func:`walship.open` (through
:func:`walship.wiring.build_log`) hands the :class:`~walship.log.Log` as its ``archiving``
(:class:`walship.archiving.Archiving`).

:func:`build_archiving` validates the ``archive:`` (or ``archives:``) and ``retention:``
sections before the store is touched; the :class:`ArchiveWiring` it returns prepares the
archive record at open (holding the log's lock, before recovery) and, once the log is open,
builds its archiver (:func:`build_archiver`: with its live shipper), its retention, registers
it as the plugin ``walship.archiver`` and starts it. Several destinations are wired by
:class:`walship.archive.destinations.DestinationsWiring` instead.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from walship.archive.archiver import Archiver
from walship.archive.attempts import AttemptLog
from walship.archive.retention import Retention
from walship.archive.settings import (
    ArchiveSettings,
    RetentionPolicy,
    destinations_from_mapping,
    retention_without_archive,
)
from walship.core.record import ArchiveRecord
from walship.errors import ConfigError
from walship.store import SegmentStore

if TYPE_CHECKING:
    from walship.archive.destinations import DestinationsWiring
    from walship.archive.promote import Takeover
    from walship.archive.repair import ArchiveRepair
    from walship.log import Log

__all__ = ["ArchiveWiring", "build_archiver", "build_archiving", "build_retention"]


class ArchiveWiring:
    """The archive and retention of one log, as :class:`walship.log.Log` takes them (its
    ``archiving``, see :class:`walship.archiving.Archiving`): built by :func:`build_archiving`, used
    by one log, on its opening thread."""

    def __init__(
        self, settings: ArchiveSettings, policy: RetentionPolicy, takeover: bool = False
    ) -> None:
        self.settings = settings
        self.policy = policy
        self.takeover = takeover
        """Take the archive over before the log opens (:mod:`walship.archive.promote`)."""
        self.takeover_result: Takeover | None = None
        self._record: ArchiveRecord | None = None

    def prepare_open(self, store: SegmentStore, repair: bool) -> ArchiveRepair:
        """Holding the log's lock, before recovery: leftovers removed
        (:func:`walship.archive.staging.clean_at_open`); the archive record, rebuilt from the
        archive when lost; with ``repair``, archived segments damaged or missing locally put
        back (see :func:`walship.archive.repair.prepare_archived_open`, and what it raises);
        with ``takeover``, first the archive taken over (:func:`walship.archive.promote.
        take_over`, and what it raises)."""
        from walship.archive.repair import prepare_archived_open
        from walship.archive.staging import clean_at_open

        clean_at_open(store)  # dead restores' staging directories, interrupted temporaries
        if self.takeover:
            from walship.archive.promote import take_over

            self.takeover_result = take_over(store, self.settings)
        prepared = prepare_archived_open(store, self.settings, repair=repair)
        self._record = prepared.record
        return prepared

    def start(self, log: Log) -> Archiver:
        """Once ``log`` is open: build the archiver (and retention, unless it keeps all),
        register it as the plugin ``walship.archiver``, start it."""
        assert self._record is not None, "prepare_open first"
        archiver = build_archiver(log, self.settings, self._record)
        archiver.retention = build_retention(log, self.policy, self._record, archiver.url)
        log.plugins.register(archiver, name="walship.archiver")
        archiver.start()
        return archiver


def build_archiver(
    log: Log, settings: ArchiveSettings, record: ArchiveRecord, attempts: AttemptLog | None = None
) -> Archiver:
    """The archiver of one destination of ``log`` (with its live shipper when
    ``ship_interval`` is set), not started, without retention."""
    archiver = Archiver(
        log.store, settings, record, log.notify, log.closed_segments, attempts=attempts
    )
    if settings.ship_interval is not None:
        from walship.archive.shipper import Shipper

        archiver.shipper = Shipper(
            log.store,
            archiver.archive,
            record,
            log.durable_position,
            settings.ship_interval,
            archiver.fence,
        )
    return archiver


def build_retention(
    log: Log, policy: RetentionPolicy, record: ArchiveRecord, urls: str | Sequence[str]
) -> Retention | None:
    """The local retention of ``log`` over the destinations ``urls`` (a segment goes once
    every one holds it), wired to the log's closed segments, removals and events; ``None``
    when the policy keeps everything."""
    if policy.mode == "all":
        return None
    return Retention(
        policy, log.store, record, urls, log.closed_segments, log.segment_removed, log.notify
    )


def build_archiving(
    archive: Mapping[str, Any] | None,
    retention: Mapping[str, Any] | None,
    archives: Sequence[Mapping[str, Any]] | None = None,
    takeover: bool = False,
) -> ArchiveWiring | DestinationsWiring | None:
    """Validate the ``archive:`` (one destination) or ``archives:`` (several), and
    ``retention:`` sections together; ``None`` without an archive (retention then keeps
    everything). Several destinations are a
    :class:`~walship.archive.destinations.DestinationsWiring`.

    Raises:
        ConfigError: a bad key or value (``archives[1].workers: ...``); both ``archive`` and
            ``archives``; two destinations with one URL; or a retention policy that removes
            segments without an archive to hold them; ``takeover`` (the log takes the archive
            over when it opens: ``walship promote``) without an archive or with several.
    """
    destinations = destinations_from_mapping(archive, archives)
    if takeover and not destinations:
        raise ConfigError("takeover=True needs the log's archive: section (the URL to take over)")
    if takeover and len(destinations) > 1:
        raise ConfigError(
            "takeover=True takes one archive URL over: it is not supported with several "
            "destinations (archives:); promote with the one destination, then add the others"
        )
    policy = RetentionPolicy.from_mapping(retention)
    error = retention_without_archive(policy) if not destinations else None
    if error is not None:
        raise ConfigError(error.message())
    if len(destinations) > 1:
        from walship.archive.destinations import DestinationsWiring

        return DestinationsWiring(destinations, policy)
    return ArchiveWiring(destinations[0], policy, takeover) if destinations else None
