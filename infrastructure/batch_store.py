"""Batches in the database: the uploaded file in chunks, the queue, progress and line errors.

The queue is the ``batches`` table itself, no broker: a worker *claims* the
oldest ``queued`` batch (or a ``processing`` one whose lease has expired: its
worker died) with ``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so two
workers never take the same batch, and holds it under a lease that every
recorded chunk renews. Every write of a claimed batch is conditional on still
holding the lease (``LeaseLost`` otherwise). SQLite serialises writers, so
there the same single-statement claim is atomic without row locks.

The file is stored as chunks of at most ``CHUNK_LINES`` lines (rows of
``batch_chunks``), so any worker can process it after a restart and no one
ever holds the whole file in memory.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime, timedelta, timezone
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
    and_,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)

from application.batches import (
    COMPLETED,
    PROCESSING,
    QUEUED,
    REJECTED,
    VALIDATING,
    BatchInfo,
    ChunkResult,
    LeaseLost,
    LineError,
    StoredChunk,
)
from infrastructure.batch_files import NewChunk
from infrastructure.schema import metadata

RECEIVING = "receiving"  # being uploaded; never visible to clients (the id is only returned once stored)
ERRORS_PAGE_MAX = 1000
MESSAGE_LENGTH_MAX = 500

batches = Table(
    "batches",
    metadata,
    Column("id", String(36), primary_key=True),
    Column("tenant_id", String(36), nullable=False),
    Column("mode", String(16), nullable=False),
    Column("format", String(8), nullable=False),
    Column("header", LargeBinary, nullable=False),
    Column("status", String(16), nullable=False),
    Column("phase", String(16), nullable=False),
    Column("next_chunk", Integer, nullable=False),
    Column("chunk_count", Integer, nullable=False),
    Column("line_count", BigInteger, nullable=False),
    Column("accepted_count", BigInteger, nullable=False),
    Column("replayed_count", BigInteger, nullable=False),
    Column("rejected_count", BigInteger, nullable=False),
    Column("reason", Text, nullable=True),
    Column("file_sha256", String(64), nullable=True),
    Column("lease_owner", String(64), nullable=True),
    Column("lease_expires_at", DateTime(timezone=True), nullable=True),
    Column("attempts", Integer, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Index("ix_batches_status_created_at", "status", "created_at"),
    Index("ix_batches_tenant_id_file_sha256", "tenant_id", "file_sha256"),
)

batch_chunks = Table(
    "batch_chunks",
    metadata,
    Column("batch_id", String(36), primary_key=True),
    Column("chunk_no", Integer, primary_key=True),
    Column("first_line", BigInteger, nullable=False),
    Column("line_count", Integer, nullable=False),
    Column("body", LargeBinary, nullable=False),
)

batch_line_errors = Table(
    "batch_line_errors",
    metadata,
    Column("batch_id", String(36), primary_key=True),
    Column("line_no", BigInteger, primary_key=True),
    Column("code", String(64), nullable=False),
    Column("message", Text, nullable=False),
)


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _aware(value: datetime | None) -> datetime | None:
    # SQLite hands back naive datetimes; everything written here is UTC.
    return value.replace(tzinfo=timezone.utc) if value is not None and value.tzinfo is None else value


def _info(row: Any) -> BatchInfo:
    return BatchInfo(
        id=UUID(row.id), tenant_id=UUID(row.tenant_id), mode=row.mode, format=row.format, header=bytes(row.header),
        status=row.status, phase=row.phase, next_chunk=row.next_chunk, chunk_count=row.chunk_count,
        line_count=row.line_count, accepted_count=row.accepted_count, replayed_count=row.replayed_count,
        rejected_count=row.rejected_count, reason=row.reason, created_at=_aware(row.created_at), finished_at=_aware(row.finished_at),
    )


class BatchStore:
    def __init__(self, engine: Engine, lease_seconds: float = 60.0) -> None:
        assert lease_seconds > 0
        self.engine = engine
        self.lease = timedelta(seconds=lease_seconds)

    # --- receiving a file ---------------------------------------------------------------

    def create(self, tenant_id: UUID, mode: str, format: str) -> UUID:  # noqa: A002
        batch_id = uuid.uuid4()
        now = _now()
        with self.engine.begin() as connection:
            connection.execute(insert(batches).values(
                id=str(batch_id), tenant_id=str(tenant_id), mode=mode, format=format, header=b"", status=RECEIVING,
                phase=VALIDATING, next_chunk=0, chunk_count=0, line_count=0, accepted_count=0, replayed_count=0,
                rejected_count=0, attempts=0, created_at=now, updated_at=now,
            ))
        return batch_id

    def add_chunk(self, batch_id: UUID, chunk: NewChunk) -> None:
        with self.engine.begin() as connection:
            connection.execute(insert(batch_chunks).values(
                batch_id=str(batch_id), chunk_no=chunk.chunk_no, first_line=chunk.first_line,
                line_count=chunk.line_count, body=chunk.body,
            ))

    def enqueue(self, batch_id: UUID, *, header: bytes, chunk_count: int, line_count: int, file_sha256: str,
                owner: str | None = None) -> BatchInfo:
        """The file is stored: queue it (or, with ``owner``, hand it to that processor at once)."""
        now = _now()
        claim = {"status": PROCESSING, "lease_owner": owner, "lease_expires_at": now + self.lease,
                 "attempts": 1} if owner else {"status": QUEUED}
        with self.engine.begin() as connection:
            row = connection.execute(
                update(batches).where(batches.c.id == str(batch_id), batches.c.status == RECEIVING)
                .values(header=header, chunk_count=chunk_count, line_count=line_count, file_sha256=file_sha256,
                        updated_at=now, **claim)
                .returning(*batches.c)
            ).one()
        return _info(row)

    def discard(self, batch_id: UUID) -> None:
        """Forget a file whose upload failed."""
        with self.engine.begin() as connection:
            connection.execute(delete(batch_chunks).where(batch_chunks.c.batch_id == str(batch_id)))
            connection.execute(delete(batches).where(batches.c.id == str(batch_id)))

    # --- the queue --------------------------------------------------------------------------

    def claim_next(self, owner: str) -> BatchInfo | None:
        """The oldest batch waiting (or abandoned by a dead worker), now leased to ``owner``."""
        now = _now()
        waiting = or_(batches.c.status == QUEUED,
                      and_(batches.c.status == PROCESSING, batches.c.lease_expires_at < now))
        candidate = (select(batches.c.id).where(waiting).order_by(batches.c.created_at).limit(1)
                     .with_for_update(skip_locked=True).scalar_subquery())
        return self._claim(batches.c.id == candidate, owner, now)

    def claim(self, batch_id: UUID, owner: str) -> BatchInfo | None:
        """This batch, if it is waiting or abandoned (``None`` while another processor holds it)."""
        now = _now()
        free = or_(batches.c.status == QUEUED, batches.c.lease_expires_at < now, batches.c.lease_owner == owner)
        return self._claim(and_(batches.c.id == str(batch_id), batches.c.status.in_((QUEUED, PROCESSING)), free),
                           owner, now)

    def _claim(self, where: Any, owner: str, now: datetime) -> BatchInfo | None:
        with self.engine.begin() as connection:
            row = connection.execute(
                update(batches).where(where)
                .values(status=PROCESSING, lease_owner=owner, lease_expires_at=now + self.lease,
                        attempts=batches.c.attempts + 1, updated_at=now)
                .returning(*batches.c)
            ).first()
        return _info(row) if row is not None else None

    def release(self, batch_id: UUID, owner: str) -> None:
        """Give a claimed batch back to the queue (an interrupted import); it resumes where it stopped."""
        with self.engine.begin() as connection:
            connection.execute(
                update(batches).where(batches.c.id == str(batch_id), batches.c.lease_owner == owner,
                                      batches.c.status == PROCESSING)
                .values(status=QUEUED, lease_owner=None, lease_expires_at=None, updated_at=_now())
            )

    def has_waiting(self) -> bool:
        with self.engine.connect() as connection:
            return connection.execute(
                select(batches.c.id).where(batches.c.status.in_((QUEUED, PROCESSING))).limit(1)
            ).first() is not None

    # --- processing (every write needs the lease) ---------------------------------------------

    def chunks(self, batch_id: UUID, start: int) -> Iterator[StoredChunk]:
        chunk_no = start
        while True:
            with self.engine.connect() as connection:
                row = connection.execute(
                    select(batch_chunks.c.chunk_no, batch_chunks.c.first_line, batch_chunks.c.body)
                    .where(batch_chunks.c.batch_id == str(batch_id), batch_chunks.c.chunk_no == chunk_no)
                ).first()
            if row is None:
                return
            yield StoredChunk(row.chunk_no, row.first_line, bytes(row.body))
            chunk_no += 1

    def start_phase(self, batch_id: UUID, owner: str, phase: str) -> None:
        """Begin a phase from the first chunk; validating starts over (its errors and counts are redone)."""
        with self.engine.begin() as connection:
            self._leased_update(connection, batch_id, owner, phase=phase, next_chunk=0,
                                **({"rejected_count": 0} if phase == VALIDATING else {}))
            if phase == VALIDATING:
                connection.execute(delete(batch_line_errors).where(batch_line_errors.c.batch_id == str(batch_id)))

    def record_errors(self, batch_id: UUID, owner: str, errors: Sequence[LineError]) -> None:
        with self.engine.begin() as connection:
            self._leased_update(connection, batch_id, owner, rejected_count=batches.c.rejected_count + len(errors))
            self._insert_errors(connection, batch_id, errors)

    def record_chunk(self, batch_id: UUID, owner: str, chunk_no: int, result: ChunkResult) -> None:
        """A chunk is posted: its counts, its errors and the next chunk to do, in one transaction."""
        with self.engine.begin() as connection:
            self._leased_update(
                connection, batch_id, owner, next_chunk=chunk_no + 1,
                accepted_count=batches.c.accepted_count + result.accepted,
                replayed_count=batches.c.replayed_count + result.replayed,
                rejected_count=batches.c.rejected_count + len(result.errors),
                where=batches.c.next_chunk == chunk_no,
            )
            self._insert_errors(connection, batch_id, result.errors)

    def finish(self, batch_id: UUID, owner: str, status: str, reason: str | None = None) -> BatchInfo:
        assert status in (COMPLETED, REJECTED)
        now = _now()
        with self.engine.begin() as connection:
            row = self._leased_update(connection, batch_id, owner, status=status, reason=reason, finished_at=now,
                                      lease_owner=None, lease_expires_at=None)
            connection.execute(delete(batch_chunks).where(batch_chunks.c.batch_id == str(batch_id)))
        return _info(row)

    def _leased_update(self, connection: Any, batch_id: UUID, owner: str, where: Any = None, **values: Any) -> Any:
        now = _now()
        values.setdefault("lease_expires_at", now + self.lease)
        statement = update(batches).where(batches.c.id == str(batch_id), batches.c.lease_owner == owner,
                                          batches.c.status == PROCESSING)
        if where is not None:
            statement = statement.where(where)
        row = connection.execute(statement.values(updated_at=now, **values).returning(*batches.c)).first()
        if row is None:
            raise LeaseLost(f"batch {batch_id} is no longer held by {owner}")
        return row

    @staticmethod
    def _insert_errors(connection: Any, batch_id: UUID, errors: Sequence[LineError]) -> None:
        if errors:
            connection.execute(insert(batch_line_errors), [
                {"batch_id": str(batch_id), "line_no": e.line_no, "code": e.code,
                 "message": e.message[:MESSAGE_LENGTH_MAX]} for e in errors
            ])

    # --- queries ----------------------------------------------------------------------------

    def get(self, tenant_id: UUID, batch_id: UUID) -> BatchInfo | None:
        """A tenant's batch (another tenant's is ``None``, like one that does not exist)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(batches).where(batches.c.id == str(batch_id), batches.c.tenant_id == str(tenant_id),
                                      batches.c.status != RECEIVING)
            ).first()
        return _info(row) if row is not None else None

    def errors_page(self, batch_id: UUID, after_line: int, limit: int) -> list[LineError]:
        assert 0 < limit <= ERRORS_PAGE_MAX
        with self.engine.connect() as connection:
            rows = connection.execute(
                select(batch_line_errors).where(batch_line_errors.c.batch_id == str(batch_id),
                                                batch_line_errors.c.line_no > after_line)
                .order_by(batch_line_errors.c.line_no).limit(limit)
            ).all()
        return [LineError(row.line_no, row.code, row.message) for row in rows]

    def find_unfinished(self, tenant_id: UUID, file_sha256: str, mode: str) -> BatchInfo | None:
        """An earlier, unfinished import of the same file (to resume it)."""
        with self.engine.connect() as connection:
            row = connection.execute(
                select(batches).where(batches.c.tenant_id == str(tenant_id), batches.c.file_sha256 == file_sha256,
                                      batches.c.mode == mode, batches.c.status.in_((QUEUED, PROCESSING)))
                .order_by(batches.c.created_at).limit(1)
            ).first()
        return _info(row) if row is not None else None

    def count_chunks(self, batch_id: UUID) -> int:
        with self.engine.connect() as connection:
            return connection.execute(
                select(func.count()).select_from(batch_chunks).where(batch_chunks.c.batch_id == str(batch_id))
            ).scalar_one()
