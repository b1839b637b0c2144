"""Hash-linked events: every aggregate's history verifies, and tampering is named."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from datetime import datetime, timezone
from typing import Any
from uuid import UUID, uuid4

import pytest

from domain.account import Account
from domain.chain import (
    GENESIS_HASH,
    canonical_encoding,
    compute_event_hash,
    global_link_hash,
    verify_chain,
)
from domain.tenant import Tenant
from tests.unit.books import leg


def _tenant_events() -> tuple[Tenant, list[Any]]:
    tenant = Tenant.create("acme")
    tenant.suspend("audit")
    tenant.resume()
    tenant.suspend("again")
    return tenant, list(tenant.collect_events())


def _replay(events: list[Any]) -> Any:
    aggregate = None
    for event in events:
        aggregate = event.mutate(aggregate)
    return aggregate


def _rehashed(event: Any, **changes: Any) -> Any:
    """A forged event: fields changed and its own hash recomputed consistently."""
    forged = dataclasses.replace(event, **changes, hash="")
    object.__setattr__(forged, "hash", compute_event_hash(forged))
    return forged


# --- sealing and replay -------------------------------------------------------------


def test_events_of_an_aggregate_verify() -> None:
    _, events = _tenant_events()
    assert verify_chain(events) is None


def test_first_event_links_to_genesis() -> None:
    _, events = _tenant_events()
    assert events[0].prev_hash == GENESIS_HASH == "0" * 64


def test_each_event_links_to_the_previous_hash() -> None:
    _, events = _tenant_events()
    assert [e.prev_hash for e in events[1:]] == [e.hash for e in events[:-1]]
    assert len({e.hash for e in events}) == len(events)


def test_replay_reproduces_chain_hash() -> None:
    tenant, events = _tenant_events()
    replayed = _replay(events)
    assert replayed.chain_hash == tenant.chain_hash == events[-1].hash
    assert replayed.is_suspended and replayed.suspension_reason == "again"


def test_stored_events_verify_and_replay_through_the_ledger(books) -> None:
    cash, wallet = books.open("cash"), books.open("wallet", type="liability")
    books.post("t1", leg(cash, "1.00"), leg(wallet, "-1.00"))
    for aggregate_id in (books.tenant_id, cash, wallet):
        assert books.ledger.verify_aggregate_chain(aggregate_id) is None
    stored = list(books.ledger.events.get(cash))
    assert _replay(stored).chain_hash == books.ledger.get_account(books.tenant_id, cash).chain_hash


# --- canonical encoding -------------------------------------------------------------


def test_canonical_encoding_is_sorted_compact_json() -> None:
    encoded = canonical_encoding("T.E", {"b": 1, "a": "é", "hash": "x", "originator_topic": "m:T"})
    assert encoded == '{"event_type":"T.E","fields":{"a":"é","b":1}}'.encode()


def test_a_field_named_type_cannot_stand_in_for_the_event_type() -> None:
    assert canonical_encoding("A.Opened", {"type": "asset"}) != canonical_encoding("asset", {})
    assert canonical_encoding("A.Opened", {"type": "x"}) != canonical_encoding("A.Closed", {"type": "x"})


def test_canonical_encoding_is_stable() -> None:
    _, events = _tenant_events()
    first = canonical_encoding(type(events[0]).__qualname__, vars(events[0]))
    assert canonical_encoding(type(events[0]).__qualname__, vars(events[0])) == first
    assert compute_event_hash(events[0]) == compute_event_hash(events[0]) == events[0].hash


def test_known_event_hash_matches_an_independent_computation() -> None:
    tenant_id = UUID("7352d41c-ed62-5e4d-8469-6d6c2e41bd51")
    event = Tenant.Created(
        originator_id=tenant_id,
        originator_version=1,
        timestamp=datetime(2024, 1, 2, 3, 4, 5, 6, tzinfo=timezone.utc),
        originator_topic="domain.tenant:Tenant",
        prev_hash=GENESIS_HASH,
        hash="ignored",
        name="acme",
    )
    document = {
        "event_type": "Tenant.Created",
        "fields": {
            "name": "acme",
            "originator_id": "7352d41c-ed62-5e4d-8469-6d6c2e41bd51",
            "originator_version": 1,
            "prev_hash": "0" * 64,
            "timestamp": "2024-01-02T03:04:05.000006+00:00",
        },
    }
    text = json.dumps(document, sort_keys=True, separators=(",", ":"))
    assert compute_event_hash(event) == hashlib.sha256(text.encode()).hexdigest()


def test_hash_ignores_originator_topic() -> None:
    _, events = _tenant_events()
    moved = dataclasses.replace(events[0], originator_topic="elsewhere:Tenant")
    assert compute_event_hash(moved) == events[0].hash


def test_timestamps_hash_the_same_in_any_timezone() -> None:
    _, events = _tenant_events()
    local = events[1].timestamp.astimezone(timezone.utc).astimezone()
    assert compute_event_hash(dataclasses.replace(events[1], timestamp=local)) == events[1].hash


def test_hash_covers_the_event_type_even_with_a_type_field() -> None:
    account = Account.open(uuid4(), "cash", "Cash", "BRL", "asset")
    opened = account.collect_events()[0]
    values = vars(opened)
    assert canonical_encoding("Account.Opened", values) != canonical_encoding("Account.Frozen", values)


# --- tampering ----------------------------------------------------------------------


def test_changed_field_is_changed_at_that_version() -> None:
    _, events = _tenant_events()
    events[1] = dataclasses.replace(events[1], reason="nothing to see")
    found = verify_chain(events)
    assert (found.kind, found.originator_version) == ("changed", 2)


def test_changed_hash_is_changed() -> None:
    _, events = _tenant_events()
    events[2] = dataclasses.replace(events[2], hash="f" * 64)
    found = verify_chain(events)
    assert (found.kind, found.originator_version, found.found_hash) == ("changed", 3, "f" * 64)


def test_dropped_event_is_missing() -> None:
    _, events = _tenant_events()
    del events[1]
    found = verify_chain(events)
    assert (found.kind, found.originator_version) == ("missing", 3)


def test_dropped_first_event_is_missing() -> None:
    _, events = _tenant_events()
    found = verify_chain(events[1:])
    assert (found.kind, found.originator_version) == ("missing", 2)


def test_repeated_earlier_version_is_reordered() -> None:
    _, events = _tenant_events()
    found = verify_chain([*events[:3], events[1]])
    assert (found.kind, found.originator_version) == ("reordered", 2)


def test_swapped_events_are_reordered() -> None:
    _, events = _tenant_events()
    events[1], events[2] = events[2], events[1]
    found = verify_chain(events)
    assert found.kind == "reordered"


def test_consistently_rehashed_relink_is_relinked() -> None:
    _, events = _tenant_events()
    events[1] = _rehashed(events[1], prev_hash="a" * 64)
    found = verify_chain(events)
    assert (found.kind, found.originator_version, found.found_hash) == ("relinked", 2, "a" * 64)
    assert found.expected_hash == events[0].hash


def test_rehashed_first_event_off_genesis_is_relinked() -> None:
    _, events = _tenant_events()
    events[0] = _rehashed(events[0], prev_hash="b" * 64)
    found = verify_chain(events)
    assert (found.kind, found.originator_version, found.expected_hash) == ("relinked", 1, GENESIS_HASH)


def test_rehashed_change_breaks_the_next_link() -> None:
    _, events = _tenant_events()
    events[1] = _rehashed(events[1], reason="forged")
    found = verify_chain(events)
    assert (found.kind, found.originator_version) == ("relinked", 3)


def test_chain_break_describes_itself() -> None:
    _, events = _tenant_events()
    found = verify_chain(events[1:])
    assert "version 2: missing" in found.describe()


# --- global chain -------------------------------------------------------------------

_LINK = ("0" * 64, 1, 7, UUID(int=1), 3, "e" * 64)


def test_global_link_hash_is_deterministic() -> None:
    expected = hashlib.sha256(f"{'0' * 64}|1|7|{UUID(int=1)}|3|{'e' * 64}".encode("ascii")).hexdigest()
    assert global_link_hash(*_LINK) == global_link_hash(*_LINK) == expected


@pytest.mark.parametrize(
    ("index", "value"), [(0, "1" * 64), (1, 2), (2, 8), (3, UUID(int=2)), (4, 4), (5, "d" * 64)]
)
def test_global_link_hash_changes_with_each_input(index: int, value: Any) -> None:
    changed = list(_LINK)
    changed[index] = value
    assert global_link_hash(*changed) != global_link_hash(*_LINK)
