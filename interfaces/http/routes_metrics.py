"""The metrics endpoints: ``/metrics``, ``/internal/metrics`` and ``/internal/metrics/json``.

What they serve is described in ``interfaces.http.metrics``. They live apart from
it because they need the admin dependency of ``interfaces.http.auth``, which
imports ``metrics`` for tenants' names: together the two modules formed a cycle.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI
from fastapi.responses import JSONResponse, Response

from infrastructure.telemetry import metrics_document, render_prometheus
from interfaces.http.auth import Admin
from interfaces.http.docs import errors
from interfaces.http.metrics import report_database_gate
from projections.following.lag_metrics import register_lag_gauge

PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


def install_metrics(app: FastAPI) -> None:
    """Add the three metrics routes."""
    router = APIRouter(tags=["operations"])
    text = {200: {"content": {"text/plain": {}}, "description": "Prometheus text format"}}
    admin_errors = errors(401, 403)

    @router.get("/metrics", summary="Metrics of this process (Prometheus text format)", response_class=Response,
                responses=text)
    def prometheus_metrics() -> Response:
        return Response(render_prometheus(), media_type=PROMETHEUS_TEXT)

    @router.get("/internal/metrics", summary="The same metrics, for operators (admin token)",
                response_class=Response, dependencies=[Admin], responses={**text, **admin_errors})
    def internal_metrics() -> Response:
        return Response(render_prometheus(), media_type=PROMETHEUS_TEXT)

    @router.get("/internal/metrics/json", summary="The same metrics as JSON, for scripts (admin token)",
                dependencies=[Admin], responses=admin_errors)
    def internal_metrics_json() -> JSONResponse:
        return JSONResponse(metrics_document())

    app.include_router(router)
    register_lag_gauge(app.state.runtime)
    report_database_gate(app.state.database_gate)
