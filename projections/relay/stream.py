"""The stream behind ``GET /v1/events/stream``: one follower of the event feed per API process, many clients.

``StreamHub`` runs a thread only while some client is connected. It waits for
the log to grow (on PostgreSQL the event store's NOTIFY, then a short chase
until the read models have applied it; on SQLite a poll every
``INVARIO_EVENTS_STREAM_POLL_SECONDS``), reads the new events of the tenants
that have clients, once, and hands them to the event loop, which puts each in
the bounded buffer of every client of its tenant with ``put_nowait``: the hub
never waits for a client. What does not fit in a client's buffer, it reads
from the feed itself once it has emptied the buffer (a burst larger than the
buffer, a big batch of transfers, is no fault of a client). A client that takes
nothing from its full buffer for ``STUCK_SECONDS`` is slow: the hub, which
looks every poll, marks it overflowed, and its stream ends with
``event: overflow`` naming the position to resume from.

A client that connects, or that missed a hand-over (its tenant had no client
when the hub read, or it was catching up), reads its own pages of the feed
(``Client.catching_up``) until it has reached the feed's position, then goes
live: it is contiguous with the hub when the next hand-over starts at or before
what it has read. Positions never repeat: a client skips what it already has.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

from infrastructure.log_notifications import LogWaiter
from projections.relay.feed import FeedMessage, TenantEvents

log = logging.getLogger(__name__)

HANDOVER_EVENTS_MAX = 500  # events the hub reads per query
# After a NOTIFY the read models need a moment to apply the new events: the hub
# looks every CHASE_PAUSE_SECONDS for at most CHASE_SECONDS.
CHASE_PAUSE_SECONDS = 0.02
CHASE_SECONDS = 2.0
RETRY_PAUSE_SECONDS = 1.0
HANDOVER_WAIT_SLICE_SECONDS = 0.1
# A client whose buffer overflowed and that takes nothing from it for this long is cut off.
STUCK_SECONDS = 1.0


class TooManyStreams(Exception):
    """The tenant has its most concurrent streams open in this process."""


@dataclass(eq=False)
class Client:
    """One stream's state, touched only on the event loop."""

    tenant_id: UUID
    queue: asyncio.Queue[FeedMessage]
    last_queued: int  # every event of the tenant up to here is sent or in ``queue``
    live: bool = False  # contiguous with the hub's hand-overs
    overflowed: bool = False
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    taken: int = 0  # events the stream took from ``queue``
    full_since: tuple[int, float] | None = None  # (taken, monotonic time) when its buffer last overflowed

    def take(self) -> FeedMessage:
        self.taken += 1
        return self.queue.get_nowait()

    def stuck(self, now: float) -> bool:
        """Its buffer overflowed, and it has taken nothing from it since, for ``STUCK_SECONDS``."""
        return (self.full_since is not None and self.taken == self.full_since[0] and not self.queue.empty()
                and now - self.full_since[1] >= STUCK_SECONDS)


@dataclass(frozen=True)
class _Handover:
    tenants: frozenset[UUID]
    after: int  # the hand-over covers (after, upto] for these tenants
    upto: int
    messages: list[FeedMessage]


class StreamHub:
    def __init__(  # noqa: PLR0913
        self, events: TenantEvents, waiter: Callable[[threading.Event], tuple[LogWaiter, bool]], *,
        poll_seconds: float, per_tenant_max: int, buffer_max: int,
    ) -> None:
        """``waiter(stop)``: a new ``LogWaiter`` and whether it wakes on commits (PostgreSQL's NOTIFY)."""
        self.events = events
        self._new_waiter = waiter
        self.poll_seconds = poll_seconds
        self.per_tenant_max = per_tenant_max
        self.buffer_max = buffer_max
        self._clients: dict[UUID, set[Client]] = {}  # on the loop
        self._tenants: frozenset[UUID] = frozenset()  # a copy the hub's thread reads
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None

    # --- on the event loop ------------------------------------------------------------------

    def connect(self, tenant_id: UUID, after: int) -> Client:
        clients = self._clients.setdefault(tenant_id, set())
        if len(clients) >= self.per_tenant_max:
            raise TooManyStreams
        client = Client(tenant_id, asyncio.Queue(self.buffer_max), after)
        clients.add(client)
        self._loop = asyncio.get_running_loop()
        self._publish_tenants()
        self._start()
        return client

    def disconnect(self, client: Client) -> None:
        clients = self._clients.get(client.tenant_id, set())
        clients.discard(client)
        if not clients:
            self._clients.pop(client.tenant_id, None)
        self._publish_tenants()

    def streams(self, tenant_id: UUID) -> int:
        return len(self._clients.get(tenant_id, ()))

    async def catch_up(self, client: Client, limit: int) -> list[FeedMessage]:
        """The client's next page of its own reads; it goes live once it has reached the feed's position."""
        page = await asyncio.to_thread(self.events.page, [client.tenant_id], client.last_queued, limit)
        if page.messages:
            client.last_queued = page.messages[-1].position
        if not page.more:
            client.last_queued = max(client.last_queued, page.position)
            client.full_since = None
            client.live = True  # no await since the read: the next hand-over tells whether it is contiguous
        return page.messages

    def _hand_over(self, handover: _Handover, done: threading.Event) -> None:
        try:
            for tenant_id in handover.tenants:
                for client in list(self._clients.get(tenant_id, ())):
                    self._offer(client, handover)
        finally:
            done.set()

    def _offer(self, client: Client, handover: _Handover) -> None:
        if client.overflowed:
            return
        if not client.live:
            return
        if client.last_queued < handover.after:
            client.live = False  # it missed events the hub read before it was live: it reads them itself
            client.wake.set()
            return
        for message in handover.messages:
            if message.tenant_id != client.tenant_id or message.position <= client.last_queued:
                continue
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                # Never wait for a client: it reads the rest from the feed itself once it has emptied its
                # buffer. If it takes nothing from it meanwhile, ``_cut_off_stuck`` cuts it off.
                client.live = False
                client.full_since = (client.taken, time.monotonic())
                client.wake.set()
                return
            client.last_queued = message.position
        client.last_queued = max(client.last_queued, handover.upto)
        client.wake.set()

    def _cut_off_stuck(self) -> None:
        now = time.monotonic()
        for clients in self._clients.values():
            for client in clients:
                if not client.overflowed and client.stuck(now):
                    client.overflowed = True  # slow: cut off, and told where to resume
                    client.wake.set()

    def _publish_tenants(self) -> None:
        with self._lock:
            self._tenants = frozenset(t for t, clients in self._clients.items() if clients)

    # --- the hub's thread -------------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._stop = threading.Event()
            self._thread = threading.Thread(target=self._run, args=(self._stop,), name="invario-event-stream",
                                            daemon=True)
        self._thread.start()

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None:
            thread.join(timeout=5)

    def _run(self, stop: threading.Event) -> None:
        waiter, notifies = self._new_waiter(stop)
        position: int | None = None
        try:
            while not stop.is_set() and self._wanted():
                try:
                    if position is None:
                        position = self.events.position()
                    woken = waiter.wait(self.poll_seconds)
                    position = self._follow(position, stop, chase=woken and notifies)
                    self._call_soon(self._cut_off_stuck)
                except Exception:  # noqa: BLE001 - a database outage: the clients wait, nothing is skipped
                    log.warning("the event stream could not read the feed; retrying", exc_info=True)
                    stop.wait(RETRY_PAUSE_SECONDS)
        finally:
            waiter.close()

    def _wanted(self) -> bool:
        with self._lock:
            if self._tenants:
                return True
            self._thread = None  # the next client starts a new thread
            return False

    def _follow(self, position: int, stop: threading.Event, *, chase: bool) -> int:
        """Hand over everything the feed has after ``position``; return where the hub now stands."""
        deadline = time.monotonic() + (CHASE_SECONDS if chase else 0.0)
        while not stop.is_set():
            head = self.events.position()
            if head > position:
                return self._read_up_to(position, head, stop)
            if time.monotonic() >= deadline:
                return position
            stop.wait(CHASE_PAUSE_SECONDS)
        return position

    def _read_up_to(self, position: int, head: int, stop: threading.Event) -> int:
        while position < head and not stop.is_set():
            with self._lock:
                tenants = self._tenants
            if not tenants:
                return head
            page = self.events.page(sorted(tenants), position, HANDOVER_EVENTS_MAX, upto=head)
            upto = page.messages[-1].position if page.more else head
            done = threading.Event()
            if not self._call_soon(self._hand_over, _Handover(tenants, position, upto, page.messages), done):
                return position
            # The next read waits for this hand-over (the loop only queues, never waits for a client), so
            # the hub never runs ahead of the clients' buffers by more than one hand-over.
            while not done.wait(HANDOVER_WAIT_SLICE_SECONDS):
                if stop.is_set():
                    return position
            position = upto
        return position

    def _call_soon(self, callback: Callable[..., None], *args: object) -> bool:
        loop = self._loop
        if loop is None or loop.is_closed():
            return False
        loop.call_soon_threadsafe(callback, *args)
        return True

