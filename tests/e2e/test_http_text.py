"""Text the ledger refuses is a 422 ``invalid_text`` on every route, never a 500, on both stores;
text it accepts reads back unchanged from the read models (docs/input-rules.md)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.e2e.http_fixtures import ADMIN, DAY, Api, Tenant, acme, api, assert_problem  # noqa: F401
from tests.integration.test_projections_text import STORED, write_legacy_log

NUL, SURROGATE = "\x00", "\ud800"


def _send(api: Api, path: str, body: dict[str, Any], headers: dict[str, str], *, raw_surrogate: bool = False) -> Any:
    """POST ``body`` as JSON; with ``raw_surrogate`` its escapes become raw (ill-formed) UTF-8 bytes."""
    content = json.dumps(body).encode()
    if raw_surrogate:
        content = content.replace(b"\\ud800", "\ud800".encode("utf-8", "surrogatepass"))
    return api.client.post(path, content=content, headers={**headers, "Content-Type": "application/json"})


@pytest.fixture
def shop(api: Api, acme: Tenant) -> tuple[Api, Tenant, str, str]:
    cash = api.open_account(acme, "cash")
    sales = api.open_account(acme, "sales", type="income")
    return api, acme, cash, sales


@pytest.mark.parametrize("bad", [NUL, SURROGATE, "\x1b", "\ufffe"])
def test_every_command_refuses_bad_text_with_422(shop: tuple[Api, Tenant, str, str], bad: str) -> None:
    api, acme, cash, sales = shop
    legs = [{"account_id": cash, "amount": "1.00"}, {"account_id": sales, "amount": "-1.00"}]
    assert api.post(acme, "seed", (cash, "1.00"), (sales, "-1.00")).status_code == 201
    tenant_path = f"/admin/tenants/{acme.id}"
    transaction = {"external_id": "t1", "effective_date": DAY, "postings": legs}
    cases = [
        ("/v1/accounts", {"code": "x1", "name": f"X{bad}", "currency": "BRL", "type": "asset"}, acme.headers),
        ("/v1/accounts", {"code": "x1", "name": "X", "currency": "BRL", "type": "asset", "metadata": {"k": bad}},
         acme.headers),
        ("/v1/transactions", {**transaction, "description": bad}, acme.headers),
        ("/v1/transactions", {**transaction, "metadata": {bad: "v"}}, acme.headers),
        ("/v1/transactions", {**transaction, "description": bad, "status": "pending"}, acme.headers),
        ("/v1/recurring-transactions", {"frequency": "daily", "start_date": DAY, "postings": legs,
                                        "description": bad}, acme.headers),
        (f"{tenant_path}/suspend", {"reason": bad}, ADMIN),
    ]
    cases.append((f"/v1/transactions/{_id_of(api, acme, 'seed')}/reverse", {"description": bad}, acme.headers))
    before = api.balances()
    for raw in (False, True):
        for path, body, headers in cases:
            _assert_refused(_send(api, path, body, headers, raw_surrogate=raw), bad)
    assert api.balances() == before
    assert api.client.get(tenant_path, headers=ADMIN).json()["status"] == "active"


def _assert_refused(response: Any, bad: str) -> None:
    """422 invalid_text, whether the request's validation caught it (a lone surrogate in a
    string field is not a Unicode string at all) or the ledger's text rule did."""
    problem = assert_problem(response, 422, "invalid_text")
    if "errors" in problem:
        assert bad == SURROGATE and [error["type"] for error in problem["errors"]] == ["string_unicode"]
    else:
        assert problem["character"] == f"U+{ord(bad):04X}" and problem["field"]


def _id_of(api: Api, tenant: Tenant, external_id: str) -> str:
    api.catch_up()
    items = api.client.get("/v1/transactions", headers=tenant.headers).json()["items"]
    return next(item["id"] for item in items if item["external_id"] == external_id)


def test_identifiers_with_bad_text_are_rejected_by_their_syntax(shop: tuple[Api, Tenant, str, str]) -> None:
    api, acme, cash, sales = shop
    before = api.balances()
    for bad in (NUL, "\n", "\ufffe", SURROGATE):
        # A lone surrogate never reaches the syntax check: the request's validation refuses it.
        tenant, account, transaction = ("invalid_text",) * 3 if bad == SURROGATE else (
            "invalid_tenant", "invalid_account", "invalid_transaction")
        assert_problem(_send(api, "/admin/tenants", {"name": f"acme{bad}"}, ADMIN), 422, tenant)
        assert_problem(_send(api, "/v1/accounts", {"code": f"x{bad}", "name": "X", "currency": "BRL",
                                                   "type": "asset"}, acme.headers), 422, account)
        legs = [{"account_id": cash, "amount": "1.00"}, {"account_id": sales, "amount": "-1.00"}]
        body = {"external_id": f"t{bad}", "effective_date": DAY, "postings": legs}
        assert_problem(_send(api, "/v1/transactions", body, acme.headers), 422, transaction)
    assert api.balances() == before


def test_accepted_text_reads_back_unchanged(shop: tuple[Api, Tenant, str, str]) -> None:
    api, acme, cash, sales = shop
    description, metadata = "line 1\nline 2\ttab\r\u202e\U0001f600\ufffd", {"k\u200b": "v\nw", "\ue000": "x"}
    created = api.post(acme, "t1", (cash, "1.00"), (sales, "-1.00"), description=description, metadata=metadata)
    assert created.status_code == 201, created.text
    api.catch_up()
    [read] = api.client.get("/v1/transactions", headers=acme.headers).json()["items"]
    assert (read["description"], read["metadata"]) == (description, metadata)
    [entry] = api.client.get(f"/v1/accounts/{cash}/entries", headers=acme.headers).json()["items"]
    assert entry["description"] == description


def test_a_tampered_cursor_with_bad_text_is_400_not_500(shop: tuple[Api, Tenant, str, str]) -> None:
    api, acme, _cash, _sales = shop
    for bad in (NUL, SURROGATE):
        raw = json.dumps(["a", f"cash{bad}"]).encode()
        cursor = base64.urlsafe_b64encode(raw).rstrip(b"=").decode()
        response = api.client.get("/v1/accounts", headers=acme.headers, params={"cursor": cursor})
        assert_problem(response, 400, "invalid_cursor")


def test_text_an_earlier_version_stored_reads_back_with_the_replacement(api: Api,
                                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    log = write_legacy_log(api.runtime.ledger, monkeypatch)
    api.catch_up()
    headers = {"Authorization": f"Bearer {api.key(log.tenant_id)}"}
    account = api.client.get(f"/v1/accounts/{log.account_id}", headers=headers)
    assert account.status_code == 200, account.text
    assert (account.json()["name"], account.json()["metadata"]) == (f"Odd {STORED}", {f"k{STORED}": f"v{STORED}"})
    entries = api.client.get(f"/v1/accounts/{log.account_id}/entries", headers=headers).json()["items"]
    assert {entry["description"] for entry in entries} == {STORED}
    for transaction_id in (log.transaction_id, log.hold_id, log.reversal_id):
        read = api.client.get(f"/v1/transactions/{transaction_id}", headers=headers)
        assert read.status_code == 200 and read.json()["description"] == STORED
    recurring = api.client.get(f"/v1/recurring-transactions/{log.recurring_id}", headers=headers).json()
    assert (recurring["description"], recurring["metadata"]) == (STORED, {STORED: STORED})
    tenant = api.client.get(f"/admin/tenants/{log.other_id}", headers=ADMIN).json()
    assert tenant["suspension_reason"] == STORED
