"""POST /v1/transactions/batch: up to 1,000 transactions in one request, one save.

The request's transactions are decided in order against one working set (each
sees the effect of those before it, e.g. on a balance floor) and every accepted
one is saved by ONE save (``Ledger.post_transactions``). Each has its own
outcome, answered in order: ``created``, ``replayed`` (its external_id was
already recorded with the same content, earlier or by an earlier item of the
same request) or ``rejected`` with a problem document.

- Not atomic: 200 with the outcomes, whatever they are.
- ``atomic``: all or nothing, as TigerBeetle's linked transfers. Everything
  accepted: 200. Anything rejected: nothing is posted, and the answer is 422
  ``atomic_batch_rejected`` (a problem document carrying the same ``results``):
  the rejected items with their own problems, every other item
  ``linked_transfer_failed``.

One Idempotency-Key covers the whole request, written by the same save as its
events (``infrastructure.idempotency``). The request counts as one against the
tenant's rate limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool

from application.access import Principal
from application.ledger import Ledger, PostingInstruction, Recorded, TransactionRequest
from domain.errors import LedgerError
from interfaces.http.auth import Writer
from interfaces.http.docs import errors
from interfaces.http.keyed_commands import IdempotencyKey, run_command
from interfaces.http.problems import (
    PROBLEM_MEDIA_TYPE,
    SCOPE_REQUEST_ID,
    ApiProblem,
    Problem,
    ledger_error_parts,
    problem_document,
)
from interfaces.http.representations import transaction_written
from infrastructure.telemetry import instruments
from interfaces.http.schemas import (
    BATCH_TRANSACTIONS_MAX,
    TransactionBatchItem,
    TransactionBatchOut,
    PostTransaction,
    PostTransactionBatch,
)
from interfaces.http.responses import POSITION_HEADER, respond
from interfaces.http.services import runtime_of

PATH = "/v1/transactions/batch"
# 1,000 transactions need more than the 256 KiB of one request by default (~170 bytes
# each at their smallest): the body limit of this path is this many times the usual one.
BODY_LIMIT_FACTOR = 16
router = APIRouter(prefix="/v1/transactions", tags=["transactions"])

_ATOMIC_REJECTED = {
    "model": Problem,
    "description": "atomic: a transaction was rejected, so none was posted (`atomic_batch_rejected`, with "
    "`failed_index` and the `results` of every transaction); also `batch_too_large` / `batch_empty`",
}


@dataclass(frozen=True)
class _Outcomes:
    """Every transaction's outcome, in order, and the log head when none was written."""

    results: Sequence[Recorded | LedgerError]
    head: int | None = None


@router.post(
    "/batch", response_model=TransactionBatchOut, summary="Post up to 1,000 transactions in one request, in one save",
    responses={**errors(400, 401, 403, 409, 413, 429), 422: _ATOMIC_REJECTED},
)
async def post_transaction_batch(request: Request, body: PostTransactionBatch, principal: Writer,
                                 idempotency_key: IdempotencyKey = None) -> Response:
    """Each item is the body of `POST /v1/transactions`, with its own `external_id` and its own outcome.
    Not atomic: 200 with one result per item, in order (`created`, `replayed` or `rejected` with its
    problem). `atomic: true`: all or nothing; when any item is rejected nothing is posted and the answer
    is 422 `atomic_batch_rejected`, the other items `linked_transfer_failed`. Two items with one
    external_id: the second replays the first (same content) or is `duplicate_external_id`."""
    ledger = runtime_of(request).ledger

    async def execute() -> _Outcomes:
        _check_size(body.transactions)
        requests = [_request_of(item) for item in body.transactions]
        return await run_in_threadpool(_post, ledger, principal, requests, body.atomic)

    def render(outcomes: _Outcomes | list[Recorded | LedgerError]) -> Response:
        # Called with a plain list inside the commit when a key is stored (in a thread: reading the head is fine).
        if not isinstance(outcomes, _Outcomes):
            outcomes = _Outcomes(outcomes)
        return _answer(request, ledger, body.atomic, outcomes)

    return await run_command(request, str(principal.tenant_id), idempotency_key, body, execute, render)


def _check_size(transactions: Sequence[PostTransaction]) -> None:
    if not transactions:
        raise ApiProblem(422, "batch_empty", "a batch holds at least one transaction")
    if len(transactions) > BATCH_TRANSACTIONS_MAX:
        raise ApiProblem(422, "batch_too_large", f"a batch holds at most {BATCH_TRANSACTIONS_MAX} transactions, "
                         f"not {len(transactions)}; split it", limit=BATCH_TRANSACTIONS_MAX)


def _request_of(item: PostTransaction) -> TransactionRequest:
    postings = [PostingInstruction(p.account_id, p.amount, p.currency) for p in item.postings]
    return TransactionRequest(item.external_id, item.effective_date, postings, item.description, item.metadata,
                              pending=item.status == "pending", expires_at=item.expires_at)


def _post(ledger: Ledger, principal: Principal, requests: list[TransactionRequest], atomic: bool) -> _Outcomes:
    """In a worker thread: the bulk call holds it until its one save has committed."""
    results = ledger.post_transactions(principal.tenant_id, requests, atomic=atomic)
    _count(results)
    written = any(isinstance(r, Recorded) and r.position is not None for r in results)
    return _Outcomes(results, None if written else ledger.recorder.max_notification_id() or 0)


def _count(results: Sequence[Recorded | LedgerError]) -> None:
    """invario_transactions_total and the external_id replays, per transaction as for single writes."""
    each = instruments()
    replayed = sum(1 for r in results if isinstance(r, Recorded) and r.replayed)
    rejected = sum(1 for r in results if isinstance(r, LedgerError))
    if accepted := len(results) - replayed - rejected:
        each.transactions.add(accepted, {"status": "accepted"})
    if rejected:
        each.transactions.add(rejected, {"status": "rejected"})
    if replayed:
        each.idempotent_replays.add(replayed, {"source": "external_id"})


def _answer(request: Request, ledger: Ledger, atomic: bool, outcomes: _Outcomes) -> Response:
    positions = [r.position for r in outcomes.results if isinstance(r, Recorded) and r.position is not None]
    # A replay wrote nothing: the batch's own last position (or the head) covers what it replays.
    position = max(positions) if positions else outcomes.head
    if position is None:
        position = ledger.recorder.max_notification_id() or 0
    items = [_item(request, index, result, position) for index, result in enumerate(outcomes.results)]
    counts = {status: sum(1 for i in items if i.status == status) for status in ("created", "replayed", "rejected")}
    answer = TransactionBatchOut(atomic=atomic, results=items, position=position, **counts)
    failed = next((i.index for i in items if i.problem is not None
                   and i.problem["code"] != "linked_transfer_failed"), None)
    if not atomic or failed is None:
        return respond(answer)
    detail = f"transaction {failed} of this all-or-nothing batch was rejected, so none was posted"
    document = problem_document(422, "atomic_batch_rejected", detail, instance=request.url.path,
                                request_id=request.scope.get(SCOPE_REQUEST_ID),
                                extensions={"failed_index": failed, **answer.model_dump(mode="json")})
    return JSONResponse(document, status_code=422, media_type=PROBLEM_MEDIA_TYPE,
                        headers={POSITION_HEADER: str(position)})


def _item(request: Request, index: int, result: Recorded | LedgerError, batch_position: int) -> TransactionBatchItem:
    if isinstance(result, LedgerError):
        status, code, detail, details, _headers = ledger_error_parts(result)
        problem: dict[str, Any] = problem_document(status, code, detail, instance=request.url.path,
                                                   request_id=request.scope.get(SCOPE_REQUEST_ID),
                                                   extensions=details)
        return TransactionBatchItem(index=index, status="rejected", transaction=None, problem=problem)
    position = result.position if result.position is not None else batch_position
    return TransactionBatchItem(index=index, status="replayed" if result.replayed else "created",
                        transaction=transaction_written(result, position), problem=None)
