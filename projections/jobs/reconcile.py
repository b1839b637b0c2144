"""Reconciliation: the read models checked against each other and the write side.

All checks read one snapshot of the database in which the four read models are
at one common position P (they move together; see ``projections.following.registry``):

- ``monthly_snapshot`` (a): each account's closing balance per month equals the
  sum of its statement entries effective up to that month's end;
- ``balance`` (b): each row of the balances read model (``accounts``) equals
  the account aggregate at the row's version, i.e. as of P;
- ``tenant_total`` (c): the balances of each tenant sum to zero per currency;
- ``pending`` (d): each account's pending balance (open holds, raw) equals the
  sum of its pending hold entries, and pending balances sum to zero per tenant
  and currency.

A divergence is the read model's value minus the value it should have. Each
one is logged as an ERROR ``snapshot_divergence`` event that names ids, check
and month but no amount, and counted on ``invario_reconciliation_divergences``.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError
from opentelemetry import metrics
from sqlalchemy import Connection, Engine, Row, exists, func, literal_column, select

from application.ledger import Ledger
from domain.account import Account
from projections.read_models.accounts import read_accounts
from projections.following.consistency import PositionsApart, snapshot
from projections.read_models.encoding import storable
from projections.following.follower import read_tracking
from projections.read_models.monthly import read_monthly_snapshots
from projections.following.registry import READ_MODELS
from projections.read_models.statements import read_hold_entries, read_statement_entries

MONTHLY_SNAPSHOT = "monthly_snapshot"
BALANCE = "balance"
TENANT_TOTAL = "tenant_total"
PENDING = "pending"

ACCOUNTS_PAGE = 200
ORPHANS_MAX = 1_000

log = logging.getLogger("invario.reconcile")
_meter = metrics.get_meter("invario")
DIVERGENCE_COUNTER = _meter.create_counter(
    "invario_reconciliation_divergences", unit="1", description="Divergences found by 'invario reconcile'"
)


@dataclass(frozen=True)
class Divergence:
    check: str
    tenant_id: UUID
    account_id: UUID | None
    account_code: str | None
    month: str | None
    currency: str
    difference_minor: int  # the read model's value minus the value it should have
    detail: str


@dataclass(frozen=True)
class Reconciliation:
    position: int
    divergences: tuple[Divergence, ...]
    accounts_checked: int
    months_checked: int


@dataclass
class _Tally:
    divergences: list[Divergence]
    accounts: int = 0
    months: int = 0


def reconcile(  # noqa: PLR0913
    ledger: Ledger,
    engine: Engine,
    *,
    tenant_id: UUID | None = None,
    month: str | None = None,
    on_progress: Callable[[int, int], None] | None = None,
    counter: Any = DIVERGENCE_COUNTER,
) -> Reconciliation:
    """Run the three checks at the read models' common position (``month`` narrows check a)."""
    with snapshot(engine) as connection:
        position = common_position(connection)
        tally = _Tally([])
        total = _count_accounts(connection, tenant_id)
        for page in _account_pages(connection, tenant_id):
            tally.divergences += _check_balances(ledger, page)
            tally.months += _check_monthly(connection, page, month, tally.divergences)
            tally.accounts += len(page)
            if on_progress is not None:
                on_progress(tally.accounts, total)
        tally.divergences += _accounts_missing(connection, tenant_id)
        tally.divergences += _check_tenant_totals(connection, tenant_id)
        tally.divergences += _check_pending(connection, tenant_id)
    for divergence in tally.divergences:
        _report(divergence, counter)
    return Reconciliation(position, tuple(tally.divergences), tally.accounts, tally.months)


def common_position(connection: Connection) -> int:
    states = read_tracking(connection, READ_MODELS)
    positions = {state.position for state in states.values()}
    if len(positions) != 1:
        detail = ", ".join(f"{name} {state.position}" for name, state in sorted(states.items()))
        raise PositionsApart(
            f"the read models are not at one position ({detail}): a rebuild is running or a projection "
            "is failing; see 'invario projections status'"
        )
    return positions.pop()


def _report(divergence: Divergence, counter: Any) -> None:
    # Amounts stay out of logs: they are customer data. The ids and the month locate the problem.
    log.error(
        "snapshot_divergence check=%s tenant_id=%s account_id=%s month=%s",
        divergence.check,
        divergence.tenant_id,
        divergence.account_id or "-",
        divergence.month or "-",
        extra={
            "event": "snapshot_divergence",
            "check": divergence.check,
            "tenant_id": str(divergence.tenant_id),
            "account_id": str(divergence.account_id) if divergence.account_id else None,
            "month": divergence.month,
        },
    )
    counter.add(1, {"check": divergence.check})


# --- pages of accounts ------------------------------------------------------------


def _count_accounts(connection: Connection, tenant_id: UUID | None) -> int:
    query = select(func.count()).select_from(read_accounts)
    if tenant_id is not None:
        query = query.where(read_accounts.c.tenant_id == str(tenant_id))
    return int(connection.execute(query).scalar_one())


def _account_pages(connection: Connection, tenant_id: UUID | None) -> Iterator[Sequence[Row[Any]]]:
    a = read_accounts.c
    after = ""
    while True:
        query = select(read_accounts).where(a.account_id > after).order_by(a.account_id).limit(ACCOUNTS_PAGE)
        if tenant_id is not None:
            query = query.where(a.tenant_id == str(tenant_id))
        page = connection.execute(query).all()
        if page:
            yield page
        if len(page) < ACCOUNTS_PAGE:
            return
        after = page[-1].account_id


# --- (b) balances against the write side -----------------------------------------------


def _check_balances(ledger: Ledger, page: Sequence[Row[Any]]) -> list[Divergence]:
    found = []
    for row in page:
        try:
            account = ledger.repository.get(UUID(row.account_id), version=row.version)
        except AggregateNotFoundError:
            account = None
        if not isinstance(account, Account) or account.version != row.version:
            found.append(_balance_divergence(row, row.balance_minor, f"the write side has no version {row.version}"))
            continue
        mismatched = [field for field, ours in _comparable(row).items() if ours != _field_of(account, field)]
        if row.balance_minor != account.balance_minor or mismatched:
            detail = "balance differs" if not mismatched else "differs in " + ", ".join(mismatched)
            found.append(_balance_divergence(row, row.balance_minor - account.balance_minor, detail))
    return found


def _comparable(row: Row[Any]) -> dict[str, Any]:
    return {
        "tenant_id": row.tenant_id, "code": row.code, "name": row.name, "currency": row.currency,
        "type": row.type, "status": row.status, "balance_floor_minor": row.balance_floor_minor,
        "metadata": json.loads(row.metadata), "posting_count": row.posting_count,
        "pending_debits_minor": row.pending_debits_minor, "pending_credits_minor": row.pending_credits_minor,
    }


def _field_of(account: Account, field: str) -> Any:
    value = getattr(account, field)
    if field == "tenant_id":
        return str(value)
    if field in ("type", "status"):
        return str(value.value if hasattr(value, "value") else value)
    return storable(value)  # the read model's copy of text an earlier version accepted (projections.read_models.encoding)


def _balance_divergence(row: Row[Any], difference: int, detail: str) -> Divergence:
    return Divergence(
        BALANCE, UUID(row.tenant_id), UUID(row.account_id), row.code, None, row.currency, difference, detail
    )


def _accounts_missing(connection: Connection, tenant_id: UUID | None) -> list[Divergence]:
    """Accounts with statement entries but no row in the balances read model."""
    e, a = read_statement_entries.c, read_accounts.c
    query = (
        select(e.account_id, e.tenant_id, e.currency, func.sum(e.amount_minor))
        .where(~exists().where(a.account_id == e.account_id))
        .group_by(e.account_id, e.tenant_id, e.currency)
        .limit(ORPHANS_MAX)
    )
    if tenant_id is not None:
        query = query.where(e.tenant_id == str(tenant_id))
    return [
        Divergence(BALANCE, UUID(t), UUID(account), None, None, currency, -int(total),
                   "missing from the balances read model")
        for account, t, currency, total in connection.execute(query)
    ]


# --- (c) tenant totals -------------------------------------------------------------------


def _check_tenant_totals(connection: Connection, tenant_id: UUID | None) -> list[Divergence]:
    a = read_accounts.c
    total = func.sum(a.balance_minor)
    query = select(a.tenant_id, a.currency, total).group_by(a.tenant_id, a.currency).having(total != 0)
    if tenant_id is not None:
        query = query.where(a.tenant_id == str(tenant_id))
    return [
        Divergence(TENANT_TOTAL, UUID(t), None, None, None, currency, int(amount),
                   "the tenant's balances do not sum to zero")
        for t, currency, amount in connection.execute(query.order_by(a.tenant_id, a.currency))
    ]


# --- (a) monthly snapshots against the statement entries --------------------------------------


def _check_monthly(
    connection: Connection, page: Sequence[Row[Any]], month: str | None, found: list[Divergence]
) -> int:
    """Append the page's monthly divergences to ``found``; return how many account-months were checked."""
    accounts = {row.account_id: row for row in page}
    movements = _entry_movements(connection, list(accounts), month)
    closings = _stored_closings(connection, list(accounts), month)
    checked = 0
    for account_id, row in accounts.items():
        for checked_month, expected, actual in _month_comparisons(
            movements.get(account_id, {}), closings.get(account_id, {}), month
        ):
            checked += 1
            if expected != actual:
                found.append(Divergence(
                    MONTHLY_SNAPSHOT, UUID(row.tenant_id), UUID(account_id), row.code, checked_month,
                    row.currency, actual - expected, "closing balance differs from the statement entries",
                ))
    return checked


def _month_comparisons(
    movements: dict[str, int], closings: dict[str, int], month: str | None
) -> Iterator[tuple[str, int, int]]:
    """(month, expected closing, stored closing) for each month that has entries or a row.

    A month without a row closes at the latest earlier row's balance, so that
    is what is compared when a month with entries has lost its row.
    """
    expected = actual = 0
    for current in sorted(movements.keys() | closings.keys()):
        expected += movements.get(current, 0)
        actual = closings.get(current, actual)
        if month is None:
            yield current, expected, actual
    if month is not None and (movements or closings):
        yield month, expected, actual


def _month_expression(connection: Connection) -> Any:
    date_column = read_statement_entries.c.effective_date
    if connection.dialect.name == "postgresql":
        return func.to_char(date_column, literal_column("'YYYY-MM'"))
    return func.substr(date_column, 1, 7)  # SQLite stores dates as 'YYYY-MM-DD'


def _entry_movements(connection: Connection, account_ids: list[str], month: str | None) -> dict[str, dict[str, int]]:
    e = read_statement_entries.c
    month_expr = _month_expression(connection).label("month")
    query = select(e.account_id, month_expr, func.sum(e.amount_minor)).where(e.account_id.in_(account_ids))
    if month is not None:
        query = query.where(month_expr <= month)
    movements: dict[str, dict[str, int]] = defaultdict(dict)
    for account_id, entry_month, total in connection.execute(query.group_by(e.account_id, month_expr)):
        movements[account_id][entry_month] = int(total)
    return movements


def _stored_closings(connection: Connection, account_ids: list[str], month: str | None) -> dict[str, dict[str, int]]:
    m = read_monthly_snapshots.c
    query = select(m.account_id, m.month, m.closing_balance_minor).where(m.account_id.in_(account_ids))
    if month is not None:
        query = query.where(m.month <= month)
    closings: dict[str, dict[str, int]] = defaultdict(dict)
    for account_id, row_month, closing in connection.execute(query):
        closings[account_id][row_month] = int(closing)
    return closings



# --- (d) pending balances against the hold entries -------------------------------------------


def _check_pending(connection: Connection, tenant_id: UUID | None) -> list[Divergence]:
    """Σ of each account's pending hold entries = its pending balance; pending sums to zero per tenant."""
    a, h = read_accounts.c, read_hold_entries.c
    held = (
        select(h.account_id, func.sum(h.amount_minor).label("held"))
        .where(h.status == "pending")
        .group_by(h.account_id)
        .subquery()
    )
    pending = a.pending_debits_minor - a.pending_credits_minor
    expected = func.coalesce(held.c.held, 0)
    query = (
        select(a.tenant_id, a.account_id, a.code, a.currency, pending.label("pending"), expected.label("expected"))
        .select_from(read_accounts.outerjoin(held, held.c.account_id == a.account_id))
        .where(pending != expected)
        .limit(ORPHANS_MAX)
    )
    totals = (
        select(a.tenant_id, a.currency, func.sum(pending))
        .group_by(a.tenant_id, a.currency)
        .having(func.sum(pending) != 0)
    )
    if tenant_id is not None:
        query = query.where(a.tenant_id == str(tenant_id))
        totals = totals.where(a.tenant_id == str(tenant_id))
    found = [
        Divergence(PENDING, UUID(row.tenant_id), UUID(row.account_id), row.code, None, row.currency,
                   int(row.pending) - int(row.expected), "pending balance differs from the open hold entries")
        for row in connection.execute(query)
    ]
    found += [
        Divergence(PENDING, UUID(t), None, None, None, currency, int(amount),
                   "the tenant's pending balances do not sum to zero")
        for t, currency, amount in connection.execute(totals.order_by(a.tenant_id, a.currency))
    ]
    return found
