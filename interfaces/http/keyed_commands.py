"""Commands run once per Idempotency-Key: fingerprints, stored responses and replays."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, TypeVar

from fastapi import Header, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool
from pydantic import BaseModel

from application.group_commit import ReceiptTaken, carrying
from application.retries import StoreReplaced
from domain.errors import LedgerError
from infrastructure.idempotency import (
    IdempotencyKeyInFlight,
    IdempotencyKeyReused,
    IdempotencyReceipt,
    StoredResponse,
)
from infrastructure.telemetry import instruments
from interfaces.http.exception_handlers import log_rejection, response_for
from interfaces.http.problems import ApiProblem
from interfaces.http.responses import POSITION_HEADER
from interfaces.http.services import runtime_of, services_of

T = TypeVar("T")

REPLAYED_HEADER = "Idempotent-Replayed"
ADMIN_SCOPE = "admin"
_STORED_HEADERS = ("content-type", "etag", "location", POSITION_HEADER.lower())
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

IdempotencyKey = Annotated[str | None, Header(
    alias="Idempotency-Key", max_length=255,
    description="Up to 255 visible ASCII characters, kept per tenant for at least 24 h: the same key with the same "
    "request replays the stored response; with another request it is 422; while the first is running, 409.",
)]


async def run_command(request: Request, scope: str, key: str | None, request_body: BaseModel | None,
                      execute: Callable[[], Awaitable[T]], render: Callable[[T], Response]) -> Response:
    """Run a command (``execute``, answered by ``render``) once per Idempotency-Key.

    The response of a keyed command is stored by the same transaction as its outcome
    (``infrastructure.idempotency``): the ledger renders it inside its commit. Business
    rejections are answered and stored too; an unexpected failure stores nothing.
    ``render`` must not block: it also runs on the event loop."""
    if key is None:
        try:
            return render(await execute())
        except (LedgerError, ApiProblem) as exc:
            return _rejection(request, exc)
    if not _IDEMPOTENCY_KEY.match(key):
        raise ApiProblem(400, "invalid_idempotency_key", "Idempotency-Key is 1-255 visible ASCII characters")
    store = services_of(request).idempotency
    fingerprint = _fingerprint(request, request_body)
    try:
        receipt = store.begin(scope, key, fingerprint, lambda outcome: _stored(request, render, outcome))
    except (IdempotencyKeyInFlight, IdempotencyKeyReused) as exc:
        raise _key_problem(exc) from None
    try:
        return await _run_keyed(request, receipt, execute, render)
    finally:
        store.end(receipt)
        if store.purge_due():
            await run_in_threadpool(store.purge_expired)


async def _run_keyed(request: Request, receipt: IdempotencyReceipt, execute: Callable[[], Awaitable[T]],
                     render: Callable[[T], Response]) -> Response:
    outcome: Any
    try:
        with carrying(receipt):
            outcome = await execute()
    except ReceiptTaken:  # an earlier request recorded this key: nothing of this one was saved
        return await run_in_threadpool(_recorded, request, receipt)
    except (LedgerError, ApiProblem) as exc:
        if receipt.written:  # rendered (quietly) with the commit
            log_rejection(exc)
            return receipt.value  # type: ignore[no-any-return]
        outcome, response = exc, _rejection(request, exc)
    else:
        if receipt.written:
            return receipt.value  # type: ignore[no-any-return]
        response = render(outcome)
    if response.status_code >= 500 or isinstance(outcome, StoreReplaced):
        return response  # not the key's answer: a retry with the same key runs the command again
    # Nothing was saved (rejected before the ledger, or a replay): record the answer alone.
    receipt.keep(*_stored_parts(response))
    try:
        await run_in_threadpool(runtime_of(request).ledger.record_receipt, receipt, outcome)
    except ReceiptTaken:
        return await run_in_threadpool(_recorded, request, receipt)
    return response


def _rejection(request: Request, exc: Exception) -> Response:
    response = response_for(request, exc)
    assert response is not None
    return response


def _stored(request: Request, render: Callable[[Any], Response], outcome: Any) -> tuple[StoredResponse, Response]:
    """Called by the ledger inside the commit's transaction (in its writer thread)."""
    if isinstance(outcome, BaseException):
        response = response_for(request, outcome, quiet=True)
        assert response is not None, "only expected rejections are stored"
    else:
        response = render(outcome)
    return _stored_parts(response)


def _stored_parts(response: Response) -> tuple[StoredResponse, Response]:
    headers = {k: v for k, v in response.headers.items() if k.lower() in _STORED_HEADERS}
    return StoredResponse(response.status_code, headers, bytes(response.body)), response


def _recorded(request: Request, receipt: IdempotencyReceipt) -> Response:
    """The answer to a request whose key was already recorded: the stored response."""
    try:
        stored = services_of(request).idempotency.lookup(receipt.scope, receipt.key, receipt.fingerprint)
    except (IdempotencyKeyInFlight, IdempotencyKeyReused) as exc:
        raise _key_problem(exc) from None
    if stored is None:  # expired and taken again meanwhile: rare, and retrying resolves it
        raise _key_problem(IdempotencyKeyInFlight())
    instruments().idempotent_replays.add(1, {"source": "idempotency_key"})
    return _replay(stored)


def _key_problem(exc: Exception) -> ApiProblem:
    if isinstance(exc, IdempotencyKeyReused):
        return ApiProblem(422, "idempotency_key_reused", "this Idempotency-Key was already used for a different request")
    return ApiProblem(409, "idempotency_key_in_flight",
                      "a request with this Idempotency-Key is still being processed; retry shortly",
                      headers={"Retry-After": "1"})


def _fingerprint(request: Request, body: BaseModel | None) -> str:
    document = {
        "method": request.method,
        "path": request.url.path,
        "if_match": request.headers.get("if-match"),
        "body": body.model_dump(mode="json") if body is not None else None,
    }
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _replay(stored: StoredResponse) -> Response:
    headers = {k: v for k, v in stored.headers.items() if k.lower() != "content-type"}
    headers[REPLAYED_HEADER] = "true"
    return Response(stored.body, status_code=stored.status_code, headers=headers,
                    media_type=stored.headers.get("content-type", "application/json"))
