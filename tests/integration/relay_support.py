"""What the relay's integration tests share: the real NATS server, their own streams, a cut-able proxy.

Tests that need NATS (127.0.0.1:4222, or ``INVARIO_TEST_NATS_URL``) skip when it
does not answer, and fail instead when ``CI=true``: CI must never go green by
skipping the broker half of the relay's tests. Each test publishes to a stream
and subject prefix of its own (JetStream refuses two streams capturing the same
subjects) and deletes its stream afterwards.
"""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import pytest

from tests.support.brokers import NATS_URL, delete_stream, nats_address, nats_reachable
from tests.support.postgres import running_under_ci



@dataclass(frozen=True)
class Stream:
    url: str
    name: str
    prefix: str

    def settings(self, **more: Any) -> dict[str, Any]:
        return {"relay_nats_url": self.url, "relay_nats_stream": self.name, "relay_nats_subject_prefix": self.prefix,
                "relay_publish_timeout_seconds": 2.0, **more}

    def environ(self) -> dict[str, str]:
        return {f"INVARIO_{key.upper()}": str(value) for key, value in self.settings().items()}


@pytest.fixture
def nats_stream() -> Iterator[Stream]:
    """A stream name and subject prefix of this test's own on the real NATS; the stream is deleted afterwards."""
    if not nats_reachable():
        host, port = nats_address()
        message = f"NATS unavailable at {host}:{port}"
        if running_under_ci():
            pytest.fail(f"CI=true requires NATS for the relay's tests. {message}")
        pytest.skip(message)
    token = uuid.uuid4().hex[:10]
    stream = Stream(NATS_URL, f"INVARIO_TEST_{token.upper()}", f"invtest{token}")
    yield stream
    delete_stream(stream.url, stream.name)


@dataclass(frozen=True)
class Received:
    subject: str
    msg_id: str
    event: dict[str, Any]


def stream_messages(stream: Stream) -> list[Received]:
    """Every message the stream holds, in stream order (an empty list if it does not exist yet)."""
    return asyncio.run(_read(stream))


async def _read(stream: Stream) -> list[Received]:
    import nats
    from nats.js.errors import NotFoundError

    client = await nats.connect(stream.url)
    try:
        jetstream = client.jetstream()
        try:
            count = (await jetstream.stream_info(stream.name)).state.messages
        except NotFoundError:
            return []
        received: list[Received] = []
        if count:
            subscription = await jetstream.pull_subscribe(f"{stream.prefix}.>", stream=stream.name)
            while len(received) < count:
                for message in await subscription.fetch(min(count - len(received), 500), timeout=5):
                    received.append(Received(message.subject, (message.headers or {}).get("Nats-Msg-Id", ""),
                                             json.loads(message.data)))
                    await message.ack()
            await subscription.unsubscribe()
        return received
    finally:
        await client.close()


def stream_count(stream: Stream) -> int:
    async def count() -> int:
        import nats
        from nats.js.errors import NotFoundError

        client = await nats.connect(stream.url)
        try:
            return int((await client.jetstream().stream_info(stream.name)).state.messages)
        except NotFoundError:
            return 0
        finally:
            await client.close()

    return asyncio.run(count())


class Proxy:
    """A TCP forwarder to the broker on a port of its own, closed until ``open()``: a broker that comes back."""

    def __init__(self, target: str) -> None:
        parts = urlsplit(target)
        self.target = (parts.hostname or "127.0.0.1", parts.port or 4222)
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]  # nothing listens here until open()
        self.url = f"nats://127.0.0.1:{self.port}"
        self._server: socket.socket | None = None

    def open(self) -> None:
        self._server = socket.create_server(("127.0.0.1", self.port))
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        if self._server is not None:
            self._server.close()

    def _accept(self) -> None:
        assert self._server is not None
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            for source, sink in ((client, upstream), (upstream, client)):
                threading.Thread(target=_pipe, args=(source, sink), daemon=True).start()


def _pipe(source: socket.socket, sink: socket.socket) -> None:
    try:
        while data := source.recv(65536):
            sink.sendall(data)
    except OSError:
        pass
    finally:
        for end in (source, sink):
            try:
                end.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
