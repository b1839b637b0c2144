"""How every PostgreSQL connection of the service is made: bounded at each step.

A database that stops answering without resetting the connection (a network
partition, a host that froze) is the failure nothing else notices: the kernel
keeps waiting for an answer, for minutes. So every connection (the event store's
pool, the SQLAlchemy engine, the conflict lane, the LISTEN connection, the
health and liveness probes) is made with:

- ``connect_timeout`` (``INVARIO_DB_CONNECT_TIMEOUT_SECONDS``; libpq's minimum is 2 s);
- TCP keepalives and ``tcp_user_timeout``, derived from
  ``INVARIO_DB_TCP_TIMEOUT_SECONDS``: the kernel gives up on a silent peer after
  about that long, whether the connection is idle or waiting for an answer;
- ``application_name``: the process (``invario-serve``, ``invario-worker``, ...), so
  ``pg_stat_activity`` (and ``invario restore``) can say who is connected;
- for the API's connections only, ``statement_timeout``
  (``INVARIO_DB_STATEMENT_TIMEOUT_SECONDS``): the server cancels a statement that
  runs longer (SQLSTATE 57014, ``database_busy``). Operator commands and the
  worker run without it: a rebuild, a restore or a reconciliation may
  legitimately run one statement for minutes.

The kernel's bounds are a backstop; the API notices a silent database within
``INVARIO_DB_PROBE_TIMEOUT_SECONDS`` through ``infrastructure.pg_watch``.
"""

from __future__ import annotations

import math
from typing import Any

from infrastructure.database import DatabaseURL

KEEPALIVE_PROBES = 3
APPLICATION_NAME_DEFAULT = "invario"
_application_name = APPLICATION_NAME_DEFAULT


def name_this_process(name: str) -> None:
    """The ``application_name`` of this process's connections (``invario-serve``, ``invario-worker``...):
    what ``pg_stat_activity`` shows, and what ``invario restore`` names when it refuses to run beside it."""
    global _application_name  # noqa: PLW0603 - one name per process, set once by its entry point
    _application_name = name[:63]  # PostgreSQL keeps at most NAMEDATALEN - 1 bytes


def application_name() -> str:
    return _application_name


def connection_options(
    connect_timeout_seconds: int, tcp_timeout_seconds: int, statement_timeout_seconds: float = 0
) -> dict[str, Any]:
    """libpq keywords bounding connecting, silent peers and (if > 0) each statement."""
    idle = max(1, math.ceil(tcp_timeout_seconds / 2))
    interval = max(1, (tcp_timeout_seconds - idle) // KEEPALIVE_PROBES)
    options: dict[str, Any] = {
        "connect_timeout": connect_timeout_seconds,
        "keepalives": 1,
        "keepalives_idle": idle,
        "keepalives_interval": interval,
        "keepalives_count": KEEPALIVE_PROBES,
        "tcp_user_timeout": tcp_timeout_seconds * 1000,
        "application_name": _application_name,
    }
    if statement_timeout_seconds > 0:
        options["options"] = f"-c statement_timeout={int(statement_timeout_seconds * 1000)}"
    return options


def connect_arguments(database: DatabaseURL, options: dict[str, Any]) -> dict[str, Any]:
    """Keyword arguments of ``psycopg.connect`` for ``database`` with ``options``."""
    return {
        "host": database.host,
        "port": database.port,
        "user": database.user,
        "password": database.password or None,
        "dbname": database.dbname,
        **database.libpq_options(),
        **options,
    }
