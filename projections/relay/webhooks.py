"""The webhook dispatcher: each tenant's own events, POSTed to its endpoints in log order (docs/events-out.md).

Every endpoint has its own durable position (``infrastructure/webhooks/store.py``).
A scheduling round (a few times a second) finds the endpoints behind the head
of the log whose next attempt is due, and hands each to a pool of at most
``INVARIO_WEBHOOK_CONCURRENCY_MAX`` threads (a few more wait their turn). Such a
task leases its endpoint, reads the log after the endpoint's position, and sends the endpoint, one by one
and in order, the events of its tenant (of the types it asked for), each as
the CloudEvent the relay publishes, signed (``infrastructure/webhooks/sender.py``).
After each acknowledged event it moves the position past it (and past the
events that were not for the endpoint); after at most ``INVARIO_WEBHOOK_BATCH_SIZE``
events, or once one attempt's timeout has passed in it, it gives its slot back.

**Order over progress.** A failed attempt leaves the position just before the
failing event and schedules the next attempt after a back-off (doubling from
``INVARIO_WEBHOOK_RETRY_MIN_SECONDS`` up to ``..._RETRY_MAX_SECONDS``, with jitter):
the endpoint never skips ahead past it, so a receiver sees its events in log
order. After ``INVARIO_WEBHOOK_ATTEMPTS_MAX`` failures in a row the endpoint is
dead-lettered: nothing more is sent until a replay, which revives it.

**Isolation.** A slow endpoint holds one thread at a time, for at most about
two attempts' timeouts before it queues again behind the others; a failing one
waits for its retries out of the pool; the other endpoints (other tenants) go on. An endpoint only ever receives events
whose tenant is its own; the access aggregates' events (API keys) are never
sent (``origins.NOT_RELAYED``).

Endpoints at the same position (most of them, once caught up) share one read of
the log per round.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta

from application.ledger import Ledger
from infrastructure.sinks.message import OutboundMessage
from infrastructure.telemetry import instruments, job_succeeded, webhook_dead_letters
from infrastructure.webhooks.secrets import SecretUnreadable
from infrastructure.webhooks.sender import WebhookSender
from infrastructure.webhooks.store import Claimed, WebhookEndpoint, WebhookStore, utc_now
from projections.following.follower import LogDiverged, event_identity, read_log_after
from projections.relay.messages import TYPE_PREFIX, build_message
from projections.relay.origins import store_origins

log = logging.getLogger(__name__)

WINDOWS_CACHED_MAX = 64
QUEUED_PER_SLOT = 4  # endpoints scheduled (running or waiting for a thread) per thread of the pool
DEAD_LETTER_REFRESH_SECONDS = 5.0
DELIVERED, FAILED, DEAD_LETTERED_OUTCOME = "delivered", "failed", "dead_lettered"
OUTCOMES = (DELIVERED, FAILED, DEAD_LETTERED_OUTCOME)


@dataclass(frozen=True)
class RetryPolicy:
    attempts_max: int
    min_seconds: float
    max_seconds: float

    def delay(self, failures: int, jitter: Callable[[], float] = random.random) -> float:
        """The pause after the ``failures``-th failure in a row: doubling, capped, then between half and all of it
        ("equal jitter": endpoints that failed together do not come back together)."""
        base = min(self.min_seconds * 2 ** min(failures - 1, 32), self.max_seconds)
        return base / 2 + jitter() * base / 2


@dataclass(frozen=True)
class LogEntry:
    position: int
    identity: str
    message: OutboundMessage | None  # None: an event that is never sent (an API key's)

    @property
    def event_type(self) -> str:
        assert self.message is not None
        return f"{TYPE_PREFIX}.{self.message.aggregate_type}.{self.message.event}"


class WebhookDispatcher:
    """Schedules endpoints onto a bounded pool; ``schedule`` is one round, ``close`` waits for the tasks."""

    def __init__(  # noqa: PLR0913
        self, ledger: Ledger, store: WebhookStore, sender: WebhookSender, ledger_name: str, *,
        batch_size: int, concurrency_max: int, retry: RetryPolicy,
    ) -> None:
        self.ledger = ledger
        self.store = store
        self.sender = sender
        self.ledger_name = ledger_name
        self.batch_size = batch_size
        self.concurrency_max = concurrency_max
        self.retry = retry
        self.lease_seconds = 2 * sender.timeout_seconds + 30.0
        self.origins = store_origins(ledger)
        self._pool = ThreadPoolExecutor(concurrency_max, thread_name_prefix="invario-webhook")
        self._in_flight: dict[str, Future[None]] = {}
        self._windows: OrderedDict[int, tuple[int, list[LogEntry]]] = OrderedDict()
        self._lock = threading.Lock()  # the windows and the origins, shared by the pool's threads
        self._round = 0
        self._stopping = threading.Event()
        self._dead_letters_at = 0.0

    def schedule(self) -> int:
        """Start a task for each due endpoint there is a free slot for; return how many started."""
        self._reap()
        self._refresh_dead_letters()
        free = self.concurrency_max * QUEUED_PER_SLOT - len(self._in_flight)
        if free <= 0 or self._stopping.is_set():
            return 0
        with self._lock:
            self._round += 1
        due = self.store.due(free, set(self._in_flight), self._head())
        for endpoint_id in due:
            self._in_flight[endpoint_id] = self._pool.submit(self._serve, endpoint_id)
        return len(due)

    def busy(self) -> bool:
        self._reap()
        return bool(self._in_flight)

    def close(self) -> None:
        """Let the tasks finish the attempt they are in (each bounded by the timeout), then stop."""
        self._stopping.set()
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.sender.close()

    # --- one endpoint's task ------------------------------------------------------------------

    def _serve(self, endpoint_id: str) -> None:
        try:
            claimed = self.store.claim(endpoint_id, self.lease_seconds)
        except SecretUnreadable as exc:
            log.error("webhook %s cannot be signed for: %s", endpoint_id, exc, extra={"event": "webhook_failed"})
            self.store.failed(endpoint_id, self._position_of(endpoint_id), str(exc), utc_now(), dead=True)
            return
        if claimed is None:
            return  # another dispatcher holds it, or it was deleted
        try:
            self._deliver(claimed)
        except Exception as exc:  # noqa: BLE001 - the database or the log failing: retried as a failed attempt
            reason = f"LogDiverged: {exc}" if isinstance(exc, LogDiverged) else f"{type(exc).__name__}: {exc}"
            log.warning("webhook %s: %s", endpoint_id, reason, extra={"event": "webhook_failed"})
            try:
                self._failed(claimed.endpoint, self._position_of(endpoint_id), reason)
            except Exception:  # noqa: BLE001 - the lease expires by itself
                log.debug("could not record webhook %s's failure", endpoint_id, exc_info=True)
        finally:
            self._release(endpoint_id)

    def _deliver(self, claimed: Claimed) -> None:
        """Send the endpoint its next events, in order, until one fails, the batch is done or it is caught up."""
        endpoint = claimed.endpoint
        stored = position = endpoint.position  # stored: what the row says; position: how far this task has looked
        event_hash = endpoint.event_hash
        sent = 0
        # A slot is given back after the batch, or once an attempt's timeout has passed in it: a slow
        # endpoint then waits behind the endpoints scheduled meanwhile instead of holding its thread.
        give_back_at = time.monotonic() + self.sender.timeout_seconds
        while sent < self.batch_size and not self._stopping.is_set() and time.monotonic() < give_back_at:
            window = self._window_after(position, event_hash)
            if not window:
                break
            for entry in window:
                if self._is_for(endpoint, entry):
                    if sent >= self.batch_size or self._stopping.is_set() or time.monotonic() >= give_back_at:
                        break
                    if not self._send(claimed, entry, stored, position, event_hash):
                        return
                    sent += 1
                    stored = entry.position
                position, event_hash = entry.position, entry.identity
        if position != stored and not self.store.advance(str(endpoint.id), stored, position, event_hash, 0,
                                                          self.lease_seconds):
            log.info("webhook %s was replayed meanwhile; its task stops", endpoint.id)

    def _send(self, claimed: Claimed, entry: LogEntry, stored: int, position: int,  # noqa: PLR0913
              event_hash: str | None) -> bool:
        """One event to the endpoint; True when acknowledged (and the position moved past it)."""
        endpoint = claimed.endpoint
        assert entry.message is not None
        result = self.sender.send(endpoint.url, claimed.secret, entry.message)
        if not result.delivered:
            if position != stored:  # the events before it that were not for the endpoint are done with
                if not self.store.advance(str(endpoint.id), stored, position, event_hash, 0, self.lease_seconds):
                    return False
            self._failed(endpoint, position, result.reason or "failed", entry.position)
            return False
        instruments().webhook_deliveries.add(1, {"outcome": DELIVERED})
        if not self.store.advance(str(endpoint.id), stored, entry.position, entry.identity, 1, self.lease_seconds):
            log.info("webhook %s was replayed meanwhile; its task stops", endpoint.id)
            return False
        return True

    def _failed(self, endpoint: WebhookEndpoint, position: int, reason: str, event_position: int | None = None) -> None:
        failures = endpoint.attempts + 1 if position == endpoint.position else 1
        dead = failures >= self.retry.attempts_max
        next_attempt_at = utc_now() + timedelta(seconds=self.retry.delay(failures))
        if not self.store.failed(str(endpoint.id), position, reason, next_attempt_at, dead=dead):
            return  # replayed meanwhile
        instruments().webhook_deliveries.add(1, {"outcome": DEAD_LETTERED_OUTCOME if dead else FAILED})
        event = f"event {event_position}" if event_position is not None else "the next event"
        if dead:
            log.error("webhook %s dead-lettered after %d failed attempts at %s: %s", endpoint.id, failures, event,
                      reason, extra={"event": "webhook_dead_lettered", "webhook_id": str(endpoint.id)})
        else:
            log.warning("webhook %s: attempt %d at %s failed: %s; next in %.1f s", endpoint.id, failures, event,
                        reason, (next_attempt_at - utc_now()).total_seconds(),
                        extra={"event": "webhook_failed", "webhook_id": str(endpoint.id)})

    @staticmethod
    def _is_for(endpoint: WebhookEndpoint, entry: LogEntry) -> bool:
        return (entry.message is not None and entry.message.tenant == str(endpoint.tenant_id)
                and endpoint.wants(entry.event_type))

    # --- the log, shared by the tasks -----------------------------------------------------

    def _window_after(self, position: int, event_hash: str | None) -> Sequence[LogEntry]:
        """The next events after ``position`` with their messages, read once per round for all endpoints there."""
        with self._lock:
            cached = self._windows.get(position)
            if cached is not None and cached[0] == self._round:
                return cached[1]
            entries = self._read(position, event_hash)
            self._windows[position] = (self._round, entries)
            self._windows.move_to_end(position)
            while len(self._windows) > WINDOWS_CACHED_MAX:
                self._windows.popitem(last=False)
            return entries

    def _read(self, position: int, event_hash: str | None) -> list[LogEntry]:
        if event_hash is None:  # just registered or replayed: the event at the position is not known
            notifications = list(self.ledger.recorder.select_notifications(start=position + 1, limit=self.batch_size))
        else:
            after = read_log_after(self.ledger, position, self.batch_size + 1)
            if after.identity != event_hash:
                raise LogDiverged(f"the event at position {position} is not the one delivered: the log was "
                                  "restored from an older backup or rewritten")
            notifications = after.notifications
        events = [(n.id, self.ledger.mapper.to_domain_event(n)) for n in notifications]
        self.origins.learn(event for _, event in events)
        entries = []
        for at, event in events:
            origin = self.origins.origin(event)
            message = build_message(at, event, origin, self.ledger_name) if origin is not None else None
            entries.append(LogEntry(at, event_identity(event), message))
        return entries

    def _head(self) -> int:
        return int(self.ledger.recorder.max_notification_id() or 0)

    # --- bookkeeping ------------------------------------------------------------------------

    def _position_of(self, endpoint_id: str) -> int:
        found = self.store.get(endpoint_id)
        return found.position if found is not None else -1

    def _release(self, endpoint_id: str) -> None:
        try:
            self.store.release(endpoint_id)
        except Exception:  # noqa: BLE001 - the lease expires by itself
            log.debug("could not release webhook %s", endpoint_id, exc_info=True)

    def _reap(self) -> None:
        for endpoint_id, future in list(self._in_flight.items()):
            if future.done():
                del self._in_flight[endpoint_id]
                if future.exception() is not None:
                    log.error("webhook task %s failed", endpoint_id, exc_info=future.exception())

    def _refresh_dead_letters(self) -> None:
        now = time.monotonic()
        if now - self._dead_letters_at >= DEAD_LETTER_REFRESH_SECONDS:
            webhook_dead_letters(self.store.count_dead_lettered())
            self._dead_letters_at = now
        job_succeeded("webhooks")
