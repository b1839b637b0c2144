"""Verification of the two hash chains, as a pure state machine over a stream of events.

The caller (``projections.jobs.verification``) reads the notification log in pages,
decodes each stored event and recomputes its hash (``domain.chain``), and feeds
the results, in log order, to a ``ChainWalk`` together with the rows the global
chain table holds for the same sequences. The walk

- checks every aggregate's chain: versions in order, each event's stored hash
  equal to the hash of its content, each ``prev_hash`` equal to the hash of the
  aggregate's previous event;
- recomputes the global chain from the events' *recomputed* hashes (never from
  the hash fields stored with them, so a consistent rewrite of every stored hash
  still changes the global head) and compares it with the stored rows;
- compares the recomputed global chain with anchors: signed digests and the
  incremental verifier's checkpoint.

Memory stays bounded: only the heads of recently seen aggregates are kept (an
LRU); an aggregate that fell out of it is looked up in the store. Everything
here is deterministic and free of I/O, so it is unit-tested on its own.

Damage kinds: ``changed`` (content no longer matches its hash, or a stored link
differs), ``missing`` (an event or chain row is gone), ``extra`` (an event the
chain never recorded), ``reordered`` (an event is out of its place) and
``relinked`` (an event's own hash is intact but it no longer points at its
predecessor: someone recomputed the hash of a changed event).
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Protocol
from uuid import UUID

from domain.chain import GENESIS_HASH, global_link_hash

CHANGED = "changed"
MISSING = "missing"
EXTRA = "extra"
REORDERED = "reordered"
RELINKED = "relinked"
DAMAGE_KINDS = (CHANGED, MISSING, EXTRA, REORDERED, RELINKED)

AGGREGATE_CHAIN = "aggregate"
GLOBAL_CHAIN = "global"
CHECKPOINT = "checkpoint"
DIGEST = "digest"
MERKLE_TREE = "merkle_tree"  # the stored Merkle tree or a signed checkpoint of it (docs/proofs.md)

HEADS_CAPACITY_DEFAULT = 100_000
CREATED_CAPACITY_DEFAULT = 10_000
DAMAGES_KEPT_DEFAULT = 100


@dataclass(frozen=True)
class Damage:
    """One broken link, located.

    ``sequence`` is the event's place in the global chain (1-based, log order),
    ``position`` its notification id. For an event or a link, ``expected_hash``
    is the value recomputed from the events and ``found_hash`` the value stored;
    for an anchor (digest, checkpoint) ``expected_hash`` is the anchored value
    and ``found_hash`` the value the ledger yields now.
    """

    kind: str
    chain: str
    sequence: int | None
    position: int | None
    aggregate_id: str | None
    aggregate_version: int | None
    event_type: str | None
    expected_hash: str
    found_hash: str
    detail: str

    @property
    def sort_key(self) -> tuple[int, int, int]:
        # Log order first; at one place the aggregate's own damage names the event best.
        chain_rank = 0 if self.chain == AGGREGATE_CHAIN else 1
        return (self.position or 0, self.sequence or 0, chain_rank)

    @property
    def location(self) -> tuple[Any, ...]:
        """What identifies one detection: the same damage found twice is one detection."""
        return (self.kind, self.chain, self.sequence, self.position, self.aggregate_id, self.aggregate_version)

    def describe(self) -> str:
        where = f"sequence {self.sequence}" if self.sequence is not None else "the ledger"
        if self.position is not None:
            where += f" (log position {self.position})"
        if self.aggregate_id is not None:
            where += f", aggregate {self.aggregate_id} version {self.aggregate_version}"
        if self.event_type:
            where += f" ({self.event_type})"
        hashes = f"expected {_short(self.expected_hash)}, found {_short(self.found_hash)}"
        return f"{self.chain} chain {self.kind} at {where}: {self.detail} ({hashes})"

    def to_document(self) -> dict[str, Any]:
        return {
            "kind": self.kind, "chain": self.chain, "sequence": self.sequence, "position": self.position,
            "aggregate_id": self.aggregate_id, "aggregate_version": self.aggregate_version,
            "event_type": self.event_type, "expected_hash": self.expected_hash, "found_hash": self.found_hash,
            "detail": self.detail,
        }

    @classmethod
    def from_document(cls, document: dict[str, Any]) -> Damage:
        return cls(**{name: document.get(name) for name in cls.__dataclass_fields__})  # type: ignore[arg-type]


def _short(value: str | None) -> str:
    return f"{value[:16]}…" if value else "nothing"


class CheckedEvent(NamedTuple):
    """What verification needs of one stored event, after decoding it and recomputing its hash.

    ``recomputed_hash`` is ``None`` when the stored event cannot even be decoded.
    A named tuple, not a dataclass: one is made per event verified, and tuples are cheap.
    """

    position: int
    originator_id: UUID
    originator_version: int
    event_type: str | None
    stored_hash: str
    prev_hash: str
    recomputed_hash: str | None
    raw_digest: str = ""  # SHA-256 of the stored bytes: stands in for an undecodable event's hash

    @property
    def chain_hash(self) -> str:
        """The event hash the global chain is recomputed from: never the stored field."""
        return self.recomputed_hash if self.recomputed_hash is not None else self.raw_digest


class ChainRow(NamedTuple):
    """One stored row of the global chain table."""

    sequence: int
    position: int
    originator_id: str
    originator_version: int
    event_hash: str
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class Anchor:
    """A head of the global chain recorded earlier: a signed digest or the verifier's checkpoint."""

    chain: str  # DIGEST | CHECKPOINT
    sequence: int
    position: int
    hash: str


class StoreLookups(Protocol):
    def stored_hash(self, aggregate_id: UUID, version: int) -> str | None:
        """The hash stored with one version of an aggregate ('' if undecodable), ``None`` if absent."""


class AggregateHeads:
    """The head (version, stored hash) of recently seen aggregates' chains, in bounded memory.

    Two LRUs: most aggregates of a ledger are transactions, created by one event
    and rarely touched again, so heads at version 1 get a small LRU of their own
    and cannot push out the heads of long-lived aggregates (accounts). A head
    that fell out of both is looked up in the store when it is needed.
    """

    def __init__(
        self, capacity: int = HEADS_CAPACITY_DEFAULT, created_capacity: int = CREATED_CAPACITY_DEFAULT
    ) -> None:
        assert capacity > 0 and created_capacity > 0
        self.capacity, self.created_capacity = capacity, created_capacity
        self._heads: OrderedDict[UUID, tuple[int, str]] = OrderedDict()
        self._created: OrderedDict[UUID, str] = OrderedDict()

    def get(self, aggregate_id: UUID) -> tuple[int, str] | None:
        head = self._heads.get(aggregate_id)
        if head is not None:
            self._heads.move_to_end(aggregate_id)
            return head
        created = self._created.get(aggregate_id)
        return (1, created) if created is not None else None

    def put(self, aggregate_id: UUID, version: int, stored_hash: str) -> None:
        if version == 1:
            _remember(self._created, aggregate_id, stored_hash, self.created_capacity)
            return
        self._created.pop(aggregate_id, None)
        _remember(self._heads, aggregate_id, (version, stored_hash), self.capacity)

    def clear(self) -> None:
        self._heads.clear()
        self._created.clear()

    def __len__(self) -> int:
        return len(self._heads) + len(self._created)


def _remember(lru: OrderedDict[UUID, Any], key: UUID, value: Any, capacity: int) -> None:
    lru[key] = value
    lru.move_to_end(key)
    if len(lru) > capacity:
        lru.popitem(last=False)


@dataclass
class AnchorResult:
    anchor: Anchor
    checked: bool = False
    damage: Damage | None = None


@dataclass
class ChainWalk:
    """Walks the log in order, one event at a time, and collects the damage it finds.

    Start it at the genesis (a full verification) or at a verified checkpoint
    (``sequence``, ``link``). Only the first ``damages_kept`` damages are kept;
    ``damages_total`` counts them all. After the first global break the stored
    rows no longer line up with the log, so the global comparison stops there
    (the recomputed chain, needed by anchors, goes on).
    """

    sequence: int = 0
    link: str = GENESIS_HASH
    heads: AggregateHeads = field(default_factory=AggregateHeads)
    anchors: list[AnchorResult] = field(default_factory=list)
    damages_kept: int = DAMAGES_KEPT_DEFAULT
    damages: list[Damage] = field(default_factory=list)
    damages_total: int = 0
    events: int = 0
    compared_rows: int = 0
    global_broken: bool = False
    last_position: int = 0
    last_event_hash: str | None = None

    @classmethod
    def from_anchors(cls, anchors: Iterable[Anchor], **kwargs: Any) -> ChainWalk:
        # An anchor of the empty ledger (sequence 0) holds for every ledger that starts at the genesis.
        kept = [AnchorResult(a, checked=a.sequence == 0 and a.hash == GENESIS_HASH) for a in anchors]
        return cls(anchors=sorted(kept, key=lambda result: result.anchor.sequence), **kwargs)

    def visit(self, event: CheckedEvent, row: ChainRow | None, lookups: StoreLookups) -> None:
        """Check one event (the next in log order) and the stored chain row of its sequence, if any."""
        self.sequence += 1
        self.events += 1
        previous_link = self.link
        self.link = global_link_hash(
            previous_link, self.sequence, event.position, event.originator_id, event.originator_version,
            event.chain_hash,
        )
        self._record(check_aggregate_link(event, self.sequence, self.heads, lookups))
        if row is not None and not self.global_broken:
            self.compared_rows += 1
            found = compare_global_row(event, self.sequence, previous_link, self.link, row, lookups)
            if found is not None:
                self.global_broken = True
                self._record(found)
        self._check_anchors(event)
        self.last_position, self.last_event_hash = event.position, event.chain_hash

    def missing_rows(self, row: ChainRow) -> None:
        """The stored chain goes on after the last event: the log lost its tip."""
        if self.global_broken:
            return
        self.global_broken = True
        self._record(Damage(
            MISSING, GLOBAL_CHAIN, row.sequence, row.position, row.originator_id, row.originator_version, None,
            row.event_hash, "", "the global chain records an event the log no longer holds (the tip was dropped?)",
        ))

    def finish(self) -> None:
        """Anchors beyond the last event: the log is shorter than it was when they were taken."""
        for result in self.anchors:
            if not result.checked:
                result.checked = True
                result.damage = Damage(
                    MISSING, result.anchor.chain, result.anchor.sequence, result.anchor.position, None, None, None,
                    result.anchor.hash, "",
                    f"the log ends at sequence {self.sequence}, before this {result.anchor.chain} "
                    f"(sequence {result.anchor.sequence})",
                )
                self._record(result.damage)

    @property
    def first_damage(self) -> Damage | None:
        return min(self.damages, key=lambda d: d.sort_key) if self.damages else None

    def _check_anchors(self, event: CheckedEvent) -> None:
        for result in self.anchors:
            if result.checked or result.anchor.sequence != self.sequence:
                continue
            result.checked = True
            anchor = result.anchor
            if anchor.position == event.position and anchor.hash == self.link:
                continue
            detail = (
                f"the ledger up to this {anchor.chain} was changed: recomputing the global chain from the events "
                f"gives another head (position {event.position}, anchored {anchor.position})"
            )
            result.damage = Damage(
                CHANGED, anchor.chain, anchor.sequence, anchor.position, str(event.originator_id),
                event.originator_version, event.event_type, anchor.hash, self.link, detail,
            )
            self._record(result.damage)

    def record(self, damage: Damage | None) -> None:
        """Count damage found beside the chains (the Merkle tree's)."""
        self._record(damage)

    def _record(self, damage: Damage | None) -> None:
        if damage is None:
            return
        self.damages_total += 1
        if len(self.damages) < self.damages_kept:
            self.damages.append(damage)


def check_aggregate_link(
    event: CheckedEvent, sequence: int, heads: AggregateHeads, lookups: StoreLookups
) -> Damage | None:
    """Check one event against its aggregate's chain so far; remember it as the new head."""
    aggregate, version = event.originator_id, event.originator_version
    head = heads.get(aggregate)
    expected_prev, damage = _expected_predecessor(event, sequence, head, lookups)
    if head is None or version > head[0]:
        heads.put(aggregate, version, event.stored_hash)
    if damage is not None:
        return damage
    if event.recomputed_hash is None:
        return _aggregate_damage(event, sequence, CHANGED, "", event.stored_hash,
                                 "the stored event cannot be decoded any more")
    if event.recomputed_hash != event.stored_hash:
        return _aggregate_damage(event, sequence, CHANGED, event.recomputed_hash, event.stored_hash,
                                 "the event's content no longer matches the hash stored with it")
    if expected_prev is not None and event.prev_hash != expected_prev:
        return _aggregate_damage(event, sequence, RELINKED, expected_prev, event.prev_hash,
                                 "the event no longer points at its predecessor (its hash was recomputed)")
    return None


def _expected_predecessor(
    event: CheckedEvent, sequence: int, head: tuple[int, str] | None, lookups: StoreLookups
) -> tuple[str | None, Damage | None]:
    """The hash this event must point at (``None``: unknown), or the damage to its version sequence."""
    aggregate, version = event.originator_id, event.originator_version
    if head is not None and version == head[0] + 1:
        return head[1], None
    if head is not None and version <= head[0]:
        return None, _aggregate_damage(event, sequence, REORDERED, head[1], event.prev_hash,
                                       f"version {version} comes after version {head[0]} in the log")
    if head is not None:  # a gap after a version this walk has seen: is the next one elsewhere, or gone?
        wanted = head[0] + 1
        later = lookups.stored_hash(aggregate, wanted) is not None
        kind, where = (REORDERED, "comes later in the log") if later else (MISSING, "is missing")
        return None, _aggregate_damage(event, sequence, kind, head[1], event.prev_hash, f"version {wanted} {where}")
    if version == 1:
        return GENESIS_HASH, None
    # Not seen (it fell out of the bounded heads, or the walk started after it): ask the store.
    stored = lookups.stored_hash(aggregate, version - 1)
    if stored is None:
        return None, _aggregate_damage(event, sequence, MISSING, "", event.prev_hash,
                                       f"version {version - 1} is missing")
    return (stored or None), None


def _aggregate_damage(event: CheckedEvent, sequence: int, kind: str, expected: str, found: str,
                      detail: str) -> Damage:
    return Damage(kind, AGGREGATE_CHAIN, sequence, event.position, str(event.originator_id),
                  event.originator_version, event.event_type, expected, found, detail)


def compare_global_row(  # noqa: PLR0913
    event: CheckedEvent, sequence: int, previous_link: str, link: str, row: ChainRow, lookups: StoreLookups
) -> Damage | None:
    """Compare the stored global chain row of ``sequence`` with the event the log holds there."""
    if row.position < event.position:
        return Damage(MISSING, GLOBAL_CHAIN, sequence, row.position, row.originator_id, row.originator_version,
                      None, row.event_hash, event.chain_hash,
                      "the global chain records an event here that the log no longer holds")
    here = (str(event.originator_id), event.originator_version)
    if row.position > event.position:
        return Damage(EXTRA, GLOBAL_CHAIN, sequence, event.position, here[0], here[1], event.event_type,
                      row.event_hash, event.chain_hash, "the log holds an event the global chain never recorded")
    if (row.originator_id, row.originator_version) != here:
        moved = lookups.stored_hash(UUID(row.originator_id), row.originator_version) is not None
        detail = (f"the chain has aggregate {row.originator_id} version {row.originator_version} here"
                  + (", which the log holds elsewhere" if moved else ", which the log no longer holds"))
        return Damage(REORDERED if moved else CHANGED, GLOBAL_CHAIN, sequence, event.position, here[0], here[1],
                      event.event_type, row.event_hash, event.chain_hash, detail)
    if row.event_hash != event.chain_hash:
        return Damage(CHANGED, GLOBAL_CHAIN, sequence, event.position, here[0], here[1], event.event_type,
                      event.chain_hash, row.event_hash, "the event differs from the one the global chain recorded")
    if row.prev_hash != previous_link or row.hash != link:
        return Damage(CHANGED, GLOBAL_CHAIN, sequence, event.position, here[0], here[1], event.event_type,
                      link, row.hash, "the stored link of the global chain was altered")
    return None


def raw_digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
