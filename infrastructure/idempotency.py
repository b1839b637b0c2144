"""Stored responses of requests sent with an ``Idempotency-Key``.

One row per (scope, key): the scope is the tenant (or ``admin``), so tenants
never see each other's keys. A row is written by the same transaction as the
events of the request's command (``IdempotencyReceipt``, written by the
recorders of ``infrastructure.recorders``), so a key is recorded exactly when
its command's outcome is, and a crash leaves no key half-done. On its way:

- a request whose key is in flight *in this process* is refused (409), or 422
  with another request fingerprint, without touching the database;
- a key seen for the first time costs nothing more than its row in the batch's
  insert: there is no claim of its own;
- a key already recorded (by an earlier request, in any process) is found by
  the insert itself (the primary key), which rolls the batch back; the batch is
  committed without that command, and the request is answered from the stored
  row: replayed for the same fingerprint, 422 for another.

Across processes two requests with one key in flight at once are serialised by
the events table's lock (every batch with events takes it before inserting its
keys): the later one finds the first one's committed row and replays it.

Rows are kept for the TTL (>= 24 h), then may be taken again, and are purged in
bounded batches. The lease only concerns rows left ``in_flight`` by versions
before atomic records (they claimed a key in a transaction of their own): such a
row is refused as in flight until its lease has passed, then taken over.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import (
    Column,
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
)

from infrastructure.schema import metadata

KEY_LENGTH_MAX = 255
PURGE_BATCH = 500
PURGE_EVERY_RECEIPTS = 500
IN_FLIGHT = "in_flight"  # only ever written by versions before atomic records
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


@dataclass(eq=False)
class IdempotencyReceipt:
    """The record of one keyed request, written with its command's outcome
    (``application.group_commit.Receipt``). ``render`` turns the outcome into the
    response to store; ``value`` keeps what it rendered, for the live answer."""

    scope: str
    key: str
    fingerprint: str
    created_at: datetime
    expires_at: datetime
    lease_cutoff: datetime  # an in_flight row locked before this was abandoned
    renderer: Callable[[Any], tuple[StoredResponse, Any]] = field(repr=False)
    stored: StoredResponse | None = None
    value: Any = None
    written: bool = False

    def render(self, outcome: Any) -> None:
        self.stored, self.value = self.renderer(outcome)

    def keep(self, stored: StoredResponse, value: Any) -> None:
        """The response was made without the ledger (nothing saved): store it as is."""
        self.renderer = lambda _outcome: (stored, value)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything written here is UTC.
    return value if value.tzinfo else value.replace(tzinfo=timezone.utc)


class IdempotencyStore:
    """The keys in flight in this process, the receipts to write, and reading a stored row."""

    def __init__(self, engine: Engine, ttl_hours: int, lease_seconds: int) -> None:
        assert ttl_hours >= 24 and lease_seconds > 0
        self.engine = engine
        self.ttl = timedelta(hours=ttl_hours)
        self.lease = timedelta(seconds=lease_seconds)
        self._receipts = 0
        self._in_flight: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()

    def begin(self, scope: str, key: str, fingerprint: str,
              renderer: Callable[[Any], tuple[StoredResponse, Any]]) -> IdempotencyReceipt:
        """A receipt for a new request with ``key``, or ``IdempotencyKeyInFlight``/
        ``IdempotencyKeyReused`` while another request of this process holds the key."""
        assert 0 < len(key) <= KEY_LENGTH_MAX
        with self._lock:
            holder = self._in_flight.get((scope, key))
            if holder is not None:
                raise IdempotencyKeyReused if holder != fingerprint else IdempotencyKeyInFlight
            self._in_flight[(scope, key)] = fingerprint
        now = _now()
        return IdempotencyReceipt(scope, key, fingerprint, now, now + self.ttl, now - self.lease, renderer)

    def purge_due(self) -> bool:
        """Whether this request should purge expired rows (one in ``PURGE_EVERY_RECEIPTS``)."""
        with self._lock:
            self._receipts += 1
            return self._receipts % PURGE_EVERY_RECEIPTS == 1

    def end(self, receipt: IdempotencyReceipt) -> None:
        with self._lock:
            self._in_flight.pop((receipt.scope, receipt.key), None)

    def lookup(self, scope: str, key: str, fingerprint: str) -> StoredResponse | None:
        """The stored response of a recorded key (``None``: not recorded, or expired), or
        ``IdempotencyKeyReused``/``IdempotencyKeyInFlight`` (an abandoned older claim)."""
        query = select(idempotency_keys).where(idempotency_keys.c.scope == scope, idempotency_keys.c.key == key)
        with self.engine.connect() as connection:
            row = connection.execute(query).first()
        now = _now()
        if row is None or _aware(row.expires_at) <= now:
            return None
        if row.state != DONE:  # an older version's claim: in flight until its lease has passed
            if _aware(row.locked_at) + self.lease > now:
                raise IdempotencyKeyInFlight
            return None
        if row.fingerprint != fingerprint:
            raise IdempotencyKeyReused
        return StoredResponse(row.status_code, json.loads(row.response_headers or "{}"), row.response_body)

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


# --- writing receipts inside the recorders' transactions -----------------------------------

_COLUMNS = ("scope", "key", "fingerprint", "state", "status_code", "response_headers", "response_body",
            "locked_at", "created_at", "expires_at")
# A row may be replaced only once it has expired, or if an older version left it
# in flight and its lease has passed; otherwise the key is taken.
_TAKE_OVER = (
    "ON CONFLICT (scope, key) DO UPDATE SET "
    + ", ".join(f"{c} = excluded.{c}" for c in _COLUMNS[2:])
    + " WHERE idempotency_keys.expires_at <= excluded.created_at"
    " OR (idempotency_keys.state = 'in_flight' AND idempotency_keys.locked_at <= {lease_cutoff})"
)
POSTGRES_INSERT = (
    f"INSERT INTO idempotency_keys ({', '.join(_COLUMNS)}) "
    # Binary arrays (%b), as the events' insert (infrastructure.pg_store): no text to render and parse.
    "SELECT * FROM unnest(%b::varchar[], %b::varchar[], %b::varchar[], %b::varchar[], %b::int[], %b::text[], "
    "%b::bytea[], %b::timestamptz[], %b::timestamptz[], %b::timestamptz[]) "
    + _TAKE_OVER.format(lease_cutoff="excluded.locked_at - %s::interval") + " RETURNING scope, key"
)
SQLITE_INSERT = (
    f"INSERT INTO idempotency_keys ({', '.join(_COLUMNS)}) VALUES ({', '.join('?' * len(_COLUMNS))}) "
    + _TAKE_OVER.format(lease_cutoff="?")
)


def _row(receipt: IdempotencyReceipt) -> tuple[Any, ...]:
    stored = receipt.stored
    assert stored is not None, "a receipt is rendered before it is written"
    return (receipt.scope, receipt.key, receipt.fingerprint, DONE, stored.status_code, json.dumps(stored.headers),
            stored.body, receipt.created_at, receipt.created_at, receipt.expires_at)


def insert_receipts_postgres(cursor: Any, receipts: Sequence[IdempotencyReceipt]) -> list[IdempotencyReceipt]:
    """Insert the receipts' rows with a psycopg cursor; the receipts whose key was taken."""
    rows = [_row(receipt) for receipt in receipts]
    columns = [list(column) for column in zip(*rows, strict=True)]
    lease = receipts[0].created_at - receipts[0].lease_cutoff
    cursor.execute(POSTGRES_INSERT, (*columns, lease))
    inserted = {(row["scope"], row["key"]) for row in cursor.fetchall()}  # the recorder's rows are dicts
    return [r for r in receipts if (r.scope, r.key) not in inserted]


def _sqlite_time(value: datetime) -> str:
    # As SQLAlchemy stores DateTime on SQLite (naive UTC text), so that its reads agree.
    return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


def insert_receipts_sqlite(cursor: Any, receipts: Sequence[IdempotencyReceipt]) -> list[IdempotencyReceipt]:
    """Insert the receipts' rows with a sqlite3 cursor; the receipts whose key was taken."""
    taken = []
    for receipt in receipts:
        row = [_sqlite_time(v) if isinstance(v, datetime) else v for v in _row(receipt)]
        cursor.execute(SQLITE_INSERT, (*row, _sqlite_time(receipt.lease_cutoff)))
        if cursor.rowcount != 1:
            taken.append(receipt)
    return taken
