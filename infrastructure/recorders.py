"""Event store recorders that write a batch's receipts in the batch's own transaction.

``Ledger`` passes ``receipts=`` (``application.group_commit.RenderReceipts``) through
``Application.save``/``EventStore.put`` down to ``insert_events``. After inserting
the events (so every event's position is known) the recorder has the receipts
rendered and inserts their rows (``infrastructure.idempotency``) before the
commit. A receipt whose key is already recorded rolls the whole transaction back
with ``ReceiptsTaken``: the batch then commits again without its command.
Without ``receipts=`` both recorders behave as their base classes.

Selected through eventsourcing's ``APPLICATION_RECORDER_TOPIC`` by
``infrastructure.runtime``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import IntegrityError, StoredEvent
from eventsourcing.sqlite import SQLiteApplicationRecorder

from application.group_commit import ReceiptsTaken, RenderReceipts
from application.retries import StoreReplaced
from infrastructure.idempotency import insert_receipts_postgres, insert_receipts_sqlite
from infrastructure.pg_store import BoundedRetryPostgresRecorder, bounded_attempts
from infrastructure.restore_epoch import TABLE as RESTORE_EPOCH_TABLE
from infrastructure.restore_epoch import RestoreEpochWatch


def _positions(stored_events: Sequence[StoredEvent], ids: Sequence[int] | None) -> dict[Any, int]:
    return {(e.originator_id, e.originator_version): i for e, i in zip(stored_events, ids or (), strict=True)}


class ReceiptsPostgresRecorder(BoundedRetryPostgresRecorder):
    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        render: RenderReceipts | None = kwargs.pop("receipts", None)
        expected: Mapping[UUID, int] = kwargs.pop("expected_versions", None) or {}
        if render is None and not expected:
            return super().insert_events(stored_events, **kwargs)
        assert not self.datastore.enable_db_functions, "receipts need the plain insert"
        try:
            return self._insert_with_receipts(stored_events, render, expected)
        except StoreReplaced:
            self.notice_restore()
            raise

    @bounded_attempts
    def _insert_with_receipts(self, stored_events: Sequence[StoredEvent], render: RenderReceipts | None,
                              expected: Mapping[UUID, int]) -> Sequence[int] | None:
        # As PostgresApplicationRecorder.insert_events (table lock, NOTIFY and insert in
        # one pipelined round trip), then the receipts' rows. An exception must leave
        # the transaction's block to roll it back; it is raised after the pipeline's,
        # inside the datastore's connection, which translates psycopg's errors.
        error: Exception | None = None
        ids: Sequence[int] | None = []
        with self.datastore.get_connection() as conn:
            with conn.pipeline() as pipeline:
                try:
                    with conn.transaction(), conn.cursor() as curs:
                        ids = self._insert_checked(curs, pipeline, stored_events, expected)
                        receipts = render(_positions(stored_events, ids)) if render is not None else None
                        if receipts:
                            taken = insert_receipts_postgres(curs, receipts)
                            if taken:
                                raise ReceiptsTaken(taken)
                except Exception as exc:  # noqa: BLE001 - re-raised below
                    error = exc
            if error is not None:
                raise error
        return ids

    def _insert_checked(self, curs: Any, pipeline: Any, stored_events: Sequence[StoredEvent],
                        expected: Mapping[UUID, int]) -> Sequence[int] | None:
        """The events' positions; ``IntegrityError`` (rolled back) if a version is taken
        or an aggregate in ``expected`` is no longer at its version."""
        if stored_events:
            self._insert_stored_events(curs, stored_events, expected_versions=expected)
            pipeline.sync()  # a version conflict is raised here, before the receipts
            ids = self._fetch_ids_after_insert_events(curs, stored_events, expected_versions=expected)
            if len(ids or ()) != len(stored_events):
                if not self.epoch_unchanged(curs, pipeline):
                    raise StoreReplaced("the database was restored since this write was decided; retry the request")
                raise IntegrityError("an aggregate the batch decided on has changed since")
            return ids
        if expected:
            curs.execute(self.select_changed_statement, (list(expected), list(expected.values())))
            if curs.fetchall():
                raise IntegrityError("an aggregate the batch decided on has changed since")
        return []


class ReceiptsSQLiteRecorder(SQLiteApplicationRecorder):
    restore_epoch: RestoreEpochWatch | None = None  # set by open_runtime

    def _insert_events(self, c: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        render: RenderReceipts | None = kwargs.pop("receipts", None)
        expected: Mapping[UUID, int] = kwargs.pop("expected_versions", None) or {}
        ids: Sequence[int] | None = []
        if stored_events:
            ids = super()._insert_events(c, stored_events, **kwargs)
            self._check_epoch(c)  # after the insert: it holds the write lock now (see below)
        if render is not None:
            receipts = render(_positions(stored_events, ids))
            if receipts:
                taken = insert_receipts_sqlite(getattr(c, "sqlite_cursor", c), receipts)
                if taken:
                    raise ReceiptsTaken(taken)  # the datastore's transaction rolls back
        if expected:
            # Checked after the writes: a read first would take a shared lock that another
            # process's commit and this insert then wait on from both sides (SQLite answers
            # "busy" at once). After a write this transaction holds the write lock.
            self._check_unchanged(c, expected)
        return ids

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        try:
            return super().insert_events(stored_events, **kwargs)
        except StoreReplaced:
            if self.restore_epoch is not None:
                self.restore_epoch.check_quietly()
            raise

    def _check_epoch(self, c: Any) -> None:
        """The write's epoch, checked under the write lock (after the insert took it, as below)."""
        epoch = self.restore_epoch.expected() if self.restore_epoch is not None else None
        if epoch is None or epoch.row is None:
            return
        try:
            c.execute(f"SELECT epoch FROM {RESTORE_EPOCH_TABLE} WHERE id = 1")  # noqa: S608 - a constant
            row = c.fetchone()
        except Exception:  # noqa: BLE001 - the table is gone: a backup from before it was restored
            row = None
        if row is None or row[0] != epoch.row:
            raise StoreReplaced("the database was restored since this write was decided; retry the request")

    def _check_unchanged(self, c: Any, expected: Mapping[UUID, int]) -> None:
        statement = f"SELECT MAX(originator_version) FROM {self.events_table_name} WHERE originator_id = ?"
        for aggregate_id, version in expected.items():
            c.execute(statement, (aggregate_id.hex,))
            row = c.fetchone()
            if ((row[0] if row else None) or 0) != version:
                raise IntegrityError("an aggregate the batch decided on has changed since")


POSTGRES_TOPIC = f"{__name__}:{ReceiptsPostgresRecorder.__name__}"
SQLITE_TOPIC = f"{__name__}:{ReceiptsSQLiteRecorder.__name__}"
