"""The operator CLI for tenants and keys, on both stores: create-tenant, create-key, list-keys, revoke-key."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from typer.testing import CliRunner

from infrastructure.settings import get_settings
from interfaces.cli.main import app as cli
from tests.e2e.http_fixtures import PEPPER, assert_problem, make_api

KEY = re.compile(r"^inv_live_[A-Za-z0-9]{40}$")


@pytest.fixture
def invario(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    monkeypatch.setenv("INVARIO_DATABASE_URL", database_url)
    monkeypatch.setenv("INVARIO_AUTH_PEPPER", PEPPER)
    get_settings.cache_clear()
    runner = CliRunner()
    yield lambda *args: runner.invoke(cli, list(args))
    get_settings.cache_clear()


def test_operator_issues_lists_and_revokes_keys(invario, database_url: str) -> None:  # type: ignore[no-untyped-def]
    created = invario("create-tenant", "acme")
    assert created.exit_code == 0 and "tenant acme created" in created.stdout
    again = invario("create-tenant", "acme")
    assert again.exit_code == 1 and "tenant_already_exists" in again.stderr

    issued = invario("create-key", "--owner", "acme", "--scopes", '{"write": true}')
    assert issued.exit_code == 0, issued.output
    key = issued.stdout.strip()
    assert KEY.match(key)
    assert "will not be shown again" in issued.stderr and "read, write" in issued.stderr
    reader = invario("create-key", "--owner", "acme").stdout.strip()

    listed = invario("list-keys", "--owner", "acme")
    assert listed.exit_code == 0 and key not in listed.output and reader not in listed.output
    assert listed.output.count("active") == 2 and key[:15] + "…" in listed.output

    apps = make_api(database_url)
    api = next(apps)
    try:
        headers = {"Authorization": f"Bearer {key}"}
        created_account = api.client.post("/v1/accounts", headers=headers,
                                          json={"code": "cash", "name": "Cash", "currency": "BRL", "type": "asset"})
        assert created_account.status_code == 201
        read_only = api.client.post(f"/v1/accounts/{created_account.json()['id']}/freeze",
                                    headers={"Authorization": f"Bearer {reader}"})
        assert_problem(read_only, 403, "insufficient_scope")

        revoked = invario("revoke-key", "--owner", "acme")
        assert revoked.exit_code == 0 and "revoked 2 API key(s) of acme" in revoked.stdout
        assert key not in revoked.output
        assert_problem(api.client.get("/v1/accounts", headers=headers), 401, "api_key_revoked")
    finally:
        apps.close()
    assert invario("list-keys", "--owner", "acme").output.count("revoked") == 2
    assert "no active API keys" in invario("revoke-key", "--owner", "acme").stdout


def test_operator_mistakes_are_one_line(invario) -> None:  # type: ignore[no-untyped-def]
    assert invario("create-tenant", "acme").exit_code == 0
    for scopes in ("write", '{"admin": true}', '{"read": false}', '{"write": "yes"}'):
        result = invario("create-key", "--owner", "acme", "--scopes", scopes)
        assert result.exit_code == 1 and "invalid_scopes" in result.stderr, scopes
    unknown = invario("create-key", "--owner", "nobody")
    assert unknown.exit_code == 1 and "tenant_not_found" in unknown.stderr
    bad_name = invario("create-tenant", "Not A Name")
    assert bad_name.exit_code == 1 and "invalid_tenant" in bad_name.stderr
    assert all("Traceback" not in r.output for r in (unknown, bad_name))


@pytest.mark.postgres
def test_create_key_needs_a_pepper_on_postgres(pg_database_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INVARIO_DATABASE_URL", pg_database_url)
    monkeypatch.delenv("INVARIO_AUTH_PEPPER", raising=False)
    get_settings.cache_clear()
    try:
        runner = CliRunner()
        assert runner.invoke(cli, ["create-tenant", "acme"]).exit_code == 0
        result = runner.invoke(cli, ["create-key", "--owner", "acme"])
        assert result.exit_code == 2 and "INVARIO_AUTH_PEPPER is not set" in result.stderr
        assert "inv_live_" not in result.output
    finally:
        get_settings.cache_clear()
