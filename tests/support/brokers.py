"""The machine's message brokers as tests and benchmarks reach them (NATS with JetStream, RabbitMQ)."""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit

NATS_URL = os.environ.get("INVARIO_TEST_NATS_URL", "nats://127.0.0.1:4222")
AMQP_URL = os.environ.get("INVARIO_TEST_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/")


def nats_address(url: str = NATS_URL) -> tuple[str, int]:
    return address(url, 4222)


def address(url: str, default_port: int) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or default_port


def nats_reachable(url: str = NATS_URL, timeout: float = 1.0) -> bool:
    return _answers(nats_address(url), timeout)


def amqp_reachable(url: str = AMQP_URL, timeout: float = 1.0) -> bool:
    return _answers(address(url, 5672), timeout)


def _answers(host_and_port: tuple[str, int], timeout: float) -> bool:
    try:
        socket.create_connection(host_and_port, timeout=timeout).close()
    except OSError:
        return False
    return True


def delete_stream(url: str, name: str) -> None:
    """Delete a JetStream stream a test or benchmark made (gone already is fine)."""
    asyncio.run(_delete(url, name))


async def _delete(url: str, name: str) -> None:
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(url, connect_timeout=5)
    try:
        await client.jetstream().delete_stream(name)
    except NotFoundError:
        pass
    finally:
        await client.close()


def bind_queue(url: str, exchange: str, queue: str, binding: str = "#") -> None:
    """Declare the relay's exchange as the relay does (durable, topic) and a durable queue bound to it:
    an exchange drops what no queue is bound to, and a durable queue is what makes a confirm wait for the disk."""
    asyncio.run(_bind_queue(url, exchange, queue, binding))


async def _bind_queue(url: str, exchange: str, queue: str, binding: str) -> None:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        declared = await channel.declare_exchange(exchange, aio_pika.ExchangeType.TOPIC, durable=True)
        await (await channel.declare_queue(queue, durable=True)).bind(declared, binding)
    finally:
        await connection.close()


def delete_exchange(url: str, exchange: str, queues: tuple[str, ...] = ()) -> None:
    """Delete an exchange and queues a test or benchmark made (gone already is fine)."""
    asyncio.run(_delete_exchange(url, exchange, queues))


async def _delete_exchange(url: str, exchange: str, queues: tuple[str, ...]) -> None:
    import aio_pika

    connection = await aio_pika.connect(url, timeout=5)
    try:
        channel = await connection.channel()
        for queue in queues:
            await channel.queue_delete(queue)
        await channel.exchange_delete(exchange)
    finally:
        await connection.close()
