"""A tenant's events as the relay publishes them, read on demand: ``GET /v1/events`` and its stream.

The read model ``event_feed`` gives the positions of a tenant's events after a
position (a range of its primary key); the events are read from the store by
those positions and built into the same CloudEvents the relay publishes
(``messages.build_message``): same id (the position), same hash and prevhash.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from uuid import UUID

from application.ledger import Ledger
from infrastructure.log_reads import notifications_at
from projections.read_models.event_feed import EventFeed, FeedEntry
from projections.relay.messages import build_message


@dataclass(frozen=True)
class FeedMessage:
    position: int
    tenant_id: UUID
    body: bytes  # the CloudEvent, JSON structured mode


@dataclass(frozen=True)
class FeedPage:
    messages: list[FeedMessage]  # in log order
    more: bool  # more of the tenant's events follow the last one
    position: int  # the log position the feed reflects


class TenantEvents:
    """Reads pages of tenants' events, built as CloudEvents."""

    def __init__(self, ledger: Ledger, feed: EventFeed, ledger_name: str) -> None:
        self.ledger = ledger
        self.feed = feed
        self.ledger_name = ledger_name

    def position(self) -> int:
        return self.feed.position()

    def page(self, tenant_ids: Sequence[UUID], after: int, limit: int, upto: int | None = None) -> FeedPage:
        """At most ``limit`` events of these tenants after ``after`` (up to ``upto``), in log order."""
        rows = self.feed.after(tenant_ids, after, limit + 1, upto)
        entries = rows.entries[:limit]
        return FeedPage(self._messages(entries), len(rows.entries) > limit, rows.position)

    def _messages(self, entries: Sequence[FeedEntry]) -> list[FeedMessage]:
        origins = {entry.position: entry.origin for entry in entries}
        messages = []
        for notification in notifications_at(self.ledger.recorder, list(origins)):
            origin = origins[notification.id]
            event = self.ledger.mapper.to_domain_event(notification)
            body = build_message(notification.id, event, origin, self.ledger_name).body
            messages.append(FeedMessage(notification.id, origin.tenant_id, body))
        if len(messages) != len(entries):
            raise LookupError("the event log no longer holds events the feed lists: rebuild the read models")
        return messages
