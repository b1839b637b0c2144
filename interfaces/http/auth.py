"""Authentication and rate limits: the ``Reader``, ``Writer`` and ``Admin`` dependencies.

Failed authentications are throttled per client address (``FailureThrottle``): the client is the
connection's peer, or the address a trusted proxy forwarded (``INVARIO_TRUSTED_PROXIES``: uvicorn
rewrites the peer before the app sees it).
"""

from __future__ import annotations

import hmac
from typing import Annotated, NoReturn

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.concurrency import run_in_threadpool

from application.access import Principal
from domain.api_key import READ, WRITE, ApiKey
from domain.errors import ApiKeyRevoked, InvalidApiKey
from infrastructure.rate_limit import FailureThrottle, InProcessTokenBucket, Unlimited, retry_after_header
from infrastructure.telemetry import instruments
from interfaces.http.key_reads import SharedReads
from interfaces.http.metrics import enter_tenant, has_tenant_name
from interfaces.http.problems import ApiProblem
from interfaces.http.services import services_of

api_key_scheme = HTTPBearer(
    auto_error=False, scheme_name="ApiKey",
    description="A tenant's API key: `Authorization: Bearer inv_live_…` (issued by `invario create-key`).",
)
admin_scheme = HTTPBearer(
    auto_error=False, scheme_name="AdminToken", description="`Authorization: Bearer <INVARIO_ADMIN_TOKEN>`."
)
Credentials = Annotated[HTTPAuthorizationCredentials | None, Depends(api_key_scheme)]
AdminCredentials = Annotated[HTTPAuthorizationCredentials | None, Depends(admin_scheme)]


def client_address(request: Request) -> str:
    """The client's IP address (a trusted proxy's forwarded one); "unknown" without one (a UNIX socket)."""
    return request.client.host if request.client is not None else "unknown"


def _throttled(wait_seconds: float) -> ApiProblem:
    instruments().auth_throttled.add(1)
    return ApiProblem(429, "auth_throttled", "too many failed authentications from this address; retry later",
                      headers={"Retry-After": retry_after_header(wait_seconds)})


def _refuse_a_throttled_client(throttle: FailureThrottle, client: str) -> None:
    wait_seconds = throttle.refusing(client)
    if wait_seconds > 0:
        raise _throttled(wait_seconds)


async def _failed(request: Request, reason: str) -> None:
    """Count a failed authentication: 429 instead of the caller's 401 once the client is over its allowance."""
    instruments().auth_failures.add(1, {"reason": reason})
    throttle = services_of(request).auth_throttle
    client = client_address(request)
    if throttle.shared:
        wait_seconds = await run_in_threadpool(throttle.failed, client)
    else:
        wait_seconds = throttle.failed(client)
    if wait_seconds > 0:
        raise _throttled(wait_seconds)


async def _authenticate(request: Request, credentials: HTTPAuthorizationCredentials | None, scope: str) -> Principal:
    """On the event loop: the key's read is shared (``key_reads``); only blocking work takes a thread."""
    services = services_of(request)
    _refuse_a_throttled_client(services.auth_throttle, client_address(request))
    if credentials is None:
        await _failed(request, "MISSING_TOKEN")
        raise ApiProblem(401, "unauthenticated", "send your API key as 'Authorization: Bearer <key>'",
                         headers={"WWW-Authenticate": "Bearer"})
    try:
        key_id, digest = services.access.locate(credentials.credentials)
        principal = services.access.admit(await _key_reads(request).get(key_id), digest, scope)
    except (InvalidApiKey, ApiKeyRevoked) as exc:
        await _failed(request, "REVOKED_TOKEN" if isinstance(exc, ApiKeyRevoked) else "INVALID_TOKEN")
        raise
    if has_tenant_name(principal.tenant_id):
        tenant = enter_tenant(request, principal.tenant_id)
    else:
        tenant = await run_in_threadpool(enter_tenant, request, principal.tenant_id)  # reads it once
    limiter = services.rate_limiter
    if isinstance(limiter, (Unlimited, InProcessTokenBucket)):
        wait_seconds = limiter.acquire(str(principal.tenant_id))
    else:
        wait_seconds = await run_in_threadpool(limiter.acquire, str(principal.tenant_id))  # the shared bucket
    if wait_seconds > 0:
        # Tenant names are bounded by the number of tenants, and say who to call.
        instruments().rate_limited.add(1, {"tenant": tenant})
        raise ApiProblem(429, "rate_limited", "this tenant is over its request rate; retry later",
                         headers={"Retry-After": retry_after_header(wait_seconds)})
    return principal


def _key_reads(request: Request) -> SharedReads[ApiKey | None]:
    state = request.app.state
    reads: SharedReads[ApiKey | None] | None = getattr(state, "key_reads", None)
    if reads is None:
        reads = state.key_reads = SharedReads(services_of(request).access.read_key)
    return reads


async def read_access(request: Request, credentials: Credentials) -> Principal:
    return await _authenticate(request, credentials, READ)


async def write_access(request: Request, credentials: Credentials) -> Principal:
    return await _authenticate(request, credentials, WRITE)


def admin_access(request: Request, credentials: AdminCredentials) -> None:
    """In a thread (a synchronous dependency): the throttle's shared bucket may be drawn from directly."""
    services = services_of(request)
    token = services.admin_token
    if token is None:
        raise ApiProblem(403, "admin_disabled", "the admin API is disabled: set INVARIO_ADMIN_TOKEN to enable it")
    client = client_address(request)
    _refuse_a_throttled_client(services.auth_throttle, client)
    presented = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(presented.encode("utf-8"), token.encode("utf-8")):
        _admin_failed(services.auth_throttle, client, "INVALID_TOKEN" if presented else "MISSING_TOKEN")


def _admin_failed(throttle: FailureThrottle, client: str, reason: str) -> NoReturn:
    instruments().auth_failures.add(1, {"reason": reason})
    wait_seconds = throttle.failed(client)
    if wait_seconds > 0:
        raise _throttled(wait_seconds)
    raise ApiProblem(401, "invalid_admin_token", "send 'Authorization: Bearer <INVARIO_ADMIN_TOKEN>'",
                     headers={"WWW-Authenticate": "Bearer"})


Reader = Annotated[Principal, Depends(read_access)]
Writer = Annotated[Principal, Depends(write_access)]
Admin = Depends(admin_access)
