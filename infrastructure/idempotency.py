"""Stored responses of requests sent with an ``Idempotency-Key``.

One row per (scope, key): the scope is the tenant (or ``admin``), so tenants
never see each other's keys. A request first *claims* its key: a new key is
recorded ``in_flight``; a finished one has its stored status, headers and body
replayed; the same key with a different request fingerprint is refused, and so
is a key whose first request is still running. A claim whose process died is
taken over after the lease. Rows are kept for the TTL (>= 24 h), then purged in
bounded batches.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Column,
    Connection,
    DateTime,
    Engine,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
    delete,
    select,
    tuple_,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from infrastructure.schema import metadata

KEY_LENGTH_MAX = 255
PURGE_BATCH = 500
PURGE_EVERY_CLAIMS = 500
IN_FLIGHT = "in_flight"
DONE = "done"

idempotency_keys = Table(
    "idempotency_keys",
    metadata,
    Column("scope", String(64), primary_key=True),
    Column("key", String(KEY_LENGTH_MAX), primary_key=True),
    Column("fingerprint", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_headers", Text, nullable=True),
    Column("response_body", LargeBinary, nullable=True),
    Column("locked_at", DateTime(timezone=True), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
)


class IdempotencyKeyInFlight(Exception):
    """The first request with this key has not finished yet."""


class IdempotencyKeyReused(Exception):
    """This key was used for a different request."""


@dataclass(frozen=True)
class StoredResponse:
    status_code: int
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True)
class Claim:
    """The outcome of claiming a key: proceed (``stored is None``) or replay ``stored``."""

    scope: str
    key: str
    fingerprint: str
    stored: StoredResponse | None = None


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything written here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class IdempotencyStore:
    def __init__(self, engine: Engine, ttl_hours: int, lease_seconds: int) -> None:
        assert ttl_hours >= 24 and lease_seconds > 0
        self.engine = engine
        self.ttl = timedelta(hours=ttl_hours)
        self.lease = timedelta(seconds=lease_seconds)
        self._claims = 0

    def claim(self, scope: str, key: str, fingerprint: str) -> Claim:
        """Claim ``key`` for a request, or raise ``IdempotencyKeyInFlight``/``IdempotencyKeyReused``."""
        assert 0 < len(key) <= KEY_LENGTH_MAX
        self._maybe_purge()
        now = _now()
        with self.engine.begin() as connection:
            if self._insert(connection, scope, key, fingerprint, now):
                return Claim(scope, key, fingerprint)
            row = self._locked_row(connection, scope, key)
            if row is None:  # purged between our insert and our read
                if not self._insert(connection, scope, key, fingerprint, now):
                    raise IdempotencyKeyInFlight
                return Claim(scope, key, fingerprint)
            if _aware(row.expires_at) <= now:
                self._restart(connection, scope, key, fingerprint, now)
                return Claim(scope, key, fingerprint)
            if row.fingerprint != fingerprint:
                raise IdempotencyKeyReused
            if row.state == DONE:
                headers = json.loads(row.response_headers or "{}")
                return Claim(scope, key, fingerprint, StoredResponse(row.status_code, headers, row.response_body))
            if _aware(row.locked_at) + self.lease > now:
                raise IdempotencyKeyInFlight
            # The first request's process died mid-request: take the key over.
            connection.execute(self._where(update(idempotency_keys), scope, key).values(locked_at=now))
            return Claim(scope, key, fingerprint)

    def complete(self, claim: Claim, status_code: int, headers: dict[str, str], body: bytes) -> None:
        with self.engine.begin() as connection:
            connection.execute(
                self._where(update(idempotency_keys), claim.scope, claim.key)
                .where(idempotency_keys.c.fingerprint == claim.fingerprint, idempotency_keys.c.state == IN_FLIGHT)
                .values(state=DONE, status_code=status_code, response_headers=json.dumps(headers), response_body=body)
            )

    def release(self, claim: Claim) -> None:
        """Forget an unfinished claim (the request failed unexpectedly): a retry may run again."""
        with self.engine.begin() as connection:
            connection.execute(
                self._where(delete(idempotency_keys), claim.scope, claim.key)
                .where(idempotency_keys.c.fingerprint == claim.fingerprint, idempotency_keys.c.state == IN_FLIGHT)
            )

    def purge_expired(self, limit: int = PURGE_BATCH) -> int:
        expired = (
            select(idempotency_keys.c.scope, idempotency_keys.c.key)
            .where(idempotency_keys.c.expires_at < _now())
            .limit(limit)
        )
        with self.engine.begin() as connection:
            result = connection.execute(
                delete(idempotency_keys).where(
                    tuple_(idempotency_keys.c.scope, idempotency_keys.c.key).in_(expired)
                )
            )
            return result.rowcount or 0

    # --- plumbing ---------------------------------------------------------------

    def _maybe_purge(self) -> None:
        self._claims += 1
        if self._claims % PURGE_EVERY_CLAIMS == 1:
            self.purge_expired()

    def _row_values(self, fingerprint: str, now: datetime) -> dict[str, Any]:
        return {
            "fingerprint": fingerprint, "state": IN_FLIGHT, "status_code": None, "response_headers": None,
            "response_body": None, "locked_at": now, "created_at": now, "expires_at": now + self.ttl,
        }

    def _insert(self, connection: Connection, scope: str, key: str, fingerprint: str, now: datetime) -> bool:
        insert = pg_insert if connection.dialect.name == "postgresql" else sqlite_insert
        inserted = connection.execute(
            insert(idempotency_keys)
            .values(scope=scope, key=key, **self._row_values(fingerprint, now))
            .on_conflict_do_nothing()
            .returning(idempotency_keys.c.key)
        ).first()
        return inserted is not None

    def _locked_row(self, connection: Connection, scope: str, key: str) -> Any:
        query = self._where(select(idempotency_keys), scope, key)
        if connection.dialect.name == "postgresql":
            query = query.with_for_update()
        return connection.execute(query).first()

    def _restart(self, connection: Connection, scope: str, key: str, fingerprint: str, now: datetime) -> None:
        connection.execute(
            self._where(update(idempotency_keys), scope, key).values(**self._row_values(fingerprint, now))
        )

    @staticmethod
    def _where(statement: Any, scope: str, key: str) -> Any:
        return statement.where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
