"""The ledger's use cases against a real store: the same scenarios on SQLite and PostgreSQL.

Each test opens one runtime on a fresh database, drives the Ledger, and where it
matters reopens a second runtime (empty cache) to check what was really stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

import pytest

from application.ledger import Ledger
from domain.account import AccountStatus
from domain.errors import (
    AccountBalanceNotZero,
    AccountClosed,
    AccountFrozen,
    CurrencyMismatch,
    DuplicateExternalId,
    InsufficientFunds,
    LedgerError,
    ReversalNotReversible,
    TransactionAlreadyReversed,
    TransactionNotFound,
    TransactionUnbalanced,
)
from domain.ids import reversal_id_for, transaction_id_for
from infrastructure.runtime import Runtime
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, broken_chains, leg, log_length


@dataclass
class Books:
    """Tenant ``acme`` with a BRL pair (asset, liability with floor 0) and a JPY pair."""

    ledger: Ledger
    tenant_id: UUID
    cash: UUID
    wallet: UUID
    jpy_cash: UUID
    jpy_payable: UUID

    @property
    def accounts(self) -> tuple[UUID, ...]:
        return (self.cash, self.wallet, self.jpy_cash, self.jpy_payable)

    def balances(self, ledger: Ledger | None = None) -> dict[UUID, int]:
        ledger = ledger or self.ledger
        return {a: ledger.get_account(self.tenant_id, a).balance_minor for a in self.accounts}

    def post(self, external_id: str, *legs, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("effective_date", DAY)
        return self.ledger.post_transaction(self.tenant_id, external_id, postings=list(legs), **kwargs)

    def assert_rejected(self, error: type[LedgerError], external_id: str, *legs) -> None:  # type: ignore[no-untyped-def]
        """Posting raises exactly ``error``; no balance moves, nothing reaches the store."""
        before, log_before = self.balances(), log_length(self.ledger)
        with pytest.raises(error) as info:
            self.post(external_id, *legs)
        assert type(info.value) is error
        assert self.balances() == before
        assert log_length(self.ledger) == log_before
        with pytest.raises(TransactionNotFound):
            self.ledger.get_transaction(self.tenant_id, transaction_id_for(self.tenant_id, external_id))


def open_books(runtime: Runtime) -> Books:
    ledger = runtime.ledger
    tenant_id = ledger.create_tenant("acme").aggregate.id

    def account(code: str, currency: str, type_: str, floor: int | None = None) -> UUID:
        return ledger.open_account(tenant_id, code, code.title(), currency, type_, floor).aggregate.id

    return Books(
        ledger,
        tenant_id,
        cash=account("cash", "BRL", "asset"),
        wallet=account("wallet", "BRL", "liability", 0),
        jpy_cash=account("jpy-cash", "JPY", "asset"),
        jpy_payable=account("jpy-payable", "JPY", "liability"),
    )


@pytest.fixture
def runtime(database_url: str, open_rt: OpenRuntime) -> Runtime:
    return open_rt(database_url)


@pytest.fixture
def books(runtime: Runtime) -> Books:
    return open_books(runtime)


def test_postings_move_balances_and_survive_a_reopen(
    books: Books, database_url: str, open_rt: OpenRuntime
) -> None:
    first = books.post("deposit-1", leg(books.cash, "100.00"), leg(books.wallet, "-100.00", "BRL"))
    books.post("deposit-2", leg(books.cash, "0.55"), leg(books.wallet, "-0.55"))
    books.post("jpy-1", leg(books.jpy_cash, "1500", "JPY"), leg(books.jpy_payable, "-1500"))

    assert first.position is not None and not first.replayed
    expected = {books.cash: 10055, books.wallet: -10055, books.jpy_cash: 1500, books.jpy_payable: -1500}
    assert books.balances() == expected
    wallet = books.ledger.get_account(books.tenant_id, books.wallet)
    assert (wallet.balance_normal_minor, wallet.posting_count) == (10055, 2)

    fresh = open_rt(database_url).ledger
    assert books.balances(fresh) == expected
    stored = fresh.get_transaction(books.tenant_id, first.aggregate.id)
    assert stored.external_id == "deposit-1"
    assert stored.effective_date == DAY
    assert sorted(p.amount_minor for p in stored.postings) == [-10000, 10000]
    assert broken_chains(fresh) == {}


def test_a_rejected_transaction_changes_nothing(books: Books, database_url: str, open_rt: OpenRuntime) -> None:
    books.post("deposit-1", leg(books.cash, "100.00"), leg(books.wallet, "-100.00"))
    expected = books.balances()
    log_before = log_length(books.ledger)

    # The wallet (liability, floor 0) holds 100.00; taking 100.01 out would go below zero.
    books.assert_rejected(InsufficientFunds, "overdraw", leg(books.wallet, "100.01"), leg(books.cash, "-100.01"))
    books.assert_rejected(
        CurrencyMismatch, "wrong-ccy", leg(books.jpy_cash, "10", "BRL"), leg(books.jpy_payable, "-10")
    )
    books.assert_rejected(
        TransactionUnbalanced, "cross-ccy", leg(books.cash, "1.00"), leg(books.jpy_payable, "-100")
    )

    # The first leg passing its checks must not leave a half-applied posting in the cache.
    books.post("drain", leg(books.wallet, "100.00"), leg(books.cash, "-100.00"))
    assert books.balances() == {**expected, books.cash: 0, books.wallet: 0}

    fresh = open_rt(database_url).ledger
    assert books.balances(fresh) == {**expected, books.cash: 0, books.wallet: 0}
    assert log_length(fresh) == log_before + 3  # one transaction and its two postings
    assert fresh.get_account(books.tenant_id, books.wallet).posting_count == 2
    assert broken_chains(fresh) == {}


def test_a_repeated_external_id_replays_or_is_refused(books: Books) -> None:
    legs = (leg(books.cash, "12.34"), leg(books.wallet, "-12.34"))
    first = books.post("pay-7", *legs, description="invoice 7", metadata={"order": "7"})
    log_before, balances_before = log_length(books.ledger), books.balances()

    again = books.post("pay-7", *reversed(legs), description="invoice 7", metadata={"order": "7"})
    assert again.replayed and again.position is None
    assert again.aggregate.id == first.aggregate.id
    assert (log_length(books.ledger), books.balances()) == (log_before, balances_before)

    with pytest.raises(DuplicateExternalId):
        books.post("pay-7", leg(books.cash, "12.35"), leg(books.wallet, "-12.35"), description="invoice 7",
                   metadata={"order": "7"})
    assert (log_length(books.ledger), books.balances()) == (log_before, balances_before)


def test_a_reversal_restores_balances_once(books: Books, database_url: str, open_rt: OpenRuntime) -> None:
    books.post("deposit", leg(books.cash, "50.00"), leg(books.wallet, "-50.00"))
    original = books.post("fee", leg(books.wallet, "7.50"), leg(books.cash, "-7.50")).aggregate
    assert books.balances()[books.wallet] == -4250

    reversal = books.ledger.reverse_transaction(books.tenant_id, original.id, DAY, "refund").aggregate
    assert reversal.id == reversal_id_for(original.id)
    assert reversal.reverses == original.id
    assert books.balances()[books.wallet] == -5000
    assert books.balances()[books.cash] == 5000

    with pytest.raises(TransactionAlreadyReversed):
        books.ledger.reverse_transaction(books.tenant_id, original.id, DAY)
    with pytest.raises(ReversalNotReversible):
        books.ledger.reverse_transaction(books.tenant_id, reversal.id, DAY)

    fresh = open_rt(database_url).ledger
    assert fresh.get_transaction(books.tenant_id, original.id).reversed_by == reversal.id
    stored = fresh.get_transaction(books.tenant_id, reversal.id)
    assert sorted(p.amount_minor for p in stored.postings) == [-750, 750]
    assert books.balances(fresh) == books.balances()
    assert fresh.get_account(books.tenant_id, books.wallet).posting_count == 3
    assert broken_chains(fresh) == {}


def test_frozen_and_closed_accounts_refuse_postings(books: Books, database_url: str, open_rt: OpenRuntime) -> None:
    books.post("jpy-1", leg(books.jpy_cash, "300"), leg(books.jpy_payable, "-300"))

    books.ledger.freeze_account(books.tenant_id, books.jpy_cash)
    books.assert_rejected(AccountFrozen, "while-frozen", leg(books.jpy_cash, "1"), leg(books.jpy_payable, "-1"))
    books.ledger.unfreeze_account(books.tenant_id, books.jpy_cash)
    books.post("after-unfreeze", leg(books.jpy_cash, "1"), leg(books.jpy_payable, "-1"))

    with pytest.raises(AccountBalanceNotZero):
        books.ledger.close_account(books.tenant_id, books.jpy_cash)
    books.post("settle", leg(books.jpy_cash, "-301"), leg(books.jpy_payable, "301"))
    books.ledger.close_account(books.tenant_id, books.jpy_cash)
    books.assert_rejected(AccountClosed, "while-closed", leg(books.jpy_cash, "1"), leg(books.jpy_payable, "-1"))
    with pytest.raises(AccountClosed):
        books.ledger.freeze_account(books.tenant_id, books.jpy_cash)

    fresh = open_rt(database_url).ledger
    closed = fresh.get_account(books.tenant_id, books.jpy_cash)
    assert closed.status == AccountStatus.CLOSED
    assert (closed.balance_minor, closed.posting_count) == (0, 3)
    assert fresh.get_account(books.tenant_id, books.jpy_payable).balance_minor == 0
    assert broken_chains(fresh) == {}
