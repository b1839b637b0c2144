"""The ledger: the write side of Invario, one object that other layers call.

Each use case loads the aggregates it needs, lets them decide (they raise a named
``LedgerError`` when a rule is broken), and saves every changed aggregate in one
``save()``: one atomic write with optimistic concurrency on every aggregate.
A version conflict means another writer got there first; the whole decision is
then retried against fresh state, a bounded number of times.

``Ledger`` is the eventsourcing ``Application`` (the event store's configuration)
and a façade over the parts that do the work, one concern per module:

- ``application.tenants``, ``application.accounts``, ``application.transactions``:
  the use cases, grouped by what they change;
- ``application.write_path``: how a decision is run and saved, alone with retries
  or batched by the group-commit writer;
- ``application.aggregate_store``: loading and saving aggregates (cache, bulk
  reads, receipts, snapshots).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import date, datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import Transcoder, Transcoding

from application.accounts import Accounts
from application.aggregate_store import AggregateStore, BulkReads
from application.decisions import AccountBalance, Recorded
from application.group_commit import CallerContext, Receipt
from application.tenants import Tenants
from application.transactions import (
    POST_TRANSACTIONS_MAX,
    PostingInstruction,
    TransactionRequest,
    Transactions,
)
from application.write_path import WritePath
from domain.account import Account
from domain.chain import ChainBreak, verify_chain
from domain.errors import LedgerError
from domain.tenant import Tenant
from domain.transaction import Transaction

T = TypeVar("T")

# Other layers import these from here.
__all__ = [
    "POST_TRANSACTIONS_MAX",
    "AccountBalance",
    "Ledger",
    "PostingInstruction",
    "Recorded",
    "TransactionRequest",
]


class DateAsISO(Transcoding):
    """Stores ``datetime.date`` values (effective dates) as ISO strings."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


class Ledger(Application):
    """The write side of Invario over an eventsourcing event store."""

    name = "invario"
    snapshotting_intervals = {Account: 200}  # noqa: RUF012
    # Hot accounts would otherwise be replayed on every command. Cached aggregates
    # are fast-forwarded from the store on each use (so other processes' writes are
    # seen) and deep-copied (so a rejected decision never touches the cache).
    env = {"AGGREGATE_CACHE_MAXSIZE": "10000", "AGGREGATE_CACHE_FASTFORWARD": "y"}  # noqa: RUF012

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.store = AggregateStore(self)
        self.writes = WritePath(self.store)
        # What "now" is for hold deadlines; tests replace it (the use cases ask it each time).
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)
        self.tenants = Tenants(self.store, self.writes)
        self.accounts = Accounts(self.store, self.writes)
        self.transactions = Transactions(self.store, self.writes, lambda: self.clock())

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # --- the store and the write path, as open_runtime and the other services see them ---

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """``Application.save``, with the calling command's receipt (``AggregateStore.save_with_receipt``)."""
        return self.store.save_with_receipt(*objs, **kwargs)

    def record_receipt(self, receipt: Receipt, outcome: Any) -> None:
        """Write the receipt of a command that saved nothing (``AggregateStore.record_receipt``)."""
        self.store.record_receipt(receipt, outcome)

    @property
    def bulk_reads(self) -> BulkReads | None:
        return self.store.bulk_reads

    @bulk_reads.setter
    def bulk_reads(self, bulk_reads: BulkReads | None) -> None:
        self.store.bulk_reads = bulk_reads

    @property
    def conflict_lane(self) -> Callable[[], AbstractContextManager[Any]]:
        return self.writes.conflict_lane

    @conflict_lane.setter
    def conflict_lane(self, lane: Callable[[], AbstractContextManager[Any]]) -> None:
        self.writes.conflict_lane = lane

    def start_group_commit(self, batch_size_max: int, wait_seconds: float,
                           caller_context: CallerContext | None = None) -> None:
        """From now on, writes are queued and committed in batches by one writer thread
        (see ``application.group_commit``); ``close()`` drains the queue first."""
        self.writes.start_group_commit(batch_size_max, wait_seconds, caller_context)

    def deferred(self, use_case: Callable[[], T], *, wait_for_room: bool = True) -> Future[T]:
        """``use_case`` run up to its write; the future of its outcome (``WritePath.deferred``)."""
        return self.writes.deferred(use_case, wait_for_room=wait_for_room)

    @property
    def writes_in_batches(self) -> bool:
        """Whether writes are queued for the group-commit writer (``WritePath.writes_in_batches``)."""
        return self.writes.writes_in_batches

    def close(self) -> None:
        self.writes.stop()  # acknowledged writes are committed before the store closes
        super().close()

    def verify_aggregate_chain(self, aggregate_id: UUID) -> ChainBreak | None:
        """Recompute one aggregate's hash chain from its stored events."""
        return verify_chain(self.store.stored_events(aggregate_id))

    # --- tenants (application.tenants) ------------------------------------------

    def create_tenant(self, name: str) -> Recorded:
        return self.tenants.create_tenant(name)

    def get_tenant(self, tenant_id: UUID) -> Tenant:
        return self.tenants.get_tenant(tenant_id)

    def get_tenant_by_name(self, name: str) -> Tenant:
        return self.tenants.get_tenant_by_name(name)

    def suspend_tenant(self, tenant_id: UUID, reason: str = "", expected_version: int | None = None) -> Recorded:
        return self.tenants.suspend_tenant(tenant_id, reason, expected_version)

    def resume_tenant(self, tenant_id: UUID, expected_version: int | None = None) -> Recorded:
        return self.tenants.resume_tenant(tenant_id, expected_version)

    # --- accounts (application.accounts) ----------------------------------------

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
        return self.accounts.open_account(tenant_id, code, name, currency, type, balance_floor_minor, metadata)

    def get_account(self, tenant_id: UUID, account_id: UUID) -> Account:
        """The account's write-side state; another tenant's account is 'not found'."""
        return self.accounts.get_account(tenant_id, account_id)

    def freeze_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self.accounts.freeze_account(tenant_id, account_id, expected_version)

    def unfreeze_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self.accounts.unfreeze_account(tenant_id, account_id, expected_version)

    def close_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self.accounts.close_account(tenant_id, account_id, expected_version)

    # --- transactions and holds (application.transactions) ---------------------

    def post_transaction(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        external_id: str,
        effective_date: date,
        postings: Sequence[PostingInstruction],
        description: str = "",
        metadata: dict[str, str] | None = None,
    ) -> Recorded:
        """Record a balanced journal entry, or return the one already recorded
        under the same ``external_id`` with the same content."""
        request = TransactionRequest(external_id, effective_date, postings, description, metadata)
        return self.transactions.record(tenant_id, request)

    def place_hold(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        external_id: str,
        effective_date: date,
        postings: Sequence[PostingInstruction],
        description: str = "",
        metadata: dict[str, str] | None = None,
        expires_at: datetime | None = None,
    ) -> Recorded:
        """Record a pending transaction (a hold): its amounts are reserved against the
        accounts' available balances, not posted. Repeats replay like ``post_transaction``."""
        request = TransactionRequest(external_id, effective_date, postings, description, metadata,
                                     pending=True, expires_at=expires_at)
        return self.transactions.record(tenant_id, request)

    def post_transactions(
        self, tenant_id: UUID, requests: Sequence[TransactionRequest], *, commit: bool = True, atomic: bool = False,
    ) -> list[Recorded | LedgerError]:
        """Many entries decided in order and saved in one save (``Transactions.post_transactions``)."""
        return self.transactions.post_transactions(tenant_id, requests, commit=commit, atomic=atomic)

    def post_hold(
        self,
        tenant_id: UUID,
        transaction_id: UUID,
        postings: Sequence[PostingInstruction] | None = None,
        effective_date: date | None = None,
    ) -> Recorded:
        """Capture a hold: post ``postings`` (default: all of it); the rest is released."""
        return self.transactions.post_hold(tenant_id, transaction_id, postings, effective_date)

    def void_hold(self, tenant_id: UUID, transaction_id: UUID) -> Recorded:
        """Release a whole hold."""
        return self.transactions.void_hold(tenant_id, transaction_id)

    def expire_hold(self, tenant_id: UUID, transaction_id: UUID) -> Recorded:
        """Release a hold whose deadline has passed, exactly once (``Transactions.expire_hold``)."""
        return self.transactions.expire_hold(tenant_id, transaction_id)

    def reverse_transaction(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        transaction_id: UUID,
        effective_date: date | None = None,
        description: str = "",
        expected_version: int | None = None,
    ) -> Recorded:
        return self.transactions.reverse_transaction(tenant_id, transaction_id, effective_date, description,
                                                     expected_version)

    def get_transaction(self, tenant_id: UUID, transaction_id: UUID) -> Transaction:
        return self.transactions.get_transaction(tenant_id, transaction_id)
