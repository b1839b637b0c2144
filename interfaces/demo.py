"""A generated demo ledger: a few tenants, their charts of accounts and a few
thousand transactions over several months, with back-dated entries, reversals
and holds (posted in full or in part, voided, or left pending).

Every write goes through the ``Ledger``'s use cases, so the demo obeys every
rule a real client does. It is seeded: the same options give the same
transactions (ids, amounts, effective dates) on every run. That makes it
resumable: every write is keyed by a deterministic id and replays as a no-op,
so running it again on its own demo (after an interruption, say) completes it.
A store holding anything else is refused with ``DemoRefused``.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any
from uuid import UUID

from application.ledger import Ledger, PostingInstruction
from domain.errors import (
    AccountAlreadyExists,
    DuplicateExternalId,
    HoldAlreadyResolved,
    TenantAlreadyExists,
    TransactionAlreadyReversed,
    TransactionNotFound,
)
from domain.ids import account_id_for, tenant_id_for, transaction_id_for
from domain.money import format_amount

TENANTS: tuple[tuple[str, str], ...] = (("demo-acme", "USD"), ("demo-globex", "EUR"), ("demo-initech", "JPY"))
# (code, name, type): the same chart of accounts for every tenant.
CHART: tuple[tuple[str, str, str], ...] = (
    ("cash", "Cash at bank", "asset"),
    ("receivables", "Accounts receivable", "asset"),
    ("equity", "Owner's equity", "equity"),
    ("payables", "Accounts payable", "liability"),
    ("revenue", "Sales revenue", "income"),
    ("fees", "Fee income", "income"),
    ("salaries", "Salaries", "expense"),
    ("rent", "Rent", "expense"),
    ("supplies", "Supplies", "expense"),
)
WALLETS = 8  # customer wallets (liabilities) per tenant
TRANSACTIONS_MAX = 100_000
MONTHS_MAX = 36
DEFAULT_START = date(2025, 1, 1)
_BACKDATE_SHARE = 0.05
_REVERSAL_SHARE = 0.03
_HOLD_SHARE = 0.06


class DemoRefused(Exception):
    """The store is not empty and holds something other than this demo."""


@dataclass(frozen=True)
class DemoOptions:
    seed: int = 7
    transactions: int = 3000
    months: int = 6
    start: date = DEFAULT_START

    def __post_init__(self) -> None:
        if not 1 <= self.transactions <= TRANSACTIONS_MAX:
            raise ValueError(f"transactions must be between 1 and {TRANSACTIONS_MAX}")
        if not 1 <= self.months <= MONTHS_MAX:
            raise ValueError(f"months must be between 1 and {MONTHS_MAX}")

    @property
    def fingerprint(self) -> str:
        """Recorded on the first opening entry, so a resumed run can tell it is the same demo."""
        return f"seed={self.seed};transactions={self.transactions};months={self.months};start={self.start}"

    @property
    def end(self) -> date:
        return self.start + timedelta(days=round(self.months * 30.4) - 1)


@dataclass
class DemoSummary:
    tenants: int = 0
    accounts: int = 0
    posted: int = 0
    reversals: int = 0
    holds_placed: int = 0
    holds_posted: int = 0
    holds_voided: int = 0
    replayed: int = 0  # writes already in the store (a resumed run)
    first_date: date | None = None
    last_date: date | None = None
    position: int = 0
    tenant_names: list[str] = field(default_factory=list)


def demo_tenant_ids() -> list[UUID]:
    return [tenant_id_for(name) for name, _ in TENANTS]


def generate_demo(
    ledger: Ledger,
    options: DemoOptions | None = None,
    on_transaction: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Write the demo into ``ledger``'s store; ``on_transaction(n)`` after each step."""
    options = options or DemoOptions()
    check_store_accepts_demo(ledger, options)
    rng = random.Random(options.seed)  # noqa: S311 - a demo, not cryptography
    summary = DemoSummary(tenant_names=[name for name, _ in TENANTS])
    writer = _DemoWriter(ledger, summary, options)
    for name, currency in TENANTS:
        writer.open_books(name, currency)
    for step, plan in enumerate(_plans(rng, options), start=1):
        writer.carry_out(plan)
        summary.first_date = min(summary.first_date or plan.day, plan.day)
        summary.last_date = max(summary.last_date or plan.day, plan.day)
        if on_transaction is not None:
            on_transaction(step)
    summary.position = ledger.recorder.max_notification_id() or 0
    return summary


def check_store_accepts_demo(ledger: Ledger, options: DemoOptions) -> None:
    """An empty store, or this very demo begun (a resumed run); checked before any write."""
    first = ledger.recorder.select_notifications(start=1, limit=1)
    if not first:
        return
    if first[0].originator_id not in demo_tenant_ids():
        count = ledger.recorder.max_notification_id()
        raise DemoRefused(
            f"the store already holds {count} event(s) that are not a demo ledger; "
            "'invario demo' fills only an empty store (give it a new one with --database-url)"
        )
    tenant_id = tenant_id_for(TENANTS[0][0])
    try:
        opening = ledger.get_transaction(tenant_id, transaction_id_for(tenant_id, f"{TENANTS[0][0]}-opening"))
    except TransactionNotFound:
        return  # interrupted before its first entry
    made_with = opening.metadata.get("demo_options")
    if made_with != options.fingerprint:
        raise DemoRefused(
            f"the store holds a demo made with other options ({made_with}); "
            "run it with those options to complete it, or give it a new store with --database-url"
        )


# --- the plan: what happens, decided by the seeded generator alone -------------------------


@dataclass(frozen=True)
class _Plan:
    kind: str  # post | reverse | hold
    tenant: str
    currency: str
    day: date
    external_id: str
    legs: tuple[tuple[str, int], ...] = ()  # (account code, signed minor amount)
    description: str = ""
    target: str | None = None  # the external id a reversal reverses
    hold_outcome: str | None = None  # post | partial | void | pending


def _plans(rng: random.Random, options: DemoOptions) -> Iterator[_Plan]:
    span = (options.end - options.start).days
    posted: list[_Plan] = []
    for tenant, currency in TENANTS:
        yield _Plan("post", tenant, currency, options.start, f"{tenant}-opening",
                    (("cash", _amount(rng, currency, 50_000, 100_000)),), "Opening capital")
    for n in range(options.transactions):
        tenant, currency = TENANTS[rng.randrange(len(TENANTS))]
        day = options.start + timedelta(days=min(span, span * n // options.transactions))
        if rng.random() < _BACKDATE_SHARE:
            day = max(options.start, day - timedelta(days=rng.randint(10, 60)))
        external_id = f"{tenant}-{n:06d}"
        roll = rng.random()
        if roll < _REVERSAL_SHARE and posted:
            original = posted.pop(rng.randrange(len(posted)))
            yield _Plan("reverse", original.tenant, original.currency, max(day, original.day), external_id,
                        target=original.external_id, description=f"Reversal of {original.external_id}")
            continue
        legs, description = _business_event(rng, currency)
        if roll < _REVERSAL_SHARE + _HOLD_SHARE:
            outcome = rng.choices(("post", "partial", "void", "pending"), weights=(5, 2, 2, 1))[0]
            yield _Plan("hold", tenant, currency, day, external_id, legs, f"Card authorisation: {description}",
                        hold_outcome=outcome)
            continue
        plan = _Plan("post", tenant, currency, day, external_id, legs, description)
        posted.append(plan)
        yield plan


def _amount(rng: random.Random, currency: str, low: int, high: int) -> int:
    """A whole-unit amount in minor units of ``currency`` (JPY has none)."""
    units = rng.randint(low, high)
    return units if currency == "JPY" else units * 100 + rng.choice((0, 0, 50, 99, rng.randint(1, 99)))


def _business_event(rng: random.Random, currency: str) -> tuple[tuple[tuple[str, int], ...], str]:
    """Debit legs (code, amount); the balancing credit is implied by the first code of each kind."""
    kind = rng.choices(("sale", "invoice", "expense", "topup", "spend", "payroll"), weights=(5, 2, 4, 3, 4, 1))[0]
    wallet = f"wallet-{rng.randint(1, WALLETS):02d}"
    if kind == "sale":
        amount = _amount(rng, currency, 5, 400)
        return (("cash", amount), ("revenue", -amount)), "Card sale"
    if kind == "invoice":
        amount = _amount(rng, currency, 200, 3000)
        return (("receivables", amount), ("revenue", -amount)), "Invoice"
    if kind == "expense":
        account = rng.choice(("rent", "supplies", "supplies"))
        amount = _amount(rng, currency, 20, 1500)
        return ((account, amount), ("cash", -amount)), f"Paid {account}"
    if kind == "topup":
        amount = _amount(rng, currency, 10, 500)
        return (("cash", amount), (wallet, -amount)), f"Top-up of {wallet}"
    if kind == "spend":
        amount = _amount(rng, currency, 5, 100)
        fee = max(1, amount // 50)
        return ((wallet, amount), ("revenue", -(amount - fee)), ("fees", -fee)), f"Purchase from {wallet}"
    amount = _amount(rng, currency, 2000, 6000)
    return (("salaries", amount), ("payables", -amount)), "Payroll accrual"


# --- carrying the plan out through the ledger ---------------------------------------------


class _DemoWriter:
    def __init__(self, ledger: Ledger, summary: DemoSummary, options: DemoOptions) -> None:
        self.ledger = ledger
        self.summary = summary
        self.options = options

    def open_books(self, name: str, currency: str) -> None:
        try:
            self.ledger.create_tenant(name)
            self.summary.tenants += 1
        except TenantAlreadyExists:
            self.summary.replayed += 1
        tenant_id = tenant_id_for(name)
        wallets = [(f"wallet-{n:02d}", f"Customer wallet {n:02d}", "liability") for n in range(1, WALLETS + 1)]
        for code, title, kind in (*CHART, *wallets):
            try:
                self.ledger.open_account(tenant_id, code, title, currency, kind)
                self.summary.accounts += 1
            except AccountAlreadyExists:
                self.summary.replayed += 1

    def carry_out(self, plan: _Plan) -> None:
        tenant_id = tenant_id_for(plan.tenant)
        try:
            if plan.kind == "reverse":
                self._reverse(tenant_id, plan)
            elif plan.kind == "hold":
                self._hold(tenant_id, plan)
            else:
                self._post(tenant_id, plan)
        except DuplicateExternalId:
            raise DemoRefused(
                f"the store holds a demo made with other options ({plan.external_id} differs); "
                "use the same --seed/--transactions/--months, or a new store"
            ) from None

    def _instructions(self, tenant_id: UUID, plan: _Plan) -> list[PostingInstruction]:
        legs = list(plan.legs)
        if len(legs) == 1:  # the opening entry: the equity account balances it
            legs.append(("equity", -legs[0][1]))
        return [
            PostingInstruction(account_id_for(tenant_id, code), format_amount(amount, plan.currency), plan.currency)
            for code, amount in legs
        ]

    def _post(self, tenant_id: UUID, plan: _Plan) -> None:
        metadata = {"source": "invario-demo"}
        if plan.external_id.endswith("-opening"):
            metadata["demo_options"] = self.options.fingerprint
        recorded = self.ledger.post_transaction(tenant_id, plan.external_id, plan.day,
                                                self._instructions(tenant_id, plan), plan.description, metadata)
        self._count(recorded.replayed, "posted")

    def _reverse(self, tenant_id: UUID, plan: _Plan) -> None:
        assert plan.target is not None

        try:
            self.ledger.reverse_transaction(tenant_id, transaction_id_for(tenant_id, plan.target), plan.day,
                                            plan.description)
            self.summary.reversals += 1
        except TransactionAlreadyReversed:
            self.summary.replayed += 1

    def _hold(self, tenant_id: UUID, plan: _Plan) -> None:
        recorded = self.ledger.place_hold(tenant_id, plan.external_id, plan.day, self._instructions(tenant_id, plan),
                                          plan.description, {"source": "invario-demo"})
        self._count(recorded.replayed, "holds_placed")
        hold_id = recorded.aggregate.id
        try:
            if plan.hold_outcome == "post":
                self.ledger.post_hold(tenant_id, hold_id)
                self.summary.holds_posted += 1
            elif plan.hold_outcome == "partial":
                self.ledger.post_hold(tenant_id, hold_id, _partial(plan, tenant_id))
                self.summary.holds_posted += 1
            elif plan.hold_outcome == "void":
                self.ledger.void_hold(tenant_id, hold_id)
                self.summary.holds_voided += 1
        except HoldAlreadyResolved:
            self.summary.replayed += 1

    def _count(self, replayed: bool, attribute: str) -> None:
        if replayed:
            self.summary.replayed += 1
        else:
            setattr(self.summary, attribute, getattr(self.summary, attribute) + 1)


def _partial(plan: _Plan, tenant_id: UUID) -> list[PostingInstruction]:
    """Capture about half of a two-leg hold (the tip-less half of a restaurant bill); others in full."""
    legs: list[tuple[str, Any]] = list(plan.legs)
    if len(legs) != 2:
        return [PostingInstruction(account_id_for(tenant_id, code), format_amount(amount, plan.currency))
                for code, amount in legs]
    half = legs[0][1] // 2 or legs[0][1]
    return [
        PostingInstruction(account_id_for(tenant_id, legs[0][0]), format_amount(half, plan.currency)),
        PostingInstruction(account_id_for(tenant_id, legs[1][0]), format_amount(-half, plan.currency)),
    ]


def create_demo_ledger(
    url: str,
    options: DemoOptions | None = None,
    on_transaction: Callable[[int], None] | None = None,
) -> DemoSummary:
    """Open the store at ``url`` (schema migrated), write the demo into it, close it."""
    # Deferred: importing interfaces.notebook (which exports this) must not load alembic and the store.
    from infrastructure.runtime import open_runtime
    from infrastructure.migrate import upgrade_to_head
    from infrastructure.settings import Settings

    runtime = open_runtime(Settings(database_url=url))
    try:
        upgrade_to_head(runtime.engine)  # so 'invario serve' / the worker can build read models on it
        return generate_demo(runtime.ledger, options, on_transaction)
    finally:
        runtime.close()
