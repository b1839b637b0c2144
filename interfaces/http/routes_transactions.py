"""/v1/transactions: post, read, list and reverse journal entries."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Annotated
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from starlette.concurrency import run_in_threadpool

from application.ledger import PostingInstruction, Recorded
from domain.errors import InvalidTransaction, TransactionNotFound
from infrastructure.hold_metrics import CREATED, POSTED, VOIDED, count_hold
from interfaces.http.auth import Reader, Writer
from interfaces.http.docs import CREATE_ERRORS, LIST_ERRORS, QUERY_ERRORS
from interfaces.http.keyed_commands import IdempotencyKey, run_command
from interfaces.http.metrics import ledger_command
from interfaces.http.read_access import Cursor, Limit, check_date_range, read_models, reading_page
from interfaces.http.representations import (
    transaction_from_view,
    transaction_version_of_view,
    transaction_written,
)
from interfaces.http.responses import IfMatch, MinPosition, await_position, expected_version, respond
from interfaces.http.schemas import (
    IsoDate,
    PostHold,
    PostTransaction,
    ReverseTransaction,
    TransactionOut,
    TransactionPage,
    TransactionWritten,
)
from interfaces.http.services import committed, runtime_of

router = APIRouter(prefix="/v1/transactions", tags=["transactions"])


@router.post(
    "", status_code=201, response_model=TransactionWritten, summary="Post a balanced transaction",
    responses={**CREATE_ERRORS, 200: {"model": TransactionWritten,
                                      "description": "Already recorded with this external_id and the same content"}},
)
async def post_transaction(request: Request, body: PostTransaction, principal: Writer,
                           idempotency_key: IdempotencyKey = None) -> Response:
    ledger = runtime_of(request).ledger

    def use_case() -> Recorded:
        postings = [PostingInstruction(p.account_id, p.amount, p.currency) for p in body.postings]
        if body.status == "pending":
            return ledger.place_hold(principal.tenant_id, body.external_id, body.effective_date, postings,
                                     body.description, body.metadata, body.expires_at)
        return ledger.post_transaction(principal.tenant_id, body.external_id, body.effective_date, postings,
                                       body.description, body.metadata)

    async def execute() -> Recorded:
        pending = body.status == "pending"
        if body.expires_at is not None and not pending:
            raise InvalidTransaction("expires_at is only for pending transactions (holds)", field="expires_at")
        with ledger_command("place_hold" if pending else "post_transaction") as outcome:
            # Posting and placing a hold only check their arguments before the write.
            recorded = await committed(request, use_case, reads_before_write=False)
            outcome.transaction_id, outcome.replayed = recorded.aggregate.id, recorded.replayed
            outcome.position = recorded.position
        if pending and not recorded.replayed:
            count_hold(CREATED)
        if recorded.replayed:  # read here, in a thread, so that render() does not block the loop
            recorded = replace(recorded, position=await run_in_threadpool(ledger.recorder.max_notification_id))
        return recorded

    def render(recorded: Recorded) -> Response:
        transaction = recorded.aggregate
        # A replay wrote nothing; the current head of the log covers the original write
        # (read by execute(), or here in the writer thread when the response is stored).
        position = recorded.position
        if recorded.replayed and position is None:
            position = ledger.recorder.max_notification_id()
        return respond(transaction_written(recorded, position or 0), 200 if recorded.replayed else 201,
                       version=transaction.version, location=f"/v1/transactions/{transaction.id}")

    return await run_command(request, str(principal.tenant_id), idempotency_key, body, execute, render)


@router.get("", response_model=TransactionPage, responses=LIST_ERRORS, summary="List transactions")
def list_transactions(  # noqa: PLR0913
    request: Request, principal: Reader,
    account_id: Annotated[UUID | None, Query(description="Only transactions posting to this account")] = None,
    date_from: Annotated[IsoDate | None, Query(description="First effective date (inclusive)")] = None,
    date_to: Annotated[IsoDate | None, Query(description="Last effective date (inclusive)")] = None,
    cursor: Cursor = None, limit: Limit = 50, min_position: MinPosition = None,
) -> Response:
    check_date_range(date_from, date_to)
    models = read_models(request)
    await_position(request, models, min_position)
    page = reading_page(lambda: models.list_transactions(
        principal.tenant_id, account_id=account_id, date_from=date_from, date_to=date_to, cursor=cursor,
        page_size=limit,
    ))
    items = [transaction_from_view(view) for view in page.items]
    return respond(TransactionPage(items=items, next_cursor=page.next_cursor, position=page.position))


@router.get("/{transaction_id}", response_model=TransactionOut, responses=QUERY_ERRORS, summary="Read a transaction")
def get_transaction(request: Request, transaction_id: UUID, principal: Reader,
                    min_position: MinPosition = None) -> Response:
    models = read_models(request)
    await_position(request, models, min_position)
    view = models.get_transaction(principal.tenant_id, transaction_id)
    if view is None:
        raise TransactionNotFound(f"transaction {transaction_id} not found", transaction_id=str(transaction_id))
    return respond(transaction_from_view(view), version=transaction_version_of_view(view))


@router.post("/{transaction_id}/reverse", status_code=201, response_model=TransactionWritten, responses=CREATE_ERRORS,
             summary="Reverse a transaction: post its opposite, linked both ways")
async def reverse_transaction(request: Request, transaction_id: UUID, principal: Writer,
                              body: ReverseTransaction | None = None, if_match: IfMatch = None,
                              idempotency_key: IdempotencyKey = None) -> Response:
    async def execute() -> Recorded:
        with ledger_command("reverse_transaction", reversed_transaction_id=str(transaction_id)) as outcome:
            recorded = await committed(request, lambda: runtime_of(request).ledger.reverse_transaction(
                principal.tenant_id, transaction_id, body.effective_date if body else None,
                body.description if body else "", expected_version=expected_version(if_match),
            ))
            outcome.transaction_id, outcome.position = recorded.aggregate.id, recorded.position
        return recorded

    def render(recorded: Recorded) -> Response:
        reversal = recorded.aggregate
        return respond(transaction_written(recorded, recorded.position or 0), 201, version=reversal.version,
                       location=f"/v1/transactions/{reversal.id}")

    return await run_command(request, str(principal.tenant_id), idempotency_key, body, execute, render)


@router.post("/{transaction_id}/post", response_model=TransactionWritten, responses=CREATE_ERRORS,
             summary="Post (capture) a pending transaction, in full or in part; the rest is released")
async def post_hold(request: Request, transaction_id: UUID, principal: Writer, body: PostHold | None = None,
                    idempotency_key: IdempotencyKey = None) -> Response:
    async def execute() -> Recorded:
        postings = None
        if body is not None and body.postings is not None:
            postings = [PostingInstruction(p.account_id, p.amount, p.currency) for p in body.postings]
        with ledger_command("post_hold", hold_id=str(transaction_id)) as outcome:
            recorded = await committed(request, lambda: runtime_of(request).ledger.post_hold(
                principal.tenant_id, transaction_id, postings, body.effective_date if body else None
            ))
            outcome.transaction_id, outcome.position = recorded.aggregate.id, recorded.position
        count_hold(POSTED)
        return recorded

    return await run_command(request, str(principal.tenant_id), idempotency_key, body, execute, _hold_response)


def _hold_response(recorded: Recorded) -> Response:
    hold = recorded.aggregate
    return respond(transaction_written(recorded, recorded.position or 0), version=hold.version)


@router.post("/{transaction_id}/void", response_model=TransactionWritten, responses=CREATE_ERRORS,
             summary="Void a pending transaction: release everything it reserved")
async def void_hold(request: Request, transaction_id: UUID, principal: Writer,
                    idempotency_key: IdempotencyKey = None) -> Response:
    async def execute() -> Recorded:
        with ledger_command("void_hold", hold_id=str(transaction_id)) as outcome:
            recorded = await committed(request, lambda: runtime_of(request).ledger.void_hold(
                principal.tenant_id, transaction_id))
            outcome.transaction_id, outcome.position = recorded.aggregate.id, recorded.position
        count_hold(VOIDED)
        return recorded

    return await run_command(request, str(principal.tenant_id), idempotency_key, None, execute, _hold_response)
