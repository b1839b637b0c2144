"""The gauge ``invario_projection_lag_events{projection}``: log positions each projection has yet to apply.

Read from the database when scraped (the head of the log and the tracking
rows: two small queries), so every process that serves metrics reports the
same truth, whichever process runs the followers. The label values are the
projection names: a fixed set (``projections.registry.ALL_PROJECTIONS``).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from infrastructure.bootstrap import Runtime
from infrastructure.telemetry import METER_NAME
from projections.follower import read_tracking
from projections.registry import ALL_PROJECTIONS

log = logging.getLogger("invario.telemetry")

LAG_GAUGE = "invario_projection_lag_events"

# The runtime whose database the gauge reads: one per process in production (the
# last one registered wins, which is what tests that open several need).
_source: dict[str, Runtime] = {}
_registered = False


def projection_lags(runtime: Runtime) -> dict[str, int]:
    head = runtime.ledger.recorder.max_notification_id() or 0
    with runtime.engine.connect() as connection:
        states = read_tracking(connection, ALL_PROJECTIONS)
    return {name: max(head - states[name].position, 0) for name in ALL_PROJECTIONS}


def _observe(_options: CallbackOptions) -> Iterable[Observation]:
    runtime = _source.get("runtime")
    if runtime is None:
        return []
    try:
        lags = projection_lags(runtime)
    except Exception as exc:  # noqa: BLE001 - a scrape must not fail because the database is down
        log.warning("cannot read projection lag: %s", type(exc).__name__)
        return []
    return [Observation(lag, {"projection": name}) for name, lag in lags.items()]


def register_lag_gauge(runtime: Runtime) -> None:
    """Export the lag of every projection of ``runtime``'s database (the gauge is created once)."""
    global _registered  # noqa: PLW0603 - one instrument per process
    _source["runtime"] = runtime
    if _registered:
        return
    metrics.get_meter(METER_NAME).create_observable_gauge(
        LAG_GAUGE, callbacks=[_observe], unit="{event}",
        description="Log positions not yet applied by each projection (0: up to date), by projection",
    )
    _registered = True


def unregister_lag_source(runtime: Any) -> None:
    if _source.get("runtime") is runtime:
        _source.pop("runtime", None)
