"""``invario restore`` while a real ``invario serve`` and ``invario worker`` are connected (issue 19, item 2).

Tenant A writes, a backup is taken, tenant B is created and writes, then the
backup is restored under the running server. Without ``--terminate-sessions``
the restore is refused (exit 6, naming the server's session) and nothing
changes. With it, the server's sessions are ended, the restore completes, and
the same server process then answers without a 5xx (the worker keeps following): tenant A's writes go
through, tenant B's key is refused (401): the restored database never held it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.ops.conftest import Deployment, Server
from tests.ops.test_runbook_procedures import open_accounts, post, transfer

pytestmark = pytest.mark.postgres

EXIT_SESSIONS_CONNECTED = 6
RECOVERY_ATTEMPTS_MAX = 120  # a generous bound on requests, each waiting 0.25 s: not a timing assertion
RETRY_PAUSE_SECONDS = 0.25
STEADY_REQUESTS = 20


def events(deployment: Deployment) -> int:
    return int(deployment.sql("SELECT count(*) FROM invario_events")[0][0])


def until(answer: Callable[[], httpx.Response], wanted: int, seen: list[httpx.Response]) -> httpx.Response:
    """Ask until the answer is ``wanted``, allowing only a retryable 409 meanwhile; every answer is kept."""
    for _ in range(RECOVERY_ATTEMPTS_MAX):
        response = answer()
        seen.append(response)
        if response.status_code == wanted:
            return response
        assert response.status_code == 409, response.text  # "retry the request": never a 5xx
        time.sleep(RETRY_PAUSE_SECONDS)
    raise AssertionError(f"no {wanted} after {RECOVERY_ATTEMPTS_MAX} attempts; last: {seen[-1].text}")


def prepared(deployment: Deployment, server: Server) -> dict[str, Any]:
    """Tenant A with two accounts and a posting, backed up; then tenant B, its accounts and a posting."""
    _a, key_a = deployment.create_tenant_with_key("tenant-a", '{"read": true, "write": true}')
    client_a = server.client(key_a)
    cash_a, bank_a = open_accounts(client_a, "cash", "bank")
    assert post(client_a, transfer("a-before-backup", cash_a, bank_a)).status_code == 201
    backup = deployment.invario("backup", str(deployment.workdir / "before-b.dump"))
    assert backup.returncode == 0, backup.stderr
    _b, key_b = deployment.create_tenant_with_key("tenant-b", '{"read": true, "write": true}')
    client_b = server.client(key_b)
    cash_b, bank_b = open_accounts(client_b, "cash", "bank")
    assert post(client_b, transfer("b-after-backup", cash_b, bank_b)).status_code == 201
    return {"client_a": client_a, "client_b": client_b, "a": (cash_a, bank_a), "b": (cash_b, bank_b)}


def test_restore_refuses_while_the_api_is_connected_then_ends_its_sessions_and_the_api_recovers(
    deployment: Deployment,
) -> None:
    # Key B is refused on purpose again and again: the failed-authentication throttle would answer 429.
    server = deployment.serve(env={"INVARIO_AUTH_FAILURES_MAX": "0"})
    worker, worker_log = deployment.spawn("worker", log_name="worker.log")
    book = prepared(deployment, server)
    client_a, client_b = book["client_a"], book["client_b"]
    dump = str(deployment.workdir / "before-b.dump")
    before = events(deployment)

    refused = deployment.invario("restore", "--force", dump)
    assert refused.returncode == EXIT_SESSIONS_CONNECTED, refused.stdout + refused.stderr
    message = refused.stderr.strip()
    assert len(message.splitlines()) == 1 and "--terminate-sessions" in message, message
    assert "invario-serve from 127.0.0.1" in message and "invario-worker from 127.0.0.1" in message, message
    assert events(deployment) == before  # nothing was restored
    assert post(client_b, transfer("b-still-here", *book["b"])).status_code == 201

    restored = deployment.invario("restore", "--force", "--terminate-sessions", dump)
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "ended" in restored.stderr and "invario-serve" in restored.stderr, restored.stderr
    assert "restore CONSISTENT" in restored.stdout
    assert server.process.poll() is None and worker.poll() is None  # the same processes go on

    seen: list[httpx.Response] = []
    until(lambda: post(client_a, transfer(f"a-after-restore-{len(seen)}", *book["a"])), 201, seen)
    until(lambda: client_b.get("/v1/accounts"), 401, seen)
    for attempt in range(STEADY_REQUESTS):
        written = post(client_a, transfer(f"a-steady-{attempt}", *book["a"]))
        assert written.status_code == 201, written.text
        assert client_b.get("/v1/accounts").status_code == 401
        assert post(client_b, transfer(f"b-steady-{attempt}", *book["b"])).status_code == 401
    for log in (server.log_path, worker_log):
        text = log.read_text(errors="replace")
        assert "cache lookup failed" not in text, text[-3000:]
    assert '"status":500' not in server.log_path.read_text(errors="replace")  # no request of any client
    assert worker.poll() is None
    position = written.json()["position"]
    shown = client_a.get(f"/v1/accounts/{book['a'][0]}/balance", params={"min_position": position})
    assert shown.status_code == 200, shown.text  # the read models follow the restored log

    verified = deployment.invario("verify")
    assert verified.returncode == 0, verified.stdout + verified.stderr
