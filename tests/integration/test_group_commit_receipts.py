"""Receipts (Idempotency-Key records) written by the batch's own transaction.

Same scenarios on SQLite and PostgreSQL: a receipt exists exactly when its
command's outcome was committed; a key already recorded withdraws its command
from the batch (and whatever depended on it is decided again); a rolled-back
batch leaves no key; two runtimes racing with one key end with one write and
one replay.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
from sqlalchemy import func, select

from application.group_commit import Batch, ReceiptTaken, carrying
from application.ledger import Ledger, Recorded, TransactionRequest
from domain.errors import InsufficientFunds, LedgerError
from infrastructure.runtime import Runtime
from infrastructure.idempotency import (
    IdempotencyKeyReused,
    IdempotencyReceipt,
    IdempotencyStore,
    StoredResponse,
    idempotency_keys,
)
from infrastructure.migrate import upgrade_to_head
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, leg, log_length

BOOKS = {"cash": 0, "wallet": 0, "savings": 0}


class Books:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger
        self.tenant_id = ledger.create_tenant("acme").aggregate.id
        self.accounts: dict[str, UUID] = {}
        for code in BOOKS:
            kind, floor = ("liability", 0) if code == "wallet" else ("asset", None)
            self.accounts[code] = ledger.open_account(self.tenant_id, code, code, "BRL", kind, floor).aggregate.id

    def balances(self, ledger: Ledger | None = None) -> dict[str, int]:
        ledger = ledger or self.ledger
        return {code: ledger.get_account(self.tenant_id, i).balance_minor for code, i in self.accounts.items()}


def open_books(ledger: Ledger) -> Books:
    return Books(ledger)


def transfer_decision(books: Books, external_id: str, debit: str, credit: str, amount: str) -> Callable[[Any], Any]:
    legs = [leg(books.accounts[debit], amount), leg(books.accounts[credit], f"-{amount}")]
    return books.ledger.transactions._new_transaction_decision(  # noqa: SLF001 - one batch, built by hand
        books.tenant_id, TransactionRequest(external_id, DAY, legs))


def _render(outcome: Any) -> tuple[StoredResponse, Any]:
    if isinstance(outcome, LedgerError):
        return StoredResponse(422, {}, json.dumps({"code": outcome.code}).encode()), outcome
    assert isinstance(outcome, Recorded)
    body = {"id": str(outcome.aggregate.id), "position": outcome.position}
    return StoredResponse(201, {}, json.dumps(body).encode()), outcome


def _store(runtime: Runtime) -> IdempotencyStore:
    return IdempotencyStore(runtime.engine, 24, 60)


def _receipt(store: IdempotencyStore, key: str, fingerprint: str = "a" * 64,
             render: Callable[[Any], tuple[StoredResponse, Any]] = _render) -> IdempotencyReceipt:
    receipt = store.begin("scope", key, fingerprint, render)
    store.end(receipt)  # in-process tracking is the HTTP layer's business; these tests race on the store
    return receipt


def _rows(runtime: Runtime) -> dict[str, Any]:
    with runtime.engine.connect() as connection:
        return {row.key: row for row in connection.execute(select(idempotency_keys))}


@pytest.fixture
def runtime(database_url: str, open_rt: OpenRuntime) -> Runtime:
    opened = open_rt(database_url)
    upgrade_to_head(opened.engine)
    return opened


def test_a_keyed_write_stores_its_response_with_its_events(runtime: Runtime) -> None:
    books = open_books(runtime.ledger)
    store = _store(runtime)
    receipts = [_receipt(store, f"k{i}") for i in range(8)]
    results: dict[int, Recorded] = {}

    def post(i: int) -> None:
        with carrying(receipts[i]):
            results[i] = runtime.ledger.post_transaction(
                books.tenant_id, f"t{i}", DAY, [leg(books.accounts["cash"], "1.00"),
                                                 leg(books.accounts["wallet"], "-1.00")])

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    rows = _rows(runtime)
    for i, receipt in enumerate(receipts):
        assert receipt.written
        stored = json.loads(rows[f"k{i}"].response_body)
        assert stored == {"id": str(results[i].aggregate.id), "position": results[i].position}
        assert rows[f"k{i}"].state == "done" and rows[f"k{i}"].status_code == 201


def test_a_taken_key_withdraws_its_command_and_its_dependents_are_decided_again(runtime: Runtime) -> None:
    books = open_books(runtime.ledger)
    store = _store(runtime)
    runtime.ledger.record_receipt(_receipt(store, "funding"), InsufficientFunds("an earlier answer"))
    log_before = log_length(runtime.ledger)
    funding, spending, other = _receipt(store, "funding"), _receipt(store, "spending"), _receipt(store, "other")
    batch = Batch(runtime.ledger.store, [
        transfer_decision(books, "fund", "cash", "wallet", "5.00"),    # its key is taken: never saved
        transfer_decision(books, "spend", "wallet", "cash", "3.00"),   # only possible after "fund"
        transfer_decision(books, "other", "cash", "savings", "1.00"),  # independent
    ], receipts=[funding, spending, other])
    outcomes = batch.run()
    assert isinstance(outcomes[0], ReceiptTaken)
    assert isinstance(outcomes[1], InsufficientFunds)
    assert isinstance(outcomes[2], Recorded) and outcomes[2].position is not None
    assert not funding.written and spending.written and other.written
    rows = _rows(runtime)
    assert json.loads(rows["funding"].response_body) == {"code": "insufficient_funds"}  # the earlier answer
    assert json.loads(rows["spending"].response_body) == {"code": "insufficient_funds"}
    assert json.loads(rows["other"].response_body)["position"] == outcomes[2].position
    assert log_length(runtime.ledger) == log_before + 3  # "other": the transaction and two accounts
    assert books.balances() == {**BOOKS, "cash": 100, "savings": -100}


def test_a_rolled_back_batch_leaves_no_key_and_no_event(runtime: Runtime) -> None:
    books = open_books(runtime.ledger)
    store = _store(runtime)

    def broken(_outcome: Any) -> tuple[StoredResponse, Any]:
        raise RuntimeError("rendering failed inside the transaction")

    log_before = log_length(runtime.ledger)
    receipts = [_receipt(store, "fine"), _receipt(store, "broken", render=broken)]
    batch = Batch(runtime.ledger.store, [
        transfer_decision(books, "t1", "cash", "wallet", "1.00"),
        transfer_decision(books, "t2", "cash", "wallet", "2.00"),
    ], receipts=receipts)
    with pytest.raises(RuntimeError):
        batch.run()
    assert _rows(runtime) == {} and log_length(runtime.ledger) == log_before
    assert not any(receipt.written for receipt in receipts)
    assert books.balances() == BOOKS


def test_a_receipt_alone_is_refused_when_its_key_is_taken(runtime: Runtime) -> None:
    store = _store(runtime)
    runtime.ledger.record_receipt(_receipt(store, "k"), InsufficientFunds("first"))
    with pytest.raises(ReceiptTaken):
        runtime.ledger.record_receipt(_receipt(store, "k", "b" * 64), InsufficientFunds("second"))
    with pytest.raises(IdempotencyKeyReused):
        store.lookup("scope", "k", "b" * 64)
    assert json.loads(store.lookup("scope", "k", "a" * 64).body) == {"code": "insufficient_funds"}


def test_two_runtimes_racing_with_one_key_write_once_and_replay(database_url: str, open_rt: OpenRuntime) -> None:
    first, second = open_rt(database_url), open_rt(database_url)
    upgrade_to_head(first.engine)
    books = open_books(first.ledger)
    inside, release = threading.Event(), threading.Event()

    def slow_render(outcome: Any) -> tuple[StoredResponse, Any]:
        inside.set()  # the first runtime's transaction has inserted its events: hold it open
        assert release.wait(30)
        return _render(outcome)

    outcomes: dict[str, Any] = {}

    def post(name: str, runtime: Runtime, receipt: IdempotencyReceipt) -> None:
        try:
            with carrying(receipt):
                outcomes[name] = runtime.ledger.post_transaction(
                    books.tenant_id, "t1", DAY, [leg(books.accounts["cash"], "1.00"),
                                                 leg(books.accounts["wallet"], "-1.00")])
        except ReceiptTaken as taken:
            outcomes[name] = taken

    a = threading.Thread(target=post, args=("first", first, _receipt(_store(first), "k", render=slow_render)))
    a.start()
    assert inside.wait(30)
    b = threading.Thread(target=post, args=("second", second, _receipt(_store(second), "k")))
    b.start()
    b.join(0.5)
    assert b.is_alive(), "the second runtime waits for the first one's commit"
    release.set()
    a.join(30)
    b.join(30)
    assert isinstance(outcomes["first"], Recorded) and isinstance(outcomes["second"], ReceiptTaken)
    stored = _store(second).lookup("scope", "k", "a" * 64)
    assert stored is not None and json.loads(stored.body)["position"] == outcomes["first"].position
    assert books.balances(second.ledger) == {**BOOKS, "cash": 100, "wallet": -100}
    with first.engine.connect() as connection:
        assert connection.execute(select(func.count()).select_from(idempotency_keys)).scalar() == 1


def _render_all(outcome: Any) -> tuple[StoredResponse, Any]:
    assert isinstance(outcome, list), "the whole call's receipt sees every outcome"
    codes = [o.code if isinstance(o, LedgerError) else o.position for o in outcome]
    return StoredResponse(200, {}, json.dumps(codes).encode()), outcome


def test_a_bulk_call_writes_its_one_receipt_with_its_events(runtime: Runtime) -> None:
    books = open_books(runtime.ledger)
    store = _store(runtime)
    legs = [leg(books.accounts["cash"], "1.00"), leg(books.accounts["wallet"], "-1.00")]
    requests = [TransactionRequest("b1", DAY, legs), TransactionRequest("b2", DAY, list(reversed(legs)))]
    receipt = _receipt(store, "bulk", render=_render_all)
    with carrying(receipt):
        outcomes = runtime.ledger.post_transactions(books.tenant_id, requests)
    assert receipt.written
    stored = json.loads(_rows(runtime)["bulk"].response_body)
    assert stored == [o.position for o in outcomes] and stored[-1] == log_length(runtime.ledger)
    log_before, balances = log_length(runtime.ledger), books.balances()
    # The same key again (another process, say): nothing of the call is saved.
    again = _receipt(store, "bulk", render=_render_all)
    with carrying(again), pytest.raises(ReceiptTaken):
        runtime.ledger.post_transactions(books.tenant_id, [TransactionRequest("b3", DAY, legs)])
    assert log_length(runtime.ledger) == log_before and books.balances() == balances


def test_an_atomic_bulk_call_rejected_stores_its_receipt_and_no_event(runtime: Runtime) -> None:
    books = open_books(runtime.ledger)
    store = _store(runtime)
    log_before = log_length(runtime.ledger)
    requests = [TransactionRequest("a1", DAY, [leg(books.accounts["cash"], "1.00"),
                                               leg(books.accounts["wallet"], "-1.00")]),
                TransactionRequest("a2", DAY, [leg(books.accounts["wallet"], "5.00"),
                                               leg(books.accounts["cash"], "-5.00")])]
    receipt = _receipt(store, "atomic", render=_render_all)
    with carrying(receipt):
        runtime.ledger.post_transactions(books.tenant_id, requests, atomic=True)
    assert json.loads(_rows(runtime)["atomic"].response_body) == ["linked_transfer_failed", "insufficient_funds"]
    assert log_length(runtime.ledger) == log_before and books.balances() == BOOKS
