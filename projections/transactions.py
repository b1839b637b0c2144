"""The ``transactions`` projection: the journal, one row per transaction.

Rows are listed in the statement order (effective date, then log position).
A reversal is a transaction of its own; the reversed one gets ``reversed_by``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Date, DateTime, Index, String, Table, Text, bindparam, update

from domain.transaction import Transaction
from infrastructure.schema import metadata
from projections.encoding import canonical_json
from projections.bulk import insert_rows
from projections.follower import LoggedEvent

read_transactions = Table(
    "read_transactions",
    metadata,
    Column("transaction_id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("external_id", String(128), nullable=True),
    Column("effective_date", Date, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("description", Text, nullable=False),
    # [[account_id, amount_minor, currency], ...] in the order they were posted.
    Column("postings", Text, nullable=False),
    Column("metadata", Text, nullable=False),
    Column("reverses", String(36), nullable=True),
    Column("reversed_by", String(36), nullable=True),
    Index("ix_read_transactions_tenant_id_effective_date_position", "tenant_id", "effective_date", "position"),
)

_MARK_REVERSED = (
    update(read_transactions)
    .where(read_transactions.c.transaction_id == bindparam("b_transaction_id"))
    .values(reversed_by=bindparam("b_reversed_by"))
)


class TransactionsProjection:
    name = "transactions"
    tables = (read_transactions,)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        posted: dict[str, list[Any]] = {}
        reversed_earlier: list[dict[str, str]] = []
        for logged in batch:
            event = logged.event
            if isinstance(event, Transaction.Posted):
                posted[str(event.originator_id)] = _posted_row(logged)
            elif isinstance(event, Transaction.Reversed):
                original, reversal = str(event.originator_id), str(event.reversal_id)
                if original in posted:
                    posted[original][_REVERSED_BY] = reversal
                else:
                    reversed_earlier.append({"b_transaction_id": original, "b_reversed_by": reversal})
        insert_rows(connection, read_transactions, list(posted.values()))
        if reversed_earlier:
            connection.execute(_MARK_REVERSED, reversed_earlier)


_REVERSED_BY = [column.name for column in read_transactions.columns].index("reversed_by")


def _posted_row(logged: LoggedEvent) -> list[Any]:
    """The row, in the column order of ``read_transactions``."""
    event = logged.event
    postings = [[p["account_id"], p["amount_minor"], p["currency"]] for p in event.postings]
    return [
        str(event.originator_id),
        str(event.tenant_id),
        event.external_id,
        event.effective_date,
        logged.position,
        event.timestamp,
        event.description,
        canonical_json(postings),
        canonical_json(event.metadata) if event.metadata else "{}",
        str(event.reverses) if event.reverses is not None else None,
        None,
    ]
