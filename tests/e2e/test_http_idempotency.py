"""Idempotency-Key on both stores: replay, other body 422, in flight 409, failures and expiry."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from sqlalchemy import update

from application import group_commit
from domain.ids import account_id_for
from infrastructure.idempotency import idempotency_keys
from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, make_api  # noqa: F401


@pytest.fixture
def books(api: Api, acme: Tenant) -> tuple[str, str]:
    return api.open_account(acme, "cash"), api.open_account(acme, "wallet", type="liability")


def _post(api: Api, acme: Tenant, legs: tuple[tuple[str, str], ...], key: str, external_id: str = "t1") -> Any:
    return api.post(acme, external_id, *legs, headers={"Idempotency-Key": key})


def test_same_key_same_body_replays_the_stored_response(api: Api, acme: Tenant, books: tuple[str, str]) -> None:
    cash, wallet = books
    legs = ((cash, "5.00"), (wallet, "-5.00"))
    first = _post(api, acme, legs, "k-1")
    again = _post(api, acme, legs, "k-1")
    assert first.status_code == again.status_code == 201
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"
    assert again.headers["ETag"] == first.headers["ETag"] and again.headers["Location"] == first.headers["Location"]
    assert api.balance(acme, cash) == "5.00"


def test_a_stored_rejection_is_replayed_too(api: Api, acme: Tenant, books: tuple[str, str]) -> None:
    cash, wallet = books
    legs = ((cash, "5.00"), (wallet, "-4.00"))
    first = _post(api, acme, legs, "k-2")
    again = _post(api, acme, legs, "k-2")
    assert_problem(again, 422, "transaction_unbalanced")
    assert again.json() == first.json() and again.headers["Idempotent-Replayed"] == "true"


def test_same_key_other_body_is_422_and_changes_nothing(api: Api, acme: Tenant, books: tuple[str, str]) -> None:
    cash, wallet = books
    assert _post(api, acme, ((cash, "5.00"), (wallet, "-5.00")), "k-3").status_code == 201
    before = api.balances()
    assert_problem(_post(api, acme, ((cash, "6.00"), (wallet, "-6.00")), "k-3", "t2"), 422, "idempotency_key_reused")
    other_route = api.client.post(f"/v1/accounts/{cash}/freeze", headers={**acme.headers, "Idempotency-Key": "k-3"})
    assert_problem(other_route, 422, "idempotency_key_reused")
    assert api.balances() == before


def test_same_key_while_the_first_is_in_flight_is_409(
    api: Api, acme: Tenant, books: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cash, wallet = books
    legs = ((cash, "5.00"), (wallet, "-5.00"))
    ledger = api.runtime.ledger
    seen: list[Any] = []
    # Where the first request waits: in the group-commit writer's batch when there is
    # one (the route queues it from the event loop, which must not be held up here),
    # else in the use case.
    owner, name = (group_commit.Batch, "run") if ledger.writes_in_batches else (ledger, "post_transaction")
    original = getattr(owner, name)

    def slow(*args: Any, **kwargs: Any) -> Any:
        if not seen:  # while the first request is inside the ledger, the client retries
            seen.append(_post(api, acme, legs, "k-4"))
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, slow)
    first = _post(api, acme, legs, "k-4")
    assert first.status_code == 201
    assert_problem(seen[0], 409, "idempotency_key_in_flight")
    assert seen[0].headers["Retry-After"] == "1"
    assert api.balance(acme, cash) == "5.00"


def test_an_unexpected_failure_releases_the_key(
    api: Api, acme: Tenant, books: tuple[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    cash, wallet = books
    legs = ((cash, "5.00"), (wallet, "-5.00"))
    ledger = api.runtime.ledger
    original = ledger.post_transaction

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("the disk is on fire: inv_live_secret")

    monkeypatch.setattr(ledger, "post_transaction", broken)
    failed = _post(api, acme, legs, "k-5")
    body = assert_problem(failed, 500, "internal_error")
    assert "fire" not in failed.text and "inv_live" not in failed.text and body["request_id"]
    monkeypatch.setattr(ledger, "post_transaction", original)
    assert _post(api, acme, legs, "k-5").status_code == 201


def test_expired_and_abandoned_keys_can_be_used_again(api: Api, acme: Tenant, books: tuple[str, str]) -> None:
    cash, wallet = books
    assert _post(api, acme, ((cash, "5.00"), (wallet, "-5.00")), "k-6").status_code == 201
    past = datetime.now(timezone.utc) - timedelta(hours=25)
    with api.runtime.engine.begin() as connection:
        row = connection.execute(idempotency_keys.select().where(idempotency_keys.c.key == "k-6")).one()
        assert row.expires_at.replace(tzinfo=timezone.utc) - row.created_at.replace(tzinfo=timezone.utc) \
            >= timedelta(hours=24)
        connection.execute(update(idempotency_keys).where(idempotency_keys.c.key == "k-6").values(expires_at=past))
    assert _post(api, acme, ((cash, "6.00"), (wallet, "-6.00")), "k-6", "t2").status_code == 201
    assert api.balance(acme, cash) == "11.00"

    assert api.client.app.state.services.idempotency.purge_expired() >= 0


def test_a_key_left_in_flight_by_an_older_version_waits_for_its_lease(
    api: Api, acme: Tenant, books: tuple[str, str]
) -> None:
    cash, wallet = books
    legs = ((cash, "5.00"), (wallet, "-5.00"))
    now = datetime.now(timezone.utc)
    with api.runtime.engine.begin() as connection:  # as a claim of a process that died mid-request
        connection.execute(idempotency_keys.insert().values(
            scope=str(acme.id), key="k-7", fingerprint="f" * 64, state="in_flight", locked_at=now,
            created_at=now, expires_at=now + timedelta(hours=24)))
    assert_problem(_post(api, acme, legs, "k-7"), 409, "idempotency_key_in_flight")
    with api.runtime.engine.begin() as connection:
        connection.execute(update(idempotency_keys).where(idempotency_keys.c.key == "k-7")
                           .values(locked_at=now - timedelta(hours=1)))
    taken_over = _post(api, acme, legs, "k-7")
    assert taken_over.status_code == 201 and "Idempotent-Replayed" not in taken_over.headers
    again = _post(api, acme, legs, "k-7")
    assert again.headers["Idempotent-Replayed"] == "true" and again.json() == taken_over.json()
    assert api.balance(acme, cash) == "5.00"


def test_without_group_commit_the_key_is_written_by_the_command_s_own_save(database_url: str) -> None:
    for ungrouped in make_api(database_url, write_batch_size_max=1):
        tenant = ungrouped.tenant("acme")
        cash, wallet = ungrouped.open_account(tenant, "cash"), ungrouped.open_account(tenant, "wallet")
        legs = ((cash, "5.00"), (wallet, "-5.00"))
        first = _post(ungrouped, tenant, legs, "u-1")
        again = _post(ungrouped, tenant, legs, "u-1")
        assert first.status_code == again.status_code == 201 and again.json() == first.json()
        assert again.headers["Idempotent-Replayed"] == "true"
        assert_problem(_post(ungrouped, tenant, legs, "u-1", "t2"), 422, "idempotency_key_reused")
        with ungrouped.runtime.engine.connect() as connection:
            row = connection.execute(idempotency_keys.select().where(idempotency_keys.c.key == "u-1")).one()
        assert row.state == "done" and row.response_body == first.content
        assert ungrouped.balance(tenant, cash) == "5.00"


def test_a_taken_key_on_a_command_that_saves_on_its_own_is_422(api: Api, acme: Tenant,
                                                               books: tuple[str, str]) -> None:
    cash, wallet = books
    assert _post(api, acme, ((cash, "5.00"), (wallet, "-5.00")), "k-8").status_code == 201
    opened = api.client.post("/v1/accounts", headers={**acme.headers, "Idempotency-Key": "k-8"},
                             json={"code": "other", "name": "Other", "currency": "BRL", "type": "asset"})
    assert_problem(opened, 422, "idempotency_key_reused")
    assert "acme/other" not in api.accounts and api.runtime.ledger.store.get(  # nothing was saved
        account_id_for(acme.id, "other")) is None
