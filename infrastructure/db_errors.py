"""What a database error means for the service: the one classification of infrastructure failures.

Every layer that talks to the database wraps the driver's errors differently:
eventsourcing raises ``eventsourcing.persistence.OperationalError`` (and
``InterfaceError``, ``InternalError``...) ``from`` the psycopg error, SQLAlchemy
raises ``sqlalchemy.exc.OperationalError`` with the driver error in ``.orig``,
psycopg_pool raises ``PoolTimeout``, SQLite raises ``sqlite3.OperationalError``.
``classify_database_error`` looks through all of them (the exception, its
causes and contexts, ``.orig``) for the first thing it recognises and answers
with one of a few stable codes, or ``None`` when the error is not a failure of
the database (a programming error, a constraint the application should have
handled): those stay unexpected and are logged with their traceback.

``DatabaseGate`` remembers, per process, that the database just failed to answer,
so that the requests that follow fail at once instead of each waiting
``INVARIO_DB_CONNECT_TIMEOUT_SECONDS`` on a pool with no connections; one request
per hold period goes through to find out whether the database is back.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import psycopg
import psycopg_pool
from eventsourcing import persistence

from infrastructure.errors import DatabaseUnavailable

DATABASE_UNAVAILABLE = "database_unavailable"
DATABASE_READ_ONLY = "database_read_only"
DATABASE_BUSY = "database_busy"
DATABASE_DISK_FULL = "database_disk_full"
CODES = (DATABASE_UNAVAILABLE, DATABASE_READ_ONLY, DATABASE_BUSY, DATABASE_DISK_FULL)

# SQLSTATEs (https://www.postgresql.org/docs/current/errcodes-appendix.html) that are failures of
# the database rather than of the request. A class ("08") covers all its codes.
_CODE_BY_SQLSTATE = {
    "08": DATABASE_UNAVAILABLE,  # connection exception
    "57P01": DATABASE_UNAVAILABLE,  # admin_shutdown
    "57P02": DATABASE_UNAVAILABLE,  # crash_shutdown
    "57P03": DATABASE_UNAVAILABLE,  # cannot_connect_now (starting up, shutting down, recovering)
    "53300": DATABASE_UNAVAILABLE,  # too_many_connections
    "53200": DATABASE_UNAVAILABLE,  # out_of_memory
    "58030": DATABASE_UNAVAILABLE,  # io_error
    "25006": DATABASE_READ_ONLY,  # read_only_sql_transaction (default_transaction_read_only, hot standby)
    "55P03": DATABASE_BUSY,  # lock_not_available (INVARIO_DB_LOCK_TIMEOUT_SECONDS ran out)
    "57014": DATABASE_BUSY,  # query_canceled (statement_timeout)
    "40001": DATABASE_BUSY,  # serialization_failure
    "40P01": DATABASE_BUSY,  # deadlock_detected
    "53100": DATABASE_DISK_FULL,  # disk_full
}

_SQLITE_MESSAGES = (
    ("database is locked", DATABASE_BUSY),
    ("database table is locked", DATABASE_BUSY),
    ("disk is full", DATABASE_DISK_FULL),
    ("readonly database", DATABASE_READ_ONLY),
    ("unable to open database", DATABASE_UNAVAILABLE),
    ("disk i/o error", DATABASE_UNAVAILABLE),
)


@dataclass(frozen=True)
class DatabaseFailure:
    """A recognised failure of the database: a stable ``code`` and the driver's one-line reason."""

    code: str
    reason: str
    sqlstate: str | None = None


def classify_database_error(exc: BaseException) -> DatabaseFailure | None:
    """The failure of the database behind ``exc``, or ``None`` if ``exc`` is not one."""
    for error in _causes(exc):
        code = _classify_one(error)
        if code is not None:
            return DatabaseFailure(code, _one_line(error), getattr(error, "sqlstate", None))
        if isinstance(error, psycopg.Error) and getattr(error, "sqlstate", None):
            return None  # the server answered with an error of the request itself
    return None


def _classify_one(error: BaseException) -> str | None:
    sqlstate = getattr(error, "sqlstate", None)
    if isinstance(error, psycopg.Error) and sqlstate:
        return _CODE_BY_SQLSTATE.get(sqlstate) or _CODE_BY_SQLSTATE.get(sqlstate[:2])
    if isinstance(error, (psycopg_pool.PoolTimeout, psycopg_pool.PoolClosed)):
        return DATABASE_UNAVAILABLE
    if isinstance(error, (psycopg.OperationalError, psycopg.InterfaceError)):
        return DATABASE_UNAVAILABLE  # no SQLSTATE: the connection itself failed
    if isinstance(error, sqlite3.OperationalError):
        message = str(error).lower()
        return next((code for text, code in _SQLITE_MESSAGES if text in message), None)
    if isinstance(error, (persistence.OperationalError, persistence.InterfaceError)) and error.__cause__ is None:
        return DATABASE_UNAVAILABLE  # eventsourcing's own (pool exhausted, closed)
    if isinstance(error, DatabaseUnavailable):
        return DATABASE_UNAVAILABLE
    return None


def _causes(exc: BaseException, limit: int = 12) -> Iterator[BaseException]:
    """``exc``, then what it wraps: SQLAlchemy's ``.orig``, ``__cause__`` and ``__context__`` (bounded)."""
    seen: set[int] = set()
    pending: list[BaseException] = [exc]
    while pending and len(seen) < limit:
        error = pending.pop(0)
        if id(error) in seen:
            continue
        seen.add(id(error))
        yield error
        for wrapped in (getattr(error, "orig", None), error.__cause__, error.__context__):
            if isinstance(wrapped, BaseException):
                pending.append(wrapped)


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (text or type(error).__name__)[:300]


class DatabaseGate:
    """Fails requests fast for ``hold_seconds`` after the database failed to answer.

    After the hold, the next request is let through as a trial (and the gate stays
    shut for the others for another hold); a success opens the gate for everyone.
    """

    def __init__(self, hold_seconds: float) -> None:
        self.hold_seconds = hold_seconds
        self._lock = threading.Lock()
        self._shut_until: float | None = None
        self.reason = ""

    def admits(self) -> bool:
        """Whether a request may try the database now."""
        with self._lock:
            if self._shut_until is None:
                return True
            now = time.monotonic()
            if now < self._shut_until:
                return False
            self._shut_until = now + self.hold_seconds  # this request is the trial
            return True

    def record(self, failure: DatabaseFailure | None) -> None:
        """Note the outcome of a request that used the database (``None``: it answered)."""
        with self._lock:
            if failure is None:
                self._shut_until = None
            elif failure.code == DATABASE_UNAVAILABLE:
                self._shut_until = time.monotonic() + self.hold_seconds
                self.reason = failure.reason

    @property
    def shut(self) -> bool:
        with self._lock:
            return self._shut_until is not None
