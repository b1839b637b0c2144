"""Migrations 0002 and 0005 create exactly the declared read-model tables; PostgreSQL wakes followers."""

from __future__ import annotations

import threading
import time
from datetime import date

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from infrastructure.log_notifications import PostgresNotifyWaiter
from infrastructure.migrate import _config, current_revision, head_revision
from infrastructure.schema import metadata
from projections.following.registry import ALL_PROJECTIONS, TRACKING_TABLE, tables_of
from projections.following.runner import waiter_for
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import open_book, open_ready, post

OURS = {TRACKING_TABLE.name} | {t.name for name in ALL_PROJECTIONS for t in tables_of(name)}


def _touches_our_tables(difference: object) -> bool:
    text = repr(difference)
    return any(f"'{name}'" in text or f"Table('{name}'" in text for name in OURS)


def test_the_migrated_schema_matches_the_declared_tables(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    # Every head is applied, and with them 0002 (read models) and 0005 (holds), which later
    # revisions (0007 jobs) build on.
    assert current_revision(runtime.engine) == head_revision()
    script = ScriptDirectory.from_config(_config())
    applied = {revision.revision for revision in script.iterate_revisions("heads", "base")}
    assert {"0002", "0005"} <= applied
    with runtime.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, metadata) if _touches_our_tables(d)]
    assert differences == []


@pytest.mark.postgres
def test_a_commit_on_postgres_wakes_a_listening_worker(pg_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, pg_database_url)
    book = open_book(runtime.ledger)
    waiter, idle_seconds = waiter_for(runtime, threading.Event())
    assert isinstance(waiter, PostgresNotifyWaiter) and waiter.channel == "invario_events" and idle_seconds >= 1
    try:
        assert waiter.wait(0.05) is False  # opens the LISTEN connection; nothing new yet
        writer = threading.Timer(0.2, post, (book, runtime.ledger, "t1", date(2024, 1, 2), {"cash": 1, "bank": -1}))
        writer.start()
        began = time.monotonic()
        assert waiter.wait(10) is True
        assert time.monotonic() - began < 5
        writer.join()
    finally:
        waiter.close()


def test_sqlite_polls(sqlite_database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, sqlite_database_url, follower_poll_seconds=0.2)
    stop = threading.Event()
    waiter, idle_seconds = waiter_for(runtime, stop)
    assert idle_seconds == 0.2
    stop.set()
    assert waiter.wait(5) is False  # a stop request ends the wait at once
