"""What the HTTP layer counts, traces and logs about requests and commands.

Its endpoints are in ``interfaces.http.routes_metrics``:

- ``GET /metrics``: this process's metrics in the Prometheus text format, for a
  scraper on the API port. Served from a route with ``generate_latest()`` (the
  exporter's ASGI app would answer ``/metrics`` with a redirect).
- ``GET /internal/metrics``: the same, behind the admin token (for operators
  reaching the API through a proxy that hides ``/metrics``).
- ``GET /internal/metrics/json``: the same as JSON, for scripts.

None of them waits on the database (the lag gauge is read in the background:
``projections.following.lag_metrics``). ``invario_database_reachable`` is 0 while this
process refuses requests because the database does not answer (its
``DatabaseGate`` is shut: on PostgreSQL the liveness probe got no answer).

``ledger_command`` wraps one application command (posting, reversal) in a child
span of the request's span, counts it in ``invario_transactions_total``, and
logs ``transaction_processed`` or ``transaction_rejected`` (with its code).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from fastapi import Request
from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.trace import SpanKind, Status, StatusCode

from domain.errors import LedgerError
from infrastructure.correlation import request_facts
from infrastructure.telemetry import METER_NAME, instruments, tracer

log = logging.getLogger("invario.ledger")

# FastAPI's own OpenTelemetry support would add a second server span per request and a
# second, differently named duration histogram; the runbooks' names are ours (see middleware).
NATIVE_TELEMETRY_OFF: dict[str, Any] = {"tracing": False, "metrics": False, "logs": False,
                                        "operation_spans": False, "auto_configure": False}
PROCESSED_EVENT = "transaction_processed"
REJECTED_EVENT = "transaction_rejected"


# --- whether the database answers (one API per process; the last one installed wins in tests) ---

DATABASE_GAUGE = "invario_database_reachable"
_gate_source: dict[str, Any] = {}


def report_database_gate(gate: Any) -> None:
    """``invario_database_reachable`` follows this gate (the API's ``DatabaseGate``)."""
    _gate_source["gate"] = gate


def _observe_database(_options: CallbackOptions) -> list[Observation]:
    gate = _gate_source.get("gate")
    return [] if gate is None else [Observation(0 if gate.shut else 1)]


metrics.get_meter(METER_NAME).create_observable_gauge(
    DATABASE_GAUGE, callbacks=[_observe_database], unit="1",
    description="1 while this API process lets requests reach the database, 0 while it refuses them because "
    "the database does not answer",
)


# --- tenants' names (bounded labels and readable log lines) -----------------------------------

_TENANT_NAMES_MAX = 100_000
_tenant_names: dict[UUID, str] = {}


def has_tenant_name(tenant_id: UUID) -> bool:
    """Whether ``tenant_name`` answers from memory (no read of the store)."""
    return tenant_id in _tenant_names


def tenant_name(request: Request, tenant_id: UUID) -> str:
    """A tenant's name: its identity (ids are derived from it), so it never changes and may be cached."""
    name = _tenant_names.get(tenant_id)
    if name is None:
        try:
            name = request.app.state.runtime.ledger.get_tenant(tenant_id).name
        except LedgerError:
            return str(tenant_id)
        if len(_tenant_names) < _TENANT_NAMES_MAX:
            _tenant_names[tenant_id] = name
    return name


def enter_tenant(request: Request, tenant_id: UUID) -> str:
    """Name the request's tenant on its remaining log lines; return the name."""
    name = tenant_name(request, tenant_id)
    facts = request_facts.get()
    if facts is not None:
        facts.tenant = name
    return name


# --- commands ---------------------------------------------------------------------------------


@dataclass
class CommandOutcome:
    """Filled in by the command: what it recorded."""

    transaction_id: UUID | None = None
    replayed: bool = False
    position: int | None = None


@contextmanager
def ledger_command(command: str, **fields: Any) -> Iterator[CommandOutcome]:
    """Trace, count and log one transaction command; a ``LedgerError`` is counted as rejected and re-raised."""
    outcome = CommandOutcome()
    each = instruments()
    with tracer().start_as_current_span(f"ledger.{command}") as span:
        try:
            yield outcome
        except LedgerError as exc:
            span.set_attribute("invario.rejection", exc.code)
            each.transactions.add(1, {"status": "rejected"})
            log.info("%s: %s", REJECTED_EVENT, exc.code,
                     extra={"event": REJECTED_EVENT, "command": command, "code": exc.code, **fields})
            raise
        if outcome.transaction_id is not None:
            span.set_attribute("invario.transaction_id", str(outcome.transaction_id))
        if outcome.replayed:
            each.idempotent_replays.add(1, {"source": "external_id"})
        else:
            each.transactions.add(1, {"status": "accepted"})
        log.info("%s: %s", PROCESSED_EVENT, outcome.transaction_id, extra={
            "event": PROCESSED_EVENT, "command": command, "transaction_id": str(outcome.transaction_id),
            "replayed": outcome.replayed, "position": outcome.position, **fields,
        })


# --- every request ----------------------------------------------------------------------------

UNMATCHED_ROUTE = "unmatched"  # 404s of arbitrary paths must not become label values


@contextmanager
def request_span(scope: dict[str, Any], request_id: str) -> Iterator[Any]:
    """The request's server span; renamed to its route template once routing has found it."""
    method = scope.get("method", "")
    with tracer().start_as_current_span(f"HTTP {method}", kind=SpanKind.SERVER, attributes={
        "http.request.method": method, "invario.request_id": request_id,
    }) as span:
        yield span


def route_template(scope: dict[str, Any]) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return path if isinstance(path, str) else UNMATCHED_ROUTE


def observe_request(scope: dict[str, Any], span: Any, status: int, elapsed_seconds: float) -> str:
    """Record one finished request (duration, errors by class, 409s); return its route template."""
    route = route_template(scope)
    method = scope.get("method", "")
    each = instruments()
    each.http_duration.record(elapsed_seconds, {"route": route, "method": method})
    if status >= 400:
        each.http_errors.add(1, {"status_class": f"{status // 100}xx"})
    if status == 409:
        each.tenant_conflicts.add(1)
    span.update_name(f"{method} {route}")
    span.set_attribute("http.route", route)
    span.set_attribute("http.response.status_code", status)
    if status >= 500:
        span.set_status(Status(StatusCode.ERROR))
    return route
