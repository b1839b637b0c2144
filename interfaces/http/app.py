"""The HTTP application: thin, it parses, authenticates, calls the application and maps errors.

``create_app(runtime)`` takes the API's services from the composition root
(``interfaces.bootstrap``, which refuses to go on without an auth pepper): the read
models the queries use, the batch store and runner, the recurring service; then the
middleware (correlation id, body limit), the exception handlers (problem
documents) and the routes: ``/v1`` for tenants' API keys, ``/admin`` for
operators, and ``/health``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI
from fastapi.routing import APIRoute
from fastapi_offline import FastAPIOffline

from infrastructure.pg_connections import name_this_process
from infrastructure.runtime import Runtime, open_runtime
from infrastructure.logging_setup import configure_logging
from infrastructure.settings import get_settings
from interfaces.bootstrap import ApiServices, build_api_services
from interfaces.http import (
    routes_accounts,
    routes_admin,
    routes_events,
    routes_proofs,
    routes_recurring,
    routes_transaction_batch,
    routes_transactions,
    routes_webhooks,
)
from interfaces.http.docs import API_DESCRIPTION
from interfaces.http.exception_handlers import follow_database_watch, install_exception_handlers
from interfaces.http.metrics import NATIVE_TELEMETRY_OFF
from interfaces.http.middleware import BodyLimitMiddleware, RequestContextMiddleware
from interfaces.http.routes_metrics import install_metrics
from interfaces.http.openapi import install_openapi
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
    {"name": "events", "description": "The tenant's events as CloudEvents: a paged feed and a live stream "
     "(see docs/events-out.md)"},
    {"name": "webhooks", "description": "The tenant's webhook endpoints: its events POSTed as they are committed"},
    {"name": "proofs", "description": "Signed checkpoints of the Merkle tree over the log, inclusion and "
                                      "consistency proofs, checkable offline (see docs/proofs.md)"},
]


DOCS_ASSETS_PATH = "/docs-assets"  # Swagger UI's and ReDoc's files, served from the fastapi-offline package


def operation_id(route: APIRoute) -> str:
    """The route function's name (``post_transaction``, ``open_account``): what a client
    generated from /openapi.json calls its functions, instead of FastAPI's default of
    name, path and method (``post_transaction_v1_transactions_post``)."""
    return route.name


def create_app(runtime: Runtime, services: ApiServices | None = None) -> FastAPI:
    services = services or build_api_services(runtime)
    app = FastAPIOffline(title="Invario", version="0.1.0", description=API_DESCRIPTION, openapi_tags=TAGS,
                         telemetry=NATIVE_TELEMETRY_OFF, generate_unique_id_function=operation_id,
                         static_url=DOCS_ASSETS_PATH)
    app.state.runtime = runtime
    app.state.services = services
    app.state.read_models, app.state.tenant_directory = services.read_models, services.tenant_directory
    install_exception_handlers(app)
    follow_database_watch(app, runtime.watch)
    for module in (routes_accounts, routes_transaction_batch, routes_transactions, routes_admin, routes_recurring,
                   routes_events, routes_webhooks, routes_proofs):
        app.include_router(module.router)
    app.router.on_shutdown.append(services.event_stream.close)  # the stream's follower thread, if running
    install_batches(app, services.batch_store, services.batch_runner)  # /v1/batches and (SQLite) its runner
    body_max = runtime.settings.http_body_max_bytes
    app.add_middleware(BodyLimitMiddleware, max_bytes=body_max,
                       limits_by_path={BATCHES_PATH: runtime.settings.batch_body_max_bytes,
                                       routes_transaction_batch.PATH: body_max * routes_transaction_batch.BODY_LIMIT_FACTOR})
    app.add_middleware(RequestContextMiddleware)  # added last: outermost
    install_openapi(app)
    # /health, /health/ready, digests, audits and the write guard
    install_integrity(app, runtime, services.integrity_monitor)
    install_metrics(app)  # /metrics, /internal/metrics, /internal/metrics/json
    _size_thread_pool(app, runtime.settings.http_threads_max)
    return app


def _size_thread_pool(app: FastAPI, threads: int) -> None:
    """Let ``threads`` requests run at once (anyio's default is 40).

    The routes are synchronous, and a write waits in its thread until the group commit
    that holds it is durable: with 40 threads no more than 40 writes could share a
    commit, and requests beyond that would queue before even reaching the writer.
    """
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = threads
        async with previous(app_) as state:
            yield state

    app.router.lifespan_context = lifespan


def create_app_in_worker() -> FastAPI:
    """``invario serve --workers N``: one worker process's app, on a store of its own.

    The parent has checked the settings and the schema. The store is closed when the
    worker stops (after its requests in flight), which commits what it holds.
    """
    name_this_process("invario-serve")  # a process of its own: the parent's name does not carry over
    settings = get_settings()
    configure_logging(settings.log_level, settings.log_format)
    runtime = open_runtime(settings, serving=True)
    app = create_app(runtime)
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        try:
            async with previous(app_) as state:
                yield state
        finally:
            runtime.close()

    app.router.lifespan_context = lifespan
    return app
