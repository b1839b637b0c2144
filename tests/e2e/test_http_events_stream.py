"""GET /v1/events/stream against a real ``invario serve``, on SQLite and PostgreSQL.

Streams need a real server (the test client collects a whole response before it
returns): the server runs as a subprocess with its followers, and every reader
here is bounded in time.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from infrastructure.migrate import upgrade_to_head
from infrastructure.runtime import open_runtime
from infrastructure.settings import Settings
from interfaces.bootstrap import open_access
from tests.e2e.http_fixtures import ADMIN_TOKEN, DAY, PEPPER
from tests.e2e.serve_support import Book, ServedApi

WAIT_SECONDS = 60.0
BUFFER_MAX = 64
STREAMS_MAX = 3
SLOW_REQUESTS = 150
TRANSFERS_PER_REQUEST = 10
BULKY_METADATA = {f"note{n}": "x" * 500 for n in range(10)}


@dataclass(frozen=True)
class Books:
    acme: Book
    globex: Book


def _tenant(runtime: Any, name: str) -> Book:
    tenant = runtime.ledger.create_tenant(name).aggregate
    key = open_access(runtime).issue_key(tenant.id, ["read", "write"]).secret
    cash = runtime.ledger.open_account(tenant.id, "cash", "Cash", "BRL", "asset").aggregate
    revenue = runtime.ledger.open_account(tenant.id, "revenue", "Revenue", "BRL", "income").aggregate
    return Book(tenant.id, key, str(cash.id), str(revenue.id))


@pytest.fixture
def served(database_url: str, tmp_path: Path) -> Iterator[tuple[ServedApi, Books]]:
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER, admin_token=ADMIN_TOKEN))
    try:
        upgrade_to_head(runtime.engine)
        books = Books(_tenant(runtime, "acme"), _tenant(runtime, "globex"))
    finally:
        runtime.close()
    overrides = {"INVARIO_EVENTS_STREAM_BUFFER_MAX": str(BUFFER_MAX),
                 "INVARIO_EVENTS_STREAM_PER_TENANT_MAX": str(STREAMS_MAX),
                 "INVARIO_EVENTS_STREAM_POLL_SECONDS": "0.05", "INVARIO_EVENTS_STREAM_HEARTBEAT_SECONDS": "1",
                 "INVARIO_FOLLOWER_POLL_SECONDS": "0.05"}
    with ServedApi(database_url, books.acme, tmp_path / "serve.log", **overrides) as api:
        yield api, books


def _headers(book: Book, **extra: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {book.key}", **extra}


def _post(api: ServedApi, book: Book, prefix: str, count: int, metadata: dict[str, str] | None = None) -> None:
    """``count`` transfers (3 events each), in calls of at most 200."""
    for start in range(0, count, 200):
        transactions = [{"external_id": f"{prefix}-{n}", "effective_date": DAY, "metadata": metadata or {},
                         "postings": [{"account_id": book.cash, "amount": "1.00"},
                                      {"account_id": book.revenue, "amount": "-1.00"}]}
                        for n in range(start, min(start + 200, count))]
        response = api.client.post("/v1/transactions/batch", json={"transactions": transactions},
                                   headers=_headers(book))
        assert response.status_code in (200, 201), response.text


def _feed(api: ServedApi, book: Book, count: int) -> list[dict[str, Any]]:
    """The tenant's events as GET /v1/events pages them, once the followers have applied ``count``."""
    deadline = time.monotonic() + WAIT_SECONDS
    while True:
        items: list[dict[str, Any]] = []
        after, more = 0, True
        while more:
            body = api.client.get(f"/v1/events?after={after}&limit=1000", headers=_headers(book)).json()
            items += body["items"]
            after, more = body["next_after"], body["more"]
        if len(items) >= count:
            assert len(items) == count
            return items
        assert time.monotonic() < deadline, f"the feed has {len(items)} of {count} events"
        time.sleep(0.05)


@dataclass
class Reader:
    """Reads one stream in a thread, keeping every event (``id``, ``event``, ``data``) and comment."""

    api: ServedApi
    headers: dict[str, str]
    query: str = ""
    events: list[dict[str, str]] = field(default_factory=list)
    comments: int = 0
    status: int | None = None
    ended: threading.Event = field(default_factory=threading.Event)
    _stop: threading.Event = field(default_factory=threading.Event)

    def start(self) -> Reader:
        threading.Thread(target=self._read, daemon=True).start()
        return self

    def _read(self) -> None:
        url = f"{self.api.base_url}/v1/events/stream{self.query}"
        try:
            with httpx.stream("GET", url, headers=self.headers, timeout=httpx.Timeout(WAIT_SECONDS)) as response:
                self.status = response.status_code
                current: dict[str, str] = {}
                for line in response.iter_lines():
                    if self._stop.is_set():
                        return
                    if line.startswith(":"):
                        self.comments += 1
                    elif line == "":
                        if current:
                            self.events.append(current)
                        current = {}
                    else:
                        name, _, value = line.partition(":")
                        current[name] = value[1:] if value.startswith(" ") else value
        except httpx.HTTPError:
            pass
        finally:
            self.ended.set()

    def data(self) -> list[dict[str, Any]]:
        return [json.loads(event["data"]) for event in self.events if "event" not in event]

    def wait_for(self, count: int) -> list[dict[str, Any]]:
        deadline = time.monotonic() + WAIT_SECONDS
        while len(self.data()) < count:
            assert time.monotonic() < deadline, f"{len(self.data())} of {count} events arrived"
            assert not self.ended.is_set() or len(self.data()) >= count, "the stream ended early"
            time.sleep(0.05)
        return self.data()

    def close(self) -> None:
        self._stop.set()


def _ids(items: list[dict[str, Any]]) -> list[int]:
    return [int(item["id"]) for item in items]


def test_each_stream_carries_its_tenants_events_only_and_resumes_after_last_event_id(
    served: tuple[ServedApi, Books],
) -> None:
    api, books = served
    acme = Reader(api, _headers(books.acme), "?after=0").start()
    globex = Reader(api, _headers(books.globex), "?after=0").start()
    _post(api, books.acme, "a", 20)
    _post(api, books.globex, "g", 10)
    expected_acme = _feed(api, books.acme, 3 + 20 * 3)  # created, two accounts opened, 20 transfers
    received = acme.wait_for(len(expected_acme))
    assert received == expected_acme  # the same CloudEvents as the pull feed, in log order
    assert globex.wait_for(3 + 10 * 3) == _feed(api, books.globex, 3 + 10 * 3)
    for reader, book in ((acme, books.acme), (globex, books.globex)):
        assert {item["source"] for item in reader.data()} == {f"/ledgers/invario/tenants/{book.tenant_id}"}
        assert [int(event["id"]) for event in reader.events] == _ids(reader.data())  # SSE id = position
    acme.close()
    globex.close()

    resume_after = int(received[9]["id"])
    resumed = Reader(api, _headers(books.acme, **{"Last-Event-ID": str(resume_after)}), "?after=0").start()
    assert resumed.wait_for(len(received) - 10) == received[10:]  # the header wins over ?after=
    _post(api, books.acme, "later", 1)  # and it goes on live
    assert resumed.wait_for(len(received) - 10 + 3)[-3:] == _feed(api, books.acme, len(received) + 3)[-3:]
    resumed.close()


def test_a_stream_from_now_sends_only_new_events_and_heartbeats(served: tuple[ServedApi, Books]) -> None:
    api, books = served
    reader = Reader(api, _headers(books.acme)).start()
    deadline = time.monotonic() + WAIT_SECONDS
    while reader.comments < 2:  # heartbeats every second on an idle stream
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert reader.events == []
    _post(api, books.acme, "new", 1)
    assert sorted(item["type"] for item in reader.wait_for(3)) == [  # the write's events, in log order
        "io.invario.account.posting_recorded", "io.invario.account.posting_recorded",
        "io.invario.transaction.posted"]
    reader.close()


def test_a_tenant_may_open_only_so_many_streams(served: tuple[ServedApi, Books]) -> None:
    api, books = served
    readers = [Reader(api, _headers(books.acme)).start() for _ in range(STREAMS_MAX)]
    deadline = time.monotonic() + WAIT_SECONDS
    while not all(reader.comments for reader in readers):  # all open (each had a heartbeat)
        assert time.monotonic() < deadline
        time.sleep(0.1)
    refused = api.client.get("/v1/events/stream", headers=_headers(books.acme))
    assert refused.status_code == 429 and refused.json()["code"] == "too_many_streams"
    assert refused.headers["Retry-After"]
    other = Reader(api, _headers(books.globex)).start()  # another tenant is not affected
    while not other.comments:
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert other.status == 200
    for reader in [*readers, other]:
        reader.close()


class SlowClient:
    """A stream client that sends its request and reads nothing until told to: its socket fills."""

    def __init__(self, api: ServedApi, book: Book, after: int) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connecting: a small window
        self.sock.connect(("127.0.0.1", api.port))
        request = (f"GET /v1/events/stream?after={after} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                   f"Authorization: Bearer {book.key}\r\nAccept: text/event-stream\r\n\r\n")
        self.sock.sendall(request.encode())

    def read_to_end(self) -> str:
        """The body (de-chunked) up to the server's close (bounded: heartbeats would go on forever)."""
        self.sock.settimeout(WAIT_SECONDS)
        chunks: list[bytes] = []
        deadline = time.monotonic() + WAIT_SECONDS
        while chunk := self.sock.recv(65536):
            chunks.append(chunk)
            assert time.monotonic() < deadline, f"not closed; ends with {b''.join(chunks)[-300:]!r}"
        self.sock.close()
        head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower(), head
        return _dechunk(body).decode()


def _dechunk(body: bytes) -> bytes:
    out, at = [], 0
    while at < len(body):
        line_end = body.index(b"\r\n", at)
        size = int(body[at:line_end].split(b";")[0], 16)
        if size == 0:
            break
        out.append(body[line_end + 2:line_end + 2 + size])
        at = line_end + 2 + size + 2
    return b"".join(out)


@pytest.mark.long  # 10 MB of events to each of two clients: make test-long
def test_a_slow_client_is_cut_off_with_an_overflow_event_while_another_keeps_receiving(
    served: tuple[ServedApi, Books],
) -> None:
    api, books = served
    start = int(_feed(api, books.acme, 3)[-1]["id"])
    slow = SlowClient(api, books.acme, start)
    fast = Reader(api, _headers(books.acme), f"?after={start}").start()
    # A loopback sender blocks once its send buffer is full, up to net.ipv4.tcp_wmem's maximum (4 MB
    # here): about 10 MB of events (5 KB of metadata each transfer) fill it surely (5 MB did not always),
    # in requests of a few transfers, so each hand-over is smaller than the buffer.
    transfers = 0
    for number in range(SLOW_REQUESTS):
        _post(api, books.acme, f"bulk-{number}", TRANSFERS_PER_REQUEST, BULKY_METADATA)
        transfers += TRANSFERS_PER_REQUEST
    assert len(fast.wait_for(transfers * 3)) == transfers * 3  # never held back by the slow one
    text = slow.read_to_end()  # the server closes it after the overflow event
    # Events only (a heartbeat comment may still slip in before the close).
    blocks = [block for block in text.split("\r\n\r\n") if block.strip() and not block.startswith(":")]
    ids = [int(line[4:]) for block in blocks for line in block.splitlines() if line.startswith("id: ")]
    assert "event: overflow" in blocks[-1], blocks[-1][:300]
    overflow = json.loads(next(line[6:] for line in blocks[-1].splitlines() if line.startswith("data: ")))
    expected = _ids(fast.data())
    assert ids == expected[:len(ids)] and len(ids) < len(expected)  # a clean prefix, in order
    assert overflow["resume_after"] == (ids[-1] if ids else start)
    fast.close()
    # Resuming from there gives the rest.
    resumed = Reader(api, _headers(books.acme, **{"Last-Event-ID": str(overflow["resume_after"])})).start()
    assert _ids(resumed.wait_for(len(expected) - len(ids))) == expected[len(ids):]
    resumed.close()


def test_the_tenant_id_in_the_source_is_the_keys_tenant(served: tuple[ServedApi, Books]) -> None:
    api, books = served
    items = _feed(api, books.globex, 3)
    assert items and {UUID(item["source"].rsplit("/", 1)[1]) for item in items} == {books.globex.tenant_id}
