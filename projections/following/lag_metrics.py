"""Gauges read from the database, so that every process that serves metrics reports the same truth,
whichever process runs the followers:

- ``invario_projection_lag_events{projection}``: log positions each projection has
  yet to apply (the head of the log and the tracking rows). The label values are
  the projection names: a fixed set (``projections.following.registry.ALL_PROJECTIONS``).
- ``invario_checkpoint_age_seconds`` and ``invario_checkpoint_uncovered_events``
  (with ``INVARIO_SIGNING_KEY`` only): how long ago the newest signed checkpoint was
  signed, and how many events of the log it does not cover yet (no proof can be
  given for them). Both growing means checkpoints stopped (docs/proofs.md).

A scrape never waits on the database: a background thread (``LagRefresher``)
reads the lags every ``REFRESH_SECONDS`` and whenever a scrape asks. The scrape
waits at most ``SCRAPE_WAIT_SECONDS`` for that fresh reading (a healthy database
answers in milliseconds, so the gauge is current), then reports the latest
reading it has, if it is at most ``READING_AGE_MAX_SECONDS`` old, and nothing
otherwise: while the database is down or silent, ``/metrics`` answers at once
without the gauge.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from infrastructure.runtime import Runtime
from infrastructure.telemetry import METER_NAME
from projections.following.follower import read_tracking
from projections.following.registry import ALL_PROJECTIONS
from projections.jobs.checkpoints import latest_checkpoint

log = logging.getLogger("invario.telemetry")

LAG_GAUGE = "invario_projection_lag_events"
CHECKPOINT_AGE_GAUGE = "invario_checkpoint_age_seconds"
CHECKPOINT_UNCOVERED_GAUGE = "invario_checkpoint_uncovered_events"
REFRESH_SECONDS = 5.0
SCRAPE_WAIT_SECONDS = 0.25
READING_AGE_MAX_SECONDS = 60.0

# The refresher of the runtime whose database the gauge reads: one per process in production
# (the last one registered wins, which is what tests that open several need).
_source: dict[str, LagRefresher] = {}
_registered = False


@dataclass(frozen=True)
class CheckpointCoverage:
    age_seconds: float | None  # None: no checkpoint signed yet
    uncovered_events: int


@dataclass(frozen=True)
class Reading:
    lags: dict[str, int]
    checkpoint: CheckpointCoverage | None  # None: this ledger signs no checkpoints (no INVARIO_SIGNING_KEY)


def read_gauges(runtime: Runtime) -> Reading:
    """One reading of every gauge: three small queries."""
    head = runtime.ledger.recorder.max_notification_id() or 0
    with runtime.engine.connect() as connection:
        states = read_tracking(connection, ALL_PROJECTIONS)
        signing = runtime.settings.signing_key is not None
        checkpoint = latest_checkpoint(connection) if signing else None
    lags = {name: max(head - states[name].position, 0) for name in ALL_PROJECTIONS}
    if not signing:
        return Reading(lags, None)
    if checkpoint is None:
        return Reading(lags, CheckpointCoverage(None, head))
    age = (datetime.now(timezone.utc) - checkpoint.signed_at).total_seconds()
    return Reading(lags, CheckpointCoverage(max(age, 0.0), max(head - checkpoint.position, 0)))


class LagRefresher:
    """Reads the lags in a thread of its own; ``latest`` never blocks for longer than it is told."""

    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._asked = threading.Event()
        self._stopped = threading.Event()
        self._changed = threading.Condition()
        self._reading: Reading | None = None
        self._read_at = 0.0  # monotonic time the latest reading started
        self._failing = False
        self._thread = threading.Thread(target=self._run, name="invario-lag-refresher", daemon=True)
        self._thread.start()

    def latest(self, wait_seconds: float = SCRAPE_WAIT_SECONDS) -> Reading | None:
        """The newest reading, after waiting at most ``wait_seconds`` for one that starts now."""
        asked_at = time.monotonic()
        self._asked.set()
        watch = getattr(self.runtime, "watch", None)
        if watch is not None and watch.down:
            wait_seconds = 0  # no fresh reading will come
        with self._changed:
            self._changed.wait_for(lambda: self._read_at >= asked_at, timeout=wait_seconds)
            reading, read_at = self._reading, self._read_at
        if reading is None or time.monotonic() - read_at > READING_AGE_MAX_SECONDS:
            return None
        return reading

    def stop(self) -> None:
        self._stopped.set()
        self._asked.set()

    def _run(self) -> None:
        while not self._stopped.is_set() and not getattr(self.runtime, "_closed", False):
            self._asked.clear()  # before reading: a scrape that asks meanwhile gets one more reading
            started = time.monotonic()
            try:
                reading = read_gauges(self.runtime)
            except Exception as exc:  # noqa: BLE001 - the database is down: keep the last reading, try again
                if not self._failing:
                    log.warning("cannot read projection lag and checkpoint: %s", type(exc).__name__)
                self._failing = True
            else:
                self._failing = False
                with self._changed:
                    self._reading, self._read_at = reading, started
                    self._changed.notify_all()
            self._asked.wait(REFRESH_SECONDS)


SCRAPE_SHARE_SECONDS = 0.1  # the gauges' callbacks of one scrape (back to back) share its reading and its wait
_shared: dict[str, Any] = {}


def _latest() -> Reading | None:
    refresher = _source.get("refresher")
    if refresher is None:
        return None
    now = time.monotonic()
    if _shared.get("refresher") is refresher and now - _shared["at"] < SCRAPE_SHARE_SECONDS:
        return _shared["reading"]  # type: ignore[no-any-return]
    reading = refresher.latest()
    _shared.update(refresher=refresher, at=time.monotonic(), reading=reading)
    return reading


def _observe(_options: CallbackOptions) -> Iterable[Observation]:
    reading = _latest()
    if reading is None:
        return []
    return [Observation(lag, {"projection": name}) for name, lag in reading.lags.items()]


def _observe_checkpoint_age(_options: CallbackOptions) -> Iterable[Observation]:
    reading = _latest()
    if reading is None or reading.checkpoint is None or reading.checkpoint.age_seconds is None:
        return []
    return [Observation(round(reading.checkpoint.age_seconds, 3))]


def _observe_checkpoint_uncovered(_options: CallbackOptions) -> Iterable[Observation]:
    reading = _latest()
    if reading is None or reading.checkpoint is None:
        return []
    return [Observation(reading.checkpoint.uncovered_events)]


def register_lag_gauge(runtime: Runtime) -> None:
    """Export the lag of every projection of ``runtime``'s database and its checkpoints' coverage
    (the gauges are created once)."""
    global _registered  # noqa: PLW0603 - one instrument per process
    previous = _source.get("refresher")
    if previous is not None:
        previous.stop()
    _source["refresher"] = LagRefresher(runtime)
    if _registered:
        return
    meter = metrics.get_meter(METER_NAME)
    meter.create_observable_gauge(
        LAG_GAUGE, callbacks=[_observe], unit="{event}",
        description="Log positions not yet applied by each projection (0: up to date), by projection",
    )
    meter.create_observable_gauge(
        CHECKPOINT_AGE_GAUGE, callbacks=[_observe_checkpoint_age], unit="s",
        description="Seconds since the newest signed checkpoint of the Merkle tree was signed (with a signing key)",
    )
    meter.create_observable_gauge(
        CHECKPOINT_UNCOVERED_GAUGE, callbacks=[_observe_checkpoint_uncovered], unit="{event}",
        description="Events of the log the newest signed checkpoint does not cover: no proof yet (with a signing key)",
    )
    _registered = True


def unregister_lag_source(runtime: Any) -> None:
    refresher = _source.get("refresher")
    if refresher is not None and refresher.runtime is runtime:
        refresher.stop()
        _source.pop("refresher", None)
