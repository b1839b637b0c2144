"""The tables of the integrity checks (revision 0004) and their reads and writes.

- ``integrity_state``: one row, the ledger's integrity as last established by
  any process (a detection with its location, or the last passing full
  verification). Every process's ``IntegrityMonitor`` reads it, so a break
  found by ``invario verify`` or the worker stops writes in every API process.
- ``integrity_checkpoint``: how far the incremental verifier has verified the
  log: global sequence, log position, recomputed global head and event hash.
- ``integrity_digests``: the signed digests issued (periodically by the worker
  and by ``invario digest``). They are signed, so they cannot be forged here,
  only deleted; the copies that matter are the ones kept outside.

None of these is evidence by itself: they are restored with the database, and
the state is re-established by verifying the events.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from sqlalchemy import BigInteger, Column, Connection, DateTime, Engine, String, Table, Text, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from domain.chain import GENESIS_HASH
from domain.digest import LedgerDigest
from infrastructure.schema import metadata

LEDGER = "ledger"
INCREMENTAL = "incremental"

integrity_state = Table(
    "integrity_state",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("status", String(16), nullable=False),
    Column("detection_id", String(32), nullable=True),
    Column("detected_at", DateTime(timezone=True), nullable=True),
    Column("detected_by", String(64), nullable=True),
    Column("damage", Text, nullable=True),
    Column("checked_at", DateTime(timezone=True), nullable=True),
    Column("checked_by", String(64), nullable=True),
    Column("verified_sequence", BigInteger, nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

integrity_checkpoint = Table(
    "integrity_checkpoint",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("sequence", BigInteger, nullable=False),
    Column("position", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("event_hash", String(64), nullable=True),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

integrity_digests = Table(
    "integrity_digests",
    metadata,
    Column("key_id", String(16), primary_key=True),
    Column("sequence", BigInteger, primary_key=True, autoincrement=False),
    Column("position", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("signed_at", DateTime(timezone=True), nullable=False, index=True),
    Column("document", Text, nullable=False),
)


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def aware(moment: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; every stored moment is UTC.
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=timezone.utc)


def _insert(connection: Connection) -> Any:
    return pg_insert if connection.dialect.name == "postgresql" else sqlite_insert


# --- the shared state ------------------------------------------------------------------


@dataclass(frozen=True)
class StoredState:
    status: str
    detection_id: str | None
    detected_at: datetime | None
    detected_by: str | None
    damage: dict[str, Any] | None
    checked_at: datetime | None
    checked_by: str | None
    verified_sequence: int | None


def read_state(connection: Connection) -> StoredState | None:
    row = connection.execute(select(integrity_state).where(integrity_state.c.name == LEDGER)).first()
    if row is None:
        return None
    return StoredState(
        status=row.status, detection_id=row.detection_id, detected_at=aware(row.detected_at),
        detected_by=row.detected_by, damage=json.loads(row.damage) if row.damage else None,
        checked_at=aware(row.checked_at), checked_by=row.checked_by, verified_sequence=row.verified_sequence,
    )


def write_state(engine: Engine, **values: Any) -> None:
    """Upsert the one state row with ``values`` (``damage`` as a document)."""
    if "damage" in values and values["damage"] is not None:
        values["damage"] = json.dumps(values["damage"], sort_keys=True)
    values["updated_at"] = utc_now()
    with engine.begin() as connection:
        insert = _insert(connection)(integrity_state).values(name=LEDGER, **{"status": "ok", **values})
        connection.execute(insert.on_conflict_do_update(index_elements=["name"], set_=values))


# --- the incremental verifier's checkpoint ---------------------------------------------------


@dataclass(frozen=True)
class Checkpoint:
    sequence: int
    position: int
    hash: str
    event_hash: str | None
    updated_at: datetime | None = None


ORIGIN = Checkpoint(0, 0, GENESIS_HASH, None)


def read_checkpoint(connection: Connection, name: str = INCREMENTAL) -> Checkpoint:
    row = connection.execute(select(integrity_checkpoint).where(integrity_checkpoint.c.name == name)).first()
    if row is None:
        return ORIGIN
    return Checkpoint(int(row.sequence), int(row.position), row.hash, row.event_hash, aware(row.updated_at))


def advance_checkpoint(connection: Connection, expected: Checkpoint, new: Checkpoint, name: str = INCREMENTAL) -> bool:
    """Move the checkpoint from ``expected`` to ``new`` by compare-and-set; ``False`` if another moved it."""
    insert = _insert(connection)(integrity_checkpoint).values(
        name=name, sequence=0, position=0, hash=GENESIS_HASH, event_hash=None, updated_at=utc_now()
    )
    connection.execute(insert.on_conflict_do_nothing())
    result = connection.execute(
        update(integrity_checkpoint)
        .where(integrity_checkpoint.c.name == name, integrity_checkpoint.c.sequence == expected.sequence,
               integrity_checkpoint.c.hash == expected.hash)
        .values(sequence=new.sequence, position=new.position, hash=new.hash, event_hash=new.event_hash,
                updated_at=utc_now())
    )
    return result.rowcount == 1


# --- signed digests --------------------------------------------------------------------------


def store_digest(engine: Engine, digest: LedgerDigest) -> bool:
    """Keep a signed digest; ``False`` if this key already signed that sequence."""
    signed_at = datetime.fromisoformat(digest.time.replace("Z", "+00:00"))
    with engine.begin() as connection:
        insert = _insert(connection)(integrity_digests).values(
            key_id=digest.key_id, sequence=digest.sequence, position=digest.position, hash=digest.hash,
            signed_at=signed_at, document=json.dumps(digest.to_document(), sort_keys=True),
        )
        return connection.execute(insert.on_conflict_do_nothing()).rowcount == 1


def latest_digest(connection: Connection) -> LedgerDigest | None:
    row = connection.execute(
        select(integrity_digests.c.document).order_by(integrity_digests.c.signed_at.desc()).limit(1)
    ).first()
    return LedgerDigest(**json.loads(row.document)) if row else None
