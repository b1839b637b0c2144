"""Waking up when the event log grows.

On PostgreSQL the event store sends ``NOTIFY <events table>`` inside every
transaction that inserts events (eventsourcing's ``PostgresApplicationRecorder``
does it, so no trigger is needed); a listener wakes when one commits. On SQLite
there is nothing to listen to, so waiting is a plain bounded sleep.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Protocol

import psycopg
from psycopg import sql

from infrastructure.database import DatabaseURL
from infrastructure.pg_connections import connect_arguments

log = logging.getLogger(__name__)


class LogWaiter(Protocol):
    def wait(self, timeout_seconds: float) -> bool:
        """Return True when the log may have grown, False after ``timeout_seconds`` without news."""

    def close(self) -> None: ...


class SleepingWaiter:
    """Polling: waits the whole timeout unless ``stop`` is set."""

    def __init__(self, stop: threading.Event) -> None:
        self._stop = stop

    def wait(self, timeout_seconds: float) -> bool:
        self._stop.wait(timeout_seconds)
        return False

    def close(self) -> None:
        pass


class PostgresNotifyWaiter:
    """LISTENs on the event store's channel on a connection of its own."""

    def __init__(self, database: DatabaseURL, channel: str, options: dict[str, Any]) -> None:
        """``options``: libpq's (``infrastructure.pg_connections``): keepalives notice a silent server."""
        assert database.is_postgres
        self._database = database
        self._channel = channel
        self._options = options
        self._connection: psycopg.Connection | None = None

    @property
    def channel(self) -> str:
        return self._channel

    def wait(self, timeout_seconds: float) -> bool:
        try:
            connection = self._listening_connection()
            for _ in connection.notifies(timeout=timeout_seconds, stop_after=1):
                return True
            return False
        except psycopg.Error as exc:
            # The followers poll on their own schedule meanwhile; the next wait reconnects.
            log.warning("listening for new events failed (%s); reconnecting", type(exc).__name__)
            self.close()
            threading.Event().wait(min(timeout_seconds, 1.0))
            return True  # unknown: look at the log

    def _listening_connection(self) -> psycopg.Connection:
        if self._connection is None or self._connection.closed:
            self._connection = psycopg.connect(**connect_arguments(self._database, self._options), autocommit=True)
            self._connection.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
        return self._connection

    def close(self) -> None:
        if self._connection is not None:
            try:
                self._connection.close()
            finally:
                self._connection = None
