"""Queries over the ``recurring_transactions`` read model (``projections.read_models.recurring``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any
from uuid import UUID

from sqlalchemy import Connection, Engine, func, or_, select

from domain.recurring import ACTIVE
from infrastructure.schema import stored_utc
from projections.following.consistency import snapshot
from projections.following.follower import read_tracking
from projections.read_models.queries import Page, _check_page_size, _decode_cursor, _encode_cursor
from projections.read_models.recurring import NAME, read_recurring_transactions, recurring_progress


@dataclass(frozen=True)
class RecurringView:
    id: UUID
    tenant_id: UUID
    frequency: str
    weekday: str | None
    day_of_month: int | None
    start_date: date
    end_date: date | None
    postings: tuple[tuple[UUID, int, str], ...]
    description: str
    metadata: dict[str, str]
    status: str
    version: int
    created_at: datetime
    updated_at: datetime
    position: int


class RecurringReadModel:
    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def get(self, tenant_id: UUID, recurring_id: UUID) -> RecurringView | None:
        r = read_recurring_transactions.c
        with snapshot(self.engine) as connection:
            position = _position(connection)
            row = connection.execute(select(read_recurring_transactions).where(
                r.id == str(recurring_id), r.tenant_id == str(tenant_id))).first()
        return _view(row, position) if row is not None else None

    def list(self, tenant_id: UUID, *, cursor: str | None, page_size: int) -> Page[RecurringView]:
        """The tenant's schedules, oldest first (keyset on the log position that created them)."""
        _check_page_size(page_size)
        after = _decode_cursor(cursor, "r", (int,)) if cursor else None
        r = read_recurring_transactions.c
        query = select(read_recurring_transactions).where(r.tenant_id == str(tenant_id))
        if after is not None:
            query = query.where(r.created_position > after[0])
        with snapshot(self.engine) as connection:
            position = _position(connection)
            rows = connection.execute(query.order_by(r.created_position).limit(page_size + 1)).all()
        items = tuple(_view(row, position) for row in rows[:page_size])
        more = len(rows) > page_size
        return Page(items, _encode_cursor("r", rows[page_size - 1].created_position) if more else None, position)

    def due_after(self, after_id: str, today: date, limit: int) -> list[DueSchedule]:
        """One page of active schedules (every tenant, by id after ``after_id``) with a run due by ``today``."""
        r, p = read_recurring_transactions.c, recurring_progress.c
        next_run = func.coalesce(p.next_run_date, r.start_date)
        query = (
            select(read_recurring_transactions, next_run.label("next_run_date"))
            .select_from(read_recurring_transactions.outerjoin(recurring_progress, p.recurring_id == r.id))
            .where(r.status == ACTIVE, r.id > after_id, next_run <= today)
            .where(or_(r.end_date.is_(None), next_run <= r.end_date))
            .order_by(r.id).limit(limit)
        )
        with self.engine.connect() as connection:
            rows = connection.execute(query).all()
        return [DueSchedule(_view(row, 0), _as_date(row.next_run_date)) for row in rows]


@dataclass(frozen=True)
class DueSchedule:
    view: RecurringView
    next_run_date: date


def _as_date(value: Any) -> date:
    # SQLite's COALESCE of two DATE columns comes back as text.
    return value if isinstance(value, date) else date.fromisoformat(str(value))


def _position(connection: Connection) -> int:
    return read_tracking(connection, [NAME])[NAME].position


def _view(row: Any, position: int) -> RecurringView:
    postings = tuple((UUID(p["account_id"]), int(p["amount_minor"]), p["currency"]) for p in json.loads(row.postings))
    return RecurringView(
        id=UUID(row.id), tenant_id=UUID(row.tenant_id), frequency=row.frequency, weekday=row.weekday,
        day_of_month=row.day_of_month, start_date=row.start_date, end_date=row.end_date, postings=postings,
        description=row.description, metadata=json.loads(row.metadata), status=row.status, version=row.version,
        created_at=stored_utc(row.created_at), updated_at=stored_utc(row.updated_at), position=position,
    )
