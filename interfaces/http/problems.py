"""Every error as an RFC 9457 problem document (``application/problem+json``).

``STATUS_BY_ERROR`` is the one table from business rejections (``LedgerError``,
each with its stable ``code``) to HTTP statuses. Rejections by the HTTP layer
itself (authentication, limits, malformed requests, idempotency) are
``ApiProblem``s with their own stable codes. A problem document always has
``type``, ``title``, ``status``, ``detail`` and ``code``, plus ``instance`` (the
request path), ``request_id`` and the error's own details (``account_id``,
``imbalance``, ``errors``...). It never carries a traceback or a secret.

Status conventions: 400 malformed request (JSON, types, unknown or missing
fields, over-long strings); 401 no valid key; 403 valid key but not allowed
(scope, suspended tenant); 404 not found (including another tenant's ids); 409
conflicts with the current state or version; 413 body too large; 422 values the
ledger's rules reject; 429 rate limited; 503 read models behind, or the database
failing (``DATABASE_FAILURES``: always with ``Retry-After``).
"""

from __future__ import annotations

from typing import Any

from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from domain import errors as e
from infrastructure import batch_files as files

PROBLEM_MEDIA_TYPE = "application/problem+json"
TYPE_PREFIX = "urn:invario:problem:"
# Where RequestContextMiddleware keeps the request's id in the ASGI scope; every problem document carries it.
SCOPE_REQUEST_ID = "invario.request_id"

# The one table: business rejection -> HTTP status. Subclasses not listed inherit
# their parent's status, but tests require every LedgerError to be listed here.
STATUS_BY_ERROR: dict[type[e.LedgerError], int] = {
    e.InvalidAmount: 422,
    e.AmountPrecisionExceeded: 422,
    e.AmountOutOfRange: 422,
    e.UnknownCurrency: 422,
    e.InvalidMetadata: 422,
    e.InvalidText: 422,
    e.InvalidTenant: 422,
    e.TenantNotFound: 404,
    e.TenantAlreadyExists: 409,
    e.TenantSuspended: 403,
    e.TenantAlreadySuspended: 409,
    e.TenantNotSuspended: 409,
    e.InvalidAccount: 422,
    e.AccountNotFound: 404,
    e.AccountAlreadyExists: 409,
    e.AccountFrozen: 409,
    e.AccountNotFrozen: 409,
    e.AccountClosed: 409,
    e.AccountBalanceNotZero: 409,
    e.InsufficientFunds: 422,
    e.CurrencyMismatch: 422,
    e.InvalidTransaction: 422,
    e.TransactionUnbalanced: 422,
    e.TooFewPostings: 422,
    e.TooManyPostings: 422,
    e.ZeroAmount: 422,
    e.DuplicatePostingAccount: 422,
    e.TransactionNotFound: 404,
    e.DuplicateExternalId: 409,
    e.LinkedTransferFailed: 422,
    e.TransactionAlreadyReversed: 409,
    e.ReversalNotReversible: 409,
    e.ConcurrencyConflict: 409,
    e.VersionMismatch: 409,
    e.InvalidApiKey: 401,
    e.ApiKeyRevoked: 401,
    e.ScopeNotGranted: 403,
    e.InvalidScopes: 422,
    e.TooManyApiKeys: 409,
    e.NotAHold: 409,
    e.HoldAlreadyResolved: 409,
    e.HoldExpired: 409,
    e.HoldNotExpired: 409,
    e.InvalidCapture: 422,
    e.TransactionNotPosted: 409,
    e.AccountHasHolds: 409,
    e.BatchNotFound: 404,
    files.InvalidBatch: 422,  # the file-format errors: the batch file reader's, not the domain's
    files.InvalidEncoding: 422,
    files.MalformedCsv: 422,
    files.MalformedJsonLine: 422,
    files.InvalidDate: 422,
    files.MissingField: 422,
    e.InvalidRecurringTransaction: 422,
    e.RecurringTransactionNotFound: 404,
    e.RecurringTransactionCancelled: 409,
    e.CheckpointNotFound: 404,
    e.CheckpointPending: 409,
    e.InvalidProofRequest: 422,
}

# The one table of database failures (codes from ``infrastructure.db_errors``): status, Retry-After
# seconds, and what the client is told. A command that failed this way wrote nothing: its events are
# inserted in one transaction, which the database rolled back. docs/failure-modes.md describes each.
DATABASE_FAILURES: dict[str, tuple[int, int, str]] = {
    "database_unavailable": (
        503, 5, "the database does not answer right now; retry later (a command answered so wrote "
        "nothing: retry it with the same Idempotency-Key)"),
    "database_read_only": (
        503, 30, "the database accepts no writes right now (it is read-only); nothing was written; "
        "reads keep working"),
    "database_busy": (
        503, 1, "the database was too busy to finish this in time (a lock or statement timeout ran out); "
        "nothing was written; retry"),
    "database_disk_full": (
        503, 60, "the database has run out of disk space; nothing was written; an operator must free space"),
}

_RESERVED = frozenset({"type", "title", "status", "detail", "code", "instance", "request_id"})
# Error details whose names collide with the members of a problem document.
_RENAMED = {"code": "account_code"}


class ApiProblem(Exception):
    """A rejection decided by the HTTP layer (not a business rule)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None,
                 extensions: dict[str, Any] | None = None, **more: Any) -> None:
        assert 400 <= status < 600
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.headers = headers or {}
        self.extensions = {**(extensions or {}), **more}


class Problem(BaseModel):
    """RFC 9457 problem details; extension members depend on ``code``."""

    model_config = ConfigDict(
        extra="allow",
        json_schema_extra={
            "examples": [{
                "type": "urn:invario:problem:transaction_unbalanced",
                "title": "Transaction unbalanced",
                "status": 422,
                "detail": "postings must sum to zero per currency; they are off by 0.01 BRL",
                "code": "transaction_unbalanced",
                "instance": "/v1/transactions",
                "request_id": "4f9c2d0e8b7a4c1e9d3f5a6b7c8d9e0f",
                "imbalance": {"BRL": "0.01"},
            }]
        },
    )

    type: str = Field(description="URI naming the kind of problem: urn:invario:problem:<code>")
    title: str = Field(description="Short summary of the kind of problem")
    status: int = Field(description="The HTTP status code")
    detail: str = Field(description="What went wrong with this request, for a human")
    code: str = Field(description="Stable machine-readable code; never renamed once released")
    instance: str | None = Field(None, description="The request path")
    request_id: str | None = Field(None, description="The X-Request-ID of the request")


def status_for(error: e.LedgerError) -> int:
    for cls in type(error).__mro__:
        if cls in STATUS_BY_ERROR:
            return STATUS_BY_ERROR[cls]  # type: ignore[index]
    raise AssertionError(f"{type(error).__name__} has no HTTP status in STATUS_BY_ERROR")


_ACRONYMS = {"api": "API", "json": "JSON", "id": "ID"}


def title_for(code: str) -> str:
    words = [_ACRONYMS.get(word, word) for word in code.split("_")]
    return " ".join([words[0][:1].upper() + words[0][1:], *words[1:]])


def problem_document(status: int, code: str, detail: str, *, instance: str | None, request_id: str | None,
                     extensions: dict[str, Any] | None = None) -> dict[str, Any]:
    """The JSON body of a problem (also one item's outcome inside a batch's answer)."""
    body: dict[str, Any] = {
        "type": TYPE_PREFIX + code, "title": title_for(code), "status": status, "detail": detail, "code": code,
        "instance": instance, "request_id": request_id,
    }
    for name, value in (extensions or {}).items():
        name = _RENAMED.get(name, name)
        if name not in _RESERVED:
            body[name] = value
    return jsonable_encoder(body)  # type: ignore[no-any-return]


def problem_response(  # noqa: PLR0913
    status: int, code: str, detail: str, *, instance: str | None, request_id: str | None,
    headers: dict[str, str] | None = None, extensions: dict[str, Any] | None = None,
) -> JSONResponse:
    body = problem_document(status, code, detail, instance=instance, request_id=request_id, extensions=extensions)
    return JSONResponse(body, status_code=status, headers=headers, media_type=PROBLEM_MEDIA_TYPE)


def ledger_error_parts(error: e.LedgerError) -> tuple[int, str, str, dict[str, Any], dict[str, str]]:
    status = status_for(error)
    headers = {"WWW-Authenticate": 'Bearer error="invalid_token"'} if status == 401 else {}
    return status, error.code, error.message, dict(error.details), headers


def database_problem(code: str) -> ApiProblem:
    """The problem for a database failure: never the driver's message (it may name hosts and users)."""
    status, retry_after, detail = DATABASE_FAILURES[code]
    return ApiProblem(status, code, detail, headers={"Retry-After": str(retry_after)})


# --- request validation (400) ------------------------------------------------------

_CODE_BY_PYDANTIC_TYPE = {
    "json_invalid": "malformed_json",
    "extra_forbidden": "unknown_field",
    "missing": "missing_field",
    "string_too_long": "string_too_long",
    "too_long": "too_many_items",
    # A lone surrogate ("\ud800") in a str field: not a Unicode string at all, refused before
    # the ledger's own text rule (domain/text.py) sees it, under the same code and status.
    "string_unicode": "invalid_text",
}


def validation_problem(error: RequestValidationError) -> ApiProblem:
    """400 with one entry per problem (location, message, type); never echoes the input."""
    details = []
    codes = set()
    for item in error.errors()[:20]:
        location = ".".join(str(part) for part in item.get("loc", ()))
        kind = str(item.get("type", "invalid"))
        codes.add(_CODE_BY_PYDANTIC_TYPE.get(kind, "invalid_request"))
        details.append({"location": location, "message": str(item.get("msg", ""))[:300], "type": kind})
    code = codes.pop() if len(codes) == 1 else "invalid_request"
    summary = "; ".join(f"{d['location']}: {d['message']}" for d in details[:3])
    # Refused text is 422 wherever it is caught, here or by the ledger (domain/text.py).
    status = 422 if code == "invalid_text" else 400
    return ApiProblem(status, code, f"the request is malformed: {summary}", errors=details)
