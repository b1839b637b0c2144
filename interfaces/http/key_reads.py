"""Reading API keys for concurrent requests without a thread or a round trip each.

Revocation must hold from the very next request in every process (issue 3), so
each request needs a read of its key that began after the request arrived. On
the event loop, the requests of one key that arrive while a read is running
wait together for the next read, which starts when the running one ends: one
read (in one worker thread) per database round trip serves them all, and a
request costs no thread hop of its own. ``AccessService.authenticate`` does the
same for threads.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar
from uuid import UUID

from starlette.concurrency import run_in_threadpool

T = TypeVar("T")


class SharedReads(Generic[T]):
    """Single-flight reads by key, each serving only the requests that arrived before it began."""

    def __init__(self, read: Callable[[UUID], T]) -> None:
        self._read = read
        self._loop: asyncio.AbstractEventLoop | None = None
        self._next: dict[UUID, asyncio.Future[T]] = {}  # reads not begun yet: every request arriving now joins one
        self._running: set[UUID] = set()

    async def get(self, key_id: UUID) -> T:
        loop = asyncio.get_running_loop()
        if loop is not self._loop:  # a new event loop (tests start several): nothing in flight carries over
            self._loop, self._next, self._running = loop, {}, set()
        waiting = self._next.get(key_id)
        if waiting is None:
            waiting = self._next[key_id] = loop.create_future()
            if key_id not in self._running:
                self._begin(key_id)
        return await asyncio.shield(waiting)

    def _begin(self, key_id: UUID) -> None:
        served = self._next.pop(key_id)  # from here on, arriving requests wait for the read after this one
        self._running.add(key_id)
        asyncio.ensure_future(self._run(key_id, served))  # noqa: RUF006 - it holds itself until done

    async def _run(self, key_id: UUID, served: asyncio.Future[T]) -> None:
        try:
            result = await run_in_threadpool(self._read, key_id)
        except Exception as exc:  # noqa: BLE001 - each waiting request re-raises it
            served.set_exception(exc)
            served.exception()  # retrieved: no warning when every waiter has gone
        else:
            served.set_result(result)
        finally:
            self._running.discard(key_id)
            if key_id in self._next:
                self._begin(key_id)
