"""ASGI middleware: the correlation id and the request body limit.

``RequestContextMiddleware`` (outermost) accepts the client's ``X-Request-ID``
when it is 1-128 characters of ``A-Za-z0-9._:-`` and generates one otherwise,
puts it on the ``infrastructure.correlation.request_id`` context variable for
the request's log lines, echoes it on the response, logs one access line
(event ``http_request``), runs the request in its server span and records its
metrics (``interfaces.http.metrics``), and turns any unexpected
exception into a 500 problem document (the traceback goes to the server log
only).

Every answer also carries ``X-Content-Type-Options: nosniff`` and, unless the
route set its own, ``Cache-Control: no-store``.

``BodyLimitMiddleware`` answers 413 ``body_too_large`` to a body larger than
``INVARIO_HTTP_BODY_MAX_BYTES``, whether declared by ``Content-Length`` or
streamed.
"""

from __future__ import annotations

import logging
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from infrastructure.correlation import RequestFacts, new_request_id, request_facts
from infrastructure.correlation import request_id as request_id_var
from interfaces.http.exception_handlers import database_failure_response
from interfaces.http.metrics import observe_request, request_span
from interfaces.http.problems import SCOPE_REQUEST_ID, problem_response

log = logging.getLogger("invario.http")

REQUEST_ID_HEADER = "X-Request-ID"
_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key.lower() == name:
            return value.decode("latin-1")
    return None


# Every answer: browsers must not sniff a JSON body into something executable, and
# nothing in between may keep a copy of balances or keys (a route may ask otherwise).
_SECURITY_HEADERS = ((b"x-content-type-options", b"nosniff"), (b"cache-control", b"no-store"))


def _answer_headers(headers: list[tuple[bytes, bytes]], request_id: str) -> list[tuple[bytes, bytes]]:
    """The response's headers with its request id and the security headers it does not set itself."""
    kept = [(k, v) for k, v in headers if k.lower() != b"x-request-id"]
    present = {k.lower() for k, _v in kept}
    kept.extend(header for header in _SECURITY_HEADERS if header[0] not in present)
    kept.append((b"x-request-id", request_id.encode("latin-1")))
    return kept


class RequestContextMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = _header(scope, b"x-request-id")
        request_id = offered if offered and _REQUEST_ID.match(offered) else new_request_id()
        scope[SCOPE_REQUEST_ID] = request_id
        tokens = (request_id_var.set(request_id), request_facts.set(RequestFacts()))
        started = time.perf_counter()
        state: dict[str, Any] = {"status": 500, "sent": False}

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                state["status"], state["sent"] = message["status"], True
                message = {**message, "headers": _answer_headers(message.get("headers", []), request_id)}
            await send(message)

        with request_span(scope, request_id) as span:
            try:
                await self.app(scope, receive, send_with_id)
            except Exception as exc:
                if state["sent"]:
                    log.exception("error after answering %s %s", scope.get("method"), scope.get("path"),
                                  extra={"event": "unhandled_error"})
                    raise
                response = database_failure_response(scope, exc)  # raised outside the routes (middleware)
                if response is not None:
                    await response(scope, receive, send_with_id)
                    return
                log.exception("unhandled error serving %s %s", scope.get("method"), scope.get("path"),
                              extra={"event": "unhandled_error"})
                response = problem_response(
                    500, "internal_error", "the server failed to handle this request; it has been logged",
                    instance=scope.get("path"), request_id=request_id,
                )
                await response(scope, receive, send_with_id)
            finally:
                elapsed = time.perf_counter() - started
                route = observe_request(scope, span, state["status"], elapsed)
                log.info("%s %s -> %s in %.1f ms", scope.get("method"), scope.get("path"), state["status"],
                         elapsed * 1000, extra={"event": "http_request", "method": scope.get("method"),
                                                "route": route, "status": state["status"],
                                                "duration_ms": round(elapsed * 1000, 3),
                                                "client": _client_address(scope)})
                request_id_var.reset(tokens[0])
                request_facts.reset(tokens[1])


class BodyTooLarge(HTTPException):
    def __init__(self, limit: int) -> None:
        super().__init__(413, f"the request body exceeds the limit of {limit} bytes")
        self.limit = limit


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int, limits_by_path: dict[str, int] | None = None) -> None:
        self.app = app
        self.max_bytes = max_bytes
        self.limits_by_path = limits_by_path or {}  # uploads (batch files) have their own, larger bound

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        max_bytes = self.limits_by_path.get(scope.get("path", ""), self.max_bytes)
        declared = _header(scope, b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            response = problem_response(
                413, "body_too_large", f"the request body exceeds the limit of {max_bytes} bytes",
                instance=scope.get("path"), request_id=scope.get(SCOPE_REQUEST_ID),
                extensions={"limit": max_bytes},
            )
            await response(scope, receive, send)
            return
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise BodyTooLarge(max_bytes)  # an HTTPException: FastAPI re-raises it as is
            return message

        await self.app(scope, limited_receive, send)


def _client_address(scope: Scope) -> str | None:
    """``host:port`` of the peer (uvicorn's access log used to say it; a 401 storm is traced by it)."""
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else None
