"""Tenant use cases: create, read, suspend and resume a tenant."""

from __future__ import annotations

from uuid import UUID

from eventsourcing.persistence import IntegrityError

from application.aggregate_store import AggregateStore
from application.decisions import Aggregates, Recorded, check_version, typed
from application.write_path import WritePath
from domain.errors import TenantAlreadyExists, TenantNotFound
from domain.ids import tenant_id_for
from domain.tenant import Tenant, is_tenant_name
from domain.text import quoted


def tenant_of(aggregates: Aggregates, tenant_id: UUID) -> Tenant:
    tenant = typed(aggregates, tenant_id, Tenant)
    if tenant is None:
        raise TenantNotFound(f"tenant {tenant_id} not found")
    return tenant


def writable_tenant(aggregates: Aggregates, tenant_id: UUID) -> Tenant:
    """The tenant, if it may write now (not suspended)."""
    tenant = tenant_of(aggregates, tenant_id)
    tenant.check_writable()
    return tenant


class Tenants:
    def __init__(self, store: AggregateStore, writes: WritePath) -> None:
        self._store = store
        self._writes = writes

    def create_tenant(self, name: str) -> Recorded:
        # Rare, so saved directly: the store's version constraint settles a race.
        tenant = Tenant.create(name)
        if typed(self._store, tenant.id, Tenant) is not None:
            raise TenantAlreadyExists(f"tenant {name} already exists", tenant=name)
        try:
            return Recorded(tenant, self._store.save(tenant))
        except IntegrityError:
            raise TenantAlreadyExists(f"tenant {name} already exists", tenant=name) from None

    def get_tenant(self, tenant_id: UUID) -> Tenant:
        return tenant_of(self._store, tenant_id)

    def get_tenant_by_name(self, name: str) -> Tenant:
        # A name no tenant may have is not looked up: it might not even be encodable as an id.
        tenant = typed(self._store, tenant_id_for(name), Tenant) if is_tenant_name(name) else None
        if tenant is None:
            raise TenantNotFound(f"tenant {quoted(name)} not found", tenant=quoted(name))
        return tenant

    def suspend_tenant(self, tenant_id: UUID, reason: str = "", expected_version: int | None = None) -> Recorded:
        def decide(aggregates: Aggregates) -> Recorded:
            tenant = tenant_of(aggregates, tenant_id)
            check_version(tenant, expected_version)
            tenant.suspend(reason)
            return Recorded(tenant, aggregates.save(tenant))

        return self._writes.execute(decide, reads=[tenant_id])

    def resume_tenant(self, tenant_id: UUID, expected_version: int | None = None) -> Recorded:
        def decide(aggregates: Aggregates) -> Recorded:
            tenant = tenant_of(aggregates, tenant_id)
            check_version(tenant, expected_version)
            tenant.resume()
            return Recorded(tenant, aggregates.save(tenant))

        return self._writes.execute(decide, reads=[tenant_id])
