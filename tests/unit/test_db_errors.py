"""The one classification of database failures, whatever layer wrapped the driver's error."""

from __future__ import annotations

import sqlite3

import psycopg
import psycopg_pool
import pytest
from eventsourcing import persistence
from psycopg import errors as pg
from sqlalchemy import exc as sa

from infrastructure.db_errors import DatabaseFailure, DatabaseGate, classify_database_error
from infrastructure.errors import DatabaseUnavailable
from interfaces.http.problems import DATABASE_FAILURES


def _wrapped_by_eventsourcing(error: Exception) -> Exception:
    kind = persistence.OperationalError if isinstance(error, psycopg.OperationalError) else persistence.InternalError
    try:
        raise kind(str(error)) from error
    except persistence.PersistenceError as wrapped:
        return wrapped


def _wrapped_by_sqlalchemy(error: Exception) -> Exception:
    return sa.OperationalError("SELECT 1", {}, error)


@pytest.mark.parametrize(("error", "code"), [
    (pg.ReadOnlySqlTransaction("cannot execute INSERT in a read-only transaction"), "database_read_only"),
    (pg.LockNotAvailable("canceling statement due to lock timeout"), "database_busy"),
    (pg.QueryCanceled("canceling statement due to statement timeout"), "database_busy"),
    (pg.DiskFull("could not extend file"), "database_disk_full"),
    (pg.AdminShutdown("terminating connection due to administrator command"), "database_unavailable"),
    (pg.CannotConnectNow("the database system is starting up"), "database_unavailable"),
    (pg.TooManyConnections("sorry, too many clients already"), "database_unavailable"),
    (psycopg.OperationalError("connection refused"), "database_unavailable"),
    (psycopg_pool.PoolTimeout("couldn't get a connection after 5.00 sec"), "database_unavailable"),
])
@pytest.mark.parametrize("wrap", [lambda e: e, _wrapped_by_eventsourcing, _wrapped_by_sqlalchemy])
def test_driver_errors_are_classified_through_every_wrapper(error: Exception, code: str, wrap) -> None:  # type: ignore[no-untyped-def]
    failure = classify_database_error(wrap(error))
    assert failure is not None and failure.code == code
    assert code in DATABASE_FAILURES


@pytest.mark.parametrize(("message", "code"), [
    ("database is locked", "database_busy"),
    ("database or disk is full", "database_disk_full"),
    ("attempt to write a readonly database", "database_read_only"),
    ("unable to open database file", "database_unavailable"),
])
def test_sqlite_errors_are_classified(message: str, code: str) -> None:
    failure = classify_database_error(sqlite3.OperationalError(message))
    assert failure is not None and failure.code == code


@pytest.mark.parametrize("error", [
    pg.UniqueViolation("duplicate key value"),
    pg.UndefinedTable("relation does not exist"),
    pg.NumericValueOutOfRange("numeric field overflow"),
    sqlite3.OperationalError("no such table: accounts"),
    persistence.IntegrityError("conflict"),
    ValueError("not a database error"),
])
def test_errors_of_the_request_or_the_code_are_not_failures_of_the_database(error: Exception) -> None:
    assert classify_database_error(error) is None
    assert classify_database_error(_wrapped_by_sqlalchemy(error)) is None


def test_the_bootstraps_own_error_means_unavailable() -> None:
    failure = classify_database_error(DatabaseUnavailable("cannot use PostgreSQL x"))
    assert failure is not None and failure.code == "database_unavailable"


def test_the_gate_shuts_on_unavailability_only_and_lets_one_trial_through() -> None:
    gate = DatabaseGate(hold_seconds=3600)
    assert gate.admits()
    gate.record(DatabaseFailure("database_read_only", "read-only"))
    assert gate.admits() and not gate.shut
    gate.record(DatabaseFailure("database_unavailable", "connection refused"))
    assert gate.shut and not gate.admits()
    gate.record(None)
    assert gate.admits() and not gate.shut

    trial = DatabaseGate(hold_seconds=0)
    trial.record(DatabaseFailure("database_unavailable", "connection refused"))
    assert trial.admits()  # the hold is over: this request is the trial
    assert trial.shut
