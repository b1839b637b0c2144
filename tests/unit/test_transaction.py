"""Transactions: posting rules, idempotent external ids, and reversals."""

from __future__ import annotations

from datetime import date, datetime, timezone
from types import SimpleNamespace
from uuid import uuid4

import pytest
from eventsourcing.persistence import IntegrityError

from application import retries as retries_module
from application.ledger import PostingInstruction
from domain.errors import (
    AccountClosed,
    AccountFrozen,
    AccountNotFound,
    AmountOutOfRange,
    AmountPrecisionExceeded,
    ConcurrencyConflict,
    CurrencyMismatch,
    DuplicateExternalId,
    DuplicatePostingAccount,
    InsufficientFunds,
    InvalidAmount,
    InvalidMetadata,
    InvalidTransaction,
    ReversalNotReversible,
    TooFewPostings,
    TooManyPostings,
    TransactionAlreadyReversed,
    TransactionNotFound,
    TransactionUnbalanced,
    VersionMismatch,
    ZeroAmount,
)
from domain.ids import reversal_id_for
from domain.transaction import DESCRIPTION_LENGTH_MAX, POSTINGS_MAX, Posting, Transaction
from tests.unit.books import DAY, Books, leg


@pytest.fixture
def acme(books: Books) -> Books:
    """acme with BRL cash/wallet(floor 0)/fees and USD cash/wallet; the BRL wallet holds 10.00."""
    books.open("cash")
    books.open("wallet", type="liability", floor=0)
    books.open("fees", type="income")
    books.open("usd-cash", currency="USD")
    books.open("usd-wallet", currency="USD", type="liability")
    books.post("seed", leg(books.ids["cash"], "10.00"), leg(books.ids["wallet"], "-10.00"))
    return books


def _pay(books: Books, external_id: str, amount: str = "1.00", **kwargs: object):
    """Spend ``amount`` from the wallet as a fee."""
    return books.post(external_id, leg(books.ids["wallet"], amount), leg(books.ids["fees"], f"-{amount}"), **kwargs)


# --- recording ----------------------------------------------------------------------


def test_balanced_transaction_is_recorded(acme: Books) -> None:
    recorded = _pay(acme, "t1", "2.50", description="coffee", metadata={"order": "42"})
    tx = recorded.aggregate
    assert (recorded.replayed, isinstance(recorded.position, int)) == (False, True)
    assert (tx.id, tx.external_id, tx.effective_date, tx.description) == (acme.tx_id("t1"), "t1", DAY, "coffee")
    assert tx.postings == (Posting(acme.ids["wallet"], 250, "BRL"), Posting(acme.ids["fees"], -250, "BRL"))
    assert acme.ledger.get_transaction(acme.tenant_id, tx.id).metadata == {"order": "42"}
    assert (acme.balance(acme.ids["wallet"]), acme.balance(acme.ids["fees"])) == (-750, -250)


def test_recorded_transaction_chains_verify(acme: Books) -> None:
    tx = _pay(acme, "t1").aggregate
    for aggregate_id in (tx.id, acme.ids["wallet"], acme.ids["fees"]):
        assert acme.ledger.verify_aggregate_chain(aggregate_id) is None


def test_unbalanced_transaction_is_rejected(acme: Books) -> None:
    with acme.rejects(TransactionUnbalanced, "transaction_unbalanced", external_id="t1") as info:
        acme.post("t1", leg(acme.ids["wallet"], "1.00"), leg(acme.ids["fees"], "-0.99"))
    assert info.value.details["imbalance"] == {"BRL": "0.01"}


def test_balance_across_currencies_is_still_unbalanced(acme: Books) -> None:
    with acme.rejects(TransactionUnbalanced, "transaction_unbalanced", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], "1.00"), leg(acme.ids["usd-wallet"], "-1.00"))


def test_two_currencies_balanced_per_currency_are_accepted(acme: Books) -> None:
    ids = acme.ids
    acme.post("fx", leg(ids["cash"], "5.00"), leg(ids["wallet"], "-5.00"),
              leg(ids["usd-cash"], "1.00", "USD"), leg(ids["usd-wallet"], "-1.00", "USD"))
    assert (acme.balance(ids["cash"]), acme.balance(ids["usd-cash"]), acme.balance(ids["usd-wallet"])) == (
        1500, 100, -100)


def test_instruction_currency_must_match_the_account(acme: Books) -> None:
    with acme.rejects(CurrencyMismatch, "currency_mismatch", external_id="t1"):
        acme.post("t1", leg(acme.ids["wallet"], "1.00", "USD"), leg(acme.ids["fees"], "-1.00", "BRL"))


def test_unknown_instruction_currency_is_a_mismatch(acme: Books) -> None:
    with acme.rejects(CurrencyMismatch, "currency_mismatch", external_id="t1"):
        acme.post("t1", leg(acme.ids["wallet"], "1.00", "XXX"), leg(acme.ids["fees"], "-1.00"))


def test_amount_is_parsed_in_the_account_currency(acme: Books) -> None:
    with acme.rejects(AmountPrecisionExceeded, "amount_precision_exceeded", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], "1.001"), leg(acme.ids["wallet"], "-1.001"))


@pytest.mark.parametrize("amount", ["1e2", "", "1,00", None, 1.0])
def test_invalid_amount_is_rejected(acme: Books, amount: object) -> None:
    with acme.rejects(InvalidAmount, "invalid_amount", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], amount), leg(acme.ids["wallet"], "-1.00"))


def test_amount_out_of_range_is_rejected(acme: Books) -> None:
    huge = "1000000000000000.01"
    with acme.rejects(AmountOutOfRange, "amount_out_of_range", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], huge), leg(acme.ids["fees"], f"-{huge}"))


def test_unknown_account_is_not_found(acme: Books) -> None:
    with acme.rejects(AccountNotFound, "account_not_found", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], "1.00"), leg(uuid4(), "-1.00"))


def test_another_tenants_account_is_not_found(acme: Books) -> None:
    other = acme.open("their-cash", tenant_id=Books.create(acme.ledger, "globex").tenant_id)
    with acme.rejects(AccountNotFound, "account_not_found", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], "1.00"), leg(other, "-1.00"))


@pytest.mark.parametrize("count", [0, 1])
def test_too_few_postings_is_rejected(acme: Books, count: int) -> None:
    with acme.rejects(TooFewPostings, "too_few_postings", external_id="t1"):
        acme.post("t1", *[leg(acme.ids["cash"], "1.00")][:count])


def test_too_many_postings_is_rejected(acme: Books) -> None:
    # Checked before any account is loaded, so unknown accounts do not matter.
    legs = [leg(uuid4(), "1.00") for _ in range(POSTINGS_MAX + 1)]
    with acme.rejects(TooManyPostings, "too_many_postings", external_id="t1"):
        acme.post("t1", *legs)


def test_maximum_number_of_postings_is_accepted(acme: Books) -> None:
    many = [acme.open(f"sub-{i}", type="expense") for i in range(POSTINGS_MAX - 1)]
    total = f"-{POSTINGS_MAX - 1}.00"
    acme.post("t1", *[leg(a, "1.00") for a in many], leg(acme.ids["fees"], total))
    assert acme.balance(acme.ids["fees"]) == -100 * (POSTINGS_MAX - 1)


@pytest.mark.parametrize("zero", ["0", "0.00", "-0", "+0.0"])
def test_zero_amount_is_rejected(acme: Books, zero: str) -> None:
    with acme.rejects(ZeroAmount, "zero_amount", external_id="t1"):
        acme.post("t1", leg(acme.ids["cash"], zero), leg(acme.ids["fees"], "1.00"), leg(acme.ids["wallet"], "-1.00"))


def test_duplicate_account_in_one_transaction_is_rejected(acme: Books) -> None:
    cash = acme.ids["cash"]
    with acme.rejects(DuplicatePostingAccount, "duplicate_posting_account", external_id="t1"):
        acme.post("t1", leg(cash, "1.00"), leg(cash, "-1.00"))


@pytest.mark.parametrize("external_id", ["", "-t1", ".t1", "t 1", "t1#", "é1", "x" * 129, None, 17])
def test_invalid_external_id_is_rejected(acme: Books, external_id: object) -> None:
    with acme.rejects(InvalidTransaction, "invalid_transaction") as info:
        acme.post(external_id, leg(acme.ids["cash"], "1.00"), leg(acme.ids["wallet"], "-1.00"))
    assert info.value.details["field"] == "external_id"


@pytest.mark.parametrize("external_id", ["1", "a.b:c/d@e+f-g_h", "x" * 128])
def test_valid_external_id_is_accepted(acme: Books, external_id: str) -> None:
    assert _pay(acme, external_id).aggregate.external_id == external_id


def test_external_id_with_trailing_newline_is_rejected(acme: Books) -> None:
    with pytest.raises(InvalidTransaction):
        _pay(acme, "t1\n")


@pytest.mark.parametrize("description", ["x" * (DESCRIPTION_LENGTH_MAX + 1), None, 5])
def test_invalid_description_is_rejected(acme: Books, description: object) -> None:
    with acme.rejects(InvalidTransaction, "invalid_transaction", external_id="t1") as info:
        _pay(acme, "t1", description=description)
    assert info.value.details["field"] == "description"


def test_description_of_maximum_length_is_accepted(acme: Books) -> None:
    assert len(_pay(acme, "t1", description="x" * DESCRIPTION_LENGTH_MAX).aggregate.description) == 500


@pytest.mark.parametrize("metadata", ["k=v", {"": "v"}, {"k": None}, {"k": "v" * 513}, {f"k{i}": "" for i in range(51)}])
def test_invalid_transaction_metadata_is_rejected(acme: Books, metadata: object) -> None:
    with acme.rejects(InvalidMetadata, "invalid_metadata", external_id="t1"):
        _pay(acme, "t1", metadata=metadata)


@pytest.mark.parametrize(
    "effective_date", [datetime(2024, 3, 1, tzinfo=timezone.utc), datetime(2024, 3, 1), "2024-03-01", None, 20240301]
)
def test_effective_date_must_be_a_date(acme: Books, effective_date: object) -> None:
    with acme.rejects(InvalidTransaction, "invalid_transaction", external_id="t1") as info:
        _pay(acme, "t1", effective_date=effective_date)
    assert info.value.details["field"] == "effective_date"


def test_effective_date_round_trips_through_the_store(acme: Books) -> None:
    _pay(acme, "t1", effective_date=date(1999, 12, 31))
    acme.ledger.repository.cache = None
    assert acme.ledger.get_transaction(acme.tenant_id, acme.tx_id("t1")).effective_date == date(1999, 12, 31)


# --- idempotency --------------------------------------------------------------------


def test_repeated_request_returns_the_original(acme: Books) -> None:
    original = _pay(acme, "t1", description="coffee", metadata={"k": "v"}).aggregate
    before = acme.balances()
    again = _pay(acme, "t1", description="coffee", metadata={"k": "v"})
    assert (again.replayed, again.position, again.aggregate.id) == (True, None, original.id)
    assert again.aggregate.version == original.version
    assert acme.balances() == before


def test_repeated_request_matches_postings_in_any_order_and_form(acme: Books) -> None:
    _pay(acme, "t1", "1.50")
    again = acme.post("t1", leg(acme.ids["fees"], "-1.5", "BRL"), leg(acme.ids["wallet"], "1.500"))
    assert again.replayed


@pytest.mark.parametrize(
    "change",
    [{"amount": "1.01"}, {"description": "other"}, {"metadata": {"k": "v"}}, {"effective_date": date(2024, 3, 2)}],
)
def test_reused_external_id_with_other_content_is_rejected(acme: Books, change: dict) -> None:
    original = _pay(acme, "t1").aggregate
    with acme.rejects(DuplicateExternalId, "duplicate_external_id") as info:
        _pay(acme, "t1", **change)
    assert info.value.details["transaction_id"] == str(original.id)
    assert acme.ledger.get_transaction(acme.tenant_id, original.id).postings == original.postings


def test_reused_external_id_on_other_accounts_is_rejected(acme: Books) -> None:
    _pay(acme, "t1")
    with acme.rejects(DuplicateExternalId, "duplicate_external_id"):
        acme.post("t1", leg(acme.ids["cash"], "1.00"), leg(acme.ids["fees"], "-1.00"))


def test_external_id_of_a_rejected_request_stays_free(acme: Books) -> None:
    with pytest.raises(InsufficientFunds):
        _pay(acme, "t1", "10.01")
    assert not _pay(acme, "t1", "10.00").replayed
    assert acme.balance(acme.ids["wallet"]) == 0


def test_external_ids_are_per_tenant(acme: Books) -> None:
    other = Books.create(acme.ledger, "globex")
    a, b = other.open("cash"), other.open("fees", type="income")
    _pay(acme, "t1")
    assert not other.post("t1", leg(a, "1.00"), leg(b, "-1.00")).replayed


# --- concurrency --------------------------------------------------------------------


def test_persistent_conflicts_give_up_with_concurrency_conflict(acme: Books, monkeypatch) -> None:
    def conflict(*_: object) -> None:
        raise IntegrityError("version taken")

    monkeypatch.setattr(acme.ledger.store, "save", conflict)
    monkeypatch.setattr(retries_module, "time", SimpleNamespace(sleep=lambda _: None))  # skip the back-off
    with acme.rejects(ConcurrencyConflict, "concurrency_conflict", external_id="t1"):
        _pay(acme, "t1")


def test_a_transient_conflict_is_retried(acme: Books, monkeypatch) -> None:
    real_save, calls = acme.ledger.store.save, []

    def conflict_once(*aggregates: object) -> int | None:
        calls.append(1)
        if len(calls) == 1:
            raise IntegrityError("version taken")
        return real_save(*aggregates)

    monkeypatch.setattr(acme.ledger.store, "save", conflict_once)
    _pay(acme, "t1")
    assert (len(calls), acme.balance(acme.ids["wallet"])) == (2, -900)


# --- reversal -----------------------------------------------------------------------


def test_reversal_posts_the_opposite_postings(acme: Books) -> None:
    original = _pay(acme, "t1", "3.00").aggregate
    reversal = acme.ledger.reverse_transaction(acme.tenant_id, original.id, date(2024, 4, 1), "refund").aggregate
    assert reversal.id == reversal_id_for(original.id)
    assert (reversal.reverses, reversal.external_id, reversal.effective_date) == (original.id, None, date(2024, 4, 1))
    assert reversal.description == "refund"
    assert reversal.postings == tuple(Posting(p.account_id, -p.amount_minor, p.currency) for p in original.postings)


def test_reversal_restores_balances(acme: Books) -> None:
    before = acme.balances()
    original = _pay(acme, "t1", "3.00").aggregate
    acme.ledger.reverse_transaction(acme.tenant_id, original.id)
    assert acme.balances() == before


def test_reversal_marks_the_original(acme: Books) -> None:
    original = _pay(acme, "t1").aggregate
    reversal = acme.ledger.reverse_transaction(acme.tenant_id, original.id).aggregate
    stored = acme.ledger.get_transaction(acme.tenant_id, original.id)
    assert stored.reversed_by == reversal.id
    assert acme.ledger.get_transaction(acme.tenant_id, reversal.id).reverses == original.id
    assert acme.ledger.verify_aggregate_chain(original.id) is None


def test_reversal_defaults(acme: Books) -> None:
    original = _pay(acme, "t1").aggregate
    reversal = acme.ledger.reverse_transaction(acme.tenant_id, original.id).aggregate
    assert reversal.description == "Reversal of t1"
    assert reversal.effective_date == datetime.now(timezone.utc).date()


def test_second_reversal_is_rejected(acme: Books) -> None:
    original = _pay(acme, "t1").aggregate
    acme.ledger.reverse_transaction(acme.tenant_id, original.id)
    with acme.rejects(TransactionAlreadyReversed, "transaction_already_reversed"):
        acme.ledger.reverse_transaction(acme.tenant_id, original.id)


def test_reversing_a_reversal_is_rejected(acme: Books) -> None:
    original = _pay(acme, "t1").aggregate
    reversal = acme.ledger.reverse_transaction(acme.tenant_id, original.id).aggregate
    with acme.rejects(ReversalNotReversible, "reversal_not_reversible"):
        acme.ledger.reverse_transaction(acme.tenant_id, reversal.id)


def test_reversal_on_a_frozen_account_is_rejected(acme: Books) -> None:
    original = _pay(acme, "t1").aggregate
    acme.ledger.freeze_account(acme.tenant_id, acme.ids["fees"])
    with acme.rejects(AccountFrozen, "account_frozen", transaction_id=reversal_id_for(original.id)):
        acme.ledger.reverse_transaction(acme.tenant_id, original.id)
    assert acme.ledger.get_transaction(acme.tenant_id, original.id).reversed_by is None


def test_reversal_rejected_once_succeeds_after_unfreeze(acme: Books) -> None:
    # The rejected attempt must not leave a "reversed" original behind (e.g. in the cache).
    original = _pay(acme, "t1").aggregate
    acme.ledger.freeze_account(acme.tenant_id, acme.ids["fees"])
    with pytest.raises(AccountFrozen):
        acme.ledger.reverse_transaction(acme.tenant_id, original.id)
    acme.ledger.unfreeze_account(acme.tenant_id, acme.ids["fees"])
    assert acme.ledger.reverse_transaction(acme.tenant_id, original.id).aggregate.reverses == original.id


def test_reversal_over_a_floor_is_rejected(acme: Books) -> None:
    # The seed credited 10.00 to the wallet; once spent, un-crediting it would go below zero.
    _pay(acme, "t1", "10.00")
    with acme.rejects(InsufficientFunds, "insufficient_funds", transaction_id=reversal_id_for(acme.tx_id("seed"))):
        acme.ledger.reverse_transaction(acme.tenant_id, acme.tx_id("seed"))


def test_reversal_on_a_closed_account_is_rejected(acme: Books) -> None:
    ids = acme.ids
    original = acme.post("in", leg(ids["usd-cash"], "1.00"), leg(ids["usd-wallet"], "-1.00")).aggregate
    acme.post("out", leg(ids["usd-wallet"], "1.00"), leg(ids["usd-cash"], "-1.00"))
    acme.ledger.close_account(acme.tenant_id, ids["usd-cash"])
    with acme.rejects(AccountClosed, "account_closed", transaction_id=reversal_id_for(original.id)):
        acme.ledger.reverse_transaction(acme.tenant_id, original.id)


def test_reversal_based_on_a_stale_version_is_rejected(acme: Books) -> None:
    original = _pay(acme, "t1").aggregate
    with acme.rejects(VersionMismatch, "version_mismatch", transaction_id=reversal_id_for(original.id)):
        acme.ledger.reverse_transaction(acme.tenant_id, original.id, expected_version=original.version + 1)


def test_unknown_transaction_is_not_found(acme: Books) -> None:
    with acme.rejects(TransactionNotFound, "transaction_not_found"):
        acme.ledger.reverse_transaction(acme.tenant_id, uuid4())
    with pytest.raises(TransactionNotFound):
        acme.ledger.get_transaction(acme.tenant_id, acme.ids["cash"])


def test_another_tenants_transaction_is_not_found(acme: Books) -> None:
    other = Books.create(acme.ledger, "globex")
    original = _pay(acme, "t1").aggregate
    with pytest.raises(TransactionNotFound):
        acme.ledger.get_transaction(other.tenant_id, original.id)
    with acme.rejects(TransactionNotFound, "transaction_not_found"):
        acme.ledger.reverse_transaction(other.tenant_id, original.id)
    assert acme.ledger.get_transaction(acme.tenant_id, original.id).reversed_by is None


@pytest.mark.parametrize(
    "effective_date", ["2024-04-01", datetime(2024, 4, 1), datetime(2024, 4, 1, tzinfo=timezone.utc)]
)
def test_reversal_effective_date_must_be_a_date(acme: Books, effective_date: object) -> None:
    original = _pay(acme, "t1").aggregate
    with acme.rejects(InvalidTransaction, "invalid_transaction"):
        acme.ledger.reverse_transaction(acme.tenant_id, original.id, effective_date)


# --- aggregate ----------------------------------------------------------------------


def test_transaction_aggregate_rejects_reversal_of_reversal_directly() -> None:
    tenant_id, a, b = uuid4(), uuid4(), uuid4()
    tx = Transaction.post(tenant_id, "t1", DAY, (Posting(a, 5, "JPY"), Posting(b, -5, "JPY")))
    reversal = tx.reverse(DAY, "")
    assert tx.reversed_by == reversal.id
    with pytest.raises(ReversalNotReversible):
        reversal.reverse(DAY, "")
    with pytest.raises(TransactionAlreadyReversed):
        tx.reverse(DAY, "")


def test_posting_instruction_currency_is_optional() -> None:
    assert PostingInstruction(uuid4(), "1.00").currency is None
