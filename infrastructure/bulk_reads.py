"""Reading many aggregates' stored events in one PostgreSQL round trip.

A group-commit batch needs, for every aggregate its commands touch, the events
after the version it already holds (a cached aggregate's version, a snapshot's,
or 0). Asked one aggregate at a time that is one to three round trips each,
serialised on the writer thread; these queries ask for all of them at once
(``application.ledger.BulkReads``). Reads only: the recorder's insert, its table
lock and its NOTIFY are untouched.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from eventsourcing.persistence import StoredEvent
from psycopg.sql import SQL, Identifier

from infrastructure.pg_store import bounded_attempts


class PostgresBulkReads:
    """``events_after`` and ``latest_snapshots`` over the eventsourcing PostgreSQL tables."""

    def __init__(self, events_recorder: Any, snapshots_recorder: Any | None) -> None:
        self.datastore = events_recorder.datastore
        self.watch = events_recorder.watch  # bounded_attempts: no read while the database is known down
        schema = Identifier(self.datastore.schema)
        self._events_after = SQL(
            "SELECT e.originator_id, e.originator_version, e.topic, e.state"
            " FROM {schema}.{table} e"
            " JOIN unnest(%s::uuid[], %s::bigint[]) AS w(id, after_version)"
            " ON e.originator_id = w.id AND e.originator_version > w.after_version"
            " ORDER BY e.originator_id, e.originator_version"
        ).format(schema=schema, table=Identifier(events_recorder.events_table_name))
        self._latest_snapshots = None
        if snapshots_recorder is not None:
            self._latest_snapshots = SQL(
                "SELECT DISTINCT ON (originator_id) originator_id, originator_version, topic, state"
                " FROM {schema}.{table} WHERE originator_id = ANY(%s::uuid[])"
                " ORDER BY originator_id, originator_version DESC"
            ).format(schema=schema, table=Identifier(snapshots_recorder.events_table_name))

    def events_after(self, after_versions: Mapping[UUID, int]) -> dict[UUID, list[StoredEvent]]:
        """Each aggregate's stored events above the given version, in version order."""
        found: dict[UUID, list[StoredEvent]] = {}
        if not after_versions:
            return found
        ids, versions = list(after_versions), list(after_versions.values())
        for row in self._select(self._events_after, (ids, versions)):
            found.setdefault(row.originator_id, []).append(row)  # type: ignore[arg-type]
        return found

    def latest_snapshots(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]:
        """Each aggregate's newest snapshot, for those that have one."""
        if self._latest_snapshots is None or not aggregate_ids:
            return {}
        rows = self._select(self._latest_snapshots, (list(aggregate_ids),))
        return {row.originator_id: row for row in rows}  # type: ignore[misc]

    @bounded_attempts  # as the recorder's own reads
    def _select(self, statement: SQL | Any, params: tuple[Any, ...]) -> list[StoredEvent]:
        with self.datastore.get_connection() as conn, conn.cursor() as curs:
            curs.execute(statement, params, prepare=True)
            return [
                StoredEvent(
                    originator_id=row["originator_id"],
                    originator_version=row["originator_version"],
                    topic=row["topic"],
                    state=bytes(row["state"]),
                )
                for row in curs.fetchall()
            ]
