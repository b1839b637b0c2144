"""What the operator commands share: exit codes, failing with one line, the runtime, logging, --tenant.

Every ``*_cmds.py`` module and ``main.py`` take these from here, so no command
module imports ``main.py`` (which imports them all to register their commands).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID

import typer

from domain.errors import TenantNotFound
from infrastructure.errors import ConfigError, DatabaseUnavailable
from infrastructure.logging_setup import CurrentStream

if TYPE_CHECKING:
    from infrastructure.runtime import Runtime

EXIT_USAGE = 2
EXIT_CONFIG = 2
EXIT_DATABASE = 3
EXIT_APART = 4  # the read models and the log disagree, or their tables are missing
EXIT_PORT_BUSY = 5  # invario serve: the address to listen on is taken by another process
EXIT_SESSIONS_CONNECTED = 6  # invario restore: other sessions are connected to the database (PostgreSQL)
EXIT_PROJECTION_FAILED = 1  # like a failing follower of 'worker --once' or an inconsistent restore
EXIT_INTERRUPTED = 130


def fail(message: str, code: int) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    typer.secho(f"invario: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def read_bounded(path: Path, bytes_max: int, what: str, too_large: str) -> bytes:
    """A file given on the command line, read at most ``bytes_max`` bytes of it; unreadable or
    larger is a one-line usage failure (``what``: the argument's name; ``too_large``: why)."""
    try:
        with path.open("rb") as file:
            data = file.read(bytes_max + 1)
    except OSError as exc:
        raise fail(f"{what}: cannot read {path}: {exc.strerror}", EXIT_USAGE) from None
    if len(data) > bytes_max:
        raise fail(f"{what}: {path} is larger than {too_large}", EXIT_USAGE)
    return data


@contextmanager
def operator_errors() -> Iterator[None]:
    """Turn expected failures into one clear line and an exit code, never a traceback."""
    try:
        yield
    except ConfigError as exc:
        typer.secho(f"invario: configuration error: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_CONFIG) from None
    except DatabaseUnavailable as exc:
        typer.secho(f"invario: database unavailable: {exc}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_DATABASE) from None
    except Exception as exc:
        # Deferred: only a failing command pays for loading the error table and the projections.
        from infrastructure.db_errors import classify_database_error
        from projections.following.follower import ProjectionFailed

        if isinstance(exc, ProjectionFailed):  # a rebuild or restore met an event a read model cannot apply
            typer.secho(f"invario: {exc}; the events are untouched: see ops/RUNBOOK.md, INC-14 Failing projection",
                        err=True, fg=typer.colors.RED)
            raise typer.Exit(EXIT_PROJECTION_FAILED) from None
        failure = classify_database_error(exc)  # the database failed mid-command (docs/failure-modes.md)
        if failure is None:
            raise
        typer.secho(f"invario: {failure.code.replace('_', ' ')}: {failure.reason}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_DATABASE) from None


def prepare_schema(runtime: Runtime) -> None:
    """The embedded store migrates itself; on PostgreSQL that is an explicit operator step."""
    # Deferred: alembic is loaded only by the commands that open a store.
    from infrastructure.migrate import current_revision, head_revision, is_current, upgrade_to_head

    if not runtime.database.is_postgres:
        upgrade_to_head(runtime.engine)
        if runtime.restore_epoch is not None:
            runtime.restore_epoch.check_quietly()  # a new file's epoch is known from its first write on
    elif not is_current(runtime.engine):
        runtime.close()
        raise ConfigError(
            f"the schema is at revision {current_revision(runtime.engine)}, not {head_revision()}: "
            "run 'invario migrate' first"
        )


@contextmanager
def prepared_runtime(*, following: bool = False) -> Iterator[Runtime]:
    """An opened runtime with its schema ready, closed afterwards; failures are one line.
    ``following``: the worker's (bounded statements, a watched database)."""
    # Deferred: opening a store loads SQLAlchemy and the event store; --help must not.
    from infrastructure.runtime import open_runtime

    with operator_errors():
        runtime = open_runtime(following=following)
        prepare_schema(runtime)
    try:
        with operator_errors():
            yield runtime
    finally:
        runtime.close()


@contextmanager
def read_models_runtime(*, following: bool = False) -> Iterator[Runtime]:
    """``prepared_runtime``, where a failing statement (lost tables, a lost connection) is one line."""
    with prepared_runtime(following=following) as runtime, _database_errors(runtime):
        yield runtime


@contextmanager
def _database_errors(runtime: Runtime) -> Iterator[None]:
    """A failing database statement (lost tables, a lost connection) is one line, never a traceback."""
    # Deferred: SQLAlchemy and the read models' tables are loaded only by the commands that open a store.
    from sqlalchemy import inspect
    from sqlalchemy.exc import DBAPIError

    from projections.following.registry import READ_MODELS, tables_of

    try:
        yield
    except DBAPIError as exc:
        try:
            with runtime.engine.connect() as connection:
                existing = set(inspect(connection).get_table_names())
        except DBAPIError:
            existing = None  # the database itself is gone
        wanted = {t.name for name in READ_MODELS for t in tables_of(name)}
        if existing is not None and not wanted <= existing:
            raise fail(f"read model tables are missing ({', '.join(sorted(wanted - existing))}): "
                       "run 'invario projections rebuild --all'", EXIT_APART) from None
        detail = " ".join(str(exc.orig or exc).split())[:300] or type(exc).__name__
        raise fail(f"database error: {detail}", EXIT_DATABASE) from None


_OUR_LOGGERS = ("invario", "projections", "infrastructure", "interfaces")


def worker_logging() -> None:
    """JSON lines on stdout (INVARIO_LOG_LEVEL, INVARIO_LOG_FORMAT), unless a host set up logging (a test runner)."""
    from infrastructure.logging_setup import configure_logging
    from infrastructure.settings import get_settings

    if logging.getLogger().handlers:
        return
    with operator_errors():
        settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)


def stop_on_signals(stop: threading.Event) -> dict[int, Any]:
    def request_stop(signum: int, _frame: Any) -> None:
        logging.getLogger("invario.worker").info("stopping after the current batch (%s)", signal.Signals(signum).name)
        stop.set()

    previous = {}
    if threading.current_thread() is threading.main_thread():
        for signum in (signal.SIGINT, signal.SIGTERM):
            previous[signum] = signal.signal(signum, request_stop)
    return previous


STOP_GRACE_SECONDS = 10.0  # after a stop request, the current batch may wait this long for the database


def cut_database_waits_on_stop(runtime: Runtime, stop: threading.Event) -> None:
    """Once a stop is requested and ``STOP_GRACE_SECONDS`` have passed, cut off every connection
    still waiting for the database, so that a lost connection (its request or answer dropped on the
    way) cannot keep the process from stopping: the batch fails, its work is done again by the next run."""
    watch = runtime.watch
    if watch is None:
        return

    def cut() -> None:
        stop.wait()
        time.sleep(STOP_GRACE_SECONDS)
        watch.cut_waits(0, "stopping")

    threading.Thread(target=cut, name="invario-stop-deadline", daemon=True).start()


def log_to_stderr(level: int) -> None:
    """Log lines on stderr, unless the process already has logging set up (a test runner, a host)."""
    root = logging.getLogger()
    if root.handlers:
        return
    handler = CurrentStream("stderr")
    handler.setLevel(level)
    # Our own INFO lines; other libraries' (alembic's migration chatter) only from WARNING up.
    handler.addFilter(lambda record: record.levelno >= logging.WARNING or record.name.startswith(_OUR_LOGGERS))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root.addHandler(handler)
    root.setLevel(min(root.level, level))


def tenant_option(runtime: Runtime, tenant: str | None) -> UUID | None:
    """A ``--tenant`` given by name or id, which must exist; ``None`` means every tenant."""
    if tenant is None:
        return None
    try:
        tenant_id = UUID(tenant)
    except ValueError:
        try:
            return runtime.ledger.get_tenant_by_name(tenant).id
        except TenantNotFound:
            raise fail(f"--tenant: no tenant named {tenant!r}", EXIT_USAGE) from None
    try:
        return runtime.ledger.get_tenant(tenant_id).id
    except TenantNotFound:
        raise fail(f"--tenant: no tenant with id {tenant}", EXIT_USAGE) from None
