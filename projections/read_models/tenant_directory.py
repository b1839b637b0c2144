"""The tenant directory: the read model behind the operators' tenant queries.

A follower of the notification log keeps one row per tenant (name, status,
version); ``/admin/tenants/{id}`` and ``/admin/query/tenants`` read it, never the
aggregates. Every other event is ignored.
"""

from __future__ import annotations

import base64
import binascii
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    String,
    Table,
    Text,
    insert,
    select,
    update,
)

from domain.tenant import Tenant
from infrastructure.schema import metadata
from projections.read_models.encoding import is_storable, storable_text
from projections.following.follower import LoggedEvent, projection_tracking

NAME = "tenant_directory"
PAGE_SIZE_MAX = 200
WAIT_POLL_SECONDS = 0.02

tenant_directory = Table(
    "tenant_directory",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("name", String(63), nullable=False, unique=True),
    Column("status", String(16), nullable=False),
    Column("suspension_reason", Text, nullable=True),
    Column("version", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("position", BigInteger, nullable=False),
)


class TenantDirectoryProjection:
    name = NAME

    def handle(self, connection: Connection, batch: Sequence[LoggedEvent]) -> None:
        for logged in batch:
            event = logged.event
            if isinstance(event, Tenant.Created):
                connection.execute(insert(tenant_directory).values(
                    id=str(event.originator_id), name=storable_text(event.name), status="active",
                    suspension_reason=None,
                    version=event.originator_version, created_at=event.timestamp, updated_at=event.timestamp,
                    position=logged.position,
                ))
            elif isinstance(event, Tenant.Suspended | Tenant.Resumed):
                suspended = isinstance(event, Tenant.Suspended)
                connection.execute(
                    update(tenant_directory)
                    .where(tenant_directory.c.id == str(event.originator_id))
                    .values(
                        status="suspended" if suspended else "active",
                        suspension_reason=storable_text(event.reason) if suspended else None,
                        version=event.originator_version, updated_at=event.timestamp, position=logged.position,
                    )
                )


def _read_position(connection: Connection) -> int:
    row = connection.execute(
        select(projection_tracking.c.position).where(projection_tracking.c.name == NAME)
    ).first()
    return int(row[0]) if row else 0


class InvalidTenantCursor(ValueError):
    """A pagination cursor this directory did not hand out."""


@dataclass(frozen=True)
class TenantView:
    id: UUID
    name: str
    status: str
    suspension_reason: str | None
    version: int
    created_at: datetime
    updated_at: datetime
    position: int


@dataclass(frozen=True)
class TenantPage:
    items: tuple[TenantView, ...]
    next_cursor: str | None
    position: int


def _view(row: Any) -> TenantView:
    def aware(value: datetime) -> datetime:
        return value if value.tzinfo else value.replace(tzinfo=timezone.utc)

    return TenantView(UUID(row.id), row.name, row.status, row.suspension_reason, row.version,
                      aware(row.created_at), aware(row.updated_at), row.position)


def _encode_cursor(name: str) -> str:
    return base64.urlsafe_b64encode(name.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> str:
    try:
        name = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidTenantCursor("the cursor is not one this API returned") from None
    if not name or len(name) > 63 or not is_storable(name):  # a NUL would fail the query on PostgreSQL
        raise InvalidTenantCursor("the cursor is not one this API returned")
    return name


class TenantDirectory:
    """Queries over the tenant directory; each answer carries the position it reflects."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def position(self) -> int:
        with self.engine.connect() as connection:
            return _read_position(connection)

    def wait_for(self, position: int, timeout_seconds: float) -> bool:
        deadline = time.monotonic() + timeout_seconds
        while self.position() < position:
            if time.monotonic() >= deadline:
                return False
            time.sleep(WAIT_POLL_SECONDS)
        return True

    def get(self, tenant_id: UUID) -> TenantView | None:
        with self.engine.connect() as connection:
            row = connection.execute(select(tenant_directory).where(tenant_directory.c.id == str(tenant_id))).first()
        return _view(row) if row else None

    def list(self, *, status: str | None = None, cursor: str | None, page_size: int) -> TenantPage:
        assert 0 < page_size <= PAGE_SIZE_MAX
        query = select(tenant_directory).order_by(tenant_directory.c.name).limit(page_size + 1)
        if status is not None:
            query = query.where(tenant_directory.c.status == status)
        if cursor is not None:
            query = query.where(tenant_directory.c.name > _decode_cursor(cursor))
        with self.engine.connect() as connection:
            position = _read_position(connection)
            rows = connection.execute(query).all()
        items = tuple(_view(row) for row in rows[:page_size])
        next_cursor = _encode_cursor(items[-1].name) if len(rows) > page_size else None
        return TenantPage(items, next_cursor, position)
