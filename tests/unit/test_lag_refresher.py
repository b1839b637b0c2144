"""The lag gauge never makes a scrape wait on the database (projections.following.lag_metrics)."""

from __future__ import annotations

import threading
import time
from types import SimpleNamespace
from typing import Any

from projections.following import lag_metrics
from projections.following.lag_metrics import SCRAPE_WAIT_SECONDS, LagRefresher, Reading


def _runtime(max_notification_id: Any) -> Any:
    recorder = SimpleNamespace(max_notification_id=max_notification_id)
    return SimpleNamespace(ledger=SimpleNamespace(recorder=recorder), watch=None, _closed=False)


def test_a_silent_database_costs_a_scrape_at_most_the_short_wait() -> None:
    released = threading.Event()
    refresher = LagRefresher(_runtime(lambda: released.wait(30)))
    try:
        started = time.monotonic()
        assert refresher.latest() is None  # no reading yet, and none comes
        assert time.monotonic() - started < SCRAPE_WAIT_SECONDS + 1.0
    finally:
        refresher.stop()
        released.set()


def test_a_scrape_gets_a_reading_taken_after_it_asked(monkeypatch: Any) -> None:
    heads = iter(range(1, 1000))
    monkeypatch.setattr(lag_metrics, "read_gauges", lambda runtime: Reading({"accounts": next(heads)}, None))
    refresher = LagRefresher(_runtime(None))
    try:
        first = refresher.latest(wait_seconds=5)
        second = refresher.latest(wait_seconds=5)
        assert first is not None and second is not None and second.lags["accounts"] > first.lags["accounts"]
    finally:
        refresher.stop()
