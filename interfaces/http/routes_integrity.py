"""Integrity over HTTP: ``/health``, ``/health/ready``, ``GET /v1/ledger/digest`` and the per-tenant
audit ``GET /admin/tenants/{id}/audit/verify``; ``install_integrity`` wires them and the write guard.

- ``/health`` answers 200 ``{"status": "ok", "database": "ok", "integrity": "ok"}``;
  503 with ``"integrity": "broken"`` and the location of the break while a hash
  chain is broken, and 503 with ``"database": "error"`` when the database does not
  answer within ``INVARIO_HEALTH_TIMEOUT_SECONDS``. It never hangs: the checks run
  in a background thread and are waited for boundedly. A 503 carries ``Retry-After``
  (docs/failure-modes.md).
- ``/health/ready`` answers 503 until the database answers, the schema is at the
  head revision and the slowest projection is at most ``INVARIO_READY_MAX_LAG``
  events behind the log.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any, TypeVar
from uuid import UUID

from fastapi import APIRouter, FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.middleware import Middleware

from infrastructure.runtime import Runtime
from infrastructure.integrity_monitor import IntegrityMonitor, IntegrityStatus, process_monitor
from infrastructure.integrity_store import latest_digest, read_checkpoint
from infrastructure.migrate import is_current
from infrastructure.settings import Settings
from infrastructure.signing import SigningKey, load_signing_key
from interfaces.http.auth import Admin, Reader
from interfaces.http.docs import errors
from interfaces.http.integrity_guard import IntegrityWriteGuard
from interfaces.http.integrity_schemas import AuditOut, DigestOut, HealthOut, ReadyOut
from interfaces.http.problems import DATABASE_FAILURES, ApiProblem
from interfaces.http.services import runtime_of
from projections.following.follower import read_tracking
from projections.following.registry import ALL_PROJECTIONS
from projections.jobs.verification import LedgerLookups, LedgerVerification, record_outcome

T = TypeVar("T")

health_router = APIRouter(tags=["operations"])
ledger_router = APIRouter(prefix="/v1/ledger", tags=["integrity"])
audit_router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Admin])

_HEALTH_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": HealthOut, "description": "The chain is broken (with its location) or the database is down"},
}
_READY_RESPONSES: dict[int | str, dict[str, Any]] = {
    503: {"model": ReadyOut, "description": "Not ready: see reasons"},
}


class BoundedProbe:
    """Runs database checks in a background thread and waits at most ``timeout_seconds`` for them.

    A check that is still stuck answers every later call with ``None`` at once,
    so hung connections never pile up threads.
    """

    def __init__(self, timeout_seconds: float) -> None:
        self.timeout_seconds = timeout_seconds
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="invario-health")
        self._lock = threading.Lock()
        self._stuck: Future[Any] | None = None

    def run(self, check: Callable[[], T]) -> T | None:
        with self._lock:
            if self._stuck is not None and not self._stuck.done():
                return None
            future = self._executor.submit(check)
        try:
            return future.result(timeout=self.timeout_seconds)
        except FutureTimeout:
            with self._lock:
                self._stuck = future
            return None
        except Exception:  # noqa: BLE001 - any failure means the database is not usable
            return None

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


@dataclass
class IntegrityParts:
    settings: Settings
    monitor: IntegrityMonitor
    probe: BoundedProbe
    signing_key: SigningKey | None


def install_integrity(app: FastAPI, runtime: Runtime, monitor: IntegrityMonitor | None = None) -> None:
    """Add the health and integrity routes and the write guard to the API (call it in ``create_app``)."""
    settings = runtime.settings
    secret = settings.signing_key.get_secret_value() if settings.signing_key else None
    monitor = monitor or process_monitor()
    monitor.attach(runtime.engine, settings.integrity_state_refresh_seconds)
    app.state.integrity = IntegrityParts(settings, monitor, BoundedProbe(settings.health_timeout_seconds),
                                         load_signing_key(secret))
    for router in (health_router, ledger_router, audit_router):
        app.include_router(router)
    # Innermost, so request ids, access logs and the body limit apply to its answers too.
    app.user_middleware.append(Middleware(IntegrityWriteGuard, monitor=monitor))
    app.router.on_shutdown.append(app.state.integrity.probe.close)
    _document_health_bodies(app)


def _parts(request: Request) -> IntegrityParts:
    return request.app.state.integrity


# --- health ------------------------------------------------------------------------------------------


@health_router.get("/health", response_model=HealthOut, responses=_HEALTH_RESPONSES,
                   summary="Liveness: database reachable and every hash chain intact")
def health(request: Request) -> JSONResponse:
    parts, runtime = _parts(request), runtime_of(request)

    def check() -> IntegrityStatus:
        runtime.check_database()  # the way writes reach it too: never ok while writes would fail
        return parts.monitor.refresh()

    status = parts.probe.run(check)
    database_ok = status is not None
    integrity = status if status is not None else parts.monitor.status(refresh=False)
    body: dict[str, Any] = {
        "status": "ok" if database_ok and not integrity.broken else "error",
        "database": "ok" if database_ok else "error",
        "integrity": "broken" if integrity.broken else "ok",
    }
    if integrity.broken:
        body["break"] = {**(integrity.damage or {}), "detection_id": integrity.detection_id,
                         "detected_at": integrity.detected_at.isoformat() if integrity.detected_at else None,
                         "detected_by": integrity.detected_by}
    if body["status"] == "ok":
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(_retry_after(database_ok))})


@health_router.get("/health/ready", response_model=ReadyOut, responses=_READY_RESPONSES,
                   summary="Readiness: database reachable, schema current, projections caught up")
def ready(request: Request) -> JSONResponse:
    parts, runtime = _parts(request), runtime_of(request)

    def check() -> tuple[bool, _Projections | None]:
        runtime.check_database()
        current = is_current(runtime.engine)
        return current, _projections(runtime) if current else None

    found = parts.probe.run(check)
    current, projections = found if found is not None else (None, None)
    body = _ready_body(parts, found is not None, current, projections)
    if not body["reasons"]:
        return JSONResponse(body)
    return JSONResponse(body, status_code=503, headers={"Retry-After": str(_retry_after(found is not None))})


@dataclass(frozen=True)
class _Projections:
    lag: int | None  # of the slowest projection; None: no projection has a tracking row
    failing: dict[str, str]  # projection -> its last error, for those stuck behind it


def _ready_body(parts: IntegrityParts, database_ok: bool, current: bool | None,
                projections: _Projections | None) -> dict[str, Any]:
    limit = parts.settings.ready_max_lag
    lag = projections.lag if projections is not None else None
    failing = projections.failing if projections is not None else {}
    reasons = []
    if not database_ok:
        reasons.append("the database does not answer")
    elif not current:
        reasons.append("the schema is not at the head revision: run 'invario migrate'")
    else:
        reasons.extend(f"projection {name} is failing: {error}" for name, error in sorted(failing.items()))
        if lag is None or lag > limit:
            reasons.append(f"the projections are {lag} events behind the log (more than {limit})")
    return {
        "status": "not_ready" if reasons else "ready", "database": "ok" if database_ok else "error",
        "migrations": "unknown" if current is None else "current" if current else "pending",
        "projection_lag": lag, "max_projection_lag": limit, "failing_projections": sorted(failing),
        "integrity": "broken" if parts.monitor.status(refresh=False).broken else "ok", "reasons": reasons,
    }


def _retry_after(database_ok: bool) -> int:
    """Seconds to wait before asking again: the database's failure code's, or a minute for the rest."""
    return DATABASE_FAILURES["database_unavailable"][1] if not database_ok else 60


def _projections(runtime: Runtime) -> _Projections:
    """The slowest projection's lag, and the projections that failed on an event they have not applied.

    An error left on a projection that has since caught up (the database was
    down while the log stood still) does not count: nothing is stuck behind it.
    """
    head = runtime.ledger.recorder.max_notification_id() or 0
    with runtime.engine.connect() as connection:
        states = list(read_tracking(connection, ALL_PROJECTIONS).values())
    lag = max(head - min(state.position for state in states), 0) if states else None
    failing = {s.name: s.last_error[:300] for s in states if s.last_error and s.position < head}
    return _Projections(lag, failing)


def _document_health_bodies(app: FastAPI) -> None:
    """The 503 bodies of /health are health documents, not problem documents: say so in the schema."""
    produce = app.openapi

    def openapi() -> dict[str, Any]:
        schema = produce()
        for path in ("/health", "/health/ready"):
            response = schema.get("paths", {}).get(path, {}).get("get", {}).get("responses", {}).get("503")
            if response is not None:
                ok = schema["paths"][path]["get"]["responses"]["200"]["content"]
                response["content"] = ok
        return schema

    app.openapi = openapi  # type: ignore[method-assign]


# --- digests and audits -------------------------------------------------------------------------------


@ledger_router.get("/digest", response_model=DigestOut, responses=errors(401, 403, 404, 429),
                   summary="A signed digest of the global chain's verified head")
def ledger_digest(request: Request, principal: Reader) -> JSONResponse:  # noqa: ARG001 - authentication only
    """Signed now if this process has INVARIO_SIGNING_KEY, else the latest digest the worker signed.

    Keep it outside the ledger: 'invario verify --digest FILE' proves the ledger
    unchanged up to it. 404 ``digest_unavailable`` when no key signs digests.
    """
    parts, runtime = _parts(request), runtime_of(request)
    with runtime.engine.connect() as connection:
        if parts.signing_key is not None:
            checkpoint = read_checkpoint(connection)
            digest = parts.signing_key.sign_head(checkpoint.sequence, checkpoint.position, checkpoint.hash)
        else:
            digest = latest_digest(connection)
    if digest is None:
        raise ApiProblem(404, "digest_unavailable",
                         "this ledger has signed no digest: the operator has not set INVARIO_SIGNING_KEY")
    return JSONResponse(digest.to_document())


@audit_router.get("/tenants/{tenant_id}/audit/verify", response_model=AuditOut,
                  responses=errors(400, 401, 403, 404),
                  summary="Verify every hash chain and report the damage to one tenant's data")
def audit_tenant(request: Request, tenant_id: UUID) -> JSONResponse:
    """A full verification of the ledger (it takes as long as 'invario verify'), narrowed to the tenant.

    Any damage found, the tenant's or not, is recorded: the ledger stops taking writes.
    """
    runtime = runtime_of(request)
    runtime.ledger.get_tenant(tenant_id)  # 404 tenant_not_found
    report = LedgerVerification(runtime.ledger, runtime.engine).run()
    record_outcome(runtime.engine, report, "admin audit", _parts(request).monitor)
    return JSONResponse(report.for_tenant(tenant_id, LedgerLookups(runtime.ledger)).to_document())

