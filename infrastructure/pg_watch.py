"""Noticing, within a second or so, that PostgreSQL stopped answering; failing fast until it answers again.

A refused or reset connection is an error at once, but a partition (packets
dropped, or a peer that accepts and never answers) is silence: a query already
sent waits for its answer for as long as the kernel keeps the connection, and a
pre-ping on a pooled connection waits just as long. ``DatabaseWatch`` is the
process's knowledge of one database's liveness:

- ``invario serve`` starts its heartbeat: a ``SELECT 1`` every
  ``HEARTBEAT_INTERVAL_SECONDS`` on a connection of its own. An error, or no
  answer within ``INVARIO_DB_PROBE_TIMEOUT_SECONDS`` while no other connection
  heard from the server either (a loaded database that answers late is not a
  dead one), marks the database down; the next answer marks it up again. Subscribers hear every outcome (the HTTP
  layer's ``DatabaseGate``: requests are refused at once while it is down, and
  let through again as soon as it answers).
- Every connection made through ``WatchedConnection`` (the event store's pool
  and the SQLAlchemy engine use it) registers itself while it waits for the
  server. Marking the database down shuts the sockets of those waiting: they
  fail at once with a connection error instead of hanging, the pools discard
  them, and while the database stays down, new connections and queries fail at
  once the same way. A broken connection is the pools' ordinary case, so
  nothing else changes: the errors are classified ``database_unavailable``.

Without a started heartbeat (operator commands, the worker, tests in process) a
watch is never down and only keeps the register.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
from psycopg.conninfo import conninfo_to_dict

from infrastructure.db_errors import DATABASE_UNAVAILABLE, DatabaseFailure

HEARTBEAT_INTERVAL_SECONDS = 0.25
PROBES_IN_FLIGHT_MAX = 4  # probes stuck connecting (libpq's connect timeout is at least 2 s) while new ones start
PROBE_WAIT_MAX_FACTOR = 5  # a probe that alone stays silent (others answer) is given up after 5 timeouts
_SLICE_SECONDS = 0.05

log = logging.getLogger("invario.database")

Listener = Callable[[DatabaseFailure | None], None]
_Key = tuple[str, str, str]


def _key(params: dict[str, Any]) -> _Key:
    return (str(params.get("host") or ""), str(params.get("port") or "5432"), str(params.get("dbname") or ""))


def _shut(descriptor: int) -> None:
    """Shut a socket down under whoever waits on it (their read ends at once); the owner still closes it."""
    with contextlib.suppress(OSError):
        sock = socket.socket(fileno=os.dup(descriptor))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def _one_line(error: BaseException) -> str:
    text = " ".join(line.strip() for line in str(error).splitlines() if line.strip())
    return (text or type(error).__name__)[:300]


class DatabaseWatch:
    """The liveness of one database (host, port, name) as this process sees it."""

    def __init__(self, key: _Key) -> None:
        self.key = key
        self._lock = threading.Lock()
        self._down = False
        self.reason = ""
        self._waiting: dict[object, tuple[int, float]] = {}  # connections waiting for the server: socket, since
        self._listeners: list[Listener] = []
        self._heartbeat: _Heartbeat | None = None
        self._users = 0
        self.last_answer = 0.0  # monotonic time any watched connection last heard from the server

    @property
    def down(self) -> bool:
        return self._down

    def raise_if_down(self) -> None:
        if self._down:
            raise psycopg.OperationalError(f"the database does not answer: {self.reason}")

    @contextmanager
    def waiting(self, connection: psycopg.Connection[Any], *, probe: bool = False) -> Iterator[None]:
        """Register ``connection`` while it waits for the server; shut it at once if the database is down."""
        try:
            descriptor = connection.pgconn.socket
        except psycopg.Error:
            yield  # closed already: psycopg reports that itself
            return
        token = object()
        with self._lock:
            if self._down and not probe:
                _shut(descriptor)  # fail fast: psycopg sees the connection broken, the pool discards it
            self._waiting[token] = (descriptor, time.monotonic())
        try:
            yield
        finally:
            with self._lock:
                self._waiting.pop(token, None)
        self.last_answer = time.monotonic()  # not reached when the wait failed

    # --- outcomes -----------------------------------------------------------------------------

    def note_failure(self, reason: str) -> None:
        with self._lock:
            was_down, self._down, self.reason = self._down, True, reason
            self._shut_waiting(since_max=time.monotonic())
        if not was_down:
            log.warning("database unreachable: %s", reason, extra={"event": "database_unreachable"})
        self._tell(DatabaseFailure(DATABASE_UNAVAILABLE, reason))

    def cut_waits(self, older_than_seconds: float, reason: str) -> int:
        """Shut the sockets of the connections that have waited for the server longer than this
        (0: all of them); their callers get a connection error. The database is not deemed down."""
        with self._lock:
            cut = self._shut_waiting(since_max=time.monotonic() - older_than_seconds)
        if cut:
            log.warning("cut off %d database connection(s): %s", cut, reason,
                        extra={"event": "database_wait_cut", "connections": cut})
        return cut

    def _shut_waiting(self, since_max: float) -> int:
        """Shut the sockets of the connections waiting since ``since_max`` or earlier (under the lock)."""
        stale = [descriptor for descriptor, since in self._waiting.values() if since <= since_max]
        for descriptor in stale:
            _shut(descriptor)
        return len(stale)

    def remind(self) -> None:
        """Tell the subscribers again that the database is down (nothing if it is not)."""
        if self._down:
            self._tell(DatabaseFailure(DATABASE_UNAVAILABLE, self.reason))

    def note_success(self) -> None:
        with self._lock:
            was_down, self._down = self._down, False
        if was_down:
            log.warning("database answers again", extra={"event": "database_reachable"})
        self._tell(None)

    def subscribe(self, listener: Listener) -> None:
        with self._lock:
            self._listeners.append(listener)

    def unsubscribe(self, listener: Listener) -> None:
        with self._lock, contextlib.suppress(ValueError):
            self._listeners.remove(listener)

    def _tell(self, failure: DatabaseFailure | None) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(failure)
            except Exception:  # noqa: BLE001 - one listener must not silence the others
                log.exception("a database watch listener failed")

    # --- the heartbeat ------------------------------------------------------------------------

    def start(self, connect_arguments: dict[str, Any], probe_timeout_seconds: float,
              wait_max_seconds: float = 0.0) -> None:
        """Start the heartbeat (once per process and database; ``stop`` as many times). With
        ``wait_max_seconds``, it also cuts off every connection that waits for the server longer."""
        with self._lock:
            self._users += 1
            if self._heartbeat is not None:
                return
            self._heartbeat = _Heartbeat(self, connect_arguments, probe_timeout_seconds, wait_max_seconds)
        self._heartbeat.start()

    def stop(self) -> None:
        with self._lock:
            self._users -= 1
            heartbeat = self._heartbeat if self._users <= 0 else None
            if heartbeat is not None:
                self._heartbeat, self._users = None, 0
        if heartbeat is not None:
            heartbeat.stop()
            with self._lock:
                self._down = False  # nobody watches any more: let callers find out for themselves


class _Heartbeat:
    """``SELECT 1`` every ``HEARTBEAT_INTERVAL_SECONDS``, each bounded by the probe timeout; and the
    bound on any one wait for the server (``wait_max_seconds``, 0: none)."""

    def __init__(self, watch: DatabaseWatch, connect_arguments: dict[str, Any], timeout_seconds: float,
                 wait_max_seconds: float = 0.0) -> None:
        self.watch, self.timeout_seconds, self.wait_max_seconds = watch, timeout_seconds, wait_max_seconds
        self._arguments = {**connect_arguments, "autocommit": True}
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._idle: psycopg.Connection[Any] | None = None
        self._in_flight = 0
        self._thread = threading.Thread(target=self._run, name="invario-db-heartbeat", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join(timeout=self.timeout_seconds + 1)
        with self._lock:
            idle, self._idle = self._idle, None
        if idle is not None:
            idle.close()

    def _run(self) -> None:
        while not self._stopping.is_set():
            self._beat()
            self._pause()
            if self.wait_max_seconds > 0:
                self.watch.cut_waits(self.wait_max_seconds, f"no answer within {self.wait_max_seconds:g} s "
                                     "(the statement timeout and a TCP timeout): request or answer lost")

    def _pause(self) -> None:
        """Until the next probe; while the database is down, callers that began waiting for a pooled
        connection meanwhile are failed within a slice instead of waiting out the pool's timeout."""
        resume_at = time.monotonic() + HEARTBEAT_INTERVAL_SECONDS
        while not self._stopping.wait(_SLICE_SECONDS) and time.monotonic() < resume_at:
            self.watch.remind()

    def _beat(self) -> None:
        with self._lock:
            if self._in_flight >= PROBES_IN_FLIGHT_MAX:
                stuck = True
            else:
                stuck, self._in_flight = False, self._in_flight + 1
        if stuck:
            if self._silent_since(time.monotonic() - self.timeout_seconds):
                self.watch.note_failure("the liveness probes are stuck connecting")
            return
        done, outcome = threading.Event(), []
        threading.Thread(target=self._probe, args=(done, outcome), name="invario-db-probe", daemon=True).start()
        if not self._answered(done):
            self.watch.note_failure(f"no answer within {self.timeout_seconds:g} s")  # also shuts the probe's socket
        elif outcome[0] is None:
            self.watch.note_success()
        else:
            self.watch.note_failure(_one_line(outcome[0]))

    def _answered(self, done: threading.Event) -> bool:
        """Wait for the probe; give it up once it, and every other connection, have been silent for the
        probe timeout. A busy database that is slow to answer the probe but answers other queries is
        not down: cutting its requests off would be the outage."""
        started = time.monotonic()
        while not done.wait(_SLICE_SECONDS):
            self.watch.remind()
            now = time.monotonic()
            if now - started >= self.timeout_seconds * PROBE_WAIT_MAX_FACTOR:
                return False
            if now - started >= self.timeout_seconds and self._silent_since(now - self.timeout_seconds):
                return False
        return True

    def _silent_since(self, moment: float) -> bool:
        return self.watch.last_answer < moment

    def _probe(self, done: threading.Event, outcome: list[BaseException | None]) -> None:
        try:
            with self._lock:
                kept, self._idle = self._idle, None
            if kept is not None:
                try:
                    self._select_one(kept)
                    outcome.append(None)
                    return
                except psycopg.Error:
                    pass  # its session may have been ended (pg_terminate_backend, a failover): no verdict yet
            self._select_one(psycopg.connect(**self._arguments))
            outcome.append(None)
        except Exception as exc:  # noqa: BLE001 - any failure means the database is not usable
            outcome.append(exc)
        finally:
            with self._lock:
                self._in_flight -= 1
            done.set()

    def _select_one(self, connection: psycopg.Connection[Any]) -> None:
        """``SELECT 1`` on ``connection``, then keep it for the next probe (or close it)."""
        try:
            with self.watch.waiting(connection, probe=True):
                connection.execute("SELECT 1")
        except BaseException:
            connection.close()
            raise
        with self._lock:
            if self._idle is None:
                self._idle, connection = connection, None  # type: ignore[assignment]
        if connection is not None:
            connection.close()


_registry_lock = threading.Lock()
_watches: dict[_Key, DatabaseWatch] = {}


def watch_for(params: dict[str, Any]) -> DatabaseWatch:
    """The process's watch of the database that connection parameters ``params`` point at."""
    key = _key(params)
    with _registry_lock:
        watch = _watches.get(key)
        if watch is None:
            watch = _watches[key] = DatabaseWatch(key)
        return watch


class WatchedConnection(psycopg.Connection[Any]):
    """A psycopg connection that fails fast while its database is down and can be cut off when it goes down."""

    _watch: DatabaseWatch | None = None

    @classmethod
    def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:  # type: ignore[override]
        watch = watch_for(conninfo_to_dict(conninfo, **{k: v for k, v in kwargs.items() if _is_param(k)}))
        watch.raise_if_down()
        connection = super().connect(conninfo, **kwargs)
        connection._watch = watch
        return connection

    def wait(self, gen: Any, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        watch = self._watch
        if watch is None:
            return super().wait(gen, *args, **kwargs)
        with watch.waiting(self):
            return super().wait(gen, *args, **kwargs)


# psycopg.connect's own keywords, which are not connection parameters
_NOT_PARAMS = frozenset({"autocommit", "prepare_threshold", "context", "row_factory", "cursor_factory"})


def _is_param(name: str) -> bool:
    return name not in _NOT_PARAMS
