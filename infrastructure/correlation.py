"""The correlation id of the request being served, for every log line it causes.

``request_id`` is set by the HTTP layer for the duration of one request (sync
handlers run in worker threads that inherit the context). Any log record made
meanwhile carries it as ``record.request_id`` ("-" outside a request), so a
formatter or a structured logger can print it; ``install_log_record_factory``
is idempotent and is called by the composition root (``interfaces.bootstrap``),
never at import time.
"""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("invario_request_id", default=None)


class RequestFacts:
    """Facts learnt while serving a request, for its later log lines (see ``logging_setup``).

    Mutable on purpose: FastAPI runs dependencies in worker threads, each on a
    *copy* of the context, so a value ``set()`` there would not reach the
    handler's or the middleware's lines; changing the one object they share does.
    """

    __slots__ = ("tenant",)

    def __init__(self) -> None:
        self.tenant: str | None = None


request_facts: ContextVar[RequestFacts | None] = ContextVar("invario_request_facts", default=None)

_installed = False


def install_log_record_factory() -> None:
    """Make every ``logging.LogRecord`` carry the current request id."""
    global _installed  # noqa: PLW0603 - one process-wide hook, installed once
    if _installed:
        return
    previous = logging.getLogRecordFactory()

    def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
        record = previous(*args, **kwargs)
        record.request_id = request_id.get() or "-"
        return record

    logging.setLogRecordFactory(factory)
    _installed = True
