"""Bad input always gets a 4xx problem document with a code, never a 500, and changes nothing."""

from __future__ import annotations

import json

import pytest

from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, sqlite_api  # noqa: F401


@pytest.fixture
def books(sqlite_api: Api) -> tuple[Api, Tenant, str, str]:
    tenant = sqlite_api.tenant("acme")
    cash = sqlite_api.open_account(tenant, "cash")
    wallet = sqlite_api.open_account(tenant, "wallet", type="liability")
    assert sqlite_api.post(tenant, "seed", (cash, "1.00"), (wallet, "-1.00")).status_code == 201
    return sqlite_api, tenant, cash, wallet


def _raw(api: Api, tenant: Tenant, body: bytes, path: str = "/v1/transactions") -> object:
    return api.client.post(path, content=body, headers={**tenant.headers, "Content-Type": "application/json"})


def test_malformed_requests_are_400_with_a_code(books: tuple[Api, Tenant, str, str]) -> None:
    api, tenant, cash, wallet = books
    good = {"external_id": "x1", "effective_date": "2026-11-23",
            "postings": [{"account_id": cash, "amount": "1.00"}, {"account_id": wallet, "amount": "-1.00"}]}
    before = api.balances()
    cases = [
        (b"{not json", "malformed_json"),
        (b"[" * 50_000, "malformed_json"),
        (json.dumps({**good, "surprise": 1}).encode(), "unknown_field"),
        (json.dumps({k: v for k, v in good.items() if k != "postings"}).encode(), "missing_field"),
        (json.dumps({**good, "effective_date": "yesterday"}).encode(), "invalid_request"),
        (json.dumps({**good, "postings": [{"account_id": cash, "amount": 1.0}, good["postings"][1]]}).encode(),
         "invalid_request"),
        (json.dumps({**good, "postings": [{"account_id": "not-a-uuid", "amount": "1"}] * 2}).encode(),
         "invalid_request"),
        (json.dumps({**good, "description": "x" * 501}).encode(), "string_too_long"),
        (json.dumps({**good, "external_id": "x" * 10_000}).encode(), "string_too_long"),
        (json.dumps([good]).encode(), "invalid_request"),
        (b"", "missing_field"),
    ]
    for body, code in cases:
        problem = assert_problem(_raw(api, tenant, body), 400, code)
        assert all("input" not in error for error in problem.get("errors", []))
    assert api.balances() == before


def test_limits_are_4xx(books: tuple[Api, Tenant, str, str]) -> None:
    api, tenant, cash, wallet = books
    before = api.balances()
    legs = [{"account_id": cash, "amount": "1.00"}] + [{"account_id": wallet, "amount": "-0.01"}] * 100
    many = {"external_id": "many", "effective_date": "2026-11-23", "postings": legs}
    assert_problem(_raw(api, tenant, json.dumps(many).encode()), 422, "too_many_postings")
    huge = {"external_id": "huge", "effective_date": "2026-11-23", "description": "x" * 300_000, "postings": []}
    body = assert_problem(_raw(api, tenant, json.dumps(huge).encode()), 413, "body_too_large")
    assert body["limit"] == api.runtime.settings.http_body_max_bytes
    metadata = {"external_id": "meta", "effective_date": "2026-11-23", "metadata": {f"k{n}": "v" for n in range(51)},
                "postings": [{"account_id": cash, "amount": "1.00"}, {"account_id": wallet, "amount": "-1.00"}]}
    assert_problem(_raw(api, tenant, json.dumps(metadata).encode()), 422, "invalid_metadata")
    assert api.balances() == before


def test_bad_paths_and_queries_are_4xx(books: tuple[Api, Tenant, str, str]) -> None:
    api, tenant, cash, _ = books
    assert_problem(api.client.get("/v1/accounts/not-a-uuid", headers=tenant.headers), 400, "invalid_request")
    assert_problem(api.client.get(f"/v1/accounts/{cash}/balance", params={"as_of": "2026-13-45"},
                                  headers=tenant.headers), 400, "invalid_request")
    assert_problem(api.client.get("/v1/nowhere", headers=tenant.headers), 404, "not_found")
    assert_problem(api.client.delete(f"/v1/accounts/{cash}", headers=tenant.headers), 405, "method_not_allowed")
    assert_problem(api.client.post("/v1/accounts", headers={**tenant.headers, "Idempotency-Key": "tab\there"},
                                   json={"code": "c", "name": "C", "currency": "BRL", "type": "asset"}),
                   400, "invalid_idempotency_key")


def test_problem_documents_carry_the_request_id(books: tuple[Api, Tenant, str, str]) -> None:
    api, tenant, cash, wallet = books
    response = api.post(tenant, "u", (cash, "1.00"), (wallet, "-2.00"), headers={"X-Request-ID": "req-123"})
    body = assert_problem(response, 422, "transaction_unbalanced")
    assert body["request_id"] == "req-123" == response.headers["X-Request-ID"]
    assert body["instance"] == "/v1/transactions"
