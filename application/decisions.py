"""What every use case's decision shares.

A use case checks what it can without reading state, then hands a *decision* to
the write path (``application.write_path``). The decision is called with the
``Aggregates`` to read from and save to: on its own, the store itself (saved at
once, the whole decision retried after a conflict); in a group-commit batch, the
batch's working set (saved with the batch). So the same decision code runs either
way, and what it reads is always the argument it was given.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from uuid import UUID

from domain.account import Account
from domain.errors import VersionMismatch

T = TypeVar("T")


class Aggregates(Protocol):
    """Where a decision reads the aggregates it needs and saves the ones it changed."""

    def get(self, aggregate_id: UUID) -> Any | None:
        """The aggregate, or ``None`` if there is none."""

    def save(self, *aggregates: Any) -> int | None:
        """Save the decision's aggregates, its result first; the write's position, if known yet."""


Decision = Callable[[Aggregates], T]


def typed(aggregates: Aggregates, aggregate_id: UUID, kind: type[T]) -> T | None:
    """The aggregate if it is a ``kind``; ``None`` if it is missing or something else."""
    aggregate = aggregates.get(aggregate_id)
    return aggregate if isinstance(aggregate, kind) else None


def check_version(aggregate: Any, expected_version: int | None) -> None:
    """``expected_version`` (optional) is the version the caller based its change on;
    a different current version is ``VersionMismatch`` (HTTP If-Match)."""
    if expected_version is not None and aggregate.version != expected_version:
        raise VersionMismatch(
            f"the resource is at version {aggregate.version}, not {expected_version}; re-read it and retry",
            expected_version=expected_version,
            current_version=aggregate.version,
        )


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


def balances_of(accounts: Mapping[UUID, Account]) -> tuple[AccountBalance, ...]:
    return tuple(AccountBalance.of(account) for account in accounts.values())


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
