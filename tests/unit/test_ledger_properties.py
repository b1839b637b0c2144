"""The ledger's invariants hold over random sequences of valid and invalid commands.

A model tracks what was accepted (from each ``Recorded.aggregate``) and predicts,
for every command, whether it must succeed, must replay, or which rules it breaks;
a rejected command must raise one of the rules it breaks and change nothing.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from application.ledger import PostingInstruction, Recorded
from domain.errors import (
    AccountAlreadyExists,
    AccountFrozen,
    AccountNotFound,
    AccountNotFrozen,
    CurrencyMismatch,
    DuplicateExternalId,
    InsufficientFunds,
    LedgerError,
    ReversalNotReversible,
    TenantNotSuspended,
    TenantAlreadySuspended,
    TenantSuspended,
    TransactionAlreadyReversed,
    TransactionNotFound,
    TransactionUnbalanced,
)
from domain.ids import transaction_id_for
from domain.money import format_amount
from domain.transaction import Posting
from tests.unit.books import DAY, in_memory_ledger

TENANTS = ("acme", "globex")
# code, currency, type, balance floor
CATALOG = (
    ("cash", "BRL", "asset", None),
    ("wallet", "BRL", "liability", 0),
    ("fees", "BRL", "income", None),
    ("bank", "BRL", "asset", 0),
    ("usd-cash", "USD", "asset", -5000),
    ("usd-wallet", "USD", "liability", 0),
    ("usd-equity", "USD", "equity", None),
)
EXTERNAL_IDS = tuple(f"tx-{i}" for i in range(10))
TENANT = st.sampled_from((0, 1))
RARELY = st.sampled_from((False,) * 7 + (True,))  # shrinks towards False


@dataclass
class ModelAccount:
    tenant: int
    id: UUID
    currency: str
    debit_normal: bool
    floor: int | None
    frozen: bool = False

    def normal(self, raw_minor: int) -> int:
        return raw_minor if self.debit_normal else -raw_minor


@dataclass
class ModelTransaction:
    tenant: int
    id: UUID
    postings: tuple[Posting, ...]
    content: Any  # what an identical repeated request must match; None for reversals
    reverses: UUID | None = None
    reversed_by: UUID | None = None


def _key(postings: Any) -> list[tuple[str, int, str]]:
    return sorted((str(p.account_id), p.amount_minor, p.currency) for p in postings)


class LedgerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = in_memory_ledger()
        self.tenant_ids = [self.ledger.create_tenant(name).aggregate.id for name in TENANTS]
        self.suspended = [False, False]
        self.accounts: dict[tuple[int, str], ModelAccount] = {}
        self.transactions: dict[UUID, ModelTransaction] = {}
        self.by_external_id: dict[tuple[int, str], UUID] = {}
        for tenant in (0, 1):
            for spec in (0, 1):
                self.open_account(tenant, spec)

    # --- model ----------------------------------------------------------------------

    def balance(self, account: ModelAccount) -> int:
        """Σ of the postings of every recorded transaction on the account."""
        return sum(
            p.amount_minor for t in self.transactions.values() for p in t.postings if p.account_id == account.id
        )

    def account(self, account_id: UUID) -> ModelAccount:
        return next(a for a in self.accounts.values() if a.id == account_id)

    def posting_violations(self, legs: list[tuple[ModelAccount, int]]) -> set[type[LedgerError]]:
        found: set[type[LedgerError]] = set()
        for account, amount in legs:
            if account.frozen:
                found.add(AccountFrozen)
            change = account.normal(amount)
            if account.floor is not None and change < 0 and account.normal(self.balance(account)) + change < account.floor:
                found.add(InsufficientFunds)
        return found

    def assert_not_recorded(self, transaction_id: UUID) -> None:
        for tenant_id in self.tenant_ids:
            try:
                self.ledger.get_transaction(tenant_id, transaction_id)
            except TransactionNotFound:
                continue
            raise AssertionError(f"rejected transaction {transaction_id} was recorded")

    def attempt(self, command: Callable[[], Recorded], violations: set[type[LedgerError]]) -> Recorded | None:
        """Run ``command``: it succeeds when nothing is violated, else raises one of ``violations``."""
        before = {a.id: self.ledger.get_account(self.tenant_ids[a.tenant], a.id).balance_minor
                  for a in self.accounts.values()}
        try:
            recorded = command()
        except LedgerError as error:
            assert type(error) in violations, f"{type(error).__name__} raised; expected one of {violations}"
            assert error.code == type(error).code
            after = {a.id: self.ledger.get_account(self.tenant_ids[a.tenant], a.id).balance_minor
                     for a in self.accounts.values()}
            assert after == before, "a rejected command changed balances"
            return None
        assert not violations, f"succeeded; expected one of {violations}"
        return recorded

    # --- commands -------------------------------------------------------------------

    @rule(tenant=TENANT, spec=st.integers(0, len(CATALOG) - 1))
    def open_account(self, tenant: int, spec: int) -> None:
        code, currency, type_, floor = CATALOG[spec]
        exists = (tenant, code) in self.accounts
        violations = {TenantSuspended} if self.suspended[tenant] else {AccountAlreadyExists} if exists else set()
        recorded = self.attempt(
            lambda: self.ledger.open_account(self.tenant_ids[tenant], code, code, currency, type_, floor), violations
        )
        if recorded is not None:
            self.accounts[tenant, code] = ModelAccount(
                tenant, recorded.aggregate.id, currency, type_ in ("asset", "expense"), floor
            )

    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:  # noqa: C901, PLR0912
        tenant = data.draw(TENANT)
        by_currency: dict[str, list[ModelAccount]] = defaultdict(list)
        for account in self.accounts.values():
            if account.tenant == tenant:
                by_currency[account.currency].append(account)
        currencies = [c for c in sorted(by_currency) if len(by_currency[c]) >= 2]
        legs: list[tuple[ModelAccount, int]] = []
        for currency in data.draw(st.lists(st.sampled_from(currencies), min_size=1, max_size=2, unique=True)):
            pair = data.draw(st.lists(st.sampled_from(by_currency[currency]), min_size=2, max_size=2,
                                      unique_by=lambda a: a.id))
            amount = data.draw(st.integers(1, 3000))
            legs += [(pair[0], amount), (pair[1], -amount)]
        if data.draw(RARELY):  # unbalance one leg
            i = data.draw(st.integers(0, len(legs) - 1))
            account, amount = legs[i]
            legs[i] = (account, amount + (1 if amount != -1 else 2))
        foreign = [a for a in self.accounts.values() if a.tenant != tenant]
        if foreign and data.draw(RARELY):  # an account of the other tenant
            legs.append((data.draw(st.sampled_from(foreign)), data.draw(st.integers(-50, 50).filter(bool))))
        wrong_currency = data.draw(RARELY)
        legs = data.draw(st.permutations(legs))
        instructions = [
            PostingInstruction(a.id, format_amount(amount, a.currency),
                               ("USD" if a.currency == "BRL" else "BRL") if wrong_currency and i == 0
                               else data.draw(st.sampled_from((None, a.currency))))
            for i, (a, amount) in enumerate(legs)
        ]
        external_id = data.draw(st.sampled_from(EXTERNAL_IDS))
        description = data.draw(st.sampled_from(("", "coffee")))
        content = (DAY, description, _key(Posting(a.id, amount, a.currency) for a, amount in legs))

        violations: set[type[LedgerError]] = set()
        if any(a.tenant != tenant for a, _ in legs):
            violations.add(AccountNotFound)
        if wrong_currency:
            violations.add(CurrencyMismatch)
        existing = self.by_external_id.get((tenant, external_id))
        replay = existing is not None and not violations and self.transactions[existing].content == content
        if existing is not None and not replay:
            violations.add(DuplicateExternalId)
        if not replay:
            sums: dict[str, int] = defaultdict(int)
            for account, amount in legs:
                sums[account.currency] += amount
            if any(sums.values()):
                violations.add(TransactionUnbalanced)
            violations |= self.posting_violations([(a, m) for a, m in legs if a.tenant == tenant])
        if self.suspended[tenant]:
            violations, replay = {TenantSuspended}, False

        recorded = self.attempt(
            lambda: self.ledger.post_transaction(self.tenant_ids[tenant], external_id, DAY, instructions, description),
            violations,
        )
        if recorded is None:
            if existing is None:
                self.assert_not_recorded(transaction_id_for(self.tenant_ids[tenant], external_id))
            return
        tx = recorded.aggregate
        if replay:
            assert (recorded.replayed, recorded.position, tx.id) == (True, None, existing)
            return
        assert (recorded.replayed, isinstance(recorded.position, int)) == (False, True)
        assert _key(tx.postings) == content[2]
        self.transactions[tx.id] = ModelTransaction(tenant, tx.id, tx.postings, content)
        self.by_external_id[tenant, external_id] = tx.id

    @precondition(lambda self: self.transactions)
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        original = data.draw(st.sampled_from(list(self.transactions.values())))
        caller = 1 - original.tenant if data.draw(RARELY) else original.tenant
        affected = [self.account(p.account_id) for p in original.postings]
        before = {a.id: self.balance(a) for a in affected}

        if self.suspended[caller]:
            # Another tenant's transaction may be reported as not found before the suspension.
            violations: set[type[LedgerError]] = {TenantSuspended}
            if caller != original.tenant:
                violations.add(TransactionNotFound)
        elif caller != original.tenant:
            violations = {TransactionNotFound}
        elif original.reverses is not None:
            violations = {ReversalNotReversible}
        elif original.reversed_by is not None:
            violations = {TransactionAlreadyReversed}
        else:
            violations = self.posting_violations([(self.account(p.account_id), -p.amount_minor)
                                                  for p in original.postings])

        recorded = self.attempt(
            lambda: self.ledger.reverse_transaction(self.tenant_ids[caller], original.id, DAY), violations
        )
        stored = self.ledger.get_transaction(self.tenant_ids[original.tenant], original.id)
        if recorded is None:
            assert stored.reversed_by == original.reversed_by
            return
        reversal = recorded.aggregate
        assert reversal.reverses == original.id and stored.reversed_by == reversal.id
        assert _key(reversal.postings) == _key(Posting(p.account_id, -p.amount_minor, p.currency)
                                               for p in original.postings)
        original.reversed_by = reversal.id
        self.transactions[reversal.id] = ModelTransaction(original.tenant, reversal.id, reversal.postings, None,
                                                          reverses=original.id)
        for account in affected:
            # The reversal undoes exactly the original's effect on every account it touched.
            effect = next(p.amount_minor for p in original.postings if p.account_id == account.id)
            actual = self.ledger.get_account(self.tenant_ids[account.tenant], account.id).balance_minor
            assert actual == before[account.id] - effect

    @rule(data=st.data(), freeze=st.booleans())
    def freeze_or_unfreeze(self, data: st.DataObject, freeze: bool) -> None:  # noqa: FBT001
        account = data.draw(st.sampled_from(list(self.accounts.values())))
        violations: set[type[LedgerError]] = set()
        if self.suspended[account.tenant]:
            violations = {TenantSuspended}
        elif freeze and account.frozen:
            violations = {AccountFrozen}
        elif not freeze and not account.frozen:
            violations = {AccountNotFrozen}
        command = self.ledger.freeze_account if freeze else self.ledger.unfreeze_account
        if self.attempt(lambda: command(self.tenant_ids[account.tenant], account.id), violations) is not None:
            account.frozen = freeze

    @rule(tenant=TENANT, suspend=st.booleans())
    def suspend_or_resume(self, tenant: int, suspend: bool) -> None:  # noqa: FBT001
        if suspend:
            violations = {TenantAlreadySuspended} if self.suspended[tenant] else set()
            command = lambda: self.ledger.suspend_tenant(self.tenant_ids[tenant], "check")  # noqa: E731
        else:
            violations = set() if self.suspended[tenant] else {TenantNotSuspended}
            command = lambda: self.ledger.resume_tenant(self.tenant_ids[tenant])  # noqa: E731
        if self.attempt(command, violations) is not None:
            self.suspended[tenant] = suspend

    # --- invariants -----------------------------------------------------------------

    @invariant()
    def balances_are_the_sum_of_recorded_postings(self) -> None:
        totals: dict[tuple[int, str], int] = defaultdict(int)
        for account in self.accounts.values():
            actual = self.ledger.get_account(self.tenant_ids[account.tenant], account.id)
            assert actual.balance_minor == self.balance(account)
            assert (actual.status == "frozen") == account.frozen
            totals[account.tenant, account.currency] += actual.balance_minor
            if account.floor is not None:
                assert actual.balance_normal_minor >= account.floor
        assert all(total == 0 for total in totals.values()), totals

    @invariant()
    def every_chain_verifies(self) -> None:
        ids = [*self.tenant_ids, *(a.id for a in self.accounts.values()), *self.transactions]
        for aggregate_id in ids:
            assert self.ledger.verify_aggregate_chain(aggregate_id) is None, aggregate_id


LedgerMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestLedgerProperties = LedgerMachine.TestCase
