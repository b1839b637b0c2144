"""Runs the relay until stopped: in a thread of ``invario worker``, or in the foreground of ``invario relay``.

A failing attempt (the broker unreachable or not acknowledging, the database
down) publishes nothing more and leaves the position where it was; the next
attempt comes after a pause that doubles from ``RETRY_PAUSE_MIN_SECONDS`` up to
the configured maximum, so an outage costs neither events nor a busy loop. A
diverged log stops the relay's progress until an operator acts (it is
re-checked at the longest pause).
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from infrastructure.log_notifications import LogWaiter
from infrastructure.telemetry import instruments, job_succeeded
from projections.following.follower import LogDiverged
from projections.relay.relay import Relay

log = logging.getLogger(__name__)

RETRY_PAUSE_MIN_SECONDS = 0.1
WAIT_SLICE_SECONDS = 1.0


class RelayLoop:
    """Moves one relay forward until stopped; waits on ``waiter`` when caught up."""

    def __init__(  # noqa: PLR0913
        self, relay: Relay, stop: threading.Event, waiter: LogWaiter, idle_seconds: float, retry_max_seconds: float,
    ) -> None:
        self.relay = relay
        self.stop = stop
        self.waiter = waiter
        self.idle_seconds = idle_seconds
        self.retry_max_seconds = retry_max_seconds
        self.failures = 0

    def run(self, *, until_idle: bool = False, attempts_max: int | None = None) -> bool:
        """Relay until stopped, or with ``until_idle`` until caught up; False if it gave up after
        ``attempts_max`` failures in a row (only ``invario relay --once`` gives up)."""
        while not self.stop.is_set():
            try:
                published = self.relay.process_batch()
            except Exception as exc:  # noqa: BLE001 - the relay must outlive a broker's or a database's outage
                self._failed(exc)
                if attempts_max is not None and self.failures >= attempts_max:
                    return False
                self.stop.wait(self.pause())
                continue
            self._recovered()
            if published:
                continue
            if until_idle:
                return True
            self._idle()
        return True

    def pause(self) -> float:
        if self.failures == 0:
            return 0.0
        return min(RETRY_PAUSE_MIN_SECONDS * 2 ** (self.failures - 1), self.retry_max_seconds)

    def _failed(self, exc: Exception) -> None:
        self.failures += 1
        instruments().relay_failures.add(1, {"sink": self.relay.sink.name})
        if isinstance(exc, LogDiverged):
            self.failures = max(self.failures, 64)  # no point retrying fast: only an operator fixes it
            message = f"LogDiverged: {exc}"
        else:
            message = f"{type(exc).__name__}: {exc}"
        level = logging.ERROR if self.failures == 1 or isinstance(exc, LogDiverged) else logging.WARNING
        log.log(level, "relay %s failed (attempt %d), nothing lost; retrying in %.1f s: %s",
                self.relay.name, self.failures, self.pause(), message,
                extra={"event": "relay_failed", "sink": self.relay.sink.name, "attempt": self.failures})
        _try(self.relay.record_error, message)

    def _recovered(self) -> None:
        if self.failures:
            log.info("relay %s works again after %d failed attempt(s)", self.relay.name, self.failures)
            self.failures = 0
            _try(self.relay.record_error, None)
        job_succeeded(f"relay:{self.relay.sink.name}")

    def _idle(self) -> None:
        waited = 0.0
        while not self.stop.is_set() and waited < self.idle_seconds:
            step = min(self.idle_seconds - waited, WAIT_SLICE_SECONDS)
            if self.waiter.wait(step):
                return
            waited += step


class RelayThread:
    """The relay in a daemon thread (``invario worker``): the followers never wait on the broker."""

    def __init__(self, loop: RelayLoop) -> None:
        self.loop = loop
        self._thread = threading.Thread(target=loop.run, name=f"invario-relay-{loop.relay.sink.name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self.loop.stop.set()
        self._thread.join(timeout_seconds)
        self.loop.waiter.close()
        self.loop.relay.sink.close()


def _try(action: Any, *args: Any) -> None:
    try:
        action(*args)
    except Exception:  # noqa: BLE001 - the database may be the thing that is down
        log.debug("the relay could not record its state", exc_info=True)
