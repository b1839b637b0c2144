"""Rebuilding read models: identical rows, resumable, safe while writes continue, lost tables."""

from __future__ import annotations

import threading
from datetime import date

import pytest
from sqlalchemy import select

from projections.following.follower import read_tracking
from projections.read_models.queries import ReadModels
from projections.following.rebuild import replay, start_rebuild
from projections.jobs.reconcile import reconcile
from projections.following.registry import ACCOUNTS, GLOBAL_CHAIN, READ_MODELS, STATEMENTS, tables_of
from projections.following.status import CURRENT, REBUILDING, projection_statuses
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import (
    catch_up,
    catch_up_read_models,
    execute,
    open_book,
    open_ready,
    post,
    post_random,
    read_model_rows,
)


def busy_book(runtime):  # type: ignore[no-untyped-def]
    ledger = runtime.ledger
    book = open_book(ledger)
    post_random(book, ledger, 40)
    reversed_id = post(book, ledger, "oops", date(2024, 2, 2), {"cash": 99, "fees": -99})
    ledger.reverse_transaction(book.tenant_id, reversed_id, date(2024, 2, 3))
    ledger.freeze_account(book.tenant_id, book.accounts["rent"])
    open_book(ledger, "globex")
    return book


def test_a_rebuilt_read_model_is_identical_row_for_row(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    busy_book(runtime)
    catch_up(runtime)
    before = read_model_rows(runtime.engine)
    assert sum(len(rows) for rows in before.values()) > 100

    start = start_rebuild(runtime, READ_MODELS)
    assert (start.position, start.resumed, start.head) == (0, (), runtime.ledger.recorder.max_notification_id())
    assert all(rows == [] for rows in read_model_rows(runtime.engine).values())
    assert replay(runtime, READ_MODELS, batch_size=7) > 0
    assert read_model_rows(runtime.engine) == before
    _, statuses = projection_statuses(runtime)
    assert {s.name: s.state for s in statuses if s.name in READ_MODELS} == dict.fromkeys(READ_MODELS, CURRENT)


def test_a_rebuilt_global_chain_is_identical(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    busy_book(runtime)
    catch_up(runtime)
    (chain,) = tables_of(GLOBAL_CHAIN)
    with runtime.engine.connect() as connection:
        before = connection.execute(select(chain).order_by(chain.c.sequence)).all()

    start_rebuild(runtime, [GLOBAL_CHAIN])
    replay(runtime, [GLOBAL_CHAIN], batch_size=9)
    with runtime.engine.connect() as connection:
        assert connection.execute(select(chain).order_by(chain.c.sequence)).all() == before


def test_an_interrupted_rebuild_resumes_where_it_stopped(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    busy_book(runtime)
    catch_up(runtime)
    before = read_model_rows(runtime.engine)
    start_rebuild(runtime, [ACCOUNTS, STATEMENTS])
    batches = 0

    def interrupt_after_two(_count: int) -> None:
        nonlocal batches
        batches += 1
        if batches == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        replay(runtime, [ACCOUNTS, STATEMENTS], batch_size=10, on_batch=interrupt_after_two)
    with runtime.engine.connect() as connection:
        stopped_at = read_tracking(connection, [ACCOUNTS])[ACCOUNTS].position
    assert 0 < stopped_at < runtime.ledger.recorder.max_notification_id()
    _, statuses = projection_statuses(runtime)
    assert {s.name: s.state for s in statuses}[ACCOUNTS] == REBUILDING

    again = start_rebuild(runtime, [ACCOUNTS, STATEMENTS])
    assert again.resumed == (ACCOUNTS, STATEMENTS) and again.position == stopped_at
    replay(runtime, [ACCOUNTS, STATEMENTS], batch_size=10)
    assert read_model_rows(runtime.engine) == before
    with runtime.engine.connect() as connection:
        assert read_tracking(connection, [ACCOUNTS])[ACCOUNTS].rebuild_started_at is None
    assert start_rebuild(runtime, [ACCOUNTS], from_scratch=True).position == 0


def test_a_rebuild_is_safe_while_the_ledger_keeps_writing(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = busy_book(runtime)
    catch_up(runtime)
    writer = open_ready(open_rt, database_url)  # another process, as far as the store can tell
    book.accounts.pop("rent")  # frozen
    start_rebuild(runtime, READ_MODELS)
    failures: list[BaseException] = []

    def keep_writing() -> None:
        try:
            post_random(book, writer.ledger, 25, prefix="during", seed=5)
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)

    thread = threading.Thread(target=keep_writing)
    thread.start()
    replay(runtime, READ_MODELS, batch_size=5)
    thread.join(120)
    assert failures == []
    catch_up_read_models(runtime)  # whatever was written after the replay caught up
    during = read_model_rows(runtime.engine)

    start_rebuild(runtime, READ_MODELS)
    replay(runtime, READ_MODELS)
    assert read_model_rows(runtime.engine) == during
    assert reconcile(runtime.ledger, runtime.engine).divergences == ()
    assert len(ReadModels(runtime.engine).list_transactions(book.tenant_id, cursor=None, page_size=200).items) == 67


def test_lost_tables_are_recreated_and_refilled(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    busy_book(runtime)
    catch_up(runtime)
    before = read_model_rows(runtime.engine)
    for name in READ_MODELS:
        for table in tables_of(name):
            execute(runtime.engine, f"DROP TABLE {table.name}")

    start_rebuild(runtime, READ_MODELS)
    replay(runtime, READ_MODELS)
    assert read_model_rows(runtime.engine) == before
