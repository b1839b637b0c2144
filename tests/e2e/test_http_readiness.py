"""``/health/ready`` is not ready while a projection is stuck on an event it cannot apply."""

from __future__ import annotations

from sqlalchemy import update

from projections.following.follower import projection_tracking
from projections.following.registry import TRANSACTIONS
from tests.e2e.http_fixtures import Api, Tenant, acme, api  # noqa: F401 - fixtures

STUCK = ("ProjectionFailed: projection transactions cannot apply the event at position 3 "
         "(Transaction.Posted of 0000): ValueError: boom")


def set_error(api: Api, message: str | None) -> None:  # noqa: F811
    with api.runtime.engine.begin() as connection:
        connection.execute(update(projection_tracking).where(projection_tracking.c.name == TRANSACTIONS)
                           .values(last_error=message))


def test_ready_turns_503_while_a_projection_fails_and_back_once_it_applies(api: Api, acme: Tenant) -> None:  # noqa: F811
    cash, wallet = api.open_account(acme, "cash"), api.open_account(acme, "wallet", type="liability")
    api.catch_up()
    assert api.client.get("/health/ready").status_code == 200
    assert api.post(acme, "t-1", (cash, "1.00"), (wallet, "-1.00")).status_code == 201
    set_error(api, STUCK)  # the follower met an event it cannot apply, and the log grew past it

    response = api.client.get("/health/ready")
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    body = response.json()
    assert body["status"] == "not_ready" and body["failing_projections"] == [TRANSACTIONS]
    assert any("projection transactions is failing" in reason and "position 3" in reason for reason in body["reasons"])

    api.catch_up()  # a release that can apply it: the next applied batch clears the error
    body = api.client.get("/health/ready").json()
    assert body["status"] == "ready" and body["failing_projections"] == []


def test_an_error_left_by_an_outage_does_not_hold_readiness_once_caught_up(api: Api, acme: Tenant) -> None:  # noqa: F811
    api.open_account(acme, "cash")
    api.catch_up()
    set_error(api, "OperationalError: the database went away")  # recorded, then the database came back
    assert api.client.get("/health/ready").status_code == 200
