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
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any, TypeVar
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.persistence import IntegrityError, Transcoder, Transcoding

from application.aggregate_store import AggregateStore, BulkReads
from application.decisions import AccountBalance, Recorded
from application.group_commit import (
    Batch,
    CallerContext,
    GroupCommitWriter,
    Receipt,
    ReceiptTaken,
    active_working_set,
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
        self.store = AggregateStore(self)
        self._write_locks = StripedLocks()
        self._writer: GroupCommitWriter | None = None
        # Serialises conflicted batches across processes; bootstrap sets one per store.
        self.conflict_lane: Callable[[], AbstractContextManager[Any]] = nullcontext
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
        """``Application.save``, with the calling command's receipt (``AggregateStore.save``)."""
        return self.store.save(*objs, **kwargs)

    def record_receipt(self, receipt: Receipt, outcome: Any) -> None:
        """Write the receipt of a command that saved nothing (``AggregateStore.record_receipt``)."""
        self.store.record_receipt(receipt, outcome)

    @property
    def bulk_reads(self) -> BulkReads | None:
        return self.store.bulk_reads

    @bulk_reads.setter
    def bulk_reads(self, bulk_reads: BulkReads | None) -> None:
        self.store.bulk_reads = bulk_reads

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
            return Batch(self.store, [s.decide for s in submissions], self.conflict_lane, reads,
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
        aggregate = working_set.get(aggregate_id) if working_set is not None else self.store.load(aggregate_id)
        return aggregate if isinstance(aggregate, kind) else None

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
            batch = Batch(self.store, decisions, self.conflict_lane, reads, batch_receipt=receipt)
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
        return verify_chain(self.store.stored_events(aggregate_id))


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


def _rejected(error: LedgerError) -> Callable[[], Recorded]:
    def decide() -> Recorded:
        raise error

    return decide

