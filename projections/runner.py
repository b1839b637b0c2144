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
from collections.abc import Sequence
from typing import Any

from infrastructure.bootstrap import Runtime, postgres_options
from infrastructure.log_notifications import LogWaiter, PostgresNotifyWaiter, SleepingWaiter
from infrastructure.telemetry import instruments, job_succeeded

log = logging.getLogger(__name__)

RETRY_PAUSE_MAX_SECONDS = 30.0
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
            instruments().job_failures.add(1, {"job": follower.name})
            failures = self._failures.get(follower.name, 0) + 1
            self._failures[follower.name] = failures
            pause = min(self.idle_seconds * 2 ** failures, RETRY_PAUSE_MAX_SECONDS)
            self._retry_at[follower.name] = time.monotonic() + pause
            log.exception("follower %s failed (attempt %d); retrying in %.1f s", follower.name, failures, pause)
            try:
                follower.record_error(f"{type(exc).__name__}: {exc}")
            except Exception:  # noqa: BLE001 - the database may be the thing that is down
                log.debug("could not record the error of follower %s", follower.name)
            return False
        self._failures.pop(follower.name, None)
        self._retry_at.pop(follower.name, None)
        # Idle polls are not runs worth a histogram sample, but they prove the job is alive.
        if applied:
            instruments().job_duration.record(time.perf_counter() - started, {"job": follower.name})
        job_succeeded(follower.name)
        return applied


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
