"""Text in the read models, on PostgreSQL and SQLite alike.

- Whatever text the write side accepts, every read model stores and gives back
  unchanged (a property test: arbitrary Unicode in every text field of every command).
- A log written before the text rule (domain/text.py) may hold text no store can
  keep as is (a NUL for PostgreSQL); the read models store it with U+FFFD in its
  place (projections/read_models/encoding.py) and never stop on it; the events stay untouched.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import select

import domain.text
from application.ledger import Ledger, PostingInstruction
from application.recurring import RecurringTransactions
from domain.errors import LedgerError
from domain.recurring import Schedule
from infrastructure.runtime import Runtime
from projections.read_models.queries import ReadModels
from projections.jobs.reconcile import reconcile
from projections.read_models.recurring_queries import RecurringReadModel
from projections.read_models.statements import read_hold_entries, read_statement_entries
from projections.following.status import CURRENT, projection_statuses
from projections.read_models.tenant_directory import TenantDirectory
from projections.jobs.verification import LedgerVerification
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import catch_up, open_ready

DAY = date(2024, 3, 1)
EXAMPLES = 40


@dataclass
class Shop:
    """A tenant with two accounts, a second tenant to suspend, and the texts to read back."""

    runtime: Runtime
    tenant_id: UUID
    other_id: UUID
    cash: UUID
    sales: UUID
    expected: list[tuple[str, Callable[[], Any], Any]] = field(default_factory=list)
    count: int = 0

    @property
    def ledger(self) -> Ledger:
        return self.runtime.ledger

    def legs(self, amount: str = "1.00") -> list[PostingInstruction]:
        return [PostingInstruction(self.cash, amount), PostingInstruction(self.sales, f"-{amount}")]

    def balances(self) -> tuple[int, int, int, int]:
        accounts = [self.ledger.get_account(self.tenant_id, a) for a in (self.cash, self.sales)]
        return tuple(n for a in accounts for n in (a.balance_minor, a.pending_debits_minor - a.pending_credits_minor))

    def attempt(self, command: Callable[[], Any]) -> Any | None:
        """The command's result, or None if the ledger refused it (and then no balance moved)."""
        before = self.balances()
        try:
            return command()
        except LedgerError:
            assert self.balances() == before
            return None

    def expect(self, what: str, read: Callable[[], Any], value: Any) -> None:
        self.expected.append((what, read, value))


def open_shop(runtime: Runtime) -> Shop:
    ledger = runtime.ledger
    tenant_id = ledger.create_tenant("acme").aggregate.id
    other_id = ledger.create_tenant("globex").aggregate.id
    cash = ledger.open_account(tenant_id, "cash", "Cash", "BRL", "asset").aggregate.id
    sales = ledger.open_account(tenant_id, "sales", "Sales", "BRL", "income").aggregate.id
    return Shop(runtime, tenant_id, other_id, cash, sales)


def assert_every_projection_current(runtime: Runtime) -> None:
    head, statuses = projection_statuses(runtime)
    assert head > 0
    assert {(s.name, s.state, s.last_error) for s in statuses} == {(s.name, CURRENT, None) for s in statuses}


def statement_descriptions(runtime: Runtime, transaction_id: UUID) -> set[str]:
    with runtime.engine.connect() as connection:
        return {row.description for table in (read_statement_entries, read_hold_entries)
                for row in connection.execute(select(table).where(table.c.transaction_id == str(transaction_id)))}


# --- whatever is accepted is projected ------------------------------------------------------------

texts = st.text()
metadata = st.dictionaries(st.text(), st.text(), max_size=3)


def _accounts_and_tenants(shop: Shop, data: st.DataObject) -> None:
    reads, directory = ReadModels(shop.runtime.engine), TenantDirectory(shop.runtime.engine)
    code, name, labels = data.draw(texts, "code"), data.draw(texts, "name"), data.draw(metadata, "account metadata")
    # An arbitrary code is nearly always refused: open one under a valid code too, so names get stored.
    for account_code in (code, f"a{shop.count}"):
        opened = shop.attempt(lambda: shop.ledger.open_account(shop.tenant_id, account_code, name, "BRL", "asset",
                                                               metadata=labels))
        if opened is not None:
            account_id = opened.aggregate.id
            # Bound now: both codes of the loop may be accepted, and a late-bound id reads the last one.
            shop.expect("account", lambda i=account_id: _account_texts(reads.get_account(shop.tenant_id, i)),
                        (account_code, name, labels))
    tenant_name = data.draw(texts, "tenant name")
    created = shop.attempt(lambda: shop.ledger.create_tenant(tenant_name))
    if created is not None:
        tenant_id = created.aggregate.id
        shop.expect("tenant", lambda: directory.get(tenant_id).name, tenant_name)
    reason = data.draw(texts, "suspension reason")
    if shop.attempt(lambda: shop.ledger.suspend_tenant(shop.other_id, reason)) is not None:
        catch_up(shop.runtime)
        assert directory.get(shop.other_id).suspension_reason == reason
        shop.ledger.resume_tenant(shop.other_id)


def _account_texts(view: Any) -> tuple[str, str, dict[str, str]]:
    return view.code, view.name, view.metadata


def _transactions(shop: Shop, data: st.DataObject) -> None:
    reads, n = ReadModels(shop.runtime.engine), shop.count
    external_id, description, labels = data.draw(texts, "external id"), data.draw(texts), data.draw(metadata)
    for ext, text, extra in ((external_id, "", None), (f"p{n}", description, labels)):
        posted = shop.attempt(lambda: shop.ledger.post_transaction(shop.tenant_id, ext, DAY, shop.legs(), text, extra))
        if posted is not None and not posted.replayed:
            shop.expect("transaction", _transaction_texts(shop, reads, posted.aggregate.id), (ext, text, extra or {}))
    hold_text, reversal_text = data.draw(texts, "hold description"), data.draw(texts, "reversal description")
    expires_at = datetime.now(timezone.utc) + timedelta(days=1)
    held = shop.attempt(lambda: shop.ledger.place_hold(shop.tenant_id, f"h{n}", DAY, shop.legs(), hold_text,
                                                       expires_at=expires_at))
    if held is not None:
        shop.ledger.post_hold(shop.tenant_id, held.aggregate.id)  # its HoldPosted event carries the description
        shop.expect("hold", _transaction_texts(shop, reads, held.aggregate.id), (f"h{n}", hold_text, {}))
    original = shop.ledger.post_transaction(shop.tenant_id, f"r{n}", DAY, shop.legs()).aggregate.id
    reversed_ = shop.attempt(lambda: shop.ledger.reverse_transaction(shop.tenant_id, original, DAY, reversal_text))
    if reversed_ is not None:
        text = reversal_text or f"Reversal of r{n}"
        shop.expect("reversal", _transaction_texts(shop, reads, reversed_.aggregate.id), (None, text, {}))


def _transaction_texts(shop: Shop, reads: ReadModels, transaction_id: UUID) -> Callable[[], Any]:
    def read() -> tuple[str | None, str, dict[str, str]]:
        view = reads.get_transaction(shop.tenant_id, transaction_id)
        assert statement_descriptions(shop.runtime, transaction_id) == {view.description}
        return view.external_id, view.description, view.metadata

    return read


def _recurring(shop: Shop, data: st.DataObject) -> None:
    reads = RecurringReadModel(shop.runtime.engine)
    description, labels = data.draw(texts, "recurring description"), data.draw(metadata, "recurring metadata")
    service = RecurringTransactions(shop.ledger)
    today = shop.ledger.clock().date()
    created = shop.attempt(lambda: service.create(shop.tenant_id, Schedule("daily"), today, shop.legs(),
                                                  description, labels))
    if created is not None:
        recurring_id = created.aggregate.id
        shop.expect("recurring", lambda: (lambda v: (v.description, v.metadata))(reads.get(shop.tenant_id,
                                                                                            recurring_id)),
                    (description, labels))


@pytest.fixture
def shop(database_url: str, open_rt: OpenRuntime) -> Shop:
    """One database per store, shared by every example (each example posts under new ids)."""
    return open_shop(open_ready(open_rt, database_url))


@settings(max_examples=EXAMPLES, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_whatever_the_write_side_accepts_every_read_model_stores_and_gives_back(shop: Shop,
                                                                                 data: st.DataObject) -> None:
    shop.count += 1
    shop.expected.clear()
    _accounts_and_tenants(shop, data)
    _transactions(shop, data)
    _recurring(shop, data)
    catch_up(shop.runtime)
    assert_every_projection_current(shop.runtime)
    for what, read, value in shop.expected:
        assert read() == value, what


# --- a log written before the rule ------------------------------------------------------------------

# What an earlier version stored: a NUL (which PostgreSQL text refuses), an escape, a noncharacter.
LEGACY = "a\x00b\x1bc\ufffe"
STORED = "a\ufffdb\x1bc\ufffe"  # the read models' copy: only the NUL replaced


@contextmanager
def earlier_version(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The write side as it was before domain/text.py: any text went into the events."""
    with monkeypatch.context() as patched:
        patched.setattr(domain.text, "_check", lambda value, _field, _refused: value)
        yield


@dataclass(frozen=True)
class LegacyLog:
    tenant_id: UUID
    other_id: UUID
    account_id: UUID
    transaction_id: UUID
    hold_id: UUID
    reversal_id: UUID
    recurring_id: UUID


def write_legacy_log(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> LegacyLog:
    """Every text field of every command holding ``LEGACY``, stored as an earlier version did."""
    tenant_id = ledger.create_tenant("acme").aggregate.id
    other_id = ledger.create_tenant("globex").aggregate.id
    with earlier_version(monkeypatch):
        account_id = ledger.open_account(tenant_id, "odd", f"Odd {LEGACY}", "BRL", "asset",
                                         metadata={f"k{LEGACY}": f"v{LEGACY}"}).aggregate.id
        sales = ledger.open_account(tenant_id, "sales", "Sales", "BRL", "income").aggregate.id
        legs = [PostingInstruction(account_id, "1.00"), PostingInstruction(sales, "-1.00")]
        posted = ledger.post_transaction(tenant_id, "t1", DAY, legs, LEGACY, {LEGACY: LEGACY}).aggregate.id
        hold = ledger.place_hold(tenant_id, "h1", DAY, legs, LEGACY,
                                 expires_at=datetime.now(timezone.utc) + timedelta(days=1)).aggregate.id
        ledger.post_hold(tenant_id, hold)
        reversal = ledger.reverse_transaction(tenant_id, posted, DAY, LEGACY).aggregate.id
        recurring = RecurringTransactions(ledger).create(tenant_id, Schedule("daily"), ledger.clock().date(), legs,
                                                         LEGACY, {LEGACY: LEGACY}).aggregate.id
        ledger.suspend_tenant(other_id, LEGACY)
    return LegacyLog(tenant_id, other_id, account_id, posted, hold, reversal, recurring)


def assert_read_models_hold_the_replacement(runtime: Runtime, log: LegacyLog) -> None:
    reads = ReadModels(runtime.engine)
    account = reads.get_account(log.tenant_id, log.account_id)
    assert (account.name, account.metadata) == (f"Odd {STORED}", {f"k{STORED}": f"v{STORED}"})
    for transaction_id in (log.transaction_id, log.hold_id, log.reversal_id):
        view = reads.get_transaction(log.tenant_id, transaction_id)
        assert view.description == STORED
        assert statement_descriptions(runtime, transaction_id) == {STORED}
    assert reads.get_transaction(log.tenant_id, log.transaction_id).metadata == {STORED: STORED}
    recurring = RecurringReadModel(runtime.engine).get(log.tenant_id, log.recurring_id)
    assert (recurring.description, recurring.metadata) == (STORED, {STORED: STORED})
    assert TenantDirectory(runtime.engine).get(log.other_id).suspension_reason == STORED


def test_a_log_written_before_the_text_rule_still_projects(database_url: str, open_rt: OpenRuntime,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    runtime = open_ready(open_rt, database_url)
    log = write_legacy_log(runtime.ledger, monkeypatch)

    catch_up(runtime)
    assert_every_projection_current(runtime)
    assert_read_models_hold_the_replacement(runtime, log)
    # The events are untouched, so the write side still has the original text and every chain verifies.
    assert runtime.ledger.get_transaction(log.tenant_id, log.transaction_id).description == LEGACY
    assert LedgerVerification(runtime.ledger, runtime.engine).run().intact
    # Reconciliation compares the read models with the write side as the read models store it.
    assert reconcile(runtime.ledger, runtime.engine).divergences == ()
