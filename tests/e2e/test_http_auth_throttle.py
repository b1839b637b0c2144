"""Failed authentications are throttled per client address: 429 auth_throttled with Retry-After,
before the key is checked; other clients unaffected; the client recovers after the window."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from interfaces.bootstrap import open_access
from tests.e2e.http_fixtures import ADMIN, DAY, Api, Tenant, assert_problem, make_api
from tests.e2e.test_metrics_endpoint import moved, scrape

FAILURES_MAX = 4
WINDOW_SECONDS = 4.0  # one try back every second


@pytest.fixture
def throttled_api(database_url: str) -> Iterator[Api]:
    yield from make_api(database_url, auth_failures_max=FAILURES_MAX, auth_failures_window_seconds=WINDOW_SECONDS)


def client_at(api: Api, address: str) -> TestClient:
    """Requests to the same app from another client address (its lifespan is already running)."""
    return TestClient(api.client.app, client=(address, 40_000), raise_server_exceptions=False)


def transfer(api: Api, tenant: Tenant, external_id: str) -> dict[str, object]:
    return {"external_id": external_id, "effective_date": DAY, "postings": [
        {"account_id": api.accounts[f"{tenant.name}/cash"], "amount": "10.00"},
        {"account_id": api.accounts[f"{tenant.name}/wallet"], "amount": "-10.00"}]}


def test_a_client_that_keeps_failing_is_refused_before_its_key_is_checked(throttled_api: Api) -> None:
    api = throttled_api
    acme = api.tenant("acme")
    api.open_account(acme, "cash")
    api.open_account(acme, "wallet", type="liability")
    globex = api.tenant("globex")
    open_access(api.runtime).revoke_keys(globex.id)
    balances = api.balances()
    before = scrape(api)
    attacker = client_at(api, "203.0.113.7")

    wrong = {"Authorization": "Bearer inv_live_" + "x" * 40}
    assert_problem(attacker.post("/v1/transactions", json=transfer(api, acme, "t-1"), headers=wrong),
                   401, "invalid_api_key")
    assert_problem(attacker.post("/v1/transactions", json=transfer(api, acme, "t-2")), 401, "unauthenticated")
    assert_problem(attacker.get("/v1/accounts", headers=globex.headers), 401, "api_key_revoked")
    assert_problem(attacker.get("/admin/query/tenants", headers={"Authorization": "Bearer wrong"}),
                   401, "invalid_admin_token")
    # Its allowance is spent: even its good key is refused, unchecked, until a try comes back.
    throttled = attacker.post("/v1/transactions", json=transfer(api, acme, "t-3"), headers=acme.headers)
    assert_problem(throttled, 429, "auth_throttled")
    assert 1 <= int(throttled.headers["Retry-After"]) <= WINDOW_SECONDS
    assert_problem(attacker.get("/admin/query/tenants", headers=ADMIN), 429, "auth_throttled")

    # Another client, with a good key, is served.
    assert api.client.get("/v1/accounts", headers=acme.headers).status_code == 200
    assert api.balances() == balances
    after = scrape(api)
    assert moved(before, after, "auth_failures_total", reason="INVALID_TOKEN") == 2
    assert moved(before, after, "auth_failures_total", reason="MISSING_TOKEN") == 1
    assert moved(before, after, "auth_failures_total", reason="REVOKED_TOKEN") == 1
    assert moved(before, after, "auth_throttled_total") == 2

    time.sleep(int(throttled.headers["Retry-After"]))
    recovered = attacker.post("/v1/transactions", json=transfer(api, acme, "t-4"), headers=acme.headers)
    assert recovered.status_code == 201, recovered.text
    assert api.balances() == {"acme/cash": balances["acme/cash"] + 1000, "acme/wallet": balances["acme/wallet"] - 1000}


@pytest.mark.postgres
def test_processes_count_a_client_s_failures_together_on_postgres(pg_database_url: str) -> None:
    settings = {"auth_failures_max": FAILURES_MAX, "auth_failures_window_seconds": WINDOW_SECONDS}
    first, second = make_api(pg_database_url, **settings), make_api(pg_database_url, **settings)
    one, two = next(first), next(second)
    try:
        acme = one.tenant("acme")
        wrong = {"Authorization": "Bearer inv_live_" + "y" * 40}
        for _ in range(FAILURES_MAX):
            assert_problem(one.client.get("/v1/accounts", headers=wrong), 401, "invalid_api_key")
        # The second process has not seen this client fail: it checks the key, and a failure is one too many.
        assert two.client.get("/v1/accounts", headers=acme.headers).status_code == 200
        assert_problem(two.client.get("/v1/accounts", headers=wrong), 429, "auth_throttled")
        assert_problem(two.client.get("/v1/accounts", headers=acme.headers), 429, "auth_throttled")
    finally:
        first.close()
        second.close()
