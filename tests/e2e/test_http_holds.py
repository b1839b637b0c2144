"""Holds over HTTP on both stores: place a hold, watch available drop while posted stays,
capture part of it, see the rest released, and fail to capture it again."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem  # noqa: F401


def _state(api: Api) -> dict[str, tuple[int, int, int]]:
    """Posted, pending debits and pending credits of every account on the write side."""
    found = {}
    for name, account_id in api.accounts.items():
        account = api.runtime.ledger.repository.get(UUID(account_id))
        found[name] = (account.balance_minor, account.pending_debits_minor, account.pending_credits_minor)
    return found


def _balance(api: Api, acme: Tenant, account_id: str) -> dict[str, Any]:
    api.catch_up()
    response = api.client.get(f"/v1/accounts/{account_id}/balance", headers=acme.headers)
    assert response.status_code == 200, response.text
    return response.json()


def _books(api: Api, acme: Tenant) -> tuple[str, str]:
    cash = api.open_account(acme, "cash")
    wallet = api.open_account(acme, "wallet:42", type="liability", balance_floor="0.00")
    assert api.post(acme, "deposit", (cash, "10.00"), (wallet, "-10.00")).status_code == 201
    return cash, wallet


def test_hold_capture_part_release_the_rest(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    merchant = api.open_account(acme, "merchant", type="liability")
    placed = api.post(acme, "auth-1", (wallet, "6.00"), (merchant, "-6.00"), status="pending",
                      expires_at=(datetime.now(timezone.utc) + timedelta(days=7)).isoformat())
    assert placed.status_code == 201, placed.text
    hold = placed.json()
    assert hold["status"] == "pending" and hold["expires_at"] is not None and hold["version"] == 1
    balance = _balance(api, acme, wallet)
    assert (balance["posted"], balance["pending"], balance["available"]) == ("10.00", "-6.00", "4.00")
    assert balance["balance"] == "10.00"

    before = _state(api)
    assert_problem(api.post(acme, "auth-2", (wallet, "5.00"), (merchant, "-5.00"), status="pending"),
                   422, "insufficient_funds")
    assert _state(api) == before

    captured = api.client.post(f"/v1/transactions/{hold['id']}/post", headers=acme.headers, json={"postings": [
        {"account_id": wallet, "amount": "4.00"}, {"account_id": merchant, "amount": "-4.00"}]})
    assert captured.status_code == 200, captured.text
    assert captured.json()["status"] == "posted" and captured.json()["version"] == 2
    assert [p["amount"] for p in captured.json()["held_postings"]] == ["6.00", "-6.00"]
    balance = _balance(api, acme, wallet)
    assert (balance["posted"], balance["pending"], balance["available"]) == ("6.00", "0.00", "6.00")

    before = _state(api)
    assert_problem(api.client.post(f"/v1/transactions/{hold['id']}/post", headers=acme.headers),
                   409, "hold_already_resolved")
    assert_problem(api.client.post(f"/v1/transactions/{hold['id']}/void", headers=acme.headers),
                   409, "hold_already_resolved")
    assert _state(api) == before

    read = api.client.get(f"/v1/transactions/{hold['id']}", headers=acme.headers).json()
    assert (read["status"], read["version"]) == ("posted", 2)
    holds = api.client.get(f"/v1/accounts/{wallet}/holds", headers=acme.headers).json()["items"]
    assert [(h["status"], h["amount"], h["captured"]) for h in holds] == [("posted", "6.00", "4.00")]
    entries = api.client.get(f"/v1/accounts/{wallet}/entries", headers=acme.headers).json()["items"]
    assert [e["amount"] for e in entries] == ["-10.00", "4.00"]


def test_void_and_rules_of_the_request(api: Api, acme: Tenant) -> None:
    cash, wallet = _books(api, acme)
    placed = api.post(acme, "auth-1", (wallet, "3.00"), (cash, "-3.00"), status="pending").json()
    voided = api.client.post(f"/v1/transactions/{placed['id']}/void", headers=acme.headers)
    assert voided.status_code == 200 and voided.json()["status"] == "voided"
    assert _balance(api, acme, wallet)["available"] == "10.00"
    before = _state(api)
    assert_problem(api.client.post(f"/v1/transactions/{placed['id']}/void", headers=acme.headers),
                   409, "hold_already_resolved")
    assert_problem(api.client.post(f"/v1/transactions/{placed['id']}/reverse", headers=acme.headers),
                   409, "transaction_not_posted")
    assert_problem(api.post(acme, "x", (wallet, "1.00"), (cash, "-1.00"),
                            expires_at=(datetime.now(timezone.utc) + timedelta(days=1)).isoformat()),
                   422, "invalid_transaction")
    assert_problem(api.post(acme, "y", (wallet, "1.00"), (cash, "-1.00"), status="pending",
                            expires_at=(datetime.now(timezone.utc) - timedelta(days=1)).isoformat()),
                   422, "invalid_transaction")
    assert _state(api) == before
