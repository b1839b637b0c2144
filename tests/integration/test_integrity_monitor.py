"""The integrity monitor: one CRITICAL event per detection, shared through the database, cleared
only by a verification that started after the detection; and the gauge that follows it.

Two ``IntegrityMonitor`` instances on one database stand for two processes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from sqlalchemy import Engine, create_engine

from domain.integrity import CHANGED, GLOBAL_CHAIN, MISSING, Damage
from infrastructure.integrity_monitor import (
    FAILED_EVENT,
    GAUGE_NAME,
    IntegrityMonitor,
    IntegrityStatus,
    process_monitor,
    register_integrity_gauge,
)
from infrastructure.integrity_store import utc_now
from infrastructure.migrate import upgrade_to_head

DAMAGE = Damage(CHANGED, GLOBAL_CHAIN, 7, 9, "a" * 8, 2, "Account.PostingRecorded", "1" * 64, "2" * 64, "changed")
OTHER = Damage(MISSING, GLOBAL_CHAIN, 8, 10, None, None, None, "3" * 64, "", "gone")


@pytest.fixture
def engine(sqlite_database_url: str) -> Iterator[Engine]:
    engine = create_engine(sqlite_database_url)
    upgrade_to_head(engine)
    yield engine
    engine.dispose()


def failures(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.levelno == logging.CRITICAL and r.getMessage().startswith(FAILED_EVENT)]


def test_a_detection_is_announced_once_per_process(engine: Engine, caplog: pytest.LogCaptureFixture) -> None:
    detector, observer = IntegrityMonitor(refresh_seconds=0), IntegrityMonitor(refresh_seconds=0)
    observer.attach(engine)
    with caplog.at_level(logging.CRITICAL, logger="invario.integrity"):
        detector.report_break(engine, DAMAGE, "worker")
        detector.report_break(engine, DAMAGE, "worker")  # found again: the same detection
        for _ in range(3):
            assert observer.is_broken()
    records = failures(caplog)
    assert len(records) == 2  # the detector's and the observer's, once each
    assert all(getattr(r, "event", None) == FAILED_EVENT for r in records)
    assert observer.status().damage == DAMAGE.to_document()
    assert observer.status().detected_by == "worker"

    with caplog.at_level(logging.CRITICAL, logger="invario.integrity"):
        detector.report_break(engine, OTHER, "invario verify")  # new damage: a new detection
        observer.refresh()
    assert len(failures(caplog)) == 4


def test_only_a_verification_started_after_the_detection_clears_it(engine: Engine) -> None:
    monitor = IntegrityMonitor(refresh_seconds=0)
    before = utc_now() - timedelta(seconds=5)
    monitor.report_break(engine, DAMAGE, "worker")
    assert not monitor.report_passed(engine, "sweep that began earlier", before, 10)
    assert monitor.is_broken()
    assert monitor.report_passed(engine, "invario verify", utc_now(), 10)
    assert not monitor.is_broken()
    assert not IntegrityMonitor(refresh_seconds=0).status().broken


def test_an_older_ok_state_does_not_clear_a_known_break(engine: Engine) -> None:
    monitor, verifier = IntegrityMonitor(refresh_seconds=0), IntegrityMonitor(refresh_seconds=0)
    verifier.report_passed(engine, "earlier verification", utc_now() - timedelta(hours=1), 5)
    monitor.report_break(engine, DAMAGE, "worker")
    with engine.begin() as connection:  # a backup from before the detection is restored
        connection.exec_driver_sql("UPDATE integrity_state SET status = 'ok'")
    assert monitor.refresh().broken
    verifier.report_passed(engine, "invario verify", utc_now(), 5)
    assert not monitor.refresh().broken


def test_another_database_starts_clean(engine: Engine, tmp_path: object) -> None:
    monitor = IntegrityMonitor(refresh_seconds=0)
    monitor.report_break(engine, DAMAGE, "worker")
    other = create_engine(f"sqlite:///{tmp_path}/other.db")
    upgrade_to_head(other)
    monitor.attach(other)
    assert not monitor.is_broken()
    other.dispose()


def test_the_gauge_follows_the_process_monitor(engine: Engine) -> None:
    reader = InMemoryMetricReader()
    register_integrity_gauge(MeterProvider(metric_readers=[reader]).get_meter("invario"))

    def gauge() -> float:
        data = reader.get_metrics_data()
        assert data is not None
        metric = next(m for r in data.resource_metrics for s in r.scope_metrics for m in s.metrics
                      if m.name == GAUGE_NAME)
        return metric.data.data_points[-1].value

    monitor = process_monitor()
    monitor.reset()
    try:
        assert gauge() == 1
        monitor.report_break(engine, DAMAGE, "worker")
        assert gauge() == 0
        monitor.report_passed(engine, "invario verify", utc_now(), 1)
        assert gauge() == 1
    finally:
        monitor.reset()


def test_a_database_that_cannot_be_read_keeps_the_last_view(engine: Engine) -> None:
    monitor = IntegrityMonitor(refresh_seconds=0)
    monitor.report_break(engine, DAMAGE, "worker")
    engine.dispose()
    with engine.begin() as connection:
        connection.exec_driver_sql("DROP TABLE integrity_state")
    assert monitor.refresh().broken


def test_concurrent_callers_share_one_re_read_and_the_first_read_is_awaited(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monitor = IntegrityMonitor(refresh_seconds=60)
    monitor.attach(engine)
    reads = []
    real_refresh = monitor.refresh

    def slow_refresh() -> IntegrityStatus:
        reads.append(threading.current_thread().name)
        time.sleep(0.2)  # long enough for every other caller to arrive meanwhile
        return real_refresh()

    monkeypatch.setattr(monitor, "refresh", slow_refresh)

    def call_status_from_16_threads() -> list[IntegrityStatus]:
        seen: list[IntegrityStatus] = []
        threads = [threading.Thread(target=lambda: seen.append(monitor.status())) for _ in range(16)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        return seen

    first = call_status_from_16_threads()
    assert len(reads) == 1 and len(first) == 16  # the first read: everyone waited for it
    assert not monitor.needs_refresh()
    monitor._refreshed_at -= 120  # noqa: SLF001 - make the view due again
    again = call_status_from_16_threads()
    assert len(reads) == 2 and len(again) == 16  # due again: one re-read, the others kept the last view
