"""Scale-out: two real API processes (``invario serve``) on one PostgreSQL database.

The first process runs the log followers, the second ``--no-followers``. Client
threads post transfers to both at once, half of them on one hot account, the
rest over shared accounts, retrying 409/503 and dropped connections with the
same ``external_id`` (so a retry can never post twice). Afterwards every
balance is checked on the write side, and through the read models (served by
the second process, kept up to date by the first) once they have caught up; the
log holds exactly one transaction per external id.
"""

from __future__ import annotations

import os
import random
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx
import pytest

from domain.money import format_amount
from infrastructure.runtime import open_runtime
from interfaces.bootstrap import open_access
from infrastructure.migrate import upgrade_to_head
from tests.e2e.http_fixtures import DAY, PEPPER, settings_for
from tests.integration.helpers import broken_chains, log_length
from tests.integration.test_hot_account import run_workers

pytestmark = pytest.mark.postgres

ACCOUNTS = 10
PER_THREAD = 20  # run_workers runs THREADS (8) client threads; they alternate between the processes
START_TIMEOUT_SECONDS = 60
CATCH_UP_TIMEOUT_SECONDS = 90
CLIENT_RETRIES_MAX = 30
RETRYABLE = {409, 429, 502, 503}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_server(database_url: str, port: int, *extra: str) -> subprocess.Popen[bytes]:
    root = Path(__file__).resolve().parents[2]
    env = {**os.environ, "PYTHONPATH": str(root), "INVARIO_DATABASE_URL": database_url,
           "INVARIO_AUTH_PEPPER": PEPPER, "INVARIO_RATE_LIMIT_PER_SECOND": "0", "INVARIO_LOG_LEVEL": "WARNING"}
    invario = Path(sys.executable).parent / "invario"
    return subprocess.Popen([str(invario), "serve", "--port", str(port), *extra], env=env, cwd=root,  # noqa: S603
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def wait_until_up(base_url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_SECONDS
    while time.monotonic() < deadline:
        assert process.poll() is None, f"the server at {base_url} exited with {process.returncode}"
        try:
            if httpx.get(f"{base_url}/health", timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"the server at {base_url} did not come up")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@pytest.fixture
def two_servers(pg_database_url: str) -> Iterator[list[str]]:
    runtime = open_runtime(settings_for(pg_database_url))
    upgrade_to_head(runtime.engine)  # once, before either process starts
    runtime.close()
    urls, processes = [], []
    try:
        for extra in ((), ("--no-followers",)):
            port = free_port()
            processes.append(start_server(pg_database_url, port, *extra))
            urls.append(f"http://127.0.0.1:{port}")
            wait_until_up(urls[-1], processes[-1])
        yield urls
    finally:
        for process in processes:
            stop(process)


def post_until_recorded(client: httpx.Client, headers: dict[str, str], body: dict[str, Any]) -> None:
    for _ in range(CLIENT_RETRIES_MAX):
        try:
            response = client.post("/v1/transactions", json=body, headers=headers)
        except httpx.TransportError:
            continue  # the request may or may not have been recorded: the same external_id decides
        if response.status_code in (200, 201):
            return
        assert response.status_code in RETRYABLE, response.text
        time.sleep(random.uniform(0, 0.05))  # noqa: S311 - jitter
    raise AssertionError(f"{body['external_id']} was never recorded")


def test_two_api_processes_lose_and_double_nothing(pg_database_url: str, two_servers: list[str]) -> None:
    runtime = open_runtime(settings_for(pg_database_url))
    try:
        tenant_id = runtime.ledger.create_tenant("acme").aggregate.id
        headers = {"Authorization": f"Bearer {open_access(runtime).issue_key(tenant_id, ('read', 'write')).secret}"}
        hot = runtime.ledger.open_account(tenant_id, "hot", "Hot", "BRL", "asset").aggregate.id
        shared = [runtime.ledger.open_account(tenant_id, f"s{i}", f"S{i}", "BRL", "asset").aggregate.id
                  for i in range(ACCOUNTS)]
        transfers: dict[str, tuple[UUID, UUID, int]] = {}
        log_before = log_length(runtime.ledger)

        def work(worker: int) -> None:
            rng = random.Random(worker)  # noqa: S311 - test data
            with httpx.Client(base_url=two_servers[worker % 2], timeout=30) as client:
                for n in range(PER_THREAD):
                    debit = hot if n % 2 == 0 else rng.choice(shared)
                    credit = rng.choice([a for a in shared if a != debit])
                    amount, external_id = rng.randint(1, 10_000), f"w{worker}-{n}"
                    transfers[external_id] = (debit, credit, amount)
                    post_until_recorded(client, headers, {
                        "external_id": external_id, "effective_date": DAY,
                        "postings": [{"account_id": str(debit), "amount": format_amount(amount, "BRL")},
                                     {"account_id": str(credit), "amount": format_amount(-amount, "BRL")}]})

        run_workers(work)
        expected: dict[UUID, int] = {}
        for debit, credit, amount in transfers.values():
            expected[debit] = expected.get(debit, 0) + amount
            expected[credit] = expected.get(credit, 0) - amount

        for account_id in (hot, *shared):  # the write side
            assert runtime.ledger.get_account(tenant_id, account_id).balance_minor == expected.get(account_id, 0)
        assert log_length(runtime.ledger) == log_before + 3 * len(transfers)  # nothing lost, nothing doubled
        assert broken_chains(runtime.ledger) == {}
        check_read_models(two_servers[1], headers, {a: expected.get(a, 0) for a in (hot, *shared)})
    finally:
        runtime.close()


def check_read_models(base_url: str, headers: dict[str, str], expected: dict[UUID, int]) -> None:
    """Every balance as the API shows it, once the first process's followers have caught up."""
    want = {str(a): format_amount(v, "BRL") for a, v in expected.items()}
    deadline, seen = time.monotonic() + CATCH_UP_TIMEOUT_SECONDS, {}
    with httpx.Client(base_url=base_url, timeout=30, headers=headers) as client:
        while time.monotonic() < deadline:
            seen = {a: client.get(f"/v1/accounts/{a}/balance").json().get("balance") for a in want}
            if seen == want:
                return
            time.sleep(0.5)
    assert seen == want
