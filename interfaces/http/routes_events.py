"""/v1/events: the tenant's own events as CloudEvents, paged (``list_events``) or streamed (``stream_events``).

Both read the ``event_feed`` read model (a tenant's positions) and build the
messages the relay publishes (``projections.relay.feed``); the stream's clients
share one follower per process (``projections.relay.stream``). docs/events-out.md
is the client's guide.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Annotated
from urllib.parse import urlencode

import orjson
from fastapi import APIRouter, Header, Query, Request
from fastapi.responses import Response
from starlette.background import BackgroundTask
from sse_starlette import EventSourceResponse, ServerSentEvent

from interfaces.http.auth import Reader
from interfaces.http.docs import LIST_ERRORS, errors
from interfaces.http.problems import ApiProblem
from interfaces.http.responses import POSITION_HEADER
from interfaces.http.schemas import EventPage
from interfaces.http.services import runtime_of, services_of
from projections.read_models.event_feed import PAGE_SIZE_DEFAULT, PAGE_SIZE_MAX
from projections.relay.feed import FeedMessage
from projections.relay.stream import STUCK_SECONDS, Client, StreamHub, TooManyStreams

router = APIRouter(prefix="/v1/events", tags=["events"])
PATH = "/v1/events"
POSITION_MAX = 2**62
CATCH_UP_PAGE_EVENTS = 500  # what a stream client reads of the feed per query while catching up

After = Annotated[int | None, Query(
    ge=0, le=POSITION_MAX, description="Only events after this log position (a previous page's `next_after`, "
    "an event's `id`); 0: from the first",
)]
PageLimit = Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX, description=f"Page size (at most {PAGE_SIZE_MAX})")]
LastEventId = Annotated[str | None, Header(
    alias="Last-Event-ID", max_length=32,
    description="The `id` of the last event received: the stream resumes after it (takes precedence over `after`)",
)]

STREAM_RESPONSES = {
    200: {"description": "Server-Sent Events: each `data` a CloudEvent (the items of `list_events`), `id` its "
          "log position; ends with `event: overflow` when the client reads too slowly",
          "content": {"text/event-stream": {"schema": {"type": "string"}}}},
    **errors(400, 401, 403, 429, 503),
}


@router.get("", response_model=EventPage, responses=LIST_ERRORS, summary="The tenant's events after a position")
def list_events(request: Request, principal: Reader, after: After = None,
                limit: PageLimit = PAGE_SIZE_DEFAULT) -> Response:
    start = after or 0
    page = services_of(request).tenant_events.page([principal.tenant_id], start, limit)
    next_after = page.messages[-1].position if page.messages else start
    next_url = f"{PATH}?{urlencode({'after': next_after, 'limit': limit})}"
    body = orjson.dumps({
        "items": [orjson.Fragment(message.body) for message in page.messages],
        "next_after": next_after, "next": next_url, "more": page.more, "position": page.position,
    })
    headers = {POSITION_HEADER: str(page.position), "Link": f'<{next_url}>; rel="next"'}
    return Response(body, headers=headers, media_type="application/json")


@router.get("/stream", response_class=EventSourceResponse, responses=STREAM_RESPONSES,  # type: ignore[arg-type]
            summary="The tenant's events as Server-Sent Events, live")
async def stream_events(request: Request, principal: Reader, after: After = None,
                        last_event_id: LastEventId = None) -> Response:
    hub = services_of(request).event_stream
    start = _resume_position(last_event_id, after)
    if start is None:
        start = await asyncio.to_thread(hub.events.position)  # from now on
    try:
        client = hub.connect(principal.tenant_id, start)
    except TooManyStreams:
        raise ApiProblem(429, "too_many_streams", f"this tenant has {hub.per_tenant_max} event streams open in "
                         "this process, the most it may; close one or retry later",
                         headers={"Retry-After": "5"}) from None
    settings = runtime_of(request).settings

    async def release() -> None:  # also when the body never runs (HEAD); the generator's own finally may not
        hub.disconnect(client)

    return EventSourceResponse(
        _events(hub, client, start), ping=settings.events_stream_heartbeat_seconds, background=BackgroundTask(release),
        send_timeout=settings.events_stream_send_timeout_seconds,
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},  # nginx: pass each event on at once
    )


def _resume_position(last_event_id: str | None, after: int | None) -> int | None:
    if last_event_id is None or not last_event_id.strip():
        return after
    text = last_event_id.strip()
    if not text.isascii() or not text.isdigit() or int(text) > POSITION_MAX:
        raise ApiProblem(400, "invalid_last_event_id",
                         "Last-Event-ID must be the id of an event this stream sent: a log position")
    return int(text)


async def _events(hub: StreamHub, client: Client, start: int) -> AsyncIterator[ServerSentEvent]:
    """The client's events in log order; ``event: overflow`` (and the end) once it reads too slowly:
    its buffer filled and it took nothing for ``STUCK_SECONDS`` (the hub decides), or one event waited
    that long for its socket (a client reading its backlog from the feed has no buffer to fill)."""
    sent = start
    try:
        while True:
            if client.overflowed:
                yield _overflow(sent, hub.buffer_max)
                return
            if not client.queue.empty():
                messages = [client.take()]
            elif not client.live:
                messages = await hub.catch_up(client, CATCH_UP_PAGE_EVENTS)
            else:
                client.wake.clear()
                await client.wake.wait()
                continue
            for message in messages:
                began = time.monotonic()
                yield _event(message)  # returns once the server could hand it to the socket
                sent = message.position
                if time.monotonic() - began >= STUCK_SECONDS:
                    client.overflowed = True  # its socket took nothing for that long: slow, cut off
                    break
    finally:
        hub.disconnect(client)


def _event(message: FeedMessage) -> ServerSentEvent:
    return ServerSentEvent(data=message.body.decode(), id=str(message.position))


def _overflow(sent: int, buffer_max: int) -> ServerSentEvent:
    detail = (f"this client fell more than {buffer_max} events behind and is disconnected; reconnect with "
              f"Last-Event-ID: {sent} (or ?after={sent}) to resume")
    return ServerSentEvent(event="overflow", data=json.dumps({"resume_after": sent, "detail": detail}))
