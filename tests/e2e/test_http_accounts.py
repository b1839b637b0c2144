"""/v1/accounts end to end on both stores: open, read, list, balance, statement, lifecycle, ETag."""

from __future__ import annotations

from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem  # noqa: F401


def test_open_account_returns_it_with_version_etag_and_location(api: Api, acme: Tenant) -> None:
    response = api.client.post("/v1/accounts", headers=acme.headers, json={
        "code": "wallet:7", "name": "Customer 7", "currency": "BRL", "type": "liability",
        "balance_floor": "0", "metadata": {"customer": "7"},
    })
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["code"] == "wallet:7" and body["status"] == "open" and body["version"] == 1
    assert (body["balance"], body["raw_balance"], body["balance_floor"]) == ("0.00", "0.00", "0.00")
    assert body["metadata"] == {"customer": "7"} and body["position"] > 0
    assert response.headers["ETag"] == '"1"'
    assert response.headers["Location"] == f"/v1/accounts/{body['id']}"

    api.catch_up()
    read = api.client.get(f"/v1/accounts/{body['id']}", headers=acme.headers)
    assert read.status_code == 200 and read.headers["ETag"] == '"1"'
    assert {k: read.json()[k] for k in ("id", "code", "name", "currency", "type", "metadata")} == {
        k: body[k] for k in ("id", "code", "name", "currency", "type", "metadata")}


def test_a_duplicate_code_is_a_conflict(api: Api, acme: Tenant) -> None:
    api.open_account(acme, "cash")
    again = api.client.post("/v1/accounts", headers=acme.headers,
                            json={"code": "cash", "name": "Other", "currency": "USD", "type": "asset"})
    assert_problem(again, 409, "account_already_exists")


def test_list_accounts_pages_with_a_cursor(api: Api, acme: Tenant) -> None:
    for n in range(5):
        api.open_account(acme, f"acct-{n}")
    api.catch_up()
    seen, cursor = [], None
    while True:
        params = {"limit": 2, **({"cursor": cursor} if cursor else {})}
        page = api.client.get("/v1/accounts", headers=acme.headers, params=params)
        assert page.status_code == 200, page.text
        assert len(page.json()["items"]) <= 2
        seen += [item["code"] for item in page.json()["items"]]
        cursor = page.json()["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"acct-{n}" for n in range(5)]
    too_big = api.client.get("/v1/accounts", headers=acme.headers, params={"limit": 201})
    assert_problem(too_big, 400, "invalid_request")
    bad_cursor = api.client.get("/v1/accounts", headers=acme.headers, params={"cursor": "!!not-a-cursor!!"})
    assert_problem(bad_cursor, 400, "invalid_cursor")


def test_balance_as_of_and_statement_with_running_balance(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    income = api.open_account(acme, "sales", type="income")
    for n, day in enumerate(["2026-11-01", "2026-11-02", "2026-11-03"], start=1):
        body = {"external_id": f"sale-{n}", "effective_date": day, "description": f"sale {n}",
                "postings": [{"account_id": cash, "amount": f"{n}.00"}, {"account_id": income, "amount": f"-{n}.00"}]}
        assert api.client.post("/v1/transactions", json=body, headers=acme.headers).status_code == 201
    api.catch_up()
    now = api.client.get(f"/v1/accounts/{income}/balance", headers=acme.headers).json()
    assert (now["balance"], now["raw_balance"], now["currency"]) == ("6.00", "-6.00", "BRL")
    earlier = api.client.get(f"/v1/accounts/{cash}/balance", headers=acme.headers, params={"as_of": "2026-11-02"})
    assert earlier.json()["balance"] == "3.00" and earlier.json()["as_of"] == "2026-11-02"

    entries = api.client.get(f"/v1/accounts/{cash}/entries", headers=acme.headers, params={"limit": 2})
    first = entries.json()
    assert [(e["amount"], e["running_balance"]) for e in first["items"]] == [("1.00", "1.00"), ("2.00", "3.00")]
    rest = api.client.get(f"/v1/accounts/{cash}/entries", headers=acme.headers,
                          params={"cursor": first["next_cursor"]}).json()
    assert [(e["amount"], e["running_balance"]) for e in rest["items"]] == [("3.00", "6.00")]
    window = api.client.get(f"/v1/accounts/{cash}/entries", headers=acme.headers,
                            params={"date_from": "2026-11-02", "date_to": "2026-11-02"}).json()
    assert [e["description"] for e in window["items"]] == ["sale 2"]
    backwards = api.client.get(f"/v1/accounts/{cash}/entries", headers=acme.headers,
                               params={"date_from": "2026-11-03", "date_to": "2026-11-01"})
    assert_problem(backwards, 400, "invalid_date_range")


def test_freeze_unfreeze_close_with_if_match(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability")
    frozen = api.client.post(f"/v1/accounts/{cash}/freeze", headers={**acme.headers, "If-Match": '"1"'})
    assert frozen.status_code == 200 and frozen.json()["status"] == "frozen" and frozen.headers["ETag"] == '"2"'
    before = api.balances()
    refused = api.post(acme, "t1", (cash, "1.00"), (wallet, "-1.00"))
    assert_problem(refused, 409, "account_frozen")
    stale = api.client.post(f"/v1/accounts/{cash}/unfreeze", headers={**acme.headers, "If-Match": '"1"'})
    body = assert_problem(stale, 409, "version_mismatch")
    assert (body["expected_version"], body["current_version"]) == (1, 2)
    malformed = api.client.post(f"/v1/accounts/{cash}/unfreeze", headers={**acme.headers, "If-Match": "soon"})
    assert_problem(malformed, 400, "invalid_if_match")
    assert api.balances() == before

    thawed = api.client.post(f"/v1/accounts/{cash}/unfreeze", headers={**acme.headers, "If-Match": 'W/"2"'})
    assert thawed.status_code == 200 and thawed.json()["status"] == "open"
    assert api.post(acme, "t2", (cash, "1.00"), (wallet, "-1.00")).status_code == 201
    api.catch_up()
    read_etag = api.client.get(f"/v1/accounts/{cash}", headers=acme.headers).headers["ETag"]
    assert read_etag == '"4"'  # opened, frozen, unfrozen, posted: the read side's ETag is the write side's version
    not_empty = api.client.post(f"/v1/accounts/{cash}/close", headers={**acme.headers, "If-Match": read_etag})
    assert_problem(not_empty, 409, "account_balance_not_zero")
    assert api.post(acme, "t3", (cash, "-1.00"), (wallet, "1.00")).status_code == 201
    closed = api.client.post(f"/v1/accounts/{cash}/close", headers=acme.headers)
    assert closed.status_code == 200 and closed.json()["status"] == "closed"
    assert_problem(api.client.post(f"/v1/accounts/{cash}/freeze", headers=acme.headers), 409, "account_closed")


def test_read_your_writes_with_min_position(api: Api, acme: Tenant) -> None:
    created = api.client.post("/v1/accounts", headers=acme.headers,
                              json={"code": "cash", "name": "Cash", "currency": "BRL", "type": "asset"})
    position = int(created.headers["Invario-Position"])
    api.catch_up()
    read = api.client.get(f"/v1/accounts/{created.json()['id']}", headers=acme.headers,
                          params={"min_position": position})
    assert read.status_code == 200 and read.json()["position"] >= position
    future = api.client.get("/v1/accounts", headers=acme.headers, params={"min_position": position + 1000})
    assert_problem(future, 400, "position_not_recorded")
