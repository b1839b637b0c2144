"""Helpers shared by the integration tests: runtimes on a URL and store-neutral reads.

Everything here goes through the public surface (``open_runtime``, the Ledger,
the eventsourcing recorder's notification log), so the same helper works on
SQLite and on PostgreSQL.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date
from typing import Any
from uuid import UUID

from application.ledger import Ledger, PostingInstruction
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.settings import Settings

DAY = date(2024, 3, 1)
LOG_PAGE = 500


def runtime_on(url: str, **settings: Any) -> Runtime:
    return open_runtime(Settings(database_url=url, **settings))


def leg(account_id: UUID, amount: str, currency: str | None = None) -> PostingInstruction:
    return PostingInstruction(account_id, amount, currency)


def notifications(ledger: Ledger) -> Iterator[Any]:
    """Every stored event of the notification log, in log order."""
    start = 1
    while True:
        page = ledger.recorder.select_notifications(start=start, limit=LOG_PAGE)
        yield from page
        if len(page) < LOG_PAGE:
            return
        start = page[-1].id + 1


def log_length(ledger: Ledger) -> int:
    return sum(1 for _ in notifications(ledger))


def aggregate_ids(ledger: Ledger) -> set[UUID]:
    return {n.originator_id for n in notifications(ledger)}


def broken_chains(ledger: Ledger) -> dict[UUID, str]:
    """Every aggregate whose chain does not verify, with the break described."""
    breaks = {}
    for aggregate_id in sorted(aggregate_ids(ledger), key=str):
        found = ledger.verify_aggregate_chain(aggregate_id)
        if found is not None:
            breaks[aggregate_id] = found.describe()
    return breaks


@dataclass(frozen=True)
class AccountState:
    balance_minor: int
    posting_count: int
    version: int
    chain_hash: str
    status: str


def account_state(ledger: Ledger, tenant_id: UUID, account_id: UUID) -> AccountState:
    account = ledger.get_account(tenant_id, account_id)
    return AccountState(
        account.balance_minor, account.posting_count, account.version, account.chain_hash, str(account.status)
    )


def replay_from_events(ledger: Ledger, aggregate_id: UUID) -> Any:
    """The aggregate rebuilt from its stored events alone: no snapshot, no cache."""
    aggregate = None
    for event in ledger.events.get(aggregate_id):
        aggregate = event.mutate(aggregate)
    assert aggregate is not None, f"no events for {aggregate_id}"
    return aggregate
