"""Full verification of the ledger: every stored event, both chains and the anchors, in bounded steps.

``LedgerVerification`` reads the notification log in pages (``select_notifications``),
decodes each stored event with the application's mapper, recomputes its hash,
and walks both chains with ``domain.integrity.ChainWalk``, comparing the global
chain it recomputes with the rows of ``ledger_chain`` and with anchors (signed
digests, the incremental verifier's checkpoint). Memory stays flat: one page of
events and of chain rows at a time, and a bounded LRU of aggregate heads.

It runs in steps (``step``), so a caller can show progress, stop on Ctrl-C, or
interleave it with other work (the worker's re-verification). The log is
verified up to its head when the verification started; later events are the
incremental verifier's business.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, select

from application.ledger import Ledger
from domain.chain import compute_event_hash
from domain.digest import LedgerDigest
from domain.integrity import (
    AGGREGATE_CHAIN,
    CHECKPOINT,
    DIGEST,
    GLOBAL_CHAIN,
    HEADS_CAPACITY_DEFAULT,
    AggregateHeads,
    Anchor,
    AnchorResult,
    ChainRow,
    ChainWalk,
    CheckedEvent,
    Damage,
    raw_digest,
)
from domain.tenant import Tenant
from infrastructure.integrity_monitor import IntegrityMonitor, process_monitor
from infrastructure.integrity_store import read_checkpoint, utc_now
from projections.jobs.checkpoints import checkpoints_between
from projections.jobs.global_chain import ledger_chain
from projections.jobs.merkle_tree import TreeCheck
from projections.jobs.stored_hash import hashes_from_stored

PAGE_SIZE = 1000


# --- reading the store ---------------------------------------------------------------------


def check_event(ledger: Ledger, notification: Any) -> CheckedEvent:
    """Decode one stored event and recompute its hash; an undecodable event is still accounted for."""
    position, version = notification.id, notification.originator_version
    if _stored_json(ledger):
        found = hashes_from_stored(notification.topic, notification.originator_id, version, notification.state)
        if found is not None:  # the fast path vouches only for a matching hash (projections/jobs/stored_hash.py)
            return CheckedEvent(position, _uuid(notification.originator_id), version, *found)
    try:
        event = ledger.mapper.to_domain_event(notification)
        recomputed = compute_event_hash(event)
    except Exception:  # noqa: BLE001 - any failure to decode is damage to report, not a crash
        return CheckedEvent(position, _uuid(notification.originator_id), version, None, "", "", None,
                            raw_digest(bytes(notification.state or b"")))
    return CheckedEvent(position, event.originator_id, version, type(event).__qualname__,
                        _text(getattr(event, "hash", "")), _text(getattr(event, "prev_hash", "")), recomputed)


def _stored_json(ledger: Ledger) -> bool:
    """Whether events are stored as plain JSON (no compressor, no cipher configured)."""
    mapper = ledger.mapper
    return getattr(mapper, "compressor", None) is None and getattr(mapper, "cipher", None) is None


def _uuid(value: Any) -> UUID:
    return value if isinstance(value, UUID) else UUID(str(value))


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""


class LedgerLookups:
    """Point reads of the event store that verification needs now and then."""

    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def stored_hash(self, aggregate_id: UUID, version: int) -> str | None:
        if version < 1:
            return None
        found = self.ledger.recorder.select_events(aggregate_id, gt=version - 1, lte=version, limit=1)
        if not found:
            return None
        try:
            return _text(getattr(self.ledger.mapper.to_domain_event(found[0]), "hash", ""))
        except Exception:  # noqa: BLE001 - present but undecodable
            return ""

    def tenant_of(self, aggregate_id: UUID) -> UUID | None:
        """The tenant an aggregate belongs to, from its first event (``None`` if that is gone)."""
        found = self.ledger.recorder.select_events(aggregate_id, limit=1)
        if not found:
            return None
        try:
            event = self.ledger.mapper.to_domain_event(found[0])
        except Exception:  # noqa: BLE001
            return None
        if isinstance(event, Tenant.Created):
            return event.originator_id
        tenant_id = getattr(event, "tenant_id", None)
        return tenant_id if isinstance(tenant_id, UUID) else None

    def event_at(self, position: int) -> bool:
        found = self.ledger.recorder.select_notifications(start=position, limit=1)
        return bool(found) and found[0].id == position


def stored_chain_rows(connection: Connection, after_sequence: int, count: int) -> dict[int, ChainRow]:
    """The stored global chain rows after ``after_sequence``, at most ``count``, by sequence."""
    if count <= 0:
        return {}
    columns = (ledger_chain.c.sequence, ledger_chain.c.position, ledger_chain.c.originator_id,
               ledger_chain.c.originator_version, ledger_chain.c.event_hash, ledger_chain.c.prev_hash,
               ledger_chain.c.hash)
    rows = connection.execute(
        select(*columns).where(ledger_chain.c.sequence > after_sequence).order_by(ledger_chain.c.sequence)
        .limit(count)
    )
    return {int(row[0]): ChainRow(int(row[0]), int(row[1]), row[2], int(row[3]), row[4], row[5], row[6])
            for row in rows}


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class VerificationReport:
    """What a full verification found. ``damages`` holds the first ones found (bounded)."""

    events: int
    head_sequence: int
    head_position: int
    head_hash: str
    compared_rows: int
    unchained_events: int
    damages: tuple[Damage, ...]
    damages_total: int
    anchors: tuple[AnchorResult, ...]
    started_at: datetime
    elapsed_seconds: float
    tenant_id: UUID | None = None
    damages_elsewhere: int = 0

    @property
    def intact(self) -> bool:
        return not self.damages

    @property
    def first_damage(self) -> Damage | None:
        return min(self.damages, key=lambda d: d.sort_key) if self.damages else None

    @property
    def events_per_second(self) -> float:
        return self.events / self.elapsed_seconds if self.elapsed_seconds > 0 else 0.0

    def to_document(self, digest: LedgerDigest | None = None) -> dict[str, Any]:
        """The machine-readable report (``invario verify --json``, the admin audit route)."""
        first = self.first_damage
        return {
            "intact": self.intact,
            "tenant_id": str(self.tenant_id) if self.tenant_id else None,
            "events_checked": self.events,
            "head": {"sequence": self.head_sequence, "position": self.head_position, "hash": self.head_hash},
            "global_chain": {"rows_compared": self.compared_rows, "unchained_events": self.unchained_events},
            "first_break": first.to_document() if first else None,
            "breaks": [damage.to_document() for damage in self.damages],
            "breaks_total": self.damages_total if self.tenant_id is None else len(self.damages),
            "breaks_elsewhere": self.damages_elsewhere,
            "anchors": [
                {"chain": r.anchor.chain, "sequence": r.anchor.sequence, "position": r.anchor.position,
                 "hash": r.anchor.hash, "matches": r.checked and r.damage is None}
                for r in self.anchors
            ],
            "digest": {"sequence": digest.sequence, "position": digest.position, "hash": digest.hash,
                       "time": digest.time, "key_id": digest.key_id} if digest else None,
            "started_at": self.started_at.isoformat(),
            "elapsed_seconds": round(self.elapsed_seconds, 3),
            "events_per_second": round(self.events_per_second),
        }

    def for_tenant(self, tenant_id: UUID, lookups: LedgerLookups) -> VerificationReport:
        """The same verification seen by one tenant: its aggregates' damage and the ledger-wide damage.

        Event damage belongs to the tenant of the aggregate it names (unknown: to
        everyone). An anchor that no longer matches is a consequence of event
        damage when there is any, so it goes with that; alone (a consistent
        rewrite) nobody can tell whose data changed, so every tenant sees it.
        """
        owners = {d: lookups.tenant_of(UUID(d.aggregate_id)) if d.aggregate_id else None
                  for d in self.damages if d.chain in (AGGREGATE_CHAIN, GLOBAL_CHAIN)}
        touched = set(owners.values())
        mine, elsewhere = [], 0
        for damage in self.damages:
            if damage in owners:
                concerns = owners[damage] in (None, tenant_id)
            else:
                concerns = not owners or bool(touched & {None, tenant_id})
            if concerns:
                mine.append(damage)
            else:
                elsewhere += 1
        return replace(self, damages=tuple(mine), tenant_id=tenant_id,
                       damages_elsewhere=elsewhere + self.damages_total - len(self.damages))


# --- the verification -------------------------------------------------------------------------------


class LedgerVerification:
    """One full verification, from the first event to the head of the log when it started.

    It runs in one process: decoding and re-hashing in worker processes was
    measured slower on two cores (the walk, the database and the workers compete
    for them, and every checked event must be pickled back); see docs/integrity.md.
    """

    def __init__(  # noqa: PLR0913
        self,
        ledger: Ledger,
        engine: Engine,
        *,
        digests: Sequence[LedgerDigest] = (),
        page_size: int = PAGE_SIZE,
        heads_capacity: int = HEADS_CAPACITY_DEFAULT,
        use_checkpoint: bool = True,
    ) -> None:
        self.ledger, self.engine, self.page_size = ledger, engine, page_size
        self.started_at = utc_now()
        self._began = time.monotonic()
        anchors = [Anchor(DIGEST, d.sequence, d.position, d.hash) for d in digests]
        if use_checkpoint:
            with engine.connect() as connection:
                checkpoint = read_checkpoint(connection)  # read before the head: it never passes it
            if checkpoint.sequence > 0:
                anchors.append(Anchor(CHECKPOINT, checkpoint.sequence, checkpoint.position, checkpoint.hash))
        with engine.connect() as connection:
            self.tree = TreeCheck(connection, self._checkpoint_roots)  # read before the head: it never passes it
        self.stop_position = ledger.recorder.max_notification_id() or 0
        self.walk = ChainWalk.from_anchors(anchors, heads=AggregateHeads(heads_capacity))
        self.lookups = LedgerLookups(ledger)
        self.next_start = 1
        self.done = False

    def step(self, max_events: int | None = None) -> int:
        """Verify the next page of events (at most ``max_events``); return how many (0: finished)."""
        if self.done:
            return 0
        events, exhausted = self._read_page(max(1, min(self.page_size, max_events or self.page_size)))
        rows = self._rows(len(events))
        with self.engine.connect() as connection:
            self.tree.expect(connection, len(events))
        for event in events:
            self.walk.visit(event, rows.get(self.walk.sequence + 1), self.lookups)
            for damage in self.tree.visit(event):
                self.walk.record(damage)
        if exhausted:
            self._finish()
        return len(events)

    def _read_page(self, limit: int) -> tuple[list[CheckedEvent], bool]:
        if self.next_start > self.stop_position:
            return [], True
        notifications = self.ledger.recorder.select_notifications(
            start=self.next_start, limit=limit, stop=self.stop_position
        )
        if notifications:
            self.next_start = notifications[-1].id + 1
        return [check_event(self.ledger, n) for n in notifications], len(notifications) < limit

    def run(self, on_progress: Callable[[int], None] | None = None) -> VerificationReport:
        while count := self.step():
            if on_progress is not None:
                on_progress(count)
        return self.report()

    def report(self) -> VerificationReport:
        walk = self.walk
        unchained = 0 if walk.global_broken else walk.events - walk.compared_rows
        return VerificationReport(
            events=walk.events, head_sequence=walk.sequence, head_position=walk.last_position,
            head_hash=walk.link, compared_rows=walk.compared_rows, unchained_events=unchained,
            damages=tuple(sorted(walk.damages, key=lambda d: d.sort_key)), damages_total=walk.damages_total,
            anchors=tuple(walk.anchors), started_at=self.started_at,
            elapsed_seconds=time.monotonic() - self._began,
        )

    def _checkpoint_roots(self, after: int, up_to: int) -> list[tuple[int, bytes]]:
        if not self.tree.has_tables:  # a database from before the tree (not migrated)
            return []
        with self.engine.connect() as connection:
            found = checkpoints_between(connection, after, up_to, limit=max(1, min(up_to - after, PAGE_SIZE)))
        return [(checkpoint.size, checkpoint.root) for checkpoint in found]

    def _rows(self, count: int) -> dict[int, ChainRow]:
        if self.walk.global_broken or count == 0:
            return {}
        with self.engine.connect() as connection:
            return stored_chain_rows(connection, self.walk.sequence, count)

    def _finish(self) -> None:
        self.done = True
        if not self.walk.global_broken:
            following = self._rows(1).get(self.walk.sequence + 1)
            # A row after the last event is fine only if its event was written since we started.
            if following is not None and not self.lookups.event_at(following.position):
                self.walk.missing_rows(following)
        with self.engine.connect() as connection:
            for damage in self.tree.finish(connection):
                self.walk.record(damage)
        self.walk.finish()


def record_outcome(
    engine: Engine, report: VerificationReport, source: str, monitor: IntegrityMonitor | None = None
) -> bool:
    """Tell the monitor (hence every process) what a full verification found; whether the ledger is intact.

    Pass the whole report, not one narrowed to a tenant: any damage is a detection.
    """
    monitor = monitor or process_monitor()
    first = report.first_damage
    if first is not None:
        monitor.report_break(engine, first, source)
        return False
    return monitor.report_passed(engine, source, report.started_at, report.head_sequence)

