"""Properties of holds over random sequences of postings, holds, captures, voids,
expiries and reversals.

- available = posted + pending effect (the pending amounts that reduce the
  normal side), always, on every account;
- no sequence breaks a floor (posted or available) or the zero sums: raw posted
  balances and raw pending balances each sum to zero per currency;
- a hold is resolved at most once; a rejected command changes nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from uuid import UUID

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from application.ledger import PostingInstruction
from domain.errors import (
    HoldAlreadyResolved,
    HoldExpired,
    HoldNotExpired,
    InsufficientFunds,
    InvalidCapture,
    LedgerError,
    ReversalNotReversible,
    TransactionAlreadyReversed,
    TransactionNotPosted,
)
from domain.money import format_amount
from tests.unit.books import DAY, in_memory_ledger

START = datetime(2026, 11, 23, 12, 0, tzinfo=timezone.utc)
# code, type, floor
CATALOG = (("cash", "asset", None), ("wallet", "liability", 0), ("card", "asset", -2000),
           ("merchant", "liability", None), ("escrow", "liability", 0))


@dataclass
class ModelAccount:
    id: UUID
    debit_normal: bool
    floor: int | None

    def normal(self, raw: int) -> int:
        return raw if self.debit_normal else -raw


@dataclass
class ModelTx:
    id: UUID
    legs: dict[UUID, int]                  # held (holds) or posted amounts, raw
    hold: bool
    expires_at: datetime | None = None
    status: str = "posted"
    posted: dict[UUID, int] = field(default_factory=dict)
    reversed: bool = False
    is_reversal: bool = False


class Clock:
    def __init__(self) -> None:
        self.now = START

    def __call__(self) -> datetime:
        return self.now


class HoldsMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.ledger = in_memory_ledger()
        self.clock = Clock()
        self.ledger.clock = self.clock
        self.tenant = self.ledger.create_tenant("acme").aggregate.id
        self.accounts = [
            ModelAccount(self.ledger.open_account(self.tenant, code, code, "BRL", type_, floor).aggregate.id,
                         type_ == "asset", floor)
            for code, type_, floor in CATALOG
        ]
        self.txs: list[ModelTx] = []
        self.counter = 0

    # --- model ------------------------------------------------------------------------

    def posted(self, account: ModelAccount) -> int:
        return sum(t.posted.get(account.id, 0) for t in self.txs)

    def pending(self, account: ModelAccount) -> tuple[int, int]:
        """(pending debits, pending credits)."""
        legs = [t.legs.get(account.id, 0) for t in self.txs if t.hold and t.status == "pending"]
        return sum(a for a in legs if a > 0), -sum(a for a in legs if a < 0)

    def available(self, account: ModelAccount) -> int:
        debits, credits = self.pending(account)
        return account.normal(self.posted(account)) - (credits if account.debit_normal else debits)

    def breaks_floor(self, legs: dict[UUID, int]) -> bool:
        for account in self.accounts:
            change = account.normal(legs.get(account.id, 0))
            if account.floor is not None and change < 0 and self.available(account) + change < account.floor:
                return True
        return False

    def snapshot(self) -> dict[UUID, tuple[int, int, int]]:
        result = {}
        for a in self.accounts:
            acc = self.ledger.get_account(self.tenant, a.id)
            result[a.id] = (acc.balance_minor, acc.pending_debits_minor, acc.pending_credits_minor)
        return result

    def attempt(self, command, expected: type[LedgerError] | None):  # noqa: ANN001, ANN201
        before = self.snapshot()
        try:
            recorded = command()
        except LedgerError as error:
            assert type(error) is expected, f"{type(error).__name__} raised, expected {expected}"
            assert self.snapshot() == before, "a rejected command changed balances"
            return None
        assert expected is None, f"succeeded, expected {expected}"
        return recorded

    def pair(self, data: st.DataObject) -> tuple[ModelAccount, ModelAccount, int]:
        a, b = data.draw(st.lists(st.sampled_from(self.accounts), min_size=2, max_size=2, unique_by=lambda x: x.id))
        return a, b, data.draw(st.integers(1, 3000))

    def external_id(self) -> str:
        self.counter += 1
        return f"tx-{self.counter}"

    def instructions(self, legs: dict[UUID, int]) -> list[PostingInstruction]:
        return [PostingInstruction(account_id, format_amount(amount, "BRL")) for account_id, amount in legs.items()]

    # --- commands ---------------------------------------------------------------------

    @rule(data=st.data())
    def post(self, data: st.DataObject) -> None:
        a, b, amount = self.pair(data)
        legs = {a.id: amount, b.id: -amount}
        expected = InsufficientFunds if self.breaks_floor(legs) else None
        recorded = self.attempt(lambda: self.ledger.post_transaction(
            self.tenant, self.external_id(), DAY, self.instructions(legs)), expected)
        if recorded is not None:
            self.txs.append(ModelTx(recorded.aggregate.id, legs, hold=False, posted=dict(legs)))

    @rule(data=st.data(), minutes=st.one_of(st.none(), st.integers(1, 120)))
    def place_hold(self, data: st.DataObject, minutes: int | None) -> None:
        a, b, amount = self.pair(data)
        legs = {a.id: amount, b.id: -amount}
        expires_at = self.clock.now + timedelta(minutes=minutes) if minutes is not None else None
        expected = InsufficientFunds if self.breaks_floor(legs) else None
        recorded = self.attempt(lambda: self.ledger.place_hold(
            self.tenant, self.external_id(), DAY, self.instructions(legs), expires_at=expires_at), expected)
        if recorded is not None:
            self.txs.append(ModelTx(recorded.aggregate.id, legs, hold=True, expires_at=expires_at, status="pending"))

    def resolution_error(self, tx: ModelTx) -> type[LedgerError] | None:
        if tx.status == "expired":
            return HoldExpired
        if tx.status != "pending":
            return HoldAlreadyResolved
        if tx.expires_at is not None and self.clock.now >= tx.expires_at:
            return HoldExpired
        return None

    @precondition(lambda self: any(t.hold for t in self.txs))
    @rule(data=st.data(), percent=st.integers(0, 100), full=st.booleans())
    def capture(self, data: st.DataObject, percent: int, full: bool) -> None:  # noqa: FBT001
        tx = data.draw(st.sampled_from([t for t in self.txs if t.hold]))
        debit = next(amount for amount in tx.legs.values() if amount > 0)
        part = debit * percent // 100
        captured = dict(tx.legs) if full else {k: (part if v > 0 else -part) for k, v in tx.legs.items()}
        expected = self.resolution_error(tx)
        if expected is None and not any(captured.values()):
            expected = InvalidCapture
        recorded = self.attempt(lambda: self.ledger.post_hold(
            self.tenant, tx.id, None if full else self.instructions(captured)), expected)
        if recorded is not None:
            tx.status, tx.posted = "posted", {k: v for k, v in captured.items() if v}

    @precondition(lambda self: any(t.hold for t in self.txs))
    @rule(data=st.data())
    def void(self, data: st.DataObject) -> None:
        tx = data.draw(st.sampled_from([t for t in self.txs if t.hold]))
        if self.attempt(lambda: self.ledger.void_hold(self.tenant, tx.id), self.resolution_error(tx)) is not None:
            tx.status = "voided"

    @rule(minutes=st.integers(1, 90))
    def time_passes(self, minutes: int) -> None:
        self.clock.now += timedelta(minutes=minutes)

    @precondition(lambda self: any(t.hold for t in self.txs))
    @rule(data=st.data())
    def expire(self, data: st.DataObject) -> None:
        tx = data.draw(st.sampled_from([t for t in self.txs if t.hold]))
        if tx.status == "expired":
            expected: type[LedgerError] | None = HoldExpired
        elif tx.status != "pending":
            expected = HoldAlreadyResolved
        elif tx.expires_at is None or self.clock.now < tx.expires_at:
            expected = HoldNotExpired
        else:
            expected = None
        if self.attempt(lambda: self.ledger.expire_hold(self.tenant, tx.id), expected) is not None:
            tx.status = "expired"

    @precondition(lambda self: self.txs)
    @rule(data=st.data())
    def reverse(self, data: st.DataObject) -> None:
        tx = data.draw(st.sampled_from(self.txs))
        opposite = {k: -v for k, v in tx.posted.items()}
        if tx.status != "posted":
            expected: type[LedgerError] | None = TransactionNotPosted
        elif tx.is_reversal:
            expected = ReversalNotReversible
        elif tx.reversed:
            expected = TransactionAlreadyReversed
        else:
            expected = InsufficientFunds if self.breaks_floor(opposite) else None
        recorded = self.attempt(lambda: self.ledger.reverse_transaction(self.tenant, tx.id, DAY), expected)
        if recorded is not None:
            tx.reversed = True
            self.txs.append(ModelTx(recorded.aggregate.id, opposite, hold=False, posted=opposite, is_reversal=True))

    # --- invariants -------------------------------------------------------------------

    @invariant()
    def balances_follow_the_model_and_the_rules(self) -> None:
        posted_total = pending_total = 0
        for model in self.accounts:
            account = self.ledger.get_account(self.tenant, model.id)
            debits, credits = self.pending(model)
            assert account.balance_minor == self.posted(model)
            assert (account.pending_debits_minor, account.pending_credits_minor) == (debits, credits)
            effect = -(credits if model.debit_normal else debits)
            assert account.available_normal_minor == account.balance_normal_minor + effect
            assert account.available_normal_minor == self.available(model)
            if model.floor is not None:
                assert account.available_normal_minor >= model.floor
                assert account.balance_normal_minor >= model.floor
            posted_total += account.balance_minor
            pending_total += account.pending_minor
        assert posted_total == 0 and pending_total == 0

    @invariant()
    def chains_verify(self) -> None:
        for aggregate_id in [*(a.id for a in self.accounts), *(t.id for t in self.txs)]:
            assert self.ledger.verify_aggregate_chain(aggregate_id) is None


HoldsMachine.TestCase.settings = settings(
    max_examples=40, stateful_step_count=30, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
TestHoldsProperties = HoldsMachine.TestCase
