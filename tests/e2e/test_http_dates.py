"""Dates a client sends: ISO calendar dates only, within the documented range (docs/input-rules.md)."""

from __future__ import annotations

import pytest

from tests.e2e.http_fixtures import Api, acme, assert_problem, sqlite_api  # noqa: F401 - fixtures

OUT_OF_FORM = ["0", "1733011200", "20261201", "2026-12-1", "2026-12-01T00:00:00Z", "01/12/2026"]
OUT_OF_RANGE = ["0001-01-01", "1899-12-31", "3000-01-01", "9999-12-31"]


@pytest.fixture
def books(sqlite_api: Api) -> tuple[Api, object, str, str]:
    tenant = sqlite_api.tenant("acme")
    return sqlite_api, tenant, sqlite_api.open_account(tenant, "cash"), sqlite_api.open_account(tenant, "bank")


@pytest.mark.parametrize("when", OUT_OF_FORM + OUT_OF_RANGE)
def test_an_effective_date_out_of_form_or_range_is_refused(books: tuple, when: str) -> None:
    api, tenant, cash, bank = books
    before = api.balances()

    answer = api.post(tenant, "t1", (cash, "1.00"), (bank, "-1.00"), effective_date=when)

    assert_problem(answer, 400, "invalid_request")
    assert api.balances() == before


@pytest.mark.parametrize("when", ["0", "1733011200", "0001-01-01", "9999-12-31"])
def test_a_query_date_out_of_form_or_range_is_refused(books: tuple, when: str) -> None:
    api, tenant, cash, _bank = books
    for path in (f"/v1/accounts/{cash}/balance?as_of={when}", f"/v1/transactions?date_from={when}",
                 f"/v1/accounts/{cash}/entries?date_to={when}"):
        assert_problem(api.client.get(path, headers=tenant.headers), 400, "invalid_request")


def test_the_range_ends_are_accepted(books: tuple) -> None:
    api, tenant, cash, bank = books
    for n, when in enumerate(("1900-01-01", "2999-12-31")):
        answer = api.post(tenant, f"edge-{n}", (cash, "1.00"), (bank, "-1.00"), effective_date=when)
        assert answer.status_code == 201, answer.text


def test_a_reversal_cannot_be_dated_before_its_original(books: tuple) -> None:
    api, tenant, cash, bank = books
    original = api.post(tenant, "t1", (cash, "5.00"), (bank, "-5.00"), effective_date="2026-11-20").json()
    before = api.balances()

    early = api.client.post(f"/v1/transactions/{original['id']}/reverse", headers=tenant.headers,
                            json={"effective_date": "2026-11-19"})

    problem = assert_problem(early, 422, "invalid_transaction")
    assert "before the transaction it reverses (2026-11-20)" in problem["detail"]
    assert api.balances() == before
    same_day = api.client.post(f"/v1/transactions/{original['id']}/reverse", headers=tenant.headers,
                               json={"effective_date": "2026-11-20"})
    assert same_day.status_code == 201, same_day.text


def test_a_future_dated_entry_is_reversed_on_its_own_date_by_default(books: tuple) -> None:
    api, tenant, cash, bank = books
    original = api.post(tenant, "t1", (cash, "5.00"), (bank, "-5.00"), effective_date="2999-01-01").json()

    reversal = api.client.post(f"/v1/transactions/{original['id']}/reverse", headers=tenant.headers)

    assert reversal.status_code == 201, reversal.text
    assert reversal.json()["effective_date"] == "2999-01-01"
