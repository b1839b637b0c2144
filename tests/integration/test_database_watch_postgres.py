"""Bounded PostgreSQL connections and the database watch (infrastructure.pg_connections, pg_watch).

The network faults themselves (refused, reset, silent) are exercised end to end
through a proxy in tests/e2e/test_network_faults_postgres.py; here: what each
connection is made with, and that marking a database down cuts off a query that
waits on it and refuses new work at once until it is marked up again.
"""

from __future__ import annotations

import threading
import time
from datetime import date
from functools import partial
from typing import Any
from uuid import UUID

import psycopg
import pytest
from sqlalchemy import text

from application.ledger import PostingInstruction
from infrastructure.runtime import open_runtime
from infrastructure.db_errors import classify_database_error
from infrastructure.pg_connections import connection_options
from infrastructure.pg_watch import WatchedConnection, watch_for
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import PEPPER
from tests.e2e.serve_support import prepare_ledger

pytestmark = pytest.mark.postgres


def test_connection_options_bound_connecting_silence_and_statements() -> None:
    options = connection_options(5, 10, 30)
    assert options["connect_timeout"] == 5 and options["keepalives"] == 1
    assert options["keepalives_idle"] + options["keepalives_interval"] * options["keepalives_count"] <= 10
    assert options["tcp_user_timeout"] == 10_000
    assert options["options"] == "-c statement_timeout=30000"
    assert "options" not in connection_options(5, 10, 0)  # operator commands: no statement timeout


def _setting(connection: Any, name: str) -> str:
    if hasattr(connection, "dialect"):  # SQLAlchemy
        return str(connection.execute(text(f"SHOW {name}")).scalar_one())
    row = connection.execute(f"SHOW {name}").fetchone()  # the event store's pool: dict rows
    return str(next(iter(row.values())))


def test_the_api_and_the_worker_bound_their_statements_and_operator_commands_do_not(pg_database_url: str) -> None:
    settings = Settings(database_url=pg_database_url, auth_pepper=PEPPER, db_statement_timeout_seconds=7,
                        worker_statement_timeout_seconds=70)
    for role, expected in (({"serving": True}, "7s"), ({"following": True}, "70s"), ({}, "0")):
        runtime = open_runtime(settings, **role)
        try:
            with runtime.engine.connect() as connection:
                assert _setting(connection, "statement_timeout") == expected
                parameters = connection.connection.dbapi_connection.info.get_parameters()
                assert parameters["tcp_user_timeout"] == "10000" and parameters["keepalives"] == "1"
            with runtime.ledger.recorder.datastore.get_connection() as connection:
                assert _setting(connection, "statement_timeout") == expected
                assert connection.info.get_parameters().get("keepalives") == "1"
            runtime.check_database()
        finally:
            runtime.close()


def test_a_statement_past_the_timeout_is_database_busy(pg_database_url: str) -> None:
    runtime = open_runtime(Settings(database_url=pg_database_url, auth_pepper=PEPPER,
                                    db_statement_timeout_seconds=0.5), serving=True)
    try:
        with pytest.raises(Exception) as raised, runtime.engine.connect() as connection:
            connection.execute(text("SELECT pg_sleep(5)"))
        failure = classify_database_error(raised.value)
        assert failure is not None and failure.code == "database_busy"
    finally:
        runtime.close()


def test_marking_the_database_down_cuts_off_waiting_queries_and_refuses_new_ones(pg_database_url: str) -> None:
    connection = WatchedConnection.connect(pg_database_url, autocommit=True)
    watch = watch_for(connection.info.get_parameters())
    outcome: list[BaseException] = []

    def wait_on_the_server() -> None:
        try:
            connection.execute("SELECT pg_sleep(30)")
        except psycopg.Error as exc:
            outcome.append(exc)

    waiter = threading.Thread(target=wait_on_the_server)
    waiter.start()
    try:
        time.sleep(0.3)  # the query is on the server
        started = time.monotonic()
        watch.note_failure("a test")
        waiter.join(10)
        assert not waiter.is_alive() and isinstance(outcome[0], psycopg.OperationalError)
        assert time.monotonic() - started < 5  # at once, in fact: the socket is shut under the waiting query
        assert connection.broken or connection.closed
        with pytest.raises(psycopg.OperationalError, match="does not answer: a test"):
            WatchedConnection.connect(pg_database_url)
    finally:
        watch.note_success()
        connection.close()
    with WatchedConnection.connect(pg_database_url) as again:
        assert again.execute("SELECT 1").fetchone() == (1,)


def test_a_wait_longer_than_its_bound_is_cut_off_and_the_database_stays_up(pg_database_url: str) -> None:
    """A connection whose request or answer was lost waits forever where TCP cannot tell (a middlebox
    acknowledged the bytes): past its statement timeout plus a TCP timeout the server would have
    answered, so the watch's heartbeat cuts it off. Here a 30 s sleep stands in for the silence."""
    settings = Settings(database_url=pg_database_url, auth_pepper=PEPPER, worker_statement_timeout_seconds=0.5,
                        db_tcp_timeout_seconds=2)
    runtime = open_runtime(settings, following=True)  # the bound: 0.5 + 2 s
    try:
        assert runtime.watch is not None
        with runtime.engine.connect() as connection:
            connection.exec_driver_sql("SET statement_timeout = 0")  # the server never answers in time
            started = time.monotonic()
            with pytest.raises(Exception) as raised:
                connection.execute(text("SELECT pg_sleep(30)"))
            took = time.monotonic() - started
        assert 2.5 <= took < 10, took
        failure = classify_database_error(raised.value)
        assert failure is not None and failure.code == "database_unavailable"
        assert not runtime.watch.down  # one lost connection is not a database down: others still answer
        with runtime.engine.connect() as connection:
            assert connection.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        runtime.close()


def test_pooled_connections_the_server_ended_are_replaced_on_first_use(pg_database_url: str) -> None:
    """No liveness ping on checkout: the first statement on a dead pooled connection fails,
    the pool is emptied and the statement retried once on a fresh connection, so neither
    the write nor the read after a failover (sessions ended) fails."""
    book = prepare_ledger(pg_database_url)
    runtime = open_runtime(Settings(database_url=pg_database_url, auth_pepper=PEPPER), serving=True)
    try:
        ledger = runtime.ledger
        post = partial(ledger.post_transaction, book.tenant_id, effective_date=date(2026, 12, 7),
                       postings=[PostingInstruction(UUID(book.cash), "1.00"),
                                 PostingInstruction(UUID(book.revenue), "-1.00")])
        post(external_id="before")
        with psycopg.connect(pg_database_url, autocommit=True) as admin:
            ended = admin.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                                  " WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
        assert ended is not None and ended[0] >= 1
        post(external_id="after")
        assert ledger.get_account(book.tenant_id, UUID(book.cash)).balance_minor == 200
    finally:
        runtime.close()
