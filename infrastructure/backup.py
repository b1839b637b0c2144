"""Backups of the whole database, and restoring them: ``pg_dump``/``pg_restore`` or SQLite's online backup.

PostgreSQL: one snapshot is exported from a REPEATABLE READ transaction
(``pg_export_snapshot``); the event count and last position are read in it and
``pg_dump --snapshot`` dumps every table as of that same snapshot, so the
numbers printed describe exactly what is in the file. The custom format
(``-Fc``) is compressed and lets ``pg_restore`` pick tables.

The connection reaches ``pg_dump``/``pg_restore`` through the ``PG*``
environment variables of the child process, never its arguments, so the
password does not show in ``ps``; their error output is redacted too.

SQLite: the sqlite3 online backup API copies a consistent image page by page
while the API keeps writing (WAL).

Files are written under a temporary name beside the target and renamed at the
end, so an interrupted backup never leaves a half-written file behind.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

import psycopg
from psycopg import sql

from infrastructure.database import DatabaseURL
from infrastructure.errors import ConfigError
from infrastructure.pg_connections import application_name, connect_arguments, connection_options
from infrastructure.restore_epoch import PG_EVENTS_TABLE, begin_new_epoch_sqlite

PG_MAGIC = b"PGDMP"
SQLITE_MAGIC = b"SQLite format 3\x00"
SQLITE_EVENTS_TABLE = "stored_events"
SQLITE_PAGES_PER_STEP = 1024
RESTORE_LOCK_TIMEOUT = "30s"  # a running API or worker holding locks fails the restore instead of hanging it
ERROR_LINES_MAX = 5
POLL_SECONDS = 0.2


class BackupFailed(Exception):
    """A backup or restore step failed; the message is one line, without secrets."""


@dataclass(frozen=True)
class BackupSummary:
    path: Path
    kind: str  # "postgres" | "sqlite"
    size_bytes: int
    events: int
    last_position: int


# --- files -------------------------------------------------------------------------------------


def file_kind(path: Path) -> str | None:
    """"postgres" (a pg_dump custom-format file), "sqlite" (a SQLite database) or None."""
    try:
        with path.open("rb") as file:
            head = file.read(len(SQLITE_MAGIC))
    except OSError:
        return None
    if head.startswith(PG_MAGIC):
        return "postgres"
    if head == SQLITE_MAGIC:
        return "sqlite"
    return None


def temporary_path(target: Path) -> Path:
    return target.with_name(f".{target.name}.{os.getpid()}.partial")


@contextmanager
def written_atomically(target: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it to ``target`` only if the block succeeds."""
    partial = temporary_path(target)
    try:
        yield partial
        os.replace(partial, target)
    finally:
        with suppress(FileNotFoundError):
            partial.unlink()


# --- PostgreSQL -------------------------------------------------------------------------------------


def pg_environment(database: DatabaseURL, connect_timeout: int) -> dict[str, str]:
    """The child's environment: the connection as PG* variables (never as arguments)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PG")}
    env.update(PGHOST=database.host, PGPORT=str(database.port), PGUSER=database.user, PGDATABASE=database.dbname,
               PGCONNECT_TIMEOUT=str(connect_timeout), PGAPPNAME=application_name())
    if database.password:
        env["PGPASSWORD"] = database.password
    return env


BACKUP_TCP_TIMEOUT_SECONDS = 60  # generous: a restore's COPY may keep the server busy


def _connect(database: DatabaseURL, connect_timeout: int) -> psycopg.Connection:
    try:
        # Keepalives, so a vanished server is noticed; no statement timeout: a backup or a restore may
        # rightly run one statement for minutes.
        options = connection_options(connect_timeout, BACKUP_TCP_TIMEOUT_SECONDS)
        return psycopg.connect(**connect_arguments(database, options))
    except psycopg.Error as exc:
        raise BackupFailed(f"cannot use {database.describe()}: {_one_line(str(exc), database)}") from None


def backup_postgres(database: DatabaseURL, target: Path, connect_timeout: int) -> BackupSummary:
    """Dump every table of the database, as of one snapshot, into ``target`` (custom format)."""
    with _connect(database, connect_timeout) as connection:
        connection.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
        snapshot = connection.execute("SELECT pg_export_snapshot()").fetchone()[0]  # type: ignore[index]
        events, last = _pg_event_counts(connection)
        with written_atomically(target) as partial:
            # The snapshot lives as long as this transaction, so pg_dump runs inside it.
            _run(["pg_dump", "--format=custom", f"--snapshot={snapshot}", "--no-password", f"--file={partial}"],
                 pg_environment(database, connect_timeout), database)
        connection.rollback()
    return BackupSummary(target, "postgres", target.stat().st_size, events, last)


def _pg_event_counts(connection: psycopg.Connection) -> tuple[int, int]:
    exists = connection.execute("SELECT to_regclass(%s) IS NOT NULL", (PG_EVENTS_TABLE,)).fetchone()
    if not exists or not exists[0]:
        return 0, 0
    row = connection.execute(
        sql.SQL("SELECT count(*), coalesce(max(notification_id), 0) FROM {}").format(sql.Identifier(PG_EVENTS_TABLE))
    ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def pg_database_holds_data(database: DatabaseURL, connect_timeout: int) -> list[str]:
    """The tables of the database that hold rows (schema bookkeeping aside); empty: safe to restore into."""
    with _connect(database, connect_timeout) as connection:
        tables = connection.execute(
            "SELECT schemaname, tablename FROM pg_tables "
            "WHERE schemaname NOT IN ('pg_catalog', 'information_schema') AND tablename <> 'alembic_version' "
            "ORDER BY 1, 2"
        ).fetchall()
        holding = []
        for schema, table in tables:
            query = sql.SQL("SELECT EXISTS (SELECT 1 FROM {}.{})").format(sql.Identifier(schema), sql.Identifier(table))
            if connection.execute(query).fetchone()[0]:  # type: ignore[index]
                holding.append(table)
        return holding


@dataclass(frozen=True)
class Session:
    """Another client connected to the database: an API or a worker still running, a psql."""

    pid: int
    application_name: str
    client: str  # its address, or "local" (a Unix socket)


# Client backends only: autovacuum and parallel workers also show the database's name.
_OTHER_SESSIONS = (
    "SELECT pid, coalesce(nullif(application_name, ''), 'unnamed'), coalesce(host(client_addr), 'local') "
    "FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
    "AND backend_type = 'client backend' ORDER BY 2, 3, 1"
)


def other_sessions(database: DatabaseURL, connect_timeout: int) -> list[Session]:
    """The other client sessions connected to the database."""
    with _connect(database, connect_timeout) as connection:
        return [Session(*row) for row in connection.execute(_OTHER_SESSIONS).fetchall()]


def terminate_other_sessions(database: DatabaseURL, connect_timeout: int) -> list[Session]:
    """End every other client session of the database (``pg_terminate_backend``); the sessions ended.

    Needs the right to signal them (superuser, their role, or ``pg_signal_backend``);
    without it the one-line error says so. Their processes reconnect by themselves."""
    with _connect(database, connect_timeout) as connection:
        try:
            sessions = [Session(*row) for row in connection.execute(_OTHER_SESSIONS).fetchall()]
            for session in sessions:
                connection.execute("SELECT pg_terminate_backend(%s)", (session.pid,))
        except psycopg.Error as exc:
            raise BackupFailed(f"cannot end the other sessions: {_one_line(str(exc), database)}") from None
    return sessions


def describe_sessions(sessions: list[Session], shown_max: int = 5) -> str:
    """"invario-serve from 10.0.0.7 (2), psql from local (1)": who, from where, how many."""
    counts: dict[tuple[str, str], int] = {}
    for session in sessions:
        counts[(session.application_name, session.client)] = counts.get((session.application_name, session.client), 0) + 1
    parts = [f"{name} from {client} ({count})" for (name, client), count in list(counts.items())[:shown_max]]
    return ", ".join(parts) + (", ..." if len(counts) > shown_max else "")


def restore_postgres(database: DatabaseURL, source: Path, connect_timeout: int) -> None:
    """Restore a custom-format dump into the database, all or nothing (one transaction).

    ``--clean --if-exists`` replaces the objects the dump holds; ``--no-owner
    --no-acl`` makes the restoring role their owner, so a dump restores into a
    database with other roles.
    """
    env = pg_environment(database, connect_timeout)
    env["PGOPTIONS"] = f"-c lock_timeout={RESTORE_LOCK_TIMEOUT}"
    _run(["pg_restore", "--clean", "--if-exists", "--single-transaction", "--exit-on-error", "--no-owner",
          "--no-acl", "--no-password", f"--dbname={database.dbname}", str(source)], env, database)


def _run(args: list[str], env: dict[str, str], database: DatabaseURL) -> None:
    """Run a PostgreSQL client program; Ctrl-C stops it (and is re-raised); failure is one line."""
    try:
        process = subprocess.Popen(args, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,  # noqa: S603
                                   stderr=subprocess.PIPE, start_new_session=True)
    except OSError as exc:
        raise ConfigError(f"cannot run {args[0]}: {exc.strerror} (install the PostgreSQL client programs, "
                          "the same major version as the server or newer)") from None
    try:
        _, stderr = process.communicate()
    except KeyboardInterrupt:
        process.terminate()
        with suppress(subprocess.TimeoutExpired):
            process.wait(timeout=10)
        if process.poll() is None:
            process.kill()
            process.wait()
        raise
    if process.returncode != 0:
        lines = [line for line in stderr.decode(errors="replace").splitlines() if line.strip()]
        detail = " / ".join(lines[:ERROR_LINES_MAX]) or f"exit status {process.returncode}"
        raise BackupFailed(f"{args[0]} failed: {_one_line(detail, database)}")


def _one_line(text: str, database: DatabaseURL) -> str:
    line = " ".join(text.split())
    if database.password:
        line = line.replace(database.password, "***")
    return line


# --- SQLite ------------------------------------------------------------------------------------------


def backup_sqlite(
    database: DatabaseURL, target: Path, on_progress: Callable[[int, int], None] | None = None
) -> BackupSummary:
    """Copy the database file with the online backup API (consistent while others write)."""
    assert database.path is not None
    if not database.path.exists():
        raise BackupFailed(f"{database.describe()} does not exist")
    with written_atomically(target) as partial:
        source = sqlite3.connect(database.path)
        try:
            destination = sqlite3.connect(partial)
            try:
                source.backup(destination, pages=SQLITE_PAGES_PER_STEP,
                              progress=(lambda _s, left, total: on_progress(total - left, total)) if on_progress else None)
                events, last = _sqlite_event_counts(destination)
            finally:
                destination.close()
        except sqlite3.Error as exc:
            raise BackupFailed(f"cannot back up {database.describe()}: {exc}") from None
        finally:
            source.close()
    return BackupSummary(target, "sqlite", target.stat().st_size, events, last)


def _sqlite_event_counts(connection: sqlite3.Connection) -> tuple[int, int]:
    found = connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                               (SQLITE_EVENTS_TABLE,)).fetchone()
    if not found:
        return 0, 0
    count, last = connection.execute(f"SELECT count(*), coalesce(max(rowid), 0) FROM {SQLITE_EVENTS_TABLE}").fetchone()  # noqa: S608
    return int(count), int(last)


def sqlite_database_holds_data(database: DatabaseURL) -> list[str]:
    assert database.path is not None
    if not database.path.exists():
        return []
    connection = sqlite3.connect(database.path)
    try:
        tables = [row[0] for row in connection.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
            "AND name <> 'alembic_version' ORDER BY name")]
        return [t for t in tables if connection.execute(f'SELECT EXISTS (SELECT 1 FROM "{t}")').fetchone()[0]]  # noqa: S608
    finally:
        connection.close()


def restore_sqlite(
    database: DatabaseURL, source: Path, on_progress: Callable[[int, int], None] | None = None
) -> None:
    """Replace the database's content with the backup's, through the backup API (one atomic step for readers)."""
    assert database.path is not None
    database.path.parent.mkdir(parents=True, exist_ok=True)
    # Through a copy that already holds a new restore epoch, so that running processes see the
    # epoch change in the same step as the data (infrastructure.restore_epoch).
    staged = temporary_path(database.path)
    try:
        _copy_sqlite(sqlite3.connect(f"file:{source}?mode=ro", uri=True), staged)
        with closing(sqlite3.connect(staged)) as copy:
            begin_new_epoch_sqlite(copy)
        backup = sqlite3.connect(f"file:{staged}?mode=ro", uri=True)
        try:
            destination = sqlite3.connect(database.path, timeout=30)
            try:
                backup.backup(destination, pages=0,
                              progress=(lambda _s, left, total: on_progress(total - left, total)) if on_progress else None)
            finally:
                destination.close()
        finally:
            backup.close()
    except sqlite3.Error as exc:
        raise BackupFailed(f"cannot restore into {database.describe()}: {exc}") from None
    finally:
        with suppress(FileNotFoundError):
            staged.unlink()


def _copy_sqlite(source: sqlite3.Connection, target: Path) -> None:
    try:
        with closing(sqlite3.connect(target)) as destination:
            source.backup(destination)
    finally:
        source.close()
