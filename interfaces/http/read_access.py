"""Access to the read models the query routes read (never the aggregates)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, TypeVar

from fastapi import Query, Request

from interfaces.http.problems import ApiProblem
from projections.read_models.queries import InvalidCursor, ReadModels
from projections.read_models.tenant_directory import InvalidTenantCursor, TenantDirectory

T = TypeVar("T")

Limit = Annotated[int, Query(ge=1, le=200, description="Page size (at most 200)")]
Cursor = Annotated[str | None, Query(max_length=512, description="next_cursor of the previous page")]


def read_models(request: Request) -> ReadModels:
    return request.app.state.read_models


def tenant_directory(request: Request) -> TenantDirectory:
    return request.app.state.tenant_directory


def reading_page(read: Callable[[], T]) -> T:
    """Run a paginated read; a cursor the API did not hand out is 400 ``invalid_cursor``."""
    try:
        return read()
    except (InvalidCursor, InvalidTenantCursor):
        raise ApiProblem(400, "invalid_cursor", "the cursor is not one this API returned; start without it") from None


def check_date_range(date_from: date | None, date_to: date | None) -> None:
    if date_from is not None and date_to is not None and date_from > date_to:
        raise ApiProblem(400, "invalid_date_range", "date_from is after date_to")

