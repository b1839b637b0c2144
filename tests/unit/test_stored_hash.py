"""The verification shortcut recomputes exactly the reference hash, and vouches for nothing else.

``projections.jobs.stored_hash`` hashes an event from its stored JSON without building
the domain event; it may only ever return a hash that equals the stored one, and
that hash must be ``compute_event_hash`` of the decoded event.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from domain.chain import compute_event_hash
from domain.tenant import Tenant
from projections.jobs.stored_hash import hashes_from_stored
from tests.unit.books import Books, in_memory_ledger, leg

# Any text a store can hold: everything but lone surrogates (no UTF-8 encoding exists for them).
TEXT = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


def _resealed(event: Any, **changes: Any) -> Any:
    """The event with other values, sealed as an earlier release (without input rules) would have."""
    forged = dataclasses.replace(event, **changes, hash="")
    object.__setattr__(forged, "hash", compute_event_hash(forged))
    return forged


def _shortcut(books: Books, event: Any) -> Any:
    stored = books.ledger.mapper.to_stored_event(event)
    return hashes_from_stored(stored.topic, stored.originator_id, stored.originator_version, stored.state)


def _events(books: Books) -> list[Any]:
    cash, wallet = books.open("cash"), books.open("wallet", type="liability")
    posted = books.post("t1", leg(cash, "1.00"), leg(wallet, "-1.00")).aggregate.id
    return [event for aggregate_id in (books.tenant_id, cash, wallet, posted)
            for event in books.ledger.events.get(aggregate_id)]


def test_every_kind_of_stored_event_takes_the_shortcut_to_the_reference_hash(books: Books) -> None:
    tenant = Tenant.create("globex")
    tenant.suspend("audit")
    for event in [*_events(books), *tenant.collect_events()]:
        found = _shortcut(books, event)
        assert found is not None, type(event).__qualname__
        assert found.recomputed_hash == found.stored_hash == compute_event_hash(event) == event.hash
        assert found.prev_hash == event.prev_hash and found.event_type == type(event).__qualname__


_BOOKS = Books.create(in_memory_ledger(), "acme")
_POSTED = next(e for e in _events(_BOOKS) if type(e).__qualname__ == "Transaction.Posted")


@settings(max_examples=150, deadline=None)
@given(description=TEXT, external_id=TEXT, key=TEXT, value=TEXT)
def test_arbitrary_text_hashes_the_same_both_ways(description: str, external_id: str, key: str, value: str) -> None:
    books, posted = _BOOKS, _POSTED
    event = _resealed(posted, description=description, external_id=external_id, metadata={key: value, "z": "1"})
    found = _shortcut(books, event)
    assert found is not None
    assert found.recomputed_hash == compute_event_hash(books.ledger.mapper.to_domain_event(
        books.ledger.mapper.to_stored_event(event)))


def test_a_changed_value_is_left_to_the_reference_path(books: Books) -> None:
    event = _events(books)[-1]
    stored = books.ledger.mapper.to_stored_event(event)
    state = json.loads(stored.state)
    state["description"] = "rewritten"
    tampered = json.dumps(state).encode()
    assert hashes_from_stored(stored.topic, stored.originator_id, stored.originator_version, tampered) is None


def test_values_it_does_not_know_are_left_to_the_reference_path(books: Books) -> None:
    event = _events(books)[-1]
    stored = books.ledger.mapper.to_stored_event(event)
    for state in (b"not json", b"[1, 2]", json.dumps({"hash": event.hash, "prev_hash": event.prev_hash,
                                                       "x": {"_type_": "decimal_str", "_data_": "1.5"}}).encode()):
        assert hashes_from_stored(stored.topic, stored.originator_id, stored.originator_version, state) is None
