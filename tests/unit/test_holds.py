"""Holds: pending transactions that reserve amounts, then are posted (in full or in
part), voided or expired, each exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import date, datetime, timedelta, timezone
from uuid import UUID

import pytest

from domain.errors import (
    AccountFrozen,
    AccountHasHolds,
    DuplicateExternalId,
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotExpired,
    InsufficientFunds,
    InvalidCapture,
    InvalidTransaction,
    LedgerError,
    NotAHold,
    TransactionNotPosted,
    TransactionUnbalanced,
)
from domain.transaction import Transaction, TransactionStatus
from tests.unit.books import DAY, Books, in_memory_ledger, leg

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def books() -> Books:
    ledger = in_memory_ledger()
    ledger.clock = Clock()
    books = Books.create(ledger)
    books.open("cash")
    books.open("wallet", type="liability", floor=0)
    books.open("merchant", type="liability")
    books.post("deposit", leg(books.ids["cash"], "10.00"), leg(books.ids["wallet"], "-10.00"))
    return books


def state(books: Books) -> dict[UUID, tuple[int, int, int]]:
    """(posted raw, pending raw, available normal) of every account."""
    found = {}
    for tenant_id, account_id in books.accounts:
        account = books.ledger.get_account(tenant_id, account_id)
        found[account_id] = (account.balance_minor, account.pending_minor, account.available_normal_minor)
    return found


@contextmanager
def unchanged(books: Books, error: type[LedgerError], code: str) -> Iterator[None]:
    """The block raises exactly ``error``; no posted, pending or available balance moves."""
    before = state(books)
    with pytest.raises(error) as info:
        yield
    assert type(info.value) is error and info.value.code == code
    assert state(books) == before


def hold(books: Books, external_id: str = "auth-1", amount: str = "6.00", **kwargs: object) -> UUID:
    """Reserve ``amount`` of the wallet for the merchant."""
    recorded = books.ledger.place_hold(
        books.tenant_id, external_id, DAY,
        [leg(books.ids["wallet"], amount), leg(books.ids["merchant"], "-" + amount)], **kwargs,
    )
    return recorded.aggregate.id


def account(books: Books, code: str):  # noqa: ANN201
    return books.ledger.get_account(books.tenant_id, books.ids[code])


def test_a_hold_reduces_available_but_not_posted(books: Books) -> None:
    tx = hold(books)
    wallet, merchant = account(books, "wallet"), account(books, "merchant")
    assert (wallet.balance_normal_minor, wallet.pending_minor, wallet.available_normal_minor) == (1000, 600, 400)
    # Money on its way in is not available until it is posted.
    assert (merchant.balance_normal_minor, merchant.pending_minor, merchant.available_normal_minor) == (0, -600, 0)
    stored = books.ledger.get_transaction(books.tenant_id, tx)
    assert stored.status == TransactionStatus.PENDING and stored.is_hold


def test_two_holds_can_never_together_overdraw(books: Books) -> None:
    hold(books, "auth-1", "6.00")
    with unchanged(books, InsufficientFunds, "insufficient_funds"):
        hold(books, "auth-2", "5.00")
    with unchanged(books, InsufficientFunds, "insufficient_funds"):
        books.post("spend", leg(books.ids["wallet"], "4.01"), leg(books.ids["merchant"], "-4.01"))
    hold(books, "auth-3", "4.00")
    assert account(books, "wallet").available_normal_minor == 0


def test_partial_capture_posts_part_and_releases_the_rest(books: Books) -> None:
    tx = hold(books)
    recorded = books.ledger.post_hold(books.tenant_id, tx,
                                      [leg(books.ids["wallet"], "4.00"), leg(books.ids["merchant"], "-4.00")])
    wallet = account(books, "wallet")
    assert (wallet.balance_normal_minor, wallet.pending_minor, wallet.available_normal_minor) == (600, 0, 600)
    assert account(books, "merchant").balance_normal_minor == 400
    assert recorded.aggregate.status == TransactionStatus.POSTED
    assert [p.amount_minor for p in recorded.aggregate.postings] == [400, -400]
    with unchanged(books, HoldAlreadyResolved, "hold_already_resolved"):
        books.ledger.post_hold(books.tenant_id, tx)
    with unchanged(books, HoldAlreadyResolved, "hold_already_resolved"):
        books.ledger.void_hold(books.tenant_id, tx)
    assert books.ledger.verify_aggregate_chain(tx) is None
    assert books.ledger.verify_aggregate_chain(books.ids["wallet"]) is None


def test_full_capture_and_its_reversal(books: Books) -> None:
    tx = hold(books)
    books.ledger.post_hold(books.tenant_id, tx)
    assert account(books, "wallet").balance_normal_minor == 400
    books.ledger.reverse_transaction(books.tenant_id, tx, DAY)
    wallet = account(books, "wallet")
    assert (wallet.balance_normal_minor, wallet.pending_minor, wallet.available_normal_minor) == (1000, 0, 1000)


def test_void_releases_everything_once(books: Books) -> None:
    tx = hold(books)
    books.ledger.void_hold(books.tenant_id, tx)
    assert state(books)[books.ids["wallet"]] == (-1000, 0, 1000)
    with unchanged(books, HoldAlreadyResolved, "hold_already_resolved"):
        books.ledger.void_hold(books.tenant_id, tx)
    with unchanged(books, HoldAlreadyResolved, "hold_already_resolved"):
        books.ledger.post_hold(books.tenant_id, tx)
    with unchanged(books, TransactionNotPosted, "transaction_not_posted"):
        books.ledger.reverse_transaction(books.tenant_id, tx, DAY)


def test_a_pending_hold_cannot_be_reversed(books: Books) -> None:
    tx = hold(books)
    with unchanged(books, TransactionNotPosted, "transaction_not_posted"):
        books.ledger.reverse_transaction(books.tenant_id, tx, DAY)


def test_expiry_after_the_deadline_only_and_once(books: Books) -> None:
    tx = hold(books, expires_at=NOW + timedelta(minutes=5))
    with unchanged(books, HoldNotExpired, "hold_not_expired"):
        books.ledger.expire_hold(books.tenant_id, tx)
    books.ledger.clock.now = NOW + timedelta(minutes=5)
    # Past the deadline, post and void are refused even before the worker expires it.
    with unchanged(books, HoldExpired, "hold_expired"):
        books.ledger.post_hold(books.tenant_id, tx)
    with unchanged(books, HoldExpired, "hold_expired"):
        books.ledger.void_hold(books.tenant_id, tx)
    books.ledger.expire_hold(books.tenant_id, tx)
    assert state(books)[books.ids["wallet"]] == (-1000, 0, 1000)
    for command in (books.ledger.expire_hold, books.ledger.post_hold, books.ledger.void_hold):
        with unchanged(books, HoldExpired, "hold_expired"):
            command(books.tenant_id, tx)
    events = list(books.ledger.events.get(tx))
    assert [type(e).__qualname__ for e in events] == ["Transaction.HoldPlaced", "Transaction.HoldExpired"]


def test_a_hold_without_deadline_never_expires(books: Books) -> None:
    tx = hold(books)
    books.ledger.clock.now = NOW + timedelta(days=3650)
    with unchanged(books, HoldNotExpired, "hold_not_expired"):
        books.ledger.expire_hold(books.tenant_id, tx)


def test_expires_at_must_be_in_the_future(books: Books) -> None:
    with unchanged(books, InvalidTransaction, "invalid_transaction"):
        hold(books, expires_at=NOW)
    books.assert_not_recorded(books.tx_id("auth-1"))


@pytest.mark.parametrize(("wallet", "merchant", "error", "code"), [
    ("7.00", "-7.00", InvalidCapture, "invalid_capture"),      # more than held
    ("-1.00", "1.00", InvalidCapture, "invalid_capture"),      # opposite sign
    ("0", "0", InvalidCapture, "invalid_capture"),             # nothing: void instead
    ("4.00", "-3.00", TransactionUnbalanced, "transaction_unbalanced"),
])
def test_invalid_captures_change_nothing(books: Books, wallet: str, merchant: str,
                                         error: type[LedgerError], code: str) -> None:
    tx = hold(books)
    with unchanged(books, error, code):
        books.ledger.post_hold(books.tenant_id, tx, [leg(books.ids["wallet"], wallet),
                                                     leg(books.ids["merchant"], merchant)])
    assert books.ledger.get_transaction(books.tenant_id, tx).status == TransactionStatus.PENDING


def test_capture_on_an_account_outside_the_hold(books: Books) -> None:
    tx = hold(books)
    with unchanged(books, InvalidCapture, "invalid_capture"):
        books.ledger.post_hold(books.tenant_id, tx, [leg(books.ids["cash"], "1.00"),
                                                     leg(books.ids["merchant"], "-1.00")])


def test_posting_a_plain_transaction_as_a_hold_is_refused(books: Books) -> None:
    with unchanged(books, NotAHold, "not_a_hold"):
        books.ledger.post_hold(books.tenant_id, books.tx_id("deposit"))
    with unchanged(books, NotAHold, "not_a_hold"):
        books.ledger.void_hold(books.tenant_id, books.tx_id("deposit"))


def test_repeated_hold_requests_replay_and_differing_ones_collide(books: Books) -> None:
    tx = hold(books)
    again = books.ledger.place_hold(books.tenant_id, "auth-1", DAY,
                                    [leg(books.ids["wallet"], "6.00"), leg(books.ids["merchant"], "-6.00")])
    assert again.replayed and again.aggregate.id == tx
    with unchanged(books, DuplicateExternalId, "duplicate_external_id"):
        books.post("auth-1", leg(books.ids["wallet"], "6.00"), leg(books.ids["merchant"], "-6.00"))


def test_frozen_account_refuses_capture_but_allows_void(books: Books) -> None:
    tx = hold(books)
    books.ledger.freeze_account(books.tenant_id, books.ids["merchant"])
    with unchanged(books, AccountFrozen, "account_frozen"):
        books.ledger.post_hold(books.tenant_id, tx)
    books.ledger.void_hold(books.tenant_id, tx)
    assert account(books, "merchant").pending_minor == 0


def test_an_account_with_holds_cannot_close(books: Books) -> None:
    books.open("spare", type="liability")
    books.open("spare2", type="liability")
    recorded = books.ledger.place_hold(books.tenant_id, "h", DAY,
                                       [leg(books.ids["spare"], "1.00"), leg(books.ids["spare2"], "-1.00")])
    with unchanged(books, AccountHasHolds, "account_has_holds"):
        books.ledger.close_account(books.tenant_id, books.ids["spare"])
    books.ledger.void_hold(books.tenant_id, recorded.aggregate.id)
    books.ledger.close_account(books.tenant_id, books.ids["spare"])


def test_resolution_events_are_hash_linked(books: Books) -> None:
    tx = hold(books)
    books.ledger.post_hold(books.tenant_id, tx, [leg(books.ids["wallet"], "1.00"), leg(books.ids["merchant"], "-1.00")])
    events = list(books.ledger.events.get(tx))
    assert [type(e).__qualname__ for e in events] == ["Transaction.HoldPlaced", "Transaction.HoldPosted"]
    assert events[1].prev_hash == events[0].hash
    assert isinstance(books.ledger.get_transaction(books.tenant_id, tx), Transaction)
    wallet_events = [type(e).__qualname__ for e in books.ledger.events.get(books.ids["wallet"])]
    assert wallet_events[-3:] == ["Account.HoldReserved", "Account.HoldReleased", "Account.PostingRecorded"]


def test_void_and_expiry_of_unknown_transactions(books: Books) -> None:
    from domain.errors import TransactionNotFound

    unknown = books.tx_id("nothing")
    with unchanged(books, TransactionNotFound, "transaction_not_found"):
        books.ledger.void_hold(books.tenant_id, unknown)
    assert date(2024, 3, 1) == DAY
