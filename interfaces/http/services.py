"""What the routes reach of the running service: its services, its runtime, and
commits through its ledger (``committed``)."""

from __future__ import annotations

import asyncio
import contextlib
import queue
from collections.abc import Callable
from concurrent.futures import Future
from typing import TypeVar

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from infrastructure.runtime import Runtime
from interfaces.bootstrap import ApiServices

T = TypeVar("T")


def services_of(request: Request) -> ApiServices:
    return request.app.state.services


def runtime_of(request: Request) -> Runtime:
    return request.app.state.runtime


async def committed(request: Request, use_case: Callable[[], T], *, reads_before_write: bool = True) -> T:
    """Run a ledger use case, awaiting its commit without holding a thread.

    A worker thread runs the use case up to its write (its checks may read the
    store) and queues the write for the group-commit writer (``Ledger.deferred``);
    the commit is then awaited here, on the event loop (the writer thread resolves
    the future; asyncio hands it over with ``call_soon_threadsafe``).
    A use case that reads nothing before its write (``reads_before_write=False``:
    only checks its arguments) is queued from the event loop itself when there is
    a writer: no thread hop (py-spy: the hop was ~15 % of a keyed write's CPU).
    Never blocking the loop: with the writer's queue full it takes a thread."""
    ledger = runtime_of(request).ledger
    future: Future[T] | None = None
    if not reads_before_write and ledger.writes_in_batches:
        with contextlib.suppress(queue.Full):
            future = ledger.deferred(use_case, wait_for_room=False)
    if future is None:
        future = await run_in_threadpool(ledger.deferred, use_case)
    return await asyncio.wrap_future(future)
