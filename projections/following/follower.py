"""Followers of the notification log that keep SQLAlchemy tables.

A follower reads the log in bounded batches after its tracking position, lets
its projection write rows, and moves the position forward in the same database
transaction. The position moves by compare-and-set, taken first in the
transaction, so two followers of one projection can never both apply a batch:
the loser rolls back and writes nothing. Processing is therefore exactly-once
and safe to restart at any moment.

Three more guarantees are layered on that:

- **Whole transactions.** A batch never ends inside a ledger transaction (a
  ``Transaction.Posted`` event and the ``PostingRecorded`` events of its
  accounts), so no read model ever shows half a transaction: balances of a
  tenant sum to zero at every tracking position.
- **One transaction for several projections.** A ``FollowerGroup`` reads a
  batch once and applies it to every projection at the same position in one
  database transaction, so read models that move together are always at one
  common position. A projection that is behind (newly added, or being
  rebuilt) catches up on its own, never passing the others, and then joins them.
- **Restores are noticed.** Each tracking row keeps the identity (hash) of the
  last event it applied. If the log no longer holds that event at that
  position, the events were restored from an older backup or rewritten, and the
  follower stops with ``LogDiverged`` instead of silently skipping events.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Protocol
from uuid import UUID

from sqlalchemy import BigInteger, Column, Connection, DateTime, Engine, String, Table, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from application.ledger import Ledger
from domain.account import Account
from domain.transaction import POSTINGS_MAX, Transaction
from infrastructure.db_errors import classify_database_error
from infrastructure.schema import metadata
from infrastructure.telemetry import instruments

log = logging.getLogger(__name__)

projection_tracking = Table(
    "projection_tracking",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
    # Identity of the event at ``position``: its hash, so a restored or rewritten
    # log is noticed (revision 0002).
    Column("event_hash", String(64), nullable=True),
    # Set while 'invario projections rebuild' replays this projection (0002).
    Column("rebuild_started_at", DateTime(timezone=True), nullable=True),
)

BATCH_SIZE_MAX = 10_000
# The most events one ledger transaction writes: its own Posted event, one
# Reversed event on the transaction it reverses, one PostingRecorded per account;
# a hold's capture writes a HoldReleased and a PostingRecorded per account.
SAVE_EVENTS_MAX = 2 * POSTINGS_MAX + 2
# A rebuild in another process that moved its projection this recently owns it;
# a worker leaves it alone until it has been idle for this long.
REBUILD_LEASE = timedelta(seconds=60)


def drain(
    process_batch: Callable[[], int], batches_max: int, on_batch: Callable[[int], None] | None = None
) -> int:
    """Call ``process_batch`` until it reports nothing left (or ``batches_max`` calls);
    return the total it processed. Every log-following loop is bounded this way."""
    total = 0
    for _ in range(batches_max):
        count = process_batch()
        if count == 0:
            break
        total += count
        if on_batch is not None:
            on_batch(count)
    return total


@dataclass(frozen=True)
class LoggedEvent:
    """A decoded domain event and its position in the notification log."""

    position: int
    event: Any


class Projection(Protocol):
    name: str

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        """Write this batch's rows; called inside the follower's transaction."""


class LogDiverged(Exception):
    """The log no longer holds the event a projection last applied: rebuild it."""


class ProjectionFailed(Exception):
    """A read model could not apply one event of the log: which projection, which event, and why.

    Events are immutable, so the follower retries the same event until the cause
    is removed (a fixed release, a database that is back); ops/RUNBOOK.md says how.
    """

    def __init__(self, projection: str, logged: LoggedEvent, cause: BaseException) -> None:
        self.projection, self.position, self.cause = projection, logged.position, cause
        self.event_type = type(logged.event).__qualname__
        self.aggregate_id = str(getattr(logged.event, "originator_id", ""))
        reason = " ".join(str(cause).split())[:500] or type(cause).__name__
        super().__init__(
            f"projection {projection} cannot apply the event at position {logged.position} "
            f"({self.event_type} of {self.aggregate_id}): {type(cause).__name__}: {reason}"
        )


@dataclass(frozen=True)
class TrackingState:
    """One projection's tracking row (a missing row reads as position 0)."""

    name: str
    position: int
    event_hash: str | None = None
    updated_at: datetime | None = None
    last_error: str | None = None
    rebuild_started_at: datetime | None = None

    def rebuilt_elsewhere(self, now: datetime) -> bool:
        """Whether a rebuild in another process is actively moving this projection."""
        if self.rebuild_started_at is None or self.updated_at is None:
            return False
        return now - _aware(self.updated_at) < REBUILD_LEASE


@dataclass(frozen=True)
class LogAfter:
    """What the log holds after a position, read by a follower or the relay."""

    notifications: list[Any]  # after the position, in order (the event at the position left out)
    identity: str | None  # of the event at the position; None when it is 0 or the log no longer holds it
    complete: bool  # fewer than asked for were there: nothing more up to ``stop``


def read_log_after(ledger: Any, start: int, limit: int, stop: int | None = None) -> LogAfter:
    """At most ``limit`` notifications from ``start`` on; the one at ``start`` (already applied or
    relayed) only gives its identity, which the caller compares with the one it recorded there."""
    notifications = list(ledger.recorder.select_notifications(start=max(start, 1), limit=limit, stop=stop))
    complete = len(notifications) < limit
    if start == 0:
        return LogAfter(notifications, None, complete)
    if not notifications or notifications[0].id != start:
        return LogAfter([], None, False)
    return LogAfter(notifications[1:], event_identity(ledger.mapper.to_domain_event(notifications[0])), complete)


def event_identity(event: Any) -> str:
    """What a tracking row remembers of the event at its position."""
    found = getattr(event, "hash", None)
    return found if isinstance(found, str) and found else f"{event.originator_id}/{event.originator_version}"


class TransactionBoundaries:
    """Tells, event by event, whether the events so far end between ledger transactions.

    A ``Transaction.Posted`` event is recorded in the same atomic write as one
    ``PostingRecorded`` event per posting (and a ``Transaction.Reversed`` event on
    the original when it is a reversal); holds likewise with their reservations and
    releases. One write of the group-commit writer holds many commands, saved
    aggregate by aggregate, so a transaction's events need not be adjacent, nor come
    after its own ``Posted``: what each transaction still owes (or has been paid
    ahead) is counted by its id, and a boundary is where every count is back to
    zero. Events the ledger does not know are whole on their own, so they never
    hold a batch back.
    """

    def __init__(self) -> None:
        self._owed: dict[UUID, int] = {}

    def after(self, event: Any) -> bool:
        if isinstance(event, Transaction.Posted):
            self._add(event.originator_id, len(event.postings))
            if event.reverses is not None:
                self._add(event.reverses, 1)  # the original's Reversed
        elif isinstance(event, Transaction.HoldPlaced):
            self._add(event.originator_id, len(event.postings))  # one HoldReserved per account
        elif isinstance(event, Transaction.HoldPosted):
            self._add(event.originator_id, len(event.released) + len(event.postings))  # HoldReleased, PostingRecorded
        elif isinstance(event, Transaction.HoldVoided | Transaction.HoldExpired):
            self._add(event.originator_id, len(event.released))
        elif isinstance(event, Account.PostingRecorded | Account.HoldReserved | Account.HoldReleased):
            self._add(event.transaction_id, -1)
        elif isinstance(event, Transaction.Reversed):
            self._add(event.originator_id, -1)
        return not self._owed

    def _add(self, transaction_id: UUID, count: int) -> None:
        owed = self._owed.get(transaction_id, 0) + count
        if owed:
            self._owed[transaction_id] = owed
        else:
            self._owed.pop(transaction_id, None)


class EveryEvent:
    """Boundaries between any two events: batches of exactly the batch size."""

    def after(self, event: Any) -> bool:  # noqa: ARG002 - every event is a boundary
        return True


class FollowerGroup:
    """Moves several projections along the log, together whenever they are level."""

    def __init__(  # noqa: PLR0913
        self,
        ledger: Ledger,
        engine: Engine,
        projections: Sequence[Projection],
        batch_size: int = 500,
        *,
        name: str | None = None,
        defer_to_rebuilds: bool = False,
        boundaries: Callable[[], TransactionBoundaries | EveryEvent] = TransactionBoundaries,
        read_ahead: bool = False,
    ) -> None:
        assert 0 < batch_size <= BATCH_SIZE_MAX
        assert projections and len({p.name for p in projections}) == len(projections)
        self.ledger = ledger
        self.engine = engine
        self.projections = {p.name: p for p in projections}
        self.batch_size = batch_size
        self.group_name = name or "+".join(sorted(self.projections))
        self.defer_to_rebuilds = defer_to_rebuilds
        self.boundaries = boundaries
        # Bulk replays read and decode the next batch while the current one is
        # written, so Python and the database work at the same time.
        self.read_ahead = read_ahead
        self._ahead: _ReadAhead | None = None

    @property
    def name(self) -> str:
        return self.group_name

    def states(self) -> dict[str, TrackingState]:
        with self.engine.connect() as connection:
            return read_tracking(connection, self.projections)

    def positions(self) -> dict[str, int]:
        return {name: state.position for name, state in self.states().items()}

    def process_batch(self) -> int:
        """Apply at most one batch per cohort; return how many events were applied (0: caught up).

        The cohort furthest behind moves first, never past the next cohort's
        position; then the leading cohort (now possibly joined by it) moves on.
        """
        applied = 0
        states = self._active_states()
        positions = sorted({state.position for state in states.values()})
        if len(positions) > 1:
            applied += self._advance(states, positions[0], stop=positions[1])
            states = self._active_states()
        if states:
            applied += self._advance(states, max(state.position for state in states.values()), stop=None)
        return applied

    def catch_up(self, batches_max: int = 1_000_000, on_batch: Callable[[int], None] | None = None) -> int:
        """Process batches until the log is exhausted (or the bound is hit)."""
        return drain(self.process_batch, batches_max, on_batch)

    def record_error(self, message: str, names: Iterable[str] | None = None, *, at_position: int | None = None) -> None:
        """Record a failure on the projections' rows; with ``at_position``, only on rows still there (a
        divergence seen across a restore, whose rows moved meanwhile, is not one of the restored log)."""
        with self.engine.begin() as connection:
            for name in sorted(names if names is not None else self.projections):
                ensure_tracking_row(connection, name)
                row = projection_tracking.c.name == name
                if at_position is not None:
                    row = row & (projection_tracking.c.position == at_position)
                connection.execute(update(projection_tracking).where(row).values(last_error=message[:2000]))

    def clear_error(self) -> None:
        """Forget a recorded failure once the follower works again (a diverged log stays reported)."""
        with self.engine.begin() as connection:
            connection.execute(
                update(projection_tracking)
                .where(projection_tracking.c.name.in_(sorted(self.projections)),
                       projection_tracking.c.last_error.is_not(None),
                       projection_tracking.c.last_error.not_like("LogDiverged%"))
                .values(last_error=None)
            )

    # --- internals --------------------------------------------------------------

    def _active_states(self) -> dict[str, TrackingState]:
        states = self.states()
        if self.defer_to_rebuilds:
            now = datetime.now(timezone.utc)
            states = {name: s for name, s in states.items() if not s.rebuilt_elsewhere(now)}
        return states

    def _advance(self, states: dict[str, TrackingState], start: int, stop: int | None) -> int:
        cohort = [states[name] for name in sorted(states) if states[name].position == start]
        ahead, self._ahead = self._ahead, None
        fetched = ahead.result() if ahead is not None and ahead.key == (start, stop) else self._fetch(start, stop)
        cohort = self._drop_diverged(cohort, start, fetched.identity_at_start)
        if not cohort:
            return 0
        batch = fetched.batch
        if not batch:
            if stop is None:
                self._finish_rebuilds(cohort)
            return 0
        reached_head = stop is None and fetched.reached_end
        if self.read_ahead and not fetched.reached_end:
            self._ahead = _ReadAhead((batch[-1].position, stop), self._fetch)
        # A worker that moves a projection takes over its abandoned rebuild; a
        # rebuild's own replay ends it when it reaches the head of the log.
        ends_rebuild = reached_head or self.defer_to_rebuilds
        try:
            with self.engine.begin() as connection:
                for state in cohort:
                    if not _advance_position(connection, state.name, start, batch[-1], ends_rebuild=ends_rebuild):
                        connection.rollback()
                        instruments().job_lock_contended.add(1, {"job": self.name})
                        return 0  # another follower applied it first
                for state in cohort:
                    self.projections[state.name].handle(connection, batch)
        except Exception as exc:
            if classify_database_error(exc) is not None:
                raise  # the database failed, not the event: nothing to pin on one event
            raise self._culprit(cohort, batch, exc) from exc
        return len(batch)

    def _culprit(self, cohort: list[TrackingState], batch: list[LoggedEvent], error: Exception) -> Exception:
        """Find the first event (and projection) of a failed batch that cannot be applied.

        Replays the batch one event at a time in a transaction that is always
        rolled back, so an operator is told which event and why instead of a bare
        driver error. If the replay does not fail, the batch's own error stands.
        """
        try:
            with self.engine.connect() as connection, connection.begin() as transaction:
                try:
                    for logged in batch:
                        for state in cohort:
                            try:
                                self.projections[state.name].handle(connection, [logged])
                            except Exception as cause:  # noqa: BLE001 - reported, with its event
                                return ProjectionFailed(state.name, logged, cause)
                finally:
                    transaction.rollback()
        except Exception:  # noqa: BLE001 - the diagnosis must never hide the original failure
            log.debug("could not replay the failed batch of %s event by event", self.name, exc_info=True)
        return error

    def _fetch(self, start: int, stop: int | None) -> _Fetched:
        """Read the log after ``start`` (up to ``stop``) and decode the next whole batch."""
        after = read_log_after(self.ledger, start, self.batch_size + SAVE_EVENTS_MAX + 1, stop)
        if start > 0 and after.identity is None:
            return _Fetched((start, stop), None, [], reached_end=False)
        batch = self._decode_whole_transactions(after.notifications, after.complete)
        return _Fetched((start, stop), after.identity, batch,
                        reached_end=after.complete and len(batch) == len(after.notifications))

    def _decode_whole_transactions(self, notifications: Sequence[Any], fetched_all: bool) -> list[LoggedEvent]:
        """At least ``batch_size`` events (when there are that many), ending between ledger transactions.

        Events are decoded one by one and only as far as needed. Up to the head
        of the log every write is whole, so everything fetched may be applied;
        before it, a batch that found no boundary at all is applied as it is.
        """
        boundaries = self.boundaries()
        events: list[LoggedEvent] = []
        whole = 0
        for notification in notifications:
            events.append(LoggedEvent(notification.id, self.ledger.mapper.to_domain_event(notification)))
            if boundaries.after(events[-1].event):
                whole = len(events)
                if whole >= self.batch_size:
                    return events
        return events if fetched_all or whole == 0 else events[:whole]

    def _drop_diverged(
        self, cohort: list[TrackingState], start: int, identity: str | None
    ) -> list[TrackingState]:
        """Members whose last applied event is no longer in the log are set aside with an error."""
        if start == 0:
            return cohort
        diverged = [s for s in cohort if identity is None or (s.event_hash is not None and s.event_hash != identity)]
        # Reported once; the follower keeps looking (a rebuild resets the position).
        newly = [s.name for s in diverged if not (s.last_error or "").startswith("LogDiverged")]
        if newly:
            reason = (
                f"the event log no longer holds the event applied at position {start}"
                if identity is None
                else f"the event at position {start} is not the one this projection applied"
            )
            message = (f"LogDiverged: {reason}: the events were restored from an older backup or rewritten; "
                       "run 'invario projections rebuild'")
            log.error("%s (%s)", message, ", ".join(newly))
            self.record_error(message, newly, at_position=start)
        return [s for s in cohort if s not in diverged]

    def _finish_rebuilds(self, cohort: list[TrackingState]) -> None:
        finished = [s.name for s in cohort if s.rebuild_started_at is not None]
        if not finished:
            return
        with self.engine.begin() as connection:
            connection.execute(
                update(projection_tracking)
                .where(projection_tracking.c.name.in_(finished))
                .values(rebuild_started_at=None)
            )


@dataclass(frozen=True)
class _Fetched:
    """One read of the log after a position: the event found at it, and the next whole batch."""

    key: tuple[int, int | None]  # (start, stop)
    identity_at_start: str | None  # None: start is 0, or the log no longer holds an event there
    batch: list[LoggedEvent]
    reached_end: bool  # the batch holds everything up to the head of the log (or ``stop``)


class _ReadAhead:
    """A ``_Fetched`` being prepared in a thread of its own."""

    def __init__(self, key: tuple[int, int | None], fetch: Callable[[int, int | None], _Fetched]) -> None:
        self.key = key
        self._fetched: _Fetched | None = None
        self._error: BaseException | None = None
        self._thread = threading.Thread(target=self._run, args=(fetch,), name="invario-read-ahead", daemon=True)
        self._thread.start()

    def _run(self, fetch: Callable[[int, int | None], _Fetched]) -> None:
        try:
            self._fetched = fetch(*self.key)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller of result()
            self._error = exc

    def result(self) -> _Fetched:
        self._thread.join()
        if self._error is not None:
            raise self._error
        assert self._fetched is not None
        return self._fetched


class Follower(FollowerGroup):
    """Moves one projection along the notification log, in batches of exactly ``batch_size`` events.

    A projection that needs whole ledger transactions (the read models) runs in
    a ``FollowerGroup`` instead.
    """

    def __init__(self, ledger: Ledger, engine: Engine, projection: Projection, batch_size: int = 500) -> None:
        super().__init__(ledger, engine, [projection], batch_size, name=projection.name, boundaries=EveryEvent)
        self.projection = projection

    def position(self) -> int:
        with self.engine.connect() as connection:
            return _read_position(connection, self.name)


def read_tracking(connection: Connection, names: Iterable[str]) -> dict[str, TrackingState]:
    """The tracking state of each named projection (position 0 when it has never run)."""
    wanted = sorted(set(names))
    rows = connection.execute(
        select(
            projection_tracking.c.name,
            projection_tracking.c.position,
            projection_tracking.c.event_hash,
            projection_tracking.c.updated_at,
            projection_tracking.c.last_error,
            projection_tracking.c.rebuild_started_at,
        ).where(projection_tracking.c.name.in_(wanted))
    ).all()
    found = {row.name: TrackingState(row.name, int(row.position), *row[2:]) for row in rows}
    return {name: found.get(name, TrackingState(name, 0)) for name in wanted}


def _aware(moment: datetime) -> datetime:
    # SQLite hands back naive datetimes; every stored moment is UTC.
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def _read_position(connection: Connection, name: str) -> int:
    row = connection.execute(
        select(projection_tracking.c.position).where(projection_tracking.c.name == name)
    ).first()
    return int(row[0]) if row else 0


def ensure_tracking_row(connection: Connection, name: str) -> None:
    values = {"name": name, "position": 0, "updated_at": datetime.now(timezone.utc)}
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(insert(projection_tracking).values(values).on_conflict_do_nothing())


def _advance_position(
    connection: Connection, name: str, expected: int, last: LoggedEvent, *, ends_rebuild: bool = False
) -> bool:
    ensure_tracking_row(connection, name)
    values: dict[str, Any] = {
        "position": last.position,
        "event_hash": event_identity(last.event),
        "updated_at": datetime.now(timezone.utc),
        "last_error": None,
    }
    if ends_rebuild:
        values["rebuild_started_at"] = None
    result = connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.name == name, projection_tracking.c.position == expected)
        .values(**values)
    )
    return result.rowcount == 1
