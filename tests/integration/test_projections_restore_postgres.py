"""Restores from backup on PostgreSQL: after each, rebuild + reconcile ends consistent.

A backup is a copy of tables taken at one moment (and, for the event store, of
its notification sequence), exactly what restoring a pg_dump of those tables
brings back.
"""

from __future__ import annotations

import pytest

from infrastructure.runtime import Runtime
from projections.following.follower import read_tracking
from projections.following.rebuild import replay, start_rebuild
from projections.jobs.reconcile import BALANCE, reconcile
from projections.following.registry import (
    ALL_PROJECTIONS,
    GLOBAL_CHAIN,
    READ_MODELS,
    REBUILT_BY_ALL,
    TRACKING_TABLE,
    tables_of,
)
from projections.following.status import CURRENT, DIVERGED, projection_statuses
from interfaces.bootstrap import build_read_models_group
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import (
    Book,
    catch_up,
    execute,
    open_book,
    open_ready,
    post_random,
    read_model_rows,
)

pytestmark = pytest.mark.postgres

EVENT_TABLES = ("invario_events", "invario_snapshots")
EVENT_SEQUENCE = "invario_events_notification_id_seq"
PROJECTION_TABLES = (TRACKING_TABLE.name, *(t.name for name in ALL_PROJECTIONS for t in tables_of(name)))


def back_up(runtime: Runtime, tables: tuple[str, ...], label: str) -> int:
    for table in tables:
        execute(runtime.engine, f"CREATE TABLE backup_{label}_{table} AS SELECT * FROM {table}")
    with runtime.engine.connect() as connection:
        return int(connection.exec_driver_sql(f"SELECT last_value FROM {EVENT_SEQUENCE}").scalar_one())


def restore(runtime: Runtime, tables: tuple[str, ...], label: str, sequence: int | None = None) -> None:
    for table in tables:
        execute(runtime.engine, f"TRUNCATE {table}")
        execute(runtime.engine, f"INSERT INTO {table} SELECT * FROM backup_{label}_{table}")
    if sequence is not None:
        execute(runtime.engine, f"SELECT setval('{EVENT_SEQUENCE}', {sequence})")


def rebuild_everything(runtime: Runtime) -> None:
    for names in (REBUILT_BY_ALL, (GLOBAL_CHAIN,)):
        start_rebuild(runtime, names)
        replay(runtime, names)


def assert_consistent(runtime: Runtime, book: Book) -> None:
    assert reconcile(runtime.ledger, runtime.engine).divergences == ()
    _, statuses = projection_statuses(runtime)
    assert {s.name: s.state for s in statuses} == dict.fromkeys(ALL_PROJECTIONS, CURRENT)
    with runtime.engine.connect() as connection:
        balances = dict(connection.exec_driver_sql("SELECT account_id, balance_minor FROM read_accounts").all())
    for account_id in book.accounts.values():
        assert balances[str(account_id)] == runtime.ledger.get_account(book.tenant_id, account_id).balance_minor


def written(open_rt: OpenRuntime, url: str) -> tuple[Runtime, Book]:
    runtime = open_ready(open_rt, url)
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 30)
    catch_up(runtime)
    return runtime, book


def test_projection_tables_lost(pg_database_url: str, open_rt: OpenRuntime) -> None:
    runtime, book = written(open_rt, pg_database_url)
    before = read_model_rows(runtime.engine)
    for table in PROJECTION_TABLES:
        execute(runtime.engine, f"DROP TABLE {table}")

    rebuild_everything(runtime)
    assert read_model_rows(runtime.engine) == before
    assert_consistent(runtime, book)


def test_projection_tables_newer_than_the_restored_events(pg_database_url: str, open_rt: OpenRuntime) -> None:
    runtime, book = written(open_rt, pg_database_url)
    sequence = back_up(runtime, EVENT_TABLES, "old")
    post_random(book, runtime.ledger, 20, prefix="after-backup")
    catch_up(runtime)
    restore(runtime, EVENT_TABLES, "old", sequence)
    runtime.close()

    restored = open_ready(open_rt, pg_database_url)  # a fresh process: nothing cached from before
    post_random(book, restored.ledger, 25, prefix="after-restore", seed=11)
    assert build_read_models_group(restored, 500, defer_to_rebuilds=True).process_batch() == 0
    _, statuses = projection_statuses(restored)
    assert {s.state for s in statuses} == {DIVERGED}
    assert any(d.check == BALANCE for d in reconcile(restored.ledger, restored.engine).divergences)

    rebuild_everything(restored)
    assert_consistent(restored, book)


def test_events_restored_with_projections_behind(pg_database_url: str, open_rt: OpenRuntime) -> None:
    runtime, book = written(open_rt, pg_database_url)
    back_up(runtime, PROJECTION_TABLES, "old")
    post_random(book, runtime.ledger, 20, prefix="after-backup")
    catch_up(runtime)
    current = read_model_rows(runtime.engine)
    restore(runtime, PROJECTION_TABLES, "old")
    with runtime.engine.connect() as connection:
        behind = {s.position for s in read_tracking(connection, READ_MODELS).values()}
    assert len(behind) == 1 and behind.pop() < runtime.ledger.recorder.max_notification_id()

    catch_up(runtime)  # the projections simply continue from where the backup left them
    assert read_model_rows(runtime.engine) == current
    rebuild_everything(runtime)
    assert read_model_rows(runtime.engine) == current
    assert_consistent(runtime, book)


def test_a_corrupted_row_is_found_and_fixed_by_a_rebuild(pg_database_url: str, open_rt: OpenRuntime) -> None:
    runtime, book = written(open_rt, pg_database_url)
    execute(runtime.engine, "UPDATE read_statement_entries SET amount_minor = amount_minor + 1"
            " WHERE position = (SELECT MAX(position) FROM read_statement_entries)")
    assert reconcile(runtime.ledger, runtime.engine).divergences != ()

    rebuild_everything(runtime)
    assert_consistent(runtime, book)
