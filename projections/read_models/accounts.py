"""The ``accounts`` projection: every account with its current balance.

One row per account mirrors the aggregate: its details, status, raw
(debit-positive) balance, posting count and aggregate version. It is the
*balances* read model: reconciliation compares each row with the account
aggregate at the row's version. Balances change only by ``PostingRecorded``
events, so they match the write side whatever the effective dates.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, Connection, DateTime, Integer, String, Table, Text, UniqueConstraint, bindparam, text

from domain.account import Account, AccountStatus
from infrastructure.schema import metadata
from projections.read_models.encoding import canonical_json, storable_text
from projections.read_models.bulk import execute_many, insert_rows
from projections.following.follower import LoggedEvent

read_accounts = Table(
    "read_accounts",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("code", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("type", String(16), nullable=False),
    Column("status", String(16), nullable=False),
    Column("balance_floor_minor", BigInteger, nullable=True),
    Column("metadata", Text, nullable=False),
    Column("version", Integer, nullable=False),
    Column("balance_minor", BigInteger, nullable=False),
    Column("posting_count", BigInteger, nullable=False),
    # Open holds (revision 0005): non-negative sums of the reserved debits and credits.
    Column("pending_debits_minor", BigInteger, nullable=False, server_default="0"),
    Column("pending_credits_minor", BigInteger, nullable=False, server_default="0"),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("position", BigInteger, nullable=False),
    UniqueConstraint("tenant_id", "code"),
)

_CHANGES = (Account.PostingRecorded, Account.Frozen, Account.Unfrozen, Account.Closed,
            Account.HoldReserved, Account.HoldReleased)
_STATUS_AFTER = {
    Account.Frozen: AccountStatus.FROZEN.value,
    Account.Unfrozen: AccountStatus.OPEN.value,
    Account.Closed: AccountStatus.CLOSED.value,
}

_UPDATE_CHANGED = text(
    "UPDATE read_accounts SET"
    " balance_minor = balance_minor + :balance_delta,"
    " posting_count = posting_count + :count_delta,"
    " pending_debits_minor = pending_debits_minor + :debits_delta,"
    " pending_credits_minor = pending_credits_minor + :credits_delta,"
    " status = COALESCE(:status, status),"
    " version = :version, updated_at = :updated_at, position = :position"
    " WHERE account_id = :account_id"
).bindparams(bindparam("updated_at", type_=DateTime(timezone=True)))  # stored like inserted moments
_UPDATE_CHANGED_PG = (
    "UPDATE read_accounts a SET"
    " balance_minor = a.balance_minor + d.balance_delta,"
    " posting_count = a.posting_count + d.count_delta,"
    " pending_debits_minor = a.pending_debits_minor + d.debits_delta,"
    " pending_credits_minor = a.pending_credits_minor + d.credits_delta,"
    " status = COALESCE(d.status, a.status),"
    " version = d.version, updated_at = d.updated_at, position = d.position"
    " FROM unnest(%(account_id)s::varchar[], %(balance_delta)s::bigint[], %(count_delta)s::bigint[],"
    "  %(debits_delta)s::bigint[], %(credits_delta)s::bigint[],"
    "  %(status)s::varchar[], %(version)s::integer[], %(updated_at)s::timestamptz[], %(position)s::bigint[])"
    "  AS d(account_id, balance_delta, count_delta, debits_delta, credits_delta, status, version, updated_at,"
    "  position)"
    " WHERE a.account_id = d.account_id"
)
_COLUMNS = tuple(column.name for column in read_accounts.columns)


class AccountsProjection:
    name = "accounts"
    tables = (read_accounts,)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        # Keyed by the aggregate's UUID: formatting ids as text once per account,
        # not once per event, matters on a replay of millions of events.
        opened: dict[UUID, dict[str, Any]] = {}
        changed: dict[UUID, dict[str, Any]] = {}
        for logged in batch:
            event = logged.event
            if isinstance(event, _CHANGES):
                account_id = event.originator_id
                change = changed.get(account_id)
                if change is None:
                    change = changed[account_id] = _no_change(str(account_id))
                _apply_to_change(change, logged)
            elif isinstance(event, Account.Opened):
                opened[event.originator_id] = _opened_row(logged)
        # An account opened in this batch is inserted with its changes folded in, not updated after.
        rows = [_with_change(row, changed.pop(account_id, None)) for account_id, row in opened.items()]
        insert_rows(connection, read_accounts, [tuple(row[name] for name in _COLUMNS) for row in rows])
        execute_many(connection, _UPDATE_CHANGED, _UPDATE_CHANGED_PG, list(changed.values()))


def _opened_row(logged: LoggedEvent) -> dict[str, Any]:
    event = logged.event
    return {
        "account_id": str(event.originator_id),
        "tenant_id": str(event.tenant_id),
        "code": storable_text(event.code),
        "name": storable_text(event.name),
        "currency": event.currency,
        "type": str(event.type),
        "status": AccountStatus.OPEN.value,
        "balance_floor_minor": event.balance_floor_minor,
        "metadata": canonical_json(event.metadata),
        "version": event.originator_version,
        "balance_minor": 0,
        "posting_count": 0,
        "pending_debits_minor": 0,
        "pending_credits_minor": 0,
        "created_at": event.timestamp,
        "updated_at": event.timestamp,
        "position": logged.position,
    }


def _with_change(row: dict[str, Any], change: dict[str, Any] | None) -> dict[str, Any]:
    if change is None:
        return row
    row["balance_minor"] += change["balance_delta"]
    row["posting_count"] += change["count_delta"]
    row["pending_debits_minor"] += change["debits_delta"]
    row["pending_credits_minor"] += change["credits_delta"]
    row["status"] = change["status"] or row["status"]
    row.update(version=change["version"], updated_at=change["updated_at"], position=change["position"])
    return row


def _no_change(account_id: str) -> dict[str, Any]:
    return {"account_id": account_id, "balance_delta": 0, "count_delta": 0, "debits_delta": 0, "credits_delta": 0,
            "status": None,
            "version": 0, "updated_at": None, "position": 0}


def _apply_to_change(change: dict[str, Any], logged: LoggedEvent) -> None:
    event = logged.event
    if isinstance(event, Account.PostingRecorded):
        change["balance_delta"] += event.amount_minor
        change["count_delta"] += 1
    elif isinstance(event, Account.HoldReserved | Account.HoldReleased):
        debits, credits = _pending_deltas(event)
        change["debits_delta"] += debits
        change["credits_delta"] += credits
    else:
        change["status"] = _STATUS_AFTER[type(event)]
    change["version"] = event.originator_version
    change["updated_at"] = event.timestamp
    change["position"] = logged.position


def _pending_deltas(event: Any) -> tuple[int, int]:
    """(pending debits delta, pending credits delta) of a HoldReserved or HoldReleased event."""
    amount = event.amount_minor
    sign = 1 if isinstance(event, Account.HoldReserved) else -1
    return (sign * amount, 0) if amount > 0 else (0, -sign * amount)
