"""The tenant (and, for an account, the currency) of any event, for the relay's source and subject.

Only an aggregate's first event names its tenant (``Account.Opened``,
``Transaction.Posted``); later ones (``Account.PostingRecorded``,
``Transaction.Reversed``) do not. Origins are learnt from the first events the
relay sees and, for aggregates created before its batch, read once from the
store (the aggregate's version 1), then kept in a bounded cache.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any
from uuid import UUID

from projections.relay.messages import Origin

# The access aggregates' events are not relayed: an issued key's event holds the
# key's digest, a credential's verifier, which no message may carry.
NOT_RELAYED = frozenset({"ApiKey", "KeyRing"})
CACHE_SIZE_MAX = 100_000


class Origins:
    """``origin(event)``: where an event belongs, or ``None`` for events that are not relayed."""

    def __init__(self, first_event: Callable[[UUID], Any | None], size_max: int = CACHE_SIZE_MAX) -> None:
        self._first_event = first_event  # an aggregate's version 1, from the store
        self._known: OrderedDict[UUID, Origin] = OrderedDict()
        self._size_max = size_max

    def origin(self, event: Any) -> Origin | None:
        if aggregate_name(event) in NOT_RELAYED:
            return None
        found = self._known.get(event.originator_id)
        if found is not None:
            self._known.move_to_end(event.originator_id)
            return found
        first = event if event.originator_version == 1 else self._first_event(event.originator_id)
        if first is None:
            raise LookupError(f"the store holds no first event of aggregate {event.originator_id}")
        found = origin_of_first(first)
        self._remember(event.originator_id, found)
        return found

    def learn(self, events: Iterable[Any]) -> None:
        """Note the origins of the aggregates created in a batch (no store reads for their later events)."""
        for event in events:
            if event.originator_version == 1 and aggregate_name(event) not in NOT_RELAYED:
                self._remember(event.originator_id, origin_of_first(event))

    def _remember(self, aggregate_id: UUID, origin: Origin) -> None:
        self._known[aggregate_id] = origin
        if len(self._known) > self._size_max:
            self._known.popitem(last=False)


def store_origins(ledger: Any) -> Origins:
    """Origins that read an aggregate's first event from the ledger's store when they have not seen it."""
    return Origins(lambda aggregate_id: next(iter(ledger.events.get(aggregate_id, lte=1)), None))


def aggregate_name(event: Any) -> str:
    return type(event).__qualname__.rpartition(".")[0]


def origin_of_first(first: Any) -> Origin:
    """A tenant is its own tenant; every other aggregate's first event names its tenant."""
    if aggregate_name(first) == "Tenant":
        return Origin(first.originator_id)
    tenant_id = getattr(first, "tenant_id", None)
    if not isinstance(tenant_id, UUID):
        raise LookupError(f"the first event of aggregate {first.originator_id} names no tenant")
    currency = getattr(first, "currency", None) if aggregate_name(first) == "Account" else None
    return Origin(tenant_id, currency)
