"""The issue's "Done when": a new user's first session, through HTTP only (README, Quick start with curl)."""

from __future__ import annotations

from interfaces.bootstrap import open_access
from tests.e2e.http_fixtures import Api, Tenant, acme, api, assert_problem, globex  # noqa: F401


def test_the_quick_start_works_and_every_refusal_changes_nothing(api: Api, acme: Tenant, globex: Tenant) -> None:
    cash = api.open_account(acme, "cash", type="asset")
    wallet = api.open_account(acme, "wallet:42", type="liability", balance_floor="0.00")

    posted = api.post(acme, "deposit-1", (cash, "10.00"), (wallet, "-10.00"), headers={"Idempotency-Key": "dep-1"})
    assert posted.status_code == 201, posted.text
    assert posted.headers["Invario-Position"] == str(posted.json()["position"])
    assert (api.balance(acme, cash), api.balance(acme, wallet)) == ("10.00", "10.00")
    before = api.balances()

    unbalanced = api.post(acme, "deposit-2", (cash, "10.00"), (wallet, "-9.99"))
    assert_problem(unbalanced, 422, "transaction_unbalanced")["imbalance"] == {"BRL": "0.01"}

    foreign = api.client.get(f"/v1/accounts/{cash}/balance", headers=globex.headers)
    assert_problem(foreign, 404, "account_not_found")
    foreign_post = api.post(globex, "steal", (cash, "-10.00"), (wallet, "10.00"))
    assert_problem(foreign_post, 404, "account_not_found")

    doomed = api.key(acme.id)
    open_access(api.runtime).revoke_keys(acme.id)
    revoked = api.client.get(f"/v1/accounts/{cash}/balance", headers={"Authorization": f"Bearer {doomed}"})
    assert_problem(revoked, 401, "api_key_revoked")
    acme = Tenant(acme.name, acme.id, api.key(acme.id))

    reused = api.post(acme, "deposit-3", (cash, "20.00"), (wallet, "-20.00"), headers={"Idempotency-Key": "dep-1"})
    assert_problem(reused, 422, "idempotency_key_reused")

    precise = api.post(acme, "deposit-4", (cash, "0.001"), (wallet, "-0.001"))
    assert_problem(precise, 422, "amount_precision_exceeded")

    assert api.balances() == before
    assert (api.balance(acme, cash), api.balance(acme, wallet)) == ("10.00", "10.00")
