"""The account: a named bucket of one currency whose balance only postings change.

Balances are kept in the ledger's raw sign, debit-positive: a posting of +100 is
a debit and -100 a credit, and the raw balances of a tenant sum to zero per
currency. Each account type also has a *normal* side (debit for assets and
expenses, credit for liabilities, equity and income); ``balance_normal_minor``
is the balance seen from that side, so a customer's wallet (a liability) with
money in it has a positive normal balance. The optional floor rule applies to
the normal balance: ``balance_floor_minor=0`` means "may not go below zero".

Holds (pending transactions, see docs/holds.md) reserve amounts without posting
them. An account keeps its open holds as two non-negative sums, pending debits
and pending credits, and three balances:

- **posted**: ``balance_minor`` (raw) / ``balance_normal_minor``, changed only by postings;
- **pending**: ``pending_minor`` = pending debits - pending credits (raw, debit-positive);
- **available** (normal side): the posted balance minus the pending amounts that
  would *reduce* it (pending credits of a debit-normal account, pending debits
  of a credit-normal one). Pending amounts that would increase it are not
  available until they are posted.

The floor rule is checked against the available balance, so holds together can
never overdraw an account; resolving a hold never lowers the available balance.
"""

from __future__ import annotations

import re
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import (
    AccountBalanceNotZero,
    AccountClosed,
    AccountFrozen,
    AccountNotFrozen,
    CurrencyMismatch,
    AccountHasHolds,
    InsufficientFunds,
    InvalidAccount,
)
from domain.ids import account_id_for
from domain.metadata import check_metadata
from domain.money import check_amount_range, check_balance_range, currency_exponent, format_amount
from domain.text import check_line

_CODE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/-]{0,63}")
NAME_LENGTH_MAX = 200


class AccountType(StrEnum):
    ASSET = "asset"
    LIABILITY = "liability"
    EQUITY = "equity"
    INCOME = "income"
    EXPENSE = "expense"

    @property
    def is_debit_normal(self) -> bool:
        return self in (AccountType.ASSET, AccountType.EXPENSE)


class AccountStatus(StrEnum):
    OPEN = "open"
    FROZEN = "frozen"
    CLOSED = "closed"


class Account(ChainedAggregate):
    # Accounts restored from snapshots taken before holds existed had no holds.
    pending_debits_minor = 0
    pending_credits_minor = 0

    @classmethod
    def open(
        cls,
        tenant_id: UUID,
        code: str,
        name: str,
        currency: str,
        type: str,  # noqa: A002
        balance_floor_minor: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Account:
        if not isinstance(code, str) or not _CODE.fullmatch(code):
            raise InvalidAccount("account code must be 1-64 characters of letters, digits and ._:/-", field="code")
        if not isinstance(name, str) or not name.strip() or len(name) > NAME_LENGTH_MAX:
            raise InvalidAccount(f"account name must be 1-{NAME_LENGTH_MAX} characters", field="name")
        check_line(name, "name")
        currency_exponent(currency)
        try:
            account_type = AccountType(type)
        except ValueError:
            allowed = ", ".join(t.value for t in AccountType)
            raise InvalidAccount(f"account type must be one of {allowed}", field="type") from None
        if balance_floor_minor is not None:
            assert isinstance(balance_floor_minor, int)
            check_amount_range(balance_floor_minor)
        return cls(
            id=account_id_for(tenant_id, code),
            tenant_id=tenant_id,
            code=code,
            name=name,
            currency=currency,
            type=account_type.value,
            balance_floor_minor=balance_floor_minor,
            metadata=check_metadata(metadata),
        )

    @event("Opened")
    def __init__(  # noqa: PLR0913
        self,
        id: UUID,  # noqa: A002
        tenant_id: UUID,
        code: str,
        name: str,
        currency: str,
        type: str,  # noqa: A002
        balance_floor_minor: int | None,
        metadata: dict[str, str],
    ) -> None:
        self.tenant_id = tenant_id
        self.code = code
        self.name = name
        self.currency = currency
        self.type = AccountType(type)
        self.status = AccountStatus.OPEN
        self.balance_floor_minor = balance_floor_minor
        self.metadata = metadata
        self.balance_minor = 0
        self.posting_count = 0
        self.pending_debits_minor = 0
        self.pending_credits_minor = 0

    # --- balances ---------------------------------------------------------------

    @property
    def balance_normal_minor(self) -> int:
        return self.balance_minor if AccountType(self.type).is_debit_normal else -self.balance_minor

    def _normal(self, raw_minor: int) -> int:
        return raw_minor if AccountType(self.type).is_debit_normal else -raw_minor

    @property
    def pending_minor(self) -> int:
        """Raw (debit-positive) sum of the open holds on this account."""
        return self.pending_debits_minor - self.pending_credits_minor

    @property
    def available_normal_minor(self) -> int:
        """Posted normal balance minus the pending amounts that would reduce it."""
        reducing = self.pending_credits_minor if AccountType(self.type).is_debit_normal else self.pending_debits_minor
        return self.balance_normal_minor - reducing

    # --- postings ---------------------------------------------------------------

    def check_posting(self, amount_minor: int, currency: str) -> None:
        """Every rule a posting of ``amount_minor`` must satisfy, without changing anything.

        Callers check all accounts of a transaction before recording on any, so a
        rejection never leaves an aggregate half-changed.
        """
        self._check_writable(currency)
        check_balance_range(self.balance_minor + amount_minor)
        self._check_floor(self._normal(amount_minor))

    def _check_writable(self, currency: str) -> None:
        if self.status == AccountStatus.CLOSED:
            raise AccountClosed(f"account {self.code} is closed", account_id=str(self.id))
        if self.status == AccountStatus.FROZEN:
            raise AccountFrozen(f"account {self.code} is frozen", account_id=str(self.id))
        if currency != self.currency:
            raise CurrencyMismatch(
                f"account {self.code} holds {self.currency}, not {currency}",
                account_id=str(self.id),
                account_currency=self.currency,
                currency=currency,
            )

    def _check_floor(self, normal_change_minor: int) -> None:
        """The floor applies to the available balance, so holds can never together overdraw."""
        if self.balance_floor_minor is None or normal_change_minor >= 0:
            return
        if self.available_normal_minor + normal_change_minor < self.balance_floor_minor:
            raise InsufficientFunds(
                f"account {self.code} would go below its floor of "
                f"{format_amount(self.balance_floor_minor, self.currency)} {self.currency}",
                account_id=str(self.id),
            )

    def record_posting(self, transaction_id: UUID, amount_minor: int, currency: str) -> None:
        self.check_posting(amount_minor, currency)
        self._record_posting(transaction_id, amount_minor)

    @event("PostingRecorded")
    def _record_posting(self, transaction_id: UUID, amount_minor: int) -> None:
        self.balance_minor += amount_minor
        self.posting_count += 1

    # --- holds ------------------------------------------------------------------

    def check_hold(self, amount_minor: int, currency: str) -> None:
        """Every rule a hold of ``amount_minor`` must satisfy: those of a posting, against available."""
        self._check_writable(currency)
        check_balance_range(self.pending_debits_minor + max(amount_minor, 0))
        check_balance_range(self.pending_credits_minor + max(-amount_minor, 0))
        self._check_floor(self._normal(amount_minor))

    def reserve(self, transaction_id: UUID, amount_minor: int, currency: str) -> None:
        self.check_hold(amount_minor, currency)
        self._reserve(transaction_id, amount_minor)

    @event("HoldReserved")
    def _reserve(self, transaction_id: UUID, amount_minor: int) -> None:
        if amount_minor > 0:
            self.pending_debits_minor += amount_minor
        else:
            self.pending_credits_minor -= amount_minor

    def holds_at_least(self, amount_minor: int) -> bool:
        """Whether a release of ``amount_minor`` is covered by what this account holds.

        Always true for a hold's own release on a consistent state; false only when
        the caller read the hold and this account at different moments (another
        writer resolved it in between), so the caller must re-read and decide again.
        """
        held = self.pending_debits_minor if amount_minor > 0 else self.pending_credits_minor
        return amount_minor != 0 and abs(amount_minor) <= held

    def check_release(self, amount_minor: int) -> None:
        """A release gives back exactly what a hold reserved; it is allowed on frozen accounts."""
        assert self.holds_at_least(amount_minor), "a release never exceeds what is held"

    def release(self, transaction_id: UUID, amount_minor: int) -> None:
        self.check_release(amount_minor)
        self._release(transaction_id, amount_minor)

    @event("HoldReleased")
    def _release(self, transaction_id: UUID, amount_minor: int) -> None:
        if amount_minor > 0:
            self.pending_debits_minor -= amount_minor
        else:
            self.pending_credits_minor += amount_minor

    def check_capture(self, held_minor: int, captured_minor: int, currency: str) -> None:
        """Releasing ``held_minor`` and posting ``captured_minor`` (same sign, not larger).

        The capture is a posting, so a frozen or closed account refuses it (void
        the hold instead). It never lowers the available balance, so it cannot
        break the floor.
        """
        self.check_release(held_minor)
        if captured_minor != 0:
            self._check_writable(currency)
            check_balance_range(self.balance_minor + captured_minor)

    # --- lifecycle --------------------------------------------------------------

    def freeze(self) -> None:
        if self.status == AccountStatus.CLOSED:
            raise AccountClosed(f"account {self.code} is closed", account_id=str(self.id))
        if self.status == AccountStatus.FROZEN:
            raise AccountFrozen(f"account {self.code} is already frozen", account_id=str(self.id))
        self._freeze()

    @event("Frozen")
    def _freeze(self) -> None:
        self.status = AccountStatus.FROZEN

    def unfreeze(self) -> None:
        if self.status != AccountStatus.FROZEN:
            raise AccountNotFrozen(f"account {self.code} is not frozen", account_id=str(self.id))
        self._unfreeze()

    @event("Unfrozen")
    def _unfreeze(self) -> None:
        self.status = AccountStatus.OPEN

    def close(self) -> None:
        if self.status == AccountStatus.CLOSED:
            raise AccountClosed(f"account {self.code} is already closed", account_id=str(self.id))
        if self.balance_minor != 0:
            raise AccountBalanceNotZero(
                f"account {self.code} still holds a balance; move it out before closing",
                account_id=str(self.id),
            )
        if self.pending_debits_minor or self.pending_credits_minor:
            raise AccountHasHolds(
                f"account {self.code} has open holds; post or void them before closing", account_id=str(self.id)
            )
        self._close()

    @event("Closed")
    def _close(self) -> None:
        self.status = AccountStatus.CLOSED
