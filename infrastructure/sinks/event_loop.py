"""An asyncio event loop in a daemon thread of its own: how a synchronous relay drives an asyncio client.

The brokers' clients (nats-py, aio-pika) are asyncio; the relay is not. A sink
(``AsyncioSink``) owns one of these and waits on it, always boundedly.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from infrastructure.sinks.message import OutboundMessage, SinkUnavailable
from infrastructure.sinks.urls import host_and_port, safe_error

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


class AsyncioSink:
    """What the asyncio sinks share: ``publish`` and ``close`` on their loop thread, failures told without
    the URL. A subclass sets ``name`` and ``broker`` and writes ``_publish``, ``_disconnect`` and ``_bound``."""

    name: str
    broker: str

    def __init__(self, url: str, default_port: int, timeout_seconds: float) -> None:
        self._url = url
        self.where = host_and_port(url, default_port)
        self.timeout_seconds = timeout_seconds
        self._loop = LoopThread(f"invario-relay-{self.name}")

    def publish(self, messages: list[OutboundMessage]) -> None:
        """Return once the broker acknowledged every message; otherwise drop the connection and raise."""
        try:
            self._loop.run(self._publish(messages), self._bound(len(messages)))
        except Exception as exc:  # noqa: BLE001 - every failure is the broker's, told without the URL
            self._loop.attempt(self._disconnect(), self.timeout_seconds)
            raise SinkUnavailable(f"{self.broker} at {self.where}: {safe_error(exc, self._url)}") from None

    def close(self) -> None:
        try:
            self._loop.attempt(self._disconnect(), self.timeout_seconds)
        finally:
            self._loop.stop(self.timeout_seconds)

    def _bound(self, count: int) -> float:
        """How long a batch of ``count`` messages may take, connecting included."""
        raise NotImplementedError

    async def _publish(self, messages: list[OutboundMessage]) -> None:
        raise NotImplementedError

    async def _disconnect(self) -> None:
        raise NotImplementedError


def _new_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop  # with uvicorn[standard]; the brokers' clients are bound by the loop's own overhead
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()
