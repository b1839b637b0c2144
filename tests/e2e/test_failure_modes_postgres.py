"""Failure modes of the database under a real ``invario serve`` (docs/failure-modes.md).

Each test runs the API as a subprocess against PostgreSQL and breaks the
database underneath it: the server stopped (a private server this test owns),
the database made read-only, the event table locked past the lock timeout, the
disk full (a trigger raising SQLSTATE 53100, the error PostgreSQL gives when it
cannot extend a file). Every answer must be a quick 503 problem with a code and
``Retry-After`` (requests are bounded by a client timeout, so a hang fails the
test), nothing may be half-written, and the service must recover by itself.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.serve_support import (
    ServedApi,
    assert_database_problem,
    event_count,
    prepare_ledger,
    serve_environment,
    write_side_counts,
)
from tests.e2e.http_fixtures import PEPPER
from tests.e2e.test_cli_basics import INVARIO, run_invario
from tests.support import postgres
from tests.support.pg_server import PrivateServer, ServerSetupFailed

pytestmark = pytest.mark.postgres

RECOVERY_DEADLINE_SECONDS = 90


@pytest.fixture
def private_server(pg_server_url: str) -> Iterator[PrivateServer]:  # noqa: ARG001 - the same gate as every PG test
    try:
        server = PrivateServer()
        server.start()
    except ServerSetupFailed as exc:
        if postgres.running_under_ci():
            pytest.fail(f"cannot run a private PostgreSQL server: {exc}")
        pytest.skip(f"cannot run a private PostgreSQL server: {exc}")
    try:
        yield server
    finally:
        server.remove()


def _until(predicate, seconds: float = RECOVERY_DEADLINE_SECONDS):  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until it returns something truthy; that value."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = predicate()
        if found:
            return found
        time.sleep(0.5)
    raise AssertionError(f"not reached within {seconds} s")


def _terminate_sessions(server_url: str, database_url: str) -> None:
    """Make the service's pools reconnect, as after a failover (they pick up database settings on connect)."""
    with postgres.connect(server_url) as connection:
        connection.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (postgres.database_name(database_url),),
        )


def test_database_down_answers_503_fast_and_the_service_recovers_by_itself(
    private_server: PrivateServer, tmp_path: Path
) -> None:
    url = postgres.create_database(private_server.url)
    book = prepare_ledger(url)
    with ServedApi(url, book, tmp_path / "serve.log") as api:
        assert api.post_transaction("before").status_code == 201
        private_server.stop()

        for attempt in range(3):  # the first waits for the pool; the others are refused at once
            assert_database_problem(api.post_transaction(f"during-{attempt}"), "database_unavailable")
        assert_database_problem(api.get_account(), "database_unavailable")
        for path in ("/health", "/health/ready"):
            health = api.client.get(path)
            assert health.status_code == 503 and int(health.headers["retry-after"]) >= 1
            assert health.json()["database"] == "error"
        assert api.process.poll() is None

        private_server.start()  # the API is not restarted
        _until(lambda: api.client.get("/health").status_code == 200)
        assert _until(lambda: api.post_transaction("after").status_code == 201)
        assert _until(lambda: api.balance().status_code == 200 and api.balance().json()["balance"] == "2.00"), (
            "the followers did not resume"
        )
        assert '"unhandled_error"' not in api.log()
    events, cash, revenue = write_side_counts(url)
    assert (cash, revenue) == (200, -200)  # "before" and "after"; nothing of the outage
    assert events > 0


def test_the_worker_rides_out_an_outage_and_catches_up(private_server: PrivateServer, tmp_path: Path) -> None:
    url = postgres.create_database(private_server.url)
    book = prepare_ledger(url)
    environment = serve_environment(url, INVARIO_WORKER_METRICS_PORT="0")
    log_path = tmp_path / "worker.log"
    with log_path.open("w") as log:
        worker = subprocess.Popen([INVARIO, "worker"], env=environment, stdout=log, stderr=subprocess.STDOUT)
    try:
        _until(lambda: "following" in log_path.read_text())
        private_server.stop()
        refused = run_invario("serve", env={"INVARIO_DATABASE_URL": url, "INVARIO_AUTH_PEPPER": PEPPER})
        assert refused.returncode == 3 and "database unavailable" in refused.stderr  # no start without it
        _until(lambda: "listening for new events failed" in log_path.read_text())
        assert worker.poll() is None, log_path.read_text()[-3000:]
        private_server.start()
        with ServedApi(url, book, tmp_path / "serve.log", "--no-followers") as api:
            assert api.post_transaction("after").status_code == 201
            assert _until(lambda: api.balance().json().get("balance") == "1.00"), "the worker did not catch up"
    finally:
        worker.terminate()
        worker.wait(60)


def test_a_read_only_database_refuses_writes_and_serves_reads(
    pg_server_url: str, pg_database_url: str, tmp_path: Path
) -> None:
    book = prepare_ledger(pg_database_url)
    name = postgres.database_name(pg_database_url)
    with ServedApi(pg_database_url, book, tmp_path / "serve.log") as api:
        assert api.post_transaction("before").status_code == 201
        _until(lambda: api.balance().json().get("balance") == "1.00")
        before = write_side_counts(pg_database_url)
        with postgres.connect(pg_server_url) as connection:
            connection.execute(f'ALTER DATABASE "{name}" SET default_transaction_read_only = on')
        _terminate_sessions(pg_server_url, pg_database_url)

        assert_database_problem(api.post_transaction("while-read-only"), "database_read_only")
        assert_database_problem(api.post_transaction("while-read-only-2"), "database_read_only")
        read = api.balance()
        assert read.status_code == 200 and read.json()["balance"] == "1.00"
        assert api.get_account().status_code == 200
        assert api.client.get("/health").status_code == 200
        assert event_count(pg_database_url) == before[0]
        command = run_invario("create-tenant", "globex", env={"INVARIO_DATABASE_URL": pg_database_url,
                                                               "INVARIO_AUTH_PEPPER": PEPPER})
        assert command.returncode == 3 and len(command.stderr.strip().splitlines()) == 1, command.stderr
        assert "Traceback" not in command.stderr + command.stdout

        with postgres.connect(pg_server_url) as connection:
            connection.execute(f'ALTER DATABASE "{name}" RESET default_transaction_read_only')
        _terminate_sessions(pg_server_url, pg_database_url)
        assert write_side_counts(pg_database_url) == before
        assert _until(lambda: api.post_transaction("after").status_code == 201)
    assert write_side_counts(pg_database_url)[1:] == (200, -200)


def test_a_lock_timeout_is_a_503_and_writes_nothing(pg_database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(pg_database_url)
    with ServedApi(pg_database_url, book, tmp_path / "serve.log", INVARIO_DB_LOCK_TIMEOUT_SECONDS="1") as api:
        assert api.post_transaction("before").status_code == 201
        before = write_side_counts(pg_database_url)
        with psycopg_connection(pg_database_url) as holder, holder.transaction():
            holder.execute("LOCK TABLE invario_events IN EXCLUSIVE MODE")  # what every writer takes first
            assert_database_problem(api.post_transaction("while-locked"), "database_busy")
            assert api.get_account().status_code == 200  # readers are not blocked by the writers' lock
        assert write_side_counts(pg_database_url) == before
        assert api.post_transaction("after").status_code == 201
    assert write_side_counts(pg_database_url)[1:] == (200, -200)


def test_a_full_disk_is_a_503_and_writes_nothing(pg_database_url: str, tmp_path: Path) -> None:
    book = prepare_ledger(pg_database_url)
    with ServedApi(pg_database_url, book, tmp_path / "serve.log") as api:
        assert api.post_transaction("before").status_code == 201
        before = write_side_counts(pg_database_url)
        with psycopg_connection(pg_database_url) as connection:
            connection.execute(DISK_FULL_TRIGGER)
        assert_database_problem(api.post_transaction("disk-full"), "database_disk_full")
        assert api.get_account().status_code == 200
        assert write_side_counts(pg_database_url) == before
        with psycopg_connection(pg_database_url) as connection:
            connection.execute("DROP TRIGGER invario_test_disk_full ON invario_events")
        assert api.post_transaction("disk-full").status_code == 201  # the same request, now accepted
    assert write_side_counts(pg_database_url)[1:] == (200, -200)


# PostgreSQL answers a write it cannot store for want of space with SQLSTATE 53100 (could not extend
# file: No space left on device); this trigger gives the same answer to every insert into the log.
DISK_FULL_TRIGGER = """
CREATE OR REPLACE FUNCTION invario_test_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'could not extend file "base/1/2": No space left on device' USING ERRCODE = 'disk_full';
END $$;
CREATE TRIGGER invario_test_disk_full BEFORE INSERT ON invario_events
    FOR EACH STATEMENT EXECUTE FUNCTION invario_test_disk_full();
"""


def psycopg_connection(url: str):  # type: ignore[no-untyped-def]
    import psycopg

    return psycopg.connect(url, autocommit=True)

