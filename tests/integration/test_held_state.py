"""The writer decides on the state it holds (issue 15, item 3), and stays correct across processes.

Once a process has committed to its accounts, a batch of new transfers between
them reads nothing before deciding: the tenant and the accounts are taken as the
process's last commit left them, and the transaction named by a new external id
is taken as absent. The save checks all of it (a version it writes, or the
version each aggregate it only read must still have), so another process's write
makes the batch decide again on fresh state. Same scenarios on SQLite and
PostgreSQL; every rejection also checks that no balance moved.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from application.ledger import Recorded
from domain.errors import DuplicateExternalId, TenantSuspended
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, broken_chains
from tests.integration.test_group_commit_batch import Books, open_books, transfer


@contextmanager
def counting_reads(books: Books) -> Iterator[list[str]]:
    """Every read the ledger's store makes of aggregates while inside."""
    store, reads = books.ledger.store, []
    real_load = store.load
    patched: list[tuple[Any, str, Any]] = [(store, "load", real_load)]

    def load(aggregate_id: Any) -> Any:
        reads.append(f"load {aggregate_id}")
        return real_load(aggregate_id)

    store.load = load
    if store.bulk_reads is not None:
        bulk = store.bulk_reads
        for name in ("events_after", "latest_snapshots"):
            real = getattr(bulk, name)
            patched.append((bulk, name, real))

            def counted(*args: Any, _real: Any = real, _name: str = name) -> Any:
                reads.append(_name)
                return _real(*args)

            setattr(bulk, name, counted)
    try:
        yield reads
    finally:
        for owner, name, real in patched:
            setattr(owner, name, real)


def post(books: Books, external_id: str, debit: str, credit: str, amount: str) -> Recorded:
    request = transfer(books, external_id, debit, credit, amount)
    return books.ledger.post_transaction(books.tenant_id, external_id, DAY, request.postings)


def test_a_new_transfer_between_held_accounts_reads_nothing_before_its_decision(
    database_url: str, open_rt: OpenRuntime,
) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    post(books, "warm", "cash", "wallet", "1.00")  # the process now holds the tenant and both accounts

    with counting_reads(books) as reads:
        recorded = post(books, "t1", "cash", "wallet", "2.00")
    assert reads == []
    with counting_reads(books) as reads:
        outcomes = books.ledger.post_transactions(books.tenant_id, [transfer(books, "t2", "wallet", "cash", "0.50")])
    assert reads == [f"load {books.tenant_id}"]  # a bulk call refuses a suspended tenant first, on fresh state

    assert not recorded.replayed and isinstance(outcomes[0], Recorded)
    assert books.balances() == {"cash": 250, "wallet": -250}


def test_another_process_suspending_the_tenant_stops_the_next_write(database_url: str, open_rt: OpenRuntime) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    other = open_rt(database_url, write_batch_size_max=1).ledger  # another process: its own cache
    post(books, "warm", "cash", "wallet", "1.00")
    other.suspend_tenant(books.tenant_id, "fraud review")

    with pytest.raises(TenantSuspended):
        post(books, "t1", "cash", "wallet", "2.00")

    assert books.balances(other) == {"cash": 100, "wallet": -100}
    assert books.balances() == {"cash": 100, "wallet": -100}


def test_an_external_id_another_process_recorded_replays_or_is_refused(
    database_url: str, open_rt: OpenRuntime,
) -> None:
    books = open_books(open_rt(database_url).ledger, "cash", "wallet", "bank")
    other = open_rt(database_url, write_batch_size_max=1).ledger
    post(books, "warm", "cash", "wallet", "1.00")
    there = other.post_transaction(books.tenant_id, "x", DAY, transfer(books, "x", "cash", "wallet", "3.00").postings)

    again = post(books, "x", "cash", "wallet", "3.00")
    with pytest.raises(DuplicateExternalId):
        post(books, "x", "bank", "wallet", "3.00")

    assert again.replayed and again.aggregate.id == there.aggregate.id
    assert books.balances() == {"cash": 400, "wallet": -400, "bank": 0}
    assert broken_chains(books.ledger) == {}


def test_a_rejection_decided_on_stale_state_is_decided_again(database_url: str, open_rt: OpenRuntime) -> None:
    """Held state says the wallet cannot pay; another process has funded it and made
    the very same payment. The right answer is that payment, replayed: not a refusal."""
    books = open_books(open_rt(database_url).ledger, "cash", "wallet")
    other = open_rt(database_url, write_batch_size_max=1).ledger
    post(books, "warm", "cash", "wallet", "1.00")
    other.post_transaction(books.tenant_id, "fund", DAY, transfer(books, "fund", "cash", "wallet", "10.00").postings)
    other.post_transaction(books.tenant_id, "pay", DAY, transfer(books, "pay", "wallet", "cash", "5.00").postings)

    outcomes = books.ledger.post_transactions(books.tenant_id, [transfer(books, "pay", "wallet", "cash", "5.00")])

    assert isinstance(outcomes[0], Recorded) and outcomes[0].replayed
    assert books.balances() == {"cash": 600, "wallet": -600}
    assert books.balances(other) == {"cash": 600, "wallet": -600}
