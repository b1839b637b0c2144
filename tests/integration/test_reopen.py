"""What one runtime wrote, a new runtime on the same database reads back exactly.

A new runtime has an empty aggregate cache, so every account is rebuilt from the
store: from its events, or from its latest snapshot (every 200 account events)
plus the events after it.
"""

from __future__ import annotations

import random
from collections import Counter
from uuid import UUID

from application.ledger import Ledger
from domain.ids import transaction_id_for
from domain.money import format_amount
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, account_state, broken_chains, leg, replay_from_events

TRANSACTIONS = 300
SNAPSHOT_INTERVAL = 200  # Ledger.snapshotting_intervals[Account]
CODES = ("hub", "a", "b", "c", "d")


def post_many(ledger: Ledger, tenant_id: UUID, accounts: dict[str, UUID]) -> tuple[Counter, Counter]:
    """Post ``TRANSACTIONS`` two- or three-legged transactions, every one touching ``hub``.

    Returns the expected raw balance and posting count of every account.
    """
    rng = random.Random(20240301)  # noqa: S311 - reproducible amounts, not security
    others = [accounts[code] for code in CODES if code != "hub"]
    balances: Counter = Counter()
    counts: Counter = Counter()
    for n in range(TRANSACTIONS):
        legs = {account_id: rng.randint(1, 99_999) * rng.choice((1, -1))
                for account_id in rng.sample(others, 1 + n % 2)}
        if sum(legs.values()) == 0:
            legs[others[0] if others[0] not in legs else others[1]] = 1
        legs[accounts["hub"]] = -sum(legs.values())
        ledger.post_transaction(tenant_id, f"t-{n}", DAY, [leg(a, format_amount(m, "BRL")) for a, m in legs.items()])
        balances.update(legs)
        counts.update(legs.keys())
    return balances, counts


def open_accounts(ledger: Ledger) -> tuple[UUID, dict[str, UUID]]:
    tenant_id = ledger.create_tenant("acme").aggregate.id
    return tenant_id, {
        code: ledger.open_account(tenant_id, code, code.title(), "BRL", "asset").aggregate.id for code in CODES
    }


def test_a_new_runtime_reads_the_same_books(database_url: str, open_rt: OpenRuntime) -> None:
    writer = open_rt(database_url)
    tenant_id, accounts = open_accounts(writer.ledger)
    balances, counts = post_many(writer.ledger, tenant_id, accounts)
    assert sum(balances.values()) == 0
    before = {a: account_state(writer.ledger, tenant_id, a) for a in accounts.values()}
    assert {a: s.balance_minor for a, s in before.items()} == {a: balances[a] for a in accounts.values()}
    assert {a: s.posting_count for a, s in before.items()} == {a: counts[a] for a in accounts.values()}
    assert before[accounts["hub"]].posting_count == TRANSACTIONS
    writer.close()

    reader = open_rt(database_url)
    assert {a: account_state(reader.ledger, tenant_id, a) for a in accounts.values()} == before
    for n in (0, TRANSACTIONS // 2, TRANSACTIONS - 1):
        transaction = reader.ledger.get_transaction(tenant_id, transaction_id_for(tenant_id, f"t-{n}"))
        assert sum(p.amount_minor for p in transaction.postings) == 0
    assert broken_chains(reader.ledger) == {}


def test_a_snapshotted_account_reloads_identically(database_url: str, open_rt: OpenRuntime) -> None:
    writer = open_rt(database_url)
    tenant_id, accounts = open_accounts(writer.ledger)
    balances, _ = post_many(writer.ledger, tenant_id, accounts)
    hub = accounts["hub"]
    written = account_state(writer.ledger, tenant_id, hub)
    assert written.version == TRANSACTIONS + 1 > SNAPSHOT_INTERVAL
    writer.close()

    reader = open_rt(database_url)
    snapshots = list(reader.ledger.snapshots.get(hub))
    assert [s.originator_version for s in snapshots] == [SNAPSHOT_INTERVAL]
    # The accounts with fewer events than the interval have no snapshot.
    assert all(not list(reader.ledger.snapshots.get(accounts[c])) for c in CODES if c != "hub")

    reloaded = account_state(reader.ledger, tenant_id, hub)
    assert reloaded == written
    assert reloaded.balance_minor == balances[hub]
    assert reloaded.chain_hash == list(reader.ledger.events.get(hub, desc=True, limit=1))[0].hash

    # The snapshot path and the events-only path agree on every field that matters.
    from_events = replay_from_events(reader.ledger, hub)
    assert (from_events.balance_minor, from_events.posting_count, from_events.version, from_events.chain_hash) == (
        reloaded.balance_minor, reloaded.posting_count, reloaded.version, reloaded.chain_hash
    )

    # The account at the snapshot's own version, and posting on after the reload.
    at_snapshot = reader.ledger.repository.get(hub, version=SNAPSHOT_INTERVAL)
    assert at_snapshot.chain_hash == list(reader.ledger.events.get(hub, lte=SNAPSHOT_INTERVAL, desc=True, limit=1))[0].hash
    reader.ledger.post_transaction(tenant_id, "after-reload", DAY, [leg(hub, "1.00"), leg(accounts["a"], "-1.00")])
    assert reader.ledger.get_account(tenant_id, hub).balance_minor == balances[hub] + 100
    assert broken_chains(reader.ledger) == {}
