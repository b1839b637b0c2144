"""GET /metrics after a known scenario: exact counter movements, the integrity gauge, lag, and the internal routes.

Metrics are process-wide (one MeterProvider per process, as in production), and
other tests move the same counters, so each test reads the metrics before and
after its scenario and asserts the exact difference.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from interfaces.bootstrap import open_access
from tests.e2e.http_fixtures import ADMIN, DAY, Api, make_api, sqlite_api  # noqa: F401

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(api: Api) -> Samples:
    response = api.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    samples: Samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def moved(before: Samples, after: Samples, name: str, **labels: str) -> float:
    return value(after, name, **labels) - value(before, name, **labels)


def body(external_id: str, cash: str, wallet: str, amount: str = "10.00", other: str | None = None) -> dict[str, Any]:
    return {"external_id": external_id, "effective_date": DAY, "postings": [
        {"account_id": cash, "amount": amount}, {"account_id": wallet, "amount": f"-{other or amount}"}]}


def test_counters_move_exactly_with_a_known_scenario(sqlite_api: Api) -> None:  # noqa: PLR0915 - one story
    api = sqlite_api
    acme = api.tenant("acme")
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability")
    globex = api.tenant("globex")
    open_access(api.runtime).revoke_keys(globex.id)
    before = scrape(api)

    post = api.client.post
    assert post("/v1/transactions", json=body("t-1", cash, wallet), headers=acme.headers).status_code == 201
    keyed = {**acme.headers, "Idempotency-Key": "k-2"}
    assert post("/v1/transactions", json=body("t-2", cash, wallet), headers=keyed).status_code == 201
    replay = post("/v1/transactions", json=body("t-2", cash, wallet), headers=keyed)  # the stored response
    assert replay.status_code == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert post("/v1/transactions", json=body("t-1", cash, wallet), headers=acme.headers).status_code == 200
    unbalanced = post("/v1/transactions", json=body("t-3", cash, wallet, other="9.99"), headers=acme.headers)
    assert unbalanced.status_code == 422
    duplicate = post("/v1/transactions", json=body("t-1", cash, wallet, "5.00"), headers=acme.headers)
    assert duplicate.status_code == 409
    assert api.client.get("/v1/accounts").status_code == 401
    assert api.client.get("/v1/accounts", headers={"Authorization": "Bearer inv_live_" + "x" * 40}).status_code == 401
    assert api.client.get("/v1/accounts", headers=globex.headers).status_code == 401
    assert api.client.get("/internal/metrics").status_code == 401
    api.catch_up()
    after = scrape(api)

    assert moved(before, after, "invario_transactions_total", status="accepted") == 2
    assert moved(before, after, "invario_transactions_total", status="rejected") == 2
    assert moved(before, after, "invario_idempotent_replays_total", source="idempotency_key") == 1
    assert moved(before, after, "invario_idempotent_replays_total", source="external_id") == 1
    assert moved(before, after, "auth_failures_total", reason="MISSING_TOKEN") == 2
    assert moved(before, after, "auth_failures_total", reason="INVALID_TOKEN") == 1
    assert moved(before, after, "auth_failures_total", reason="REVOKED_TOKEN") == 1
    assert moved(before, after, "tenant_conflicts_total") == 1
    assert moved(before, after, "http_errors_total", status_class="4xx") == 6
    assert moved(before, after, "http_errors_total", status_class="5xx") == 0
    posts = {"route": "/v1/transactions", "method": "POST"}
    assert moved(before, after, "http_request_duration_seconds_count", **posts) == 6
    # Seconds, with buckets fit for an API (not the SDK's 0..10000 default).
    assert ("http_request_duration_seconds_bucket", frozenset({**posts, "le": "0.005"}.items())) in after
    assert ("http_request_duration_seconds_bucket", frozenset({**posts, "le": "10000.0"}.items())) not in after
    assert value(after, "invario_ledger_integrity_status") == 1
    for projection in ("global_chain", "accounts", "statements", "transactions"):
        assert value(after, "invario_projection_lag_events", projection=projection) == 0
        assert ("invario_projection_lag_events", frozenset({"projection": projection}.items())) in after


def test_every_metric_is_exported_with_zeros_and_help(sqlite_api: Api) -> None:
    text = sqlite_api.client.get("/metrics").text
    for name in ("invario_transactions_total", "auth_failures_total", "http_errors_total", "tenant_conflicts_total",
                 "invario_idempotent_replays_total", "invario_batch_outcomes_total", "invario_ledger_integrity_status",
                 "invario_projection_lag_events"):
        assert f"# HELP {name} " in text, name
        assert f"# TYPE {name} " in text, name
    uuid = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
    for line in text.splitlines():  # bounded labels: never an id or a key (route templates, not paths)
        if line.startswith("target_info"):
            continue  # the SDK's resource: one series per process, with its instance id
        assert "inv_live_" not in line
        assert not uuid.search(line), line


@pytest.fixture
def limited_api(sqlite_database_url: str) -> Iterator[Api]:
    yield from make_api(sqlite_database_url, rate_limit_per_second=0.01, rate_limit_burst=1)


def test_rate_limited_requests_are_counted_by_tenant_name(limited_api: Api) -> None:
    api = limited_api
    acme = api.tenant("acme")
    before = scrape(api)
    assert api.client.get("/v1/accounts", headers=acme.headers).status_code == 200
    assert api.client.get("/v1/accounts", headers=acme.headers).status_code == 429
    after = scrape(api)
    assert moved(before, after, "rate_limited_total", tenant="acme") == 1
    assert moved(before, after, "http_errors_total", status_class="4xx") == 1


def test_internal_metrics_need_the_admin_token_and_speak_json(sqlite_api: Api) -> None:
    api = sqlite_api
    assert api.client.get("/internal/metrics", headers={"Authorization": "Bearer nope"}).status_code == 401
    text = api.client.get("/internal/metrics", headers=ADMIN)
    assert text.status_code == 200 and "invario_transactions_total" in text.text
    document = api.client.get("/internal/metrics/json", headers=ADMIN).json()
    families = {family["name"]: family for family in document["metrics"]}
    transactions = families["invario_transactions"]  # the parser drops the counter's _total suffix
    assert transactions["type"] == "counter" and transactions["help"]
    statuses = {s["labels"].get("status") for s in transactions["samples"] if s["name"].endswith("_total")}
    assert statuses == {"accepted", "rejected"}
    assert families["invario_ledger_integrity_status"]["samples"][0]["value"] == 1


def test_metrics_is_served_directly_not_redirected(sqlite_api: Api) -> None:
    response = sqlite_api.client.get("/metrics", follow_redirects=False)
    assert response.status_code == 200
