"""The ``statements`` projection: one statement entry per posting.

Statement order is **effective date, then log position**: the order in which
an accountant reads a statement, stable under back-dating (a back-dated entry
takes its place among the entries of its date; entries of one date stay in the
order they were recorded). Running balances are not stored: a back-dated
entry would change every later one. They are computed when read, from the sum
of the entries before a page (see ``projections.queries``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Date, DateTime, String, Table, Text

from domain.transaction import Transaction
from infrastructure.schema import metadata
from projections.bulk import insert_rows
from projections.follower import LoggedEvent

read_statement_entries = Table(
    "read_statement_entries",
    metadata,
    # The key is the statement order of one account: effective date, then position.
    Column("account_id", String(36), primary_key=True),
    Column("effective_date", Date, primary_key=True),
    Column("position", BigInteger, primary_key=True, autoincrement=False),
    Column("tenant_id", String(36), nullable=False),
    Column("transaction_id", String(36), nullable=False),
    Column("recorded_at", DateTime(timezone=True), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),
    Column("currency", String(3), nullable=False),
    Column("description", Text, nullable=False),
)


class StatementsProjection:
    name = "statements"
    tables = (read_statement_entries,)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        rows: list[tuple[Any, ...]] = []
        for logged in batch:
            event = logged.event
            if not isinstance(event, Transaction.Posted):
                continue
            tenant_id, transaction_id = str(event.tenant_id), str(event.originator_id)
            # In the column order of ``read_statement_entries``.
            rows.extend(
                (p["account_id"], event.effective_date, logged.position, tenant_id, transaction_id,
                 event.timestamp, p["amount_minor"], p["currency"], event.description)
                for p in event.postings
            )
        insert_rows(connection, read_statement_entries, rows)
