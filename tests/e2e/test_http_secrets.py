"""No API key, pepper or admin token ever appears in a log line or a response; request ids correlate logs."""

from __future__ import annotations

import logging

import pytest

from infrastructure.settings import Settings
from tests.e2e.http_fixtures import ADMIN, ADMIN_TOKEN, PEPPER, Api, assert_problem, sqlite_api  # noqa: F401


def test_secrets_never_leak(sqlite_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api = sqlite_api
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="invario")
    tenant = api.tenant("acme")
    other_key = api.key(tenant.id, ("read",))
    texts: list[str] = []

    def call(method: str, path: str, **kwargs: object) -> None:
        response = api.client.request(method, path, **kwargs)  # type: ignore[arg-type]
        texts.append(response.text + str(dict(response.headers)))

    cash = api.open_account(tenant, "cash")
    call("GET", f"/v1/accounts/{cash}", headers=tenant.headers)
    call("POST", f"/v1/accounts/{cash}/freeze", headers={"Authorization": f"Bearer {other_key}"})
    call("GET", "/v1/accounts", headers={"Authorization": f"Bearer {tenant.key}x"})
    call("GET", "/v1/accounts", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    call("GET", "/admin/query/tenants", headers={"Authorization": f"Bearer {tenant.key}"})
    call("GET", "/admin/query/tenants", headers={"Authorization": f"Bearer {ADMIN_TOKEN[:-1]}"})
    call("POST", "/admin/tenants", headers=ADMIN, json={"name": "beta"})
    call("POST", "/v1/accounts", headers=tenant.headers, json={"code": tenant.key, "name": "x" * 300})
    call("GET", "/openapi.json")
    assert "inv_live_" not in "".join(texts).replace("inv_live_…", "")
    everything = "\n".join(texts + [record.getMessage() for record in caplog.records] + [caplog.text])
    for secret in (tenant.key, other_key, PEPPER, ADMIN_TOKEN, tenant.key[9:]):
        assert secret not in everything
    settings = api.runtime.settings
    services = api.client.app.state.services
    for text in (repr(settings), repr(services), repr(services.access), repr(api.runtime), str(settings.model_dump())):
        assert PEPPER not in text and ADMIN_TOKEN not in text
    with pytest.raises(Exception) as short:  # noqa: PT011 - pydantic's own error
        Settings(auth_pepper="short-secret")
    assert "at least 32 characters" in str(short.value)


def test_request_ids_are_echoed_and_on_every_log_line(sqlite_api: Api, caplog: pytest.LogCaptureFixture) -> None:
    api = sqlite_api
    caplog.set_level(logging.INFO)
    caplog.set_level(logging.INFO, logger="invario")  # other commands may have raised its level
    tenant = api.tenant("acme")
    given = api.client.get("/v1/accounts", headers={**tenant.headers, "X-Request-ID": "abc-123.DEF:4"})
    assert given.headers["X-Request-ID"] == "abc-123.DEF:4"
    generated = api.client.get("/v1/accounts", headers=tenant.headers)
    assert len(generated.headers["X-Request-ID"]) == 32
    hostile = api.client.get("/v1/accounts", headers={**tenant.headers, "X-Request-ID": "a b<" + "x" * 200})
    assert hostile.headers["X-Request-ID"] != "a b" and len(hostile.headers["X-Request-ID"]) == 32
    rejected = api.client.post("/v1/accounts", json={"code": "!", "name": "n", "currency": "BRL", "type": "asset"},
                               headers={**tenant.headers, "X-Request-ID": "req-42"})
    assert assert_problem(rejected, 422, "invalid_account")["request_id"] == "req-42"
    lines = [r for r in caplog.records if r.name == "invario.http" and getattr(r, "request_id", "-") == "req-42"]
    assert any("rejected invalid_account" in r.getMessage() for r in lines)
    assert any("POST /v1/accounts -> 422" in r.getMessage() for r in lines)
