"""Reading the events at given log positions, in one query, on PostgreSQL and SQLite.

eventsourcing's recorders read the notification log by ranges only
(``select_notifications(start, limit, stop)``). A tenant's events are scattered
through the log, so a page of them (``projections.read_models.event_feed``
knows their positions) is read by its positions: the primary key of the
events table on both stores, never a scan of the range between them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from eventsourcing.persistence import Notification
from psycopg.sql import SQL, Identifier

from infrastructure.pg_store import bounded_attempts

POSITIONS_MAX = 1001  # one page of the feed, and the one after it


def notifications_at(recorder: Any, positions: Sequence[int]) -> list[Notification]:
    """The notifications at ``positions`` that the log holds, in log order."""
    assert len(positions) <= POSITIONS_MAX
    if not positions:
        return []
    if hasattr(recorder, "watch"):  # the PostgreSQL recorder (infrastructure.pg_store)
        return _PostgresReads.of(recorder).at(list(positions))
    return _sqlite_at(recorder, list(positions))


class _PostgresReads:
    def __init__(self, recorder: Any) -> None:
        self.datastore = recorder.datastore
        self.watch = recorder.watch  # bounded_attempts: no read while the database is known down
        self._statement = SQL(
            "SELECT notification_id, originator_id, originator_version, topic, state FROM {schema}.{table}"
            " WHERE notification_id = ANY(%s::bigint[]) ORDER BY notification_id"
        ).format(schema=Identifier(self.datastore.schema), table=Identifier(recorder.events_table_name))

    @classmethod
    def of(cls, recorder: Any) -> _PostgresReads:
        reads: _PostgresReads | None = getattr(recorder, "_invario_position_reads", None)
        if reads is None:
            reads = cls(recorder)
            recorder._invario_position_reads = reads
        return reads

    @bounded_attempts
    def at(self, positions: list[int]) -> list[Notification]:
        with self.datastore.get_connection() as connection, connection.cursor() as cursor:
            cursor.execute(self._statement, (positions,), prepare=True)
            return [Notification(id=row["notification_id"], originator_id=row["originator_id"],
                                 originator_version=row["originator_version"], topic=row["topic"],
                                 state=bytes(row["state"])) for row in cursor.fetchall()]


def _sqlite_at(recorder: Any, positions: list[int]) -> list[Notification]:
    marks = ",".join("?" * len(positions))
    statement = f"SELECT rowid, * FROM {recorder.events_table_name} WHERE rowid IN ({marks}) ORDER BY rowid"  # noqa: S608 - the table's own name
    with recorder.datastore.transaction(commit=False) as cursor:
        cursor.execute(statement, positions)
        return [Notification(id=row["rowid"], originator_id=recorder.convert_originator_id(row["originator_id"]),
                             originator_version=row["originator_version"], topic=row["topic"], state=row["state"])
                for row in cursor.fetchall()]
