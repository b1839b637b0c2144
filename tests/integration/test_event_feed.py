"""The event feed read model and its pages, on SQLite and PostgreSQL: exactly what the relay would publish, per tenant."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from interfaces.bootstrap import open_access
from projections.read_models.event_feed import EventFeed
from projections.relay.feed import TenantEvents
from projections.relay.messages import build_message
from projections.relay.origins import Origins
from tests.integration.conftest import OpenRuntime
from tests.integration.projections_support import catch_up_read_models, open_book, open_ready, post_random


def _relayed_by_tenant(ledger: Any) -> dict[UUID, list[tuple[int, bytes]]]:
    """What the relay publishes, read from the whole log and grouped by tenant."""
    origins = Origins(lambda aggregate_id: next(iter(ledger.events.get(aggregate_id, lte=1)), None))
    found: dict[UUID, list[tuple[int, bytes]]] = {}
    for notification in ledger.recorder.select_notifications(start=1, limit=10_000):
        event = ledger.mapper.to_domain_event(notification)
        origin = origins.origin(event)
        if origin is not None:
            body = build_message(notification.id, event, origin, "invario").body
            found.setdefault(origin.tenant_id, []).append((notification.id, body))
    return found


def _paged(events: TenantEvents, tenant_id: UUID, limit: int) -> list[tuple[int, bytes]]:
    out: list[tuple[int, bytes]] = []
    after = 0
    for _ in range(1000):
        page = events.page([tenant_id], after, limit)
        out += [(message.position, message.body) for message in page.messages]
        assert all(message.tenant_id == tenant_id for message in page.messages)
        if not page.more:
            return out
        after = page.messages[-1].position
    raise AssertionError("the pages did not end")


def test_each_tenants_pages_are_the_relays_messages_of_that_tenant(open_rt: OpenRuntime, database_url: str) -> None:
    runtime = open_ready(open_rt, database_url, auth_pepper="test-pepper-do-not-use-anywhere-0123456789")
    acme, globex = open_book(runtime.ledger, "acme"), open_book(runtime.ledger, "globex", "USD")
    post_random(acme, runtime.ledger, 20)
    open_access(runtime).issue_key(acme.tenant_id, ["read"])  # never in the feed: it carries the key's digest
    post_random(globex, runtime.ledger, 10, prefix="g")
    # One transaction per batch: later events find their aggregate's tenant in the read model, not in the batch.
    catch_up_read_models(runtime, batch_size=1)
    expected = _relayed_by_tenant(runtime.ledger)
    assert set(expected) == {acme.tenant_id, globex.tenant_id}
    events = TenantEvents(runtime.ledger, EventFeed(runtime.engine), "invario")
    for tenant_id, messages in expected.items():
        assert _paged(events, tenant_id, limit=7) == messages
    head = int(runtime.ledger.recorder.max_notification_id() or 0)
    relayed = {position for messages in expected.values() for position, _ in messages}
    assert len(relayed) < head  # the key's events are in the log, and in no feed
    assert events.position() == head


def test_a_page_bounded_above_stops_there(open_rt: OpenRuntime, database_url: str) -> None:
    runtime = open_ready(open_rt, database_url)
    acme = open_book(runtime.ledger)
    post_random(acme, runtime.ledger, 5)
    catch_up_read_models(runtime)
    events = TenantEvents(runtime.ledger, EventFeed(runtime.engine), "invario")
    page = events.page([acme.tenant_id], 2, 100, upto=6)
    assert [message.position for message in page.messages] == [3, 4, 5, 6] and not page.more
    assert events.page([UUID(int=0)], 0, 10).messages == []  # an unknown tenant has nothing
