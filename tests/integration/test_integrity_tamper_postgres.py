"""Tampering with PostgreSQL behind Invario's back: each case is detected and located, turns
``/health`` to 503 and the integrity gauge to 0; a changed projection row is not an integrity
failure (reconciliation catches it); a consistent rewrite of every hash is caught only by a digest.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from domain.integrity import (
    AGGREGATE_CHAIN,
    CHANGED,
    CHECKPOINT,
    DIGEST,
    EXTRA,
    GLOBAL_CHAIN,
    MERKLE_TREE,
    MISSING,
    RELINKED,
    REORDERED,
)
from domain.tenant import Tenant
from infrastructure.signing import SigningKey
from projections.jobs.reconcile import BALANCE, reconcile
from tests.integration.conftest import OpenRuntime
from tests.integration.integrity_support import (
    EVENTS,
    Books,
    Operator,
    api_for,
    assert_health_names,
    catch_up,
    fresh_monitor,  # noqa: F401 - autouse fixture
    gauge_reader,  # noqa: F401 - fixture
    gauge_value,
    position_of,
    rewritten_state,
    sequence_of,
    set_state,
    sql,
    stored_state,
    verify,
    write_books,
)

pytestmark = pytest.mark.postgres

SIGNING_KEY = SigningKey.from_setting(base64.b64encode(b"k" * 32).decode())


@pytest.fixture
def books(pg_database_url: str, open_rt: OpenRuntime) -> Books:
    return write_books(open_rt, pg_database_url)


@pytest.fixture
def operator(books: Books) -> Iterator[Operator]:
    yield from api_for(books)


def broken_everywhere(operator: Operator, reader: InMemoryMetricReader, **location: object) -> None:
    assert_health_names(operator, **location)
    assert gauge_value(reader) == 0


def test_one_changed_byte_is_named_and_stops_writes_but_not_reads(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    assert operator.client.get("/health").json() == {"status": "ok", "database": "ok", "integrity": "ok"}
    assert gauge_value(gauge_reader) == 1
    original = stored_state(books.url, books.cash, 4)
    digit = re.search(rb'"amount_minor":(\d)', original)
    assert digit is not None
    at = digit.start(1)
    set_state(books.url, books.cash, 4, original[:at] + (b"9" if original[at:at + 1] != b"9" else b"8")
              + original[at + 1:])

    first = verify(open_rt, books.url).first_damage
    position = position_of(books.url, books.cash, 4)
    assert first is not None
    assert (first.chain, first.kind, first.aggregate_id, first.aggregate_version) == (
        AGGREGATE_CHAIN, CHANGED, str(books.cash), 4)
    assert (first.position, first.sequence) == (position, sequence_of(books.url, position))
    assert first.expected_hash != first.found_hash
    broken_everywhere(operator, gauge_reader, kind=CHANGED, aggregate_id=str(books.cash), aggregate_version=4,
                      sequence=first.sequence)

    write = operator.client.post("/v1/accounts", headers=operator.headers,
                                 json={"code": "new", "name": "New", "currency": "BRL", "type": "asset"})
    assert write.status_code == 503 and write.json()["code"] == "ledger_integrity_broken"
    assert write.json()["break"]["aggregate_id"] == str(books.cash)
    assert operator.client.get(f"/v1/accounts/{books.cash}/balance", headers=operator.headers).status_code == 200


def test_a_deleted_event_is_missing_in_the_global_chain_and_its_aggregate(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    position = position_of(books.url, books.wallet, 3)
    sequence = sequence_of(books.url, position)
    assert sql(books.url, f"DELETE FROM {EVENTS} WHERE notification_id = %s", (position,)) == 1  # noqa: S608

    report = verify(open_rt, books.url)
    first = report.first_damage
    assert first is not None
    assert (first.chain, first.kind, first.position, first.sequence, first.aggregate_id, first.aggregate_version) == (
        GLOBAL_CHAIN, MISSING, position, sequence, str(books.wallet), 3)
    assert any((d.chain, d.kind, d.aggregate_version) == (AGGREGATE_CHAIN, MISSING, 4) for d in report.damages)
    broken_everywhere(operator, gauge_reader, kind=MISSING, chain=GLOBAL_CHAIN, position=position)


def test_swapped_payloads_are_both_changed(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    third, fifth = stored_state(books.url, books.cash, 3), stored_state(books.url, books.cash, 5)
    set_state(books.url, books.cash, 3, fifth)
    set_state(books.url, books.cash, 5, third)

    report = verify(open_rt, books.url)
    damage = {d.aggregate_version: d.kind for d in report.damages if d.chain == AGGREGATE_CHAIN}
    # Each slot holds the other's content; their successors no longer link to what the slots hold.
    assert damage == {3: CHANGED, 4: RELINKED, 5: CHANGED, 6: RELINKED}
    first = report.first_damage
    assert first is not None and (first.kind, first.aggregate_version) == (CHANGED, 3)
    broken_everywhere(operator, gauge_reader, kind=CHANGED, aggregate_id=str(books.cash), aggregate_version=3)


def test_swapped_log_positions_are_reordered(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    early, late = position_of(books.url, books.cash, 3), position_of(books.url, books.wallet, 5)
    move = f"UPDATE {EVENTS} SET notification_id = %s WHERE notification_id = %s"  # noqa: S608
    for to, from_ in ((-early, early), (early, late), (late, -early)):  # the id is unique at every step
        assert sql(books.url, move, (to, from_)) == 1

    report = verify(open_rt, books.url)
    first = report.first_damage
    assert first is not None
    assert (first.kind, first.position, first.aggregate_id, first.aggregate_version) == (
        REORDERED, early, str(books.wallet), 5)
    assert any((d.chain, d.kind, d.position) == (GLOBAL_CHAIN, REORDERED, early) for d in report.damages)
    broken_everywhere(operator, gauge_reader, kind=REORDERED, position=early)


def test_a_forged_event_with_a_valid_hash_is_extra(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    mallory = Tenant.create("mallory")  # a well-formed event: its own chain verifies
    stored = books.runtime.ledger.mapper.to_stored_event(mallory.collect_events()[0])
    position = books.gap[0]  # an unused id in the middle of the log
    insert = (f"INSERT INTO {EVENTS} (originator_id, originator_version, topic, state, notification_id) "  # noqa: S608
              "VALUES (%s, %s, %s, %s, %s)")
    assert sql(books.url, insert, (mallory.id, 1, stored.topic, stored.state, position)) == 1

    report = verify(open_rt, books.url)
    first = report.first_damage
    assert first is not None
    assert (first.chain, first.kind, first.position, first.aggregate_id) == (
        GLOBAL_CHAIN, EXTRA, position, str(mallory.id))
    assert not [d for d in report.damages if d.chain == AGGREGATE_CHAIN]  # its own chain is well formed
    # Every link after it moved, so the verified checkpoint no longer matches either, nor does the
    # Merkle tree, whose leaves after it are all one place off.
    assert {d.chain for d in report.damages} == {GLOBAL_CHAIN, CHECKPOINT, MERKLE_TREE}
    broken_everywhere(operator, gauge_reader, kind=EXTRA, position=position, aggregate_id=str(mallory.id))


def test_a_dropped_tip_is_missing(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    head = int(books.runtime.ledger.recorder.max_notification_id() or 0)
    first_dropped = head - 1
    sequence = sequence_of(books.url, first_dropped)
    assert sql(books.url, f"DELETE FROM {EVENTS} WHERE notification_id >= %s", (first_dropped,)) == 2  # noqa: S608

    report = verify(open_rt, books.url)
    first = report.first_damage
    assert first is not None
    assert (first.chain, first.kind, first.sequence, first.position) == (GLOBAL_CHAIN, MISSING, sequence,
                                                                         first_dropped)
    assert any((d.chain, d.kind) == (CHECKPOINT, MISSING) for d in report.damages)  # the verified head is gone
    broken_everywhere(operator, gauge_reader, kind=MISSING, sequence=sequence)


def test_a_changed_projection_row_is_not_an_integrity_failure(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    assert sql(books.url, "UPDATE read_accounts SET balance_minor = balance_minor + 100 WHERE account_id = %s",
               (str(books.cash),)) == 1

    assert verify(open_rt, books.url).intact
    assert operator.client.get("/health").status_code == 200
    assert gauge_value(gauge_reader) == 1
    divergences = reconcile(books.runtime.ledger, books.runtime.engine).divergences
    assert [(d.check, d.account_id) for d in divergences if d.check == BALANCE] == [(BALANCE, books.cash)]


def test_a_consistent_rewrite_of_every_hash_is_caught_only_by_a_digest(
    books: Books, operator: Operator, gauge_reader: InMemoryMetricReader, open_rt: OpenRuntime,
) -> None:
    with books.runtime.engine.connect() as connection:
        from infrastructure.integrity_store import read_checkpoint

        checkpoint = read_checkpoint(connection)
    digest = SIGNING_KEY.sign_head(checkpoint.sequence, checkpoint.position, checkpoint.hash)

    rewrite_cash_history(books)
    # ...and re-derive everything derived from the hashes: the global chain, the Merkle tree (its signed
    # checkpoints cannot be signed again without the key: dropped) and the verifier's checkpoint.
    for table in ("ledger_chain", "integrity_checkpoint", "merkle_leaves", "merkle_nodes", "merkle_checkpoints"):
        sql(books.url, f"DELETE FROM {table}")  # noqa: S608 - the test's own table names
    sql(books.url, "UPDATE projection_tracking SET position = 0, event_hash = NULL "
                   "WHERE name IN ('global_chain', 'merkle_tree')")
    catch_up(open_rt(books.url))

    without_digest = verify(open_rt, books.url)
    assert without_digest.intact, without_digest.damages  # every chain is consistent again
    assert operator.client.get("/health").status_code == 200

    report = verify(open_rt, books.url, digests=(digest,))
    assert [(d.chain, d.kind, d.sequence) for d in report.damages] == [(DIGEST, CHANGED, digest.sequence)]
    assert report.damages[0].expected_hash == digest.hash != report.damages[0].found_hash
    broken_everywhere(operator, gauge_reader, chain=DIGEST, kind=CHANGED, sequence=digest.sequence)


def rewrite_cash_history(books: Books) -> None:
    """Add 1 cent to cash's fourth event and recompute every hash after it, as a careful attacker would."""
    ledger = books.runtime.ledger
    versions = [e.originator_version for e in ledger.events.get(books.cash)]
    prev = next(e.hash for e in ledger.events.get(books.cash, gt=2, lte=3))
    for version in range(4, max(versions) + 1):
        event = next(iter(ledger.events.get(books.cash, gt=version - 1, lte=version)))
        changes = {"amount_minor": event.amount_minor + 1} if version == 4 else {}
        state, prev = rewritten_state(ledger, books.cash, version, prev, **changes)
        set_state(books.url, books.cash, version, state)
