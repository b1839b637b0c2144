"""Schemathesis over the live OpenAPI schema: no 5xx, and every response conforms to the schema.

Each operation gets bounded property-based examples (``MAX_EXAMPLES``), half with
random ids and half with ids that exist, authenticated as a tenant (``/v1``) or
as the operator (``/admin``), with read models kept up to date between examples.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.http_fixtures import ADMIN, Api, make_api

pytestmark = pytest.mark.long  # fuzzing: make test-long

MAX_EXAMPLES = 25
# An event stream never ends by design, and an in-process ASGI call waits for the end of the answer;
# tests/e2e/test_http_events_stream.py exercises it against a real server instead.
NEVER_ENDING = {"/v1/events/stream"}
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]


@pytest.fixture
def seeded(database_url: str) -> Iterator[tuple[Api, dict[str, str], dict[str, Any]]]:
    apps = make_api(database_url, rate_limit_per_second=0)
    api = next(apps)
    tenant = api.tenant("acme")
    cash = api.open_account(tenant, "cash")
    wallet = api.open_account(tenant, "wallet", type="liability")
    posted = api.post(tenant, "seed", (cash, "5.00"), (wallet, "-5.00")).json()
    recurring = api.client.post("/v1/recurring-transactions", headers=tenant.headers, json={
        "frequency": "daily", "start_date": date.today().isoformat(),
        "postings": [{"account_id": cash, "amount": "1"}, {"account_id": wallet, "amount": "-1"}]}).json()
    api.catch_up()
    batch = api.client.post("/v1/batches", content=b"external_id,effective_date,postings\nb-1,2026-11-23,cash=1;wallet=-1\n",
                            headers={**tenant.headers, "Content-Type": "text/csv"}).json()
    webhook = api.client.post("/v1/webhooks", headers=tenant.headers, json={"url": "https://8.8.8.8/hook"}).json()
    ids = {"account_id": cash, "transaction_id": posted["id"], "tenant_id": str(tenant.id), "batch_id": batch["id"],
           "recurring_id": recurring["id"], "webhook_id": webhook["id"]}
    yield api, tenant.headers, ids
    apps.close()


def test_the_live_schema_holds(seeded: tuple[Api, dict[str, str], dict[str, Any]]) -> None:
    api, tenant_headers, ids = seeded
    schema = schemathesis.openapi.from_asgi("/openapi.json", api.client.app)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        if operation.path in NEVER_ENDING:
            continue
        headers = ADMIN if operation.path.startswith("/admin") else tenant_headers
        names = {p.name for p in operation.path_parameters}
        strategy = operation.as_strategy(headers=headers)
        if names:
            known = {name: ids[name] for name in names}
            strategy = st.one_of(strategy, operation.as_strategy(headers=headers, path_parameters=known))
        _exercise(api, strategy)


def _exercise(api: Api, strategy: Any) -> None:
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=strategy)
    def run(case: Any) -> None:
        response = case.call()
        case.validate_response(response, checks=CHECKS)
        if case.method.upper() == "POST":
            api.catch_up()

    run()
