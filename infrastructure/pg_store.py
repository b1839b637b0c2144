"""The PostgreSQL event store, bounded: a dead or silent database is reported in seconds, never waited on.

eventsourcing's ``PostgresApplicationRecorder`` retries every read and write up
to 10 times on ``OperationalError``/``InterfaceError``, and each attempt may wait
the pool's timeout for a connection: a request could hang for ten timeouts
while the database is down. Here each operation gets ``ATTEMPTS_MAX`` attempts
(the second covers a connection that broke between the pool's check and its
use: the database restarted), and none while the process's ``DatabaseWatch``
knows the database to be down.

``BoundedPostgresFactory`` (selected through eventsourcing's
``PERSISTENCE_MODULE`` by ``infrastructure.runtime``) also bounds the pool's
connections before it opens: the libpq options of ``infrastructure.pg_connections``
(``POSTGRES_CONNECTION_OPTIONS``; eventsourcing passes no ``connect_timeout`` at
all, so psycopg's default of 130 s applied), connections that can be cut off by
the watch, a checkout timeout of its own (``POSTGRES_POOL_TIMEOUT``; eventsourcing
uses the connect timeout) and a short ``reconnect_timeout``: psycopg_pool retries
a failed connection with a delay that doubles up to that bound (5 minutes by
default), so after an outage the pool would wait up to tens of seconds before
trying again; given up sooner, the next request that needs a connection asks
for one at once.
"""

from __future__ import annotations

import contextlib

import time
from collections.abc import Mapping, Sequence
from functools import wraps
from typing import Any
from uuid import UUID

from eventsourcing.persistence import InterfaceError, OperationalError, StoredEvent
from eventsourcing.postgres import PostgresAggregateRecorder, PostgresApplicationRecorder, PostgresFactory
from psycopg.conninfo import conninfo_to_dict
from psycopg.sql import SQL, Composed, Identifier
from psycopg_pool import ConnectionPool, PoolTimeout

from application.retries import StoreReplaced
from infrastructure.db_errors import DatabaseFailure
from infrastructure.pg_watch import DatabaseWatch, WatchedConnection, watch_for
from infrastructure.restore_epoch import TABLE, Epoch, RestoreEpochWatch

ATTEMPTS_MAX = 2
RETRY_WAIT_SECONDS = 0.2
RECONNECT_TIMEOUT_SECONDS = 1.0

CONNECTION_OPTIONS = "POSTGRES_CONNECTION_OPTIONS"  # a libpq conninfo string
POOL_TIMEOUT = "POSTGRES_POOL_TIMEOUT"  # seconds a caller waits for a pooled connection


def _bounded(recorder_class: type, name: str) -> Any:
    unbounded = getattr(recorder_class, name)
    return bounded_attempts(getattr(unbounded, "__wrapped__", unbounded))


def bounded_attempts(undecorated: Any) -> Any:
    """A recorder method tried at most ``ATTEMPTS_MAX`` times, and not at all while the database is known down."""

    @wraps(undecorated)
    def attempts(self: Any, *args: Any, **kwargs: Any) -> Any:
        watch: DatabaseWatch = self.watch
        for attempt in range(1, ATTEMPTS_MAX + 1):
            if watch.down:
                raise OperationalError(f"the database does not answer: {watch.reason}")
            try:
                return undecorated(self, *args, **kwargs)
            except (InterfaceError, OperationalError) as error:
                _drain_if_lost(self.datastore.pool, error)
                if attempt == ATTEMPTS_MAX or watch.down:
                    raise
                time.sleep(RETRY_WAIT_SECONDS)
        raise AssertionError("unreachable")

    return attempts


# The server ended the session (pg_terminate_backend, a shutdown, a crash restart):
# SQLSTATE 57P01-57P03; class 08 is the connection's own failure.
_SESSION_ENDED = ("57P01", "57P02", "57P03")


def _connection_lost(error: Exception) -> bool:
    """The connection failed, not the statement (no SQLSTATE: the client lost it)."""
    sqlstate = getattr(error.__cause__ or error, "sqlstate", None)
    return sqlstate is None or sqlstate.startswith("08") or sqlstate in _SESSION_ENDED


def _drain_if_lost(pool: ConnectionPool[Any], error: Exception) -> None:
    """Empty the pool after a lost connection, so that the retry opens a fresh one.

    There is no liveness check on checkout (a round trip per write would cost more than
    the write's share of a group commit), so a dead pooled connection shows itself by
    failing; the others, opened alike, are most likely dead too (the server restarted,
    the network dropped them)."""
    if not _connection_lost(error):
        return
    with contextlib.suppress(Exception):  # a closing pool has nothing to drain
        pool.drain()


def _watch_of(datastore: Any) -> DatabaseWatch:
    return watch_for(datastore.pool.kwargs)


class BoundedRetryPostgresRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose reads and writes give up after ``ATTEMPTS_MAX`` attempts."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.watch = _watch_of(datastore)
        assert self.datastore.originator_id_type == "uuid", "the column-wise insert sends ids as uuid[]"
        # As eventsourcing's insert (same columns, rows in the same order, RETURNING the
        # positions in that order), but as four binary arrays instead of one array of a
        # composite type in text: psycopg renders the composite in Python (~30 us an
        # event) and the server parses it as text (~100 us an event); binary arrays of
        # plain types cost ~1.5 us and ~12 us (docs/performance.md, "Cheaper events").
        names = {"schema": Identifier(self.datastore.schema), "table": Identifier(self.events_table_name)}
        insert = ("INSERT INTO {schema}.{table} (originator_id, originator_version, topic, state)"
                  " SELECT * FROM unnest(%b::uuid[], %b::bigint[], %b::text[], %b::bytea[])")
        self.insert_columns_statement = SQL(insert + " RETURNING notification_id").format(**names)
        # The same insert, made only if each aggregate a batch decided on but did not
        # write is still at the version it read (0: absent). Under the table lock every
        # other writer's events are visible, so nothing can change in between; the
        # caller compares the rows inserted with the rows sent.
        changed = SQL(
            "SELECT held.id FROM unnest(%b::uuid[], %b::bigint[]) AS held(id, version)"
            " WHERE held.version <> COALESCE((SELECT max(e.originator_version) FROM {schema}.{table} e"
            " WHERE e.originator_id = held.id), 0)"
        ).format(**names)
        self.insert_if_unchanged_statement = SQL(
            insert + " WHERE NOT EXISTS ({changed}) RETURNING notification_id"
        ).format(changed=changed, **names)
        self.select_changed_statement = changed
        # The same inserts, made only if the database is still in the restore epoch the
        # batch decided under (infrastructure.restore_epoch): the events table's OID, and
        # the epoch row when the schema has one. No extra round trip; a restored database
        # inserts nothing, and the caller compares the rows inserted with the rows sent.
        self._insert = SQL(insert).format(**names)
        self._changed = changed
        self._events_table = f'"{self.datastore.schema}"."{self.events_table_name}"'
        self.restore_epoch: RestoreEpochWatch | None = None  # set by open_runtime

    def _epoch_condition(self, epoch: Epoch) -> tuple[Composed, list[Any]]:
        condition = SQL("to_regclass(%s)::oid = %s::oid")
        params: list[Any] = [self._events_table, epoch.events_table]
        if epoch.row is not None:
            condition = condition + SQL(" AND (SELECT epoch FROM {} WHERE id = 1) = %s").format(Identifier(TABLE))
            params.append(epoch.row)
        return condition, params

    def _guarded_insert(self, epoch: Epoch, expected: Mapping[UUID, int] | None) -> tuple[Composed, list[Any]]:
        condition, params = self._epoch_condition(epoch)
        if expected:
            condition = SQL("NOT EXISTS ({}) AND ").format(self._changed) + condition
            params = [list(expected), list(expected.values()), *params]
        return self._insert + SQL(" WHERE ") + condition + SQL(" RETURNING notification_id"), params

    def epoch_unchanged(self, curs: Any, pipeline: Any) -> bool:
        """Whether the database is still in the epoch this write expects (after an insert that wrote less)."""
        epoch = self.restore_epoch.expected() if self.restore_epoch is not None else None
        if epoch is None or epoch.events_table is None:
            return True
        condition, params = self._epoch_condition(epoch)
        curs.execute(SQL("SELECT ") + condition, params)
        pipeline.sync()
        row = curs.fetchone()
        return bool(row and (row[0] if not isinstance(row, dict) else next(iter(row.values()))))

    def _insert_stored_events(self, curs: Any, stored_events: Sequence[StoredEvent], **kwargs: Any) -> None:
        expected: Mapping[UUID, int] | None = kwargs.get("expected_versions")
        self._lock_table(curs)
        self._notify_channel(curs)
        columns = (
            [event.originator_id for event in stored_events],
            [event.originator_version for event in stored_events],
            [event.topic for event in stored_events],
            [event.state for event in stored_events],
        )
        epoch = self.restore_epoch.expected() if self.restore_epoch is not None else None
        if epoch is not None and epoch.events_table is not None:
            statement, params = self._guarded_insert(epoch, expected)
            curs.execute(statement, (*columns, *params))
        elif expected:
            curs.execute(self.insert_if_unchanged_statement, (*columns, list(expected), list(expected.values())))
        else:
            curs.execute(self.insert_columns_statement, columns)

    def _fetch_ids_after_insert_events(self, curs: Any, stored_events: Sequence[StoredEvent],
                                       **kwargs: Any) -> Sequence[int] | None:
        ids = super()._fetch_ids_after_insert_events(curs, stored_events, **kwargs)
        if len(ids or ()) != len(stored_events) and not kwargs.get("expected_versions"):
            raise StoreReplaced("the database was restored since this write was decided; retry the request")
        return ids

    select_events = _bounded(PostgresApplicationRecorder, "select_events")
    _insert_events_bounded = _bounded(PostgresApplicationRecorder, "insert_events")

    def insert_events(self, stored_events: Sequence[StoredEvent], **kwargs: Any) -> Sequence[int] | None:
        try:
            return self._insert_events_bounded(stored_events, **kwargs)
        except StoreReplaced:
            self.notice_restore()
            raise

    def notice_restore(self) -> None:
        """A write found the epoch changed: let the watch drop what this process holds before the retry."""
        if self.restore_epoch is not None:
            self.restore_epoch.check_quietly()

    select_notifications = _bounded(PostgresApplicationRecorder, "select_notifications")
    max_notification_id = _bounded(PostgresApplicationRecorder, "max_notification_id")

    def ping(self) -> None:
        """One round trip through the pool the writes use (no retry: the health checks want the truth)."""
        self.watch.raise_if_down()
        try:
            with self.datastore.get_connection() as connection:
                connection.execute("SELECT 1")
        except (InterfaceError, OperationalError) as error:
            _drain_if_lost(self.datastore.pool, error)  # the next check gets a fresh connection
            raise


class BoundedRetryAggregateRecorder(PostgresAggregateRecorder):
    """The snapshots' recorder, bounded the same way."""

    def __init__(self, datastore: Any, **kwargs: Any) -> None:
        super().__init__(datastore, **kwargs)
        self.watch = _watch_of(datastore)

    select_events = _bounded(PostgresAggregateRecorder, "select_events")
    insert_events = _bounded(PostgresAggregateRecorder, "insert_events")


class BoundedPostgresFactory(PostgresFactory):
    """eventsourcing's PostgreSQL factory with the pool bounded before it opens."""

    aggregate_recorder_class = BoundedRetryAggregateRecorder
    application_recorder_class = BoundedRetryPostgresRecorder

    def __init__(self, env: Any) -> None:
        super().__init__(env)
        pool = self.datastore.pool
        assert isinstance(pool.kwargs, dict)
        pool.kwargs.update(conninfo_to_dict(self.env.get(CONNECTION_OPTIONS) or ""))
        pool.connection_class = WatchedConnection
        pool_timeout = self.env.get(POOL_TIMEOUT)
        if pool_timeout:
            pool.timeout = float(pool_timeout)
        pool.reconnect_timeout = RECONNECT_TIMEOUT_SECONDS
        self._watch = watch_for(pool.kwargs)
        self._on_failure = _emptying(pool)
        self._watch.subscribe(self._on_failure)

    def close(self) -> None:
        self._watch.unsubscribe(self._on_failure)
        super().close()


def _emptying(pool: ConnectionPool[Any]) -> Any:
    """A watch listener that, once the database is known down, empties the pool and fails its waiters.

    The idle connections are suspect: after the outage each would fail its check, and psycopg_pool
    pauses (up to a second, doubling) between failed checks, so the first requests after the
    database returned would wait out the pool's timeout on them. Callers waiting for a connection
    would wait it out too: psycopg_pool has no public call to fail them; this is what its
    ``close()`` does to them (should the internals change, they wait out the timeout as before)."""

    def empty(failure: DatabaseFailure | None) -> None:
        if failure is None:
            return
        pool.drain()  # idle connections closed; those in use are replaced when they come back
        lock, waiting = getattr(pool, "_lock", None), getattr(pool, "_waiting", None)
        if lock is None or waiting is None:
            return
        with lock:
            released = list(waiting)
            waiting.clear()
        for client in released:
            client.fail(PoolTimeout(f"the database does not answer: {failure.reason}"))

    return empty


FACTORY_TOPIC = f"{__name__}:{BoundedPostgresFactory.__name__}"
RECORDER_TOPIC = f"{__name__}:{BoundedRetryPostgresRecorder.__name__}"
