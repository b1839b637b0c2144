"""/v1/accounts: open, read, list, balances, statements, and the account lifecycle."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from application.ledger import Recorded
from domain.errors import AccountNotFound
from domain.money import parse_amount_minor
from interfaces.http.auth import Reader, Writer
from interfaces.http.docs import COMMAND_ERRORS, CREATE_ERRORS, LIST_ERRORS, QUERY_ERRORS
from interfaces.http.keyed_commands import IdempotencyKey, run_command
from interfaces.http.read_access import Cursor, Limit, check_date_range, read_models, reading_page
from interfaces.http.representations import (
    account_from_aggregate,
    account_from_view,
    balance_from_view,
    entry_from_view,
    hold_from_view,
)
from interfaces.http.responses import IfMatch, MinPosition, await_position, expected_version, respond
from interfaces.http.schemas import AccountOut, AccountPage, BalanceOut, EntryPage, HoldPage, IsoDate, OpenAccount
from interfaces.http.services import committed, runtime_of

router = APIRouter(prefix="/v1/accounts", tags=["accounts"])


@router.post("", status_code=201, response_model=AccountOut, responses=CREATE_ERRORS, summary="Open an account")
async def open_account(request: Request, body: OpenAccount, principal: Writer,
                       idempotency_key: IdempotencyKey = None) -> Response:
    async def execute() -> Recorded:
        floor = parse_amount_minor(body.balance_floor, body.currency) if body.balance_floor is not None else None
        return await committed(request, lambda: runtime_of(request).ledger.open_account(
            principal.tenant_id, body.code, body.name, body.currency, body.type, floor, body.metadata
        ))

    def render(recorded: Recorded) -> Response:
        account = recorded.aggregate
        return respond(account_from_aggregate(account, recorded.position or 0), 201, version=account.version,
                       location=f"/v1/accounts/{account.id}")

    return await run_command(request, str(principal.tenant_id), idempotency_key, body, execute, render)


@router.get("", response_model=AccountPage, responses=LIST_ERRORS, summary="List accounts (by code)")
def list_accounts(request: Request, principal: Reader, cursor: Cursor = None, limit: Limit = 50,
                  min_position: MinPosition = None) -> Response:
    models = read_models(request)
    await_position(request, models, min_position)
    page = reading_page(lambda: models.list_accounts(principal.tenant_id, cursor=cursor, page_size=limit))
    items = [account_from_view(view) for view in page.items]
    return respond(AccountPage(items=items, next_cursor=page.next_cursor, position=page.position))


@router.get("/{account_id}", response_model=AccountOut, responses=QUERY_ERRORS, summary="Read an account")
def get_account(request: Request, account_id: UUID, principal: Reader, min_position: MinPosition = None) -> Response:
    models = read_models(request)
    await_position(request, models, min_position)
    view = models.get_account(principal.tenant_id, account_id)
    if view is None:
        raise AccountNotFound(f"account {account_id} not found", account_id=str(account_id))
    return respond(account_from_view(view), version=view.version)


@router.get("/{account_id}/balance", response_model=BalanceOut, responses=QUERY_ERRORS,
            summary="An account's balance, now or at the end of an effective date")
def get_balance(request: Request, account_id: UUID, principal: Reader,
                as_of: Annotated[IsoDate | None, Query(description="Effective date (inclusive)")] = None,
                min_position: MinPosition = None) -> Response:
    models = read_models(request)
    await_position(request, models, min_position)
    view = models.get_balance(principal.tenant_id, account_id, as_of=as_of)
    if view is None:
        raise AccountNotFound(f"account {account_id} not found", account_id=str(account_id))
    return respond(balance_from_view(view))


@router.get("/{account_id}/entries", response_model=EntryPage, responses=QUERY_ERRORS,
            summary="The account's statement: entries with a running balance")
def list_entries(  # noqa: PLR0913
    request: Request, account_id: UUID, principal: Reader, cursor: Cursor = None, limit: Limit = 50,
    date_from: Annotated[IsoDate | None, Query(description="First effective date (inclusive)")] = None,
    date_to: Annotated[IsoDate | None, Query(description="Last effective date (inclusive)")] = None,
    min_position: MinPosition = None,
) -> Response:
    check_date_range(date_from, date_to)
    models = read_models(request)
    await_position(request, models, min_position)
    if models.get_account(principal.tenant_id, account_id) is None:
        raise AccountNotFound(f"account {account_id} not found", account_id=str(account_id))
    page = reading_page(lambda: models.list_entries(
        principal.tenant_id, account_id, cursor=cursor, page_size=limit, date_from=date_from, date_to=date_to
    ))
    items = [entry_from_view(view) for view in page.items]
    return respond(EntryPage(items=items, next_cursor=page.next_cursor, position=page.position))


@router.get("/{account_id}/holds", response_model=HoldPage, responses=QUERY_ERRORS,
            summary="The account's holds (pending transactions) and how each was resolved")
def list_holds(  # noqa: PLR0913
    request: Request, account_id: UUID, principal: Reader, cursor: Cursor = None, limit: Limit = 50,
    status: Annotated[Literal["pending", "posted", "voided", "expired"] | None,
                      Query(description="Only holds in this state")] = None,
    min_position: MinPosition = None,
) -> Response:
    models = read_models(request)
    await_position(request, models, min_position)
    if models.get_account(principal.tenant_id, account_id) is None:
        raise AccountNotFound(f"account {account_id} not found", account_id=str(account_id))
    page = reading_page(lambda: models.list_holds(
        principal.tenant_id, account_id, cursor=cursor, page_size=limit, status=status
    ))
    items = [hold_from_view(view) for view in page.items]
    return respond(HoldPage(items=items, next_cursor=page.next_cursor, position=page.position))


def _lifecycle(name: str, summary: str) -> None:
    @router.post(f"/{{account_id}}/{name}", response_model=AccountOut, responses=COMMAND_ERRORS, summary=summary,
                 name=f"{name}_account")
    async def change(request: Request, account_id: UUID, principal: Writer, if_match: IfMatch = None,
                     idempotency_key: IdempotencyKey = None) -> Response:
        async def execute() -> Recorded:
            ledger = runtime_of(request).ledger
            use_case: Callable[..., Recorded] = getattr(ledger, f"{name}_account")
            return await committed(request, lambda: use_case(
                principal.tenant_id, account_id, expected_version=expected_version(if_match)))

        def render(recorded: Recorded) -> Response:
            account = recorded.aggregate
            return respond(account_from_aggregate(account, recorded.position or 0), version=account.version)

        return await run_command(request, str(principal.tenant_id), idempotency_key, None, execute, render)


_lifecycle("freeze", "Freeze an account: no postings until unfrozen")
_lifecycle("unfreeze", "Unfreeze a frozen account")
_lifecycle("close", "Close an account whose balance is zero (final)")
