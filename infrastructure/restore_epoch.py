"""The restore epoch: how a running process notices that its database was restored under it.

A process holds state read from the database: aggregates in the write path's
cache (held state the group commit decides on unread), the API keys it read,
pooled connections with prepared statements that name the tables' and types'
OIDs. After ``invario restore`` all of it is wrong: a held account may be ahead
of the restored log (a write on it would leave a gap in its hash chain), a key
of a tenant the backup never had would still be accepted, and the old prepared
statements fail with ``cache lookup failed for type``.

The epoch names the database's current incarnation:

- ``row``: the value of the one row of ``invario_restore_epoch`` (migration
  0011), a random id that ``invario restore`` replaces after every restore;
- ``events_table`` (PostgreSQL): the OID of the events table.
  ``pg_restore --clean`` drops and creates it again inside its transaction, so
  this part changes at the very commit of the restore, before the row is set.

``RestoreEpochWatch`` is the process's knowledge of it. It is read when the
runtime opens and then every ``INVARIO_RESTORE_EPOCH_CHECK_SECONDS`` by a
thread of long-running processes, and at once when a write finds it changed.
On a change its listeners drop the caches and the pooled connections before
the new epoch is taken as known. Every write carries the epoch it decided
under (``pinned`` around a batch, else the known one) as a condition of the
events' insert (``infrastructure.pg_store``; on SQLite a check in the same
transaction): a batch that decided on state read before a restore is refused
with ``application.retries.StoreReplaced`` instead of being written on top
of the restored log; the write path then decides once more, on the restored
state (a caller that still gets it: HTTP 409, retry).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextvars import ContextVar
from dataclasses import dataclass

from sqlalchemy import Engine, text
from sqlalchemy.exc import DBAPIError

TABLE = "invario_restore_epoch"
PG_EVENTS_TABLE = "invario_events"

log = logging.getLogger("invario.database")


@dataclass(frozen=True)
class Epoch:
    row: str | None  # None: no epoch table yet (a schema before migration 0011)
    events_table: int | None = None  # PostgreSQL: the events table's OID; SQLite: None

    def describe(self) -> str:
        return f"{self.row or 'none'}" + (f" (events table oid {self.events_table})" if self.events_table else "")


def read_epoch(engine: Engine) -> Epoch:
    """The database's epoch now (two cheap reads: a catalog lookup and one row by primary key)."""
    with engine.connect() as connection:
        oid = None
        if engine.dialect.name == "postgresql":
            oid = connection.execute(text("SELECT to_regclass(:t)::oid::bigint"), {"t": PG_EVENTS_TABLE}).scalar()
        try:
            row = connection.execute(text(f"SELECT epoch FROM {TABLE} WHERE id = 1")).scalar()  # noqa: S608
        except DBAPIError:
            connection.rollback()
            row = None  # not migrated yet
    return Epoch(row, int(oid) if oid is not None else None)


def new_epoch_value() -> str:
    return str(uuid.uuid4())


def begin_new_epoch(engine: Engine) -> str:
    """Give the database a new epoch (``invario restore``, once the restored schema is current)."""
    value = new_epoch_value()
    with engine.begin() as connection:
        connection.execute(text(f"DELETE FROM {TABLE}"))  # noqa: S608 - a constant
        connection.execute(text(f"INSERT INTO {TABLE} (id, epoch, restored_at) VALUES (1, :epoch, "  # noqa: S608
                                "CURRENT_TIMESTAMP)"), {"epoch": value})
    return value


def begin_new_epoch_sqlite(connection: sqlite3.Connection) -> None:
    """The same in a SQLite file about to be copied in: the epoch changes with the copy itself."""
    if connection.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (TABLE,)).fetchone():
        connection.execute(f"UPDATE {TABLE} SET epoch = ?, restored_at = CURRENT_TIMESTAMP",  # noqa: S608
                           (new_epoch_value(),))
        connection.commit()


Listener = Callable[[], None]


class RestoreEpochWatch:
    """This process's view of the restore epoch; tells its listeners when it changes."""

    def __init__(self, read: Callable[[], Epoch], check_seconds: float) -> None:
        self._read = read
        self.check_seconds = check_seconds
        self.known: Epoch | None = None
        self._checked_at = -math.inf  # monotonic time of the last check
        self._lock = threading.Lock()
        self._listeners: list[Listener] = []
        self._pinned: ContextVar[Epoch | None] = ContextVar("invario_restore_epoch", default=None)
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None

    def subscribe(self, listener: Listener) -> None:
        """``listener`` runs (in the thread that noticed) when a restore is noticed, before the new epoch is known."""
        with self._lock:
            self._listeners.append(listener)

    def check(self) -> bool:
        """Read the epoch now; True if it changed (the listeners have run)."""
        self._checked_at = time.monotonic()
        current = self._read()
        with self._lock:
            previous = self.known
            restored = previous is not None and current != previous and not _only_migrated(previous, current)
            if restored:
                log.warning("the database was restored (epoch %s, was %s): dropping held state and connections",
                            current.describe(), previous.describe() if previous else "none",
                            extra={"event": "database_restored"})
                for listener in self._listeners:
                    try:
                        listener()
                    except Exception:  # noqa: BLE001 - one listener must not keep the others from forgetting
                        log.exception("a restore epoch listener failed")
            self.known = current
        return restored

    def check_quietly(self) -> None:
        """``check``, when the database may be unreachable: the database watch reports that, not this."""
        with contextlib.suppress(Exception):
            self.check()

    # --- writes ---------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def pinned(self) -> Iterator[None]:
        """Writes in this block carry the epoch known when it began (a batch decides on state read in it)."""
        if self._pinned.get() is not None:
            yield
            return
        token = self._pinned.set(self._known_now())
        try:
            yield
        finally:
            self._pinned.reset(token)

    def expected(self) -> Epoch | None:
        """The epoch a write made now must find: the pinned one, else the known one."""
        return self._pinned.get() or self._known_now()

    def _known_now(self) -> Epoch | None:
        """The known epoch; while it has no row (the process opened before migration 0011 ran, as
        ``make run`` and ``serve`` on SQLite do), read again at most every ``check_seconds``."""
        known = self.known
        if (known is None or known.row is None) and time.monotonic() - self._checked_at >= self.check_seconds:
            self.check_quietly()
            known = self.known
        return known

    # --- the periodic check -------------------------------------------------------------------------

    def start(self) -> None:
        """Check every ``check_seconds`` in a daemon thread (long-running processes: the API, the worker)."""
        if self._thread is not None or self.check_seconds <= 0:
            return
        self._thread = threading.Thread(target=self._run, name="invario-restore-epoch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=self.check_seconds + 5)

    def _run(self) -> None:
        while not self._stopping.wait(self.check_seconds):
            self.check_quietly()


def _only_migrated(previous: Epoch, current: Epoch) -> bool:
    """The epoch table appeared (migration 0011 ran) on the same events table: not a restore."""
    return previous.row is None and previous.events_table == current.events_table
