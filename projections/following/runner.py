"""Runs followers continuously: in a background thread (``invario serve``) or
in the foreground (``invario worker``).

A follower that fails is retried after a pause that doubles up to
``RETRY_PAUSE_MAX_SECONDS``, and its error is kept on its tracking row for
``invario projections status``; the other followers keep going.
"""

from __future__ import annotations

import logging
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from infrastructure.runtime import Runtime, postgres_options
from infrastructure.db_errors import classify_database_error
from infrastructure.log_notifications import LogWaiter, PostgresNotifyWaiter, SleepingWaiter
from infrastructure.telemetry import METER_NAME, instruments, job_succeeded
from projections.following.follower import ProjectionFailed

log = logging.getLogger(__name__)

RETRY_PAUSE_MAX_SECONDS = 30.0
# A database that was unreachable is retried often, so the read models resume
# within seconds of its return (docs/failure-modes.md); an event that cannot be
# applied is retried with the longer back-off, since only a release or an
# operator removes its cause.
DATABASE_RETRY_PAUSE_MAX_SECONDS = 2.0
FAILING_GAUGE = "invario_projection_failing"
# With LISTEN/NOTIFY the followers still look at the log this often, in case a
# notification was missed while the listening connection was being re-opened.
NOTIFY_FALLBACK_SECONDS = 5.0
# The longest a wait may last, so that a stop request is noticed promptly.
WAIT_SLICE_SECONDS = 1.0


class FollowerLoop:
    """Moves every follower forward until stopped; waits on ``waiter`` when all are caught up."""

    def __init__(
        self, followers: Sequence[Any], stop: threading.Event, waiter: LogWaiter, idle_seconds: float
    ) -> None:
        self.followers = list(followers)
        self.stop = stop
        self.waiter = waiter
        self.idle_seconds = idle_seconds
        self._failures: dict[str, int] = {}
        self._retry_at: dict[str, float] = {}
        _register_failing_gauge(self)

    def run(self, *, until_idle: bool = False) -> None:
        """Run until stopped (or, with ``until_idle``, until every follower is caught up)."""
        while not self.stop.is_set():
            busy = self.step()
            if busy:
                continue
            if until_idle:
                return
            self._idle()

    def _idle(self) -> None:
        """Wait for news of the log, at most ``idle_seconds``, noticing a stop request within a slice."""
        deadline = time.monotonic() + self.idle_seconds
        while not self.stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.waiter.wait(min(remaining, WAIT_SLICE_SECONDS)):
                return

    def retry_now(self) -> None:
        """Forget the followers' retry pauses (the database is back: no need to wait up to 30 s)."""
        self._retry_at.clear()

    @property
    def failing(self) -> list[str]:
        """Followers whose last attempt failed."""
        return sorted(self._failures)

    def step(self) -> bool:
        """One batch for each follower that is due; whether any applied events."""
        busy = False
        for follower in self.followers:
            if self.stop.is_set():
                break
            if time.monotonic() >= self._retry_at.get(follower.name, 0.0):
                busy |= self._step(follower)
        return busy

    def _step(self, follower: Any) -> bool:
        started = time.perf_counter()
        try:
            applied = follower.process_batch() > 0
        except Exception as exc:  # a follower must survive a bad moment of its database
            self._failed(follower, exc)
            return False
        if self._failures.pop(follower.name, None) is not None:
            _clear_error(follower)
        self._retry_at.pop(follower.name, None)
        # Idle polls are not runs worth a histogram sample, but they prove the job is alive.
        if applied:
            instruments().job_duration.record(time.perf_counter() - started, {"job": follower.name})
        job_succeeded(follower.name)
        return applied

    def _failed(self, follower: Any, exc: Exception) -> None:
        instruments().job_failures.add(1, {"job": follower.name})
        failures = self._failures.get(follower.name, 0) + 1
        self._failures[follower.name] = failures
        database_down = classify_database_error(exc) is not None
        pause_max = DATABASE_RETRY_PAUSE_MAX_SECONDS if database_down else RETRY_PAUSE_MAX_SECONDS
        pause = min(self.idle_seconds * 2 ** failures, pause_max)
        self._retry_at[follower.name] = time.monotonic() + pause
        if isinstance(exc, ProjectionFailed):
            # Said once per failure streak at error level, with the event named, for the alert's runbook.
            level = logging.ERROR if failures == 1 else logging.WARNING
            log.log(level, "%s; retrying in %.1f s", exc, pause, extra={
                "event": "projection_failed", "projection": exc.projection, "position": exc.position,
                "event_type": exc.event_type, "aggregate_id": exc.aggregate_id, "attempt": failures,
                "error": type(exc.cause).__name__,
            })
        else:
            log.exception("follower %s failed (attempt %d); retrying in %.1f s", follower.name, failures, pause)
        try:
            follower.record_error(f"{type(exc).__name__}: {exc}")
        except Exception:  # noqa: BLE001 - the database may be the thing that is down
            log.debug("could not record the error of follower %s", follower.name)

    def failing_projections(self) -> dict[str, bool]:
        """Every projection these followers move, and whether its follower's last attempt failed."""
        found: dict[str, bool] = {}
        for follower in self.followers:
            failing = follower.name in self._failures
            for name in getattr(follower, "projections", ()):  # jobs have their own job_* metrics
                found[name] = found.get(name, False) or failing
        return found


def _clear_error(follower: Any) -> None:
    """A follower that works again clears the error it recorded, even with nothing to apply."""
    clear = getattr(follower, "clear_error", None)
    if clear is None:
        return
    try:
        clear()
    except Exception:  # noqa: BLE001 - cleared by its next applied batch anyway
        log.debug("could not clear the error of follower %s", follower.name, exc_info=True)


# The loops of this process whose followers the failing gauge reports (tests run several).
_loops: weakref.WeakSet[FollowerLoop] = weakref.WeakSet()
_gauge_registered = False


def _observe_failing(_options: CallbackOptions) -> Iterable[Observation]:
    states: dict[str, bool] = {}
    for loop in list(_loops):
        for name, failing in loop.failing_projections().items():
            states[name] = states.get(name, False) or failing
    return [Observation(int(failing), {"projection": name}) for name, failing in sorted(states.items())]


def _register_failing_gauge(loop: FollowerLoop) -> None:
    """``invario_projection_failing{projection}``: 1 while the follower of a projection keeps failing.

    Read from this process's memory, never from the database, so a scrape
    answers at once even while the database does not.
    """
    global _gauge_registered  # noqa: PLW0603 - one instrument per process
    _loops.add(loop)
    if _gauge_registered:
        return
    metrics.get_meter(METER_NAME).create_observable_gauge(
        FAILING_GAUGE, callbacks=[_observe_failing], unit="1",
        description="1 while this process's follower of a projection fails to apply the log (see its last error)",
    )
    _gauge_registered = True


def waiter_for(runtime: Runtime, stop: threading.Event) -> tuple[LogWaiter, float]:
    """How this store tells followers the log grew, and how long they may idle."""
    channel = getattr(runtime.ledger.recorder, "channel_name", None)
    if runtime.database.is_postgres and channel:
        waiter = PostgresNotifyWaiter(runtime.database, channel, postgres_options(runtime.settings))
        return waiter, NOTIFY_FALLBACK_SECONDS
    return SleepingWaiter(stop), runtime.settings.follower_poll_seconds


class FollowerThread:
    """Polls the log and moves every follower forward until stopped (used by ``invario serve``)."""

    def __init__(self, followers: Sequence[Any], poll_seconds: float = 0.5, waiter: LogWaiter | None = None) -> None:
        self._stop = threading.Event()
        self.loop = FollowerLoop(followers, self._stop, waiter or SleepingWaiter(self._stop), poll_seconds)
        self._thread = threading.Thread(target=self.loop.run, name="invario-followers", daemon=True)

    @property
    def followers(self) -> list[Any]:
        return self.loop.followers

    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout_seconds: float = 10.0) -> None:
        self._stop.set()
        self._thread.join(timeout_seconds)
        self.loop.waiter.close()
