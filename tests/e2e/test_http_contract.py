"""What every answer and the OpenAPI document promise a client, whatever the route."""

from __future__ import annotations

import re

import pytest

from tests.e2e.http_fixtures import Api, assert_problem, sqlite_api  # noqa: F401

OPERATION_ID = re.compile(r"^[a-z][a-z0-9_]*$")


def test_operation_ids_are_the_routes_names(sqlite_api: Api) -> None:
    """A client generated from /openapi.json gets functions named like the API's commands."""
    spec = sqlite_api.client.get("/openapi.json").json()
    ids = [operation["operationId"] for path in spec["paths"].values() for operation in path.values()
           if isinstance(operation, dict) and "operationId" in operation]

    assert len(ids) == len(set(ids))
    assert all(OPERATION_ID.match(i) and not re.search(r"_(get|post|put|delete)$", i) for i in ids), ids
    assert {"post_transaction", "post_transaction_batch", "open_account", "get_balance", "reverse_transaction",
            "create_tenant", "health"} <= set(ids)


def test_every_answer_carries_the_security_headers(sqlite_api: Api) -> None:
    tenant = sqlite_api.tenant("acme")
    answers = [
        sqlite_api.client.get("/health"),
        sqlite_api.client.get("/v1/accounts", headers={"Authorization": f"Bearer {tenant.key}"}),
        sqlite_api.client.get("/v1/accounts"),  # 401
        sqlite_api.client.get("/no/such/path"),  # 404
    ]
    assert_problem(answers[2], 401, answers[2].json()["code"])
    for answer in answers:
        assert answer.headers["x-content-type-options"] == "nosniff", answer.request.url
        assert answer.headers["cache-control"] == "no-store", answer.request.url
        assert answer.headers["x-request-id"]


@pytest.mark.parametrize(("method", "path", "allowed"), [
    ("OPTIONS", "/v1/accounts", "GET, POST"),
    ("DELETE", "/v1/accounts", "GET, POST"),
    ("PUT", "/v1/transactions", "GET, POST"),
    ("POST", "/v1/recurring-transactions/any-id", "GET, DELETE"),
    ("DELETE", "/health", "GET"),
])
def test_a_405_allows_every_method_of_its_path(sqlite_api: Api, method: str, path: str, allowed: str) -> None:
    answer = sqlite_api.client.request(method, path)

    assert_problem(answer, 405, "method_not_allowed")
    assert answer.headers["allow"] == allowed


def test_the_docs_pages_load_nothing_from_elsewhere(sqlite_api: Api) -> None:
    for page in ("/docs", "/redoc"):
        html = sqlite_api.client.get(page).text
        scripts = re.findall(r'(?:src|href)="([^"]+)"', html)
        assert scripts and all(url.startswith("/") for url in scripts), (page, scripts)
        assert "cdn." not in html and "fonts.googleapis" not in html
    assert sqlite_api.client.get("/docs-assets/swagger-ui-bundle.js").status_code == 200
