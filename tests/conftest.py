"""Shared fixtures: SQLite and PostgreSQL databases for every test that needs one.

Where PostgreSQL comes from (first match wins; logic in ``tests/support/postgres.py``):

1. ``INVARIO_TEST_DATABASE_URL`` - a ``postgresql://`` URL of a server on which
   we may CREATE DATABASE. If it is set but does not work, discovery stops
   there: the user asked for that server, so we neither fall through to
   another one nor pretend it is fine.
2. ``postgresql://postgres@127.0.0.1:5432/postgres`` if it answers within 2 s.
3. A throwaway server (pytest-postgresql's ``PostgreSQLExecutor``) on a free
   port, if ``pg_ctl`` is installed. As root it runs as the ``postgres``
   system user via ``runuser``; without that user or ``runuser`` this step
   is skipped with its reason.

If none works, tests that need PostgreSQL (marked ``postgres``, or using a
PostgreSQL fixture) are skipped with the reason, and a banner repeats it at
the end of the run. With ``CI=true`` the same situation stops the whole
session with a non-zero exit status instead: CI must never go green by
skipping the PostgreSQL half of the suite.

Fixtures:

- ``pg_server_url`` (session): admin URL of the server found above.
- ``make_pg_database`` (function): call it to get the URL of a fresh
  ``invario_test_<hex>`` database; all are dropped after the test.
- ``pg_database_url`` (function): one such database.
- ``sqlite_database_url``: ``sqlite:///<tmp_path>/invario.db``.
- ``database_url``: parametrized ``sqlite`` / ``postgres`` so one scenario
  runs on both stores; the ``postgres`` case carries the ``postgres`` mark.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import postgres

_UNAVAILABLE = pytest.StashKey[str]()


def _postgres_unavailable(config: pytest.Config, reason: str) -> None:
    """Skip the current test, or end the session when running under CI."""
    message = f"PostgreSQL unavailable - {reason}"
    if postgres.running_under_ci():
        pytest.exit(
            f"CI=true requires PostgreSQL for the test suite. {message}",
            returncode=pytest.ExitCode.USAGE_ERROR,
        )
    config.stash[_UNAVAILABLE] = reason
    pytest.skip(message)


def pytest_report_header(config: pytest.Config) -> str:
    source = postgres.explicit_server_url()
    where = postgres.redact(source) if source else "auto-discovered on first use"
    return f"invario: PostgreSQL {where}; CI={'true' if postgres.running_under_ci() else 'false'}"


def pytest_terminal_summary(terminalreporter, exitstatus: int, config: pytest.Config) -> None:
    reason = config.stash.get(_UNAVAILABLE, None)
    if reason is None:
        return
    terminalreporter.section("PostgreSQL tests were SKIPPED", sep="!", red=True, bold=True)
    terminalreporter.write_line(reason, red=True)


@pytest.fixture(scope="session")
def pg_server_url(request: pytest.FixtureRequest) -> Iterator[str]:
    """Admin URL of a PostgreSQL server where we may CREATE DATABASE."""
    with contextlib.ExitStack() as stack:
        found = postgres.locate_server(stack)
        if found.url is None:
            _postgres_unavailable(request.config, found.detail)
        yield found.url


@pytest.fixture(autouse=True)
def _postgres_marker_gate(request: pytest.FixtureRequest) -> None:
    """Tests marked ``postgres`` skip (or fail under CI) without a server."""
    if request.node.get_closest_marker("postgres") is not None:
        request.getfixturevalue("pg_server_url")


@pytest.fixture
def make_pg_database(pg_server_url: str) -> Iterator[Callable[[], str]]:
    """Factory for fresh databases; every one made is dropped afterwards."""
    created: list[str] = []

    def make() -> str:
        created.append(postgres.create_database(pg_server_url))
        return created[-1]

    yield make
    for url in reversed(created):
        postgres.drop_database(pg_server_url, url)


@pytest.fixture
def pg_database_url(make_pg_database: Callable[[], str]) -> str:
    """URL of a fresh, empty PostgreSQL database, dropped after the test."""
    return make_pg_database()


@pytest.fixture
def sqlite_database_url(tmp_path: Path) -> str:
    """URL of a SQLite database file in the test's temporary directory."""
    return f"sqlite:///{tmp_path.as_posix()}/invario.db"


@pytest.fixture(
    params=[
        pytest.param("sqlite", id="sqlite"),
        pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
    ]
)
def database_url(request: pytest.FixtureRequest) -> str:
    """The same scenario on each store: a SQLite or a PostgreSQL URL."""
    fixture = "sqlite_database_url" if request.param == "sqlite" else "pg_database_url"
    return request.getfixturevalue(fixture)
