"""The correlation id of the request being served, for every log line it causes.

``request_id`` is set by the HTTP layer for the duration of one request (sync
handlers run in worker threads that inherit the context). Any log record made
meanwhile carries it as ``record.request_id`` ("-" outside a request), so a
formatter or a structured logger can print it; ``install_log_record_factory``
is idempotent and is called by the composition root (``interfaces.bootstrap``),
never at import time.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
from contextvars import ContextVar
from typing import Any

request_id: ContextVar[str | None] = ContextVar("invario_request_id", default=None)


class _RequestIds:
    """32 hex characters, as a UUID's: 80 random bits drawn once per process, then a
    48-bit counter. uuid4() per request read the OS's random source each time, and
    py-spy saw it at about 3 % of a write's time. A forked child draws its own prefix."""

    def __init__(self) -> None:
        self.reset()
        os.register_at_fork(after_in_child=self.reset)

    def reset(self) -> None:
        self.prefix = secrets.token_hex(10)
        self.counter = itertools.count(1)

    def next(self) -> str:
        return f"{self.prefix}{next(self.counter) & 0xFFFFFFFFFFFF:012x}"


_request_ids = _RequestIds()


def new_request_id() -> str:
    """A correlation id unique across processes, for a request that brought none."""
    return _request_ids.next()


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
