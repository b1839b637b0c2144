"""A TCP proxy the test owns, in front of a real PostgreSQL, that can break the network on demand.

Listens on 127.0.0.1 only. Modes (``FaultyProxy.set_mode``):

- ``pass``: bytes flow both ways.
- ``refuse``: the listening socket is closed (new connections are refused, as by a
  stopped server) and the connections in use are closed.
- ``drop``: the connections in use are reset (RST); new ones are accepted and reset at once.
- ``blackhole``: a partition. Nothing is answered and nothing is reset: new
  connections are accepted but never reach the server, and the connections in use
  stay open while every byte, either way, is silently discarded. (The kernel still
  acknowledges the bytes, so TCP keepalives and ``tcp_user_timeout`` never fire
  here: only the application's own deadlines can notice.)
- ``pause``: a stall (a frozen server, a congested link). Nothing is lost: the bytes
  of the connections in use are held by the proxy, and new connections are accepted
  and wait; back to ``pass``, everything held is delivered and the waiting
  connections reach the server. To any other mode, the held bytes are treated as
  that mode says (discarded, or their connections closed).

Back to ``pass``, the connections that were blackholed resume forwarding (a healed
partition); those accepted during the blackhole never had a server and are closed.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from urllib.parse import urlsplit, urlunsplit

MODES = ("pass", "refuse", "drop", "blackhole", "pause")
_CHUNK = 65536


def _reset(sock: socket.socket) -> None:
    """Close with RST instead of FIN (SO_LINGER 0).

    ``shutdown(SHUT_RD)`` first wakes a pump thread blocked in ``recv`` on it (and sends
    nothing): a socket closed under a blocked ``recv`` stays open in the kernel until that
    call returns, which for an idle peer is never, so the peer (a PostgreSQL backend)
    would stay connected for good."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RD)
    with contextlib.suppress(OSError):
        sock.close()


class _Pair:
    """One client connection and, unless it was accepted during a blackhole, its server connection."""

    def __init__(self, proxy: FaultyProxy, client: socket.socket, server: socket.socket | None,
                 waiting: bool = False) -> None:
        self.proxy, self.client, self.server = proxy, client, server
        self.waiting = waiting  # accepted during a pause
        self.closed = threading.Event()

    def start(self) -> None:
        if self.waiting:
            threading.Thread(target=self._connect_when_resumed, daemon=True).start()
            return
        self._start_pumps()

    def _connect_when_resumed(self) -> None:
        """Accepted during a pause: reach the server once the pause ends in ``pass``."""
        self.proxy.resumed.wait()
        if self.closed.is_set():
            return
        if self.proxy.mode == "pass":
            try:
                self.server = socket.create_connection(self.proxy.upstream, timeout=5)
                self.server.settimeout(None)
            except OSError:
                self.close(reset=True)
                return
        self._start_pumps()  # blackhole: discarded as if accepted during it

    def _start_pumps(self) -> None:
        threading.Thread(target=self._pump, args=(self.client, self.server), daemon=True).start()
        if self.server is not None:
            threading.Thread(target=self._pump, args=(self.server, self.client), daemon=True).start()

    def _pump(self, source: socket.socket, target: socket.socket | None) -> None:
        try:
            while not self.closed.is_set():
                data = source.recv(_CHUNK)
                if not data:
                    break
                self.proxy.resumed.wait()  # paused: held here, delivered once it ends
                if self.closed.is_set():
                    break
                if target is None or self.proxy.mode == "blackhole":
                    continue  # discarded: the peer never hears of it
                target.sendall(data)
        except OSError:
            pass
        self.close()

    def close(self, reset: bool = False) -> None:
        if self.closed.is_set():
            return
        self.closed.set()
        for sock in (self.client, self.server):
            if sock is None:
                continue
            if reset:
                _reset(sock)
            else:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                with contextlib.suppress(OSError):
                    sock.close()
        self.proxy._forget(self)


class FaultyProxy:
    """Use as a context manager; ``url`` is the database URL through the proxy."""

    def __init__(self, upstream_host: str, upstream_port: int) -> None:
        self.upstream = (upstream_host, upstream_port)
        self.mode = "pass"
        self.resumed = threading.Event()  # set in every mode but pause
        self.resumed.set()
        self._lock = threading.Lock()
        self._pairs: set[_Pair] = set()
        self._listener: socket.socket | None = None
        self.port = 0
        self._listen()

    def __enter__(self) -> FaultyProxy:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def url_for(self, database_url: str) -> str:
        """``database_url`` pointed at this proxy (its credentials, database and parameters kept)."""
        parts = urlsplit(database_url)
        userinfo, _at, _hostport = parts.netloc.rpartition("@")
        return urlunsplit(parts._replace(netloc=f"{userinfo + '@' if userinfo else ''}127.0.0.1:{self.port}"))

    def set_mode(self, mode: str) -> None:
        assert mode in MODES, mode
        with self._lock:
            previous, self.mode = self.mode, mode
            pairs = list(self._pairs)
        if mode == "pause":
            self.resumed.clear()
        if mode == "refuse":
            self._stop_listening()
            for pair in pairs:
                pair.close()
        elif mode == "drop":
            for pair in pairs:
                pair.close(reset=True)
        elif mode == "pass" and previous == "blackhole":
            for pair in pairs:
                if pair.server is None:
                    pair.close(reset=True)
        if mode != "pause":
            self.resumed.set()  # after the mode's own closing: held bytes follow the new mode
        if mode != "refuse" and self._listener is None:
            self._listen()

    def close(self) -> None:
        self._stop_listening()
        with self._lock:
            pairs = list(self._pairs)
        for pair in pairs:
            pair.close()

    # --- listening -------------------------------------------------------------------------

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))  # the same port again after a refusal
        listener.listen(128)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is not None:
            with contextlib.suppress(OSError):
                listener.shutdown(socket.SHUT_RDWR)  # wakes the accepting thread
            listener.close()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            self._admit(client)

    def _admit(self, client: socket.socket) -> None:
        mode = self.mode
        if mode in ("drop", "refuse"):
            _reset(client)
            return
        server = None
        if mode == "pass":  # pause: connected once it ends (_Pair.start)
            try:
                server = socket.create_connection(self.upstream, timeout=5)
                server.settimeout(None)
            except OSError:
                _reset(client)
                return
        pair = _Pair(self, client, server, waiting=mode == "pause")
        with self._lock:
            self._pairs.add(pair)
        pair.start()

    def _forget(self, pair: _Pair) -> None:
        with self._lock:
            self._pairs.discard(pair)
