"""The test-owned TCP proxy (tests/support/tcp_proxy.py) in front of a local echo server: its pause mode.

A pause holds bytes instead of losing them: the connections in use get nothing
back while it lasts, connections made meanwhile wait, and once it ends every
byte held is delivered both ways.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator

import pytest

from tests.support.tcp_proxy import FaultyProxy

QUIET_SECONDS = 0.3  # long enough for a forwarded echo on loopback to come back
ANSWER_TIMEOUT_SECONDS = 5.0


def _echo(connection: socket.socket) -> None:
    with connection:
        while data := connection.recv(4096):
            connection.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def accept() -> None:
        while True:
            try:
                connection, _ = listener.accept()
            except OSError:
                return
            threading.Thread(target=_echo, args=(connection,), daemon=True).start()

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1]
    listener.close()


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
