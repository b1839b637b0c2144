"""Reading several read models as of one position.

Every read model keeps its rows and its tracking position in one database
transaction, so a read that sees one snapshot of the database sees each read
model exactly as of its tracking position. ``snapshot`` opens such a read:
REPEATABLE READ on PostgreSQL, a deferred transaction on SQLite (WAL mode
keeps the snapshot of the first read until the transaction ends).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection, Engine


class PositionsApart(Exception):
    """Read models that must be compared at one position are at different positions."""


@contextmanager
def snapshot(engine: Engine) -> Iterator[Connection]:
    """A connection whose reads all see one consistent snapshot; nothing is written."""
    with engine.connect() as connection:
        if connection.dialect.name == "postgresql":
            connection = connection.execution_options(isolation_level="REPEATABLE READ", postgresql_readonly=True)
        else:
            # pysqlite starts transactions only before writes; a read snapshot needs an explicit one.
            connection.exec_driver_sql("BEGIN")
        try:
            yield connection
        finally:
            connection.rollback()
