"""Business rejections of the ledger.

Every rule the ledger enforces has one named error here. Each carries a stable,
machine-readable ``code`` that clients, logs and the HTTP problem documents rely
on, so a code is never renamed once released. Programmer errors are assertions,
not ``LedgerError``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class LedgerError(Exception):
    """Base of every business rejection; ``code`` is stable and public."""

    code: ClassVar[str] = "ledger_error"

    def __init__(self, message: str, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


# --- money --------------------------------------------------------------------


class InvalidAmount(LedgerError):
    code = "invalid_amount"


class AmountPrecisionExceeded(InvalidAmount):
    code = "amount_precision_exceeded"


class AmountOutOfRange(InvalidAmount):
    code = "amount_out_of_range"


class UnknownCurrency(LedgerError):
    code = "unknown_currency"


class InvalidMetadata(LedgerError):
    code = "invalid_metadata"


# --- text ---------------------------------------------------------------------


class InvalidText(LedgerError):
    """A text field holds a character no field may hold (domain/text.py): a control
    character, a surrogate or a noncharacter; ``field`` names it, ``character`` says which."""

    code = "invalid_text"


# --- tenants ------------------------------------------------------------------


class InvalidTenant(LedgerError):
    code = "invalid_tenant"


class TenantNotFound(LedgerError):
    code = "tenant_not_found"


class TenantAlreadyExists(LedgerError):
    code = "tenant_already_exists"


class TenantSuspended(LedgerError):
    code = "tenant_suspended"


class TenantAlreadySuspended(LedgerError):
    code = "tenant_already_suspended"


class TenantNotSuspended(LedgerError):
    code = "tenant_not_suspended"


# --- accounts -----------------------------------------------------------------


class InvalidAccount(LedgerError):
    code = "invalid_account"


class AccountNotFound(LedgerError):
    code = "account_not_found"


class AccountAlreadyExists(LedgerError):
    code = "account_already_exists"


class AccountFrozen(LedgerError):
    code = "account_frozen"


class AccountNotFrozen(LedgerError):
    code = "account_not_frozen"


class AccountClosed(LedgerError):
    code = "account_closed"


class AccountBalanceNotZero(LedgerError):
    code = "account_balance_not_zero"


class InsufficientFunds(LedgerError):
    code = "insufficient_funds"


class CurrencyMismatch(LedgerError):
    code = "currency_mismatch"


# --- transactions -------------------------------------------------------------


class InvalidTransaction(LedgerError):
    code = "invalid_transaction"


class TransactionUnbalanced(InvalidTransaction):
    code = "transaction_unbalanced"


class TooFewPostings(InvalidTransaction):
    code = "too_few_postings"


class TooManyPostings(InvalidTransaction):
    code = "too_many_postings"


class ZeroAmount(InvalidTransaction):
    code = "zero_amount"


class DuplicatePostingAccount(InvalidTransaction):
    code = "duplicate_posting_account"


class TransactionNotFound(LedgerError):
    code = "transaction_not_found"


class DuplicateExternalId(LedgerError):
    """The ``external_id`` was used before for a transaction with other content."""

    code = "duplicate_external_id"


class LinkedTransferFailed(LedgerError):
    """In an all-or-nothing (atomic) batch, this transfer was acceptable, but another
    one was rejected, so none was posted; ``failed_index`` names the first rejected one."""

    code = "linked_transfer_failed"


class TransactionAlreadyReversed(LedgerError):
    code = "transaction_already_reversed"


class ReversalNotReversible(LedgerError):
    code = "reversal_not_reversible"


# --- concurrency --------------------------------------------------------------


class ConcurrencyConflict(LedgerError):
    """Optimistic concurrency kept failing after the bounded number of retries,
    or the caller's expected version was stale."""

    code = "concurrency_conflict"


class VersionMismatch(ConcurrencyConflict):
    """The caller changed a resource based on a version that is no longer current."""

    code = "version_mismatch"


# --- API access -----------------------------------------------------------------


class InvalidApiKey(LedgerError):
    """No active key matches what the client presented (unknown or malformed)."""

    code = "invalid_api_key"


class ApiKeyRevoked(LedgerError):
    code = "api_key_revoked"


class ScopeNotGranted(LedgerError):
    """The key is valid but lacks the scope (``read`` or ``write``) the request needs."""

    code = "insufficient_scope"


class InvalidScopes(LedgerError):
    code = "invalid_scopes"


class TooManyApiKeys(LedgerError):
    code = "too_many_api_keys"


# --- holds (pending transactions) ---------------------------------------------------


class NotAHold(LedgerError):
    """Post, void or expire of a transaction that was never pending."""

    code = "not_a_hold"


class HoldAlreadyResolved(LedgerError):
    """The hold was already posted or voided; nothing changed."""

    code = "hold_already_resolved"


class HoldExpired(LedgerError):
    """The hold's deadline has passed (whether or not the worker has expired it yet); nothing changed."""

    code = "hold_expired"


class HoldNotExpired(LedgerError):
    """An expiry was asked for a hold whose deadline has not passed (or that has none)."""

    code = "hold_not_expired"


class InvalidCapture(InvalidTransaction):
    """Captured amounts must be on the hold's accounts, of the same sign and at most the held amount."""

    code = "invalid_capture"


class TransactionNotPosted(LedgerError):
    """Only a posted transaction (or a captured hold) can be reversed."""

    code = "transaction_not_posted"


class AccountHasHolds(LedgerError):
    """An account with open holds cannot be closed."""

    code = "account_has_holds"


# --- batches (files of transactions) ------------------------------------------------
# The file-format errors (InvalidBatch, MalformedCsv...) are the file reader's: infrastructure/batch_files.py.


class BatchNotFound(LedgerError):
    code = "batch_not_found"


# --- recurring transactions ---------------------------------------------------------


class InvalidRecurringTransaction(LedgerError):
    """A schedule or template that can never be run (bad frequency, day, dates)."""

    code = "invalid_recurring_transaction"


class RecurringTransactionNotFound(LedgerError):
    code = "recurring_transaction_not_found"


class RecurringTransactionCancelled(LedgerError):
    """The schedule was cancelled: it runs no more and cannot be cancelled again."""

    code = "recurring_transaction_cancelled"


# --- proofs (docs/proofs.md) ----------------------------------------------------------


class CheckpointNotFound(LedgerError):
    """No signed checkpoint of that tree size (checkpoints are signed every N events or T seconds)."""

    code = "checkpoint_not_found"


class CheckpointPending(LedgerError):
    """No signed checkpoint covers this yet; the next one will (``INVARIO_CHECKPOINT_EVERY_SECONDS``)."""

    code = "checkpoint_pending"


class InvalidProofRequest(LedgerError):
    """Sizes that name no proof (a consistency proof from a larger tree to a smaller one)."""

    code = "invalid_proof_request"
