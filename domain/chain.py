"""Hash-linked events: every aggregate's history is a SHA-256 chain.

Each event carries ``prev_hash`` (the hash of the aggregate's previous event, or
``GENESIS_HASH`` for the first) and ``hash``, the SHA-256 of a canonical encoding
of the event's *domain values*: ``{"event_type": ..., "fields": {...}}`` with every
field (aggregate id, version, timestamp, ``prev_hash`` and the payload), as
sorted-key compact JSON. Hashing
values rather than stored bytes keeps the chain valid if storage is later
compressed or encrypted.

``originator_topic`` (the aggregate's class path, on created events) is left out
on purpose: the event type name already names the aggregate class, and topics
change when code moves between modules.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from eventsourcing.domain import Aggregate

from domain.canonical import reference_encoding

GENESIS_HASH = "0" * 64
_EXCLUDED_FIELDS = frozenset({"hash", "originator_topic"})


# A faster encoder an outer layer may install (the domain imports no JSON library but
# the standard one). It returns the reference's exact bytes, or None for any value it
# cannot vouch for, which then goes the reference way.
_fast_encoding: Callable[[dict[str, Any]], bytes | None] | None = None

# Values that show where encoders tend to differ: escapes, text beyond the BMP, ints at
# and past 64 bits, nesting, every type events hold (UUIDs, timestamps in other
# offsets, dates). An encoder that differs on any of them is not installed.
_SELF_CHECK_DOCUMENTS: tuple[dict[str, Any], ...] = (
    {"event_type": "Transaction.Posted", "fields": {
        "originator_id": UUID(int=0x0123456789ABCDEF0123456789ABCDEF), "originator_version": 1,
        "timestamp": datetime(2026, 1, 2, 3, 4, 5, 600, tzinfo=timezone.utc),
        "effective_date": date(2026, 1, 2), "prev_hash": GENESIS_HASH, "reverses": None, "ok": True,
        "description": "caf\u00e9 \"quoted\" \\ \x00\x1f\x7f\u2028\U0001f600 \n\t",
        "postings": [{"account_id": "a", "amount_minor": -(2**63)}, {"amount_minor": 2**64 - 1}],
        "metadata": {"\u00e9": "1", "Z": "", "a": {"nested": [None, False, 0]}},
    }},
    {"event_type": "Account.Opened", "fields": {
        "timestamp": datetime(2026, 6, 30, 23, 59, 59, tzinfo=timezone(timedelta(hours=-5, minutes=-30))),
        "midnight": datetime(999, 1, 1, tzinfo=timezone.utc), "old": date(5, 1, 1), "tuple": ("x", 1),
        "keys": {"b": 1, "a": 2, "\U0001f600": 3, "\uff01": 4, "~": 5},
    }},
    # A fast encoder may decline these (beyond 64 bits); it must not write them otherwise.
    {"event_type": "Big", "fields": {"big": 2**64, "negative": -(2**70)}},
)


def install_fast_encoding(encoder: Callable[[dict[str, Any]], bytes | None] | None) -> None:
    """Use ``encoder`` for the canonical bytes from now on (``None``: the reference alone).

    A different byte would read as tampering, so the encoder must first give the
    reference's bytes for every self-check document (or decline with ``None``);
    otherwise ``ValueError`` and nothing changes.
    """
    global _fast_encoding  # noqa: PLW0603 - one encoder per process, chosen at start-up
    if encoder is not None:
        for document in _SELF_CHECK_DOCUMENTS:
            found = encoder(document)
            if found is not None and found != reference_encoding(document):
                raise ValueError(f"the fast canonical encoder differs from the reference on {document['event_type']}")
    _fast_encoding = encoder


def canonical_encoding(event_type: str, values: dict[str, Any]) -> bytes:
    """The exact bytes that are hashed: sorted-key compact JSON, UTF-8.

    The type name and the fields are separate members, so no field (an account
    has one called ``type``) can ever stand in for the event's type.
    """
    fields = {k: v for k, v in values.items() if k not in _EXCLUDED_FIELDS}
    document = {"event_type": event_type, "fields": fields}
    fast = _fast_encoding
    if fast is not None:
        encoded = fast(document)
        if encoded is not None:
            return encoded
    return reference_encoding(document)


def compute_event_hash(event: Any) -> str:
    """SHA-256 hex digest of an event's canonical encoding."""
    return hashlib.sha256(canonical_encoding(type(event).__qualname__, vars(event))).hexdigest()


class ChainedAggregate(Aggregate):
    """Base of every ledger aggregate: each event it triggers is hash-linked."""

    class Event(Aggregate.Event):
        prev_hash: str
        hash: str

        def mutate(self, aggregate: Any) -> Any:
            aggregate = super().mutate(aggregate)
            aggregate._chain_hash = self.hash
            return aggregate

    class Created(Event, Aggregate.Created):
        pass

    @classmethod
    def _create(cls, event_class: Any, *, id: UUID | None = None, **kwargs: Any) -> Any:  # noqa: A002
        assert id is not None, "ledger aggregates are created with an explicit id"
        aggregate = super()._create(event_class, id=id, prev_hash=GENESIS_HASH, hash="", **kwargs)
        aggregate._seal_last_event()
        return aggregate

    def trigger_event(self, event_class: Any, **kwargs: Any) -> None:
        super().trigger_event(event_class, prev_hash=self._chain_hash, hash="", **kwargs)
        self._seal_last_event()

    def _seal_last_event(self) -> None:
        # The event is frozen and not yet visible to anyone: its hash can only be
        # computed once every other field exists, so it is set here, exactly once.
        event = self.pending_events[-1]
        assert event.hash == ""
        object.__setattr__(event, "hash", compute_event_hash(event))
        self._chain_hash = event.hash

    @property
    def chain_hash(self) -> str:
        """Hash of the aggregate's latest event: the head of its chain."""
        return self._chain_hash


@dataclass(frozen=True)
class ChainBreak:
    """The first broken link of one aggregate's chain."""

    originator_id: UUID
    originator_version: int
    kind: str  # "changed" | "relinked" | "missing" | "reordered"
    expected_hash: str
    found_hash: str

    def describe(self) -> str:
        return (
            f"aggregate {self.originator_id} version {self.originator_version}: {self.kind} "
            f"(expected {self.expected_hash[:16]}…, found {self.found_hash[:16]}…)"
        )


def verify_chain(events: Iterable[Any]) -> ChainBreak | None:
    """Check one aggregate's events, in stored order; return the first broken link.

    A version gap is ``missing``, a version out of order is ``reordered``, a
    ``prev_hash`` that does not point at the previous event is ``relinked``, and an
    event whose recomputed hash differs from its stored hash is ``changed``.
    """
    expected_prev, expected_version = GENESIS_HASH, 1
    remaining = iter(events)
    for event in remaining:
        version = event.originator_version
        if version != expected_version:
            kind = "reordered" if _turns_up_later(expected_version, version, remaining) else "missing"
            return ChainBreak(event.originator_id, version, kind, expected_prev, event.prev_hash)
        recomputed = compute_event_hash(event)
        if recomputed != event.hash:
            return ChainBreak(event.originator_id, version, "changed", recomputed, event.hash)
        if event.prev_hash != expected_prev:
            return ChainBreak(event.originator_id, version, "relinked", expected_prev, event.prev_hash)
        expected_prev, expected_version = event.hash, version + 1
    return None


def _turns_up_later(expected_version: int, found_version: int, remaining: Iterator[Any]) -> bool:
    """Whether the version we expected appears out of place: earlier (already passed)
    or further on in the stream. Consumes the rest of the stream, one event at a time."""
    if found_version < expected_version:
        return True
    return any(event.originator_version == expected_version for event in remaining)


def global_link_hash(  # noqa: PLR0913
    prev_hash: str, sequence: int, position: int, originator_id: UUID, originator_version: int, event_hash: str
) -> str:
    """One link of the global chain, which orders every event of the ledger.

    It binds each event's own hash to its place in the notification log, so a
    deleted, inserted or reordered event breaks the global chain even where every
    per-aggregate chain still verifies.
    """
    text = f"{prev_hash}|{sequence}|{position}|{originator_id}|{originator_version}|{event_hash}"
    return hashlib.sha256(text.encode("ascii")).hexdigest()
