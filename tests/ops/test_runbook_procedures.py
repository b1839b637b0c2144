"""The procedures of ops/RUNBOOK.md, step by step, against a live PostgreSQL with the real binaries.

Each test follows one procedure: the commands it names, run as subprocesses
with the service's environment, and the answers it says to expect (output,
exit status, HTTP status and problem ``code``, metric movements). Failures are
staged behind the service's back with SQL, as they happen in production.
Procedures whose commands or behaviour other work is still delivering are
marked ``pending`` below and say so when skipped.
"""

from __future__ import annotations

import json
import re
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from tests.ops.conftest import Deployment, Server

pytestmark = pytest.mark.postgres

ROOT = Path(__file__).resolve().parents[2]
DAY = "2026-11-23"


def implemented(code: str) -> bool:
    """Whether the HTTP layer knows a problem code yet (behaviour other helpers are building)."""
    return any(f'"{code}"' in path.read_text() for path in (ROOT / "interfaces" / "http").rglob("*.py"))


def pending(code: str) -> None:
    if not implemented(code):
        pytest.skip(f"pending: the service does not answer {code!r} yet (failure-modes work in progress)")


# --- small steps the procedures share ----------------------------------------------------------


def open_accounts(client: httpx.Client, *codes: str) -> list[str]:
    ids = []
    for code in codes:
        opened = client.post("/v1/accounts", json={"code": code, "name": code.title(), "currency": "BRL",
                                                   "type": "asset"})
        assert opened.status_code == 201, opened.text
        ids.append(opened.json()["id"])
    return ids


def transfer(external_id: str, debit: str, credit: str, amount: str = "10.00") -> dict[str, Any]:
    return {"external_id": external_id, "effective_date": DAY,
            "postings": [{"account_id": debit, "amount": amount}, {"account_id": credit, "amount": f"-{amount}"}]}


def post(client: httpx.Client, body: dict[str, Any]) -> httpx.Response:
    return client.post("/v1/transactions", json=body)


def balance(client: httpx.Client, account_id: str, position: int = 0) -> str:
    """The account's balance as the API shows it; without a position, once the read models know the account."""
    def answer() -> httpx.Response:
        return client.get(f"/v1/accounts/{account_id}/balance", params={"min_position": position} if position else {})

    if not position:
        wait_until(lambda: answer().status_code == 200, f"account {account_id} readable")
    shown = answer()
    assert shown.status_code == 200, shown.text
    return shown.json()["balance"]


def amount_digit_changed(state: bytes) -> bytes:
    digit = re.search(rb'"amount_minor":-?(\d)', state)
    assert digit is not None, state
    at = digit.start(1)
    return state[:at] + (b"9" if state[at:at + 1] != b"9" else b"8") + state[at + 1:]


def problem_code(response: httpx.Response) -> str:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    assert "Traceback" not in response.text
    return response.json()["code"]


def wait_until(predicate: Callable[[], bool], what: str, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError(f"never happened within {seconds} s: {what}")


def projections(deployment: Deployment) -> dict[str, dict[str, Any]]:
    shown = deployment.invario("projections", "status", "--json")
    assert shown.returncode == 0, shown.stderr
    return {p["name"]: p for p in json.loads(shown.stdout)["projections"]}


def all_current(deployment: Deployment) -> bool:
    return all(p["state"] == "current" and p["lag"] == 0 for p in projections(deployment).values())


# --- startup and shutdown checklists ------------------------------------------------------------


def test_startup_checklist_then_graceful_shutdown(make_deployment: Callable[..., Deployment]) -> None:
    fresh = make_deployment(migrate=False)
    # An unmigrated schema refuses to start, with the one line the runbook quotes.
    refused = fresh.invario("serve", "--port", "1")
    assert refused.returncode == 2
    assert "run 'invario migrate' first" in refused.stderr and "Traceback" not in refused.stderr

    migrated = fresh.invario("migrate")
    assert migrated.returncode == 0 and migrated.stdout.startswith("schema migrated from revision")
    again = fresh.invario("migrate")
    assert again.returncode == 0 and again.stdout.startswith("schema already at revision")

    no_pepper = fresh.invario("serve", "--port", "1", env={"INVARIO_AUTH_PEPPER": ""})
    assert no_pepper.returncode == 2 and "INVARIO_AUTH_PEPPER" in no_pepper.stderr

    worker, worker_log = fresh.spawn("worker", log_name="worker.log")
    server = fresh.serve("--no-followers")
    assert server.get("/health").json() == {"status": "ok", "database": "ok", "integrity": "ok"}
    ready = server.wait_for("/health/ready", 200).json()
    assert ready["status"] == "ready" and ready["migrations"] == "current"
    assert server.metric("invario_ledger_integrity_status") == 1.0
    wait_until(lambda: all_current(fresh), "every projection current")

    # Shutdown: API first (SIGTERM: a clean stop is 0, or the signal re-raised after it), then the worker.
    assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
    assert "Finished server process" in server.log_tail()
    worker.send_signal(signal.SIGTERM)
    assert worker.wait(timeout=60) == 0
    assert "invario worker: stopped" in worker_log.read_text()
    verified = fresh.invario("verify")
    assert verified.returncode == 0 and "INTACT" in verified.stdout


def test_daily_checklist_commands(deployment: Deployment) -> None:
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    with server.client(key) as client:
        cash, wallet = open_accounts(client, "cash", "wallet")
        assert post(client, transfer("daily-1", cash, wallet)).status_code == 201
    wait_until(lambda: all_current(deployment), "every projection current")
    reconciled = deployment.invario("reconcile")
    assert reconciled.returncode == 0 and "0 divergence(s)" in reconciled.stdout
    verified = deployment.invario("verify")
    assert verified.returncode == 0 and "INTACT: every hash chain verifies; head " in verified.stdout
    caught_up = deployment.invario("worker", "--once")
    assert caught_up.returncode == 0, caught_up.stderr

    unsigned = deployment.invario("digest")
    assert unsigned.returncode == 2  # no INVARIO_SIGNING_KEY where it ran
    signing_key = deployment.invario("generate-signing-key").stdout.strip()
    signed = deployment.invario("digest", env={"INVARIO_SIGNING_KEY": signing_key})
    assert signed.returncode == 0, signed.stderr
    assert {"sequence", "hash", "key_id", "signature"} <= set(json.loads(signed.stdout))
    kept = deployment.workdir / "digest-today.json"
    kept.write_text(signed.stdout)
    matched = deployment.invario("verify", "--digest", str(kept), env={"INVARIO_SIGNING_KEY": signing_key})
    assert matched.returncode == 0, matched.stdout + matched.stderr

    nightly = deployment.workdir / "invario-nightly.dump"
    assert deployment.invario("backup", str(nightly)).returncode == 0
    exists = deployment.invario("backup", str(nightly))
    assert exists.returncode == 2  # an existing file is replaced only with --force
    assert deployment.invario("backup", "--force", str(nightly)).returncode == 0


# --- INC-12 API key compromise and INC-5 401 storm ----------------------------------------------


def test_key_compromise_revoke_then_reissue(deployment: Deployment) -> None:
    _, leaked = deployment.create_tenant_with_key("acme")
    assert leaked.startswith("inv_live_")
    server = deployment.serve()
    with server.client(leaked) as client:
        assert client.get("/v1/accounts").status_code == 200

    listed = deployment.invario("list-keys", "--owner", "acme")
    assert listed.returncode == 0
    assert listed.stdout.startswith("PREFIX") and "active" in listed.stdout and leaked not in listed.stdout

    revoked_before = server.metric("auth_failures_total", reason="REVOKED_TOKEN")
    revoked = deployment.invario("revoke-key", "--owner", "acme")
    assert revoked.returncode == 0 and revoked.stdout.startswith("revoked 1 API key(s) of acme: inv_live_")
    with server.client(leaked) as client:
        refused = client.get("/v1/accounts")
    assert refused.status_code == 401 and problem_code(refused) == "api_key_revoked"
    assert server.metric("auth_failures_total", reason="REVOKED_TOKEN") == revoked_before + 1

    reissued = deployment.invario("create-key", "--owner", "acme", "--scopes", '{"write": true}')
    assert reissued.returncode == 0
    assert "API key created for 'acme' (scopes: read, write)" in reissued.stderr
    new_key = reissued.stdout.strip()
    with server.client(new_key) as client:
        assert client.get("/v1/accounts").status_code == 200
    listed = deployment.invario("list-keys", "--owner", "acme").stdout
    assert "revoked" in listed and "active" in listed


def test_401_storm_moves_the_auth_failure_counters(deployment: Deployment) -> None:
    deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    before = {reason: server.metric("auth_failures_total", reason=reason)
              for reason in ("MISSING_TOKEN", "INVALID_TOKEN")}
    for n in range(5):
        with server.client("inv_live_" + "x" * 40, **{"X-Request-ID": f"storm-{n}"}) as client:
            wrong = client.get("/v1/accounts")
        assert wrong.status_code == 401 and problem_code(wrong) == "invalid_api_key"
    missing = server.get("/v1/accounts")
    assert missing.status_code == 401 and problem_code(missing) == "unauthenticated"
    assert server.metric("auth_failures_total", reason="INVALID_TOKEN") == before["INVALID_TOKEN"] + 5
    assert server.metric("auth_failures_total", reason="MISSING_TOKEN") == before["MISSING_TOKEN"] + 1
    # The runbook follows a request by its X-Request-ID in the JSON logs.
    wait_until(lambda: any(r.get("correlation_id") == "storm-3" and r.get("status") == 401
                           for r in server.log_records()), "the 401 logged with its correlation_id")
    access = [r for r in server.log_records() if r.get("event") == "http_request" and r.get("status") == 401]
    assert access and all(r["client"].startswith("127.0.0.1:") for r in access)
    assert "inv_live_xxxx" not in server.log_path.read_text()


def test_401_storm_from_one_forwarded_address_is_throttled(deployment: Deployment) -> None:
    """INC-5: the proxy's X-Forwarded-For names the client (127.0.0.1 is a trusted proxy by default);
    past its allowance that client gets 429 auth_throttled, whatever key it sends, and others do not."""
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve(env={"INVARIO_AUTH_FAILURES_MAX": "3", "INVARIO_AUTH_FAILURES_WINDOW_SECONDS": "30"})
    throttled_before = server.metric("auth_throttled_total")
    attacker = {"X-Forwarded-For": "203.0.113.50"}
    for _ in range(3):
        with server.client("inv_live_" + "x" * 40, **attacker) as client:
            assert problem_code(client.get("/v1/accounts")) == "invalid_api_key"
    with server.client(key, **attacker) as client:
        refused = client.get("/v1/accounts")
    assert refused.status_code == 429 and problem_code(refused) == "auth_throttled"
    assert 1 <= int(refused.headers["Retry-After"]) <= 10
    with server.client(key, **{"X-Forwarded-For": "203.0.113.51"}) as client:
        assert client.get("/v1/accounts").status_code == 200
    assert server.metric("auth_throttled_total") == throttled_before + 1
    wait_until(lambda: any(r.get("status") == 429 and r.get("client", "").startswith("203.0.113.50:")
                           for r in server.log_records()), "the 429 logged with the forwarded address")


# --- INC-11 suspending and resuming a tenant -------------------------------------------------------


def test_suspend_then_resume_a_tenant(deployment: Deployment) -> None:
    tenant_id, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    with server.client(key) as client, server.admin() as admin:
        cash, wallet = open_accounts(client, "cash", "wallet")
        listed = admin.get("/admin/query/tenants")
        assert [t["id"] for t in listed.json()["items"] if t["name"] == "acme"] == [tenant_id]

        suspended = admin.post(f"/admin/tenants/{tenant_id}/suspend", json={"reason": "INC-1234 runaway client"})
        assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
        twice = admin.post(f"/admin/tenants/{tenant_id}/suspend", json={"reason": "again"})
        assert twice.status_code == 409 and problem_code(twice) == "tenant_already_suspended"
        refused = post(client, transfer("while-suspended", cash, wallet))
        assert refused.status_code == 403 and problem_code(refused) == "tenant_suspended"
        assert balance(client, cash) == "0.00"  # reads work, and the refusal changed nothing
        wait_until(lambda: [t["name"] for t in admin.get("/admin/query/tenants", params={"status": "suspended"})
                            .json()["items"]] == ["acme"], "acme listed as suspended")

        resumed = admin.post(f"/admin/tenants/{tenant_id}/resume")
        assert resumed.status_code == 200 and resumed.json()["status"] == "active"
        not_suspended = admin.post(f"/admin/tenants/{tenant_id}/resume")
        assert not_suspended.status_code == 409 and problem_code(not_suspended) == "tenant_not_suspended"
        assert post(client, transfer("after-resume", cash, wallet)).status_code == 201


# --- INC-6 409 spike ----------------------------------------------------------------------------------


def test_409_spike_codes_and_counters(deployment: Deployment) -> None:
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    conflicts_before = server.metric("tenant_conflicts_total")
    replays_before = server.metric("invario_idempotent_replays_total", source="external_id")
    with server.client(key) as client:
        cash, wallet = open_accounts(client, "cash", "wallet")
        first = post(client, transfer("pay-1", cash, wallet, "10.00"))
        assert first.status_code == 201
        position = first.json()["position"]

        replay = post(client, transfer("pay-1", cash, wallet, "10.00"))  # a retry: the original, not a conflict
        assert replay.status_code == 200 and replay.json()["id"] == first.json()["id"]
        reused = post(client, transfer("pay-1", cash, wallet, "99.00"))
        assert reused.status_code == 409 and problem_code(reused) == "duplicate_external_id"

        account = client.get(f"/v1/accounts/{cash}", params={"min_position": position})
        assert account.status_code == 200, account.text
        stale = str(int(account.headers["ETag"].strip('"')) - 1)
        mismatch = client.post(f"/v1/accounts/{cash}/freeze", headers={"If-Match": f'"{stale}"'})
        assert mismatch.status_code == 409 and problem_code(mismatch) == "version_mismatch"

        assert balance(client, cash, position) == "10.00"  # neither 409 changed a balance
        assert balance(client, wallet, position) == "-10.00"
    assert server.metric("tenant_conflicts_total") == conflicts_before + 2
    assert server.metric("invario_idempotent_replays_total", source="external_id") == replays_before + 1
    rejected = [r for r in server.log_records() if r.get("event") == "transaction_rejected"]
    assert any(r.get("code") == "duplicate_external_id" and r.get("tenant") == "acme" for r in rejected)


# --- INC-7 429 storm ----------------------------------------------------------------------------------


def test_429_storm_names_the_tenant(deployment: Deployment) -> None:
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve(env={"INVARIO_RATE_LIMIT_PER_SECOND": "0.01", "INVARIO_RATE_LIMIT_BURST": "3"})
    with server.client(key) as client:
        answers = [client.get("/v1/accounts") for _ in range(6)]
    limited = [a for a in answers if a.status_code == 429]
    assert limited and all(problem_code(a) == "rate_limited" and int(a.headers["Retry-After"]) >= 1
                           for a in limited)
    assert server.metric("rate_limited_total", tenant="acme") == len(limited)


def _serve_three_transfers(deployment: Deployment) -> tuple[Server, str, str, str]:
    """A served tenant ``acme`` with three transfers from cash to wallet, every projection current:
    the starting point of the repair procedures. Returns the server, the key and the two account ids."""
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    with server.client(key) as client:
        cash, wallet = open_accounts(client, "cash", "wallet")
        for n in range(3):
            assert post(client, transfer(f"t-{n}", cash, wallet)).status_code == 201
    wait_until(lambda: all_current(deployment), "every projection current")
    return server, key, cash, wallet


# --- INC-9 projection lag and INC-10 reconciliation divergence ------------------------------------


def test_divergence_found_then_repaired_by_rebuild_and_recompute(deployment: Deployment) -> None:
    server, key, cash, wallet = _serve_three_transfers(deployment)
    assert deployment.invario("reconcile").returncode == 0

    # A read model edited behind the service's back: reconcile finds it, exit 1.
    deployment.sql("UPDATE read_accounts SET balance_minor = balance_minor + 500 WHERE account_id = %s", (cash,))
    found = deployment.invario("reconcile", "--json")
    assert found.returncode == 1, found.stderr
    checks = {d["check"] for d in json.loads(found.stdout)["divergences"]}
    assert "balance" in checks

    rebuilt = deployment.invario("projections", "rebuild", "--all")
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert rebuilt.stdout.startswith("rebuilt ") and "events in" in rebuilt.stdout
    clean = deployment.invario("reconcile")
    assert clean.returncode == 0 and "0 divergence(s)" in clean.stdout

    # A monthly snapshot edited: recompute-month fixes only that row, and a second run changes nothing.
    month = DAY[:7]
    deployment.sql("UPDATE read_monthly_snapshots SET closing_balance_minor = closing_balance_minor + 1 "
                   "WHERE account_id = %s AND month = %s", (cash, month))
    assert deployment.invario("reconcile", "--month", month).returncode == 1
    fixed = deployment.invario("projections", "recompute-month", month)
    assert fixed.returncode == 0 and f"month {month} recomputed at position" in fixed.stdout
    assert "1 row(s) corrected" in fixed.stdout
    assert "0 row(s) corrected" in deployment.invario("projections", "recompute-month", month).stdout
    assert deployment.invario("reconcile").returncode == 0

    # INC-4 by hand, the global chain last: verified first, rebuilt, caught up, verified again.
    assert deployment.invario("verify", "--json").returncode == 0
    chain = deployment.invario("projections", "rebuild", "global_chain")
    assert chain.returncode == 0 and "warning: rebuilding the global chain" in chain.stderr
    assert deployment.invario("worker", "--once").returncode == 0
    assert deployment.invario("verify").returncode == 0


def test_projection_lag_shows_and_worker_once_catches_up(deployment: Deployment) -> None:
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve("--no-followers")  # API only: nothing follows the log
    with server.client(key) as client:
        cash, wallet = open_accounts(client, "cash", "wallet")
        posted = post(client, transfer("lag-1", cash, wallet))
        assert posted.status_code == 201
        behind = projections(deployment)
        assert behind["accounts"]["state"] == "behind" and behind["accounts"]["lag"] > 0
        assert server.metric("invario_projection_lag_events", projection="accounts") > 0
        caught_up = deployment.invario("worker", "--once")
        assert caught_up.returncode == 0, caught_up.stderr
        assert all_current(deployment)
        assert balance(client, cash, posted.json()["position"]) == "10.00"


# --- INC-3 broken hash chain --------------------------------------------------------------------------


def test_broken_chain_refuses_writes_keeps_reads_and_recovers(deployment: Deployment) -> None:
    server, key, cash, wallet = _serve_three_transfers(deployment)
    assert deployment.invario("verify").returncode == 0

    # Someone edits one stored event with psql (keeping a copy, standing in for last night's backup).
    original = deployment.sql("SELECT state FROM invario_events WHERE originator_id = %s "
                              "AND originator_version = 2", (cash,))[0][0]
    deployment.sql("UPDATE invario_events SET state = %s WHERE originator_id = %s AND originator_version = 2",
                   (amount_digit_changed(bytes(original)), cash))

    verified = deployment.invario("verify")
    assert verified.returncode == 1 and "BROKEN" in verified.stdout
    report = json.loads(deployment.invario("verify", "--json").stdout)
    assert report["first_break"]["aggregate_id"] == cash

    health = server.wait_for("/health", 503).json()
    assert health["integrity"] == "broken" and health["database"] == "ok" and "break" in health
    with server.client(key) as client:
        refused = post(client, transfer("on-a-broken-chain", cash, wallet))
        assert refused.status_code == 503 and problem_code(refused) == "ledger_integrity_broken"
        assert refused.headers["Retry-After"]
        assert client.get(f"/v1/accounts/{cash}/balance").status_code == 200
    assert server.metric("invario_ledger_integrity_status") == 0.0
    assert any(r.get("event") == "integrity_check_failed" for r in server.log_records())

    # The restore (here: the event's original bytes back) and the worker's re-verification lift it all.
    deployment.sql("UPDATE invario_events SET state = %s WHERE originator_id = %s AND originator_version = 2",
                   (original, cash))
    assert server.wait_for("/health", 200).json()["integrity"] == "ok"
    assert server.metric("invario_ledger_integrity_status") == 1.0
    with server.client(key) as client:
        assert post(client, transfer("after-restore", cash, wallet)).status_code == 201
    assert deployment.invario("verify").returncode == 0


# --- INC-1 database outage and INC-2 read-only database --------------------------------------------


def test_commands_name_an_unreachable_database_with_exit_3(deployment: Deployment) -> None:
    unreachable = {"INVARIO_DATABASE_URL": "postgresql://postgres@127.0.0.1:1/invario"}
    for command in (("projections", "status"), ("verify",), ("reconcile",), ("migrate",)):
        failed = deployment.invario(*command, env=unreachable)
        assert failed.returncode == 3, (command, failed.stderr)
        assert failed.stderr.startswith("invario: database unavailable: ") and "Traceback" not in failed.stderr


def _cut_off(deployment: Deployment, database: str) -> None:
    deployment.sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false')
    deployment.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                   "AND pid <> pg_backend_pid()", (database,))


def test_database_outage_health_503_then_recovers_by_itself(deployment: Deployment) -> None:
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    database = deployment.database_url.rsplit("/", 1)[-1]
    with server.client(key) as client:
        cash, wallet = open_accounts(client, "cash", "wallet")
    admin_url = deployment.database_url.rsplit("/", 1)[0] + "/postgres"
    outside = Deployment(admin_url, deployment.env, deployment.workdir)  # SQL from outside the database
    _cut_off(outside, database)
    try:
        health = server.wait_for("/health", 503)
        assert health.json()["database"] == "error"
        assert deployment.invario("projections", "status").returncode == 3
        if implemented("database_unavailable"):
            with server.client(key) as client:
                refused = post(client, transfer("while-down", cash, wallet))
            assert refused.status_code == 503 and problem_code(refused) == "database_unavailable"
            assert refused.headers["Retry-After"]
    finally:
        outside.sql(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true')
    server.wait_for("/health", 200)
    with server.client(key) as client:
        assert post(client, transfer("after-outage", cash, wallet)).status_code == 201


def test_read_only_database_refuses_writes_serves_reads(deployment: Deployment) -> None:
    pending("database_read_only")
    _, key = deployment.create_tenant_with_key("acme")
    server = deployment.serve()
    database = deployment.database_url.rsplit("/", 1)[-1]
    with server.client(key) as client:
        cash, wallet = open_accounts(client, "cash", "wallet")
        assert balance(client, cash) == "0.00"  # in the read models before they, too, cannot write
        deployment.sql(f'ALTER DATABASE "{database}" SET default_transaction_read_only = on')
        deployment.sql("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                       "AND pid <> pg_backend_pid()", (database,))
        try:
            wait_until(lambda: post(client, transfer("while-read-only", cash, wallet)).status_code == 503,
                       "writes refused with 503")
            refused = post(client, transfer("while-read-only", cash, wallet))
            assert problem_code(refused) == "database_read_only" and refused.headers["Retry-After"]
            assert balance(client, cash) == "0.00"
            assert server.get("/health").status_code == 200
        finally:
            # The runbook's fix, as psql runs it: this session first, then the database's setting.
            with psycopg.connect(deployment.database_url, autocommit=True) as session:
                session.execute("SET default_transaction_read_only = off")
                session.execute(f'ALTER DATABASE "{database}" SET default_transaction_read_only = off')
                # Pooled connections keep the read-only default they started with: end them, they reconnect.
                session.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                                "AND pid <> pg_backend_pid()", (database,))
        wait_until(lambda: post(client, transfer("after-read-only", cash, wallet)).status_code == 201,
                   "writes accepted again")


def test_broken_chain_evidence_backup_and_restore(deployment: Deployment) -> None:
    """INC-3 as written: last night's backup, the break, evidence, a damaged copy, restore --force, restart."""
    server, key, cash, wallet = _serve_three_transfers(deployment)
    nightly = deployment.workdir / "invario-nightly.dump"
    backed_up = deployment.invario("backup", str(nightly))
    assert backed_up.returncode == 0, backed_up.stderr
    assert backed_up.stdout.startswith("backup written: ") and "events: " in backed_up.stdout

    original = deployment.sql("SELECT state FROM invario_events WHERE originator_id = %s "
                              "AND originator_version = 2", (cash,))[0][0]
    deployment.sql("UPDATE invario_events SET state = %s WHERE originator_id = %s AND originator_version = 2",
                   (amount_digit_changed(bytes(original)), cash))
    located = deployment.invario("verify", "--json")
    assert located.returncode == 1 and json.loads(located.stdout)["first_break"]["aggregate_id"] == cash
    server.wait_for("/health", 503)

    evidence_dir = deployment.workdir / "evidence"
    evidence_dir.mkdir()
    collected = deployment.invario("evidence", str(evidence_dir), "--api-url", server.base_url)
    assert collected.returncode == 0, collected.stderr
    assert [p.name for p in evidence_dir.iterdir() if p.name.startswith("invario-evidence-")
            and p.name.endswith(".tar.gz")]
    damaged = deployment.invario("backup", str(deployment.workdir / "damaged.dump"))
    assert damaged.returncode == 0, damaged.stderr

    assert server.stop() in (0, -signal.SIGTERM)  # the restore wants the API and workers stopped
    refused = deployment.invario("restore", str(nightly))
    assert refused.returncode == 2  # the database holds data: only with --force
    restored = deployment.invario("restore", "--force", str(nightly))
    assert restored.returncode == 0, restored.stdout + restored.stderr
    assert "restore CONSISTENT" in restored.stdout

    server = deployment.serve()
    assert server.get("/health").json() == {"status": "ok", "database": "ok", "integrity": "ok"}
    assert server.metric("invario_ledger_integrity_status") == 1.0
    with server.client(key) as client:
        again = post(client, transfer("after-restore", cash, wallet))
        assert again.status_code == 201, again.text
        assert balance(client, cash, again.json()["position"]) == "40.00"
