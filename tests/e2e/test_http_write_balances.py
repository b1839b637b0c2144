"""Every write answers with the balances of the accounts it touched, as that write
left them, formatted as GET /v1/accounts/{id}/balance formats them (both stores)."""

from __future__ import annotations

from typing import Any

from tests.e2e.http_fixtures import Api, Tenant, acme, api  # noqa: F401


def by_account(response: Any) -> dict[str, tuple[str, str, str, str]]:
    assert response.status_code in (200, 201), response.text
    return {b["account_id"]: (b["currency"], b["balance"], b["raw_balance"], b["available_balance"])
            for b in response.json()["balances"]}


def read_back(api: Api, tenant: Tenant, account_ids: list[str]) -> dict[str, tuple[str, str, str, str]]:
    api.catch_up()
    result = {}
    for account_id in account_ids:
        read = api.client.get(f"/v1/accounts/{account_id}/balance", headers=tenant.headers).json()
        result[account_id] = (read["currency"], read["balance"], read["raw_balance"], read["available"])
    return result


def test_a_posted_transaction_answers_what_the_balance_read_model_then_shows(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability", balance_floor="0.00")
    api.post(acme, "dep-0", (cash, "20.00"), (wallet, "-20.00"))
    posted = api.post(acme, "pay-1", (wallet, "7.50"), (cash, "-7.50"))
    assert by_account(posted) == {cash: ("BRL", "12.50", "12.50", "12.50"), wallet: ("BRL", "12.50", "-12.50", "12.50")}
    assert by_account(posted) == read_back(api, acme, [cash, wallet])


def test_holds_and_their_capture_void_and_reversal_answer_their_balances(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability", balance_floor="0.00")
    api.post(acme, "dep-0", (cash, "20.00"), (wallet, "-20.00"))
    held = api.post(acme, "hold-1", (wallet, "5.00"), (cash, "-5.00"), status="pending")
    assert by_account(held)[wallet] == ("BRL", "20.00", "-20.00", "15.00")
    assert by_account(held) == read_back(api, acme, [cash, wallet])
    hold_id = held.json()["id"]
    captured = api.client.post(f"/v1/transactions/{hold_id}/post", headers=acme.headers, json={"postings": [
        {"account_id": wallet, "amount": "3.00"}, {"account_id": cash, "amount": "-3.00"}]})
    assert by_account(captured)[wallet] == ("BRL", "17.00", "-17.00", "17.00")
    assert by_account(captured) == read_back(api, acme, [cash, wallet])
    second = api.post(acme, "hold-2", (wallet, "2.00"), (cash, "-2.00"), status="pending").json()["id"]
    voided = api.client.post(f"/v1/transactions/{second}/void", headers=acme.headers)
    assert by_account(voided)[wallet] == ("BRL", "17.00", "-17.00", "17.00")
    assert by_account(voided) == read_back(api, acme, [cash, wallet])
    reversed_ = api.client.post(f"/v1/transactions/{hold_id}/reverse", headers=acme.headers)
    assert by_account(reversed_)[wallet] == ("BRL", "20.00", "-20.00", "20.00")
    assert by_account(reversed_) == read_back(api, acme, [cash, wallet])


def test_replays_by_key_keep_the_original_balances_by_external_id_show_the_current(api: Api, acme: Tenant) -> None:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet", type="liability")
    first = api.post(acme, "dep-1", (cash, "1.00"), (wallet, "-1.00"), headers={"Idempotency-Key": "k-1"})
    api.post(acme, "dep-2", (cash, "2.00"), (wallet, "-2.00"))
    keyed = api.post(acme, "dep-1", (cash, "1.00"), (wallet, "-1.00"), headers={"Idempotency-Key": "k-1"})
    assert keyed.headers["Idempotent-Replayed"] == "true" and keyed.json() == first.json()
    assert by_account(keyed)[cash] == ("BRL", "1.00", "1.00", "1.00")
    unkeyed = api.post(acme, "dep-1", (cash, "1.00"), (wallet, "-1.00"))
    assert unkeyed.status_code == 200
    assert by_account(unkeyed)[cash] == ("BRL", "3.00", "3.00", "3.00")  # as of the replay: documented
