"""Followers of the notification log that keep SQLAlchemy tables.

A follower reads the log in bounded batches after its tracking position, lets
its projection write rows, and moves the position forward in the same database
transaction. The position moves by compare-and-set, taken first in the
transaction, so two followers of one projection can never both apply a batch:
the loser rolls back and writes nothing. Processing is therefore exactly-once
and safe to restart at any moment.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Protocol

from sqlalchemy import BigInteger, Column, Connection, DateTime, Engine, String, Table, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from application.ledger import Ledger
from infrastructure.schema import metadata

projection_tracking = Table(
    "projection_tracking",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
)


@dataclass(frozen=True)
class LoggedEvent:
    """A decoded domain event and its position in the notification log."""

    position: int
    event: Any


class Projection(Protocol):
    name: str

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        """Write this batch's rows; called inside the follower's transaction."""


class Follower:
    """Moves one projection along the notification log."""

    def __init__(self, ledger: Ledger, engine: Engine, projection: Projection, batch_size: int = 500) -> None:
        assert 0 < batch_size <= 10_000
        self.ledger = ledger
        self.engine = engine
        self.projection = projection
        self.batch_size = batch_size

    @property
    def name(self) -> str:
        return self.projection.name

    def position(self) -> int:
        with self.engine.connect() as connection:
            return _read_position(connection, self.name)

    def process_batch(self) -> int:
        """Apply at most one batch; return how many events it covered (0: caught up)."""
        start = self.position()
        notifications = self.ledger.recorder.select_notifications(start=start + 1, limit=self.batch_size)
        if not notifications:
            return 0
        batch = [LoggedEvent(n.id, self.ledger.mapper.to_domain_event(n)) for n in notifications]
        with self.engine.begin() as connection:
            if not _advance_position(connection, self.name, start, batch[-1].position):
                connection.rollback()
                return 0  # another follower applied it first
            self.projection.handle(connection, batch)
        return len(batch)

    def catch_up(self, batches_max: int = 1_000_000) -> int:
        """Process batches until the log is exhausted (or the bound is hit)."""
        total = 0
        for _ in range(batches_max):
            count = self.process_batch()
            if count == 0:
                break
            total += count
        return total

    def record_error(self, message: str) -> None:
        with self.engine.begin() as connection:
            _ensure_tracking_row(connection, self.name)
            connection.execute(
                update(projection_tracking)
                .where(projection_tracking.c.name == self.name)
                .values(last_error=message[:2000])
            )


def _read_position(connection: Connection, name: str) -> int:
    row = connection.execute(
        select(projection_tracking.c.position).where(projection_tracking.c.name == name)
    ).first()
    return int(row[0]) if row else 0


def _ensure_tracking_row(connection: Connection, name: str) -> None:
    values = {"name": name, "position": 0, "updated_at": datetime.now(timezone.utc)}
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    connection.execute(insert(projection_tracking).values(values).on_conflict_do_nothing())


def _advance_position(connection: Connection, name: str, expected: int, new: int) -> bool:
    _ensure_tracking_row(connection, name)
    result = connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.name == name, projection_tracking.c.position == expected)
        .values(position=new, updated_at=datetime.now(timezone.utc), last_error=None)
    )
    return result.rowcount == 1
