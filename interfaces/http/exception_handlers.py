"""Exception handlers: every failure leaves as a problem document, never a traceback.

Failures of the database (down, read-only, lock timeout, disk full: see
``infrastructure.db_errors``) are 503 problems with ``Retry-After`` from the
``DATABASE_FAILURES`` table. While the database does not answer, the
``DatabaseGateMiddleware`` answers requests to ``/v1`` and ``/admin`` at once
instead of letting each wait for a connection (one trial request per
``GATE_HOLD_SECONDS`` finds out when it is back). On PostgreSQL the gate also
follows the process's ``DatabaseWatch`` (``infrastructure.pg_watch``): it shuts as
soon as the liveness probe gets no answer, and opens at the probe's first answer,
so recovery does not wait for a trial request.
"""

from __future__ import annotations

import logging
import sqlite3

import psycopg
from eventsourcing.persistence import PersistenceError
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from domain.errors import LedgerError
from infrastructure.db_errors import DatabaseFailure, DatabaseGate, classify_database_error
from infrastructure.errors import DatabaseUnavailable
from infrastructure.pg_watch import DatabaseWatch
from interfaces.http.problems import (
    SCOPE_REQUEST_ID,
    ApiProblem,
    database_problem,
    ledger_error_parts,
    problem_response,
    validation_problem,
)

GATE_HOLD_SECONDS = 2.0
_GATED_PREFIXES = ("/v1/", "/admin/")
# What the database layers raise; only those classified as failures of the database become 503s.
_DATABASE_ERRORS = (PersistenceError, DBAPIError, psycopg.Error, sqlite3.Error, DatabaseUnavailable)

log = logging.getLogger("invario.http")

# FastAPI raises HTTPException(400) only when it cannot parse a body (e.g. JSON nested too deep).
_CODE_BY_HTTP_STATUS = {
    400: "malformed_json", 404: "not_found", 405: "method_not_allowed", 406: "not_acceptable",
    413: "body_too_large", 415: "unsupported_media_type",
}


def _problem(request: Request, exc: ApiProblem) -> JSONResponse:
    return problem_response(
        exc.status, exc.code, exc.detail, instance=request.url.path, request_id=request.scope.get(SCOPE_REQUEST_ID),
        headers=exc.headers, extensions=exc.extensions,
    )


def response_for(request: Request, exc: Exception, *, quiet: bool = False) -> JSONResponse | None:
    """The problem response of an expected exception; ``None`` for anything unexpected.
    ``quiet``: the rejection is logged by ``log_rejection`` elsewhere (in the request's thread)."""
    if isinstance(exc, ApiProblem):
        return _problem(request, exc)
    if isinstance(exc, LedgerError):
        status, code, detail, details, headers = ledger_error_parts(exc)
        if not quiet:
            log.info("rejected %s: %s", code, detail)
        return _problem(request, ApiProblem(status, code, detail, headers, details))
    if isinstance(exc, RequestValidationError):
        return _problem(request, validation_problem(exc))
    if isinstance(exc, HTTPException):
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        limit = getattr(exc, "limit", None)
        extensions = {"limit": limit} if limit is not None else {}
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(allowed_methods(request))
        return _problem(request, ApiProblem(exc.status_code, code, detail, headers, extensions))
    return None


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def allowed_methods(request: Request) -> list[str]:
    """Every method some route answers at this path. Starlette's 405 names only the first
    route whose path matched (``OPTIONS /v1/accounts`` said ``Allow: POST``, leaving out GET)."""
    routes = request.app.router.routes
    return [method for method in _METHODS
            if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)]


def log_rejection(exc: Exception) -> None:
    if isinstance(exc, LedgerError):
        _status, code, detail, _details, _headers = ledger_error_parts(exc)
        log.info("rejected %s: %s", code, detail)


def database_failure_response(scope: Scope, exc: BaseException) -> JSONResponse | None:
    """The 503 of a failure of the database (noted on the app's gate); ``None`` if ``exc`` is not one."""
    failure = classify_database_error(exc)
    if failure is None:
        return None
    gate = _gate_of(scope)
    if gate is not None:
        gate.record(failure)
    log.warning("database failure %s (sqlstate %s) serving %s %s: %s", failure.code, failure.sqlstate,
                scope.get("method"), scope.get("path"), failure.reason,
                extra={"event": "database_failure", "code": failure.code})
    problem = database_problem(failure.code)
    return problem_response(problem.status, problem.code, problem.detail, instance=scope.get("path"),
                            request_id=scope.get(SCOPE_REQUEST_ID), headers=problem.headers)


def _gate_of(scope: Scope) -> DatabaseGate | None:
    app = scope.get("app")
    return getattr(getattr(app, "state", None), "database_gate", None)


def install_exception_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = response_for(request, exc)
        assert response is not None
        return response

    async def handle_database(request: Request, exc: Exception) -> JSONResponse:
        response = database_failure_response(request.scope, exc)
        if response is None:
            raise exc  # not a failure of the database: an unexpected error (500, logged with its traceback)
        return response

    for kind in (ApiProblem, LedgerError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, handle)
    for kind in _DATABASE_ERRORS:
        app.add_exception_handler(kind, handle_database)
    app.state.database_gate = DatabaseGate(GATE_HOLD_SECONDS)
    app.add_middleware(DatabaseGateMiddleware)


def follow_database_watch(app: FastAPI, watch: DatabaseWatch | None) -> None:
    """Let the liveness probe shut and open the app's gate (until the app shuts down)."""
    gate = app.state.database_gate
    if watch is None:
        return

    def follow(failure: DatabaseFailure | None) -> None:
        if failure is not None:
            gate.record(failure)
        elif gate.shut:
            gate.record(None)

    watch.subscribe(follow)
    app.router.on_shutdown.append(lambda: watch.unsubscribe(follow))


class DatabaseGateMiddleware:
    """503 ``database_unavailable`` at once while the app's ``DatabaseGate`` is shut; reopens it on success."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        gate = _gate_of(scope)
        if scope["type"] != "http" or gate is None:
            await self.app(scope, receive, send)
            return
        path = scope.get("path", "")
        gated = path.startswith(_GATED_PREFIXES)
        noted = gated or path.startswith("/health")  # answers that prove the database works
        if gated and not gate.admits():
            problem = database_problem("database_unavailable")
            response = problem_response(problem.status, problem.code, problem.detail, instance=path,
                                        request_id=scope.get(SCOPE_REQUEST_ID), headers=problem.headers)
            await response(scope, receive, send)
            return

        async def noting_success(message: Message) -> None:
            if message["type"] == "http.response.start" and message["status"] < 500 and gate.shut and noted:
                gate.record(None)
            await send(message)

        await self.app(scope, receive, noting_success)
