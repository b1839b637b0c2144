"""The test-owned TCP proxy (tests/support/tcp_proxy.py) in front of a local echo server.

A pause holds bytes instead of losing them: the connections in use get nothing
back while it lasts, connections made meanwhile wait, and once it ends every
byte held is delivered both ways. A drop really ends the server's side of each
connection, idle or not (a PostgreSQL backend must not outlive it).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.tcp_proxy import FaultyProxy

QUIET_SECONDS = 0.3  # long enough for a forwarded echo on loopback to come back
ANSWER_TIMEOUT_SECONDS = 5.0


class EchoServer:
    """Echoes every byte; ``ended`` is set when the server's side of a connection sees it end."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.ended = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._echo, args=(connection,), daemon=True).start()

    def _echo(self, connection: socket.socket) -> None:
        with connection:
            try:
                while data := connection.recv(4096):
                    connection.sendall(data)
            except OSError:
                pass
        self.ended.set()


@pytest.fixture
def echo_server() -> Iterator[EchoServer]:
    server = EchoServer()
    yield server
    server.listener.close()


@pytest.fixture
def echo_port(echo_server: EchoServer) -> int:
    return echo_server.port


def _silent(connection: socket.socket) -> bool:
    connection.settimeout(QUIET_SECONDS)
    try:
        return not connection.recv(4096)  # closed would be b"": not silent either
    except TimeoutError:
        return True


def _answer(connection: socket.socket, size: int) -> bytes:
    connection.settimeout(ANSWER_TIMEOUT_SECONDS)
    received = b""
    while len(received) < size:
        received += connection.recv(4096)
    return received


def test_a_pause_holds_the_bytes_and_delivers_them_when_it_ends(echo_port: int) -> None:
    with FaultyProxy("127.0.0.1", echo_port) as proxy:
        before = socket.create_connection(("127.0.0.1", proxy.port))
        before.sendall(b"one")
        assert _answer(before, 3) == b"one"

        proxy.set_mode("pause")
        before.sendall(b"two")
        during = socket.create_connection(("127.0.0.1", proxy.port))  # accepted, not yet forwarded
        during.sendall(b"three")
        assert _silent(before) and _silent(during)

        proxy.set_mode("pass")
        assert _answer(before, 3) == b"two"
        assert _answer(during, 5) == b"three"
        before.close()
        during.close()


def test_a_pause_that_ends_in_a_drop_closes_the_waiting_connections(echo_port: int) -> None:
    with FaultyProxy("127.0.0.1", echo_port) as proxy:
        proxy.set_mode("pause")
        waiting = socket.create_connection(("127.0.0.1", proxy.port))
        waiting.sendall(b"lost")
        assert _silent(waiting)
        proxy.set_mode("drop")
        waiting.settimeout(ANSWER_TIMEOUT_SECONDS)
        try:
            received = waiting.recv(4096)
        except ConnectionResetError:
            received = b""  # reset, as a drop does; a plain close reads b"" too
        assert received == b""
        waiting.close()


def test_a_drop_ends_the_server_side_of_an_idle_connection(echo_server: EchoServer) -> None:
    with FaultyProxy("127.0.0.1", echo_server.port) as proxy:
        client = socket.create_connection(("127.0.0.1", proxy.port))
        client.sendall(b"idle")
        assert _answer(client, 4) == b"idle"  # now both pumps wait in recv on idle sockets
        proxy.set_mode("drop")
        assert echo_server.ended.wait(ANSWER_TIMEOUT_SECONDS), "the server still holds the dropped connection"
        client.close()
