"""An asyncio event loop in a daemon thread of its own: how a synchronous relay drives an asyncio client.

The brokers' clients (nats-py, aio-pika) are asyncio; the relay is not. A sink
owns one of these and waits on it, always boundedly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class LoopThread:
    """``run(coroutine, timeout)`` from any thread; ``stop()`` once, after the last run."""

    def __init__(self, name: str) -> None:
        self._loop = _new_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=name, daemon=True)
        self._thread.start()

    def run(self, coroutine: Coroutine[Any, Any, T], timeout_seconds: float) -> T:
        """The coroutine's result; on any failure, or past the timeout, it is cancelled and the error raised."""
        future = asyncio.run_coroutine_threadsafe(coroutine, self._loop)
        try:
            return future.result(timeout_seconds)
        except BaseException:
            future.cancel()
            raise

    def attempt(self, coroutine: Coroutine[Any, Any, Any], timeout_seconds: float) -> None:
        """Best effort (closing a connection): the caller is already failing or closing."""
        try:
            self.run(coroutine, timeout_seconds)
        except Exception:  # noqa: BLE001
            log.debug("the sink's event loop did not finish in time", exc_info=True)

    def stop(self, timeout_seconds: float) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout_seconds)


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # with uvicorn[standard]; the brokers' clients are bound by the loop's own overhead
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
