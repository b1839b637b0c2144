"""The ``transactions`` projection: the journal, one row per transaction.

Rows are listed in the statement order (effective date, then log position).
A reversal is a transaction of its own; the reversed one gets ``reversed_by``.
A hold's row (revision 0005) has ``status`` pending, then posted, voided or
expired; ``held_postings`` keeps what it reserved, and ``postings`` is what it
posted once captured.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, Date, DateTime, Index, String, Table, Text, bindparam, func, update

from domain.transaction import Transaction, TransactionStatus
from infrastructure.schema import metadata
from projections.read_models.encoding import canonical_json, storable_text
from projections.read_models.bulk import insert_rows
from projections.following.follower import LoggedEvent

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
    # Holds (revision 0005).
    Column("status", String(16), nullable=False, server_default="posted"),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    Column("held_postings", Text, nullable=True),
    Column("resolved_at", DateTime(timezone=True), nullable=True),
    Index("ix_read_transactions_tenant_id_effective_date_position", "tenant_id", "effective_date", "position"),
    # The expiry job's question: which holds are pending past their deadline.
    Index("ix_read_transactions_status_expires_at", "status", "expires_at"),
)

_RESOLVE_HOLD = (
    update(read_transactions)
    .where(read_transactions.c.transaction_id == bindparam("b_transaction_id"))
    .values(status=bindparam("b_status"), resolved_at=bindparam("b_resolved_at"),
            postings=bindparam("b_postings"),
            effective_date=func.coalesce(bindparam("b_effective_date", type_=Date), read_transactions.c.effective_date))
)
_HOLD_EVENTS = (Transaction.HoldPosted, Transaction.HoldVoided, Transaction.HoldExpired)
_STATUS_AFTER = {
    Transaction.HoldPosted: TransactionStatus.POSTED.value,
    Transaction.HoldVoided: TransactionStatus.VOIDED.value,
    Transaction.HoldExpired: TransactionStatus.EXPIRED.value,
}

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
        resolved_earlier: list[dict[str, Any]] = []
        for logged in batch:
            event = logged.event
            if isinstance(event, Transaction.Posted | Transaction.HoldPlaced):
                posted[str(event.originator_id)] = _posted_row(logged)
            elif isinstance(event, _HOLD_EVENTS):
                resolution = _resolution(logged)
                row = posted.get(resolution["b_transaction_id"])
                if row is None:
                    resolved_earlier.append(resolution)
                else:
                    for column, key in _RESOLUTION_COLUMNS.items():
                        if resolution[key] is not None:
                            row[column] = resolution[key]
            elif isinstance(event, Transaction.Reversed):
                original, reversal = str(event.originator_id), str(event.reversal_id)
                if original in posted:
                    posted[original][_REVERSED_BY] = reversal
                else:
                    reversed_earlier.append({"b_transaction_id": original, "b_reversed_by": reversal})
        insert_rows(connection, read_transactions, list(posted.values()))
        if reversed_earlier:
            connection.execute(_MARK_REVERSED, reversed_earlier)
        if resolved_earlier:
            connection.execute(_RESOLVE_HOLD, resolved_earlier)


_NAMES = [column.name for column in read_transactions.columns]
_REVERSED_BY = _NAMES.index("reversed_by")
_RESOLUTION_COLUMNS = {
    _NAMES.index("status"): "b_status", _NAMES.index("resolved_at"): "b_resolved_at",
    _NAMES.index("postings"): "b_postings", _NAMES.index("effective_date"): "b_effective_date",
}


def _postings_json(postings: list[dict[str, Any]]) -> str:
    return canonical_json([[p["account_id"], p["amount_minor"], p["currency"]] for p in postings])


def _resolution(logged: LoggedEvent) -> dict[str, Any]:
    """The new values of a hold's row after a resolution event (a void or expiry posts nothing)."""
    event = logged.event
    captured = isinstance(event, Transaction.HoldPosted)
    return {
        "b_transaction_id": str(event.originator_id),
        "b_status": _STATUS_AFTER[type(event)],
        "b_resolved_at": event.timestamp,
        "b_postings": _postings_json(event.postings if captured else event.released),
        "b_effective_date": event.effective_date if captured else None,
    }


def _posted_row(logged: LoggedEvent) -> list[Any]:
    """The row, in the column order of ``read_transactions``."""
    event = logged.event
    postings = [[p["account_id"], p["amount_minor"], p["currency"]] for p in event.postings]
    hold = isinstance(event, Transaction.HoldPlaced)
    return [
        str(event.originator_id),
        str(event.tenant_id),
        storable_text(event.external_id) if event.external_id is not None else None,
        event.effective_date,
        logged.position,
        event.timestamp,
        storable_text(event.description),
        canonical_json(postings),
        canonical_json(event.metadata) if event.metadata else "{}",
        str(event.reverses) if event.reverses is not None else None,
        None,
        TransactionStatus.PENDING.value if hold else TransactionStatus.POSTED.value,
        event.expires_at if hold else None,
        canonical_json(postings) if hold else None,
        None,
    ]
