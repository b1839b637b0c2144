"""The ledger's use cases.

Each use case loads the aggregates it needs, lets them decide (they raise a named
``LedgerError`` when a rule is broken), and saves every changed aggregate in one
``save()``: one atomic write with optimistic concurrency on every aggregate.
A version conflict means another writer got there first; the whole decision is
then retried against fresh state, a bounded number of times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import AbstractContextManager, contextmanager, nullcontext, suppress
from contextvars import ContextVar
from copy import copy, deepcopy
from dataclasses import dataclass
from datetime import date, datetime, timezone
from decimal import Decimal
from enum import Enum
from typing import Any, Protocol, TypeVar
from uuid import UUID

from eventsourcing.application import AggregateNotFoundError, Application, ProcessingEvent
from eventsourcing.persistence import IntegrityError, StoredEvent, Transcoder, Transcoding

from application.group_commit import (
    Batch,
    CallerContext,
    GroupCommitWriter,
    Receipt,
    ReceiptsTaken,
    ReceiptTaken,
    RenderReceipts,
    active_working_set,
    check_written,
    current_receipt,
)
from application.retries import save_with_retries

from domain.account import Account
from domain.chain import ChainBreak, verify_chain
from domain.errors import (
    AccountAlreadyExists,
    AccountNotFound,
    CurrencyMismatch,
    DuplicateExternalId,
    InvalidCapture,
    InvalidTransaction,
    LedgerError,
    TenantAlreadyExists,
    TenantNotFound,
    TransactionNotFound,
    VersionMismatch,
)
from domain.ids import tenant_id_for, transaction_id_for
from domain.metadata import check_metadata
from domain.money import parse_amount_minor
from domain.tenant import Tenant, is_tenant_name
from domain.text import quoted
from domain.transaction import (
    Posting,
    Transaction,
    check_description,
    check_external_id,
    check_posting_count,
    is_external_id,
)

T = TypeVar("T")

# Set by Ledger.deferred(): _execute hands back the writer's future instead of waiting.
_deferring: ContextVar[bool] = ContextVar("invario_deferring", default=False)

WRITE_LOCK_STRIPES = 1024
CHAIN_EVENTS_PAGE = 1000
POST_TRANSACTIONS_MAX = 1000
WRITE_QUEUE_MIN = 64


class DateAsISO(Transcoding):
    """Stores ``datetime.date`` values (effective dates) as ISO strings."""

    type = date
    name = "date_iso"

    def encode(self, obj: date) -> str:
        return obj.isoformat()

    def decode(self, data: str) -> date:
        return date.fromisoformat(data)


@dataclass(frozen=True)
class PostingInstruction:
    """A requested posting: a signed decimal amount in the account's currency.

    ``currency`` is optional; when given it must match the account's.
    """

    account_id: UUID
    amount: str
    currency: str | None = None


@dataclass(frozen=True)
class TransactionRequest:
    """One journal entry of a ``post_transactions`` batch (the arguments of ``post_transaction``,
    or with ``pending`` those of ``place_hold``)."""

    external_id: str
    effective_date: date
    postings: Sequence[PostingInstruction]
    description: str = ""
    metadata: dict[str, str] | None = None
    pending: bool = False
    expires_at: datetime | None = None


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


class BulkReads(Protocol):
    """Stored events of many aggregates in one round trip (``infrastructure.bulk_reads``)."""

    def events_after(self, after_versions: Mapping[UUID, int]) -> dict[UUID, list[StoredEvent]]: ...

    def latest_snapshots(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, StoredEvent]: ...


class StripedLocks:
    """Per-aggregate mutual exclusion within one process, in bounded memory.

    Keys hash onto a fixed set of locks, always taken in ascending order, so two
    commands over overlapping accounts can never deadlock.
    """

    def __init__(self, stripes: int = WRITE_LOCK_STRIPES) -> None:
        self._locks = [threading.Lock() for _ in range(stripes)]

    @contextmanager
    def holding(self, keys: Iterable[UUID]) -> Iterator[None]:
        indices = sorted({hash(key) % len(self._locks) for key in keys})
        for index in indices:
            self._locks[index].acquire()
        try:
            yield
        finally:
            for index in reversed(indices):
                self._locks[index].release()


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
        self._write_locks = StripedLocks()
        self._writer: GroupCommitWriter | None = None
        # Serialises conflicted batches across processes; bootstrap sets one per store.
        self.conflict_lane: Callable[[], AbstractContextManager[Any]] = nullcontext
        # Reads many aggregates' events at once for a batch; bootstrap sets one per store
        # that has it. Without it a batch loads its aggregates one at a time.
        self.bulk_reads: BulkReads | None = None
        # What "now" is for hold deadlines; tests replace it.
        self.clock: Callable[[], datetime] = lambda: datetime.now(timezone.utc)

    def register_transcodings(self, transcoder: Transcoder) -> None:
        super().register_transcodings(transcoder)
        transcoder.register(DateAsISO())

    # --- plumbing ---------------------------------------------------------------

    def _save(self, *aggregates: Any) -> int | None:
        """Save a command's aggregates, its result first (see ``save``)."""
        working_set = active_working_set()
        if working_set is not None:  # deciding inside a batch: the batch saves, then sets positions
            working_set.stage(*aggregates)
            return None
        recordings = self.save(*aggregates)
        positions = [r.notification.id for r in recordings if r.notification.id is not None]
        return max(positions) if positions else None

    def save(self, *objs: Any, **kwargs: Any) -> Any:
        """``Application.save``; outside a batch, the calling command's receipt (if any)
        is written in the same transaction, rendered as ``Recorded(first object, the
        highest position)``: every use case saves its result first."""
        receipt = current_receipt()
        if receipt is None or "receipts" in kwargs:
            return super().save(*objs, **kwargs)
        result = next(obj for obj in objs if obj is not None)
        rendered: list[Receipt] = []

        def render(positions: Mapping[tuple[UUID, int], int]) -> list[Receipt]:
            receipt.render(Recorded(result, max(positions.values(), default=None)))
            rendered[:] = [receipt]
            return rendered

        try:
            recordings = super().save(*objs, receipts=render, **kwargs)
        except ReceiptsTaken:  # nothing of this command was saved, as in a batch
            raise ReceiptTaken from None
        check_written([receipt], rendered)
        receipt.written = True
        return recordings

    def record_receipt(self, receipt: Receipt, outcome: Any) -> None:
        """Write the receipt of a command that saved nothing (rejected before any save,
        or a replay), in a transaction of its own. ``ReceiptTaken`` if its key is."""
        rendered: list[Receipt] = []

        def render(_positions: Mapping[tuple[UUID, int], int]) -> list[Receipt]:
            receipt.render(outcome)
            rendered[:] = [receipt]
            return rendered

        try:
            self.recorder.insert_events([], receipts=render)
        except ReceiptsTaken:
            raise ReceiptTaken from None
        check_written([receipt], rendered)
        receipt.written = True

    def start_group_commit(self, batch_size_max: int, wait_seconds: float,
                           caller_context: CallerContext | None = None) -> None:
        """From now on, writes are queued and committed in batches by one writer thread
        (see ``application.group_commit``); ``close()`` drains the queue first."""
        assert self._writer is None, "group commit is started once"
        if batch_size_max > 1:
            self._writer = GroupCommitWriter(self._run_submissions, batch_size_max, wait_seconds,
                                             queue_max=max(WRITE_QUEUE_MIN, 8 * batch_size_max),
                                             caller_context=caller_context)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.stop()  # acknowledged writes are committed before the store closes
        super().close()

    def _execute(self, decide: Callable[[], T], lock_keys: Iterable[UUID] = (), reads: Iterable[UUID] = ()) -> T:
        """Run a use case's decision: queued for the group-commit writer when there is
        one, else on its own with retries. Callers see the same result or error either way.
        ``reads`` (beside ``lock_keys``) are what the decision will read: a batch loads
        them all at once before deciding."""
        assert active_working_set() is None, "a decision must not run another use case"
        if self._writer is None:
            return self._retrying(decide, lock_keys)
        lock_keys = list(lock_keys)
        future = self._writer.enqueue(decide, lock_keys, [*reads, *lock_keys], current_receipt())
        if _deferring.get():
            return future  # type: ignore[return-value] # deferred(): the use case hands the future back
        return future.result()  # type: ignore[no-any-return]

    def deferred(self, use_case: Callable[[], T]) -> Future[T]:
        """Run ``use_case`` up to its write, and return the future of its outcome instead
        of waiting for the commit: async callers await it without holding a thread.
        What the use case does before writing (checks, reads) runs here. A use case
        that writes on its own (not through the group-commit writer, or with none
        configured) runs whole, here, and its future is already done."""
        token = _deferring.set(True)
        try:
            outcome = use_case()
        finally:
            _deferring.reset(token)
        if isinstance(outcome, Future):  # every use case returns its _execute() as is
            return outcome
        done: Future[T] = Future()
        done.set_result(outcome)
        return done

    def _run_submissions(self, submissions: Sequence[Any]) -> list[Any]:
        # The writer thread is this process's only batch writer; the locks keep the
        # direct writers (e.g. post_transactions) off the same aggregates meanwhile.
        keys = [key for submission in submissions for key in submission.lock_keys]
        with self._write_locks.holding(keys):
            reads = [key for submission in submissions for key in submission.reads]
            return Batch(self._batch_store(), [s.decide for s in submissions], self.conflict_lane, reads,
                         [s.receipt for s in submissions]).run()

    def _retrying(self, decide_and_save: Callable[[], T], lock_keys: Iterable[UUID] = ()) -> T:
        """Run a decision until it saves (``save_with_retries``). Writers of the same
        aggregates in this process queue on striped locks, so they never conflict with
        each other; only other processes' writes make it decide again."""
        with self._write_locks.holding(lock_keys):
            return save_with_retries(decide_and_save)

    def _get(self, aggregate_id: UUID, kind: type[T]) -> T | None:
        # Every use case reads through here, so inside a batch it reads the batch's
        # working set: the state the earlier commands of the batch left behind.
        working_set = active_working_set()
        aggregate = working_set.get(aggregate_id) if working_set is not None else self._load(aggregate_id)
        return aggregate if isinstance(aggregate, kind) else None

    # --- the event store as a batch sees it (application.group_commit.BatchStore) ---

    def _load(self, aggregate_id: UUID) -> Any | None:
        try:
            return self.repository.get(aggregate_id)
        except AggregateNotFoundError:
            return None

    def _load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any | None]:
        """What ``_load`` gives for each id, with the reads of all of them in one or
        two queries (``bulk_reads``) instead of one to three round trips per id."""
        if self.bulk_reads is None:
            return {aggregate_id: self._load(aggregate_id) for aggregate_id in aggregate_ids}
        cache = self.repository.cache
        cached: dict[UUID, Any] = {}
        if cache is not None:
            for aggregate_id in aggregate_ids:
                with suppress(KeyError):
                    cached[aggregate_id] = cache.get(aggregate_id)
        uncached = [i for i in aggregate_ids if i not in cached]
        snapshots = self.bulk_reads.latest_snapshots(uncached) if self.snapshots is not None else {}
        after = {i: a.version for i, a in cached.items()}
        after.update((i, snapshots[i].originator_version if i in snapshots else 0) for i in uncached)
        stored = self.bulk_reads.events_after(after)
        loaded = {i: self._fast_forwarded(i, a, stored.get(i, ())) for i, a in cached.items()}
        for aggregate_id in uncached:
            loaded[aggregate_id] = self._reconstructed(aggregate_id, snapshots.get(aggregate_id),
                                                       stored.get(aggregate_id, ()))
        return loaded

    def _fast_forwarded(self, aggregate_id: UUID, cached: Any, stored: Iterable[StoredEvent]) -> Any:
        # As Repository.get does: the cached object moves forward under its
        # fast-forward lock (other threads may read it too), the caller gets a copy.
        repository = self.repository
        lock = repository._use_fastforward_lock(aggregate_id)  # noqa: SLF001
        try:
            with lock:
                for stored_event in stored:
                    if stored_event.originator_version > cached.version:  # another reader may be ahead
                        cached = self.mapper.to_domain_event(stored_event).mutate(cached)
                return _copied(cached) if repository.deepcopy_from_cache else cached
        finally:
            repository._disuse_fastforward_lock(aggregate_id)  # noqa: SLF001

    def _reconstructed(self, aggregate_id: UUID, snapshot: StoredEvent | None, stored: Iterable[StoredEvent]) -> Any:
        aggregate = None
        if snapshot is not None:
            assert self.snapshots is not None
            aggregate = self.snapshots.mapper.to_domain_event(snapshot).mutate(None)
        for stored_event in stored:
            aggregate = self.mapper.to_domain_event(stored_event).mutate(aggregate)
        cache = self.repository.cache
        if aggregate is None or cache is None:
            return aggregate
        cache.put(aggregate_id, aggregate)
        return _copied(aggregate) if self.repository.deepcopy_from_cache else aggregate

    def _load_at(self, aggregate_id: UUID, version: int) -> Any:
        latest = self._load(aggregate_id)
        if latest is not None and latest.version == version:
            return latest  # the usual case, served from the cache
        return self.repository.get(aggregate_id, version=version)

    def _changed_since(self, versions: Mapping[UUID, int]) -> set[UUID]:
        # After a conflict, which of a batch's aggregates another writer has moved on:
        # one query for all of them where the store has bulk reads.
        if self.bulk_reads is not None:
            return set(self.bulk_reads.events_after(versions))
        return {i for i, version in versions.items() if self._stored_version(i) != version}

    def _stored_version(self, aggregate_id: UUID) -> int:
        last = self.recorder.select_events(aggregate_id, desc=True, limit=1)
        return last[0].originator_version if last else 0

    def _save_events(self, events: Sequence[Any], aggregates: Iterable[Any],
                     receipts: RenderReceipts | None = None) -> dict[tuple[UUID, int], int]:
        """One atomic write of a batch's events, in the order given (``Application.save``
        collects per aggregate, which would not keep the commands' order in the log),
        with its commands' receipts (the recorder writes them in the same transaction)."""
        processing_event: ProcessingEvent[UUID] = ProcessingEvent()
        if receipts is not None:
            processing_event.saved_kwargs["receipts"] = receipts
        processing_event.events.extend(events)
        processing_event.aggregates.update((a.id, a) for a in aggregates)
        recordings = self._record(processing_event)
        for aggregate in processing_event.aggregates.values():
            aggregate.collect_events()  # stored now
        self._snapshot_committed(events, processing_event.aggregates)
        self._notify(recordings)
        return {(r.domain_event.originator_id, r.domain_event.originator_version): r.notification.id
                for r in recordings}

    def _snapshot_committed(self, events: Sequence[Any], aggregates: Mapping[UUID, Any]) -> None:
        # Where Application._take_snapshots would rebuild an aggregate from the store
        # at each event whose version is a multiple of the interval (a hot account
        # crosses one every few batches), snapshot the committed aggregate in hand at
        # its current version: still at most one interval of events after a snapshot.
        if self.snapshots is None:
            return
        due: dict[UUID, Any] = {}
        for event in events:
            aggregate = aggregates.get(event.originator_id)
            interval = self.snapshotting_intervals.get(type(aggregate))
            if interval is not None and event.originator_version % interval == 0:
                due[aggregate.id] = aggregate
        if due:
            snapshot_class = type(self).snapshot_class
            self.snapshots.put([getattr(type(a), "Snapshot", snapshot_class).take(a) for a in due.values()])

    def _keep_committed(self, aggregates: Iterable[tuple[Any, bool]]) -> None:
        # The next batch then finds these aggregates current in the cache instead of
        # decoding and replaying this batch's events again. A committed state is always
        # a safe cache entry: every read fast-forwards it from the store first.
        cache = self.repository.cache
        if cache is None or not self.repository.fastforward:
            return  # without fast-forwarding, Application._record has cached them already
        for aggregate, held_by_a_result in aggregates:
            cache.put(aggregate.id, _copied(aggregate) if held_by_a_result else aggregate)

    def _batch_store(self) -> _LedgerBatchStore:
        return _LedgerBatchStore(self)

    # --- tenants ----------------------------------------------------------------

    def create_tenant(self, name: str) -> Recorded:
        tenant = Tenant.create(name)
        if self._get(tenant.id, Tenant) is not None:
            raise TenantAlreadyExists(f"tenant {name} already exists", tenant=name)
        try:
            return Recorded(tenant, self._save(tenant))
        except IntegrityError:
            raise TenantAlreadyExists(f"tenant {name} already exists", tenant=name) from None

    def get_tenant(self, tenant_id: UUID) -> Tenant:
        tenant = self._get(tenant_id, Tenant)
        if tenant is None:
            raise TenantNotFound(f"tenant {tenant_id} not found")
        return tenant

    def get_tenant_by_name(self, name: str) -> Tenant:
        # A name no tenant may have is not looked up: it might not even be encodable as an id.
        tenant = self._get(tenant_id_for(name), Tenant) if is_tenant_name(name) else None
        if tenant is None:
            raise TenantNotFound(f"tenant {quoted(name)} not found", tenant=quoted(name))
        return tenant

    def suspend_tenant(self, tenant_id: UUID, reason: str = "", expected_version: int | None = None) -> Recorded:
        def decide() -> Recorded:
            tenant = self.get_tenant(tenant_id)
            _check_version(tenant, expected_version)
            tenant.suspend(reason)
            return Recorded(tenant, self._save(tenant))

        return self._execute(decide, reads=[tenant_id])

    def resume_tenant(self, tenant_id: UUID, expected_version: int | None = None) -> Recorded:
        def decide() -> Recorded:
            tenant = self.get_tenant(tenant_id)
            _check_version(tenant, expected_version)
            tenant.resume()
            return Recorded(tenant, self._save(tenant))

        return self._execute(decide, reads=[tenant_id])

    def _writable_tenant(self, tenant_id: UUID) -> Tenant:
        tenant = self.get_tenant(tenant_id)
        tenant.check_writable()
        return tenant

    # --- accounts ---------------------------------------------------------------

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
        self._writable_tenant(tenant_id)
        account = Account.open(tenant_id, code, name, currency, type, balance_floor_minor, metadata)
        if self._get(account.id, Account) is not None:
            raise AccountAlreadyExists(f"account code {code} is already in use", code=code)
        try:
            return Recorded(account, self._save(account))
        except IntegrityError:
            raise AccountAlreadyExists(f"account code {code} is already in use", code=code) from None

    def get_account(self, tenant_id: UUID, account_id: UUID) -> Account:
        """The account's write-side state; another tenant's account is 'not found'."""
        account = self._get(account_id, Account)
        if account is None or account.tenant_id != tenant_id:
            raise AccountNotFound(f"account {account_id} not found", account_id=str(account_id))
        return account

    # ``expected_version`` (optional) is the version the caller based its change
    # on; a different current version is ``VersionMismatch`` (HTTP If-Match).

    def freeze_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self._change_account(tenant_id, account_id, Account.freeze, expected_version)

    def unfreeze_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self._change_account(tenant_id, account_id, Account.unfreeze, expected_version)

    def close_account(self, tenant_id: UUID, account_id: UUID, expected_version: int | None = None) -> Recorded:
        return self._change_account(tenant_id, account_id, Account.close, expected_version)

    def _change_account(
        self, tenant_id: UUID, account_id: UUID, change: Callable[[Account], None], expected_version: int | None
    ) -> Recorded:
        def decide() -> Recorded:
            self._writable_tenant(tenant_id)
            account = self.get_account(tenant_id, account_id)
            _check_version(account, expected_version)
            change(account)
            return Recorded(account, self._save(account))

        return self._execute(decide, lock_keys=[account_id], reads=[tenant_id])

    # --- transactions -----------------------------------------------------------

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
        return self._record_new(tenant_id, TransactionRequest(external_id, effective_date, postings, description,
                                                              metadata))

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
        return self._record_new(tenant_id, TransactionRequest(external_id, effective_date, postings, description,
                                                              metadata, pending=True, expires_at=expires_at))

    def post_transactions(
        self, tenant_id: UUID, requests: Sequence[TransactionRequest], *, commit: bool = True, atomic: bool = False,
    ) -> list[Recorded | LedgerError]:
        """Decide each request in order against one working set, and save every accepted
        one in ONE save. Each gets its own outcome: a rejection is returned in its place,
        never raised, and never undoes its neighbours. ``commit=False`` decides
        everything (a dry run) and saves nothing.

        ``atomic``: all or nothing, as linked transfers. One rejection and nothing is
        saved; every other request's outcome is then ``LinkedTransferFailed``.

        An unknown or suspended tenant is raised (``TenantNotFound``, ``TenantSuspended``):
        the whole call is refused.

        The calling command's receipt (``carrying``), if any, is written by the same
        save, rendered with the list of outcomes; ``ReceiptTaken`` if its key already
        was (nothing of this call was saved)."""
        assert len(requests) <= POST_TRANSACTIONS_MAX, f"at most {POST_TRANSACTIONS_MAX} requests per batch"
        # A tenant that may not write refuses the whole call (each decision checks it again).
        self._writable_tenant(tenant_id)
        decisions = [self._request_decision(tenant_id, request) for request in requests]
        keys = [p.account_id for r in requests for p in r.postings]
        with self._write_locks.holding(keys):
            # A malformed external id (already rejected above) may not even be encodable as an id.
            existing = [transaction_id_for(tenant_id, r.external_id) for r in requests if is_external_id(r.external_id)]
            reads = [tenant_id, *keys, *existing]
            receipt = current_receipt() if commit else None
            batch = Batch(self._batch_store(), decisions, self.conflict_lane, reads, batch_receipt=receipt)
            outcomes = batch.run(commit=commit, failure_stops_all=True, atomic=atomic)
        if outcomes and all(isinstance(outcome, ReceiptTaken) for outcome in outcomes):
            raise ReceiptTaken
        return outcomes

    def _request_decision(self, tenant_id: UUID, request: TransactionRequest) -> Callable[[], Recorded]:
        try:
            return self._new_transaction_decision(tenant_id, request)
        except LedgerError as error:
            return _rejected(error)  # invalid before any state is read: its outcome is this error

    def _record_new(self, tenant_id: UUID, request: TransactionRequest) -> Recorded:
        decide = self._new_transaction_decision(tenant_id, request)
        return self._execute(decide, lock_keys=[p.account_id for p in request.postings],
                             reads=[tenant_id, transaction_id_for(tenant_id, request.external_id)])

    def _new_transaction_decision(self, tenant_id: UUID, request: TransactionRequest) -> Callable[[], Recorded]:
        _check_request(request)

        def decide() -> Recorded:
            self._writable_tenant(tenant_id)
            accounts = self._load_posting_accounts(tenant_id, request.postings)
            resolved = tuple(_resolve(instruction, accounts) for instruction in request.postings)
            existing = self._get(transaction_id_for(tenant_id, request.external_id), Transaction)
            if existing is not None:
                if existing.same_content(request.effective_date, resolved, request.description, request.metadata,
                                         hold=request.pending, expires_at=request.expires_at):
                    return Recorded(existing, None, replayed=True, balances=_balances_of(accounts))
                raise DuplicateExternalId(
                    f"external_id {request.external_id} was already used for a different transaction",
                    external_id=request.external_id,
                    transaction_id=str(existing.id),
                )
            if request.pending:
                transaction = Transaction.place_hold(tenant_id, request.external_id, request.effective_date, resolved,
                                                     request.description, request.metadata,
                                                     expires_at=request.expires_at, now=self.clock())
                _apply_reservations(transaction, accounts)
            else:
                transaction = Transaction.post(tenant_id, request.external_id, request.effective_date, resolved,
                                               request.description, request.metadata)
                _apply_postings(transaction, accounts)
            return Recorded(transaction, self._save(transaction, *accounts.values()), balances=_balances_of(accounts))

        return decide

    # --- holds ------------------------------------------------------------------

    def post_hold(
        self,
        tenant_id: UUID,
        transaction_id: UUID,
        postings: Sequence[PostingInstruction] | None = None,
        effective_date: date | None = None,
    ) -> Recorded:
        """Capture a hold: post ``postings`` (default: all of it); the rest is released."""
        if effective_date is not None:
            _check_effective_date(effective_date)

        def decide() -> Recorded:
            self._writable_tenant(tenant_id)
            hold = self.get_transaction(tenant_id, transaction_id)
            hold.check_resolvable(self.clock())
            accounts = self._load_posting_accounts(tenant_id, _instructions_of(hold.held_postings or ()))
            captured = tuple(_resolve_capture(i, accounts) for i in postings) if postings is not None else None
            posted = hold.capture_postings(captured)
            _check_consistent_read(hold, accounts)
            _check_capture(hold, posted, accounts)
            hold.capture(captured, self.clock(), effective_date)
            _apply_capture(hold, posted, accounts)
            return Recorded(hold, self._save(hold, *accounts.values()), balances=_balances_of(accounts))

        return self._execute(decide, lock_keys=self._hold_lock_keys(transaction_id), reads=[tenant_id])

    def void_hold(self, tenant_id: UUID, transaction_id: UUID) -> Recorded:
        """Release a whole hold."""
        return self._release_hold(tenant_id, transaction_id, expire=False)

    def expire_hold(self, tenant_id: UUID, transaction_id: UUID) -> Recorded:
        """Release a hold whose deadline has passed. Exactly once by construction: the
        hold's own state refuses a second expiry (``hold_expired``), and concurrent
        expiries conflict on its version, so only one is ever saved."""
        return self._release_hold(tenant_id, transaction_id, expire=True)

    def _release_hold(self, tenant_id: UUID, transaction_id: UUID, *, expire: bool) -> Recorded:
        def decide() -> Recorded:
            # An expiry is the deadline's consequence: it happens even while the tenant is suspended.
            tenant = self.get_tenant(tenant_id)
            if not expire:
                tenant.check_writable()
            hold = self.get_transaction(tenant_id, transaction_id)
            if expire:
                hold.expire(self.clock())
            else:
                hold.void(self.clock())
            accounts = self._load_posting_accounts(tenant_id, _instructions_of(hold.held_postings or ()))
            _check_consistent_read(hold, accounts)
            for posting in hold.held_postings or ():
                accounts[posting.account_id].release(hold.id, posting.amount_minor)
            return Recorded(hold, self._save(hold, *accounts.values()), balances=_balances_of(accounts))

        return self._execute(decide, lock_keys=self._hold_lock_keys(transaction_id), reads=[tenant_id])

    def _hold_lock_keys(self, transaction_id: UUID) -> list[UUID]:
        hold = self._get(transaction_id, Transaction)
        touched = [p.account_id for p in hold.held_postings or ()] if hold is not None else []
        return [transaction_id, *touched]

    def _load_posting_accounts(self, tenant_id: UUID, postings: Iterable[PostingInstruction]) -> dict[UUID, Account]:
        accounts: dict[UUID, Account] = {}
        for instruction in postings:
            if instruction.account_id not in accounts:
                accounts[instruction.account_id] = self.get_account(tenant_id, instruction.account_id)
        return accounts

    def reverse_transaction(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        transaction_id: UUID,
        effective_date: date | None = None,
        description: str = "",
        expected_version: int | None = None,
    ) -> Recorded:
        if effective_date is not None:
            _check_effective_date(effective_date)
        check_description(description)

        def decide() -> Recorded:
            self._writable_tenant(tenant_id)
            original = self.get_transaction(tenant_id, transaction_id)
            _check_version(original, expected_version)
            when = effective_date or datetime.now(timezone.utc).date()
            reversal = original.reverse(when, description)
            accounts = self._load_posting_accounts(
                tenant_id, (PostingInstruction(p.account_id, "0") for p in reversal.postings)
            )
            _apply_postings(reversal, accounts)
            return Recorded(reversal, self._save(reversal, original, *accounts.values()),
                            balances=_balances_of(accounts))

        # The accounts to serialise on are the original's; reading it first is cheap
        # (cached) and the decision re-reads it, and checks everything, under the locks.
        original = self._get(transaction_id, Transaction)
        touched = [p.account_id for p in original.postings] if original is not None else []
        return self._execute(decide, lock_keys=[transaction_id, *touched], reads=[tenant_id])

    def get_transaction(self, tenant_id: UUID, transaction_id: UUID) -> Transaction:
        transaction = self._get(transaction_id, Transaction)
        if transaction is None or transaction.tenant_id != tenant_id:
            raise TransactionNotFound(f"transaction {transaction_id} not found", transaction_id=str(transaction_id))
        return transaction

    # --- integrity --------------------------------------------------------------

    def verify_aggregate_chain(self, aggregate_id: UUID) -> ChainBreak | None:
        """Recompute one aggregate's hash chain from its stored events."""
        return verify_chain(self._stored_events(aggregate_id))

    def _stored_events(self, aggregate_id: UUID) -> Iterable[Any]:
        # Paged so that a long-lived account never has to fit in memory at once.
        after = 0
        while True:
            page = list(self.events.get(aggregate_id, gt=after or None, limit=CHAIN_EVENTS_PAGE))
            yield from page
            if len(page) < CHAIN_EVENTS_PAGE:
                return
            after = page[-1].originator_version


def _balances_of(accounts: Mapping[UUID, Account]) -> tuple[AccountBalance, ...]:
    return tuple(AccountBalance.of(account) for account in accounts.values())


def _check_version(aggregate: Any, expected_version: int | None) -> None:
    if expected_version is not None and aggregate.version != expected_version:
        raise VersionMismatch(
            f"the resource is at version {aggregate.version}, not {expected_version}; re-read it and retry",
            expected_version=expected_version,
            current_version=aggregate.version,
        )


def _check_effective_date(effective_date: object) -> None:
    if not isinstance(effective_date, date) or isinstance(effective_date, datetime):
        raise InvalidTransaction("effective_date must be a calendar date (YYYY-MM-DD)", field="effective_date")


def _check_request(request: TransactionRequest) -> None:
    """What can be checked before any state is read (the aggregate checks the text rules again)."""
    if request.expires_at is not None and not request.pending:
        raise InvalidTransaction("expires_at is only for pending transactions (holds)", field="expires_at")
    check_external_id(request.external_id)
    check_posting_count(len(request.postings))
    _check_effective_date(request.effective_date)
    check_description(request.description)
    check_metadata(request.metadata)


def _resolve(instruction: PostingInstruction, accounts: dict[UUID, Account]) -> Posting:
    account = accounts[instruction.account_id]
    if instruction.currency is not None and instruction.currency != account.currency:
        raise CurrencyMismatch(
            f"account {account.code} holds {account.currency}, not {instruction.currency}",
            account_id=str(account.id),
        )
    return Posting(account.id, parse_amount_minor(instruction.amount, account.currency), account.currency)


def _resolve_capture(instruction: PostingInstruction, accounts: dict[UUID, Account]) -> Posting:
    if instruction.account_id not in accounts:
        raise InvalidCapture("each captured amount must be on an account of the hold",
                             account_id=str(instruction.account_id))
    return _resolve(instruction, accounts)


def _instructions_of(postings: Iterable[Posting]) -> list[PostingInstruction]:
    return [PostingInstruction(p.account_id, "0") for p in postings]


def _apply_reservations(transaction: Transaction, accounts: dict[UUID, Account]) -> None:
    for posting in transaction.postings:
        accounts[posting.account_id].check_hold(posting.amount_minor, posting.currency)
    for posting in transaction.postings:
        accounts[posting.account_id].reserve(transaction.id, posting.amount_minor, posting.currency)


def _check_consistent_read(hold: Transaction, accounts: dict[UUID, Account]) -> None:
    """The hold was read as pending, but another writer may have resolved it (and
    released its amounts) before its accounts were read: then the save would fail
    on the hold's version anyway, so decide again on fresh state now."""
    for posting in hold.held_postings or ():
        if not accounts[posting.account_id].holds_at_least(posting.amount_minor):
            raise IntegrityError(f"hold {hold.id} was resolved by another writer while it was being read")


def _check_capture(hold: Transaction, posted: tuple[Posting, ...], accounts: dict[UUID, Account]) -> None:
    captured = {p.account_id: p.amount_minor for p in posted}
    for held in hold.held_postings or ():
        accounts[held.account_id].check_capture(held.amount_minor, captured.get(held.account_id, 0), held.currency)


def _apply_capture(hold: Transaction, posted: tuple[Posting, ...], accounts: dict[UUID, Account]) -> None:
    captured = {p.account_id: p for p in posted}
    for held in hold.held_postings or ():
        account = accounts[held.account_id]
        account.release(hold.id, held.amount_minor)
        if held.account_id in captured:
            account.record_posting(hold.id, captured[held.account_id].amount_minor, held.currency)


def _apply_postings(transaction: Transaction, accounts: dict[UUID, Account]) -> None:
    # Check every account before recording on any: a rejection must leave all
    # aggregates untouched, including cached ones a group-commit writer reuses.
    for posting in transaction.postings:
        accounts[posting.account_id].check_posting(posting.amount_minor, posting.currency)
    for posting in transaction.postings:
        accounts[posting.account_id].record_posting(transaction.id, posting.amount_minor, posting.currency)


# Values that are immutable: a copy may share them (deepcopy copies UUIDs and datetimes anyway).
_SHAREABLE = (str, int, float, bool, type(None), UUID, Enum, datetime, date, Decimal, bytes)


def _copied(aggregate: Any) -> Any:
    """``copy.deepcopy(aggregate)`` at a fraction of the cost (a batch copies every
    aggregate it loads): the object is copied as deepcopy does, immutable attribute
    values are shared, and every other value (lists, dicts, tuples, ...) is
    deep-copied with one memo, as deepcopy would."""
    duplicate = copy(aggregate)
    memo: dict[int, Any] = {id(aggregate): duplicate}
    state = duplicate.__dict__
    for name, value in state.items():
        if not isinstance(value, _SHAREABLE):
            state[name] = deepcopy(value, memo)
    return duplicate


def _rejected(error: LedgerError) -> Callable[[], Recorded]:
    def decide() -> Recorded:
        raise error

    return decide


@dataclass(frozen=True)
class _LedgerBatchStore:
    """The Ledger's event store seen through ``application.group_commit.BatchStore``."""

    ledger: Ledger

    def load(self, aggregate_id: UUID) -> Any | None:
        return self.ledger._load(aggregate_id)

    def load_many(self, aggregate_ids: Sequence[UUID]) -> dict[UUID, Any | None]:
        return self.ledger._load_many(aggregate_ids)

    def load_at(self, aggregate_id: UUID, version: int) -> Any:
        return self.ledger._load_at(aggregate_id, version)

    def changed_since(self, versions: dict[UUID, int]) -> set[UUID]:
        return self.ledger._changed_since(versions)

    def save_events(self, events: Sequence[Any], aggregates: Iterable[Any],
                    receipts: RenderReceipts | None = None) -> dict[tuple[UUID, int], int]:
        if receipts is None:
            return self.ledger._save_events(events, aggregates)
        return self.ledger._save_events(events, aggregates, receipts)

    def keep_committed(self, aggregates: Iterable[tuple[Any, bool]]) -> None:
        self.ledger._keep_committed(aggregates)
