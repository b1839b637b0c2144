"""The account: a named bucket of one currency whose balance only postings change.

Balances are kept in the ledger's raw sign, debit-positive: a posting of +100 is
a debit and -100 a credit, and the raw balances of a tenant sum to zero per
currency. Each account type also has a *normal* side (debit for assets and
expenses, credit for liabilities, equity and income); ``balance_normal_minor``
is the balance seen from that side, so a customer's wallet (a liability) with
money in it has a positive normal balance. The optional floor rule applies to
the normal balance: ``balance_floor_minor=0`` means "may not go below zero".
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
    InsufficientFunds,
    InvalidAccount,
)
from domain.ids import account_id_for
from domain.metadata import check_metadata
from domain.money import check_amount_range, check_balance_range, currency_exponent, format_amount

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

    # --- balances ---------------------------------------------------------------

    @property
    def balance_normal_minor(self) -> int:
        return self.balance_minor if AccountType(self.type).is_debit_normal else -self.balance_minor

    def _normal(self, raw_minor: int) -> int:
        return raw_minor if AccountType(self.type).is_debit_normal else -raw_minor

    # --- postings ---------------------------------------------------------------

    def check_posting(self, amount_minor: int, currency: str) -> None:
        """Every rule a posting of ``amount_minor`` must satisfy, without changing anything.

        Callers check all accounts of a transaction before recording on any, so a
        rejection never leaves an aggregate half-changed.
        """
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
        check_balance_range(self.balance_minor + amount_minor)
        self._check_floor(self._normal(amount_minor))

    def _check_floor(self, normal_change_minor: int) -> None:
        if self.balance_floor_minor is None or normal_change_minor >= 0:
            return
        if self.balance_normal_minor + normal_change_minor < self.balance_floor_minor:
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
        self._close()

    @event("Closed")
    def _close(self) -> None:
        self.status = AccountStatus.CLOSED
