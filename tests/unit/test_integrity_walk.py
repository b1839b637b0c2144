"""The chain walk of ``invario verify``: every kind of damage, located, on synthetic streams.

Events here are ``CheckedEvent``s with made-up hashes: what matters to the walk
is whether the recomputed hash equals the stored one and whether links point
at the right predecessor, not how the hashes were computed.
"""

from __future__ import annotations

from uuid import UUID, uuid5

import pytest

from domain.chain import GENESIS_HASH, global_link_hash
from domain.integrity import (
    AGGREGATE_CHAIN,
    CHANGED,
    CHECKPOINT,
    DIGEST,
    EXTRA,
    GLOBAL_CHAIN,
    MISSING,
    RELINKED,
    REORDERED,
    AggregateHeads,
    Anchor,
    ChainRow,
    ChainWalk,
    CheckedEvent,
    Damage,
)

NS = UUID("00000000-0000-0000-0000-000000000001")
A, B = uuid5(NS, "a"), uuid5(NS, "b")


def event_hash(aggregate: UUID, version: int) -> str:
    return f"{aggregate.hex[:8]}{version:056d}"


def event(aggregate: UUID, version: int, position: int, **changes: object) -> CheckedEvent:
    stored = event_hash(aggregate, version)
    prev = event_hash(aggregate, version - 1) if version > 1 else GENESIS_HASH
    base = CheckedEvent(position, aggregate, version, "Thing.Happened", stored, prev, stored)
    return base._replace(**changes)


class Store:
    """The event store as the walk may consult it: which (aggregate, version) exist, with which hash."""

    def __init__(self, events: list[CheckedEvent]) -> None:
        self.hashes = {(e.originator_id, e.originator_version): e.stored_hash for e in events}
        self.asked: list[tuple[UUID, int]] = []

    def stored_hash(self, aggregate_id: UUID, version: int) -> str | None:
        self.asked.append((aggregate_id, version))
        return self.hashes.get((aggregate_id, version))


def chain_rows(events: list[CheckedEvent]) -> dict[int, ChainRow]:
    rows, link = {}, GENESIS_HASH
    for sequence, e in enumerate(events, start=1):
        new = global_link_hash(link, sequence, e.position, e.originator_id, e.originator_version, e.chain_hash)
        rows[sequence] = ChainRow(sequence, e.position, str(e.originator_id), e.originator_version, e.chain_hash,
                                  link, new)
        link = new
    return rows


def walk(events: list[CheckedEvent], rows: dict[int, ChainRow] | None = None, store: Store | None = None,
         **kwargs: object) -> ChainWalk:
    chained = chain_rows(events) if rows is None else rows
    the_walk = ChainWalk.from_anchors(kwargs.pop("anchors", ()), **kwargs)  # type: ignore[arg-type]
    lookups = store or Store(events)
    for e in events:
        the_walk.visit(e, chained.get(the_walk.sequence + 1), lookups)
    the_walk.finish()
    return the_walk


HISTORY = [event(A, 1, 1), event(B, 1, 2), event(A, 2, 3), event(A, 3, 4), event(B, 2, 5)]


def only(the_walk: ChainWalk) -> Damage:
    assert the_walk.damages_total == 1, the_walk.damages
    return the_walk.damages[0]


def test_an_intact_history_has_no_damage_and_recomputes_the_global_head() -> None:
    the_walk = walk(HISTORY)
    assert the_walk.damages == [] and the_walk.events == 5 and the_walk.compared_rows == 5
    assert the_walk.link == chain_rows(HISTORY)[5].hash
    assert (the_walk.last_position, the_walk.sequence) == (5, 5)


def test_a_changed_event_is_named_once() -> None:
    history = [*HISTORY]
    history[2] = event(A, 2, 3, recomputed_hash="f" * 64)  # content no longer matches the stored hash
    rows = chain_rows(HISTORY)  # the chain recorded the original
    found = walk(history, rows)
    kinds = {(d.chain, d.kind, d.aggregate_id, d.aggregate_version, d.sequence) for d in found.damages}
    assert kinds == {(AGGREGATE_CHAIN, CHANGED, str(A), 2, 3), (GLOBAL_CHAIN, CHANGED, str(A), 2, 3)}
    first = found.first_damage
    assert first is not None and first.chain == AGGREGATE_CHAIN  # the more specific of the two
    assert (first.expected_hash, first.found_hash) == ("f" * 64, event_hash(A, 2))


def test_an_undecodable_event_is_changed() -> None:
    history = [*HISTORY]
    history[1] = event(B, 1, 2, recomputed_hash=None, event_type=None, raw_digest="e" * 64)
    damage = [d for d in walk(history, chain_rows(HISTORY)).damages if d.chain == AGGREGATE_CHAIN]
    assert [(d.kind, d.aggregate_id, d.aggregate_version) for d in damage] == [(CHANGED, str(B), 1)]
    assert "decoded" in damage[0].detail


def test_a_recomputed_hash_that_no_longer_links_is_relinked() -> None:
    history = [*HISTORY]
    history[3] = event(A, 3, 4, prev_hash="d" * 64)
    damage = only(walk(history))
    assert (damage.kind, damage.aggregate_version, damage.expected_hash, damage.found_hash) == (
        RELINKED, 3, event_hash(A, 2), "d" * 64)


def test_a_deleted_event_is_missing_in_both_chains() -> None:
    history = [e for e in HISTORY if e.position != 3]  # A v2 is gone
    found = walk(history, chain_rows(HISTORY), Store(history))
    first = found.first_damage
    assert first is not None
    assert (first.chain, first.kind, first.position, first.aggregate_id, first.aggregate_version) == (
        GLOBAL_CHAIN, MISSING, 3, str(A), 2)
    aggregate = [d for d in found.damages if d.chain == AGGREGATE_CHAIN]
    assert [(d.kind, d.aggregate_version, d.detail) for d in aggregate] == [(MISSING, 3, "version 2 is missing")]


def test_an_event_out_of_its_place_is_reordered() -> None:
    history = [HISTORY[0], HISTORY[1], HISTORY[3], HISTORY[2], HISTORY[4]]  # A v3 before A v2
    history = [e._replace(position=p) for p, e in enumerate(history, start=1)]
    found = walk(history, chain_rows(HISTORY))
    assert {(d.chain, d.kind) for d in found.damages} == {(AGGREGATE_CHAIN, REORDERED), (GLOBAL_CHAIN, REORDERED)}
    first = found.first_damage
    assert first is not None and (first.sequence, first.aggregate_version) == (3, 3)


def test_an_event_the_chain_never_recorded_is_extra() -> None:
    forged = event(uuid5(NS, "forged"), 1, 4)
    history = [*HISTORY[:3], forged, *[e._replace(position=e.position + 1) for e in HISTORY[3:]]]
    rows = chain_rows([*HISTORY[:3], *[e._replace(position=e.position + 1) for e in HISTORY[3:]]])
    found = walk(history, rows)
    first = found.first_damage
    assert first is not None
    assert (first.chain, first.kind, first.position) == (GLOBAL_CHAIN, EXTRA, 4)
    assert first.aggregate_id == str(forged.originator_id)
    assert all(d.chain == GLOBAL_CHAIN for d in found.damages)  # its own chain is well formed


def test_an_altered_link_of_the_stored_chain_is_changed() -> None:
    rows = chain_rows(HISTORY)
    rows[4] = rows[4]._replace(hash="c" * 64)
    damage = only(walk(HISTORY, rows))
    assert (damage.chain, damage.kind, damage.sequence, damage.found_hash) == (GLOBAL_CHAIN, CHANGED, 4, "c" * 64)


def test_chain_rows_beyond_the_log_are_a_dropped_tip() -> None:
    the_walk = walk(HISTORY[:3], chain_rows(HISTORY))
    the_walk.missing_rows(chain_rows(HISTORY)[4])
    damage = only(the_walk)
    assert (damage.chain, damage.kind, damage.sequence, damage.position) == (GLOBAL_CHAIN, MISSING, 4, 4)


def test_a_forgotten_aggregate_is_looked_up_in_the_store() -> None:
    store = Store(HISTORY)
    the_walk = walk(HISTORY, store=store, heads=AggregateHeads(capacity=1, created_capacity=1))
    assert the_walk.damages == []
    assert (A, 1) in store.asked  # A fell out of the heads when B came by


def test_anchors_match_or_name_the_change() -> None:
    rows = chain_rows(HISTORY)
    good = Anchor(DIGEST, 3, 3, rows[3].hash)
    bad = Anchor(CHECKPOINT, 4, 4, "b" * 64)
    the_walk = walk(HISTORY, anchors=[good, bad])
    damage = only(the_walk)
    assert (damage.chain, damage.kind, damage.sequence, damage.expected_hash, damage.found_hash) == (
        CHECKPOINT, CHANGED, 4, "b" * 64, rows[4].hash)
    assert [(r.anchor.chain, r.checked, r.damage is None) for r in the_walk.anchors] == [
        (DIGEST, True, True), (CHECKPOINT, True, False)]


def test_an_anchor_beyond_the_end_of_the_log_is_missing() -> None:
    damage = only(walk(HISTORY, anchors=[Anchor(DIGEST, 9, 9, "a" * 64)]))
    assert (damage.chain, damage.kind, damage.sequence) == (DIGEST, MISSING, 9)


def test_the_empty_ledgers_anchor_always_holds() -> None:
    assert walk([], anchors=[Anchor(DIGEST, 0, 0, GENESIS_HASH)]).damages == []


def test_a_consistent_rewrite_passes_the_chains_but_not_an_anchor() -> None:
    rows = chain_rows(HISTORY)
    anchor = Anchor(DIGEST, 5, 5, rows[5].hash)
    rewritten = [e._replace(stored_hash="9" * 64, recomputed_hash="9" * 64) if e.position == 5 else e
                 for e in HISTORY]
    assert walk(rewritten, chain_rows(rewritten)).damages == []
    damage = only(walk(rewritten, chain_rows(rewritten), anchors=[anchor]))
    assert (damage.chain, damage.kind) == (DIGEST, CHANGED)


@pytest.mark.parametrize("kept", [1, 3])
def test_damage_is_counted_in_full_but_kept_boundedly(kept: int) -> None:
    broken = [e._replace(recomputed_hash="0" * 63 + "1") for e in HISTORY]
    the_walk = walk(broken, rows={}, damages_kept=kept)
    assert (len(the_walk.damages), the_walk.damages_total) == (kept, 5)


def test_heads_are_bounded_and_one_event_aggregates_never_push_out_long_lived_ones() -> None:
    heads = AggregateHeads(capacity=2, created_capacity=3)
    account = uuid5(NS, "account")
    heads.put(account, 1, "opened")
    heads.put(account, 2, "posted")
    for n in range(50):  # many transactions, each created by one event
        heads.put(uuid5(NS, str(n)), 1, "h")
    assert len(heads) == 1 + 3
    assert heads.get(account) == (2, "posted")
    assert heads.get(uuid5(NS, "0")) is None and heads.get(uuid5(NS, "49")) == (1, "h")
    for n in range(3):
        heads.put(uuid5(NS, f"busy-{n}"), 2, "h")
    assert heads.get(account) is None  # the least recently used long-lived head went


def test_a_damage_document_round_trips() -> None:
    damage = only(walk([*HISTORY[:2], event(A, 2, 3, prev_hash="d" * 64)]))
    assert Damage.from_document(damage.to_document()) == damage
    assert "relinked" in damage.describe() and str(A) in damage.describe()
