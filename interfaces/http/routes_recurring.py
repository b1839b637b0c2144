"""/v1/recurring-transactions: standing orders posted by the worker on a schedule (docs/jobs.md).

Commands go to the recurring use case; queries read the ``recurring_transactions``
read model, never the aggregates.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Literal
from uuid import UUID

from fastapi import APIRouter, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from application.ledger import PostingInstruction, Recorded
from application.recurring import RecurringTransactions
from domain.errors import RecurringTransactionNotFound
from domain.metadata import METADATA_KEYS_MAX
from domain.money import format_amount
from domain.recurring import FREQUENCIES, WEEKDAYS, RecurringTransaction, Schedule
from domain.transaction import DESCRIPTION_LENGTH_MAX, POSTINGS_MAX, POSTINGS_MIN
from interfaces.http.auth import Reader, Writer
from interfaces.http.docs import CREATE_ERRORS, LIST_ERRORS, QUERY_ERRORS
from interfaces.http.keyed_commands import IdempotencyKey, run_command
from interfaces.http.read_access import Cursor, Limit, read_models, reading_page
from interfaces.http.responses import MinPosition, await_position, respond
from interfaces.http.schemas import Body, IsoDate, Page, PostingIn, PostingOut
from interfaces.http.services import committed, services_of
from projections.read_models.recurring_queries import RecurringReadModel, RecurringView

router = APIRouter(prefix="/v1/recurring-transactions", tags=["recurring"])


class CreateRecurringTransaction(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{
        "frequency": "monthly", "day_of_month": 31, "start_date": "2026-12-01", "description": "Rent",
        "postings": [
            {"account_id": "0b8a3c2e-6f1d-5d2b-9a51-3f0f2c1e7a11", "amount": "1200.00"},
            {"account_id": "5e7d9b1a-2c4f-5a8e-8b3d-1f6e0a9c4d22", "amount": "-1200.00"},
        ],
    }]})

    frequency: Literal["daily", "weekly", "monthly"] = Field(description=" | ".join(FREQUENCIES))
    weekday: Literal[WEEKDAYS] | None = Field(None, description="Weekly schedules only: monday..sunday")  # type: ignore[valid-type]
    day_of_month: int | None = Field(
        None, description="Monthly schedules only: 1-31; in shorter months the run falls on the last day",
    )
    start_date: IsoDate = Field(description="The first day a run may fall on (runs are posted with their own date)")
    end_date: IsoDate | None = Field(None, description="The last day a run may fall on (inclusive); none: no end")
    description: str = Field("", max_length=DESCRIPTION_LENGTH_MAX)
    postings: list[PostingIn] = Field(json_schema_extra={"minItems": POSTINGS_MIN, "maxItems": POSTINGS_MAX},
                                      description="The template: postings summing to zero per currency")
    metadata: dict[str, str] | None = Field(None, json_schema_extra={"maxProperties": METADATA_KEYS_MAX})


class RecurringTransactionOut(BaseModel):
    id: UUID
    frequency: str
    weekday: str | None
    day_of_month: int | None
    start_date: date
    end_date: date | None
    description: str
    metadata: dict[str, str]
    postings: list[PostingOut]
    status: Literal["active", "cancelled"]
    version: int
    created_at: datetime
    updated_at: datetime
    position: int = Field(description="Log position this representation reflects")


class RecurringTransactionPage(Page):
    items: list[RecurringTransactionOut]


def _postings_out(postings: list[tuple[UUID, int, str]]) -> list[PostingOut]:
    return [PostingOut(account_id=a, amount=format_amount(m, c), currency=c) for a, m, c in postings]


def _from_aggregate(recurring: RecurringTransaction, position: int) -> RecurringTransactionOut:
    schedule = recurring.schedule
    return RecurringTransactionOut(
        id=recurring.id, frequency=schedule.frequency, weekday=schedule.weekday,
        day_of_month=schedule.day_of_month, start_date=recurring.start_date, end_date=recurring.end_date,
        description=recurring.description, metadata=dict(recurring.metadata), status=recurring.status,
        postings=_postings_out([(p.account_id, p.amount_minor, p.currency) for p in recurring.postings]),
        version=recurring.version, created_at=recurring.created_on, updated_at=recurring.modified_on,
        position=position,
    )


def _from_view(view: RecurringView) -> RecurringTransactionOut:
    return RecurringTransactionOut(
        id=view.id, frequency=view.frequency, weekday=view.weekday, day_of_month=view.day_of_month,
        start_date=view.start_date, end_date=view.end_date, description=view.description,
        metadata=dict(view.metadata), status=view.status, postings=_postings_out(list(view.postings)),
        version=view.version, created_at=view.created_at, updated_at=view.updated_at, position=view.position,
    )


def _service(request: Request) -> RecurringTransactions:
    return services_of(request).recurring


def _read_model(request: Request) -> RecurringReadModel:
    return services_of(request).recurring_reads


@router.post("", status_code=201, response_model=RecurringTransactionOut, responses=CREATE_ERRORS,
             summary="Create a recurring transaction: a schedule and a template the worker posts on each run")
async def create_recurring(request: Request, body: CreateRecurringTransaction, principal: Writer,
                           idempotency_key: IdempotencyKey = None) -> Response:
    def use_case() -> Recorded:
        schedule = Schedule(body.frequency, body.weekday, body.day_of_month)
        postings = [PostingInstruction(p.account_id, p.amount, p.currency) for p in body.postings]
        return _service(request).create(principal.tenant_id, schedule, body.start_date, postings,
                                        body.description, body.metadata, body.end_date)

    def render(recorded: Recorded) -> Response:
        recurring = recorded.aggregate
        return respond(_from_aggregate(recurring, recorded.position or 0), 201, version=recurring.version,
                       location=f"/v1/recurring-transactions/{recurring.id}")

    return await run_command(request, str(principal.tenant_id), idempotency_key, body,
                             lambda: committed(request, use_case), render)


@router.get("", response_model=RecurringTransactionPage, responses=LIST_ERRORS,
            summary="List recurring transactions (oldest first)")
def list_recurring(request: Request, principal: Reader, cursor: Cursor = None, limit: Limit = 50,
                   min_position: MinPosition = None) -> Response:
    await_position(request, read_models(request), min_position)
    page = reading_page(lambda: _read_model(request).list(principal.tenant_id, cursor=cursor, page_size=limit))
    items = [_from_view(view) for view in page.items]
    return respond(RecurringTransactionPage(items=items, next_cursor=page.next_cursor, position=page.position))


@router.get("/{recurring_id}", response_model=RecurringTransactionOut, responses=QUERY_ERRORS,
            summary="Read a recurring transaction")
def get_recurring(request: Request, recurring_id: UUID, principal: Reader,
                  min_position: MinPosition = None) -> Response:
    await_position(request, read_models(request), min_position)
    view = _read_model(request).get(principal.tenant_id, recurring_id)
    if view is None:
        raise RecurringTransactionNotFound(f"recurring transaction {recurring_id} not found",
                                           recurring_transaction_id=str(recurring_id))
    return respond(_from_view(view), version=view.version)


@router.delete("/{recurring_id}", response_model=RecurringTransactionOut, responses=CREATE_ERRORS,
               summary="Cancel a recurring transaction: no further runs are posted")
async def cancel_recurring(request: Request, recurring_id: UUID, principal: Writer,
                     idempotency_key: IdempotencyKey = None) -> Response:
    def render(recorded: Recorded) -> Response:
        recurring = recorded.aggregate
        return respond(_from_aggregate(recurring, recorded.position or 0), version=recurring.version)

    return await run_command(request, str(principal.tenant_id), idempotency_key, None,
                             lambda: committed(request, lambda: _service(request).cancel(principal.tenant_id,
                                                                                         recurring_id)), render)
