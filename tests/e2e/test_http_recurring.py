"""/v1/recurring-transactions end to end, on SQLite and PostgreSQL; the worker's job posts the runs."""

from __future__ import annotations

from datetime import datetime, timezone

from interfaces.bootstrap import build_job_runner
from projections.jobs.scheduled_jobs import RECURRING
from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, globex  # noqa: F401 - fixtures

PATH = "/v1/recurring-transactions"


def schedule(api: Api, tenant: Tenant, **overrides: object) -> dict[str, object]:
    cash, rent = api.accounts[f"{tenant.name}/cash"], api.accounts[f"{tenant.name}/rent"]
    body: dict[str, object] = {
        "frequency": "monthly", "day_of_month": 31, "start_date": "2026-01-01", "description": "Rent",
        "postings": [{"account_id": rent, "amount": "1200.00"}, {"account_id": cash, "amount": "-1200.00"}],
    }
    body.update(overrides)
    return body


def open_book(api: Api, tenant: Tenant) -> None:
    api.runtime.ledger.clock = lambda: datetime(2026, 1, 15, tzinfo=timezone.utc)  # "today" at creation
    api.open_account(tenant, "cash")
    api.open_account(tenant, "rent", type="expense")


def test_create_list_read_and_cancel(api: Api, acme: Tenant, globex: Tenant) -> None:
    open_book(api, acme)
    created = api.client.post(PATH, json=schedule(api, acme), headers=acme.headers)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["status"] == "active" and body["day_of_month"] == 31 and body["postings"][0]["amount"] == "1200.00"
    assert created.headers["Location"] == f"{PATH}/{body['id']}"
    weekly = api.client.post(PATH, json=schedule(api, acme, frequency="weekly", weekday="friday", day_of_month=None),
                             headers=acme.headers)
    assert weekly.status_code == 201, weekly.text

    position = weekly.json()["position"]
    api.catch_up()  # what the worker (or 'invario serve') does in the background
    first = api.client.get(PATH, params={"limit": 1, "min_position": position}, headers=acme.headers)
    assert first.status_code == 200, first.text
    assert [item["id"] for item in first.json()["items"]] == [body["id"]]
    second = api.client.get(PATH, params={"limit": 1, "cursor": first.json()["next_cursor"]}, headers=acme.headers)
    assert [item["id"] for item in second.json()["items"]] == [weekly.json()["id"]]
    assert second.json()["next_cursor"] is None
    assert_problem(api.client.get(PATH, params={"cursor": "bogus"}, headers=acme.headers), 400, "invalid_cursor")

    assert api.client.get(f"{PATH}/{body['id']}", headers=acme.headers).json()["frequency"] == "monthly"
    assert_problem(api.client.get(f"{PATH}/{body['id']}", headers=globex.headers), 404,
                   "recurring_transaction_not_found")
    assert api.client.get(PATH, headers=globex.headers).json()["items"] == []

    assert_problem(api.client.delete(f"{PATH}/{body['id']}", headers=globex.headers), 404,
                   "recurring_transaction_not_found")
    cancelled = api.client.delete(f"{PATH}/{body['id']}", headers=acme.headers)
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    assert_problem(api.client.delete(f"{PATH}/{body['id']}", headers=acme.headers), 409,
                   "recurring_transaction_cancelled")
    api.catch_up()
    read = api.client.get(f"{PATH}/{body['id']}", params={"min_position": cancelled.json()["position"]},
                          headers=acme.headers)
    assert read.json()["status"] == "cancelled"


def test_the_worker_posts_the_runs_once(api: Api, acme: Tenant) -> None:
    open_book(api, acme)
    created = api.client.post(PATH, json=schedule(api, acme), headers=acme.headers)
    assert created.status_code == 201, created.text
    api.catch_up()
    runner = build_job_runner(api.runtime, lambda: datetime(2026, 4, 30, 12, tzinfo=timezone.utc))
    assert runner.run_now(RECURRING) == "succeeded"  # Jan 31, Feb 28, Mar 31, Apr 30
    assert runner.run_now(RECURRING) == "succeeded"  # again: nothing twice
    assert api.balance(acme, api.accounts["acme/rent"]) == "4800.00"
    listed = api.client.get("/v1/transactions", headers=acme.headers).json()["items"]
    assert sorted(t["effective_date"] for t in listed) == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]


def test_rejections_change_nothing(api: Api, acme: Tenant, globex: Tenant) -> None:
    open_book(api, acme)
    before = api.balances()
    cash = api.accounts["acme/cash"]
    cases = [
        (schedule(api, acme, postings=[{"account_id": cash, "amount": "1"},
                                       {"account_id": api.accounts["acme/rent"], "amount": "-2"}]),
         422, "transaction_unbalanced"),
        (schedule(api, acme, frequency="weekly"), 422, "invalid_recurring_transaction"),  # day_of_month, no weekday
        (schedule(api, acme, day_of_month=None), 422, "invalid_recurring_transaction"),
        (schedule(api, acme, day_of_month=32), 422, "invalid_recurring_transaction"),
        (schedule(api, acme, end_date="2025-12-31"), 422, "invalid_recurring_transaction"),
        (schedule(api, acme, start_date="1900-01-01"), 422, "invalid_recurring_transaction"),
        (schedule(api, acme, postings=[{"account_id": cash, "amount": "1"},
                                       {"account_id": "00000000-0000-0000-0000-000000000000", "amount": "-1"}]),
         404, "account_not_found"),
        (schedule(api, acme, postings=[{"account_id": cash, "amount": "1.001"},
                                       {"account_id": api.accounts["acme/rent"], "amount": "-1.001"}]),
         422, "amount_precision_exceeded"),
        (schedule(api, acme, frequency="hourly"), 400, "invalid_request"),
    ]
    for body, status, code in cases:
        assert_problem(api.client.post(PATH, json=body, headers=acme.headers), status, code)
    # Another tenant's accounts are not found either.
    assert_problem(api.client.post(PATH, json=schedule(api, acme), headers=globex.headers), 404, "account_not_found")
    api.catch_up()
    assert api.client.get(PATH, headers=acme.headers).json()["items"] == []
    build_job_runner(api.runtime, lambda: datetime(2026, 4, 30, tzinfo=timezone.utc)).run_now(RECURRING)
    assert api.balances() == before
