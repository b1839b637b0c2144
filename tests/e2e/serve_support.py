"""A real ``invario serve`` process on a prepared ledger, for the failure-mode and shutdown tests.

``prepare_ledger`` migrates the database and creates a tenant, two BRL accounts
and a read+write key in-process; ``ServedApi`` runs ``invario serve`` against it
as a subprocess (its log in a file, so a full pipe never blocks it), talks to it
over HTTP and stops it with SIGTERM.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from uuid import UUID

import httpx
import psycopg

from domain.ids import account_id_for
from infrastructure.runtime import open_runtime
from interfaces.bootstrap import open_access
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings
from tests.e2e.http_fixtures import ADMIN_TOKEN, DAY, PEPPER
from tests.e2e.test_cli_basics import INVARIO, free_port

# Every request is bounded by this: a hang fails the test instead of stalling the suite.
REQUEST_TIMEOUT_SECONDS = 30.0
STOP_TIMEOUT_SECONDS = 60.0


@dataclass(frozen=True)
class Book:
    """What the tests need of the prepared ledger."""

    tenant_id: UUID
    key: str = field(repr=False)
    cash: str
    revenue: str


def prepare_ledger(database_url: str) -> Book:
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER, admin_token=ADMIN_TOKEN))
    try:
        upgrade_to_head(runtime.engine)
        tenant = runtime.ledger.create_tenant("acme").aggregate
        key = open_access(runtime).issue_key(tenant.id, ["read", "write"]).secret
        cash = runtime.ledger.open_account(tenant.id, "cash", "Cash", "BRL", "asset").aggregate
        revenue = runtime.ledger.open_account(tenant.id, "revenue", "Revenue", "BRL", "income").aggregate
        return Book(tenant.id, key, str(cash.id), str(revenue.id))
    finally:
        runtime.close()


def serve_environment(database_url: str, **overrides: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("INVARIO_", "OTEL_"))}
    environment.update(INVARIO_DATABASE_URL=database_url, INVARIO_AUTH_PEPPER=PEPPER,
                       INVARIO_ADMIN_TOKEN=ADMIN_TOKEN, INVARIO_RATE_LIMIT_PER_SECOND="0",
                       INVARIO_FOLLOWER_POLL_SECONDS="0.1", INVARIO_DB_CONNECT_TIMEOUT_SECONDS="2",
                       INVARIO_HEALTH_TIMEOUT_SECONDS="1", INVARIO_LOG_LEVEL="WARNING")
    environment.update(overrides)
    return environment


class ServedApi:
    """``invario serve`` on a free port; use as a context manager (it is always stopped)."""

    def __init__(self, database_url: str, book: Book, log_path: Path, *arguments: str, **overrides: str) -> None:
        self.book = book
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        self._log: TextIO = open(log_path, "w")  # noqa: SIM115 - closed in stop()
        self.process = subprocess.Popen(  # noqa: S603 - our own console script
            [INVARIO, "serve", "--port", str(self.port), *arguments], env=serve_environment(database_url, **overrides),
            stdout=self._log, stderr=subprocess.STDOUT, text=True,
        )
        self.client = httpx.Client(base_url=self.base_url, timeout=REQUEST_TIMEOUT_SECONDS,
                                   headers={"Authorization": f"Bearer {book.key}"})

    def __enter__(self) -> ServedApi:
        self.wait_until_healthy()
        return self

    def __exit__(self, *_: object) -> None:
        self.stop()

    def log(self) -> str:
        if not self._log.closed:
            self._log.flush()
        return self.log_path.read_text(errors="replace")

    def wait_until_healthy(self, seconds: float = 60) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            assert self.process.poll() is None, f"invario serve exited:\n{self.log()[-3000:]}"
            try:
                if httpx.get(f"{self.base_url}/health", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"invario serve did not become healthy within {seconds} s:\n{self.log()[-3000:]}")

    def stop(self) -> int:
        """SIGTERM, then wait for the exit; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(STOP_TIMEOUT_SECONDS)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.client.close()
        self._log.close()
        return self.process.returncode

    # --- requests -------------------------------------------------------------------------------------

    def post_transaction(self, external_id: str, amount: str = "1.00") -> httpx.Response:
        body: dict[str, Any] = {"external_id": external_id, "effective_date": DAY, "postings": [
            {"account_id": self.book.cash, "amount": amount},
            {"account_id": self.book.revenue, "amount": f"-{amount}"},
        ]}
        return self.client.post("/v1/transactions", json=body)

    def get_account(self) -> httpx.Response:
        return self.client.get(f"/v1/accounts/{self.book.cash}")

    def balance(self) -> httpx.Response:
        return self.client.get(f"/v1/accounts/{self.book.cash}/balance")


def assert_database_problem(response: httpx.Response, code: str) -> None:
    """A 503 problem document with the code and a Retry-After, and no trace of the driver's message."""
    assert response.status_code == 503, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    assert int(response.headers["retry-after"]) >= 1
    body = response.json()
    assert body["code"] == code and body["status"] == 503, body
    assert "Traceback" not in response.text and "psycopg" not in response.text


def event_count(database_url: str) -> int:
    """Events in the log (a plain read: works on a read-only database too)."""
    with psycopg.connect(database_url) as connection:
        row = connection.execute("SELECT count(*) FROM invario_events").fetchone()
    assert row is not None
    return int(row[0])


def write_side_counts(database_url: str) -> tuple[int, int, int]:
    """(events in the log, cash raw balance, revenue raw balance), read from the write side."""
    runtime = open_runtime(Settings(database_url=database_url, auth_pepper=PEPPER))
    try:
        ledger = runtime.ledger
        return event_count(database_url), _balance(ledger, "cash"), _balance(ledger, "revenue")
    finally:
        runtime.close()


def _balance(ledger: Any, code: str) -> int:
    tenant = ledger.get_tenant_by_name("acme")
    return ledger.get_account(tenant.id, account_id_for(tenant.id, code)).balance_minor
