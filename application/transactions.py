"""Transaction use cases: post journal entries (one, or many in one save), place
holds and post, void or expire them, reverse a transaction, read one."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timezone
from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.accounts import account_of
from application.aggregate_store import AggregateStore
from application.decisions import Aggregates, Decision, Recorded, balances_of, check_version, typed
from application.group_commit import ReceiptTaken
from application.tenants import tenant_of, writable_tenant
from application.write_path import WritePath
from domain.account import Account
from domain.dates import check_effective_date
from domain.errors import (
    CurrencyMismatch,
    DuplicateExternalId,
    InvalidCapture,
    InvalidTransaction,
    LedgerError,
    TransactionNotFound,
)
from domain.ids import transaction_id_for
from domain.metadata import check_metadata
from domain.money import parse_amount_minor
from domain.transaction import (
    Posting,
    Transaction,
    check_description,
    check_external_id,
    check_posting_count,
    is_external_id,
)

POST_TRANSACTIONS_MAX = 1000


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
    """One new journal entry: the arguments of ``post_transaction``, or with ``pending``
    those of ``place_hold``. A ``post_transactions`` batch is a list of them."""

    external_id: str
    effective_date: date
    postings: Sequence[PostingInstruction]
    description: str = ""
    metadata: dict[str, str] | None = None
    pending: bool = False
    expires_at: datetime | None = None


def transaction_of(aggregates: Aggregates, tenant_id: UUID, transaction_id: UUID) -> Transaction:
    transaction = typed(aggregates, transaction_id, Transaction)
    if transaction is None or transaction.tenant_id != tenant_id:
        raise TransactionNotFound(f"transaction {transaction_id} not found", transaction_id=str(transaction_id))
    return transaction


class Transactions:
    def __init__(self, store: AggregateStore, writes: WritePath, clock: Callable[[], datetime]) -> None:
        self._store = store
        self._writes = writes
        self._clock = clock  # what "now" is for hold deadlines

    def record(self, tenant_id: UUID, request: TransactionRequest) -> Recorded:
        """Record a balanced journal entry (or a hold, if ``pending``), or return the one
        already recorded under the same ``external_id`` with the same content."""
        decide = self._new_transaction_decision(tenant_id, request)
        return self._writes.execute(decide, lock_keys=[p.account_id for p in request.postings], reads=[tenant_id],
                                    presumed_new=[transaction_id_for(tenant_id, request.external_id)])

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
        writable_tenant(self._store, tenant_id)
        decisions = [self._request_decision(tenant_id, request) for request in requests]
        keys = [p.account_id for r in requests for p in r.postings]
        # A malformed external id (already rejected above) may not even be encodable as an id.
        existing = [transaction_id_for(tenant_id, r.external_id) for r in requests if is_external_id(r.external_id)]
        outcomes = self._writes.decide_together(decisions, keys, [tenant_id, *keys], commit=commit, atomic=atomic,
                                                presumed_new=existing)
        if outcomes and all(isinstance(outcome, ReceiptTaken) for outcome in outcomes):
            raise ReceiptTaken
        return outcomes

    def _request_decision(self, tenant_id: UUID, request: TransactionRequest) -> Decision[Recorded]:
        try:
            return self._new_transaction_decision(tenant_id, request)
        except LedgerError as error:
            return _rejected(error)  # invalid before any state is read: its outcome is this error

    def _new_transaction_decision(self, tenant_id: UUID, request: TransactionRequest) -> Decision[Recorded]:
        _check_request(request)

        def decide(aggregates: Aggregates) -> Recorded:
            writable_tenant(aggregates, tenant_id)
            accounts = _posting_accounts(aggregates, tenant_id, request.postings)
            resolved = tuple(_resolve(instruction, accounts) for instruction in request.postings)
            existing = typed(aggregates, transaction_id_for(tenant_id, request.external_id), Transaction)
            if existing is not None:
                if existing.same_content(request.effective_date, resolved, request.description, request.metadata,
                                         hold=request.pending, expires_at=request.expires_at):
                    return Recorded(existing, None, replayed=True, balances=balances_of(accounts))
                raise DuplicateExternalId(
                    f"external_id {request.external_id} was already used for a different transaction",
                    external_id=request.external_id,
                    transaction_id=str(existing.id),
                )
            if request.pending:
                transaction = Transaction.place_hold(tenant_id, request.external_id, request.effective_date, resolved,
                                                     request.description, request.metadata,
                                                     expires_at=request.expires_at, now=self._clock())
                _apply_reservations(transaction, accounts)
            else:
                transaction = Transaction.post(tenant_id, request.external_id, request.effective_date, resolved,
                                               request.description, request.metadata)
                _apply_postings(transaction, accounts)
            return Recorded(transaction, aggregates.save(transaction, *accounts.values()),
                            balances=balances_of(accounts))

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

        def decide(aggregates: Aggregates) -> Recorded:
            writable_tenant(aggregates, tenant_id)
            hold = transaction_of(aggregates, tenant_id, transaction_id)
            hold.check_resolvable(self._clock())
            accounts = _posting_accounts(aggregates, tenant_id, _instructions_of(hold.held_postings or ()))
            captured = tuple(_resolve_capture(i, accounts) for i in postings) if postings is not None else None
            posted = hold.capture_postings(captured)
            _check_consistent_read(hold, accounts)
            _check_capture(hold, posted, accounts)
            hold.capture(captured, self._clock(), effective_date)
            _apply_capture(hold, posted, accounts)
            return Recorded(hold, aggregates.save(hold, *accounts.values()), balances=balances_of(accounts))

        return self._writes.execute(decide, lock_keys=self._hold_lock_keys(transaction_id), reads=[tenant_id])

    def void_hold(self, tenant_id: UUID, transaction_id: UUID) -> Recorded:
        """Release a whole hold."""
        return self._release_hold(tenant_id, transaction_id, expire=False)

    def expire_hold(self, tenant_id: UUID, transaction_id: UUID) -> Recorded:
        """Release a hold whose deadline has passed. Exactly once by construction: the
        hold's own state refuses a second expiry (``hold_expired``), and concurrent
        expiries conflict on its version, so only one is ever saved."""
        return self._release_hold(tenant_id, transaction_id, expire=True)

    def _release_hold(self, tenant_id: UUID, transaction_id: UUID, *, expire: bool) -> Recorded:
        def decide(aggregates: Aggregates) -> Recorded:
            # An expiry is the deadline's consequence: it happens even while the tenant is suspended.
            tenant = tenant_of(aggregates, tenant_id)
            if not expire:
                tenant.check_writable()
            hold = transaction_of(aggregates, tenant_id, transaction_id)
            if expire:
                hold.expire(self._clock())
            else:
                hold.void(self._clock())
            accounts = _posting_accounts(aggregates, tenant_id, _instructions_of(hold.held_postings or ()))
            _check_consistent_read(hold, accounts)
            for posting in hold.held_postings or ():
                accounts[posting.account_id].release(hold.id, posting.amount_minor)
            return Recorded(hold, aggregates.save(hold, *accounts.values()), balances=balances_of(accounts))

        return self._writes.execute(decide, lock_keys=self._hold_lock_keys(transaction_id), reads=[tenant_id])

    def _hold_lock_keys(self, transaction_id: UUID) -> list[UUID]:
        hold = typed(self._store, transaction_id, Transaction)
        touched = [p.account_id for p in hold.held_postings or ()] if hold is not None else []
        return [transaction_id, *touched]

    # --- corrections ------------------------------------------------------------

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

        def decide(aggregates: Aggregates) -> Recorded:
            writable_tenant(aggregates, tenant_id)
            original = transaction_of(aggregates, tenant_id, transaction_id)
            check_version(original, expected_version)
            # By default today, or the original's own date if that is later (a future-dated entry).
            when = effective_date or max(datetime.now(timezone.utc).date(), original.effective_date)
            reversal = original.reverse(when, description)
            accounts = _posting_accounts(aggregates, tenant_id, _instructions_of(reversal.postings))
            _apply_postings(reversal, accounts)
            return Recorded(reversal, aggregates.save(reversal, original, *accounts.values()),
                            balances=balances_of(accounts))

        # The accounts to serialise on are the original's; reading it first is cheap
        # (cached) and the decision re-reads it, and checks everything, under the locks.
        original = typed(self._store, transaction_id, Transaction)
        touched = [p.account_id for p in original.postings] if original is not None else []
        return self._writes.execute(decide, lock_keys=[transaction_id, *touched], reads=[tenant_id])

    def get_transaction(self, tenant_id: UUID, transaction_id: UUID) -> Transaction:
        return transaction_of(self._store, tenant_id, transaction_id)


def _posting_accounts(aggregates: Aggregates, tenant_id: UUID,
                      postings: Iterable[PostingInstruction]) -> dict[UUID, Account]:
    accounts: dict[UUID, Account] = {}
    for instruction in postings:
        if instruction.account_id not in accounts:
            accounts[instruction.account_id] = account_of(aggregates, tenant_id, instruction.account_id)
    return accounts


def _check_effective_date(effective_date: object) -> None:
    check_effective_date(effective_date)


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


def _rejected(error: LedgerError) -> Decision[Recorded]:
    def decide(_aggregates: Aggregates) -> Recorded:
        raise error

    return decide
