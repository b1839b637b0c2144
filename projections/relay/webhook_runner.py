"""Runs the webhook dispatcher until stopped: in a thread of ``invario worker``, or within ``invario relay``.

Every ``ROUND_SECONDS`` (sooner while endpoints are still behind) a round
schedules the due endpoints onto the dispatcher's pool. A round that fails (the
database down) is retried after a pause that doubles up to ``RETRY_MAX_SECONDS``;
deliveries in flight are not affected.
"""

from __future__ import annotations

import logging
import threading

from projections.relay.webhooks import WebhookDispatcher

log = logging.getLogger(__name__)

ROUND_SECONDS = 0.25
RETRY_MAX_SECONDS = 30.0


class WebhookLoop:
    def __init__(self, dispatcher: WebhookDispatcher, stop: threading.Event) -> None:
        self.dispatcher = dispatcher
        self.stop = stop
        self.failures = 0

    def run(self, *, until_idle: bool = False) -> None:
        """Dispatch until stopped; with ``until_idle``, until no endpoint is due and no delivery is in flight
        (endpoints waiting for a retry are left to the next run)."""
        while not self.stop.is_set():
            try:
                started = self.dispatcher.schedule()
            except Exception as exc:  # noqa: BLE001 - the dispatcher must outlive a database outage
                self.failures += 1
                pause = min(ROUND_SECONDS * 2 ** self.failures, RETRY_MAX_SECONDS)
                log.log(logging.ERROR if self.failures == 1 else logging.WARNING,
                        "webhook dispatcher failed (attempt %d); retrying in %.1f s: %s: %s", self.failures, pause,
                        type(exc).__name__, exc, extra={"event": "webhook_dispatcher_failed"})
                self.stop.wait(pause)
                continue
            if self.failures:
                log.info("webhook dispatcher works again after %d failed attempt(s)", self.failures)
                self.failures = 0
            if until_idle and not started and not self.dispatcher.busy():
                return
            self.stop.wait(ROUND_SECONDS)


class WebhookThread:
    """The dispatcher's rounds in a daemon thread; ``stop`` lets deliveries in flight finish their attempt."""

    def __init__(self, loop: WebhookLoop) -> None:
        self.loop = loop
        self._thread = threading.Thread(target=loop.run, name="invario-webhooks", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 15.0) -> None:
        self.loop.stop.set()
        self._thread.join(timeout_seconds)
        self.loop.dispatcher.close()
