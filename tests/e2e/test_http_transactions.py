"""/v1/transactions end to end on both stores: post, repeat, read, list, reverse."""

from __future__ import annotations

from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem  # noqa: F401


def _books(api: Api, acme: Tenant) -> tuple[str, str, str]:
    return api.open_account(acme, "cash"), api.open_account(acme, "wallet", type="liability"), \
        api.open_account(acme, "fees", type="income")


def test_post_then_read_a_transaction(api: Api, acme: Tenant) -> None:
    cash, wallet, _ = _books(api, acme)
    posted = api.post(acme, "dep-1", (cash, "12.34"), (wallet, "-12.34"), description="deposit",
                      metadata={"channel": "pix"})
    assert posted.status_code == 201, posted.text
    body = posted.json()
    assert body["external_id"] == "dep-1" and body["version"] == 1 and posted.headers["ETag"] == '"1"'
    assert [(p["amount"], p["currency"]) for p in body["postings"]] == [("12.34", "BRL"), ("-12.34", "BRL")]
    api.catch_up()
    read = api.client.get(f"/v1/transactions/{body['id']}", headers=acme.headers)
    assert read.status_code == 200
    assert {k: read.json()[k] for k in ("id", "external_id", "effective_date", "description", "postings", "metadata")} \
        == {k: body[k] for k in ("id", "external_id", "effective_date", "description", "postings", "metadata")}


def test_the_same_external_id_replays_and_other_content_conflicts(api: Api, acme: Tenant) -> None:
    cash, wallet, _ = _books(api, acme)
    first = api.post(acme, "dep-1", (cash, "5.00"), (wallet, "-5.00"))
    again = api.post(acme, "dep-1", (cash, "5.00"), (wallet, "-5.00"))
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["position"] >= first.json()["position"]
    before = api.balances()
    other = api.post(acme, "dep-1", (cash, "6.00"), (wallet, "-6.00"))
    assert_problem(other, 409, "duplicate_external_id")
    assert api.balances() == before


def test_business_rejections_change_nothing(api: Api, acme: Tenant) -> None:
    cash, wallet, _ = _books(api, acme)
    floored = api.open_account(acme, "floored", type="liability", balance_floor="0.00")
    usd = api.open_account(acme, "usd-cash", currency="USD")
    before = api.balances()
    cases = [
        (api.post(acme, "a", (cash, "1.00"), (wallet, "-0.99")), 422, "transaction_unbalanced"),
        (api.post(acme, "b", (cash, "1.001"), (wallet, "-1.001")), 422, "amount_precision_exceeded"),
        (api.post(acme, "c", (cash, "ten"), (wallet, "-10")), 422, "invalid_amount"),
        (api.post(acme, "d", (cash, "0"), (wallet, "0")), 422, "zero_amount"),
        (api.post(acme, "e", (cash, "1.00")), 422, "too_few_postings"),
        (api.post(acme, "f", (cash, "1.00"), (usd, "-1.00")), 422, "transaction_unbalanced"),
        (api.post(acme, "g", (cash, "-1.00"), (floored, "1.00")), 422, "insufficient_funds"),
        (api.post(acme, "h", (cash, "1.00"), (cash, "-1.00")), 422, "duplicate_posting_account"),
        (api.post(acme, "bad id!", (cash, "1.00"), (wallet, "-1.00")), 422, "invalid_transaction"),
    ]
    for response, status, code in cases:
        assert_problem(response, status, code)
    assert api.balances() == before


def test_reverse_with_if_match_and_only_once(api: Api, acme: Tenant) -> None:
    cash, wallet, _ = _books(api, acme)
    original = api.post(acme, "dep-1", (cash, "7.00"), (wallet, "-7.00")).json()
    before = api.balances()
    stale = api.client.post(f"/v1/transactions/{original['id']}/reverse", headers={**acme.headers, "If-Match": '"2"'})
    assert_problem(stale, 409, "version_mismatch")
    assert api.balances() == before
    reversal = api.client.post(f"/v1/transactions/{original['id']}/reverse", json={"description": "oops"},
                               headers={**acme.headers, "If-Match": '"1"'})
    assert reversal.status_code == 201, reversal.text
    assert reversal.json()["reverses"] == original["id"] and reversal.json()["external_id"] is None
    assert [p["amount"] for p in reversal.json()["postings"]] == ["-7.00", "7.00"]
    assert api.balance(acme, cash) == "0.00"
    read = api.client.get(f"/v1/transactions/{original['id']}", headers=acme.headers)
    assert read.json()["reversed_by"] == reversal.json()["id"] and read.headers["ETag"] == '"2"'
    before = api.balances()
    twice = api.client.post(f"/v1/transactions/{original['id']}/reverse", headers=acme.headers)
    assert_problem(twice, 409, "transaction_already_reversed")
    of_reversal = api.client.post(f"/v1/transactions/{reversal.json()['id']}/reverse", headers=acme.headers)
    assert_problem(of_reversal, 409, "reversal_not_reversible")
    assert api.balances() == before


def test_list_transactions_by_account_and_dates(api: Api, acme: Tenant) -> None:
    cash, wallet, fees = _books(api, acme)
    for n, (other, day) in enumerate([(wallet, "2026-11-01"), (fees, "2026-11-02"), (wallet, "2026-11-03")]):
        body = {"external_id": f"t{n}", "effective_date": day,
                "postings": [{"account_id": cash, "amount": "1.00"}, {"account_id": other, "amount": "-1.00"}]}
        assert api.client.post("/v1/transactions", json=body, headers=acme.headers).status_code == 201
    api.catch_up()

    def external_ids(**params: str) -> list[str]:
        response = api.client.get("/v1/transactions", headers=acme.headers, params=params)
        assert response.status_code == 200, response.text
        return sorted(item["external_id"] for item in response.json()["items"])

    assert external_ids() == ["t0", "t1", "t2"]
    assert external_ids(account_id=fees) == ["t1"]
    assert external_ids(date_from="2026-11-02") == ["t1", "t2"]
    assert external_ids(account_id=wallet, date_to="2026-11-02") == ["t0"]
    pages = api.client.get("/v1/transactions", headers=acme.headers, params={"limit": 2}).json()
    assert len(pages["items"]) == 2 and pages["next_cursor"]
