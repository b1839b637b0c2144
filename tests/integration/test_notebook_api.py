"""The notebook API (``interfaces.notebook``) on SQLite and PostgreSQL: filters,
bounded paging, DataFrames, read-only access, and balances replayed as of a date
or a position matching the read models and the ledger."""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy
from sqlalchemy import text

from application.ledger import PostingInstruction
from infrastructure.runtime import Runtime
from interfaces.notebook import EVENT_TYPES, ReadOnlyLedger, open_ledger
from projections.read_models.queries import ReadModels
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import Book, catch_up_read_models, open_book, open_ready, post

JAN, FEB, MAR = date(2024, 1, 15), date(2024, 2, 15), date(2024, 3, 15)


@dataclass
class Scenario:
    runtime: Runtime
    acme: Book
    globex: Book
    first_position: int  # everything up to here was written before ``cut``
    balances_at_first: dict[UUID, int]  # acme's account balances (ledger) at first_position
    cut: datetime


def _write(open_rt: OpenRuntime, url: str) -> Scenario:
    runtime = open_ready(open_rt, url)
    ledger = runtime.ledger
    acme, globex = open_book(ledger, "acme"), open_book(ledger, "globex", "EUR")
    post(acme, ledger, "a1", JAN, {"cash": 10_000, "fees": -10_000})
    sale = post(acme, ledger, "a2", FEB, {"cash": 2_500, "fees": -2_500})
    post(globex, ledger, "g1", FEB, {"bank": 700, "wallet": -700}, currency="EUR")
    first_position = acme.last_position if acme.last_position > globex.last_position else globex.last_position
    balances_at_first = {i: ledger.get_account(acme.tenant_id, i).balance_minor for i in acme.accounts.values()}
    time.sleep(0.01)  # recording times strictly after the cut (clock resolution)
    cut = datetime.now(timezone.utc)
    post(acme, ledger, "a3-backdated", JAN, {"rent": 1_200, "cash": -1_200})
    ledger.reverse_transaction(acme.tenant_id, sale, MAR, "refund")
    hold = ledger.place_hold(acme.tenant_id, "h1", MAR, [PostingInstruction(acme.accounts["rent"], "30.00"),
                                                         PostingInstruction(acme.accounts["cash"], "-30.00")])
    ledger.post_hold(acme.tenant_id, hold.aggregate.id, [PostingInstruction(acme.accounts["rent"], "10.00"),
                                                         PostingInstruction(acme.accounts["cash"], "-10.00")])
    voided = ledger.place_hold(acme.tenant_id, "h2", MAR, [PostingInstruction(acme.accounts["rent"], "5.00"),
                                                           PostingInstruction(acme.accounts["cash"], "-5.00")])
    ledger.void_hold(acme.tenant_id, voided.aggregate.id)
    catch_up_read_models(runtime)
    return Scenario(runtime, acme, globex, first_position, balances_at_first, cut)


@pytest.fixture
def scenario(open_rt: OpenRuntime, database_url: str) -> Scenario:
    return _write(open_rt, database_url)


@pytest.fixture
def book(scenario: Scenario, database_url: str) -> Any:
    with open_ledger(database_url, page_size=4) as opened:
        yield opened


def test_head_and_every_event_in_log_order(scenario: Scenario, book: ReadOnlyLedger) -> None:
    head = scenario.runtime.ledger.recorder.max_notification_id()
    assert book.head() == head
    positions = [e.position for e in book.events()]
    assert positions == sorted(positions) and positions[-1] == head and len(positions) == head
    assert {e.type for e in book.events()} <= set(EVENT_TYPES)


def test_filters_by_tenant_type_time_and_position(scenario: Scenario, book: ReadOnlyLedger) -> None:
    acme, globex = scenario.acme.tenant_id, scenario.globex.tenant_id
    acme_events = list(book.events(tenant="acme"))
    assert acme_events and {e.tenant_id for e in acme_events} == {acme}
    # Events without a tenant field of their own (postings on accounts, reversals) are attributed too.
    assert {"Account.PostingRecorded", "Transaction.Reversed", "Account.HoldReleased"} <= {e.type for e in acme_events}
    assert {e.originator_id for e in book.events(tenant=str(globex))} == {globex, *scenario.globex.accounts.values(),
                                                                          *_transactions(book, globex)}
    posted = list(book.events(tenant=acme, types=["Transaction.Posted"]))
    assert [e.event.external_id for e in posted] == ["a1", "a2", "a3-backdated", None]  # None: the reversal
    later = list(book.events(since=scenario.cut))
    assert later and all(e.recorded_at >= scenario.cut for e in later)
    assert later[0].position == scenario.first_position + 1
    earlier = list(book.events(until=scenario.cut))
    assert earlier[-1].position == scenario.first_position
    window = list(book.events(after=3, upto=9))
    assert [e.position for e in window] == list(range(4, 10))
    assert len(list(book.events(limit=5))) == 5
    with pytest.raises(ValueError, match="unknown event types"):
        list(book.events(types=["Transaction.Exploded"]))


def _transactions(book: ReadOnlyLedger, tenant_id: UUID) -> set[UUID]:
    return {e.originator_id for e in book.events(types=["Transaction.Posted"], tenant=tenant_id)}


def test_reads_in_bounded_pages_only_as_far_as_consumed(
    scenario: Scenario, book: ReadOnlyLedger, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages: list[int] = []
    read_page = book._read_page

    def spy(*args: Any) -> Any:
        page = read_page(*args)
        pages.append(len(page))
        return page

    monkeypatch.setattr(book, "_read_page", spy)
    events = book.events()
    assert [next(events).position for _ in range(3)] == [1, 2, 3]
    assert pages == [4]  # one page of page_size=4 so far
    rest = list(events)
    assert len(rest) == book.head() - 3
    assert max(pages) == 4 and len(pages) == book.head() // 4 + 1
    with pytest.raises(ValueError, match="page_size"):
        ReadOnlyLedger(book.database, book.engine, page_size=0)


def test_dataframes_of_events_and_postings(scenario: Scenario, book: ReadOnlyLedger) -> None:
    events = book.events_frame(tenant="globex")
    assert set(events.type) == {"Tenant.Created", "Account.Opened", "Transaction.Posted", "Account.PostingRecorded"}
    assert list(events.position) == sorted(events.position)
    with pytest.raises(ValueError, match="rows_max"):
        book.events_frame(rows_max=3)

    postings = book.postings_frame(tenant="acme")
    assert (postings.groupby("transaction_id").amount_minor.sum() == 0).all()
    assert sorted(set(postings.kind)) == ["hold_capture", "posted", "reversal"]
    captured = postings[postings.kind == "hold_capture"].set_index("account_code").amount_minor.to_dict()
    assert captured == {"rent": 1_000, "cash": -1_000}  # the partial capture, not the held 30.00
    march = book.postings_frame(tenant="acme", effective_from=MAR, effective_to=MAR)
    assert set(march.kind) == {"reversal", "hold_capture"}
    assert set(march.amount) >= {"-25.00", "25.00", "10.00", "-10.00"}

    accounts = book.accounts(tenant="acme")
    assert dict(zip(accounts.code, accounts.account_id, strict=True)) == scenario.acme.accounts
    assert list(book.tenants().name) == ["acme", "globex"]


def test_balances_match_the_read_models_and_the_ledger(scenario: Scenario, book: ReadOnlyLedger) -> None:
    read_models = ReadModels(scenario.runtime.engine)
    ledger = scenario.runtime.ledger
    for tenant in (scenario.acme, scenario.globex):
        now = book.balances(tenant=tenant.tenant_id).set_index("account_id")
        assert set(now.index) == set(tenant.accounts.values())
        for account_id in tenant.accounts.values():
            balance = now.loc[account_id, "balance_minor"]
            assert balance == ledger.get_account(tenant.tenant_id, account_id).balance_minor
            assert balance == read_models.get_balance(tenant.tenant_id, account_id).balance_minor
            for day in (JAN, FEB, date(2024, 2, 29), MAR):
                as_of = book.balances(as_of=day, tenant=tenant.tenant_id).set_index("account_id")
                expected = read_models.get_balance(tenant.tenant_id, account_id, as_of=day)
                assert as_of.loc[account_id, "balance_minor"] == expected.balance_minor, (day, account_id)
    everything = book.balances()
    assert (everything.groupby("tenant").balance_minor.sum() == 0).all()
    assert everything.attrs["position"] == book.head()


def test_balances_as_of_a_position_are_the_ledger_as_it_was(scenario: Scenario, book: ReadOnlyLedger) -> None:
    then = book.balances(position=scenario.first_position, tenant="acme").set_index("account_id")
    assert then.balance_minor.to_dict() == scenario.balances_at_first
    assert then.attrs["position"] == scenario.first_position
    cash = scenario.acme.accounts["cash"]
    assert then.loc[cash, "balance_minor"] == 12_500
    assert then.loc[cash, "balance"] == "125.00"


def test_nothing_can_be_written_through_it(scenario: Scenario, book: ReadOnlyLedger, database_url: str) -> None:
    table = "invario_events" if book.database.is_postgres else "stored_events"
    before = book.head()
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="read-only|readonly"), book.engine.begin() as connection:
        connection.execute(text(f"DELETE FROM {table}"))  # noqa: S608
    with pytest.raises(sqlalchemy.exc.DBAPIError, match="read-only|readonly"), book.engine.begin() as connection:
        connection.execute(text("CREATE TABLE notebook_scratch (x integer)"))
    assert book.head() == before
    assert scenario.runtime.ledger.recorder.max_notification_id() == before


def test_a_missing_sqlite_file_is_a_clear_error(tmp_path: Any) -> None:
    with pytest.raises(FileNotFoundError, match="invario demo"):
        open_ledger(f"sqlite:///{tmp_path}/nothing-here.db")
    assert not (tmp_path / "nothing-here.db").exists()
