"""While the ledger's hash chain is broken, every write answers 503 ``ledger_integrity_broken``.

Writing on top of a broken chain would bury the damage under new events, so
every request that is not a read (any method but GET, HEAD and OPTIONS) is
refused before it reaches a route, with the location of the break. Reads keep
working. The guard reads the process's ``IntegrityMonitor``, which follows the
state shared by every process, so writes resume, without a restart, once a full
verification passes after the operator restored a good backup.

It is installed innermost (next to the routes), so the request id, the access
log and the body limit apply to its answers as to any other.
"""

from __future__ import annotations

from anyio import to_thread
from starlette.types import ASGIApp, Receive, Scope, Send

from infrastructure.integrity_monitor import IntegrityMonitor
from interfaces.http.problems import SCOPE_REQUEST_ID, problem_response

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
RETRY_AFTER_SECONDS = 60
CODE = "ledger_integrity_broken"


class IntegrityWriteGuard:
    def __init__(self, app: ASGIApp, monitor: IntegrityMonitor) -> None:
        self.app = app
        self.monitor = monitor

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in READ_METHODS:
            await self.app(scope, receive, send)
            return
        if self.monitor.needs_refresh():
            status = await to_thread.run_sync(self.monitor.status)  # re-reads the shared state
        else:
            status = self.monitor.status(refresh=False)  # fresh in memory: no thread hop per write
        if not status.broken:
            await self.app(scope, receive, send)
            return
        response = problem_response(
            503, CODE,
            "the ledger's hash chain is broken, so writes are refused until an operator restores a good backup "
            "and a verification passes; reads keep working",
            instance=scope.get("path"), request_id=scope.get(SCOPE_REQUEST_ID),
            headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
            extensions={"break": status.damage, "detection_id": status.detection_id,
                        "detected_at": status.detected_at.isoformat() if status.detected_at else None},
        )
        await response(scope, receive, send)
