"""The transaction (journal entry): balanced postings recorded once, never edited.

A transaction's postings each move a signed amount on one account (positive is
a debit); per currency they sum to zero. A mistake is corrected by a reversal:
a new, linked transaction with the opposite postings.
"""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.errors import (
    DuplicatePostingAccount,
    InvalidTransaction,
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

POSTINGS_MIN = 2
POSTINGS_MAX = 100
DESCRIPTION_LENGTH_MAX = 500
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


def check_external_id(external_id: Any) -> str:
    if not isinstance(external_id, str) or not _EXTERNAL_ID.fullmatch(external_id):
        raise InvalidTransaction(
            "external_id must be 1-128 characters of letters, digits and ._:/@+-, starting with a letter or digit",
            field="external_id",
        )
    return external_id


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
        if not isinstance(description, str) or len(description) > DESCRIPTION_LENGTH_MAX:
            raise InvalidTransaction(f"description is at most {DESCRIPTION_LENGTH_MAX} characters", field="description")
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

    @property
    def recorded_at(self) -> Any:
        return self.created_on

    def same_content(self, effective_date: date, postings: tuple[Posting, ...], description: str,
                     metadata: dict[str, str] | None) -> bool:
        """Whether a repeated request with this transaction's external id asks for the same thing."""
        def key(items: tuple[Posting, ...]) -> list[tuple[str, int, str]]:
            return sorted((str(p.account_id), p.amount_minor, p.currency) for p in items)

        return (
            self.effective_date == effective_date
            and self.description == description
            and self.metadata == (metadata or {})
            and key(self.postings) == key(postings)
        )

    # --- reversal ---------------------------------------------------------------

    def reverse(self, effective_date: date, description: str) -> Transaction:
        """Create the reversing transaction and mark this one reversed (both must be saved)."""
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
