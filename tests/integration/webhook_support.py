"""A webhook receiver owned by the test: a threaded HTTP server on 127.0.0.1 whose answers the test scripts.

``Receiver(answer)``: ``answer(request_number, body)`` returns the status to
answer (and may block, to play a slow or silent endpoint). Every request is
kept, in arrival order, with its headers and body; ``accepted`` are the ones
answered 2xx.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

Answer = Callable[[int, bytes], int]


@dataclass(frozen=True)
class Request:
    headers: dict[str, str]
    body: bytes
    status: int  # what the receiver answered (0: it gave up on answering)

    @property
    def event(self) -> dict[str, Any]:
        loaded: dict[str, Any] = json.loads(self.body)
        return loaded

    @property
    def id(self) -> int:
        return int(self.headers["webhook-id"])


class Receiver:
    def __init__(self, answer: Answer | None = None) -> None:
        self.answer: Answer = answer or (lambda _n, _body: 200)
        self.requests: list[Request] = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                with receiver._lock:
                    receiver._arrivals += 1
                    number = receiver._arrivals
                status = receiver.answer(number, body)
                with receiver._lock:
                    receiver.requests.append(Request({k.lower(): v for k, v in self.headers.items()}, body, status))
                try:
                    self.send_response(status)
                    self.send_header("content-length", "0")
                    self.end_headers()
                except OSError:
                    pass  # the dispatcher gave up waiting (a timeout): nothing to answer to

            def log_message(self, *_args: Any) -> None:
                pass

        self._arrivals = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}/hook"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._thread.start()

    @property
    def accepted(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if 200 <= r.status < 300]

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@contextmanager
def receiver(answer: Answer | None = None) -> Iterator[Receiver]:
    found = Receiver(answer)
    try:
        yield found
    finally:
        found.close()


def wait_for(condition: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.05)
