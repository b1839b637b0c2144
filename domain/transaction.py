"""The transaction (journal entry): balanced postings recorded once, never edited.

A transaction's postings each move a signed amount on one account (positive is
a debit); per currency they sum to zero. A mistake is corrected by a reversal:
a new, linked transaction with the opposite postings.

A transaction can also be placed as a **hold** (status ``pending``): its postings
reserve amounts on their accounts without posting them. A hold is resolved
exactly once, by its own hash-linked event: ``HoldPosted`` (a full or partial
capture: the captured postings are posted, the rest released), ``HoldVoided``
or ``HoldExpired`` (all released; only once ``expires_at`` has passed). A
resolution event carries everything the read models need (the captured postings
and the released ones), so no projection has to look up the hold.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date, datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.errors import (
    DuplicatePostingAccount,
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotExpired,
    InvalidCapture,
    InvalidTransaction,
    LedgerError,
    NotAHold,
    TransactionNotPosted,
    ReversalNotReversible,
    TooFewPostings,
    TooManyPostings,
    TransactionAlreadyReversed,
    TransactionUnbalanced,
    ZeroAmount,
)
from domain.chain import ChainedAggregate
from domain.ids import reversal_id_for, transaction_id_for
from domain.metadata import check_metadata
from domain.money import check_amount_range, format_amount
from domain.text import check_text

POSTINGS_MIN = 2
POSTINGS_MAX = 100
DESCRIPTION_LENGTH_MAX = 500
class TransactionStatus(StrEnum):
    POSTED = "posted"
    PENDING = "pending"
    VOIDED = "voided"
    EXPIRED = "expired"


_EXTERNAL_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+-]{0,127}")


@dataclass(frozen=True, slots=True)
class Posting:
    """One leg of a transaction: a signed amount on one account."""

    account_id: UUID
    amount_minor: int
    currency: str

    def to_event(self) -> dict[str, Any]:
        return {"account_id": str(self.account_id), "amount_minor": self.amount_minor, "currency": self.currency}

    @classmethod
    def from_event(cls, data: dict[str, Any]) -> Posting:
        return cls(UUID(data["account_id"]), data["amount_minor"], data["currency"])


def is_external_id(value: Any) -> bool:
    return isinstance(value, str) and _EXTERNAL_ID.fullmatch(value) is not None


def check_external_id(external_id: Any) -> str:
    if not is_external_id(external_id):
        raise InvalidTransaction(
            "external_id must be 1-128 characters of letters, digits and ._:/@+-, starting with a letter or digit",
            field="external_id",
        )
    return external_id


def check_description(description: Any, rejection: type[LedgerError] = InvalidTransaction) -> str:
    """A description is free text (``domain.text``) of at most ``DESCRIPTION_LENGTH_MAX`` characters."""
    if not isinstance(description, str) or len(description) > DESCRIPTION_LENGTH_MAX:
        raise rejection(f"description is at most {DESCRIPTION_LENGTH_MAX} characters", field="description")
    return check_text(description, "description")


def check_posting_count(count: int) -> None:
    """Checked before anything is loaded, so an oversized request costs nothing."""
    if count < POSTINGS_MIN:
        raise TooFewPostings(f"a transaction needs at least {POSTINGS_MIN} postings", count=count)
    if count > POSTINGS_MAX:
        raise TooManyPostings(f"a transaction has at most {POSTINGS_MAX} postings", count=count, limit=POSTINGS_MAX)


def check_postings(postings: tuple[Posting, ...]) -> None:
    check_posting_count(len(postings))
    seen: set[UUID] = set()
    sums: dict[str, int] = defaultdict(int)
    for posting in postings:
        if posting.amount_minor == 0:
            raise ZeroAmount("a posting's amount may not be zero", account_id=str(posting.account_id))
        check_amount_range(posting.amount_minor)
        if posting.account_id in seen:
            raise DuplicatePostingAccount(
                "an account may appear only once in a transaction", account_id=str(posting.account_id)
            )
        seen.add(posting.account_id)
        sums[posting.currency] += posting.amount_minor
    unbalanced = {currency: total for currency, total in sums.items() if total != 0}
    if unbalanced:
        detail = ", ".join(f"{format_amount(t, c)} {c}" for c, t in sorted(unbalanced.items()))
        raise TransactionUnbalanced(
            f"postings must sum to zero per currency; they are off by {detail}",
            imbalance={c: format_amount(t, c) for c, t in unbalanced.items()},
        )


class Transaction(ChainedAggregate):
    @classmethod
    def post(  # noqa: PLR0913
        cls,
        tenant_id: UUID,
        external_id: str,
        effective_date: date,
        postings: tuple[Posting, ...],
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> Transaction:
        check_external_id(external_id)
        return cls._post(transaction_id_for(tenant_id, external_id), tenant_id, external_id,
                         effective_date, postings, description, metadata, reverses=None)

    @classmethod
    def _post(  # noqa: PLR0913
        cls,
        id: UUID,  # noqa: A002
        tenant_id: UUID,
        external_id: str | None,
        effective_date: date,
        postings: tuple[Posting, ...],
        description: str,
        metadata: dict[str, str] | None,
        reverses: UUID | None,
    ) -> Transaction:
        assert isinstance(effective_date, date)
        check_description(description)
        check_postings(postings)
        return cls(
            id=id,
            tenant_id=tenant_id,
            external_id=external_id,
            effective_date=effective_date,
            description=description,
            postings=[p.to_event() for p in postings],
            metadata=check_metadata(metadata),
            reverses=reverses,
        )

    @event("Posted")
    def __init__(  # noqa: PLR0913
        self,
        id: UUID,  # noqa: A002
        tenant_id: UUID,
        external_id: str | None,
        effective_date: date,
        description: str,
        postings: list[dict[str, Any]],
        metadata: dict[str, str],
        reverses: UUID | None,
    ) -> None:
        self.tenant_id = tenant_id
        self.external_id = external_id
        self.effective_date = effective_date
        self.description = description
        self.postings = tuple(Posting.from_event(p) for p in postings)
        self.metadata = metadata
        self.reverses = reverses
        self.reversed_by: UUID | None = None
        self.status = TransactionStatus.POSTED
        self.expires_at: datetime | None = None
        self.held_postings: tuple[Posting, ...] | None = None  # a hold's reserved postings

    class HoldPlaced(ChainedAggregate.Created):
        """A pending transaction: its postings are reserved, not posted (the other created event)."""

        tenant_id: UUID
        external_id: str
        effective_date: date
        description: str
        postings: list[dict[str, Any]]
        metadata: dict[str, str]
        reverses: None  # a hold never reverses anything; present because __init__ takes it
        expires_at: datetime | None

        def apply(self, aggregate: Any) -> None:
            aggregate.status = TransactionStatus.PENDING
            aggregate.expires_at = self.expires_at
            aggregate.held_postings = aggregate.postings

    @classmethod
    def place_hold(  # noqa: PLR0913
        cls,
        tenant_id: UUID,
        external_id: str,
        effective_date: date,
        postings: tuple[Posting, ...],
        description: str = "",
        metadata: dict[str, str] | None = None,
        *,
        expires_at: datetime | None = None,
        now: datetime,
    ) -> Transaction:
        """A pending transaction; its accounts must ``reserve`` its postings in the same save."""
        check_external_id(external_id)
        assert isinstance(effective_date, date)
        check_description(description)
        if expires_at is not None and (
            not isinstance(expires_at, datetime) or expires_at.tzinfo is None or expires_at <= now
        ):
            raise InvalidTransaction("expires_at must be a moment with a time zone, in the future", field="expires_at")
        check_postings(postings)
        return cls._create(
            cls.HoldPlaced, id=transaction_id_for(tenant_id, external_id), tenant_id=tenant_id,
            external_id=external_id, effective_date=effective_date, description=description,
            postings=[p.to_event() for p in postings], metadata=check_metadata(metadata), reverses=None,
            expires_at=expires_at,
        )

    @property
    def recorded_at(self) -> Any:
        return self.created_on

    def same_content(  # noqa: PLR0913
        self, effective_date: date, postings: tuple[Posting, ...], description: str,
        metadata: dict[str, str] | None, *, hold: bool = False, expires_at: datetime | None = None,
    ) -> bool:
        """Whether a repeated request with this transaction's external id asks for the same thing."""
        def key(items: tuple[Posting, ...]) -> list[tuple[str, int, str]]:
            return sorted((str(p.account_id), p.amount_minor, p.currency) for p in items)

        asked = self.held_postings if self.held_postings is not None else self.postings
        return (
            self.effective_date == effective_date
            and self.description == description
            and self.metadata == (metadata or {})
            and key(asked) == key(postings)
            and self.is_hold == hold
            and self.expires_at == expires_at
        )

    # --- holds ------------------------------------------------------------------

    @property
    def is_hold(self) -> bool:
        return self.held_postings is not None

    def _check_open_hold(self) -> None:
        """Rules every resolution shares: it must be a hold, and still pending."""
        if self.held_postings is None:
            raise NotAHold(f"transaction {self.id} is not a hold", transaction_id=str(self.id))
        if self.status == TransactionStatus.EXPIRED:
            raise HoldExpired(f"hold {self.id} has expired", transaction_id=str(self.id))
        if self.status != TransactionStatus.PENDING:
            raise HoldAlreadyResolved(
                f"hold {self.id} was already {self.status.value}", transaction_id=str(self.id), status=self.status.value
            )

    def check_resolvable(self, now: datetime) -> None:
        """A hold can be posted or voided once, and only before its deadline."""
        self._check_open_hold()
        if self.expires_at is not None and now >= self.expires_at:
            raise HoldExpired(f"hold {self.id} expired at {self.expires_at.isoformat()}", transaction_id=str(self.id))

    def capture_postings(self, captured: tuple[Posting, ...] | None) -> tuple[Posting, ...]:
        """The postings a capture posts: all of the hold, or ``captured`` checked against it.

        Each captured amount is on one of the hold's accounts, in its currency, of
        the same sign and at most the held amount (zero releases that leg); they
        sum to zero per currency and are not all zero.
        """
        assert self.held_postings is not None
        if captured is None:
            return self.held_postings
        held = {p.account_id: p for p in self.held_postings}
        amounts: dict[UUID, int] = {}
        for posting in captured:
            original = held.get(posting.account_id)
            if original is None or posting.account_id in amounts or posting.currency != original.currency:
                raise InvalidCapture("each captured amount must be on a different account of the hold, in its currency",
                                     account_id=str(posting.account_id))
            if posting.amount_minor * original.amount_minor < 0 or abs(posting.amount_minor) > abs(original.amount_minor):
                raise InvalidCapture("a captured amount has the held amount's sign and is at most the held amount",
                                     account_id=str(posting.account_id))
            amounts[posting.account_id] = posting.amount_minor
        result = tuple(Posting(p.account_id, amounts.get(p.account_id, 0), p.currency) for p in self.held_postings)
        result = tuple(p for p in result if p.amount_minor != 0)
        if not result:
            raise InvalidCapture("a capture posts at least one amount; void the hold to release it all")
        check_postings(result)
        return result

    def capture(self, captured: tuple[Posting, ...] | None, now: datetime,
                effective_date: date | None = None) -> tuple[Posting, ...]:
        """Post the hold, in full or in part; the rest is released. Returns the posted postings.

        Its accounts must then ``release`` the held postings and record the captured ones.
        """
        self.check_resolvable(now)
        postings = self.capture_postings(captured)
        assert self.held_postings is not None
        self._capture(self.tenant_id, effective_date or self.effective_date, self.description,
                      [p.to_event() for p in postings], [p.to_event() for p in self.held_postings])
        return postings

    @event("HoldPosted")
    def _capture(self, tenant_id: UUID, effective_date: date, description: str,  # noqa: ARG002
                 postings: list[dict[str, Any]], released: list[dict[str, Any]]) -> None:  # noqa: ARG002
        self.status = TransactionStatus.POSTED
        self.effective_date = effective_date
        self.postings = tuple(Posting.from_event(p) for p in postings)

    def void(self, now: datetime) -> None:
        """Release the whole hold; its accounts must then ``release`` the held postings."""
        self.check_resolvable(now)
        self._void(self._held_as_events())

    @event("HoldVoided")
    def _void(self, released: list[dict[str, Any]]) -> None:  # noqa: ARG002
        self.status = TransactionStatus.VOIDED

    def _held_as_events(self) -> list[dict[str, Any]]:
        """The whole hold's postings, as its releasing event records them."""
        assert self.held_postings is not None
        return [p.to_event() for p in self.held_postings]

    def check_expirable(self, now: datetime) -> None:
        self._check_open_hold()
        if self.expires_at is None or now < self.expires_at:
            raise HoldNotExpired(f"hold {self.id} has not reached a deadline", transaction_id=str(self.id))

    def expire(self, now: datetime) -> None:
        """Release a hold whose deadline has passed, once; its accounts must then ``release`` it."""
        self.check_expirable(now)
        self._expire(self._held_as_events())

    @event("HoldExpired")
    def _expire(self, released: list[dict[str, Any]]) -> None:  # noqa: ARG002
        self.status = TransactionStatus.EXPIRED

    # --- reversal ---------------------------------------------------------------

    def reverse(self, effective_date: date, description: str) -> Transaction:
        """Create the reversing transaction and mark this one reversed (both must be saved)."""
        if self.status != TransactionStatus.POSTED:
            raise TransactionNotPosted(
                f"transaction {self.id} is {self.status.value}; only posted transactions can be reversed",
                transaction_id=str(self.id), status=self.status.value,
            )
        if self.reverses is not None:
            raise ReversalNotReversible(
                "a reversal cannot itself be reversed; post a new transaction instead",
                transaction_id=str(self.id),
            )
        if self.reversed_by is not None:
            raise TransactionAlreadyReversed(
                f"transaction {self.id} was already reversed by {self.reversed_by}",
                transaction_id=str(self.id),
                reversed_by=str(self.reversed_by),
            )
        if effective_date < self.effective_date:
            raise InvalidTransaction(
                f"a reversal cannot be dated before the transaction it reverses ({self.effective_date.isoformat()})",
                field="effective_date", transaction_id=str(self.id),
            )
        opposite = tuple(Posting(p.account_id, -p.amount_minor, p.currency) for p in self.postings)
        reversal = Transaction._post(
            reversal_id_for(self.id), self.tenant_id, None, effective_date, opposite,
            description or f"Reversal of {self.external_id or self.id}", {}, reverses=self.id,
        )
        self._mark_reversed(reversal.id)
        return reversal

    @event("Reversed")
    def _mark_reversed(self, reversal_id: UUID) -> None:
        self.reversed_by = reversal_id
