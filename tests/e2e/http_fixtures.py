"""Shared fixtures of the HTTP end-to-end tests: the real app on SQLite and PostgreSQL.

Import the fixtures into a test module (``from tests.e2e.http_fixtures import api``);
they are not in a conftest so that other suites' fixtures stay independent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import pytest
from fastapi.testclient import TestClient

from infrastructure.runtime import Runtime, open_runtime
from interfaces.bootstrap import build_followers, open_access
from infrastructure.migrate import upgrade_to_head
from infrastructure.settings import Settings
from interfaces.http.app import create_app

PEPPER = "test-pepper-do-not-use-anywhere-0123456789"
ADMIN_TOKEN = "test-admin-token-do-not-use-anywhere-0123456789"
ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
DAY = "2026-11-23"


def settings_for(database_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {
        "database_url": database_url, "auth_pepper": PEPPER, "admin_token": ADMIN_TOKEN,
        # Every TestClient request comes from one address: the failed-authentication throttle is
        # tested on its own (test_http_auth_throttle.py), not tripped by tests of 401s.
        "rate_limit_per_second": 0, "auth_failures_max": 0, "read_wait_seconds": 2.0,
    }
    values.update(overrides)
    return Settings(**values)


@dataclass
class Tenant:
    """A tenant and a read+write key's headers."""

    name: str
    id: UUID
    key: str = field(repr=False)

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.key}"}


@dataclass
class Api:
    client: TestClient
    runtime: Runtime
    accounts: dict[str, str] = field(default_factory=dict)  # "tenant/code" -> id

    # --- set-up -----------------------------------------------------------------

    def tenant(self, name: str, scopes: tuple[str, ...] = ("read", "write")) -> Tenant:
        tenant = self.runtime.ledger.create_tenant(name).aggregate
        return Tenant(name, tenant.id, self.key(tenant.id, scopes))

    def key(self, tenant_id: UUID, scopes: tuple[str, ...] = ("read", "write")) -> str:
        return open_access(self.runtime).issue_key(tenant_id, scopes).secret

    def catch_up(self) -> None:
        for follower in build_followers(self.runtime):
            follower.catch_up()

    # --- commands ---------------------------------------------------------------

    def open_account(self, tenant: Tenant, code: str, currency: str = "BRL", type: str = "asset",  # noqa: A002
                     **extra: Any) -> str:
        response = self.client.post("/v1/accounts", headers=tenant.headers,
                                    json={"code": code, "name": code.title(), "currency": currency, "type": type,
                                          **extra})
        assert response.status_code == 201, response.text
        self.accounts[f"{tenant.name}/{code}"] = response.json()["id"]
        return response.json()["id"]

    def post(self, tenant: Tenant, external_id: str, *legs: tuple[str, str], headers: dict[str, str] | None = None,
             **extra: Any) -> Any:
        body = {"external_id": external_id, "effective_date": DAY,
                "postings": [{"account_id": a, "amount": amount} for a, amount in legs], **extra}
        return self.client.post("/v1/transactions", json=body, headers={**tenant.headers, **(headers or {})})

    # --- checks -----------------------------------------------------------------

    def balances(self) -> dict[str, int]:
        """Every account's raw balance on the write side (what a rejection must not change)."""
        ledger = self.runtime.ledger
        result = {}
        for name, account_id in self.accounts.items():
            account = ledger.repository.get(UUID(account_id))
            result[name] = account.balance_minor
        return result

    def balance(self, tenant: Tenant, account_id: str) -> str:
        """An account's balance as the API shows it (read models brought up to date first)."""
        self.catch_up()
        response = self.client.get(f"/v1/accounts/{account_id}/balance", headers=tenant.headers)
        assert response.status_code == 200, response.text
        return response.json()["balance"]


def assert_problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/problem+json")
    body = response.json()
    assert body["status"] == status and body["code"] == code
    assert body["type"] == f"urn:invario:problem:{code}"
    assert body["title"] and body["detail"]
    assert "Traceback" not in response.text
    return body


def make_api(database_url: str, **overrides: Any) -> Iterator[Api]:
    runtime = open_runtime(settings_for(database_url, **overrides))
    try:
        upgrade_to_head(runtime.engine)
        with TestClient(create_app(runtime), raise_server_exceptions=False) as client:
            yield Api(client, runtime)
    finally:
        runtime.close()


@pytest.fixture
def api(database_url: str) -> Iterator[Api]:
    """The real app on each store (parametrized sqlite/postgres by ``database_url``)."""
    yield from make_api(database_url)


@pytest.fixture
def sqlite_api(sqlite_database_url: str) -> Iterator[Api]:
    """The real app on SQLite only, for checks that do not depend on the store."""
    yield from make_api(sqlite_database_url)


@pytest.fixture
def acme(api: Api) -> Tenant:
    return api.tenant("acme")


@pytest.fixture
def globex(api: Api) -> Tenant:
    return api.tenant("globex")
