"""Holds on the read side: balances with posted, pending and available; hold entries with
their resolution; reconciliation of pending balances; rebuilds identical row for row."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

from sqlalchemy import update

from application.ledger import PostingInstruction
from projections.read_models.queries import ReadModels
from projections.following.rebuild import replay, start_rebuild
from projections.jobs.reconcile import PENDING, reconcile
from projections.following.registry import READ_MODELS
from projections.read_models.accounts import read_accounts
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import catch_up, open_book, open_ready, post, read_model_rows

DAY = date(2024, 2, 1)


def legs(book, amounts: dict[str, str]) -> list[PostingInstruction]:  # type: ignore[no-untyped-def]
    return [PostingInstruction(book.accounts[code], amount) for code, amount in amounts.items()]


def holds_book(runtime):  # type: ignore[no-untyped-def]
    """Deposits, then holds in every state: captured in part, in full and reversed, voided, expired, pending."""
    ledger = runtime.ledger
    now = datetime.now(timezone.utc)
    book = open_book(ledger)
    post(book, ledger, "deposit", DAY, {"cash": 10_000, "wallet": -10_000})
    place = lambda name, amount, **kw: ledger.place_hold(  # noqa: E731
        book.tenant_id, name, DAY, legs(book, {"wallet": amount, "fees": "-" + amount}), description=name, **kw
    ).aggregate.id
    partial = place("partial", "30.00")
    ledger.post_hold(book.tenant_id, partial, legs(book, {"wallet": "12.50", "fees": "-12.50"}), date(2024, 3, 5))
    full = place("full", "5.00")
    ledger.post_hold(book.tenant_id, full)
    ledger.reverse_transaction(book.tenant_id, full, date(2024, 3, 6))
    voided = place("voided", "7.00")
    ledger.void_hold(book.tenant_id, voided)
    expiring = place("expiring", "8.00", expires_at=now + timedelta(seconds=30))
    ledger.clock = lambda: now + timedelta(minutes=1)
    ledger.expire_hold(book.tenant_id, expiring)
    pending = place("pending", "20.00", expires_at=now + timedelta(hours=1))
    return book, {"partial": partial, "full": full, "voided": voided, "expiring": expiring, "pending": pending}


def test_balances_holds_and_transactions_on_the_read_side(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book, ids = holds_book(runtime)
    catch_up(runtime)
    models = ReadModels(runtime.engine)
    wallet = models.get_balance(book.tenant_id, book.accounts["wallet"])
    assert wallet is not None
    # 100.00 deposited, 12.50 captured, 20.00 still held.
    assert (wallet.balance_normal_minor, wallet.pending_minor, wallet.available_normal_minor) == (8750, 2000, 6750)
    fees = models.get_balance(book.tenant_id, book.accounts["fees"])
    assert fees is not None
    assert (fees.balance_normal_minor, fees.pending_minor, fees.available_normal_minor) == (1250, -2000, 1250)
    page = models.list_holds(book.tenant_id, book.accounts["wallet"], cursor=None, page_size=50)
    found = {h.transaction_id: (h.status, h.amount_minor, h.captured_minor) for h in page.items}
    assert found == {
        ids["partial"]: ("posted", 3000, 1250), ids["full"]: ("posted", 500, 500),
        ids["voided"]: ("voided", 700, None), ids["expiring"]: ("expired", 800, None),
        ids["pending"]: ("pending", 2000, None),
    }
    view = models.get_transaction(book.tenant_id, ids["partial"])
    assert view is not None and view.status == "posted" and view.effective_date == date(2024, 3, 5)
    assert sorted(amount for _, amount, _ in view.postings) == [-1250, 1250]
    assert sorted(amount for _, amount, _ in view.held_postings or ()) == [-3000, 3000]
    entries = models.list_entries(book.tenant_id, book.accounts["wallet"], cursor=None, page_size=50)
    assert [e.amount_minor for e in entries.items] == [-10_000, 500, 1250, -500]  # effective-date order
    assert models.holds_due(datetime.now(timezone.utc) + timedelta(hours=2)) == [(book.tenant_id, ids["pending"])]
    assert models.holds_due(datetime.now(timezone.utc)) == []
    assert reconcile(runtime.ledger, runtime.engine).divergences == ()


def test_reconcile_finds_a_wrong_pending_balance(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book, _ = holds_book(runtime)
    catch_up(runtime)
    with runtime.engine.begin() as connection:
        connection.execute(update(read_accounts).where(read_accounts.c.account_id == str(book.accounts["wallet"]))
                           .values(pending_debits_minor=read_accounts.c.pending_debits_minor + 1))
    checks = {d.check for d in reconcile(runtime.ledger, runtime.engine).divergences}
    assert PENDING in checks


def test_a_rebuild_with_holds_is_identical_row_for_row(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    holds_book(runtime)
    catch_up(runtime)
    before = read_model_rows(runtime.engine)
    for batch_size in (1, 7, 500):
        start_rebuild(runtime, READ_MODELS)
        assert replay(runtime, READ_MODELS, batch_size=batch_size) > 0
        assert read_model_rows(runtime.engine) == before
