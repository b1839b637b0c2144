"""The ``monthly_snapshots`` projection: each account's closing balance per month.

Months are calendar months of the **effective date**. A row exists for each
month in which the account has entries; a month without entries closes at the
balance of the latest month before it. A posting in month M adds to M's
movement and to the closing balance of M and of every later month of that
account, so a back-dated transaction updates its month and all later ones.

``recompute_month`` recomputes one month from the statement entries at one
common position and corrects only rows that are wrong: running it again
changes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from sqlalchemy import BigInteger, Column, Connection, Engine, Index, String, Table, case, func, select, text, update

from domain.transaction import Transaction
from infrastructure.schema import metadata
from projections.read_models.encoding import month_end, month_of, month_start
from projections.read_models.bulk import execute_many
from projections.following.consistency import PositionsApart
from projections.following.follower import LoggedEvent, projection_tracking, read_tracking
from projections.read_models.statements import read_statement_entries

read_monthly_snapshots = Table(
    "read_monthly_snapshots",
    metadata,
    Column("account_id", String(36), primary_key=True),
    Column("month", String(7), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("currency", String(3), nullable=False),
    Column("closing_balance_minor", BigInteger, nullable=False),
    Column("movement_minor", BigInteger, nullable=False),
    Column("entry_count", BigInteger, nullable=False),
    Index("ix_read_monthly_snapshots_tenant_id_month", "tenant_id", "month"),
)

# A month first touched opens at the closing balance of the account's latest earlier month.
_OPEN_MONTH = text(
    "INSERT INTO read_monthly_snapshots"
    " (account_id, month, tenant_id, currency, closing_balance_minor, movement_minor, entry_count)"
    " SELECT CAST(:account_id AS VARCHAR(36)), CAST(:month AS VARCHAR(7)),"
    "  CAST(:tenant_id AS VARCHAR(36)), CAST(:currency AS VARCHAR(3)),"
    "  COALESCE((SELECT p.closing_balance_minor FROM read_monthly_snapshots p"
    "   WHERE p.account_id = :account_id AND p.month < :month ORDER BY p.month DESC LIMIT 1), 0), 0, 0"
    " WHERE NOT EXISTS (SELECT 1 FROM read_monthly_snapshots q"
    "  WHERE q.account_id = :account_id AND q.month = :month)"
)
_OPEN_MONTHS_PG = (
    "INSERT INTO read_monthly_snapshots"
    " (account_id, month, tenant_id, currency, closing_balance_minor, movement_minor, entry_count)"
    " SELECT k.account_id, k.month, k.tenant_id, k.currency,"
    "  COALESCE((SELECT p.closing_balance_minor FROM read_monthly_snapshots p"
    "   WHERE p.account_id = k.account_id AND p.month < k.month ORDER BY p.month DESC LIMIT 1), 0), 0, 0"
    " FROM unnest(%(account_id)s::varchar[], %(month)s::varchar[], %(tenant_id)s::varchar[],"
    "  %(currency)s::varchar[]) AS k(account_id, month, tenant_id, currency)"
    " WHERE NOT EXISTS (SELECT 1 FROM read_monthly_snapshots q"
    "  WHERE q.account_id = k.account_id AND q.month = k.month)"
)
# The movement lands on its month; the closing balance of that month and every later one moves.
_ADD_MOVEMENT = text(
    "UPDATE read_monthly_snapshots SET"
    " closing_balance_minor = closing_balance_minor + :movement,"
    " movement_minor = movement_minor + CASE WHEN month = :month THEN :movement ELSE 0 END,"
    " entry_count = entry_count + CASE WHEN month = :month THEN :entries ELSE 0 END"
    " WHERE account_id = :account_id AND month >= :month"
)
_ADD_MOVEMENTS_PG = (
    "UPDATE read_monthly_snapshots m SET"
    " closing_balance_minor = m.closing_balance_minor + d.closing,"
    " movement_minor = m.movement_minor + d.movement,"
    " entry_count = m.entry_count + d.entries"
    " FROM (SELECT s.account_id, s.month, SUM(k.movement) AS closing,"
    "   SUM(CASE WHEN k.month = s.month THEN k.movement ELSE 0 END) AS movement,"
    "   SUM(CASE WHEN k.month = s.month THEN k.entries ELSE 0 END) AS entries"
    "  FROM unnest(%(account_id)s::varchar[], %(month)s::varchar[], %(movement)s::bigint[],"
    "   %(entries)s::bigint[]) AS k(account_id, month, movement, entries)"
    "  JOIN read_monthly_snapshots s ON s.account_id = k.account_id AND s.month >= k.month"
    "  GROUP BY s.account_id, s.month) AS d"
    " WHERE m.account_id = d.account_id AND m.month = d.month"
)


class MonthlySnapshotsProjection:
    name = "monthly_snapshots"
    tables = (read_monthly_snapshots,)

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        movements: dict[tuple[str, str], dict[str, Any]] = {}
        for logged in batch:
            event = logged.event
            if not isinstance(event, Transaction.Posted | Transaction.HoldPosted):  # a capture posts too
                continue
            month = month_of(event.effective_date)
            for posting in event.postings:
                key = (posting["account_id"], month)
                movement = movements.get(key)
                if movement is None:
                    movement = movements[key] = {
                        "account_id": key[0], "month": month, "tenant_id": str(event.tenant_id),
                        "currency": posting["currency"], "movement": 0, "entries": 0,
                    }
                movement["movement"] += posting["amount_minor"]
                movement["entries"] += 1
        if not movements:
            return
        ordered = [movements[key] for key in sorted(movements)]
        # Every month is opened before any movement is added, so an opening
        # balance never includes a movement of this batch twice.
        execute_many(connection, _OPEN_MONTH, _OPEN_MONTHS_PG, [_opening_params(m) for m in ordered])
        execute_many(connection, _ADD_MOVEMENT, _ADD_MOVEMENTS_PG, [_movement_params(m) for m in ordered])


def _opening_params(movement: dict[str, Any]) -> dict[str, Any]:
    return {k: movement[k] for k in ("account_id", "month", "tenant_id", "currency")}


def _movement_params(movement: dict[str, Any]) -> dict[str, Any]:
    return {k: movement[k] for k in ("account_id", "month", "movement", "entries")}


# --- recomputing a month ---------------------------------------------------------


@dataclass(frozen=True)
class MonthCorrection:
    """A snapshot row that ``recompute_month`` found wrong and corrected."""

    account_id: UUID
    month: str
    before: tuple[int, int, int] | None  # (closing, movement, entries), None: the row was missing
    after: tuple[int, int, int] | None  # None: the row was removed (the month has no entries)


def recompute_month(engine: Engine, month: str, tenant_id: UUID | None = None) -> tuple[int, list[MonthCorrection]]:
    """Recompute ``month``'s snapshot rows from the statement entries; fix the wrong ones.

    Runs in one transaction that holds the snapshot projection's tracking row,
    so its follower cannot move meanwhile, and counts only entries up to that
    same position. Returns the position and the corrections (empty when every
    row was right, which is always the case on a second run).
    """
    with engine.begin() as connection:
        position = _hold_snapshot_position(connection)
        expected = _expected_month(connection, month, position, tenant_id)
        actual = _stored_month(connection, month, tenant_id)
        corrections = []
        for account_id in sorted(expected.keys() | actual.keys()):
            want, have = expected.get(account_id), actual.get(account_id)
            if want == have:
                continue
            _write_month(connection, account_id, month, want, have)
            corrections.append(MonthCorrection(UUID(account_id), month, have and have[:3], want and want[:3]))
        return position, corrections


def _hold_snapshot_position(connection: Connection) -> int:
    states = read_tracking(connection, ["monthly_snapshots", "statements"])
    position = states["monthly_snapshots"].position
    # A no-op update takes the row lock, so the snapshot follower waits for us.
    held = connection.execute(
        update(projection_tracking)
        .where(projection_tracking.c.name == "monthly_snapshots", projection_tracking.c.position == position)
        .values(position=position)
    ).rowcount
    statements = read_tracking(connection, ["statements"])["statements"].position
    if held != 1 or statements < position:
        raise PositionsApart(
            "the statement entries are behind the monthly snapshots (or they moved): "
            "let the worker catch up, then run this again"
        )
    return position


def _expected_month(
    connection: Connection, month: str, position: int, tenant_id: UUID | None
) -> dict[str, tuple[int, int, int, str, str]]:
    e = read_statement_entries.c
    in_month = e.effective_date >= month_start(month)
    query = (
        select(
            e.account_id,
            func.sum(e.amount_minor),
            func.sum(func.coalesce(_when(in_month, e.amount_minor), 0)),
            func.coalesce(func.sum(_when(in_month, 1)), 0),
            func.min(e.tenant_id),
            func.min(e.currency),
        )
        .where(e.effective_date <= month_end(month), e.position <= position)
        .group_by(e.account_id)
    )
    if tenant_id is not None:
        query = query.where(e.tenant_id == str(tenant_id))
    rows = connection.execute(query).all()
    # A month without entries has no row of its own (see the module docstring).
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]), r[4], r[5]) for r in rows if int(r[3]) > 0}


def _when(condition: Any, value: Any) -> Any:
    return case((condition, value))


def _stored_month(connection: Connection, month: str, tenant_id: UUID | None) -> dict[str, tuple[int, int, int, str, str]]:
    m = read_monthly_snapshots.c
    query = select(
        m.account_id, m.closing_balance_minor, m.movement_minor, m.entry_count, m.tenant_id, m.currency
    ).where(m.month == month)
    if tenant_id is not None:
        query = query.where(m.tenant_id == str(tenant_id))
    return {r[0]: (int(r[1]), int(r[2]), int(r[3]), r[4], r[5]) for r in connection.execute(query)}


def _write_month(
    connection: Connection,
    account_id: str,
    month: str,
    want: tuple[int, int, int, str, str] | None,
    have: tuple[int, int, int, str, str] | None,
) -> None:
    m = read_monthly_snapshots.c
    key = (m.account_id == account_id) & (m.month == month)
    if want is None:
        connection.execute(read_monthly_snapshots.delete().where(key))
        return
    values = {"closing_balance_minor": want[0], "movement_minor": want[1], "entry_count": want[2],
              "tenant_id": want[3], "currency": want[4]}
    if have is None:
        connection.execute(read_monthly_snapshots.insert().values(account_id=account_id, month=month, **values))
    else:
        connection.execute(read_monthly_snapshots.update().where(key).values(**values))
