"""Opening the store: settings become the ledger, its engine and its conflict lane.

``open_runtime()`` maps ``Settings`` onto the eventsourcing environment, opens the
event store and a SQLAlchemy engine on the same database, and turns every way
this can fail into a one-line ``ConfigError`` or ``DatabaseUnavailable``;
``resolve_auth_pepper`` finds the secret API keys are HMAC'd under. What is built
on an opened runtime (services, followers, jobs) is built in ``interfaces.bootstrap``.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg
from psycopg.conninfo import make_conninfo
from sqlalchemy import Engine, create_engine, event, text

from application.ledger import Ledger
from infrastructure import fast_events, pg_store, recorders
from infrastructure.bulk_reads import PostgresBulkReads
from infrastructure.database import DatabaseURL
from infrastructure.errors import ConfigError, DatabaseUnavailable
from infrastructure.pg_connections import connect_arguments, connection_options
from infrastructure.pg_watch import DatabaseWatch, WatchedConnection, watch_for
from infrastructure.restore_epoch import RestoreEpochWatch, read_epoch
from infrastructure.settings import SECRET_LENGTH_MIN, Settings, get_settings
from infrastructure.telemetry import TraceContext

SQLITE_BUSY_TIMEOUT_SECONDS = 30
CONNECTION_AGE_MAX_SECONDS = 300  # pooled PostgreSQL connections are replaced after this long
CONFLICT_LANE_LOCK_KEY = 0x1A7A_C0DE  # pg_advisory_lock key of the group-commit conflict lane
PEPPER_FILE_NAME = "auth-pepper"


def statement_timeout_seconds(settings: Settings, *, serving: bool = False, following: bool = False) -> float:
    """The API's statements and the worker's are bounded; an operator's command is not (0)."""
    if serving:
        return settings.db_statement_timeout_seconds
    if following:
        return settings.worker_statement_timeout_seconds
    return 0.0


def postgres_options(settings: Settings, *, serving: bool = False, following: bool = False) -> dict[str, Any]:
    """libpq options of every connection: the API's and the worker's statements are bounded too
    (see pg_connections)."""
    return connection_options(settings.db_connect_timeout_seconds, settings.db_tcp_timeout_seconds,
                              statement_timeout_seconds(settings, serving=serving, following=following))


def eventsourcing_env(settings: Settings, database: DatabaseURL, options: dict[str, Any] | None = None) -> dict[str, str]:
    """The eventsourcing library's settings for this database; ``options``: libpq's (``postgres_options``)."""
    env = {
        "CREATE_TABLE": "y",
        "AGGREGATE_CACHE_MAXSIZE": str(settings.aggregate_cache_size),
        "AGGREGATE_CACHE_FASTFORWARD": "y",
        # The stored bytes of eventsourcing's JSONTranscoder, written and read with orjson (fast_events).
        "TRANSCODER_TOPIC": fast_events.TRANSCODER_TOPIC,
    }
    if settings.aggregate_cache_size == 0:
        del env["AGGREGATE_CACHE_MAXSIZE"]
    if database.is_postgres:
        env.update(
            PERSISTENCE_MODULE=pg_store.FACTORY_TOPIC,  # bounded connections, checkouts and reconnections
            POSTGRES_DBNAME=database.dbname,
            POSTGRES_HOST=database.host,
            POSTGRES_PORT=str(database.port),
            POSTGRES_USER=database.user,
            POSTGRES_PASSWORD=database.password,
            POSTGRES_CONNECT_TIMEOUT=str(settings.db_connect_timeout_seconds),
            POSTGRES_POOL_SIZE=str(settings.db_pool_size),
            POSTGRES_MAX_OVERFLOW=str(settings.db_pool_size),
            POSTGRES_LOCK_TIMEOUT=str(settings.db_lock_timeout_seconds),
            # No POSTGRES_PRE_PING: a round trip on every checkout; a dead pooled
            # connection fails its statement instead, which empties the pool and
            # is retried once (pg_store.bounded_attempts).
            # Sessions take settings such as default_transaction_read_only when they
            # connect: replacing pooled connections now and then lets a database that
            # turned writable again (a failover finished) be written without a restart.
            POSTGRES_CONN_MAX_AGE=str(CONNECTION_AGE_MAX_SECONDS),
            # Bounded retries (a dead database answers fast), and idempotency records
            # written in the events' transaction.
            APPLICATION_RECORDER_TOPIC=recorders.POSTGRES_TOPIC,
            POSTGRES_CONNECTION_OPTIONS=make_conninfo("", **database.libpq_options(),
                                                      **(options if options is not None else postgres_options(settings))),
            POSTGRES_POOL_TIMEOUT=str(settings.db_pool_timeout_seconds),
        )
    else:
        assert database.path is not None
        env.update(
            PERSISTENCE_MODULE="eventsourcing.sqlite",
            SQLITE_DBNAME=str(database.path),
            SQLITE_LOCK_TIMEOUT=str(SQLITE_BUSY_TIMEOUT_SECONDS),
            APPLICATION_RECORDER_TOPIC=recorders.SQLITE_TOPIC,  # idempotency records in the events' transaction
        )
    return env


@dataclass
class Runtime:
    """The opened parts of one process: the write side and the read-side engine."""

    settings: Settings
    database: DatabaseURL
    ledger: Ledger
    engine: Engine
    _closed: bool = field(default=False, repr=False)
    _lane: PostgresConflictLane | SqliteConflictLane | None = field(default=None, repr=False)
    watch: DatabaseWatch | None = field(default=None, repr=False)  # started for the API (PostgreSQL)
    restore_epoch: RestoreEpochWatch | None = field(default=None, repr=False)  # see infrastructure.restore_epoch

    def check_database(self) -> None:
        """Raise unless the database answers both ways the API reaches it: the event store's pool
        (writes, aggregates) and the engine (read models). A health check that used only one could say
        ok while the other still fails."""
        if self.watch is not None:
            self.watch.raise_if_down()
        ping = getattr(self.ledger.recorder, "ping", None)
        if ping is not None:
            ping()
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def forget_held_state(self) -> None:
        """After a restore: drop the aggregates this process holds and its pooled connections (their
        prepared statements name the dropped tables' and types' OIDs); all is read and opened again."""
        self.ledger.forget_held_state()
        datastore = getattr(self.ledger.recorder, "datastore", None)
        pool = getattr(datastore, "pool", None)
        if pool is not None:
            with contextlib.suppress(Exception):  # a closing pool has nothing to drain
                pool.drain()
        self.engine.dispose()
        if self._lane is not None:
            self._lane.discard()

    def close(self) -> None:
        """Drain the group-commit writer (queued writes are committed), then close."""
        if self._closed:
            return
        self._closed = True
        if self.restore_epoch is not None:
            self.restore_epoch.stop()
        if self.watch is not None:
            self.watch.stop()
        self.ledger.close()
        if self._lane is not None:
            self._lane.close()
        self.engine.dispose()


class PostgresConflictLane:
    """A session advisory lock that lets one conflicted batch at a time, across every
    process on the database, re-decide and commit (see ``application.group_commit``).

    One dedicated connection per process, opened on first use: the lock belongs to a
    session, and only batches that already met a conflict ever ask for it.
    """

    def __init__(self, database: DatabaseURL, options: dict[str, Any]) -> None:
        self._database, self._options = database, options
        self._connection: psycopg.Connection[Any] | None = None
        self._in_process = threading.Lock()  # the session lock is re-entrant; threads must not share it
        self._stale = False  # the database was restored: connect afresh on next use

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._in_process:
            connection = self._connect()
            connection.execute("SELECT pg_advisory_lock(%s)", (CONFLICT_LANE_LOCK_KEY,))
            try:
                yield
            finally:
                connection.execute("SELECT pg_advisory_unlock(%s)", (CONFLICT_LANE_LOCK_KEY,))

    def _connect(self) -> psycopg.Connection[Any]:
        if self._stale and self._connection is not None:
            self._connection.close()
        self._stale = False
        if self._connection is None or self._connection.closed:
            self._connection = WatchedConnection.connect(
                **connect_arguments(self._database, self._options), autocommit=True
            )
        return self._connection

    def close(self) -> None:
        with self._in_process:
            if self._connection is not None:
                self._connection.close()

    def discard(self) -> None:
        """Connect afresh on next use (without waiting: the caller may be inside the lane)."""
        self._stale = True


class SqliteConflictLane:
    """The same lane for processes sharing one SQLite file: an exclusive ``flock`` on a
    lock file beside it (``invario serve --workers N``, an import beside the API).

    SQLite serialises the commits themselves, but separate processes still decide on
    their own cached state; without a lane a conflicted batch can lose to the others
    until its retries run out, as on PostgreSQL.
    """

    def __init__(self, path: Path) -> None:
        self._path = path.with_name(path.name + ".conflict-lane")
        self._in_process = threading.Lock()  # flock is per open file: threads of one process queue here

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._in_process, self._path.open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def close(self) -> None:
        """Nothing is held between batches."""

    def discard(self) -> None:
        """Nothing to connect afresh."""


def open_runtime(settings: Settings | None = None, *, serving: bool = False, following: bool = False) -> Runtime:
    """The process's runtime. ``serving``: for the HTTP API; ``following``: for the worker. Their
    statements are bounded (``INVARIO_DB_STATEMENT_TIMEOUT_SECONDS``, ``INVARIO_WORKER_STATEMENT_TIMEOUT_SECONDS``)
    and their database is watched (``pg_watch``): a silent database, or a connection silent past its
    statement's bound, is cut off instead of waited for."""
    settings = settings or get_settings()
    database = DatabaseURL.parse(settings.database_url)
    if database.is_postgres:
        _check_postgres_reachable(database, postgres_options(settings))
    else:
        _prepare_sqlite_file(database)
    options = postgres_options(settings, serving=serving, following=following)
    ledger = _open_ledger(settings, database, options)
    lane: PostgresConflictLane | SqliteConflictLane
    watch = None
    if database.is_postgres:
        lane = PostgresConflictLane(database, options)
    else:
        assert database.path is not None
        lane = SqliteConflictLane(database.path)
    ledger.conflict_lane = lane.held
    if database.is_postgres:
        snapshots = ledger.snapshots.recorder if ledger.snapshots is not None else None
        ledger.bulk_reads = PostgresBulkReads(ledger.recorder, snapshots)
        if serving or following:
            watch = _start_watch(settings, database, statement_timeout_seconds(
                settings, serving=serving, following=following))
    engine = _create_engine(database, settings, options)
    runtime = Runtime(settings, database, ledger, engine, _lane=lane, watch=watch)
    _watch_restore_epoch(runtime)
    return runtime


def _start_watch(settings: Settings, database: DatabaseURL, statement_seconds: float) -> DatabaseWatch:
    """The heartbeat, and the bound on one wait for the server: past its statement timeout the
    server has answered (a result, or the timeout's error), so a connection still silent a TCP
    timeout later lost its request or its answer (a middlebox that acknowledged bytes and dropped
    them, a half-healed partition) and would wait forever."""
    watch = watch_for(connect_arguments(database, {}))
    wait_max_seconds = statement_seconds + settings.db_tcp_timeout_seconds if statement_seconds > 0 else 0.0
    watch.start(connect_arguments(database, postgres_options(settings)), settings.db_probe_timeout_seconds,
                wait_max_seconds)
    return watch


def _watch_restore_epoch(runtime: Runtime) -> None:
    """The process's restore epoch, known from now on: every write carries it (the recorder's insert
    checks it) and every batch pins it; a change drops the held state and the pooled connections.
    Long-running processes also ``start()`` its periodic check (``interfaces.bootstrap``)."""
    epoch = RestoreEpochWatch(lambda: read_epoch(runtime.engine), runtime.settings.restore_epoch_check_seconds)
    epoch.subscribe(runtime.forget_held_state)
    with contextlib.suppress(Exception):  # an unreachable database is reported by the first use, not here
        epoch.check()
    runtime.ledger.recorder.restore_epoch = epoch  # type: ignore[attr-defined]
    runtime.ledger.pin_writes = epoch.pinned
    runtime.restore_epoch = epoch


def _check_postgres_reachable(database: DatabaseURL, options: dict[str, Any]) -> None:
    try:
        psycopg.connect(**connect_arguments(database, options)).close()
    except psycopg.Error as exc:
        reason = " ".join(line.strip() for line in str(exc).splitlines() if line.strip()) or type(exc).__name__
        raise DatabaseUnavailable(f"cannot use {database.describe()}: {reason}") from None


def _prepare_sqlite_file(database: DatabaseURL) -> None:
    assert database.path is not None
    try:
        database.path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"cannot create the directory for {database.describe()}: {exc.strerror}") from None


def _open_ledger(settings: Settings, database: DatabaseURL, options: dict[str, Any]) -> Ledger:
    try:
        ledger = Ledger(env=eventsourcing_env(settings, database, options))
    except Exception as exc:  # the store's own errors differ per backend
        raise DatabaseUnavailable(f"cannot open the event store in {database.describe()}: {exc}") from None
    fast_events.install(ledger)
    ledger.start_group_commit(settings.write_batch_size_max, settings.write_batch_wait_ms / 1000,
                              caller_context=TraceContext())
    return ledger


def _create_engine(database: DatabaseURL, settings: Settings, options: dict[str, Any]) -> Engine:
    if database.is_postgres:
        engine = create_engine(
            database.sqlalchemy_url(),
            pool_size=settings.db_pool_size,
            pool_pre_ping=True,
            pool_recycle=CONNECTION_AGE_MAX_SECONDS,
            pool_timeout=settings.db_pool_timeout_seconds,
            connect_args=options,
        )

        @event.listens_for(engine, "do_connect")
        def _watched(_dialect, _record, cargs, cparams):  # type: ignore[no-untyped-def]
            return WatchedConnection.connect(*cargs, **cparams)  # can be cut off when the database goes silent

        return engine
    engine = create_engine(database.sqlalchemy_url(), connect_args={"timeout": SQLITE_BUSY_TIMEOUT_SECONDS})

    @event.listens_for(engine, "connect")
    def _sqlite_pragmas(dbapi_connection, _record):  # type: ignore[no-untyped-def]
        # WAL lets followers read while the API writes; the event store sets it too.
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.close()

    return engine


def resolve_auth_pepper(settings: Settings, database: DatabaseURL) -> str:
    """The pepper API keys are HMAC'd under.

    ``INVARIO_AUTH_PEPPER`` when set (validated to >= 32 characters by the settings).
    On PostgreSQL it is required. With the embedded SQLite store only, a random
    pepper is generated once into ``auth-pepper`` beside the database file (mode
    0600), so ``make run`` works out of the box; this is announced on stderr.
    """
    if settings.auth_pepper is not None:
        return settings.auth_pepper.get_secret_value()
    if database.is_postgres:
        raise ConfigError(
            f"INVARIO_AUTH_PEPPER is not set: the API needs a secret of at least {SECRET_LENGTH_MIN} characters "
            "to protect API keys (generate one: python3 -c 'import secrets; print(secrets.token_urlsafe(48))')"
        )
    assert database.path is not None
    return _sqlite_pepper_file(database.path.parent / PEPPER_FILE_NAME)


def _sqlite_pepper_file(path: os.PathLike[str]) -> str:
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return _read_pepper_file(path)
    except OSError as exc:
        raise ConfigError(f"cannot create the auth pepper file {os.fspath(path)}: {exc.strerror}") from None
    with os.fdopen(descriptor, "w") as file:
        file.write(secrets.token_urlsafe(48) + "\n")
    print(
        f"invario: generated a random auth pepper in {os.fspath(path)} (mode 0600) for the embedded store; "
        "API keys depend on it: keep it with the database, or set INVARIO_AUTH_PEPPER",
        file=sys.stderr,
    )
    return _read_pepper_file(path)


def _read_pepper_file(path: os.PathLike[str]) -> str:
    try:
        pepper = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"cannot read the auth pepper file {os.fspath(path)}: {exc.strerror}") from None
    if len(pepper) < SECRET_LENGTH_MIN:
        raise ConfigError(
            f"the auth pepper file {os.fspath(path)} holds fewer than {SECRET_LENGTH_MIN} characters; "
            "fix it or set INVARIO_AUTH_PEPPER"
        )
    return pepper
