"""Tampering with stored events in PostgreSQL is caught by the per-aggregate chain.

The damage is done behind the application's back, with plain SQL on the event
table; a fresh runtime (empty cache) then verifies the chains from the store.
"""

from __future__ import annotations

import re
from uuid import UUID

import psycopg
import pytest

from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import DAY, aggregate_ids, leg

pytestmark = pytest.mark.postgres

EVENTS_TABLE = "invario_events"
POSTINGS = 6
TAMPERED_VERSION = 4  # Opened is version 1; postings are versions 2..POSTINGS+1


def write_books(url: str, open_rt: OpenRuntime) -> tuple[UUID, UUID, UUID]:
    runtime = open_rt(url)
    ledger = runtime.ledger
    tenant_id = ledger.create_tenant("acme").aggregate.id
    cash = ledger.open_account(tenant_id, "cash", "Cash", "BRL", "asset").aggregate.id
    wallet = ledger.open_account(tenant_id, "wallet", "Wallet", "BRL", "liability").aggregate.id
    for n in range(POSTINGS):
        ledger.post_transaction(tenant_id, f"t-{n}", DAY, [leg(cash, f"{n + 1}2.34"), leg(wallet, f"-{n + 1}2.34")])
    runtime.close()
    return tenant_id, cash, wallet


def stored_state(url: str, originator_id: UUID, version: int) -> bytes:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            f"SELECT state FROM {EVENTS_TABLE} WHERE originator_id = %s AND originator_version = %s",  # noqa: S608
            (originator_id, version),
        ).fetchone()
    assert row is not None, f"no stored event {originator_id} v{version}"
    return bytes(row[0])


def test_one_changed_byte_is_named_by_aggregate_and_version(pg_database_url: str, open_rt: OpenRuntime) -> None:
    tenant_id, cash, _ = write_books(pg_database_url, open_rt)
    original = stored_state(pg_database_url, cash, TAMPERED_VERSION)
    match = re.search(rb'"amount_minor":(\d+)', original)
    assert match is not None, original
    # Change the amount's first digit (1 -> 9 or the like): still valid JSON, still an int.
    at = match.start(1)
    changed = original[:at] + bytes([ord("9") if original[at] != ord("9") else ord("8")]) + original[at + 1 :]
    assert sum(a != b for a, b in zip(original, changed, strict=True)) == 1

    with psycopg.connect(pg_database_url) as conn:
        updated = conn.execute(
            f"UPDATE {EVENTS_TABLE} SET state = %s WHERE originator_id = %s AND originator_version = %s",  # noqa: S608
            (changed, cash, TAMPERED_VERSION),
        ).rowcount
    assert updated == 1

    ledger = open_rt(pg_database_url).ledger
    found = ledger.verify_aggregate_chain(cash)
    assert found is not None
    assert (found.originator_id, found.originator_version, found.kind) == (cash, TAMPERED_VERSION, "changed")
    assert found.found_hash != found.expected_hash
    for other in aggregate_ids(ledger) - {cash}:
        assert ledger.verify_aggregate_chain(other) is None, other
    # The tampered account still loads (the change decodes): only the chain tells.
    assert ledger.get_account(tenant_id, cash).posting_count == POSTINGS


def test_a_deleted_event_is_missing_at_the_next_version(pg_database_url: str, open_rt: OpenRuntime) -> None:
    _, cash, wallet = write_books(pg_database_url, open_rt)
    deleted = 3
    with psycopg.connect(pg_database_url) as conn:
        gone = conn.execute(
            f"DELETE FROM {EVENTS_TABLE} WHERE originator_id = %s AND originator_version = %s",  # noqa: S608
            (wallet, deleted),
        ).rowcount
    assert gone == 1

    ledger = open_rt(pg_database_url).ledger
    found = ledger.verify_aggregate_chain(wallet)
    assert found is not None
    assert (found.originator_id, found.originator_version, found.kind) == (wallet, deleted + 1, "missing")
    assert ledger.verify_aggregate_chain(cash) is None
