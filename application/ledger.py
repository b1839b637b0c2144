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

import functools
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager
from datetime import date, datetime, timezone
from typing import Any, Concatenate, ParamSpec, TypeVar
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
P = ParamSpec("P")
R = TypeVar("R")

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


def _forwarded(part: str, method: Callable[Concatenate[Any, P], R]) -> Callable[Concatenate[Ledger, P], R]:
    """A façade method: the same-named method of the part the ledger keeps in ``part``,
    with its signature and docstring (one definition instead of a copy of each)."""
    name = method.__name__

    @functools.wraps(method)
    def forward(self: Ledger, *args: P.args, **kwargs: P.kwargs) -> R:
        return getattr(getattr(self, part), name)(*args, **kwargs)  # type: ignore[no-any-return]

    return forward


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

    @property
    def pin_writes(self) -> Callable[[], AbstractContextManager[Any]]:
        return self.writes.pin_writes

    @pin_writes.setter
    def pin_writes(self, pin: Callable[[], AbstractContextManager[Any]]) -> None:
        self.writes.pin_writes = pin

    def forget_held_state(self) -> None:
        """Drop every aggregate this process holds, after its database was restored under it: the
        cache's aggregates may be ahead of the restored log (fast-forwarding only ever moves them
        on), or absent from it. The write path reads, rather than trusts, its state for a while."""
        self.store.forget_cached()
        self.writes.read_state_for_a_while()

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

    # --- the use cases, each forwarded to the part that holds it -----------------

    create_tenant = _forwarded("tenants", Tenants.create_tenant)
    get_tenant = _forwarded("tenants", Tenants.get_tenant)
    get_tenant_by_name = _forwarded("tenants", Tenants.get_tenant_by_name)
    suspend_tenant = _forwarded("tenants", Tenants.suspend_tenant)
    resume_tenant = _forwarded("tenants", Tenants.resume_tenant)

    open_account = _forwarded("accounts", Accounts.open_account)
    get_account = _forwarded("accounts", Accounts.get_account)
    freeze_account = _forwarded("accounts", Accounts.freeze_account)
    unfreeze_account = _forwarded("accounts", Accounts.unfreeze_account)
    close_account = _forwarded("accounts", Accounts.close_account)

    post_transactions = _forwarded("transactions", Transactions.post_transactions)
    post_hold = _forwarded("transactions", Transactions.post_hold)
    void_hold = _forwarded("transactions", Transactions.void_hold)
    expire_hold = _forwarded("transactions", Transactions.expire_hold)
    reverse_transaction = _forwarded("transactions", Transactions.reverse_transaction)
    get_transaction = _forwarded("transactions", Transactions.get_transaction)

    # --- transactions from plain arguments (the parts take a TransactionRequest) ---

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
