"""Use cases of recurring transactions (standing orders): create, cancel, run one date.

Kept beside ``Ledger`` rather than in it: a run is an ordinary
``Ledger.post_transaction`` under the run's deterministic external id, so a run
posted twice (a retry, two workers, a replayed catch-up) replays the first.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from uuid import UUID

from application.decisions import typed
from application.ledger import Ledger, PostingInstruction, Recorded
from application.retries import save_with_retries
from domain.errors import CurrencyMismatch, RecurringTransactionNotFound
from domain.money import format_amount, parse_amount_minor
from domain.recurring import RecurringTransaction, Schedule
from domain.transaction import Posting, check_posting_count


class RecurringTransactions:
    def __init__(self, ledger: Ledger) -> None:
        self.ledger = ledger

    def create(  # noqa: PLR0913
        self,
        tenant_id: UUID,
        schedule: Schedule,
        start_date: date,
        postings: Sequence[PostingInstruction],
        description: str = "",
        metadata: dict[str, str] | None = None,
        end_date: date | None = None,
    ) -> Recorded:
        """Check the template against the accounts as they are now, and record the schedule."""
        check_posting_count(len(postings))
        self.ledger.get_tenant(tenant_id).check_writable()
        resolved = tuple(self._resolve(tenant_id, instruction) for instruction in postings)
        recurring = RecurringTransaction.create(tenant_id, schedule, start_date, resolved, description, metadata,
                                                end_date, today=self.ledger.clock().date())
        return Recorded(recurring, self.ledger.store.save(recurring))

    def cancel(self, tenant_id: UUID, recurring_id: UUID) -> Recorded:
        def decide() -> Recorded:
            recurring = self.get(tenant_id, recurring_id)
            recurring.cancel()
            return Recorded(recurring, self.ledger.store.save(recurring))

        return save_with_retries(decide)

    def run(self, tenant_id: UUID, recurring_id: UUID, run_date: date) -> Recorded:
        """Post the run of ``run_date`` (or replay it, if it was already posted)."""
        recurring = self.get(tenant_id, recurring_id)
        external_id = recurring.check_run(run_date)
        postings = [PostingInstruction(p.account_id, format_amount(p.amount_minor, p.currency), p.currency)
                    for p in recurring.postings]
        return self.ledger.post_transaction(tenant_id, external_id, run_date, postings, recurring.description,
                                            recurring.metadata or None)

    def get(self, tenant_id: UUID, recurring_id: UUID) -> RecurringTransaction:
        recurring = typed(self.ledger.store, recurring_id, RecurringTransaction)
        if recurring is None or recurring.tenant_id != tenant_id:
            raise RecurringTransactionNotFound(f"recurring transaction {recurring_id} not found",
                                               recurring_transaction_id=str(recurring_id))
        return recurring

    def _resolve(self, tenant_id: UUID, instruction: PostingInstruction) -> Posting:
        account = self.ledger.get_account(tenant_id, instruction.account_id)
        if instruction.currency is not None and instruction.currency != account.currency:
            raise CurrencyMismatch(f"account {account.code} holds {account.currency}, not {instruction.currency}",
                                   account_id=str(account.id))
        return Posting(account.id, parse_amount_minor(instruction.amount, account.currency), account.currency)
