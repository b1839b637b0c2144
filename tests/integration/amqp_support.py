"""What the relay's RabbitMQ tests share: the real broker, an exchange and a queue of each test's own.

Tests that need RabbitMQ (127.0.0.1:5672 guest/guest, or ``INVARIO_TEST_AMQP_URL``)
skip when it does not answer, and fail instead when ``CI=true``. Each test has
an exchange of its own (the relay's ``INVARIO_RELAY_AMQP_EXCHANGE``) and a
durable queue bound to it with ``#`` (every routing key) before anything is
relayed (an exchange drops what no queue is bound to), both deleted afterwards.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from tests.integration.relay_support import require_broker
from tests.support.brokers import AMQP_URL, address, amqp_reachable, bind_queue, delete_exchange

BINDING = "#"
DRAINED_MAX = 100_000  # messages read per call: a bound, far above what a test publishes


@dataclass(frozen=True)
class AmqpReceived:
    routing_key: str
    message_id: str
    content_type: str | None
    delivery_mode: int | None
    app_id: str | None
    body: bytes

    @property
    def event(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass
class Exchange:
    """The test's exchange and its queue; ``received()`` is every message the queue delivered so far, in order."""

    url: str
    name: str
    queue: str
    seen: list[AmqpReceived] = field(default_factory=list)

    def settings(self, **more: Any) -> dict[str, Any]:
        return {"relay_amqp_url": self.url, "relay_amqp_exchange": self.name, "relay_publish_timeout_seconds": 2.0,
                **more}

    def environ(self, **more: Any) -> dict[str, str]:
        return {f"INVARIO_{key.upper()}": str(value) for key, value in self.settings(**more).items()}

    def received(self) -> list[AmqpReceived]:
        self.seen += asyncio.run(_drain(self.url, self.queue))
        return list(self.seen)

    def count(self) -> int:
        return len(self.received())

    @property
    def position_key(self) -> str:
        return f"amqp:{self.name}"


@pytest.fixture
def amqp_exchange() -> Iterator[Exchange]:
    require_broker("RabbitMQ", amqp_reachable(), address(AMQP_URL, 5672))
    token = uuid.uuid4().hex[:10]
    exchange = Exchange(AMQP_URL, f"invario-test-{token}", f"invario-test-{token}")
    bind_queue(exchange.url, exchange.name, exchange.queue, BINDING)
    yield exchange
    delete_exchange(exchange.url, exchange.name, (exchange.queue,))


def through(url: str, port: int) -> str:
    """The broker URL with its port replaced (a test-owned proxy's), credentials kept."""
    parts = urlsplit(url)
    credentials = parts.netloc.rpartition("@")[0]
    return urlunsplit(parts._replace(netloc=f"{credentials}@127.0.0.1:{port}" if credentials else f"127.0.0.1:{port}"))


async def _drain(url: str, queue_name: str) -> list[AmqpReceived]:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    try:
        queue = await (await connection.channel()).get_queue(queue_name)
        found: list[AmqpReceived] = []
        while len(found) < DRAINED_MAX and (message := await queue.get(no_ack=True, fail=False)) is not None:
            found.append(AmqpReceived(message.routing_key or "", message.message_id or "", message.content_type,
                                      int(message.delivery_mode) if message.delivery_mode is not None else None,
                                      message.app_id, message.body))
        return found
    finally:
        await connection.close()
