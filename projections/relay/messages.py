"""A committed event as a CloudEvent 1.0 in JSON structured mode: what the relay publishes.

No I/O here. The attributes (docs/events-out.md):

- ``id``: the event's log position, the consumers' and brokers' de-duplication key;
- ``source``: ``/ledgers/<ledger>/tenants/<tenant id>``;
- ``type``: ``io.invario.<aggregate>.<event>`` in snake case, from the event's class
  (``Account.PostingRecorded`` -> ``io.invario.account.posting_recorded``);
- ``subject``: the aggregate's id; ``time``: the event's timestamp;
- extensions (CloudEvents allows only ``[a-z0-9]`` in their names): ``hash``,
  ``prevhash``, ``eventtype`` (the class name the hash covers), ``aggregateversion``,
  and ``currency`` on account events, whose amounts are in the account's currency.

``data`` is exactly the set of values the event's hash covers (``domain.chain``):
integers for money, strings for ids, dates and UTC timestamps, never a float. So a
consumer recomputes ``hash`` as SHA-256 of the canonical JSON of
``{"event_type": eventtype, "fields": data}`` and checks ``prevhash`` against the
previous event of the same subject.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from cloudevents.core.formats.json import JSONFormat
from cloudevents.core.v1.event import CloudEvent

from domain.chain import canonical_encoding
from infrastructure.sinks.message import OutboundMessage

TYPE_PREFIX = "io.invario"
_FORMAT = JSONFormat()
_WORD_START = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")


@dataclass(frozen=True)
class Origin:
    """What an event does not always say itself: its tenant, and the currency of an account's amounts."""

    tenant_id: UUID
    currency: str | None = None


def snake(name: str) -> str:
    """``PostingRecorded`` -> ``posting_recorded``; ``RecurringTransaction`` -> ``recurring_transaction``."""
    return _WORD_START.sub("_", name).lower()


def type_names(event: Any) -> tuple[str, str]:
    """The aggregate type and the event, in snake case, from the event's class (``Account.Opened``)."""
    aggregate, _, name = type(event).__qualname__.rpartition(".")
    return snake(aggregate), snake(name)


def event_type(event: Any) -> str:
    aggregate, name = type_names(event)
    return f"{TYPE_PREFIX}.{aggregate}.{name}"


def source(ledger_name: str, tenant_id: UUID) -> str:
    return f"/ledgers/{ledger_name}/tenants/{tenant_id}"


def event_data(event: Any) -> dict[str, Any]:
    """The event's fields as its hash covers them (``domain.chain.canonical_encoding``), as plain JSON values."""
    document = json.loads(canonical_encoding(type(event).__qualname__, vars(event)))
    fields: dict[str, Any] = document["fields"]
    return fields


def build_message(position: int, event: Any, origin: Origin, ledger_name: str) -> OutboundMessage:
    """The CloudEvent of the event at ``position``, ready for a sink."""
    attributes: dict[str, Any] = {
        "id": str(position),
        "source": source(ledger_name, origin.tenant_id),
        "type": event_type(event),
        "subject": str(event.originator_id),
        "time": event.timestamp,
        "datacontenttype": "application/json",
        "hash": event.hash,
        "prevhash": event.prev_hash,
        "eventtype": type(event).__qualname__,
        "aggregateversion": event.originator_version,
    }
    if origin.currency is not None:
        attributes["currency"] = origin.currency
    body = _FORMAT.write(CloudEvent(attributes, event_data(event)))
    aggregate, name = type_names(event)
    return OutboundMessage(str(position), str(origin.tenant_id), aggregate, name, body)
