"""Accounts: opening rules, lifecycle (freeze, unfreeze, close) and balance floors."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.account import NAME_LENGTH_MAX, Account, AccountStatus, AccountType
from domain.errors import (
    AccountAlreadyExists,
    AccountBalanceNotZero,
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    AccountNotFrozen,
    AmountOutOfRange,
    InsufficientFunds,
    InvalidAccount,
    InvalidMetadata,
    UnknownCurrency,
    VersionMismatch,
)
from domain.ids import account_id_for
from domain.money import AMOUNT_MINOR_MAX
from tests.unit.books import Books, leg


@pytest.fixture
def cash(books: Books):
    """An asset account of acme, with a liability wallet and an income account beside it."""
    books.open("wallet", type="liability")
    books.open("fees", type="income")
    return books.open("cash")


def _fund(books: Books, external_id: str, amount: str) -> None:
    """Debit cash, credit wallet: the customer's wallet now holds ``amount`` more."""
    books.post(external_id, leg(books.ids["cash"], amount), leg(books.ids["wallet"], f"-{amount}"))


def _open(books: Books, **overrides: object):
    args = {"code": "x1", "name": "X", "currency": "BRL", "type": "asset"} | overrides
    return books.ledger.open_account(books.tenant_id, **args)


# --- opening ------------------------------------------------------------------------


def test_open_account_starts_empty_and_open(books: Books) -> None:
    account = _open(books, code="cash", type="expense", balance_floor_minor=0, metadata={"k": "v"}).aggregate
    assert account.id == account_id_for(books.tenant_id, "cash")
    assert (account.balance_minor, account.posting_count, account.status) == (0, 0, AccountStatus.OPEN)
    assert (account.type, account.balance_floor_minor, account.metadata) == (AccountType.EXPENSE, 0, {"k": "v"})


@pytest.mark.parametrize("code", ["1", "a.b:c/d-e_f", "x" * 64])
def test_valid_account_code_is_accepted(books: Books, code: str) -> None:
    assert _open(books, code=code).aggregate.code == code


@pytest.mark.parametrize("code", ["", ".cash", "-cash", "ca sh", "cash!", "caixa-ç", "x" * 65, None, 7])
def test_invalid_account_code_is_rejected(books: Books, code: object) -> None:
    with books.rejects(InvalidAccount, "invalid_account") as info:
        _open(books, code=code)
    assert info.value.details["field"] == "code"


def test_account_code_with_trailing_newline_is_rejected(books: Books) -> None:
    with pytest.raises(InvalidAccount):
        _open(books, code="cash\n")


@pytest.mark.parametrize("name", ["", "   ", "x" * (NAME_LENGTH_MAX + 1), None])
def test_invalid_account_name_is_rejected(books: Books, name: object) -> None:
    with books.rejects(InvalidAccount, "invalid_account") as info:
        _open(books, name=name)
    assert info.value.details["field"] == "name"


def test_account_name_of_maximum_length_is_accepted(books: Books) -> None:
    assert len(_open(books, name="x" * NAME_LENGTH_MAX).aggregate.name) == NAME_LENGTH_MAX


def test_account_name_padded_beyond_the_maximum_is_rejected(books: Books) -> None:
    with pytest.raises(InvalidAccount):
        _open(books, name="x" + " " * NAME_LENGTH_MAX)


@pytest.mark.parametrize("currency", ["XXX", "brl", "", None])
def test_unknown_currency_is_rejected(books: Books, currency: object) -> None:
    with books.rejects(UnknownCurrency, "unknown_currency"):
        _open(books, currency=currency)


@pytest.mark.parametrize("type_", ["ASSET", "assets", "revenue", "", None])
def test_bad_account_type_is_rejected(books: Books, type_: object) -> None:
    with books.rejects(InvalidAccount, "invalid_account") as info:
        _open(books, type=type_)
    assert info.value.details["field"] == "type"


@pytest.mark.parametrize("floor", [AMOUNT_MINOR_MAX + 1, -AMOUNT_MINOR_MAX - 1])
def test_floor_out_of_range_is_rejected(books: Books, floor: int) -> None:
    with books.rejects(AmountOutOfRange, "amount_out_of_range"):
        _open(books, balance_floor_minor=floor)


@pytest.mark.parametrize("metadata", [["k", "v"], {"": "v"}, {"k" * 65: "v"}, {"k": 1}, {"k": "v" * 513},
                                      {1: "v"}, {f"k{i}": "v" for i in range(51)}])
def test_invalid_account_metadata_is_rejected(books: Books, metadata: object) -> None:
    with books.rejects(InvalidMetadata, "invalid_metadata"):
        _open(books, metadata=metadata)


def test_duplicate_account_code_is_rejected(books: Books, cash) -> None:
    with books.rejects(AccountAlreadyExists, "account_already_exists"):
        _open(books, code="cash", name="Other", currency="USD", type="liability")


def test_duplicate_account_code_lost_race_is_rejected(books: Books, cash, monkeypatch) -> None:
    # A concurrent writer opened it first: the store's version constraint decides.
    real_get = books.ledger.store.get
    monkeypatch.setattr(books.ledger.store, "get",
                        lambda id_: None if isinstance(real_get(id_), Account) else real_get(id_))
    with pytest.raises(AccountAlreadyExists) as info:
        _open(books, code="cash")
    assert info.value.code == "account_already_exists"


def test_same_code_in_another_tenant_is_another_account(books: Books, cash) -> None:
    other = Books.create(books.ledger, "globex")
    assert other.open("cash") != cash


# --- lookup -------------------------------------------------------------------------


def test_unknown_account_is_not_found(books: Books) -> None:
    with pytest.raises(AccountNotFound) as info:
        books.ledger.get_account(books.tenant_id, uuid4())
    assert info.value.code == "account_not_found"


def test_another_tenants_account_is_not_found(books: Books, cash) -> None:
    other = Books.create(books.ledger, "globex")
    with pytest.raises(AccountNotFound):
        books.ledger.get_account(other.tenant_id, cash)
    with other.rejects(AccountNotFound, "account_not_found"):
        other.ledger.freeze_account(other.tenant_id, cash)
    assert books.ledger.get_account(books.tenant_id, cash).status == AccountStatus.OPEN


def test_a_tenant_id_is_not_an_account(books: Books) -> None:
    with pytest.raises(AccountNotFound):
        books.ledger.get_account(books.tenant_id, books.tenant_id)


# --- freeze, unfreeze, close --------------------------------------------------------


def test_freeze_then_unfreeze(books: Books, cash) -> None:
    assert books.ledger.freeze_account(books.tenant_id, cash).aggregate.status == AccountStatus.FROZEN
    assert books.ledger.unfreeze_account(books.tenant_id, cash).aggregate.status == AccountStatus.OPEN
    assert books.ledger.verify_aggregate_chain(cash) is None


def test_freeze_when_frozen_is_rejected(books: Books, cash) -> None:
    books.ledger.freeze_account(books.tenant_id, cash)
    with books.rejects(AccountFrozen, "account_frozen"):
        books.ledger.freeze_account(books.tenant_id, cash)


def test_unfreeze_when_open_is_rejected(books: Books, cash) -> None:
    with books.rejects(AccountNotFrozen, "account_not_frozen"):
        books.ledger.unfreeze_account(books.tenant_id, cash)


def test_frozen_account_rejects_postings(books: Books, cash) -> None:
    _fund(books, "t1", "5.00")
    books.ledger.freeze_account(books.tenant_id, books.ids["wallet"])
    with books.rejects(AccountFrozen, "account_frozen", external_id="t2"):
        _fund(books, "t2", "1.00")


def test_frozen_account_rejects_postings_in_either_direction(books: Books, cash) -> None:
    _fund(books, "t1", "5.00")
    books.ledger.freeze_account(books.tenant_id, cash)
    with books.rejects(AccountFrozen, "account_frozen", external_id="t2"):
        books.post("t2", leg(books.ids["wallet"], "1.00"), leg(cash, "-1.00"))


def test_close_empty_account(books: Books, cash) -> None:
    assert books.ledger.close_account(books.tenant_id, cash).aggregate.status == AccountStatus.CLOSED


def test_close_account_that_returned_to_zero(books: Books, cash) -> None:
    _fund(books, "t1", "5.00")
    books.post("t2", leg(books.ids["wallet"], "5.00"), leg(cash, "-5.00"))
    assert books.ledger.close_account(books.tenant_id, cash).aggregate.status == AccountStatus.CLOSED


def test_close_with_nonzero_balance_is_rejected(books: Books, cash) -> None:
    _fund(books, "t1", "0.01")
    with books.rejects(AccountBalanceNotZero, "account_balance_not_zero"):
        books.ledger.close_account(books.tenant_id, cash)
    assert books.ledger.get_account(books.tenant_id, cash).status == AccountStatus.OPEN


def test_close_when_closed_is_rejected(books: Books, cash) -> None:
    books.ledger.close_account(books.tenant_id, cash)
    with books.rejects(AccountClosed, "account_closed"):
        books.ledger.close_account(books.tenant_id, cash)


def test_freeze_when_closed_is_rejected(books: Books, cash) -> None:
    books.ledger.close_account(books.tenant_id, cash)
    with books.rejects(AccountClosed, "account_closed"):
        books.ledger.freeze_account(books.tenant_id, cash)


def test_unfreeze_when_closed_is_rejected(books: Books, cash) -> None:
    books.ledger.close_account(books.tenant_id, cash)
    with books.rejects(AccountNotFrozen, "account_not_frozen"):
        books.ledger.unfreeze_account(books.tenant_id, cash)


def test_closed_account_rejects_postings(books: Books, cash) -> None:
    books.ledger.close_account(books.tenant_id, cash)
    with books.rejects(AccountClosed, "account_closed", external_id="t1"):
        _fund(books, "t1", "1.00")


@pytest.mark.parametrize("command", ["freeze_account", "close_account"])
def test_change_based_on_a_stale_version_is_rejected(books: Books, cash, command: str) -> None:
    version = books.ledger.get_account(books.tenant_id, cash).version
    _fund(books, "t1", "1.00")
    with books.rejects(VersionMismatch, "version_mismatch") as info:
        getattr(books.ledger, command)(books.tenant_id, cash, expected_version=version)
    assert info.value.details == {"expected_version": version, "current_version": version + 1}
    assert books.ledger.get_account(books.tenant_id, cash).status == AccountStatus.OPEN


def test_change_based_on_the_current_version_is_accepted(books: Books, cash) -> None:
    version = books.ledger.get_account(books.tenant_id, cash).version
    assert books.ledger.freeze_account(books.tenant_id, cash, expected_version=version).aggregate.version == version + 1


# --- balance floors -----------------------------------------------------------------
# The floor applies to the *normal* balance: debit-positive for assets and expenses,
# credit-positive for liabilities, equity and income.


def test_liability_normal_balance_is_credit_positive(books: Books, cash) -> None:
    _fund(books, "t1", "7.00")
    wallet = books.ledger.get_account(books.tenant_id, books.ids["wallet"])
    assert (wallet.balance_minor, wallet.balance_normal_minor) == (-700, 700)
    account = books.ledger.get_account(books.tenant_id, cash)
    assert (account.balance_minor, account.balance_normal_minor) == (700, 700)


def test_liability_with_zero_floor_may_be_spent_to_zero(books: Books, cash) -> None:
    wallet = books.open("wallet0", type="liability", floor=0)
    books.post("top-up", leg(cash, "10.00"), leg(wallet, "-10.00"))
    books.post("spend", leg(wallet, "10.00"), leg(books.ids["fees"], "-10.00"))
    assert books.balance(wallet) == 0


def test_liability_with_zero_floor_rejects_overspending(books: Books, cash) -> None:
    wallet = books.open("wallet0", type="liability", floor=0)
    books.post("top-up", leg(cash, "10.00"), leg(wallet, "-10.00"))
    with books.rejects(InsufficientFunds, "insufficient_funds", external_id="spend"):
        books.post("spend", leg(wallet, "10.01"), leg(books.ids["fees"], "-10.01"))


def test_liability_with_zero_floor_accepts_credits_from_empty(books: Books, cash) -> None:
    # Crediting a liability raises its normal balance: no floor can stop that.
    wallet = books.open("wallet0", type="liability", floor=0)
    books.post("top-up", leg(cash, "3.00"), leg(wallet, "-3.00"))
    assert books.ledger.get_account(books.tenant_id, wallet).balance_normal_minor == 300


def test_asset_with_zero_floor_rejects_going_negative(books: Books, cash) -> None:
    bank = books.open("bank", floor=0)
    books.post("deposit", leg(bank, "2.00"), leg(books.ids["wallet"], "-2.00"))
    with books.rejects(InsufficientFunds, "insufficient_funds", external_id="withdraw"):
        books.post("withdraw", leg(books.ids["wallet"], "2.01"), leg(bank, "-2.01"))


def test_asset_with_zero_floor_may_be_emptied(books: Books, cash) -> None:
    bank = books.open("bank", floor=0)
    books.post("deposit", leg(bank, "2.00"), leg(books.ids["wallet"], "-2.00"))
    books.post("withdraw", leg(books.ids["wallet"], "2.00"), leg(bank, "-2.00"))
    assert books.balance(bank) == 0


def test_negative_floor_is_an_overdraft_limit(books: Books, cash) -> None:
    card = books.open("card", floor=-5000)
    books.post("spend", leg(books.ids["fees"], "50.00"), leg(card, "-50.00"))
    with books.rejects(InsufficientFunds, "insufficient_funds", external_id="more"):
        books.post("more", leg(books.ids["fees"], "0.01"), leg(card, "-0.01"))
    assert books.ledger.get_account(books.tenant_id, card).balance_normal_minor == -5000


def test_positive_floor_keeps_a_minimum_balance(books: Books, cash) -> None:
    reserve = books.open("reserve", type="liability", floor=100)
    books.post("in", leg(cash, "5.00"), leg(reserve, "-5.00"))
    with books.rejects(InsufficientFunds, "insufficient_funds", external_id="out"):
        books.post("out", leg(reserve, "4.01"), leg(cash, "-4.01"))


def test_account_without_floor_may_go_either_way(books: Books, cash) -> None:
    books.post("t1", leg(books.ids["wallet"], "9.00"), leg(cash, "-9.00"))
    assert books.balance(cash) == -900


# --- aggregate and persistence ------------------------------------------------------


def test_account_aggregate_check_posting_changes_nothing() -> None:
    account = Account.open(uuid4(), "cash", "Cash", "BRL", "asset", balance_floor_minor=0)
    with pytest.raises(InsufficientFunds):
        account.check_posting(-1, "BRL")
    assert (account.balance_minor, len(account.collect_events())) == (0, 1)


def test_account_reloaded_from_snapshot_keeps_state_and_chain(books: Books, cash) -> None:
    # Accounts are snapshotted every 200 events; a reload must continue the same chain.
    for i in range(200):
        _fund(books, f"t{i}", "0.01")
    books.ledger.repository.cache = None  # read from the store (and its snapshot)
    assert list(books.ledger.snapshots.get(cash)), "expected a snapshot at version 200"
    account = books.ledger.get_account(books.tenant_id, cash)
    assert (account.balance_minor, account.posting_count, account.status, account.type) == (200, 200, "open", "asset")
    _fund(books, "after", "0.01")
    assert books.ledger.verify_aggregate_chain(cash) is None
    assert books.balance(cash) == 201
