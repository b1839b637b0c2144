"""Webhook endpoints in the database: registrations, sealed secrets and each endpoint's delivery state.

One row per endpoint (table ``webhook_endpoints``, migration 0009). Besides what
the tenant registered, a row is the endpoint's own durable position in the log:
the last event it acknowledged (or that was not for it), with that event's hash,
as the relay keeps one per sink. An endpoint moves on only past an event it
acknowledged, so it receives its events in log order and never skips a failing
one: ``attempts`` counts the failures at the event after ``position``, and at
``INVARIO_WEBHOOK_ATTEMPTS_MAX`` the endpoint is ``dead_lettered`` until a replay.

A dispatcher works on an endpoint under a lease (``leased_until``), taken by a
conditional update, so two dispatchers (a worker and ``invario relay``) never
send to one endpoint at once; every write of delivery state is conditional on
the position it started from, so a replay ordered meanwhile wins.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Engine,
    Index,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from infrastructure.integrity_store import aware, utc_now  # SQLite hands back naive datetimes: all are UTC
from infrastructure.schema import metadata
from infrastructure.webhooks.secrets import SecretBox, WebhookSecret, new_secret

ACTIVE = "active"
DEAD_LETTERED = "dead_lettered"
ENDPOINTS_PER_TENANT_MAX = 20
EVENT_TYPES_MAX = 50
ERROR_LENGTH_MAX = 500
LIST_LIMIT_MAX = 1000

webhook_endpoints = Table(
    "webhook_endpoints",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("url", Text, nullable=False),
    Column("event_types", Text, nullable=True),  # a JSON list; NULL: every type
    Column("secret_sealed", LargeBinary, nullable=False),  # infrastructure/webhooks/secrets.py
    Column("status", String(16), nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("event_hash", String(64), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=False),
    Column("leased_until", DateTime(timezone=True), nullable=True),
    Column("last_error", Text, nullable=True),
    Column("delivered_count", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("dead_lettered_at", DateTime(timezone=True), nullable=True),
    Index("ix_webhook_endpoints_tenant_id", "tenant_id"),
    Index("ix_webhook_endpoints_status_next_attempt_at", "status", "next_attempt_at"),
)


class TooManyWebhooks(Exception):
    """The tenant already has ``ENDPOINTS_PER_TENANT_MAX`` endpoints."""


@dataclass(frozen=True)
class WebhookEndpoint:
    """An endpoint as listed: everything but its secret."""

    id: UUID
    tenant_id: UUID
    url: str
    event_types: tuple[str, ...] | None
    status: str
    position: int
    event_hash: str | None
    attempts: int
    next_attempt_at: datetime
    last_error: str | None
    delivered_count: int
    created_at: datetime
    updated_at: datetime
    dead_lettered_at: datetime | None

    def wants(self, event_type: str) -> bool:
        return self.event_types is None or event_type in self.event_types


@dataclass(frozen=True)
class Claimed:
    """An endpoint leased to one dispatcher, with its opened secret."""

    endpoint: WebhookEndpoint
    secret: WebhookSecret


_VIEW_COLUMNS = [c for c in webhook_endpoints.c if c.name != "secret_sealed"]


def _endpoint(row: Any) -> WebhookEndpoint:
    types = json.loads(row.event_types) if row.event_types is not None else None
    return WebhookEndpoint(
        id=UUID(row.id), tenant_id=UUID(row.tenant_id), url=row.url,
        event_types=tuple(types) if types is not None else None, status=row.status, position=int(row.position),
        event_hash=row.event_hash, attempts=int(row.attempts), next_attempt_at=aware(row.next_attempt_at),  # type: ignore[arg-type]
        last_error=row.last_error, delivered_count=int(row.delivered_count), created_at=aware(row.created_at),  # type: ignore[arg-type]
        updated_at=aware(row.updated_at), dead_lettered_at=aware(row.dead_lettered_at),  # type: ignore[arg-type]
    )


class WebhookStore:
    """Every read and write of ``webhook_endpoints``; secrets go in sealed and come out only to sign."""

    def __init__(self, engine: Engine, box: SecretBox | None) -> None:
        self.engine = engine
        self._box = box  # None: an operator's view (list, replay), which never touches a secret

    @property
    def box(self) -> SecretBox:
        assert self._box is not None, "a store that seals and opens secrets needs the auth pepper's SecretBox"
        return self._box

    # --- the tenant's registrations --------------------------------------------------------

    def register(self, tenant_id: UUID, url: str, event_types: list[str] | None,
                 start_position: int) -> tuple[WebhookEndpoint, WebhookSecret]:
        """A new endpoint that receives the tenant's events committed after ``start_position``."""
        endpoint_id, secret, now = str(uuid.uuid4()), new_secret(), utc_now()
        row = {
            "id": endpoint_id, "tenant_id": str(tenant_id), "url": url,
            "event_types": json.dumps(sorted(set(event_types))) if event_types is not None else None,
            "secret_sealed": self.box.seal(secret, endpoint_id), "status": ACTIVE, "position": start_position,
            "event_hash": None, "attempts": 0, "next_attempt_at": now, "leased_until": None, "last_error": None,
            "delivered_count": 0, "created_at": now, "updated_at": now, "dead_lettered_at": None,
        }
        with self.engine.begin() as connection:
            count = connection.execute(select(func.count()).select_from(webhook_endpoints)
                                       .where(webhook_endpoints.c.tenant_id == str(tenant_id))).scalar_one()
            if count >= ENDPOINTS_PER_TENANT_MAX:
                raise TooManyWebhooks(f"a tenant may register at most {ENDPOINTS_PER_TENANT_MAX} webhook endpoints")
            connection.execute(insert(webhook_endpoints).values(row))
        found = self.get(endpoint_id)
        assert found is not None
        return found, secret

    def list(self, tenant_id: UUID | None = None, status: str | None = None,
             limit: int = LIST_LIMIT_MAX) -> list[WebhookEndpoint]:
        """Endpoints, oldest first: one tenant's, or (operators) every tenant's."""
        query = select(*_VIEW_COLUMNS).order_by(webhook_endpoints.c.created_at, webhook_endpoints.c.id)
        if tenant_id is not None:
            query = query.where(webhook_endpoints.c.tenant_id == str(tenant_id))
        if status is not None:
            query = query.where(webhook_endpoints.c.status == status)
        with self.engine.connect() as connection:
            return [_endpoint(row) for row in connection.execute(query.limit(min(limit, LIST_LIMIT_MAX)))]

    def get(self, endpoint_id: UUID | str, tenant_id: UUID | None = None) -> WebhookEndpoint | None:
        """The endpoint; with ``tenant_id``, only if it is that tenant's (another's reads as absent)."""
        query = select(*_VIEW_COLUMNS).where(webhook_endpoints.c.id == str(endpoint_id))
        if tenant_id is not None:
            query = query.where(webhook_endpoints.c.tenant_id == str(tenant_id))
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        return _endpoint(row) if row is not None else None

    def delete(self, endpoint_id: UUID, tenant_id: UUID) -> bool:
        with self.engine.begin() as connection:
            result = connection.execute(delete(webhook_endpoints).where(
                webhook_endpoints.c.id == str(endpoint_id), webhook_endpoints.c.tenant_id == str(tenant_id)))
        return result.rowcount == 1

    def replay(self, endpoint_id: UUID, from_position: int, tenant_id: UUID | None = None) -> WebhookEndpoint | None:
        """Deliver again from ``from_position`` on (inclusive), reviving a dead-lettered endpoint."""
        query = update(webhook_endpoints).where(webhook_endpoints.c.id == str(endpoint_id))
        if tenant_id is not None:
            query = query.where(webhook_endpoints.c.tenant_id == str(tenant_id))
        now = utc_now()
        with self.engine.begin() as connection:
            result = connection.execute(query.values(
                status=ACTIVE, position=max(from_position - 1, 0), event_hash=None, attempts=0, next_attempt_at=now,
                leased_until=None, last_error=None, dead_lettered_at=None, updated_at=now))
        return self.get(endpoint_id) if result.rowcount == 1 else None

    def count_dead_lettered(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(func.count()).select_from(webhook_endpoints)
                                          .where(webhook_endpoints.c.status == DEAD_LETTERED)).scalar_one())

    # --- the dispatcher's ------------------------------------------------------------------

    def due(self, limit: int, excluded: set[str], head: int) -> list[str]:
        """Ids of active endpoints behind ``head`` (the log's last position) whose next attempt is due and that
        no dispatcher holds, most overdue first."""
        now = utc_now()
        query = (select(webhook_endpoints.c.id)
                 .where(webhook_endpoints.c.status == ACTIVE, webhook_endpoints.c.position < head,
                        webhook_endpoints.c.next_attempt_at <= now,
                        or_(webhook_endpoints.c.leased_until.is_(None), webhook_endpoints.c.leased_until < now))
                 .order_by(webhook_endpoints.c.next_attempt_at)
                 .limit(limit + len(excluded)))
        with self.engine.connect() as connection:
            ids = [row.id for row in connection.execute(query)]
        return [i for i in ids if i not in excluded][:limit]

    def claim(self, endpoint_id: str, lease_seconds: float) -> Claimed | None:
        """Lease the endpoint to the caller, or None if another dispatcher holds it (or it is gone or not due)."""
        now = utc_now()
        with self.engine.begin() as connection:
            result = connection.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.status == ACTIVE,
                       or_(webhook_endpoints.c.leased_until.is_(None), webhook_endpoints.c.leased_until < now))
                .values(leased_until=now + timedelta(seconds=lease_seconds)))
            if result.rowcount != 1:
                return None
            row = connection.execute(select(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)).one()
        return Claimed(_endpoint(row), self.box.open(row.secret_sealed, endpoint_id))

    def advance(self, endpoint_id: str, expected: int, position: int, event_hash: str | None,  # noqa: PLR0913
                delivered: int, lease_seconds: float) -> bool:
        """Move the endpoint past events it acknowledged (or that were not for it); renews the lease.
        False if its position moved meanwhile (a replay): the caller stops."""
        now = utc_now()
        with self.engine.begin() as connection:
            result = connection.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.position == expected,
                       webhook_endpoints.c.status == ACTIVE)
                .values(position=position, event_hash=event_hash, attempts=0, last_error=None, updated_at=now,
                        delivered_count=webhook_endpoints.c.delivered_count + delivered,
                        leased_until=now + timedelta(seconds=lease_seconds)))
        return result.rowcount == 1

    def failed(self, endpoint_id: str, expected: int, error: str, next_attempt_at: datetime,  # noqa: PLR0913
               *, dead: bool) -> bool:
        """Note a failed attempt at the event after ``expected``; ``dead``: the endpoint is dead-lettered."""
        now = utc_now()
        values: dict[str, Any] = {"attempts": webhook_endpoints.c.attempts + 1, "last_error": error[:ERROR_LENGTH_MAX],
                                  "next_attempt_at": next_attempt_at, "leased_until": None, "updated_at": now}
        if dead:
            values.update(status=DEAD_LETTERED, dead_lettered_at=now)
        with self.engine.begin() as connection:
            result = connection.execute(
                update(webhook_endpoints)
                .where(webhook_endpoints.c.id == endpoint_id, webhook_endpoints.c.position == expected,
                       webhook_endpoints.c.status == ACTIVE)
                .values(**values))
        return result.rowcount == 1

    def release(self, endpoint_id: str) -> None:
        """Give the lease back (the endpoint is due again at once)."""
        with self.engine.begin() as connection:
            connection.execute(update(webhook_endpoints).where(webhook_endpoints.c.id == endpoint_id)
                               .values(leased_until=None))
