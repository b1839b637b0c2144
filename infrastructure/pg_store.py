"""The PostgreSQL event store with a bounded retry, so a dead database is reported in seconds.

eventsourcing's ``PostgresApplicationRecorder`` retries every read and write up
to 10 times on ``OperationalError``/``InterfaceError``, and each attempt may wait
the pool's timeout (``INVARIO_DB_CONNECT_TIMEOUT_SECONDS``) for a connection: a
request could hang for ten timeouts while the database is down. Here each
operation gets ``ATTEMPTS_MAX`` attempts: the second one covers a connection that
broke between the pool's check and its use (the database restarted), which is
what the retry is for. Selected through eventsourcing's
``APPLICATION_RECORDER_TOPIC`` by ``infrastructure.bootstrap``.
"""

from __future__ import annotations

from typing import Any

from eventsourcing.persistence import InterfaceError, OperationalError
from eventsourcing.postgres import PostgresApplicationRecorder
from eventsourcing.utils import retry

ATTEMPTS_MAX = 2
RETRY_WAIT_SECONDS = 0.2


def _bounded(name: str) -> Any:
    unbounded = getattr(PostgresApplicationRecorder, name)
    undecorated = getattr(unbounded, "__wrapped__", unbounded)
    return retry((InterfaceError, OperationalError), max_attempts=ATTEMPTS_MAX, wait=RETRY_WAIT_SECONDS)(undecorated)


class BoundedRetryPostgresRecorder(PostgresApplicationRecorder):
    """``PostgresApplicationRecorder`` whose reads and writes give up after ``ATTEMPTS_MAX`` attempts."""

    select_events = _bounded("select_events")
    insert_events = _bounded("insert_events")
    select_notifications = _bounded("select_notifications")
    max_notification_id = _bounded("max_notification_id")


RECORDER_TOPIC = f"{__name__}:{BoundedRetryPostgresRecorder.__name__}"
