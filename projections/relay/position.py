"""Where each sink's relay stands in the log: one row per sink, in the store's own database.

The row keeps the position of the last event the sink acknowledged and that
event's hash, so a log restored from an older backup or rewritten is noticed
(``LogDiverged``) instead of being skipped, as the followers' tracking rows do.
The position moves by compare-and-set, so of two relays of one sink only one
advances it (both may publish: the message id de-duplicates).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from sqlalchemy import BigInteger, Column, Connection, DateTime, Engine, String, Table, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from infrastructure.schema import metadata

relay_positions = Table(
    "invario_relay_positions",
    metadata,
    Column("sink", String(128), primary_key=True),
    Column("position", BigInteger, nullable=False),
    Column("event_hash", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("last_error", Text, nullable=True),
)


@dataclass(frozen=True)
class RelayPosition:
    """A sink's row (a missing row reads as position 0: nothing relayed yet)."""

    sink: str
    position: int
    event_hash: str | None = None
    last_error: str | None = None


def read_position(engine: Engine, sink: str) -> RelayPosition:
    with engine.connect() as connection:
        row = connection.execute(
            select(relay_positions.c.position, relay_positions.c.event_hash, relay_positions.c.last_error)
            .where(relay_positions.c.sink == sink)
        ).first()
    return RelayPosition(sink, int(row.position), row.event_hash, row.last_error) if row else RelayPosition(sink, 0)


def advance_position(engine: Engine, sink: str, expected: int, position: int, event_hash: str) -> bool:
    """Move the sink's row from ``expected`` to ``position``; False if another relay moved it first."""
    with engine.begin() as connection:
        _ensure_row(connection, sink)
        result = connection.execute(
            update(relay_positions)
            .where(relay_positions.c.sink == sink, relay_positions.c.position == expected)
            .values(position=position, event_hash=event_hash, updated_at=datetime.now(timezone.utc), last_error=None)
        )
        return result.rowcount == 1


def record_error(engine: Engine, sink: str, message: str | None) -> None:
    """Keep (or, with ``None``, clear) the sink's last failure for operators."""
    with engine.begin() as connection:
        _ensure_row(connection, sink)
        connection.execute(
            update(relay_positions).where(relay_positions.c.sink == sink)
            .values(last_error=None if message is None else message[:2000])
        )


def _ensure_row(connection: Connection, sink: str) -> None:
    insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
    values = {"sink": sink, "position": 0, "updated_at": datetime.now(timezone.utc)}
    connection.execute(insert(relay_positions).values(values).on_conflict_do_nothing())
