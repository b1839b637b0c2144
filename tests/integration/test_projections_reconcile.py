"""Reconciliation finds every kind of divergence, names it without amounts in logs, and counts it."""

from __future__ import annotations

import logging
from datetime import date

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from projections.following.consistency import PositionsApart
from projections.following.rebuild import replay, start_rebuild
from projections.jobs.reconcile import BALANCE, MONTHLY_SNAPSHOT, TENANT_TOTAL, reconcile
from projections.following.registry import MONTHLY_SNAPSHOTS, READ_MODELS
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import Book, catch_up, execute, open_book, open_ready, post, post_random


def counted(reader: InMemoryMetricReader) -> dict[str, int]:
    """invario_reconciliation_divergences per check, as exported."""
    found: dict[str, int] = {}
    data = reader.get_metrics_data()
    for resource in data.resource_metrics if data else ():
        for scope in resource.scope_metrics:
            for metric in scope.metrics:
                if metric.name == "invario_reconciliation_divergences":
                    for point in metric.data.data_points:
                        found[point.attributes["check"]] = point.value
    return found


@pytest.fixture
def divergence_counter() -> tuple[object, InMemoryMetricReader]:
    reader = InMemoryMetricReader()
    meter = MeterProvider(metric_readers=[reader]).get_meter("invario")
    return meter.create_counter("invario_reconciliation_divergences"), reader


def written_book(runtime) -> Book:  # type: ignore[no-untyped-def]
    book = open_book(runtime.ledger)
    post_random(book, runtime.ledger, 30)
    post(book, runtime.ledger, "big", date(2024, 2, 14), {"cash": 123_456, "wallet": -123_456})
    open_book(runtime.ledger, "globex")
    catch_up(runtime)
    return book


def test_consistent_read_models_have_no_divergence(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = written_book(runtime)

    report = reconcile(runtime.ledger, runtime.engine)
    assert report.divergences == ()
    assert report.position == runtime.ledger.recorder.max_notification_id()
    assert report.accounts_checked == 10 and report.months_checked >= 15
    by_tenant = reconcile(runtime.ledger, runtime.engine, tenant_id=book.tenant_id, month="2024-02")
    assert (by_tenant.divergences, by_tenant.accounts_checked, by_tenant.months_checked) == ((), 5, 5)


def test_a_corrupted_balance_row_is_named_logged_without_amounts_and_counted(
    database_url: str, open_rt: OpenRuntime, caplog: pytest.LogCaptureFixture, divergence_counter
) -> None:
    runtime = open_ready(open_rt, database_url)
    book = written_book(runtime)
    counter, reader = divergence_counter
    cash = book.accounts["cash"]
    balances_before = {code: runtime.ledger.get_account(book.tenant_id, a).balance_minor
                       for code, a in book.accounts.items()}
    execute(runtime.engine, "UPDATE read_accounts SET balance_minor = balance_minor + 777 WHERE account_id = :a",
            a=str(cash))

    with caplog.at_level(logging.ERROR, logger="invario.reconcile"):
        report = reconcile(runtime.ledger, runtime.engine, counter=counter)
    assert [(d.check, d.account_id, d.account_code, d.difference_minor) for d in report.divergences] == [
        (BALANCE, cash, "cash", 777), (TENANT_TOTAL, None, None, 777)]
    assert {d.tenant_id for d in report.divergences} == {book.tenant_id}
    messages = [r.getMessage() for r in caplog.records if r.name == "invario.reconcile"]
    assert len(messages) == 2 and all(m.startswith("snapshot_divergence") for m in messages)
    assert str(cash) in messages[0] and str(book.tenant_id) in messages[1]
    assert not any("777" in m or "7.77" in m for m in messages), "amounts stay out of log messages"
    assert all(r.levelno == logging.ERROR and r.event == "snapshot_divergence" for r in caplog.records)
    assert counted(reader) == {BALANCE: 1, TENANT_TOTAL: 1}
    assert {code: runtime.ledger.get_account(book.tenant_id, a).balance_minor
            for code, a in book.accounts.items()} == balances_before, "reconcile changes nothing"

    start_rebuild(runtime, READ_MODELS)
    replay(runtime, READ_MODELS)
    assert reconcile(runtime.ledger, runtime.engine, counter=counter).divergences == ()
    assert counted(reader) == {BALANCE: 1, TENANT_TOTAL: 1}


def test_corrupted_and_missing_monthly_snapshots_are_found(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = written_book(runtime)
    cash, wallet = str(book.accounts["cash"]), str(book.accounts["wallet"])
    execute(runtime.engine, "UPDATE read_monthly_snapshots SET closing_balance_minor = closing_balance_minor - 5"
            " WHERE account_id = :a AND month = '2024-02'", a=cash)
    execute(runtime.engine, "DELETE FROM read_monthly_snapshots WHERE account_id = :a AND month = '2024-02'",
            a=wallet)

    found = {(d.check, str(d.account_id), d.month): d.difference_minor
             for d in reconcile(runtime.ledger, runtime.engine).divergences}
    assert found[(MONTHLY_SNAPSHOT, cash, "2024-02")] == -5
    wallet_feb = found[(MONTHLY_SNAPSHOT, wallet, "2024-02")]
    assert wallet_feb != 0 and set(found) == {(MONTHLY_SNAPSHOT, cash, "2024-02"), (MONTHLY_SNAPSHOT, wallet, "2024-02")}

    only_march = reconcile(runtime.ledger, runtime.engine, month="2024-03")
    assert only_march.divergences == (), "March's own rows are right"
    only_february = reconcile(runtime.ledger, runtime.engine, month="2024-02", tenant_id=book.tenant_id)
    assert {(d.check, d.month) for d in only_february.divergences} == {(MONTHLY_SNAPSHOT, "2024-02")}


def test_an_account_missing_from_the_balances_is_found(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = written_book(runtime)
    execute(runtime.engine, "DELETE FROM read_accounts WHERE account_id = :a", a=str(book.accounts["bank"]))

    found = {(d.check, d.account_id) for d in reconcile(runtime.ledger, runtime.engine).divergences}
    assert (BALANCE, book.accounts["bank"]) in found and (TENANT_TOTAL, None) in found


def test_read_models_at_different_positions_are_not_compared(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    written_book(runtime)
    start_rebuild(runtime, [MONTHLY_SNAPSHOTS])

    with pytest.raises(PositionsApart, match="not at one position"):
        reconcile(runtime.ledger, runtime.engine)
