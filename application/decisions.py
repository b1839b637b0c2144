"""What every use case's decision shares."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from uuid import UUID

from domain.account import Account


@dataclass(frozen=True)
class AccountBalance:
    """An account's balances as a write left them (the write's own decision, not a read):
    posted raw (debit-positive) and normal-side, and available (normal side, net of the
    open holds that would reduce it), as ``Account`` and the balances read model define them."""

    account_id: UUID
    currency: str
    balance_minor: int
    balance_normal_minor: int
    available_normal_minor: int

    @classmethod
    def of(cls, account: Account) -> AccountBalance:
        return cls(account.id, account.currency, account.balance_minor, account.balance_normal_minor,
                   account.available_normal_minor)


@dataclass(frozen=True)
class Recorded:
    """The outcome of a write: the aggregate and the log position that holds it.

    ``replayed`` is true when an identical request had already been recorded and
    nothing new was written; ``position`` is then ``None``.

    ``balances``: every account the write touched, as it left them (copied when it was
    decided, so later commands of the same batch do not change them). A replay's are
    the accounts' balances as the replay found them, i.e. now, not as of the original.
    """

    aggregate: Any
    position: int | None
    replayed: bool = False
    balances: tuple[AccountBalance, ...] = ()
