"""/admin: operators create, read, list, suspend and resume tenants (INVARIO_ADMIN_TOKEN)."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response

from application.ledger import Recorded
from domain.errors import TenantNotFound
from interfaces.http.auth import Admin
from interfaces.http.docs import COMMAND_ERRORS, LIST_ERRORS, QUERY_ERRORS, errors
from interfaces.http.keyed_commands import ADMIN_SCOPE, IdempotencyKey, run_command
from interfaces.http.read_access import Cursor, Limit, reading_page, tenant_directory
from interfaces.http.representations import tenant_from_aggregate, tenant_from_view
from interfaces.http.responses import IfMatch, MinPosition, await_position, expected_version, respond
from interfaces.http.schemas import CreateTenant, SuspendTenant, TenantOut, TenantPage
from interfaces.http.services import committed, runtime_of

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Admin])


@router.post("/tenants", status_code=201, response_model=TenantOut,
             responses=errors(400, 401, 403, 409, 413, 422), summary="Create a tenant")
async def create_tenant(request: Request, body: CreateTenant, idempotency_key: IdempotencyKey = None) -> Response:
    def render(recorded: Recorded) -> Response:
        tenant = recorded.aggregate
        return respond(tenant_from_aggregate(tenant, recorded.position or 0), 201, version=tenant.version,
                       location=f"/admin/tenants/{tenant.id}")

    return await run_command(request, ADMIN_SCOPE, idempotency_key, body,
                             lambda: committed(request, lambda: runtime_of(request).ledger.create_tenant(body.name)),
                             render)


@router.get("/tenants/{tenant_id}", response_model=TenantOut, responses=QUERY_ERRORS, summary="Read a tenant")
def get_tenant(request: Request, tenant_id: UUID, min_position: MinPosition = None) -> Response:
    directory = tenant_directory(request)
    await_position(request, directory, min_position)
    view = directory.get(tenant_id)
    if view is None:
        raise TenantNotFound(f"tenant {tenant_id} not found")
    return respond(tenant_from_view(view), version=view.version)


@router.get("/query/tenants", response_model=TenantPage, responses=LIST_ERRORS, summary="List tenants (by name)")
def list_tenants(
    request: Request,
    status: Annotated[Literal["active", "suspended"] | None, Query(description="Only tenants in this status")] = None,
    cursor: Cursor = None, limit: Limit = 50, min_position: MinPosition = None,
) -> Response:
    directory = tenant_directory(request)
    await_position(request, directory, min_position)
    page = reading_page(lambda: directory.list(status=status, cursor=cursor, page_size=limit))
    items = [tenant_from_view(view) for view in page.items]
    return respond(TenantPage(items=items, next_cursor=page.next_cursor, position=page.position))


@router.post("/tenants/{tenant_id}/suspend", response_model=TenantOut, responses=COMMAND_ERRORS,
             summary="Suspend a tenant: it can still read, its writes get 403 tenant_suspended")
async def suspend_tenant(request: Request, tenant_id: UUID, body: SuspendTenant | None = None,
                         if_match: IfMatch = None, idempotency_key: IdempotencyKey = None) -> Response:
    def use_case() -> Recorded:
        return runtime_of(request).ledger.suspend_tenant(
            tenant_id, body.reason if body else "", expected_version=expected_version(if_match)
        )

    return await run_command(request, ADMIN_SCOPE, idempotency_key, body, lambda: committed(request, use_case),
                             _tenant_response)


@router.post("/tenants/{tenant_id}/resume", response_model=TenantOut, responses=COMMAND_ERRORS,
             summary="Resume a suspended tenant")
async def resume_tenant(request: Request, tenant_id: UUID, if_match: IfMatch = None,
                        idempotency_key: IdempotencyKey = None) -> Response:
    def use_case() -> Recorded:
        return runtime_of(request).ledger.resume_tenant(tenant_id, expected_version=expected_version(if_match))

    return await run_command(request, ADMIN_SCOPE, idempotency_key, None, lambda: committed(request, use_case),
                             _tenant_response)


def _tenant_response(recorded: Recorded) -> Response:
    return respond(tenant_from_aggregate(recorded.aggregate, recorded.position or 0),
                   version=recorded.aggregate.version)
