"""The ``statements`` projection: one statement entry per posting.

Statement order is **effective date, then log position**: the order in which
an accountant reads a statement, stable under back-dating (a back-dated entry
takes its place among the entries of its date; entries of one date stay in the
order they were recorded). Running balances are not stored: a back-dated
entry would change every later one. They are computed when read, from the sum
of the entries before a page (see ``projections.read_models.queries``).

A captured hold's posted amounts are entries like any other, at the position of
its ``HoldPosted`` event. The holds themselves, reserved and then resolved, are
rows of ``read_hold_entries`` (revision 0005): one per account of each hold,
with its status (pending, posted, voided, expired), the captured amount and
when it was resolved.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Date, DateTime, Index, String, Table, Text, bindparam, update

from domain.transaction import Transaction, TransactionStatus
from infrastructure.schema import metadata
from projections.read_models.bulk import insert_rows
from projections.read_models.encoding import storable_text
from projections.following.follower import LoggedEvent

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

read_hold_entries = Table(
    "read_hold_entries",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("transaction_id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("effective_date", Date, nullable=False),
    Column("placed_position", BigInteger, nullable=False),
    Column("placed_at", DateTime(timezone=True), nullable=False),
    Column("amount_minor", BigInteger, nullable=False),  # held, raw (debit-positive)
    Column("currency", String(3), nullable=False),
    Column("description", Text, nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("status", String(16), nullable=False),
    Column("captured_minor", BigInteger, nullable=True),  # posted by the capture (0: released)
    Column("resolved_position", BigInteger, nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Index("ix_read_hold_entries_account_id_placed_position", "account_id", "placed_position"),
)
_HOLD_NAMES = [column.name for column in read_hold_entries.columns]
_RESOLVE = (
    update(read_hold_entries)
    .where(read_hold_entries.c.transaction_id == bindparam("b_transaction_id"),
           read_hold_entries.c.account_id == bindparam("b_account_id"))
    .values(status=bindparam("b_status"), captured_minor=bindparam("b_captured_minor"),
            resolved_position=bindparam("b_resolved_position"), resolved_at=bindparam("b_resolved_at"))
)
_RESOLVED_STATUS = {
    Transaction.HoldPosted: TransactionStatus.POSTED.value,
    Transaction.HoldVoided: TransactionStatus.VOIDED.value,
    Transaction.HoldExpired: TransactionStatus.EXPIRED.value,
}


class StatementsProjection:
    name = "statements"
    tables = (read_statement_entries, read_hold_entries)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        rows: list[tuple[Any, ...]] = []
        holds: dict[tuple[str, str], dict[str, Any]] = {}
        resolved_earlier: list[dict[str, Any]] = []
        for logged in batch:
            event = logged.event
            if isinstance(event, Transaction.HoldPlaced):
                holds.update(_hold_rows(logged))
                continue
            if type(event) in _RESOLVED_STATUS:
                for change in _resolutions(logged):
                    row = holds.get((change["b_account_id"], change["b_transaction_id"]))
                    if row is None:
                        resolved_earlier.append(change)
                    else:
                        row.update({key[2:]: value for key, value in change.items()
                                    if key not in ("b_account_id", "b_transaction_id")})
            if not isinstance(event, Transaction.Posted | Transaction.HoldPosted):
                continue
            tenant_id, transaction_id = str(event.tenant_id), str(event.originator_id)
            description = storable_text(event.description)
            # In the column order of ``read_statement_entries``.
            rows.extend(
                (p["account_id"], event.effective_date, logged.position, tenant_id, transaction_id,
                 event.timestamp, p["amount_minor"], p["currency"], description)
                for p in event.postings
            )
        insert_rows(connection, read_statement_entries, rows)
        insert_rows(connection, read_hold_entries, [[row[name] for name in _HOLD_NAMES] for row in holds.values()])
        if resolved_earlier:
            connection.execute(_RESOLVE, resolved_earlier)


def _hold_rows(logged: LoggedEvent) -> dict[tuple[str, str], dict[str, Any]]:
    event = logged.event
    transaction_id = str(event.originator_id)
    description = storable_text(event.description)
    return {
        (p["account_id"], transaction_id): {
            "account_id": p["account_id"], "transaction_id": transaction_id, "tenant_id": str(event.tenant_id),
            "effective_date": event.effective_date, "placed_position": logged.position, "placed_at": event.timestamp,
            "amount_minor": p["amount_minor"], "currency": p["currency"], "description": description,
            "expires_at": event.expires_at, "status": TransactionStatus.PENDING.value, "captured_minor": None,
            "resolved_position": None, "resolved_at": None,
        }
        for p in event.postings
    }


def _resolutions(logged: LoggedEvent) -> list[dict[str, Any]]:
    event = logged.event
    captured = {p["account_id"]: p["amount_minor"] for p in getattr(event, "postings", ())}
    status = _RESOLVED_STATUS[type(event)]
    return [
        {"b_account_id": p["account_id"], "b_transaction_id": str(event.originator_id), "b_status": status,
         "b_captured_minor": captured.get(p["account_id"], 0) if status == TransactionStatus.POSTED.value else None,
         "b_resolved_position": logged.position, "b_resolved_at": event.timestamp}
        for p in event.released
    ]
