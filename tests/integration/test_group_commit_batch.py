"""``Ledger.post_transactions``: many journal entries decided in order, saved in one save.

Same scenarios on SQLite and PostgreSQL. Every rejection also checks that no
balance moved; every test ends with every hash chain verifying.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

import pytest

from application import group_commit
from application.ledger import Ledger, Recorded, TransactionRequest
from domain.errors import (
    AccountNotFound,
    DuplicateExternalId,
    InsufficientFunds,
    LinkedTransferFailed,
    TransactionUnbalanced,
)
from domain.ids import account_id_for
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, broken_chains, leg, log_length, notifications


@dataclass
class Books:
    ledger: Ledger
    tenant_id: UUID
    accounts: dict[str, UUID]

    def balance(self, code: str, ledger: Ledger | None = None) -> int:
        return (ledger or self.ledger).get_account(self.tenant_id, self.accounts[code]).balance_minor

    def balances(self, ledger: Ledger | None = None) -> dict[str, int]:
        return {code: self.balance(code, ledger) for code in self.accounts}


def open_books(ledger: Ledger, *codes: str) -> Books:
    tenant_id = ledger.create_tenant("acme").aggregate.id
    accounts = {}
    for code in codes:
        kind, floor = ("liability", 0) if code.startswith("wallet") else ("asset", None)
        accounts[code] = ledger.open_account(tenant_id, code, code, "BRL", kind, floor).aggregate.id
    return Books(ledger, tenant_id, accounts)


def transfer(books: Books, external_id: str, debit: str, credit: str, amount: str) -> TransactionRequest:
    legs = [leg(books.accounts[debit], amount), leg(books.accounts[credit], f"-{amount}")]
    return TransactionRequest(external_id, DAY, legs)


def check_positions(ledger: Ledger, outcomes: list[Any]) -> None:
    """Accepted outcomes' positions ascend, and each is the log position of that command's last event."""
    by_position = {n.id: n for n in notifications(ledger)}
    accepted = [o for o in outcomes if isinstance(o, Recorded) and not o.replayed]
    positions = [o.position for o in accepted]
    assert positions == sorted(positions) and len(set(positions)) == len(positions)
    for outcome in accepted:
        own = {outcome.aggregate.id, *(p.account_id for p in outcome.aggregate.postings)}
        assert by_position[outcome.position].originator_id in own
        transaction_event = next(n for n in by_position.values() if n.originator_id == outcome.aggregate.id)
        assert transaction_event.id <= outcome.position


def test_mixed_batch_keeps_accepted_lines_and_returns_rejections_in_place(database_url: str,
                                                                          open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    ghost = account_id_for(books.tenant_id, "ghost")
    requests = [
        transfer(books, "t1", "cash", "wallet", "1.00"),   # wallet holds 1.00
        transfer(books, "t2", "wallet", "cash", "5.00"),   # more than the wallet holds
        transfer(books, "t3", "wallet", "cash", "0.60"),   # allowed only because t1 came first
        TransactionRequest("t4", DAY, [leg(books.accounts["cash"], "1.00"), leg(books.accounts["wallet"], "-0.50")]),
        TransactionRequest("t5", DAY, [leg(books.accounts["cash"], "1.00"), leg(ghost, "-1.00")]),
    ]
    log_before = log_length(books.ledger)
    outcomes = books.ledger.post_transactions(books.tenant_id, requests)

    assert [type(o) for o in outcomes] == [Recorded, InsufficientFunds, Recorded, TransactionUnbalanced,
                                           AccountNotFound]
    assert books.balances() == {"cash": 40, "wallet": -40}
    assert log_length(books.ledger) == log_before + 2 * 3
    check_positions(books.ledger, outcomes)
    cold = open_rt(database_url).ledger
    assert books.balances(cold) == {"cash": 40, "wallet": -40}
    assert broken_chains(books.ledger) == {}


def test_a_batch_of_only_rejections_changes_nothing(database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    before, log_before = books.balances(), log_length(books.ledger)
    outcomes = books.ledger.post_transactions(books.tenant_id, [transfer(books, "x", "wallet", "cash", "1.00")] * 2)
    assert all(isinstance(o, InsufficientFunds) for o in outcomes)
    assert books.balances() == before and log_length(books.ledger) == log_before
    assert broken_chains(books.ledger) == {}


def test_duplicates_inside_a_batch_replay_or_are_refused(database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "bank")
    books.ledger.post_transaction(books.tenant_id, "old", DAY, transfer(books, "old", "cash", "bank", "2.00").postings)
    requests = [
        transfer(books, "a", "cash", "bank", "1.00"),
        transfer(books, "a", "cash", "bank", "1.00"),  # identical: replays the first
        transfer(books, "a", "cash", "bank", "3.00"),  # same id, other content
        transfer(books, "old", "cash", "bank", "2.00"),  # identical to one already stored
        transfer(books, "old", "bank", "cash", "2.00"),
    ]
    outcomes = books.ledger.post_transactions(books.tenant_id, requests)

    first, again, other, old_again, old_other = outcomes
    assert isinstance(first, Recorded) and not first.replayed and first.position is not None
    assert isinstance(again, Recorded) and again.replayed and again.aggregate.id == first.aggregate.id
    assert isinstance(other, DuplicateExternalId) and isinstance(old_other, DuplicateExternalId)
    assert isinstance(old_again, Recorded) and old_again.replayed
    assert books.balances() == {"cash": 300, "bank": -300}
    assert broken_chains(books.ledger) == {}


def test_a_dry_run_decides_everything_and_saves_nothing(database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    before, log_before = books.balances(), log_length(books.ledger)
    requests = [transfer(books, "t1", "cash", "wallet", "1.00"), transfer(books, "t2", "wallet", "cash", "5.00")]
    outcomes = books.ledger.post_transactions(books.tenant_id, requests, commit=False)

    assert isinstance(outcomes[0], Recorded) and outcomes[0].position is None
    assert isinstance(outcomes[1], InsufficientFunds)
    assert books.balances() == before and log_length(books.ledger) == log_before
    # The same batch for real afterwards: the dry run left no trace in the cache either.
    assert isinstance(books.ledger.post_transactions(books.tenant_id, requests)[0], Recorded)
    assert books.balances() == {"cash": 100, "wallet": -100}


def test_many_lines_on_one_hot_account_in_one_batch(database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "hot", *(f"own{i}" for i in range(10)))
    requests = [transfer(books, f"t{n}", "hot", f"own{n % 10}", f"{n + 1}.00") for n in range(200)]
    outcomes = books.ledger.post_transactions(books.tenant_id, requests)

    assert all(isinstance(o, Recorded) for o in outcomes)
    assert books.balance("hot") == sum(100 * (n + 1) for n in range(200))
    for i in range(10):
        assert books.balance(f"own{i}") == -sum(100 * (n + 1) for n in range(200) if n % 10 == i)
    check_positions(books.ledger, outcomes)
    assert books.ledger.get_account(books.tenant_id, books.accounts["hot"]).version == 201
    assert broken_chains(books.ledger) == {}


def test_a_conflict_with_another_process_redecides_only_the_affected_lines(
    database_url: str, open_rt: OpenRuntime, monkeypatch: pytest.MonkeyPatch
) -> None:
    books = open_books(open_rt(database_url).ledger, "a", "b", "c", "d", "f", "e")
    other = open_rt(database_url, write_batch_size_max=1).ledger  # another process: own cache, connections
    requests = [
        transfer(books, "r0", "a", "b", "1.00"),  # touches a, which the other process changes
        transfer(books, "r1", "c", "d", "1.00"),  # independent
        transfer(books, "r2", "b", "f", "1.00"),  # depends on r0 through b
        transfer(books, "r3", "d", "c", "3.00"),  # independent (its accounts are r1's only)
    ]
    decided: list[int] = []
    real_decide, real_save = group_commit.Batch._decide, books.ledger.store.save_events
    interfered = []

    def counting_decide(batch: group_commit.Batch, index: int) -> None:
        decided.append(index)
        real_decide(batch, index)

    def save_after_the_other_process(events: Any, aggregates: Any, receipts: Any = None,
                                     expected_versions: Any = None) -> Any:
        if not interfered:
            interfered.append(other.post_transaction(books.tenant_id, "other", DAY,
                                                     transfer(books, "other", "e", "a", "7.00").postings))
        return real_save(events, aggregates, receipts, expected_versions)

    monkeypatch.setattr(group_commit.Batch, "_decide", counting_decide)
    monkeypatch.setattr(books.ledger.store, "save_events", save_after_the_other_process)
    outcomes = books.ledger.post_transactions(books.tenant_id, requests)

    assert all(isinstance(o, Recorded) for o in outcomes)
    assert decided == [0, 1, 2, 3, 0, 2]
    expected = {"a": 100 - 700, "b": -100 + 100, "c": 100 - 300, "d": -100 + 300, "f": -100, "e": 700}
    assert books.balances() == expected
    assert books.balances(open_rt(database_url).ledger) == expected
    assert log_length(books.ledger) == 1 + 6 + 3 * 5
    check_positions(books.ledger, outcomes)
    assert broken_chains(books.ledger) == {}


def test_an_atomic_batch_saves_nothing_when_one_request_is_rejected(database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    books.ledger.post_transaction(books.tenant_id, "dep", DAY, transfer(books, "dep", "cash", "wallet", "1.00").postings)
    before, log_before = books.balances(), log_length(books.ledger)
    requests = [
        transfer(books, "t1", "wallet", "cash", "0.60"),
        transfer(books, "t2", "wallet", "cash", "0.60"),   # below the floor only after t1
        transfer(books, "dep", "cash", "wallet", "1.00"),  # a replay is not posted by this call either
    ]
    outcomes = books.ledger.post_transactions(books.tenant_id, requests, atomic=True)

    assert [type(o) for o in outcomes] == [LinkedTransferFailed, InsufficientFunds, LinkedTransferFailed]
    assert outcomes[0].details == {"failed_index": 1}
    assert books.balances() == before and log_length(books.ledger) == log_before
    # Nothing decided by the rejected batch reached the cache: the same first request now posts.
    assert isinstance(books.ledger.post_transactions(books.tenant_id, requests[:1], atomic=True)[0], Recorded)
    assert books.balances() == {"cash": 40, "wallet": -40}
    assert books.balances(open_rt(database_url).ledger) == {"cash": 40, "wallet": -40}
    assert broken_chains(books.ledger) == {}


def test_an_atomic_batch_without_rejections_saves_everything_with_its_balances(
        database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    requests = [transfer(books, "t1", "cash", "wallet", "1.00"), transfer(books, "t2", "wallet", "cash", "0.25")]
    first, second = books.ledger.post_transactions(books.tenant_id, requests, atomic=True)

    assert isinstance(first, Recorded) and isinstance(second, Recorded)
    check_positions(books.ledger, [first, second])
    # Each outcome keeps the balances its own decision left, not the batch's final ones.
    assert {b.account_id: b.balance_minor for b in first.balances} == {
        books.accounts["cash"]: 100, books.accounts["wallet"]: -100}
    assert {b.account_id: b.available_normal_minor for b in second.balances} == {
        books.accounts["cash"]: 75, books.accounts["wallet"]: 75}
    assert books.balances() == {"cash": 75, "wallet": -75}
