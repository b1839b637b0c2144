"""Sending one event to one endpoint: a Standard Webhooks POST, signed, bounded in time.

Headers (https://www.standardwebhooks.com): ``webhook-id`` = the event's log
position (the receiver's de-duplication key, the same id as on the brokers),
``webhook-timestamp`` = the attempt's Unix time, ``webhook-signature`` =
``v1,<base64 HMAC-SHA256>`` of ``id.timestamp.body`` under the endpoint's secret,
computed by the ``standardwebhooks`` library. The body is the event's CloudEvent
in JSON structured mode, as the brokers get it.

An attempt succeeds on any 2xx answer and fails on anything else: another
status (a redirect is not followed), no answer within
``INVARIO_WEBHOOK_TIMEOUT_SECONDS`` (the whole attempt: connecting, sending,
the answer's head; the body of the answer is never read), a refused
connection, or a host that now resolves to a forbidden address. The reason
of a failure names neither the URL (it may hold a token) nor the secret.

httpx's asynchronous client runs on an event loop in a thread of the sender's
own (``sinks.event_loop.LoopThread``, as the brokers' clients do), so one
deadline covers the whole attempt and the dispatcher's threads only wait on it;
many endpoints share the loop's connections.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime, timezone

import httpx
from standardwebhooks import Webhook

from infrastructure.sinks.event_loop import LoopThread
from infrastructure.sinks.message import OutboundMessage
from infrastructure.webhooks.secrets import WebhookSecret
from infrastructure.webhooks.targets import Resolver, TargetPolicy, WebhookTargetRefused, check_target, resolve

log = logging.getLogger(__name__)
# httpx logs every request's full URL at INFO, and an endpoint's URL may carry a token of the
# receiver's: its lines are kept to warnings (httpcore's debug lines name only the host and port).
logging.getLogger("httpx").setLevel(logging.WARNING)

USER_AGENT = "Invario-Webhooks/1"


@dataclass(frozen=True)
class AttemptResult:
    delivered: bool
    reason: str | None = None  # why it failed: for the endpoint's last_error and the log; no URL, no secret
    status: int | None = None


def signed_headers(secret: WebhookSecret, message: OutboundMessage, now: datetime) -> dict[str, str]:
    """The Standard Webhooks headers of ``message`` sent at ``now``."""
    signature = Webhook(secret.reveal()).sign(message.id, now, message.body.decode("utf-8"))
    return {
        "webhook-id": message.id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": signature,
        "content-type": message.content_type,
        "user-agent": USER_AGENT,
    }


class WebhookSender:
    """POSTs messages to endpoints; ``send`` blocks the calling thread, boundedly."""

    def __init__(self, timeout_seconds: float, policy: TargetPolicy, connections_max: int,
                 resolver: Resolver = resolve) -> None:
        self.timeout_seconds = timeout_seconds
        self.policy = policy
        self._resolver = resolver
        self._loop = LoopThread("invario-webhooks-http")
        self._client: httpx.AsyncClient = self._loop.run(self._new_client(connections_max), timeout_seconds)

    def send(self, url: str, secret: WebhookSecret, message: OutboundMessage) -> AttemptResult:
        try:
            check_target(url, self.policy, self._resolver)  # again at each attempt: names can be re-pointed
        except WebhookTargetRefused as exc:
            return AttemptResult(False, f"{exc.code}: {exc}")
        headers = signed_headers(secret, message, datetime.now(timezone.utc))
        try:
            return self._loop.run(self._post(url, headers, message.body), self.timeout_seconds + 1.0)
        except Exception as exc:  # noqa: BLE001 - the loop itself failing is one more failed attempt
            return AttemptResult(False, _reason(exc, self.timeout_seconds))

    def close(self) -> None:
        try:
            self._loop.attempt(self._client.aclose(), self.timeout_seconds)
        finally:
            self._loop.stop(self.timeout_seconds)

    # --- on the sender's event loop ----------------------------------------------------------

    async def _new_client(self, connections_max: int) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=connections_max, max_keepalive_connections=connections_max)
        return httpx.AsyncClient(timeout=self.timeout_seconds, limits=limits, follow_redirects=False)

    async def _post(self, url: str, headers: dict[str, str], body: bytes) -> AttemptResult:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                async with self._client.stream("POST", url, headers=headers, content=body) as response:
                    status = response.status_code
        except Exception as exc:  # noqa: BLE001 - every failure of the attempt is told the same way
            return AttemptResult(False, _reason(exc, self.timeout_seconds))
        if 200 <= status < 300:
            return AttemptResult(True, status=status)
        return AttemptResult(False, f"the endpoint answered HTTP {status}", status)


def _reason(exc: BaseException, timeout_seconds: float) -> str:
    """Why an attempt failed, without the URL (httpx puts it in some messages) or anything else sent."""
    if isinstance(exc, (TimeoutError, asyncio.TimeoutError, httpx.TimeoutException)):
        return f"no answer within {timeout_seconds:g} s"
    if isinstance(exc, httpx.ConnectError):
        return "cannot connect to the endpoint"
    if isinstance(exc, httpx.HTTPError):
        return f"HTTP failure: {type(exc).__name__}"
    return f"failure: {type(exc).__name__}"
