"""The process-wide view of the ledger's integrity: health, the write guard and the gauge read it.

Verifications report to the monitor: ``report_break`` when they find damage,
``report_passed`` when a full verification finds none. Reports are written to
the shared ``integrity_state`` row, and every process re-reads that row at
most every ``INVARIO_INTEGRITY_STATE_REFRESH_SECONDS``, so a break found by
``invario verify`` or by the worker stops writes in every API process within
about a second.

Once broken, a process stays broken until a full verification that *started
after* the detection has passed. Restoring a backup brings back an older "ok"
row, which is not enough: the restored events must verify first. Then writes
resume without a restart.

Each process logs the CRITICAL event ``integrity_check_failed`` once per
detection it detects or learns of (not per request), and exports the gauge
``invario_ledger_integrity_status``: 1 healthy, 0 broken.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Meter, Observation
from sqlalchemy import Engine

from domain.integrity import Damage
from infrastructure.integrity_store import StoredState, read_state, utc_now, write_state

log = logging.getLogger("invario.integrity")

OK = "ok"
BROKEN = "broken"
FAILED_EVENT = "integrity_check_failed"
RESTORED_EVENT = "integrity_restored"
GAUGE_NAME = "invario_ledger_integrity_status"
REFRESH_SECONDS_DEFAULT = 1.0


@dataclass(frozen=True)
class IntegrityStatus:
    status: str = OK
    detection_id: str | None = None
    detected_at: datetime | None = None
    detected_by: str | None = None
    damage: dict[str, Any] | None = None
    checked_at: datetime | None = None

    @property
    def broken(self) -> bool:
        return self.status == BROKEN

    def location(self) -> tuple[Any, ...] | None:
        return Damage.from_document(self.damage).location if self.damage else None


class IntegrityMonitor:
    """Thread-safe; one per process (``process_monitor()``), attached to the database it watches."""

    def __init__(self, refresh_seconds: float = REFRESH_SECONDS_DEFAULT) -> None:
        self.refresh_seconds = refresh_seconds
        self._lock = threading.RLock()
        self._engine: Engine | None = None
        self._status = IntegrityStatus()
        self._refreshed_at = float("-inf")
        self._announced: set[tuple[Any, ...]] = set()
        self._refresh_lock = threading.Lock()  # one re-read at a time (status(), refresh_in_background())

    # --- reading ----------------------------------------------------------------------

    def attach(self, engine: Engine, refresh_seconds: float | None = None) -> None:
        """Watch this database; another database starts from a clean slate."""
        with self._lock:
            if refresh_seconds is not None:
                self.refresh_seconds = refresh_seconds
            if self._engine is not None and str(self._engine.url) == str(engine.url):
                self._engine = engine
                return
            self._engine = engine
            self._status = IntegrityStatus()
            self._refreshed_at = float("-inf")
            self._announced.clear()

    def status(self, *, refresh: bool = True) -> IntegrityStatus:
        """The current view, re-read from the database when older than ``refresh_seconds``.

        One caller re-reads; callers arriving meanwhile keep the last view, unless
        there is none yet (they wait for the first read). Under load every write of
        the second found the view due at once: each re-read it on a connection of
        its own, past the engine's pool, opened and closed for that one read."""
        if not (refresh and self.needs_refresh()):
            return self._status
        first = self._refreshed_at == float("-inf")
        if self._refresh_lock.acquire(blocking=first):
            try:
                if self.needs_refresh():  # not done by the caller we waited for
                    self.refresh()
            finally:
                self._refresh_lock.release()
        return self._status

    def is_broken(self) -> bool:
        return self.status().broken

    def needs_refresh(self) -> bool:
        """Whether ``status()`` would re-read the database (so should not be called on an event loop)."""
        return time.monotonic() - self._refreshed_at >= self.refresh_seconds

    def refresh_in_background(self) -> None:
        """``refresh`` in a thread of its own, for callers that must not wait; none
        while another re-read (this one's or ``status()``'s) is under way."""
        if not self._refresh_lock.acquire(blocking=False):
            return

        def refresh_once() -> None:
            try:
                self.refresh()
            finally:
                self._refresh_lock.release()

        threading.Thread(target=refresh_once, name="invario-integrity-refresh", daemon=True).start()

    def refresh(self) -> IntegrityStatus:
        """Re-read the shared state now; if the database cannot be read, keep the last view.

        The read happens outside the lock, so a hung database never blocks the
        readers of the last view (the gauge, /health's fallback).
        """
        engine = self._engine
        if engine is None:
            return self._status
        try:
            with engine.connect() as connection:
                stored = read_state(connection)
        except Exception:  # noqa: BLE001 - the database may be down; /health reports that separately
            log.debug("could not read the integrity state", exc_info=True)
            return self._status
        with self._lock:
            if self._engine is engine:  # not re-attached to another database meanwhile
                self._refreshed_at = time.monotonic()
                self._merge(stored)
            return self._status

    # --- reporting --------------------------------------------------------------------

    def report_break(self, engine: Engine, damage: Damage, source: str) -> IntegrityStatus:
        """Record a detection (unless this very damage is already recorded) and stop writes."""
        with self._lock:
            self._adopt_engine(engine)
            self.refresh()
            if self._status.broken and self._status.location() == damage.location:
                return self._status
            detection = IntegrityStatus(BROKEN, uuid.uuid4().hex, utc_now(), source, damage.to_document(),
                                        self._status.checked_at)
            try:
                write_state(engine, status=BROKEN, detection_id=detection.detection_id,
                            detected_at=detection.detected_at, detected_by=source, damage=detection.damage)
            except Exception:  # noqa: BLE001 - this process stops writing even if others cannot be told
                log.exception("could not record the integrity break in the database")
            self._set(detection)
            return self._status

    def report_passed(self, engine: Engine, source: str, started_at: datetime, verified_sequence: int) -> bool:
        """A full verification that started at ``started_at`` found no damage: clear older detections.

        Returns whether the ledger is now considered intact (a detection made
        after the verification started is not cleared by it).
        """
        with self._lock:
            self._adopt_engine(engine)
            self.refresh()
            if self._status.broken and self._status.detected_at and self._status.detected_at > started_at:
                return False
            try:
                write_state(engine, status=OK, checked_at=started_at, checked_by=source,
                            verified_sequence=verified_sequence)
            except Exception:  # noqa: BLE001
                log.exception("could not record the passing verification in the database")
            self._set(replace(self._status, status=OK, checked_at=started_at))
            return True

    def reset(self) -> None:
        """Forget everything (tests; a process that starts watching another ledger)."""
        with self._lock:
            self._engine = None
            self._status = IntegrityStatus()
            self._refreshed_at = float("-inf")
            self._announced.clear()

    # --- internals --------------------------------------------------------------------

    def _adopt_engine(self, engine: Engine) -> None:
        if self._engine is None or str(self._engine.url) != str(engine.url):
            self.attach(engine)

    def _merge(self, stored: StoredState | None) -> None:
        if stored is None:
            return
        if stored.status == BROKEN:
            if stored.detection_id != self._status.detection_id or not self._status.broken:
                self._set(IntegrityStatus(BROKEN, stored.detection_id, stored.detected_at, stored.detected_by,
                                          stored.damage, stored.checked_at))
            return
        current = self._status
        passed_since = (stored.checked_at is not None and current.detected_at is not None
                        and stored.checked_at > current.detected_at)
        if current.broken and not passed_since:
            return  # e.g. a restored backup's old "ok": the restored events must verify first
        self._set(IntegrityStatus(OK, current.detection_id, current.detected_at, current.detected_by,
                                  current.damage, stored.checked_at))

    def _set(self, new: IntegrityStatus) -> None:
        old = self._status
        self._status = new
        if new.broken:
            location = new.location()
            if location not in self._announced:
                self._announced.add(location)
                log.critical(
                    "%s: the ledger's hash chain is broken: %s (detection %s by %s); writes are refused "
                    "until a full verification passes",
                    FAILED_EVENT, _describe(new.damage), new.detection_id, new.detected_by,
                    extra={"event": FAILED_EVENT, "detection_id": new.detection_id, "damage": new.damage},
                )
        elif old.broken:
            log.warning("%s: a full verification passed; writes resume (detection %s is resolved)",
                        RESTORED_EVENT, old.detection_id, extra={"event": RESTORED_EVENT})


def _describe(damage: dict[str, Any] | None) -> str:
    return Damage.from_document(damage).describe() if damage else "unknown damage"


_process_monitor = IntegrityMonitor()


def process_monitor() -> IntegrityMonitor:
    """The monitor of this process."""
    return _process_monitor


def _observe_integrity(_options: CallbackOptions) -> Iterable[Observation]:
    # A scrape never waits on the database (a silent one would hold /metrics for as long as it
    # stays silent): a stale view is re-read in the background, for the next scrape.
    if _process_monitor.needs_refresh():
        _process_monitor.refresh_in_background()
    yield Observation(0 if _process_monitor.status(refresh=False).broken else 1)


def register_integrity_gauge(meter: Meter) -> None:
    """Export ``invario_ledger_integrity_status`` on ``meter`` (done once for the global meter at import)."""
    meter.create_observable_gauge(
        GAUGE_NAME, callbacks=[_observe_integrity], unit="1",
        description="1 while every hash chain verifies, 0 from the detection of a break until a verification passes",
    )


register_integrity_gauge(metrics.get_meter("invario"))
