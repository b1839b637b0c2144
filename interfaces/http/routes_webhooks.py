"""/v1/webhooks: a tenant's webhook endpoints (docs/events-out.md, "Webhooks").

Registering (write scope) answers the endpoint's signing secret once, in the
201; it is stored sealed and no other answer, log line or listing shows it.
An endpoint receives the tenant's events committed after its registration;
``POST /v1/webhooks/{id}/replay?from=POS`` sends them again from a position on
and revives a dead-lettered endpoint. Another tenant's endpoint reads as absent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field

from infrastructure.webhooks.store import (
    ENDPOINTS_PER_TENANT_MAX,
    EVENT_TYPES_MAX,
    TooManyWebhooks,
    WebhookEndpoint,
    WebhookStore,
)
from infrastructure.webhooks.targets import URL_LENGTH_MAX, WebhookTargetRefused, check_target
from interfaces.http.auth import Reader, Writer
from interfaces.http.docs import errors
from interfaces.http.problems import ApiProblem
from interfaces.http.responses import respond
from interfaces.http.schemas import Body
from interfaces.http.services import runtime_of, services_of

PATH = "/v1/webhooks"
router = APIRouter(prefix=PATH, tags=["webhooks"])
EVENT_TYPE_PATTERN = r"^io\.invario\.[a-z][a-z_]{0,63}\.[a-z][a-z_]{0,63}$"


class RegisterWebhook(Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
        {"url": "https://hooks.example.com/invario"},
        {"url": "https://hooks.example.com/invario", "event_types": ["io.invario.transaction.posted"]},
    ]})

    url: str = Field(max_length=URL_LENGTH_MAX, description="Where to POST the events: https:// and a public host")
    event_types: list[Annotated[str, Field(pattern=EVENT_TYPE_PATTERN)]] | None = Field(
        None, min_length=1, max_length=EVENT_TYPES_MAX,
        description="Only these CloudEvents types (e.g. io.invario.transaction.posted); omitted: every type")


class WebhookOut(BaseModel):
    id: UUID
    url: str
    event_types: list[str] | None
    status: Literal["active", "dead_lettered"] = Field(
        description="dead_lettered: an event failed INVARIO_WEBHOOK_ATTEMPTS_MAX times; a replay revives it")
    position: int = Field(description="Log position the endpoint has received (or passed) events up to")
    attempts: int = Field(description="Failed attempts in a row at the next event")
    next_attempt_at: datetime
    last_error: str | None = Field(description="Why the last attempt failed (no secret, never the URL)")
    delivered_count: int
    created_at: datetime
    updated_at: datetime
    dead_lettered_at: datetime | None


class WebhookRegistered(WebhookOut):
    secret: str = Field(description="The signing secret (whsec_...): shown this once, keep it safe")


class WebhookList(BaseModel):
    items: list[WebhookOut]
    position: int = Field(0, description="Always 0: endpoints are not read models of the log")


def _out(endpoint: WebhookEndpoint) -> WebhookOut:
    return WebhookOut(
        id=endpoint.id, url=endpoint.url,
        event_types=list(endpoint.event_types) if endpoint.event_types is not None else None,
        status=endpoint.status, position=endpoint.position, attempts=endpoint.attempts,  # type: ignore[arg-type]
        next_attempt_at=endpoint.next_attempt_at, last_error=endpoint.last_error,
        delivered_count=endpoint.delivered_count, created_at=endpoint.created_at, updated_at=endpoint.updated_at,
        dead_lettered_at=endpoint.dead_lettered_at,
    )


def _store(request: Request) -> WebhookStore:
    return services_of(request).webhooks


def _not_found(endpoint_id: UUID) -> ApiProblem:
    return ApiProblem(404, "webhook_not_found", f"webhook {endpoint_id} not found", webhook_id=str(endpoint_id))


@router.post("", status_code=201, response_model=WebhookRegistered,
             responses=errors(400, 401, 403, 409, 413, 422, 429),
             summary="Register a webhook endpoint; the answer shows its signing secret, once")
def register_webhook(request: Request, body: RegisterWebhook, principal: Writer) -> Response:
    try:
        check_target(body.url, services_of(request).webhook_policy)  # resolves the host: a blocking call
    except WebhookTargetRefused as exc:
        raise ApiProblem(422, exc.code, str(exc)) from None
    head = int(runtime_of(request).ledger.recorder.max_notification_id() or 0)
    try:
        endpoint, secret = _store(request).register(principal.tenant_id, body.url, body.event_types, head)
    except TooManyWebhooks as exc:
        raise ApiProblem(409, "too_many_webhooks", str(exc), limit=ENDPOINTS_PER_TENANT_MAX) from None
    shown = WebhookRegistered(**_out(endpoint).model_dump(), secret=secret.reveal())
    return respond(shown, 201, location=f"{PATH}/{endpoint.id}")


@router.get("", response_model=WebhookList, responses=errors(400, 401, 403, 429),
            summary="List the tenant's webhook endpoints (oldest first; secrets are never shown again)")
def list_webhooks(request: Request, principal: Reader) -> Response:
    endpoints = _store(request).list(principal.tenant_id, limit=ENDPOINTS_PER_TENANT_MAX)
    return respond(WebhookList(items=[_out(e) for e in endpoints]))


@router.get("/{webhook_id}", response_model=WebhookOut, responses=errors(400, 401, 403, 404, 429),
            summary="Read a webhook endpoint and its delivery state")
def get_webhook(request: Request, webhook_id: UUID, principal: Reader) -> Response:
    endpoint = _store(request).get(webhook_id, principal.tenant_id)
    if endpoint is None:
        raise _not_found(webhook_id)
    return respond(_out(endpoint))


@router.delete("/{webhook_id}", status_code=204, responses=errors(400, 401, 403, 404, 429),
               summary="Delete a webhook endpoint: nothing more is sent to it")
def delete_webhook(request: Request, webhook_id: UUID, principal: Writer) -> Response:
    if not _store(request).delete(webhook_id, principal.tenant_id):
        raise _not_found(webhook_id)
    return Response(status_code=204)


@router.post("/{webhook_id}/replay", response_model=WebhookOut, responses=errors(400, 401, 403, 404, 422, 429),
             summary="Send the tenant's events again from a log position on; revives a dead-lettered endpoint")
def replay_webhook(
    request: Request, webhook_id: UUID, principal: Writer,
    from_position: Annotated[int, Query(alias="from", ge=1, le=2**62,
                                        description="First log position to send again (an event's id)")],
) -> Response:
    endpoint = _store(request).replay(webhook_id, from_position, principal.tenant_id)
    if endpoint is None:
        raise _not_found(webhook_id)
    return respond(_out(endpoint))
