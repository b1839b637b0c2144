"""The HTTP application: thin, it parses, authenticates, calls the application and maps errors.

``create_app(runtime)`` wires the API's services through the bootstrap (which
refuses to go on without an auth pepper), the read models the queries use, the
middleware (correlation id, body limit), the exception handlers (problem
documents) and the routes: ``/v1`` for tenants' API keys, ``/admin`` for
operators, and ``/health``.
"""

from __future__ import annotations

from fastapi import FastAPI

from infrastructure.bootstrap import ApiServices, Runtime, build_api_services
from interfaces.http import routes_accounts, routes_admin, routes_recurring, routes_transactions
from interfaces.http.docs import API_DESCRIPTION
from interfaces.http.handlers import install_exception_handlers
from interfaces.http.metrics import NATIVE_TELEMETRY_OFF, install_metrics
from interfaces.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from interfaces.http.openapi import install_openapi
from interfaces.http.queries import build_read_models
from interfaces.http.routes_batches import PATH as BATCHES_PATH
from interfaces.http.routes_batches import install_batches
from interfaces.http.routes_integrity import install_integrity

TAGS = [
    {"name": "accounts", "description": "Accounts, balances and statements of the key's tenant"},
    {"name": "transactions", "description": "Balanced journal entries and their reversals"},
    {"name": "admin", "description": "Operators: tenants (INVARIO_ADMIN_TOKEN)"},
    {"name": "operations", "description": "Health and readiness"},
    {"name": "batches", "description": "Files of transactions (CSV, JSONL) posted in the background"},
    {"name": "recurring", "description": "Standing orders: transactions the worker posts on a schedule"},
    {"name": "integrity", "description": "Signed digests of the hash chains (see docs/integrity.md)"},
]


def create_app(runtime: Runtime, services: ApiServices | None = None) -> FastAPI:
    services = services or build_api_services(runtime)
    app = FastAPI(title="Invario", version="0.1.0", description=API_DESCRIPTION, openapi_tags=TAGS,
                  telemetry=NATIVE_TELEMETRY_OFF)
    app.state.runtime = runtime
    app.state.services = services
    app.state.read_models, app.state.tenant_directory = build_read_models(runtime.engine)
    install_exception_handlers(app)
    for module in (routes_accounts, routes_transactions, routes_admin, routes_recurring):
        app.include_router(module.router)
    install_batches(app, runtime)  # /v1/batches, its store and (SQLite) its in-process runner
    app.add_middleware(BodyLimitMiddleware, max_bytes=runtime.settings.http_body_max_bytes,
                       limits_by_path={BATCHES_PATH: runtime.settings.batch_body_max_bytes})
    app.add_middleware(RequestContextMiddleware)  # added last: outermost
    install_openapi(app)
    install_integrity(app, runtime)  # /health, /health/ready, digests, audits and the write guard
    install_metrics(app)  # /metrics, /internal/metrics, /internal/metrics/json

    return app
