"""Exception handlers: every failure leaves as a problem document, never a traceback."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from domain.errors import LedgerError
from interfaces.http.middleware import SCOPE_REQUEST_ID
from interfaces.http.problems import ApiProblem, ledger_error_parts, problem_response, validation_problem

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


def response_for(request: Request, exc: Exception) -> JSONResponse | None:
    """The problem response of an expected exception; ``None`` for anything unexpected."""
    if isinstance(exc, ApiProblem):
        return _problem(request, exc)
    if isinstance(exc, LedgerError):
        status, code, detail, details, headers = ledger_error_parts(exc)
        log.info("rejected %s: %s", code, detail)
        return _problem(request, ApiProblem(status, code, detail, headers, details))
    if isinstance(exc, RequestValidationError):
        return _problem(request, validation_problem(exc))
    if isinstance(exc, HTTPException):
        code = _CODE_BY_HTTP_STATUS.get(exc.status_code, "http_error")
        detail = exc.detail if isinstance(exc.detail, str) else code.replace("_", " ")
        limit = getattr(exc, "limit", None)
        extensions = {"limit": limit} if limit is not None else {}
        return _problem(request, ApiProblem(exc.status_code, code, detail, dict(exc.headers or {}), extensions))
    return None


def install_exception_handlers(app: FastAPI) -> None:
    async def handle(request: Request, exc: Exception) -> JSONResponse:
        response = response_for(request, exc)
        assert response is not None
        return response

    for kind in (ApiProblem, LedgerError, RequestValidationError, HTTPException):
        app.add_exception_handler(kind, handle)
