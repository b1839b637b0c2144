"""INVARIO_DATABASE_URL's query parameters reach every connection, or are refused at once."""

from __future__ import annotations

import pytest

from infrastructure.database import DatabaseURL
from infrastructure.errors import ConfigError
from infrastructure.pg_connections import connect_arguments
from infrastructure.runtime import eventsourcing_env
from infrastructure.settings import Settings

BASE = "postgresql://ledger:s3cret@db.internal:5433/invario"


def test_libpq_parameters_reach_every_kind_of_connection() -> None:
    url = f"{BASE}?sslmode=verify-full&sslrootcert=/etc/ssl/db-ca.pem&target_session_attrs=read-write"
    database = DatabaseURL.parse(url)
    expected = {"sslmode": "verify-full", "sslrootcert": "/etc/ssl/db-ca.pem", "target_session_attrs": "read-write"}

    assert database.libpq_options() == expected
    assert expected.items() <= connect_arguments(database, {"connect_timeout": 5}).items()  # psycopg.connect
    assert "sslmode=verify-full" in database.sqlalchemy_url()  # the read models' engine
    store = eventsourcing_env(Settings(database_url=url, auth_pepper="p" * 32), database)["POSTGRES_CONNECTION_OPTIONS"]
    assert "sslmode=verify-full" in store and "sslrootcert=/etc/ssl/db-ca.pem" in store  # the event store's pool


@pytest.mark.parametrize(("query", "says"), [
    ("sslmode=bogus", "sslmode='bogus' is not one of disable, allow, prefer, require, verify-ca, verify-full"),
    ("target_session_attrs=writable", "target_session_attrs='writable' is not one of"),
    ("no_such_parameter=1", "no_such_parameter is not a PostgreSQL connection parameter"),
    ("connect_timeout=3", "connect_timeout cannot be a query parameter: it is set by INVARIO_DB_CONNECT_TIMEOUT"),
    ("options=-c%20statement_timeout%3D0", "options cannot be a query parameter"),
    ("host=elsewhere", "host cannot be a query parameter: it is set by the URL's host"),
    ("sslmode=require&sslmode=disable", "names a query parameter twice"),
    ("sslmode", "malformed query string"),
])
def test_a_parameter_that_would_be_dropped_or_mistyped_is_refused(query: str, says: str) -> None:
    with pytest.raises(ConfigError, match=says.replace("(", r"\(").replace(")", r"\)")) as refused:
        DatabaseURL.parse(f"{BASE}?{query}")
    assert "s3cret" not in str(refused.value)


def test_a_url_without_parameters_has_none() -> None:
    assert DatabaseURL.parse(BASE).libpq_options() == {}
