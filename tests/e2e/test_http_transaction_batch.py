"""POST /v1/transactions/batch end to end on both stores: outcomes in order, atomic
(linked) batches, bounds, Idempotency-Key, tenant isolation and resulting balances.
Every rejection also checks that no balance moved."""

from __future__ import annotations

from typing import Any

from tests.e2e.http_fixtures import DAY, Api, Tenant, acme, api, assert_problem, globex  # noqa: F401

PATH = "/v1/transactions/batch"


def item(external_id: str, *legs: tuple[str, str], **extra: Any) -> dict[str, Any]:
    return {"external_id": external_id, "effective_date": DAY,
            "postings": [{"account_id": a, "amount": amount} for a, amount in legs], **extra}


def post_batch(api: Api, tenant: Tenant, items: list[dict[str, Any]], *, atomic: bool = False,
               key: str | None = None) -> Any:
    headers = {**tenant.headers, **({"Idempotency-Key": key} if key else {})}
    return api.client.post(PATH, json={"transactions": items, "atomic": atomic}, headers=headers)


def _books(api: Api, acme: Tenant) -> tuple[str, str]:
    """cash (asset) and a wallet (liability) that may not go below zero."""
    return api.open_account(acme, "cash"), api.open_account(acme, "wallet", type="liability", balance_floor="0.00")


def head(api: Api) -> int:
    return api.runtime.ledger.recorder.max_notification_id() or 0


def statuses(body: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [(r["status"], r["problem"]["code"] if r["problem"] else None) for r in body["results"]]


def test_mixed_outcomes_are_answered_in_order_and_later_items_see_earlier_ones(
        api: Api, acme: Tenant, globex: Tenant) -> None:
    cash, wallet = _books(api, acme)
    foreign = api.open_account(globex, "cash")
    response = post_batch(api, acme, [
        item("dep-1", (cash, "10.00"), (wallet, "-10.00")),     # the wallet holds 10.00
        item("pay-1", (wallet, "12.00"), (cash, "-12.00")),     # more than it holds
        item("pay-2", (wallet, "6.00"), (cash, "-6.00")),       # allowed only because dep-1 came first
        item("pay-3", (wallet, "6.00"), (cash, "-6.00")),       # crosses the floor after pay-2
        item("bad-1", (cash, "1.00"), (wallet, "-0.99")),       # unbalanced
        item("iso-1", (cash, "1.00"), (foreign, "-1.00")),      # another tenant's account
    ])
    assert response.status_code == 200, response.text
    body = response.json()
    assert statuses(body) == [("created", None), ("rejected", "insufficient_funds"), ("created", None),
                              ("rejected", "insufficient_funds"), ("rejected", "transaction_unbalanced"),
                              ("rejected", "account_not_found")]
    assert [r["index"] for r in body["results"]] == list(range(6))
    assert (body["created"], body["replayed"], body["rejected"], body["atomic"]) == (2, 0, 4, False)
    created = [r["transaction"] for r in body["results"] if r["status"] == "created"]
    assert created[0]["position"] < created[1]["position"] == body["position"] == head(api)
    assert response.headers["Invario-Position"] == str(body["position"])
    problem = body["results"][1]["problem"]
    assert problem["type"] == "urn:invario:problem:insufficient_funds" and problem["status"] == 422
    assert problem["instance"] == PATH and problem["detail"]
    assert api.balances() == {"acme/cash": 400, "acme/wallet": -400, "globex/cash": 0}
    assert api.balance(acme, wallet) == "4.00"


def test_an_external_id_already_posted_or_repeated_in_the_batch_replays(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    earlier = api.post(acme, "dep-1", (cash, "5.00"), (wallet, "-5.00")).json()
    response = post_batch(api, acme, [
        item("dep-1", (cash, "5.00"), (wallet, "-5.00")),   # posted by an earlier request
        item("dep-2", (cash, "2.00"), (wallet, "-2.00")),
        item("dep-2", (cash, "2.00"), (wallet, "-2.00")),   # the same again: replays the item before it
        item("dep-2", (cash, "3.00"), (wallet, "-3.00")),   # the same id, other content
    ])
    body = response.json()
    assert statuses(body) == [("replayed", None), ("created", None), ("replayed", None),
                              ("rejected", "duplicate_external_id")]
    results = body["results"]
    assert results[0]["transaction"]["id"] == earlier["id"]
    assert results[2]["transaction"]["id"] == results[1]["transaction"]["id"]
    assert api.balances() == {"acme/cash": 700, "acme/wallet": -700}


def test_atomic_batch_posts_nothing_when_one_item_is_rejected(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    api.post(acme, "dep-0", (cash, "10.00"), (wallet, "-10.00"))
    before, log_before = api.balances(), head(api)
    response = post_batch(api, acme, [
        item("pay-1", (wallet, "6.00"), (cash, "-6.00")),
        item("pay-2", (wallet, "6.00"), (cash, "-6.00")),   # crosses the floor only after pay-1
        item("pay-3", (wallet, "1.00"), (cash, "-1.00")),
    ], atomic=True)
    body = assert_problem(response, 422, "atomic_batch_rejected")
    assert body["failed_index"] == 1 and body["atomic"] is True
    assert statuses(body) == [("rejected", "linked_transfer_failed"), ("rejected", "insufficient_funds"),
                              ("rejected", "linked_transfer_failed")]
    assert body["results"][0]["problem"]["failed_index"] == 1
    assert (body["created"], body["rejected"]) == (0, 3)
    assert api.balances() == before and head(api) == log_before
    assert api.balance(acme, wallet) == "10.00"


def test_atomic_batch_posts_everything_when_nothing_is_rejected(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    response = post_batch(api, acme, [item("dep-1", (cash, "3.00"), (wallet, "-3.00")),
                                      item("pay-1", (wallet, "3.00"), (cash, "-3.00"))], atomic=True)
    assert response.status_code == 200, response.text
    assert statuses(response.json()) == [("created", None), ("created", None)]
    assert api.balance(acme, wallet) == "0.00"


def test_batch_bounds_are_422_and_change_nothing(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    before = api.balances()
    many = [item(f"t-{n}", (cash, "0.01"), (wallet, "-0.01")) for n in range(1001)]
    body = assert_problem(post_batch(api, acme, many), 422, "batch_too_large")
    assert body["limit"] == 1000
    assert_problem(post_batch(api, acme, []), 422, "batch_empty")
    assert api.balances() == before
    full = post_batch(api, acme, many[:1000])
    assert full.status_code == 200, full.text
    assert full.json()["created"] == 1000
    assert api.balances() == {"acme/cash": 1000, "acme/wallet": -1000}


def test_one_idempotency_key_covers_the_whole_batch(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    items = [item("dep-1", (cash, "1.00"), (wallet, "-1.00")), item("bad", (cash, "1.00"), (wallet, "-2.00"))]
    first = post_batch(api, acme, items, key="batch-1")
    assert first.status_code == 200, first.text
    after = api.balances()
    again = post_batch(api, acme, items, key="batch-1")
    assert again.status_code == 200 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    other = post_batch(api, acme, items[:1], key="batch-1")
    assert_problem(other, 422, "idempotency_key_reused")
    assert api.balances() == after == {"acme/cash": 100, "acme/wallet": -100}


def test_a_keyed_atomic_rejection_is_stored_and_replayed(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    items = [item("dep-1", (cash, "1.00"), (wallet, "-1.00")), item("pay-1", (wallet, "5.00"), (cash, "-5.00"))]
    first = post_batch(api, acme, items, atomic=True, key="atomic-1")
    assert_problem(first, 422, "atomic_batch_rejected")
    again = post_batch(api, acme, items, atomic=True, key="atomic-1")
    assert again.status_code == 422 and again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert api.balances() == {"acme/cash": 0, "acme/wallet": 0}


def test_writing_a_batch_needs_the_write_scope(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    reader = Tenant(acme.name, acme.id, api.key(acme.id, ("read",)))
    assert_problem(post_batch(api, reader, [item("dep-1", (cash, "1.00"), (wallet, "-1.00"))]), 403,
                   "insufficient_scope")
    assert api.balances() == {"acme/cash": 0, "acme/wallet": 0}


def test_each_created_item_carries_its_resulting_balances(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    body = post_batch(api, acme, [item("dep-1", (cash, "10.00"), (wallet, "-10.00")),
                                  item("hold-1", (wallet, "4.00"), (cash, "-4.00"), status="pending")]).json()
    first, second = (r["transaction"]["balances"] for r in body["results"])
    assert {b["account_id"]: (b["balance"], b["available_balance"]) for b in first} \
        == {cash: ("10.00", "10.00"), wallet: ("10.00", "10.00")}
    assert {b["account_id"]: (b["balance"], b["raw_balance"], b["available_balance"]) for b in second} \
        == {cash: ("10.00", "10.00", "6.00"), wallet: ("10.00", "-10.00", "6.00")}
    api.catch_up()
    for balance in second:
        read = api.client.get(f"/v1/accounts/{balance['account_id']}/balance", headers=acme.headers).json()
        assert (read["balance"], read["raw_balance"], read["available"]) \
            == (balance["balance"], balance["raw_balance"], balance["available_balance"])


def test_the_batch_is_in_the_openapi_schema_with_examples(api: Api) -> None:
    schema = api.client.get("/openapi.json").json()
    operation = schema["paths"][PATH]["post"]
    assert {"200", "422"} <= set(operation["responses"])
    components = schema["components"]["schemas"]
    assert components["PostTransactionBatch"]["examples"] and components["TransactionBatchOut"]["examples"]


def test_a_suspended_tenant_s_batch_is_refused_whole(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    api.runtime.ledger.suspend_tenant(acme.id, reason="unpaid invoice")
    assert_problem(post_batch(api, acme, [item("dep-1", (cash, "1.00"), (wallet, "-1.00"))]), 403,
                   "tenant_suspended")
    assert api.balances() == {"acme/cash": 0, "acme/wallet": 0}
