"""The ``recurring_transactions`` read model: one row per standing order.

``GET /v1/recurring-transactions`` and the recurring job read it, never the
aggregates. It moves with the other read models (``projections.following.registry``), so a
client can read its own writes with ``?min_position=``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

from sqlalchemy import BigInteger, Column, Connection, Date, DateTime, Index, Integer, String, Table, Text, insert, update

from domain.recurring import ACTIVE, CANCELLED, RecurringTransaction
from infrastructure.schema import metadata
from projections.read_models.encoding import storable, storable_text
from projections.following.follower import LoggedEvent

NAME = "recurring_transactions"

read_recurring_transactions = Table(
    "read_recurring_transactions",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("frequency", String(16), nullable=False),
    Column("weekday", String(16), nullable=True),
    Column("day_of_month", Integer, nullable=True),
    Column("start_date", Date, nullable=False),
    Column("end_date", Date, nullable=True),
    Column("postings", Text, nullable=False),  # JSON: [{account_id, amount_minor, currency}]
    Column("description", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("created_position", BigInteger, nullable=False),
    Index("ix_read_recurring_transactions_tenant_id_created_position", "tenant_id", "created_position"),
)


# Not a read model: the recurring job's own state (each schedule's next run date), so a
# rebuild of the read model never makes it forget what it posted (docs/jobs.md).
recurring_progress = Table(
    "invario_recurring_progress",
    metadata,
    Column("recurring_id", String(36), primary_key=True),
    Column("next_run_date", Date, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)


class RecurringTransactionsProjection:
    name = NAME
    tables = (read_recurring_transactions,)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        for logged in batch:
            event = logged.event
            if isinstance(event, RecurringTransaction.Created):
                connection.execute(insert(read_recurring_transactions).values(
                    id=str(event.originator_id), tenant_id=str(event.tenant_id), frequency=event.frequency,
                    weekday=event.weekday, day_of_month=event.day_of_month, start_date=event.start_date,
                    end_date=event.end_date, postings=json.dumps(event.postings),
                    description=storable_text(event.description),
                    metadata=json.dumps(storable(event.metadata), sort_keys=True), status=ACTIVE,
                    version=event.originator_version, created_at=event.timestamp, updated_at=event.timestamp,
                    created_position=logged.position,
                ))
            elif isinstance(event, RecurringTransaction.Cancelled):
                connection.execute(
                    update(read_recurring_transactions)
                    .where(read_recurring_transactions.c.id == str(event.originator_id))
                    .values(status=CANCELLED, version=event.originator_version, updated_at=event.timestamp)
                )
