"""What the relay's integration tests share: the real NATS server, their own streams, a cut-able proxy.

Tests that need NATS (127.0.0.1:4222, or ``INVARIO_TEST_NATS_URL``) skip when it
does not answer, and fail instead when ``CI=true``: CI must never go green by
skipping the broker half of the relay's tests. Each test publishes to a stream
and subject prefix of its own (JetStream refuses two streams capturing the same
subjects) and deletes its stream afterwards.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from domain.chain import GENESIS_HASH
from infrastructure.runtime import Runtime
from interfaces.bootstrap import build_relay_loop
from projections.relay.runner import RelayThread
from tests.integration.helpers import notifications
from tests.support.brokers import NATS_URL, delete_stream, nats_address, nats_reachable
from tests.support.postgres import running_under_ci

REPO = Path(__file__).resolve().parents[2]
WAIT_SECONDS_MAX = 30.0


def relay_once(runtime: Runtime, sink: str | None = None) -> None:
    """Relay everything committed to one configured sink (the first unless named), then let go."""
    loop = build_relay_loop(runtime, threading.Event(), sink)
    try:
        assert loop.run(until_idle=True, attempts_max=3), f"the relay gave up after {loop.failures} attempts"
    finally:
        loop.waiter.close()
        loop.relay.sink.close()


def relayed_positions(runtime: Runtime) -> list[int]:
    """The positions the relay publishes: every event but the access aggregates'."""
    return [n.id for n in notifications(runtime.ledger) if not n.topic.startswith(("domain.api_key", "domain.key_ring"))]


def assert_chained(events: list[dict[str, Any]]) -> None:
    """Each event's hash is its data's, and its prevhash the hash of the previous event of its subject."""
    last_hash: dict[str, str] = {}
    for event in events:
        canonical = json.dumps({"event_type": event["eventtype"], "fields": event["data"]}, sort_keys=True,
                               separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(canonical.encode()).hexdigest() == event["hash"]
        assert event["prevhash"] == last_hash.get(event["subject"], GENESIS_HASH)
        last_hash[event["subject"]] = event["hash"]


def wait_for(condition: Callable[[], bool], what: str, seconds: float = WAIT_SECONDS_MAX) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)


def started_relay(runtime: Runtime) -> RelayThread:
    """The relay to the first configured sink, running in its thread (``stop()`` it)."""
    thread = RelayThread(build_relay_loop(runtime, threading.Event()))
    thread.start()
    return thread


def stop_process(process: subprocess.Popen[bytes], log: Path, seconds: float = 15) -> None:
    """SIGTERM, and a clean exit within ``seconds`` (the log in the failure otherwise)."""
    process.send_signal(signal.SIGTERM)
    assert process.wait(seconds) == 0, log.read_text()


def cli_process(command: str, environ: dict[str, str], log: Path, *options: str) -> subprocess.Popen[bytes]:
    """``invario COMMAND [OPTIONS]`` in a process of its own, with ``environ`` over this one's; output in ``log``."""
    env = {**os.environ, **environ, "PYTHONPATH": f"{REPO}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    argv = [sys.executable, "-c", "from interfaces.cli.main import app; app()", command, *options]
    return subprocess.Popen(argv, env=env, cwd=REPO, stdout=log.open("wb"), stderr=subprocess.STDOUT)



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


def require_broker(broker: str, reachable: bool, where: tuple[str, int]) -> None:
    """Skip the test without the broker; fail it instead under CI=true, which must never go green by skipping."""
    if reachable:
        return
    message = f"{broker} unavailable at {where[0]}:{where[1]}"
    if running_under_ci():
        pytest.fail(f"CI=true requires {broker} for the relay's tests. {message}")
    pytest.skip(message)


@pytest.fixture
def nats_stream() -> Iterator[Stream]:
    """A stream name and subject prefix of this test's own on the real NATS; the stream is deleted afterwards."""
    require_broker("NATS", nats_reachable(), nats_address())
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
