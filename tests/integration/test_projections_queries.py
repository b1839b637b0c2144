"""The read models answer the query contract correctly, on SQLite and PostgreSQL.

Expected values are computed from what the test posted (and from the write
side's aggregates), never from the read models themselves.
"""

from __future__ import annotations

import dataclasses
from datetime import date
from itertools import accumulate
from uuid import uuid4

import pytest

from domain.account import AccountType
from projections.read_models.queries import PAGE_SIZE_MAX, InvalidCursor, ReadModels
from projections.following.rebuild import start_rebuild
from projections.following.registry import MONTHLY_SNAPSHOTS
from projections.following.runner import FollowerThread
from interfaces.bootstrap import build_followers
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import catch_up, open_book, open_ready, post, post_random

# (external id, effective date, cash amount); recorded in this order, so the
# statement order (effective date, then position) differs from it.
CASH_POSTINGS = [
    ("p1", date(2024, 3, 5), 1000),
    ("p2", date(2024, 1, 20), -300),
    ("p3", date(2024, 3, 5), 250),
    ("p4", date(2024, 2, 29), 4000),
    ("p5", date(2023, 12, 31), -75),
    ("p6", date(2024, 1, 20), 5),
    ("p7", date(2024, 4, 1), -1),
]


def statement_order() -> list[tuple[str, date, int]]:
    recorded = {external_id: n for n, (external_id, _, _) in enumerate(CASH_POSTINGS)}
    return sorted(CASH_POSTINGS, key=lambda p: (p[1], recorded[p[0]]))


def test_accounts_and_balances_mirror_the_write_side(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    post_random(book, ledger, 30)
    ledger.freeze_account(book.tenant_id, book.accounts["rent"])
    catch_up(runtime)
    models = ReadModels(runtime.engine)

    assert models.position() == ledger.recorder.max_notification_id()
    for code, account_id in book.accounts.items():
        aggregate = ledger.get_account(book.tenant_id, account_id)
        view = models.get_account(book.tenant_id, account_id)
        assert view is not None
        assert (view.id, view.tenant_id, view.code, view.currency, view.type) == (
            account_id, book.tenant_id, code, "BRL", aggregate.type.value)
        assert (view.balance_minor, view.balance_normal_minor, view.version, view.status) == (
            aggregate.balance_minor, aggregate.balance_normal_minor, aggregate.version, aggregate.status.value)
        assert view.created_at.tzinfo is not None and view.position == models.position()
        balance = models.get_balance(book.tenant_id, account_id)
        assert balance is not None
        assert (balance.balance_minor, balance.balance_normal_minor, balance.as_of) == (
            aggregate.balance_minor, aggregate.balance_normal_minor, None)
    assert sum(models.get_account(book.tenant_id, a).balance_minor for a in book.accounts.values()) == 0


def test_account_list_pages_through_every_account_in_code_order(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    open_book(runtime.ledger, "other")
    catch_up(runtime)
    models = ReadModels(runtime.engine)

    codes, cursor, pages = [], None, 0
    for _ in range(10):
        page = models.list_accounts(book.tenant_id, cursor=cursor, page_size=2)
        codes += [view.code for view in page.items]
        pages += 1
        cursor = page.next_cursor
        if cursor is None:
            break
    assert codes == sorted(book.accounts) and pages == 3
    assert models.list_accounts(book.tenant_id, cursor=None, page_size=PAGE_SIZE_MAX).next_cursor is None


def test_statement_is_in_effective_date_order_with_running_balances(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    for external_id, day, amount in CASH_POSTINGS:
        post(book, ledger, external_id, day, {"cash": amount, "bank": -amount})
    catch_up(runtime)
    models = ReadModels(runtime.engine)
    expected = statement_order()
    running = list(accumulate(amount for _, _, amount in expected))

    entries, cursor = [], None
    for _ in range(10):
        page = models.list_entries(book.tenant_id, book.accounts["cash"], cursor=cursor, page_size=3)
        assert page.position == models.position()
        entries += page.items
        cursor = page.next_cursor
        if cursor is None:
            break
    assert [(e.description, e.effective_date, e.amount_minor) for e in entries] == expected
    assert [e.running_balance_minor for e in entries] == running
    assert all(e.currency == "BRL" and e.account_id == book.accounts["cash"] for e in entries)
    assert [e.position for e in entries if e.effective_date == date(2024, 3, 5)] == sorted(
        e.position for e in entries if e.effective_date == date(2024, 3, 5))


def test_a_date_window_keeps_the_true_running_balances(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    for external_id, day, amount in CASH_POSTINGS:
        post(book, ledger, external_id, day, {"cash": amount, "bank": -amount})
    catch_up(runtime)
    models = ReadModels(runtime.engine)
    expected = statement_order()
    running = dict(zip((p[0] for p in expected), accumulate(p[2] for p in expected), strict=True))

    page = models.list_entries(book.tenant_id, book.accounts["cash"], cursor=None, page_size=50,
                               date_from=date(2024, 1, 21), date_to=date(2024, 3, 5))
    assert [e.description for e in page.items] == ["p4", "p1", "p3"]
    assert [e.running_balance_minor for e in page.items] == [running["p4"], running["p1"], running["p3"]]


@pytest.mark.parametrize("snapshots", ["with monthly snapshots", "entries only"])
def test_balance_as_of_a_date_sums_the_entries_effective_by_then(
    database_url: str, open_rt: OpenRuntime, snapshots: str
) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    for external_id, day, amount in CASH_POSTINGS:
        post(book, ledger, external_id, day, {"cash": amount, "wallet": -amount})
    catch_up(runtime)
    if snapshots == "entries only":
        start_rebuild(runtime, [MONTHLY_SNAPSHOTS])  # emptied and behind: queries must not use it
    models = ReadModels(runtime.engine)

    for as_of in (date(2023, 12, 30), date(2023, 12, 31), date(2024, 1, 20), date(2024, 2, 29),
                  date(2024, 3, 4), date(2024, 3, 5), date(2024, 12, 31)):
        cash = sum(amount for _, day, amount in CASH_POSTINGS if day <= as_of)
        balance = models.get_balance(book.tenant_id, book.accounts["cash"], as_of=as_of)
        wallet = models.get_balance(book.tenant_id, book.accounts["wallet"], as_of=as_of)
        assert balance is not None and wallet is not None
        assert (balance.balance_minor, balance.balance_normal_minor, balance.as_of) == (cash, cash, as_of)
        assert (wallet.balance_minor, wallet.balance_normal_minor) == (-cash, cash)  # a liability's normal side


def test_transactions_list_get_and_reversals(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    book = open_book(ledger)
    first = post(book, ledger, "rent-jan", date(2024, 1, 31), {"rent": 900, "bank": -900})
    post(book, ledger, "fee-feb", date(2024, 2, 10), {"cash": 50, "fees": -50})
    post(book, ledger, "rent-feb", date(2024, 2, 29), {"rent": 900, "bank": -900})
    reversal = ledger.reverse_transaction(book.tenant_id, first, date(2024, 3, 1)).aggregate.id
    catch_up(runtime)
    models = ReadModels(runtime.engine)

    everything = models.list_transactions(book.tenant_id, cursor=None, page_size=10)
    assert [t.external_id for t in everything.items] == ["rent-jan", "fee-feb", "rent-feb", None]
    original = models.get_transaction(book.tenant_id, first)
    undo = models.get_transaction(book.tenant_id, reversal)
    assert original is not None and undo is not None
    assert (original.reversed_by, undo.reverses, undo.effective_date) == (reversal, first, date(2024, 3, 1))
    assert set(original.postings) == {(book.accounts["rent"], 900, "BRL"), (book.accounts["bank"], -900, "BRL")}
    assert set(undo.postings) == {(book.accounts["rent"], -900, "BRL"), (book.accounts["bank"], 900, "BRL")}
    assert original.recorded_at.tzinfo is not None and original.description == "rent-jan"

    rent = models.list_transactions(book.tenant_id, account_id=book.accounts["rent"], cursor=None, page_size=2)
    assert [t.id for t in rent.items] == [first, everything.items[2].id] and rent.next_cursor is not None
    rest = models.list_transactions(book.tenant_id, account_id=book.accounts["rent"], cursor=rent.next_cursor,
                                    page_size=2)
    assert [t.id for t in rest.items] == [reversal] and rest.next_cursor is None
    february = models.list_transactions(book.tenant_id, date_from=date(2024, 2, 1), date_to=date(2024, 2, 29),
                                        cursor=None, page_size=10)
    assert [t.external_id for t in february.items] == ["fee-feb", "rent-feb"]


def test_another_tenants_ids_read_as_not_found(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    ledger = runtime.ledger
    acme, globex = open_book(ledger, "acme"), open_book(ledger, "globex")
    transaction = post(acme, ledger, "t1", date(2024, 1, 2), {"cash": 10, "bank": -10})
    catch_up(runtime)
    models = ReadModels(runtime.engine)
    cash = acme.accounts["cash"]

    assert models.get_account(globex.tenant_id, cash) is None
    assert models.get_balance(globex.tenant_id, cash) is None
    assert models.get_balance(globex.tenant_id, cash, as_of=date(2024, 1, 2)) is None
    assert models.get_transaction(globex.tenant_id, transaction) is None
    assert models.list_entries(globex.tenant_id, cash, cursor=None, page_size=10).items == ()
    assert models.list_transactions(globex.tenant_id, account_id=cash, cursor=None, page_size=10).items == ()
    assert models.list_transactions(globex.tenant_id, cursor=None, page_size=10).items == ()
    assert models.get_account(acme.tenant_id, uuid4()) is None


def test_bad_cursors_are_named_errors_and_page_sizes_are_bounded(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger)
    catch_up(runtime)
    models = ReadModels(runtime.engine)
    accounts_cursor = models.list_accounts(book.tenant_id, cursor=None, page_size=1).next_cursor
    assert accounts_cursor is not None

    for cursor in ("not base64 !", "e30", "W10", "x" * 600, accounts_cursor):
        with pytest.raises(InvalidCursor):
            models.list_entries(book.tenant_id, book.accounts["cash"], cursor=cursor, page_size=10)
        with pytest.raises(InvalidCursor):
            models.list_transactions(book.tenant_id, cursor=cursor, page_size=10)
    with pytest.raises(InvalidCursor):
        models.list_accounts(book.tenant_id, cursor="WyJlIiwiMjAyNC0wMS0wMSIsMV0", page_size=10)
    with pytest.raises(AssertionError):
        models.list_accounts(book.tenant_id, cursor=None, page_size=PAGE_SIZE_MAX + 1)
    with pytest.raises(AssertionError):
        models.list_entries(book.tenant_id, book.accounts["cash"], cursor=None, page_size=0)


def test_read_your_writes_waits_boundedly_for_the_position(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url, follower_poll_seconds=0.05)
    ledger = runtime.ledger
    book = open_book(ledger)
    post(book, ledger, "t1", date(2024, 1, 2), {"cash": 10, "bank": -10})
    models = ReadModels(runtime.engine)

    assert models.position() == 0
    assert models.wait_for(book.last_position, timeout_seconds=0) is False
    assert models.wait_for(book.last_position, timeout_seconds=0.05) is False
    thread = FollowerThread(build_followers(runtime), poll_seconds=0.05)
    thread.start()
    try:
        assert models.wait_for(book.last_position, timeout_seconds=10) is True
        assert models.position() >= book.last_position
        view = models.get_account(book.tenant_id, book.accounts["cash"])
        assert view is not None and view.balance_minor == 10 and view.position >= book.last_position
    finally:
        thread.stop()


def test_views_are_frozen_and_money_is_integer_minor_units(database_url: str, open_rt: OpenRuntime) -> None:
    runtime = open_ready(open_rt, database_url)
    book = open_book(runtime.ledger, currency="JPY")
    post(book, runtime.ledger, "t1", date(2024, 1, 2), {"cash": 12345, "bank": -12345}, currency="JPY")
    catch_up(runtime)
    models = ReadModels(runtime.engine)
    view = models.get_account(book.tenant_id, book.accounts["cash"])
    entry = models.list_entries(book.tenant_id, book.accounts["cash"], cursor=None, page_size=1).items[0]

    assert view is not None and type(view.balance_minor) is int and type(entry.running_balance_minor) is int
    assert (view.balance_minor, view.currency, AccountType(view.type).is_debit_normal) == (12345, "JPY", True)
    with pytest.raises(dataclasses.FrozenInstanceError):
        view.balance_minor = 0  # type: ignore[misc]
