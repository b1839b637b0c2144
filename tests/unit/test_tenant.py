"""Tenants: naming, uniqueness, suspension (writes stop, reads go on) and resumption."""

from __future__ import annotations

from uuid import uuid4

import pytest

from domain.errors import (
    InvalidTenant,
    TenantAlreadyExists,
    TenantNotFound,
    TenantAlreadySuspended,
    TenantNotSuspended,
    TenantSuspended,
    VersionMismatch,
)
from domain.ids import tenant_id_for
from domain.tenant import REASON_LENGTH_MAX, Tenant, TenantStatus
from tests.unit.books import Books, leg


@pytest.fixture
def funded(books: Books) -> Books:
    """acme with cash (asset) and wallet (liability), one transaction t1 of 10.00."""
    cash, wallet = books.open("cash"), books.open("wallet", type="liability")
    books.post("t1", leg(cash, "10.00"), leg(wallet, "-10.00"))
    return books


@pytest.fixture
def suspended(funded: Books) -> Books:
    funded.ledger.suspend_tenant(funded.tenant_id, "unpaid invoice")
    return funded


# --- creation -----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["ab", "acme", "a-b_c", "0day", "x" * 63])
def test_valid_tenant_name_is_accepted(ledger, name: str) -> None:
    tenant = ledger.create_tenant(name).aggregate
    assert (tenant.id, tenant.name, tenant.status) == (tenant_id_for(name), name, TenantStatus.ACTIVE)
    assert ledger.get_tenant_by_name(name).id == tenant.id


@pytest.mark.parametrize("name", ["", "a", "Acme", "-acme", "_acme", "ac me", "acmé", "x" * 64, None, 42])
def test_invalid_tenant_name_is_rejected(ledger, name: object) -> None:
    with pytest.raises(InvalidTenant) as info:
        ledger.create_tenant(name)
    assert info.value.code == "invalid_tenant"


def test_tenant_name_with_trailing_newline_is_rejected(ledger) -> None:
    with pytest.raises(InvalidTenant):
        ledger.create_tenant("acme\n")


def test_existing_tenant_name_is_rejected(ledger) -> None:
    ledger.create_tenant("acme")
    with pytest.raises(TenantAlreadyExists) as info:
        ledger.create_tenant("acme")
    assert info.value.code == "tenant_already_exists"


def test_tenant_created_concurrently_is_rejected_by_the_store(ledger, monkeypatch) -> None:
    # The losing writer did not see the tenant yet: the store's version constraint decides.
    ledger.create_tenant("acme")
    monkeypatch.setattr(ledger.store, "get", lambda _id: None)
    with pytest.raises(TenantAlreadyExists) as info:
        ledger.create_tenant("acme")
    assert info.value.code == "tenant_already_exists"


def test_unknown_tenant_is_not_found(ledger) -> None:
    for lookup in (lambda: ledger.get_tenant(uuid4()), lambda: ledger.get_tenant_by_name("nobody")):
        with pytest.raises(TenantNotFound) as info:
            lookup()
        assert info.value.code == "tenant_not_found"


def test_writes_to_an_unknown_tenant_are_not_found(ledger) -> None:
    with pytest.raises(TenantNotFound):
        ledger.open_account(uuid4(), "cash", "Cash", "BRL", "asset")
    with pytest.raises(TenantNotFound):
        ledger.suspend_tenant(uuid4())


def test_an_account_id_is_not_a_tenant(funded: Books) -> None:
    with pytest.raises(TenantNotFound):
        funded.ledger.get_tenant(funded.ids["cash"])


# --- suspension ---------------------------------------------------------------------


def test_suspend_records_the_reason(suspended: Books) -> None:
    tenant = suspended.ledger.get_tenant(suspended.tenant_id)
    assert tenant.is_suspended and tenant.suspension_reason == "unpaid invoice"


def test_suspend_when_suspended_is_rejected(suspended: Books) -> None:
    with suspended.rejects(TenantAlreadySuspended, "tenant_already_suspended"):
        suspended.ledger.suspend_tenant(suspended.tenant_id)


def test_suspension_reason_too_long_is_rejected(funded: Books) -> None:
    with funded.rejects(InvalidTenant, "invalid_tenant"):
        funded.ledger.suspend_tenant(funded.tenant_id, "x" * (REASON_LENGTH_MAX + 1))
    assert not funded.ledger.get_tenant(funded.tenant_id).is_suspended


def test_suspended_tenant_cannot_open_accounts(suspended: Books) -> None:
    with suspended.rejects(TenantSuspended, "tenant_suspended"):
        suspended.open("fees", type="income")


def test_suspended_tenant_cannot_post(suspended: Books) -> None:
    with suspended.rejects(TenantSuspended, "tenant_suspended", external_id="t2"):
        suspended.post("t2", leg(suspended.ids["cash"], "1.00"), leg(suspended.ids["wallet"], "-1.00"))


def test_suspended_tenant_cannot_replay_a_post(suspended: Books) -> None:
    with suspended.rejects(TenantSuspended, "tenant_suspended"):
        suspended.post("t1", leg(suspended.ids["cash"], "10.00"), leg(suspended.ids["wallet"], "-10.00"))


def test_suspended_tenant_cannot_reverse(suspended: Books) -> None:
    with suspended.rejects(TenantSuspended, "tenant_suspended"):
        suspended.ledger.reverse_transaction(suspended.tenant_id, suspended.tx_id("t1"))
    assert suspended.ledger.get_transaction(suspended.tenant_id, suspended.tx_id("t1")).reversed_by is None


@pytest.mark.parametrize("command", ["freeze_account", "unfreeze_account", "close_account"])
def test_suspended_tenant_cannot_change_accounts(suspended: Books, command: str) -> None:
    with suspended.rejects(TenantSuspended, "tenant_suspended"):
        getattr(suspended.ledger, command)(suspended.tenant_id, suspended.ids["cash"])


def test_suspended_tenant_can_still_be_read(suspended: Books) -> None:
    ledger, tenant_id = suspended.ledger, suspended.tenant_id
    assert ledger.get_tenant(tenant_id).is_suspended
    assert ledger.get_account(tenant_id, suspended.ids["cash"]).balance_minor == 1000
    assert ledger.get_transaction(tenant_id, suspended.tx_id("t1")).external_id == "t1"
    assert ledger.verify_aggregate_chain(tenant_id) is None


def test_suspend_based_on_a_stale_version_is_rejected(funded: Books) -> None:
    with funded.rejects(VersionMismatch, "version_mismatch"):
        funded.ledger.suspend_tenant(funded.tenant_id, "late", expected_version=0)
    assert not funded.ledger.get_tenant(funded.tenant_id).is_suspended


def test_resume_based_on_a_stale_version_is_rejected(suspended: Books) -> None:
    with suspended.rejects(VersionMismatch, "version_mismatch"):
        suspended.ledger.resume_tenant(suspended.tenant_id, expected_version=1)
    assert suspended.ledger.get_tenant(suspended.tenant_id).is_suspended


# --- resumption ---------------------------------------------------------------------


def test_resume_when_not_suspended_is_rejected(funded: Books) -> None:
    with funded.rejects(TenantNotSuspended, "tenant_not_suspended"):
        funded.ledger.resume_tenant(funded.tenant_id)


def test_resume_restores_writes(suspended: Books) -> None:
    suspended.ledger.resume_tenant(suspended.tenant_id)
    tenant = suspended.ledger.get_tenant(suspended.tenant_id)
    assert (tenant.status, tenant.suspension_reason) == (TenantStatus.ACTIVE, None)
    suspended.post("t2", leg(suspended.ids["cash"], "1.00"), leg(suspended.ids["wallet"], "-1.00"))
    assert suspended.balance(suspended.ids["cash"]) == 1100


def test_suspending_one_tenant_leaves_others_writable(suspended: Books) -> None:
    other = Books.create(suspended.ledger, "globex")
    other.open("cash")
    assert not suspended.ledger.get_tenant(other.tenant_id).is_suspended


# --- aggregate ----------------------------------------------------------------------


def test_tenant_aggregate_lifecycle() -> None:
    tenant = Tenant.create("acme")
    tenant.suspend("why")
    tenant.resume()
    assert tenant.status == TenantStatus.ACTIVE
    assert [type(e).__name__ for e in tenant.collect_events()] == ["Created", "Suspended", "Resumed"]
