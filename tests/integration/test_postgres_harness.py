"""The database fixtures of tests/conftest.py do what they promise."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import psycopg
import pytest

from tests.support import postgres

USER_TABLES = """
    SELECT count(*) FROM information_schema.tables
    WHERE table_schema NOT IN ('pg_catalog', 'information_schema')
"""


def _user_table_count(url: str) -> int:
    with psycopg.connect(url) as conn:
        return conn.execute(USER_TABLES).fetchone()[0]


def test_pg_database_exists_and_is_empty(pg_database_url: str) -> None:
    name = postgres.database_name(pg_database_url)
    assert name.startswith(postgres.DATABASE_PREFIX)
    with psycopg.connect(pg_database_url) as conn:
        assert conn.execute("SELECT current_database()").fetchone()[0] == name
    assert _user_table_count(pg_database_url) == 0


def test_database_url_yields_a_working_url(database_url: str, request: pytest.FixtureRequest) -> None:
    if request.node.callspec.id == "sqlite":
        assert database_url.startswith("sqlite:///")
        assert Path(database_url.removeprefix("sqlite:///")).parent.is_dir()
    else:
        assert database_url.startswith("postgresql://")
        with psycopg.connect(database_url) as conn:
            assert conn.execute("SELECT 1").fetchone()[0] == 1


def test_each_pg_database_is_distinct(
    pg_database_url: str, make_pg_database: Callable[[], str]
) -> None:
    other = make_pg_database()
    assert postgres.database_name(other) != postgres.database_name(pg_database_url)

    with psycopg.connect(pg_database_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE only_here (id int)")
    assert _user_table_count(pg_database_url) == 1
    assert _user_table_count(other) == 0


def test_dropped_database_is_gone(pg_server_url: str) -> None:
    url = postgres.create_database(pg_server_url)
    name = postgres.database_name(url)
    with psycopg.connect(url):  # an open session must not block the drop
        assert postgres.database_exists(pg_server_url, name)
        postgres.drop_database(pg_server_url, url)
    assert not postgres.database_exists(pg_server_url, name)


def test_database_urls_keep_credentials_and_options() -> None:
    url = postgres.with_database("postgresql://u:secret@db.example:6543/postgres?sslmode=require", "x")
    parts = urlsplit(url)
    assert (parts.username, parts.password, parts.hostname, parts.port) == ("u", "secret", "db.example", 6543)
    assert (parts.path, parts.query) == ("/x", "sslmode=require")
    assert "secret" not in postgres.redact(url)
