"""GET /v1/events: a tenant's own events as CloudEvents, paged with a cursor, on SQLite and PostgreSQL."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, globex  # noqa: F401 - fixtures


def _all_pages(api: Api, tenant: Tenant, limit: int) -> tuple[list[dict[str, Any]], int]:
    items: list[dict[str, Any]] = []
    url, pages = f"/v1/events?limit={limit}", 0
    while True:
        response = api.client.get(url, headers=tenant.headers)
        assert response.status_code == 200, response.text
        body = response.json()
        assert response.headers["Link"] == f'<{body["next"]}>; rel="next"'
        items += body["items"]
        pages += 1
        assert len(body["items"]) <= limit and pages < 100
        if not body["more"]:
            assert body["next_after"] == (int(items[-1]["id"]) if items else 0)
            return items, pages
        url = body["next"]


def _book(api: Api, tenant: Tenant, transfers: int) -> None:
    cash = api.open_account(tenant, "cash")
    sales = api.open_account(tenant, "sales", type="income")
    for number in range(transfers):
        response = api.post(tenant, f"{tenant.name}-{number}", (cash, "1.00"), (sales, "-1.00"))
        assert response.status_code == 201, response.text


def test_pages_follow_the_cursor_in_log_order_and_carry_the_relays_cloudevents(api: Api, acme: Tenant) -> None:
    _book(api, acme, 4)  # Tenant.Created, 2 x Account.Opened, 4 x (Posted + 2 PostingRecorded): 15 events
    api.catch_up()
    items, pages = _all_pages(api, acme, limit=4)
    assert len(items) == 15 and pages == 4
    positions = [int(item["id"]) for item in items]
    assert positions == sorted(set(positions))
    assert items[0]["type"] == "io.invario.tenant.created" and items[0]["subject"] == str(acme.id)
    assert {item["source"] for item in items} == {f"/ledgers/invario/tenants/{acme.id}"}
    recorded = next(item for item in items if item["type"] == "io.invario.account.posting_recorded")
    assert recorded["currency"] == "BRL" and recorded["specversion"] == "1.0"
    for item in items:  # the hash covers exactly the data: a consumer can check the chain
        document = json.dumps({"event_type": item["eventtype"], "fields": item["data"]}, sort_keys=True,
                              separators=(",", ":"), ensure_ascii=False)
        assert hashlib.sha256(document.encode()).hexdigest() == item["hash"]
    # No API key event, ever: its payload carries the key's digest.
    assert not [item for item in items if "api_key" in item["type"] or "key_ring" in item["type"]]


def test_a_tenant_sees_only_its_own_events(api: Api, acme: Tenant, globex: Tenant) -> None:
    _book(api, acme, 2)
    _book(api, globex, 3)
    api.catch_up()
    for tenant, count in ((acme, 9), (globex, 12)):
        items, _ = _all_pages(api, tenant, limit=1000)
        assert len(items) == count
        assert {item["source"] for item in items} == {f"/ledgers/invario/tenants/{tenant.id}"}
    # Another tenant's position as a cursor shows nothing of the other tenant either.
    first_globex = int(_all_pages(api, globex, limit=1)[0][0]["id"])
    after = api.client.get(f"/v1/events?after={first_globex - 1}", headers=acme.headers).json()
    assert all(item["source"].endswith(str(acme.id)) for item in after["items"])


def test_the_page_after_the_last_event_is_empty_and_says_where_to_poll(api: Api, acme: Tenant) -> None:
    _book(api, acme, 1)
    api.catch_up()
    items, _ = _all_pages(api, acme, limit=1000)
    last = int(items[-1]["id"])
    body = api.client.get(f"/v1/events?after={last}&limit=10", headers=acme.headers).json()
    assert body["items"] == [] and body["more"] is False and body["next_after"] == last
    assert body["next"] == f"/v1/events?after={last}&limit=10" and body["position"] >= last


def test_bad_input_is_a_400_problem(api: Api, acme: Tenant) -> None:
    for query in ("after=abc", "after=-1", "after=1.5", "limit=0", "limit=1001", "limit=x",
                  f"after={2**62 + 1}"):
        assert_problem(api.client.get(f"/v1/events?{query}", headers=acme.headers), 400, "invalid_request")
    assert_problem(api.client.get("/v1/events/stream", headers={**acme.headers, "Last-Event-ID": "x1"}),
                   400, "invalid_last_event_id")
    assert_problem(api.client.get("/v1/events/stream?after=-3", headers=acme.headers), 400, "invalid_request")
    assert api.client.get("/v1/events").status_code == 401


def test_a_read_key_is_enough(api: Api, acme: Tenant) -> None:
    reader = {"Authorization": f"Bearer {api.key(acme.id, ('read',))}"}
    api.catch_up()
    assert api.client.get("/v1/events", headers=reader).status_code == 200
