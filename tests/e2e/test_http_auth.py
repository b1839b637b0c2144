"""API keys, scopes, revocation in every process, suspended tenants, the pepper and the admin token."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from infrastructure.runtime import open_runtime
from interfaces.bootstrap import open_access
from infrastructure.errors import ConfigError
from infrastructure.settings import Settings, get_settings
from interfaces.cli.main import app as cli
from interfaces.http.app import create_app
from tests.e2e.http_fixtures import (  # noqa: F401
    ADMIN,
    Api,
    Tenant,
    acme,
    api,
    assert_problem,
    make_api,
    settings_for,
    sqlite_api,
)


def test_requests_without_a_valid_key_are_401(sqlite_api: Api) -> None:
    api = sqlite_api
    missing = api.client.get("/v1/accounts")
    assert_problem(missing, 401, "unauthenticated")
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert_problem(api.client.get("/v1/accounts", headers={"Authorization": "Basic dXNlcjpwYXNz"}),
                   401, "unauthenticated")
    for key in ("nope", "inv_live_short", "inv_test_" + "a" * 40, "inv_live_" + "a" * 40):
        assert_problem(api.client.get("/v1/accounts", headers={"Authorization": f"Bearer {key}"}),
                       401, "invalid_api_key")


def test_scopes_are_enforced(sqlite_api: Api) -> None:
    api = sqlite_api
    tenant = api.tenant("acme")
    cash = api.open_account(tenant, "cash")
    reader = {"Authorization": f"Bearer {api.key(tenant.id, ('read',))}"}
    writer = {"Authorization": f"Bearer {api.key(tenant.id, ('write',))}"}
    api.catch_up()
    assert api.client.get(f"/v1/accounts/{cash}", headers=reader).status_code == 200
    refused = api.client.post(f"/v1/accounts/{cash}/freeze", headers=reader)
    assert assert_problem(refused, 403, "insufficient_scope")["required_scope"] == "write"
    assert_problem(api.client.get(f"/v1/accounts/{cash}", headers=writer), 403, "insufficient_scope")
    assert api.client.post(f"/v1/accounts/{cash}/freeze", headers=writer).status_code == 200


def test_revocation_takes_effect_on_the_next_request_in_every_process(database_url: str) -> None:
    first, second = make_api(database_url), make_api(database_url)
    api_one, api_two = next(first), next(second)  # two apps on one database: two processes
    try:
        tenant = api_one.tenant("acme")
        cash = api_one.open_account(tenant, "cash")
        api_one.catch_up()
        for api in (api_one, api_two):  # both have the key's aggregate cached now
            assert api.client.get(f"/v1/accounts/{cash}", headers=tenant.headers).status_code == 200
        revoked, position = open_access(api_one.runtime).revoke_keys(tenant.id)
        assert len(revoked) == 1 and position
        for api in (api_two, api_one):
            assert_problem(api.client.get(f"/v1/accounts/{cash}", headers=tenant.headers), 401, "api_key_revoked")
    finally:
        first.close()
        second.close()


def test_a_suspended_tenant_reads_but_cannot_write(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability")
    assert api.post(acme, "t1", (cash, "1.00"), (wallet, "-1.00")).status_code == 201
    suspended = api.client.post(f"/admin/tenants/{acme.id}/suspend", json={"reason": "unpaid"}, headers=ADMIN)
    assert suspended.status_code == 200 and suspended.json()["status"] == "suspended"
    before = api.balances()
    api.catch_up()
    assert api.client.get(f"/v1/accounts/{cash}/balance", headers=acme.headers).json()["balance"] == "1.00"
    assert_problem(api.post(acme, "t2", (cash, "1.00"), (wallet, "-1.00")), 403, "tenant_suspended")
    assert_problem(api.client.post("/v1/accounts", headers=acme.headers,
                                   json={"code": "x", "name": "X", "currency": "BRL", "type": "asset"}),
                   403, "tenant_suspended")
    assert_problem(api.client.post(f"/v1/accounts/{cash}/freeze", headers=acme.headers), 403, "tenant_suspended")
    assert api.balances() == before
    assert api.client.post(f"/admin/tenants/{acme.id}/resume", headers=ADMIN).status_code == 200
    assert api.post(acme, "t2", (cash, "1.00"), (wallet, "-1.00")).status_code == 201


# --- the pepper ----------------------------------------------------------------------


def test_postgres_refuses_to_serve_without_a_pepper(pg_database_url: str) -> None:
    runtime = open_runtime(settings_for(pg_database_url, auth_pepper=None))
    try:
        with pytest.raises(ConfigError, match="INVARIO_AUTH_PEPPER is not set"):
            create_app(runtime)
    finally:
        runtime.close()


@pytest.fixture
def environment(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def test_serve_says_why_it_will_not_start(environment: pytest.MonkeyPatch, pg_database_url: str) -> None:
    environment.setenv("INVARIO_DATABASE_URL", pg_database_url)
    environment.delenv("INVARIO_AUTH_PEPPER", raising=False)
    environment.setattr("interfaces.cli.main._prepare_schema", lambda runtime: None)
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2
    assert "INVARIO_AUTH_PEPPER is not set" in result.output and "Traceback" not in result.output
    environment.setenv("INVARIO_AUTH_PEPPER", "too-short")
    get_settings.cache_clear()
    result = CliRunner().invoke(cli, ["serve"])
    assert result.exit_code == 2 and "INVARIO_AUTH_PEPPER" in result.output and "too-short" not in result.output


def test_sqlite_generates_a_private_pepper_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = f"sqlite:///{tmp_path}/invario.db"
    runtime = open_runtime(Settings(database_url=url, auth_pepper=None))
    try:
        key = open_access(runtime).issue_key(runtime.ledger.create_tenant("acme").aggregate.id, ["read"]).secret
        pepper_file = tmp_path / "auth-pepper"
        assert stat.S_IMODE(os.stat(pepper_file).st_mode) == 0o600
        assert len(pepper_file.read_text().strip()) >= 32
        assert "generated a random auth pepper" in capsys.readouterr().err
        assert open_access(runtime).authenticate(key, "read").tenant_id  # same pepper read back
        assert "generated" not in capsys.readouterr().err
    finally:
        runtime.close()


# --- the admin token -----------------------------------------------------------------


def test_admin_routes_need_the_admin_token(sqlite_api: Api) -> None:
    api = sqlite_api
    tenant = api.tenant("acme")
    assert_problem(api.client.get("/admin/query/tenants"), 401, "invalid_admin_token")
    assert_problem(api.client.get("/admin/query/tenants", headers={"Authorization": "Bearer wrong"}),
                   401, "invalid_admin_token")
    assert_problem(api.client.get("/admin/query/tenants", headers=tenant.headers), 401, "invalid_admin_token")
    assert_problem(api.client.get("/v1/accounts", headers=ADMIN), 401, "invalid_api_key")
    assert api.client.get("/admin/query/tenants", headers=ADMIN).status_code == 200


def test_admin_routes_are_disabled_without_a_token(sqlite_database_url: str) -> None:
    disabled = make_api(sqlite_database_url, admin_token=None)
    api = next(disabled)
    try:
        assert_problem(api.client.get("/admin/query/tenants", headers=ADMIN), 403, "admin_disabled")
    finally:
        disabled.close()
