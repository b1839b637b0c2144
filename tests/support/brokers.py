"""The machine's message brokers as tests and benchmarks reach them (NATS with JetStream)."""

from __future__ import annotations

import asyncio
import os
import socket
from urllib.parse import urlsplit

NATS_URL = os.environ.get("INVARIO_TEST_NATS_URL", "nats://127.0.0.1:4222")


def nats_address(url: str = NATS_URL) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 4222


def nats_reachable(url: str = NATS_URL, timeout: float = 1.0) -> bool:
    try:
        socket.create_connection(nats_address(url), timeout=timeout).close()
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
