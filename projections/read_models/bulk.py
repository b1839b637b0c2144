"""Writing many rows per batch, fast on both stores.

On PostgreSQL rows go in with a binary ``COPY ... FROM STDIN`` on the transaction's own
connection, and batched updates are single statements over ``unnest()``ed
arrays: an executemany would be one statement per row. On SQLite
``executemany`` is already a tight C loop. Both stores get exactly the same
values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from psycopg import sql
from sqlalchemy import BigInteger, Connection, Date, DateTime, Integer, String, Table, TextClause, insert

# Binary COPY needs each column's PostgreSQL type; these are the types the read models use.
_COPY_TYPES = ((BigInteger, "int8"), (Integer, "int4"), (DateTime, "timestamptz"), (Date, "date"), (String, "text"))


def is_postgres(connection: Connection) -> bool:
    return connection.dialect.name == "postgresql"


def insert_rows(connection: Connection, table: Table, rows: Sequence[Sequence[Any]]) -> None:
    """Insert ``rows``, each a sequence of values in the order of ``table.columns``."""
    if not rows:
        return
    names = [column.name for column in table.columns]
    if is_postgres(connection):
        _copy_rows(connection, table, names, rows)
    else:
        connection.execute(insert(table), [dict(zip(names, row, strict=True)) for row in rows])


def _copy_rows(connection: Connection, table: Table, names: list[str], rows: Sequence[Sequence[Any]]) -> None:
    statement = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT BINARY)").format(
        sql.Identifier(table.name), sql.SQL(", ").join(sql.Identifier(name) for name in names)
    )
    with _dbapi(connection).cursor() as cursor, cursor.copy(statement) as copy:
        copy.set_types([_copy_type(column.type) for column in table.columns])
        for row in rows:
            copy.write_row(row)


def _copy_type(column_type: Any) -> str:
    for kind, name in _COPY_TYPES:
        if isinstance(column_type, kind):
            return name
    raise AssertionError(f"no COPY type for {column_type!r}")


def execute_many(
    connection: Connection, portable: TextClause, postgres_arrays: str, rows: Sequence[dict[str, Any]]
) -> None:
    """Run a statement for each row; on PostgreSQL as one statement over arrays.

    ``postgres_arrays`` takes one ``%(name)s`` array parameter per key of the rows.
    """
    if not rows:
        return
    if is_postgres(connection):
        arrays = {key: [row[key] for row in rows] for key in rows[0]}
        with _dbapi(connection).cursor() as cursor:
            cursor.execute(postgres_arrays, arrays, binary=True)  # binary arrays: no per-element quoting
    else:
        connection.execute(portable, list(rows))


def _dbapi(connection: Connection) -> Any:
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    return dbapi_connection
