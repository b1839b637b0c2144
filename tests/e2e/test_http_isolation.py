"""Tenant isolation on every /v1 route: another tenant's ids answer 404 and nothing leaks or moves."""

from __future__ import annotations

from datetime import date
from typing import Any

from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, globex  # noqa: F401

# method, path template, body: every /v1 route, probed by the other tenant.
PROBES: list[tuple[str, str, Any]] = [
    ("GET", "/v1/accounts/{account_id}", None),
    ("GET", "/v1/accounts/{account_id}/balance", None),
    ("GET", "/v1/accounts/{account_id}/entries", None),
    ("POST", "/v1/accounts/{account_id}/freeze", None),
    ("POST", "/v1/accounts/{account_id}/unfreeze", None),
    ("POST", "/v1/accounts/{account_id}/close", None),
    ("GET", "/v1/transactions/{transaction_id}", None),
    ("POST", "/v1/transactions/{transaction_id}/reverse", None),
    ("GET", "/v1/accounts/{account_id}/holds", None),  # holds (issue 10)
    ("POST", "/v1/transactions/{transaction_id}/post", None),
    ("POST", "/v1/transactions/{transaction_id}/void", None),
    ("POST", "/v1/transactions", "steal"),
    ("POST", "/v1/transactions/batch", "steal-batch"),  # each item has its own outcome (issue 15)
    ("GET", "/v1/recurring-transactions/{recurring_id}", None),  # standing orders (docs/jobs.md)
    ("DELETE", "/v1/recurring-transactions/{recurring_id}", None),
    ("GET", "/v1/batches/{batch_id}", None),  # batch files (docs/batches.md)
    ("GET", "/v1/transactions/{transaction_id}/proof", None),  # proofs (docs/proofs.md)
    ("GET", "/v1/webhooks/{webhook_id}", None),  # webhooks (docs/events-out.md)
    ("DELETE", "/v1/webhooks/{webhook_id}", None),
    ("POST", "/v1/webhooks/{webhook_id}/replay?from=1", None),
]
LISTS = [("GET", "/v1/accounts"), ("GET", "/v1/transactions"), ("POST", "/v1/accounts"),
         ("GET", "/v1/ledger/digest"),  # the signed head of the whole ledger: no tenant's ids (issue 5)
         ("GET", "/v1/recurring-transactions"), ("POST", "/v1/recurring-transactions"),
         ("POST", "/v1/batches"),
         # the Merkle tree's signed heads and the hashes between them: no tenant's data (docs/proofs.md)
         ("GET", "/v1/ledger/checkpoint"), ("GET", "/v1/ledger/consistency"),
         # the tenant's own events and endpoints: test_http_events*.py and test_http_webhooks.py
         ("GET", "/v1/events"), ("GET", "/v1/events/stream"), ("GET", "/v1/webhooks"), ("POST", "/v1/webhooks")]


def test_every_v1_route_is_probed(api: Api) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    routes = {(method.upper(), path) for path, item in paths.items() if path.startswith("/v1") for method in item}
    assert routes == {(m, p.partition("?")[0]) for m, p, _ in PROBES} | set(LISTS)


def test_another_tenants_ids_are_not_found(api: Api, acme: Tenant, globex: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability")
    posted = api.post(acme, "t1", (cash, "3.00"), (wallet, "-3.00")).json()
    recurring = api.client.post("/v1/recurring-transactions", headers=acme.headers, json={
        "frequency": "daily", "start_date": date.today().isoformat(),
        "postings": [{"account_id": cash, "amount": "1"}, {"account_id": wallet, "amount": "-1"}]}).json()
    # a batch that posts nothing (an unknown account), so balances cannot move in the background
    batch = api.client.post("/v1/batches", content=b"external_id,effective_date,postings\nb-1,2026-11-23,cash=1;ghost=-1\n",
                            headers={**acme.headers, "Content-Type": "text/csv"}).json()
    webhook = api.client.post("/v1/webhooks", headers=acme.headers, json={"url": "https://8.8.8.8/hook"}).json()
    api.open_account(globex, "own")
    api.catch_up()
    before = api.balances()
    ids = {"account_id": cash, "transaction_id": posted["id"], "recurring_id": recurring["id"], "batch_id": batch["id"],
           "webhook_id": webhook["id"]}
    for method, template, body in PROBES:
        path = template.format(**ids)
        if body == "steal":
            response = api.post(globex, "steal", (cash, "-3.00"), (wallet, "3.00"))
        elif body == "steal-batch":
            response = api.client.post(path, headers=globex.headers, json={"transactions": [{
                "external_id": "steal", "effective_date": "2026-11-23",
                "postings": [{"account_id": cash, "amount": "-3.00"}, {"account_id": wallet, "amount": "3.00"}]}]})
            assert response.status_code == 200, response.text
            [result] = response.json()["results"]
            assert (result["status"], result["problem"]["code"]) == ("rejected", "account_not_found")
            continue
        else:
            response = api.client.request(method, path, headers=globex.headers)
        code = ("transaction_not_found" if "{transaction_id}" in template
                else "recurring_transaction_not_found" if "{recurring_id}" in template
                else "batch_not_found" if "{batch_id}" in template
                else "webhook_not_found" if "{webhook_id}" in template else "account_not_found")
        assert_problem(response, 404, code)
    assert api.balances() == before
    # and the owner still sees everything unchanged
    assert api.client.get(f"/v1/accounts/{cash}", headers=acme.headers).json()["status"] == "open"
    assert api.client.get(f"/v1/transactions/{posted['id']}", headers=acme.headers).json()["reversed_by"] is None
    assert api.client.get(f"/v1/webhooks/{webhook['id']}", headers=acme.headers).json()["status"] == "active"


def test_lists_show_only_the_tenants_own_data(api: Api, acme: Tenant, globex: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability")
    assert api.post(acme, "t1", (cash, "3.00"), (wallet, "-3.00")).status_code == 201
    mine = api.open_account(globex, "cash")  # the same code in another tenant is another account
    assert mine != cash
    api.catch_up()
    accounts = api.client.get("/v1/accounts", headers=globex.headers).json()["items"]
    assert [a["id"] for a in accounts] == [mine]
    assert api.client.get("/v1/transactions", headers=globex.headers).json()["items"] == []
    filtered = api.client.get("/v1/transactions", headers=globex.headers, params={"account_id": cash})
    assert filtered.status_code == 200 and filtered.json()["items"] == []


def test_idempotency_keys_are_per_tenant(api: Api, acme: Tenant, globex: Tenant) -> None:
    key = {"Idempotency-Key": "shared-key"}
    body = {"code": "cash", "name": "Cash", "currency": "BRL", "type": "asset"}
    first = api.client.post("/v1/accounts", json=body, headers={**acme.headers, **key})
    second = api.client.post("/v1/accounts", json=body, headers={**globex.headers, **key})
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] != second.json()["id"] and "Idempotent-Replayed" not in second.headers
