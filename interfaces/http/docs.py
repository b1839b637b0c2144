"""OpenAPI documentation helpers: error responses and the API description."""

from __future__ import annotations

from typing import Any

from interfaces.http.problems import Problem

_DESCRIPTIONS = {
    400: "Malformed request: JSON, types, unknown or missing fields, over-long strings, bad cursor",
    401: "No valid credentials (missing, unknown or revoked key)",
    403: "Not allowed: key lacks the scope, or the tenant is suspended (writes)",
    404: "Not found (including another tenant's ids)",
    409: "Conflict with the current state or version, or Idempotency-Key in flight",
    413: "Request body too large",
    422: "The ledger's rules reject the values, or Idempotency-Key reused with another request",
    429: "Rate limited: the tenant's rate (rate_limited), or too many failed authentications from this "
         "client address (auth_throttled); see Retry-After",
    503: "The read models have not reached ?min_position yet (see Retry-After)",
}


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    return {status: {"model": Problem, "description": _DESCRIPTIONS[status]} for status in statuses}


QUERY_ERRORS = errors(400, 401, 403, 404, 429, 503)
LIST_ERRORS = errors(400, 401, 403, 429, 503)
COMMAND_ERRORS = errors(400, 401, 403, 404, 409, 413, 422, 429)
CREATE_ERRORS = errors(400, 401, 403, 404, 409, 413, 422, 429)

API_DESCRIPTION = """
Event-sourced, tamper-evident double-entry ledger.

**Authentication.** `Authorization: Bearer <API key>` on every `/v1` route. Keys are issued by
operators (`invario create-key`); `read` scope for queries, `write` for commands. Every id belongs
to the key's tenant: another tenant's ids answer 404. `/admin` routes take
`Authorization: Bearer <INVARIO_ADMIN_TOKEN>`.

**Amounts** are signed decimal strings in the account's currency (`"12.34"`); a positive posting
amount is a debit, and postings sum to zero per currency. More decimals than the currency has is
`amount_precision_exceeded`, never a rounding.

**Errors** are RFC 9457 `application/problem+json` documents with a stable `code`.

**Limits.** Request bodies up to `INVARIO_HTTP_BODY_MAX_BYTES` (256 KiB by default; larger: 413
`body_too_large`; `POST /v1/transactions/batch` 16 times that); 1-1,000 transactions per batch; 2-100 postings per transaction; account codes 64 characters, names 200,
descriptions 500, external ids 128; metadata up to 50 keys of 64 characters with values of 512;
pages of at most 200 items; `Idempotency-Key` up to 255 characters. Each tenant has a token bucket
of `INVARIO_RATE_LIMIT_BURST` requests refilled at `INVARIO_RATE_LIMIT_PER_SECOND` (429
`rate_limited` with `Retry-After` beyond it). A client address that fails to authenticate
`INVARIO_AUTH_FAILURES_MAX` times within `INVARIO_AUTH_FAILURES_WINDOW_SECONDS` is answered 429
`auth_throttled` with `Retry-After`, whatever key it sends, until the window gives it another try.

**Retries.** Every POST takes an `Idempotency-Key` (kept per tenant for at least 24 h). A
transaction's `external_id` gives the same guarantee in the ledger itself.

**Versions.** Accounts, transactions and tenants carry a `version`, sent as `ETag`; changes accept
`If-Match` and answer 409 `version_mismatch` when it is stale.

**Read your writes.** Queries read projections of the event log. Commands return the log
`position` of their write (body and `Invario-Position` header); pass it to a query as
`?min_position=N` and the query waits (at most `INVARIO_READ_WAIT_SECONDS`) until it is reflected.

**Correlation.** `X-Request-ID` (1-128 of `A-Za-z0-9._:-`) is accepted or generated, echoed on the
response and attached to the server's log lines of the request.
"""
