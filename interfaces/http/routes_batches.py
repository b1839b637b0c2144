"""/v1/batches: upload a file of transactions (CSV or JSONL), then follow its processing.

The upload is streamed into the database in chunks (never held whole in
memory), bounded by ``INVARIO_BATCH_BODY_MAX_BYTES``, and answered 202 as soon
as it is stored; a worker processes it (on the embedded SQLite store, a thread
of this process). The format is in ``docs/batches.md``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Annotated, Any, Literal
from uuid import UUID

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool

from application.batches import ATOMIC, CSV, JSONL
from domain.errors import BatchNotFound
from infrastructure.batch_runner import BatchRunner, Upload
from infrastructure.batch_store import BatchStore
from interfaces.http.auth import Reader, Writer
from interfaces.http.docs import errors
from interfaces.http.problems import ApiProblem, Problem
from interfaces.http.read_access import Cursor, Limit

PATH = "/v1/batches"
router = APIRouter(prefix=PATH, tags=["batches"])

FORMAT_BY_MEDIA_TYPE = {
    "text/csv": CSV, "application/csv": CSV,
    "application/x-ndjson": JSONL, "application/jsonl": JSONL, "application/x-jsonlines": JSONL,
    "application/jsonlines": JSONL,
}
_TEXT_SCHEMA = {"schema": {"type": "string"}}
_UPLOAD_BODY = {
    "required": True,
    "description": "The file: CSV with a header line, or JSON Lines (see docs/batches.md). Up to "
                   "INVARIO_BATCH_BODY_MAX_BYTES (256 MiB by default).",
    "content": {
        "text/csv": {**_TEXT_SCHEMA, "example": "external_id,effective_date,postings,description\n"
                                                "inv-1,2026-11-23,cash=10.00;sales=-10.00,Invoice 1\n"},
        "application/x-ndjson": {**_TEXT_SCHEMA, "example": '{"external_id": "inv-1", "effective_date": '
                                 '"2026-11-23", "postings": [{"account": "cash", "amount": "10.00"}, '
                                 '{"account": "sales", "amount": "-10.00"}]}\n'},
    },
}


class BatchAccepted(BaseModel):
    id: UUID
    status: Literal["queued", "processing", "completed", "rejected"]
    mode: Literal["atomic", "partial"]
    line_count: int = Field(description="Non-blank lines (transactions) in the file")
    location: str


class LineErrorOut(BaseModel):
    line: int = Field(description="Line number in the file (1 is the first line; for CSV, the header)")
    code: str = Field(description="Stable machine-readable code, as in problem documents")
    message: str


class BatchOut(BaseModel):
    id: UUID
    status: Literal["queued", "processing", "completed", "rejected"]
    mode: Literal["atomic", "partial"]
    format: Literal["csv", "jsonl"]
    line_count: int
    accepted: int = Field(description="Lines posted by this batch")
    replayed: int = Field(description="Lines already recorded with the same content (nothing posted again)")
    rejected: int = Field(description="Lines rejected (see errors)")
    reason: str | None = Field(None, description="Why the batch was rejected, when it was")
    created_at: datetime
    finished_at: datetime | None
    errors: list[LineErrorOut] = Field(description="Rejected lines, in line order, one page")
    next_cursor: str | None = Field(None, description="Pass as ?cursor= for the next page of errors")


def store_of(request: Request) -> BatchStore:
    return request.app.state.batch_store


def _format_of(request: Request) -> str:
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    format_ = FORMAT_BY_MEDIA_TYPE.get(media_type)
    if format_ is None:
        raise ApiProblem(415, "unsupported_media_type",
                         "send the file as text/csv or application/x-ndjson (JSON Lines)",
                         supported=sorted(FORMAT_BY_MEDIA_TYPE))
    return format_


@router.post(
    "", status_code=202, response_model=BatchAccepted, summary="Upload a file of transactions",
    openapi_extra={"requestBody": _UPLOAD_BODY},
    responses={**errors(400, 401, 403, 413, 422, 429),
               415: {"model": Problem, "description": "Not text/csv or application/x-ndjson"}},
)
async def upload_batch(
    request: Request, principal: Writer,
    mode: Annotated[Literal["atomic", "partial"], Query(
        description="atomic (default): any invalid line rejects the whole batch and nothing is posted; "
                    "partial: valid lines are posted, the others reported")] = ATOMIC,
) -> JSONResponse:
    format_ = _format_of(request)
    store = store_of(request)
    upload = await run_in_threadpool(Upload, store, principal.tenant_id, mode, format_)
    try:
        async for piece in request.stream():
            if piece:
                await run_in_threadpool(upload.feed, piece)
                await run_in_threadpool(upload.check_header_early)
        info = await run_in_threadpool(upload.finish)
    except BaseException:
        await run_in_threadpool(upload.abort)
        raise
    runner = getattr(request.app.state, "batch_runner", None)
    if runner is not None:
        runner.wake()
    location = f"{PATH}/{info.id}"
    body = BatchAccepted(id=info.id, status=info.status, mode=info.mode, line_count=info.line_count,
                         location=location)
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": location})


@router.get("/{batch_id}", response_model=BatchOut, responses=errors(400, 401, 403, 404, 429),
            summary="A batch: status, counts and its rejected lines (paginated)")
def get_batch(request: Request, batch_id: UUID, principal: Reader, cursor: Cursor = None,
              limit: Limit = 50) -> JSONResponse:
    store = store_of(request)
    info = store.get(principal.tenant_id, batch_id)
    if info is None:
        raise BatchNotFound(f"batch {batch_id} not found", batch_id=str(batch_id))
    after = _cursor(cursor)
    page = store.errors_page(batch_id, after, limit + 1)
    more = len(page) > limit
    page = page[:limit]
    body = BatchOut(
        id=info.id, status=info.status, mode=info.mode, format=info.format, line_count=info.line_count,
        accepted=info.accepted_count, replayed=info.replayed_count, rejected=info.rejected_count,
        reason=info.reason, created_at=info.created_at, finished_at=info.finished_at,
        errors=[LineErrorOut(line=e.line_no, code=e.code, message=e.message) for e in page],
        next_cursor=str(page[-1].line_no) if more else None,
    )
    return JSONResponse(body.model_dump(mode="json"))


def _cursor(cursor: str | None) -> int:
    if cursor is None:
        return 0
    if not cursor.isdigit() or len(cursor) > 18:
        raise ApiProblem(400, "invalid_cursor", "cursor must be the next_cursor of the previous page")
    return int(cursor)


def install_batches(app: FastAPI, store: BatchStore, runner: BatchRunner | None) -> None:
    """The batch routes over ``store``; ``runner`` (SQLite: no separate worker needed) runs in this process."""
    app.state.batch_store = store
    app.include_router(router)
    if runner is None:
        return
    app.state.batch_runner = runner
    previous = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(app_: Any) -> AsyncIterator[Any]:
        runner.start()  # batches queued before a restart are picked up
        async with previous(app_) as state:
            try:
                yield state
            finally:
                await run_in_threadpool(runner.stop)

    app.router.lifespan_context = lifespan

