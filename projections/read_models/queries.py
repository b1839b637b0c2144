"""The read side's query API: what the HTTP layer (and operators) read.

Every answer comes from the read models, never from aggregates, and says which
log position it reflects. Each call reads one consistent snapshot of the
database, so a view is exactly the read models as of their tracking positions.

Conventions:

- Amounts are integer minor units plus a currency. ``balance_minor`` is raw
  (debit-positive); ``balance_normal_minor`` is seen from the account type's
  normal side.
- ``position`` on ``AccountView``, ``BalanceView``, ``TransactionView`` and
  ``Page`` is the log position the answer reflects (the minimum over the read
  models it read). ``EntryView.position`` is the log position of the
  transaction that made the entry: the tie-breaker of the statement order.
- **Statement order** is effective date, then log position. Running balances
  (raw sign) follow that order and include every entry before the page, also
  ones before ``date_from``, so a back-dated entry shifts every later running
  balance. They are computed when read: the closing balance of the previous
  month (``monthly_snapshots``) plus the entries of the current month before
  the page.
- Lists are keyset-paginated; cursors are opaque. A malformed cursor raises
  ``InvalidCursor``. Another tenant's ids read as not found / empty.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Generic, TypeVar
from uuid import UUID

from sqlalchemy import Connection, Engine, Row, func, select, tuple_

from domain.account import AccountType
from infrastructure.schema import stored_utc
from projections.read_models.accounts import read_accounts
from projections.following.consistency import snapshot
from projections.read_models.encoding import canonical_json, is_storable, month_of, month_start
from projections.following.follower import read_tracking
from projections.read_models.monthly import read_monthly_snapshots
from projections.following.registry import ACCOUNTS, MONTHLY_SNAPSHOTS, READ_MODELS, STATEMENTS, TRANSACTIONS
from projections.read_models.statements import read_hold_entries, read_statement_entries
from projections.read_models.transactions import read_transactions

T = TypeVar("T")

PAGE_SIZE_MAX = 200
CURSOR_LENGTH_MAX = 512
WAIT_PAUSE_FIRST_SECONDS = 0.005
WAIT_PAUSE_MAX_SECONDS = 0.05


class InvalidCursor(ValueError):
    """The cursor was not produced by this list (or was altered)."""


@dataclass(frozen=True)
class Page(Generic[T]):
    items: tuple[T, ...]
    next_cursor: str | None
    position: int


@dataclass(frozen=True)
class AccountView:
    id: UUID
    tenant_id: UUID
    code: str
    name: str
    currency: str
    type: str
    status: str
    balance_floor_minor: int | None
    metadata: dict[str, str]
    version: int
    balance_minor: int
    balance_normal_minor: int
    created_at: datetime
    updated_at: datetime
    position: int


@dataclass(frozen=True)
class BalanceView:
    """``balance_minor`` is the posted balance (raw). Holds: ``pending_minor`` is the
    raw sum of open holds; ``available_normal_minor`` is the posted normal balance
    minus the pending amounts that would reduce it (see docs/holds.md). With
    ``as_of`` only posted amounts count (pending 0, available = posted)."""

    account_id: UUID
    currency: str
    balance_minor: int
    balance_normal_minor: int
    as_of: date | None
    position: int
    pending_minor: int = 0
    pending_debits_minor: int = 0
    pending_credits_minor: int = 0
    pending_normal_minor: int = 0
    available_normal_minor: int | None = None

    def __post_init__(self) -> None:
        if self.available_normal_minor is None:
            object.__setattr__(self, "available_normal_minor", self.balance_normal_minor)

    @property
    def posted_minor(self) -> int:
        return self.balance_minor


@dataclass(frozen=True)
class HoldView:
    """One account's part of a hold, with its resolution."""

    transaction_id: UUID
    account_id: UUID
    effective_date: date
    placed_at: datetime
    amount_minor: int  # held, raw
    currency: str
    description: str
    expires_at: datetime | None
    status: str  # pending | posted | voided | expired
    captured_minor: int | None
    resolved_at: datetime | None
    position: int  # of the hold's placement


@dataclass(frozen=True)
class EntryView:
    transaction_id: UUID
    account_id: UUID
    effective_date: date
    recorded_at: datetime
    amount_minor: int
    currency: str
    running_balance_minor: int
    description: str
    position: int


@dataclass(frozen=True)
class TransactionView:
    id: UUID
    tenant_id: UUID
    external_id: str | None
    effective_date: date
    recorded_at: datetime
    description: str
    postings: tuple[tuple[UUID, int, str], ...]
    metadata: dict[str, str]
    reverses: UUID | None
    reversed_by: UUID | None
    position: int
    status: str = "posted"
    expires_at: datetime | None = None
    held_postings: tuple[tuple[UUID, int, str], ...] | None = None
    resolved_at: datetime | None = None


class ReadModels:
    """Queries over the read models of one database."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    # --- positions --------------------------------------------------------------

    def position(self) -> int:
        """The log position every read model has reached."""
        with self.engine.connect() as connection:
            return _reached(connection, READ_MODELS)

    def wait_for(self, position: int, timeout_seconds: float) -> bool:
        """Wait, at most ``timeout_seconds``, until every read model has reached ``position``."""
        assert math.isfinite(timeout_seconds) and timeout_seconds >= 0
        deadline = time.monotonic() + timeout_seconds
        pause = WAIT_PAUSE_FIRST_SECONDS
        while self.position() < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return False
            time.sleep(min(pause, remaining))
            pause = min(pause * 2, WAIT_PAUSE_MAX_SECONDS)
        return True

    # --- accounts and balances ----------------------------------------------------

    def get_account(self, tenant_id: UUID, account_id: UUID) -> AccountView | None:
        with snapshot(self.engine) as connection:
            position = _reached(connection, (ACCOUNTS,))
            row = _account_row(connection, tenant_id, account_id)
            return _account_view(row, position) if row is not None else None

    def list_accounts(self, tenant_id: UUID, *, cursor: str | None, page_size: int) -> Page[AccountView]:
        _check_page_size(page_size)
        after = _decode_cursor(cursor, "a", (str,)) if cursor else None
        a = read_accounts.c
        query = select(read_accounts).where(a.tenant_id == str(tenant_id))
        if after is not None:
            query = query.where(a.code > after[0])
        with snapshot(self.engine) as connection:
            position = _reached(connection, (ACCOUNTS,))
            rows = connection.execute(query.order_by(a.code).limit(page_size + 1)).all()
        items = tuple(_account_view(row, position) for row in rows[:page_size])
        more = len(rows) > page_size
        return Page(items, _encode_cursor("a", items[-1].code) if more else None, position)

    def get_balance(self, tenant_id: UUID, account_id: UUID, *, as_of: date | None = None) -> BalanceView | None:
        """The current balance, or with ``as_of`` the balance of entries effective on or before that date."""
        with snapshot(self.engine) as connection:
            states = read_tracking(connection, (ACCOUNTS, STATEMENTS, MONTHLY_SNAPSHOTS))
            row = _account_row(connection, tenant_id, account_id)
            if row is None:
                return None
            if as_of is None:
                balance, position = row.balance_minor, states[ACCOUNTS].position
            else:
                use_snapshots = states[MONTHLY_SNAPSHOTS].position == states[STATEMENTS].position
                balance = _balance_before(connection, str(account_id), as_of, None, use_snapshots=use_snapshots)
                position = min(states[ACCOUNTS].position, states[STATEMENTS].position)
        normal = _normal(row.type, balance)
        if as_of is not None:
            return BalanceView(account_id, row.currency, balance, normal, as_of, position)
        debits, credits = row.pending_debits_minor, row.pending_credits_minor
        reducing = credits if AccountType(row.type).is_debit_normal else debits
        return BalanceView(account_id, row.currency, balance, normal, as_of, position,
                           pending_minor=debits - credits, pending_debits_minor=debits, pending_credits_minor=credits,
                           pending_normal_minor=_normal(row.type, debits - credits),
                           available_normal_minor=normal - reducing)

    # --- holds ------------------------------------------------------------------

    def list_holds(  # noqa: PLR0913
        self, tenant_id: UUID, account_id: UUID, *, cursor: str | None, page_size: int, status: str | None = None,
    ) -> Page[HoldView]:
        """The account's holds, oldest first, with their resolution."""
        _check_page_size(page_size)
        after = _decode_cursor(cursor, "h", (int,)) if cursor else None
        h = read_hold_entries.c
        query = select(read_hold_entries).where(h.account_id == str(account_id), h.tenant_id == str(tenant_id))
        if status is not None:
            query = query.where(h.status == status)
        if after is not None:
            query = query.where(h.placed_position > after[0])
        with snapshot(self.engine) as connection:
            position = _reached(connection, (STATEMENTS,))
            rows = connection.execute(query.order_by(h.placed_position).limit(page_size + 1)).all()
        items = tuple(_hold_view(row) for row in rows[:page_size])
        more = len(rows) > page_size
        return Page(items, _encode_cursor("h", items[-1].position) if more else None, position)

    def holds_due(self, now: datetime, limit: int = 100) -> list[tuple[UUID, UUID]]:
        """(tenant id, transaction id) of pending holds whose deadline is at or before ``now``."""
        t = read_transactions.c
        query = (
            select(t.tenant_id, t.transaction_id)
            .where(t.status == "pending", t.expires_at.is_not(None), t.expires_at <= now)
            .order_by(t.expires_at, t.transaction_id)
            .limit(limit)
        )
        with self.engine.connect() as connection:
            return [(UUID(tenant), UUID(tx)) for tenant, tx in connection.execute(query)]

    # --- statements -------------------------------------------------------------

    def list_entries(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        account_id: UUID,
        *,
        cursor: str | None,
        page_size: int,
        date_from: date | None = None,
        date_to: date | None = None,
    ) -> Page[EntryView]:
        """One page of the account's statement, in statement order, with running balances."""
        _check_page_size(page_size)
        after = _decode_date_position_cursor(cursor, "e")
        e = read_statement_entries.c
        query = select(read_statement_entries).where(e.account_id == str(account_id), e.tenant_id == str(tenant_id))
        query = _date_window(query, e.effective_date, date_from, date_to)
        if after is not None:
            query = query.where(tuple_(e.effective_date, e.position) > tuple_(*after))
        with snapshot(self.engine) as connection:
            states = read_tracking(connection, (STATEMENTS, MONTHLY_SNAPSHOTS))
            rows = connection.execute(query.order_by(e.effective_date, e.position).limit(page_size + 1)).all()
            opening = 0
            if rows:
                use_snapshots = states[MONTHLY_SNAPSHOTS].position == states[STATEMENTS].position
                opening = _balance_before(
                    connection, str(account_id), rows[0].effective_date, rows[0].position, use_snapshots=use_snapshots
                )
        items = _entry_views(rows[:page_size], opening)
        more = len(rows) > page_size
        next_cursor = _encode_cursor("e", items[-1].effective_date.isoformat(), items[-1].position) if more else None
        return Page(items, next_cursor, states[STATEMENTS].position)

    # --- transactions -----------------------------------------------------------

    def get_transaction(self, tenant_id: UUID, transaction_id: UUID) -> TransactionView | None:
        t = read_transactions.c
        query = select(read_transactions).where(t.transaction_id == str(transaction_id), t.tenant_id == str(tenant_id))
        with snapshot(self.engine) as connection:
            position = _reached(connection, (TRANSACTIONS,))
            row = connection.execute(query).first()
        return _transaction_view(row, position) if row is not None else None

    def list_transactions(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        *,
        account_id: UUID | None = None,
        date_from: date | None = None,
        date_to: date | None = None,
        cursor: str | None,
        page_size: int,
    ) -> Page[TransactionView]:
        """Transactions in statement order; with ``account_id``, those that post to that account."""
        _check_page_size(page_size)
        after = _decode_date_position_cursor(cursor, "t")
        t, e = read_transactions.c, read_statement_entries.c
        if account_id is None:
            key, read = (t.effective_date, t.position), (TRANSACTIONS,)
            query = select(read_transactions).where(t.tenant_id == str(tenant_id))
        else:
            key, read = (e.effective_date, e.position), (TRANSACTIONS, STATEMENTS)
            query = (
                select(read_transactions)
                .join_from(read_statement_entries, read_transactions, t.transaction_id == e.transaction_id)
                .where(e.account_id == str(account_id), e.tenant_id == str(tenant_id))
            )
        query = _date_window(query, key[0], date_from, date_to)
        if after is not None:
            query = query.where(tuple_(*key) > tuple_(*after))
        with snapshot(self.engine) as connection:
            position = _reached(connection, read)
            rows = connection.execute(query.order_by(*key).limit(page_size + 1)).all()
        items = tuple(_transaction_view(row, position) for row in rows[:page_size])
        more = len(rows) > page_size
        last = rows[page_size - 1] if more else None
        next_cursor = _encode_cursor("t", last.effective_date.isoformat(), last.position) if last is not None else None
        return Page(items, next_cursor, position)


# --- reading ------------------------------------------------------------------------


def _reached(connection: Connection, names: Sequence[str]) -> int:
    return min(state.position for state in read_tracking(connection, names).values())


def _account_row(connection: Connection, tenant_id: UUID, account_id: UUID) -> Row[Any] | None:
    a = read_accounts.c
    return connection.execute(
        select(read_accounts).where(a.account_id == str(account_id), a.tenant_id == str(tenant_id))
    ).first()


def _date_window(query: Any, column: Any, date_from: date | None, date_to: date | None) -> Any:
    if date_from is not None:
        query = query.where(column >= date_from)
    if date_to is not None:
        query = query.where(column <= date_to)
    return query


def _balance_before(
    connection: Connection, account_id: str, day: date, position: int | None, *, use_snapshots: bool
) -> int:
    """Σ of the account's entries before (day, position) in statement order; all of ``day`` if position is None.

    With ``use_snapshots`` (only when both read models are at one position) the
    sum starts from the previous month's closing balance, so its cost is one
    month of entries rather than the account's whole history.
    """
    e, m = read_statement_entries.c, read_monthly_snapshots.c
    opening = 0
    earliest = None
    if use_snapshots:
        earliest = month_start(month_of(day))
        opening = connection.execute(
            select(m.closing_balance_minor)
            .where(m.account_id == account_id, m.month < month_of(day))
            .order_by(m.month.desc())
            .limit(1)
        ).scalar() or 0
    query = select(func.coalesce(func.sum(e.amount_minor), 0)).where(e.account_id == account_id)
    if earliest is not None:
        query = query.where(e.effective_date >= earliest)
    if position is None:
        query = query.where(e.effective_date <= day)
    else:
        query = query.where(tuple_(e.effective_date, e.position) < tuple_(day, position))
    return int(opening) + int(connection.execute(query).scalar_one())


# --- views ----------------------------------------------------------------------------


def _normal(account_type: str, balance_minor: int) -> int:
    return balance_minor if AccountType(account_type).is_debit_normal else -balance_minor


def _account_view(row: Row[Any], position: int) -> AccountView:
    return AccountView(
        id=UUID(row.account_id),
        tenant_id=UUID(row.tenant_id),
        code=row.code,
        name=row.name,
        currency=row.currency,
        type=row.type,
        status=row.status,
        balance_floor_minor=row.balance_floor_minor,
        metadata=json.loads(row.metadata),
        version=row.version,
        balance_minor=row.balance_minor,
        balance_normal_minor=_normal(row.type, row.balance_minor),
        created_at=stored_utc(row.created_at),
        updated_at=stored_utc(row.updated_at),
        position=position,
    )


def _entry_views(rows: Sequence[Row[Any]], opening_minor: int) -> tuple[EntryView, ...]:
    running = opening_minor
    views = []
    for row in rows:
        running += row.amount_minor
        views.append(EntryView(
            transaction_id=UUID(row.transaction_id),
            account_id=UUID(row.account_id),
            effective_date=row.effective_date,
            recorded_at=stored_utc(row.recorded_at),
            amount_minor=row.amount_minor,
            currency=row.currency,
            running_balance_minor=running,
            description=row.description,
            position=row.position,
        ))
    return tuple(views)


def _hold_view(row: Row[Any]) -> HoldView:
    return HoldView(
        transaction_id=UUID(row.transaction_id),
        account_id=UUID(row.account_id),
        effective_date=row.effective_date,
        placed_at=stored_utc(row.placed_at),
        amount_minor=row.amount_minor,
        currency=row.currency,
        description=row.description,
        expires_at=stored_utc(row.expires_at) if row.expires_at is not None else None,
        status=row.status,
        captured_minor=row.captured_minor,
        resolved_at=stored_utc(row.resolved_at) if row.resolved_at is not None else None,
        position=row.placed_position,
    )


def _postings_of(text: str) -> tuple[tuple[UUID, int, str], ...]:
    return tuple((UUID(a), int(amount), currency) for a, amount, currency in json.loads(text))


def _transaction_view(row: Row[Any], position: int) -> TransactionView:
    return TransactionView(
        id=UUID(row.transaction_id),
        tenant_id=UUID(row.tenant_id),
        external_id=row.external_id,
        effective_date=row.effective_date,
        recorded_at=stored_utc(row.recorded_at),
        description=row.description,
        postings=tuple((UUID(a), int(amount), currency) for a, amount, currency in json.loads(row.postings)),
        metadata=json.loads(row.metadata),
        reverses=UUID(row.reverses) if row.reverses else None,
        reversed_by=UUID(row.reversed_by) if row.reversed_by else None,
        position=position,
        status=row.status,
        expires_at=stored_utc(row.expires_at) if row.expires_at is not None else None,
        held_postings=_postings_of(row.held_postings) if row.held_postings is not None else None,
        resolved_at=stored_utc(row.resolved_at) if row.resolved_at is not None else None,
    )


# --- paging ---------------------------------------------------------------------------


def _check_page_size(page_size: int) -> None:
    # The HTTP layer validates first; anything else here is a programming error.
    assert isinstance(page_size, int) and 1 <= page_size <= PAGE_SIZE_MAX, page_size


def _encode_cursor(kind: str, *key: Any) -> str:
    raw = canonical_json([kind, *key]).encode("utf-8")
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _decode_cursor(cursor: str, kind: str, shape: tuple[type, ...]) -> list[Any]:
    problem = InvalidCursor("the cursor is not valid for this list; start again without it")
    if not isinstance(cursor, str) or not 0 < len(cursor) <= CURSOR_LENGTH_MAX:
        raise problem
    try:
        value = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("utf-8"))
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise problem from None
    if not isinstance(value, list) or len(value) != len(shape) + 1 or value[0] != kind:
        raise problem
    key = value[1:]
    if not all(isinstance(part, kind_) and not isinstance(part, bool) for part, kind_ in zip(key, shape, strict=True)):
        raise problem
    if not all(is_storable(part) for part in key if isinstance(part, str)):
        raise problem  # no read model holds such text, and PostgreSQL refuses a NUL even in a query
    return key


def _decode_date_position_cursor(cursor: str | None, kind: str) -> tuple[date, int] | None:
    if not cursor:
        return None
    day, position = _decode_cursor(cursor, kind, (str, int))
    try:
        return date.fromisoformat(day), position
    except ValueError:
        raise InvalidCursor("the cursor is not valid for this list; start again without it") from None
