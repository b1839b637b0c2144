"""A small in-memory set of books for the unit tests of the ledger's rules.

``Books`` wraps an in-memory ``Ledger`` (eventsourcing's POPO store) with a
tenant, a few accounts, and ``rejects()``: the project rule that a rejected
command changes no balance and records no transaction, checked on every use.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date
from uuid import UUID

import pytest
from eventsourcing.popo import POPOApplicationRecorder

from application.ledger import Ledger, PostingInstruction, Recorded
from domain.errors import LedgerError, TransactionNotFound
from domain.ids import transaction_id_for

DAY = date(2024, 3, 1)


def in_memory_ledger() -> Ledger:
    ledger = Ledger()
    # Unit tests must never reach a real database, whatever the environment says.
    assert isinstance(ledger.recorder, POPOApplicationRecorder), type(ledger.recorder)
    return ledger


def leg(account_id: UUID, amount: str, currency: str | None = None) -> PostingInstruction:
    return PostingInstruction(account_id, amount, currency)


@dataclass
class Books:
    """One tenant's books. ``accounts`` holds every (tenant, account) opened through it."""

    ledger: Ledger
    tenant_id: UUID
    accounts: list[tuple[UUID, UUID]] = field(default_factory=list)
    ids: dict[str, UUID] = field(default_factory=dict)

    @classmethod
    def create(cls, ledger: Ledger, tenant: str = "acme") -> Books:
        return cls(ledger, ledger.create_tenant(tenant).aggregate.id)

    def open(self, code: str, currency: str = "BRL", type: str = "asset",  # noqa: A002
             floor: int | None = None, tenant_id: UUID | None = None) -> UUID:
        tenant_id = tenant_id or self.tenant_id
        account = self.ledger.open_account(tenant_id, code, code.title(), currency, type, floor).aggregate
        self.accounts.append((tenant_id, account.id))
        if tenant_id == self.tenant_id:
            self.ids[code] = account.id
        return account.id

    def tx_id(self, external_id: str) -> UUID:
        return transaction_id_for(self.tenant_id, external_id)

    def post(self, external_id: str, *legs: PostingInstruction, **kwargs: object) -> Recorded:
        kwargs.setdefault("effective_date", DAY)
        return self.ledger.post_transaction(self.tenant_id, external_id, postings=list(legs), **kwargs)

    def balance(self, account_id: UUID, tenant_id: UUID | None = None) -> int:
        return self.ledger.get_account(tenant_id or self.tenant_id, account_id).balance_minor

    def balances(self) -> dict[UUID, int]:
        return {account_id: self.balance(account_id, tenant_id) for tenant_id, account_id in self.accounts}

    def assert_not_recorded(self, transaction_id: UUID) -> None:
        with pytest.raises(TransactionNotFound):
            self.ledger.get_transaction(self.tenant_id, transaction_id)

    @contextmanager
    def rejects(self, error: type[LedgerError], code: str, *, external_id: str | None = None,
                transaction_id: UUID | None = None) -> Iterator[pytest.ExceptionInfo[LedgerError]]:
        """The block raises exactly ``error`` with ``code``; no balance moves, nothing is recorded."""
        before = self.balances()
        with pytest.raises(error) as info:
            yield info
        assert type(info.value) is error
        assert info.value.code == code
        assert self.balances() == before
        if external_id is not None:
            transaction_id = transaction_id_for(self.tenant_id, external_id)
        if transaction_id is not None:
            self.assert_not_recorded(transaction_id)
