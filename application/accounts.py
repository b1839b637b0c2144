"""Account use cases: open an account, read it, freeze, unfreeze and close it."""

from __future__ import annotations

from collections.abc import Callable
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.aggregate_store import AggregateStore
from application.decisions import Aggregates, Recorded, check_version, typed
from application.tenants import writable_tenant
from application.write_path import WritePath
from domain.account import Account
from domain.errors import AccountAlreadyExists, AccountNotFound


def account_of(aggregates: Aggregates, tenant_id: UUID, account_id: UUID) -> Account:
    """The account; another tenant's account is 'not found'."""
    account = typed(aggregates, account_id, Account)
    if account is None or account.tenant_id != tenant_id:
        raise AccountNotFound(f"account {account_id} not found", account_id=str(account_id))
    return account


class Accounts:
    def __init__(self, store: AggregateStore, writes: WritePath) -> None:
        self._store = store
        self._writes = writes

    def open_account(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        code: str,
        name: str,
        currency: str,
        type: str,  # noqa: A002
        balance_floor_minor: int | None = None,
        metadata: dict[str, str] | None = None,
    ) -> Recorded:
        # Rare, so saved directly: the store's version constraint settles a race.
        writable_tenant(self._store, tenant_id)
        account = Account.open(tenant_id, code, name, currency, type, balance_floor_minor, metadata)
        if typed(self._store, account.id, Account) is not None:
            raise AccountAlreadyExists(f"account code {code} is already in use", code=code)
        try:
            return Recorded(account, self._store.save(account))
        except IntegrityError:
            raise AccountAlreadyExists(f"account code {code} is already in use", code=code) from None

    def get_account(self, tenant_id: UUID, account_id: UUID) -> Account:
        """The account's write-side state; another tenant's account is 'not found'."""
        return account_of(self._store, tenant_id, account_id)

    def freeze_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self._change_account(tenant_id, account_id, Account.freeze, expected_version)

    def unfreeze_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self._change_account(tenant_id, account_id, Account.unfreeze, expected_version)

    def close_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self._change_account(tenant_id, account_id, Account.close, expected_version)

    def _change_account(
        self, tenant_id: UUID, account_id: UUID, change: Callable[[Account], None], expected_version: int | None
    ) -> Recorded:
        def decide(aggregates: Aggregates) -> Recorded:
            writable_tenant(aggregates, tenant_id)
            account = account_of(aggregates, tenant_id, account_id)
            check_version(account, expected_version)
            change(account)
            return Recorded(account, aggregates.save(account))

        return self._writes.execute(decide, lock_keys=[account_id], reads=[tenant_id])
