"""Deterministic identities.

Uniqueness rules (a tenant name, an account code per tenant, an external id per
tenant, one reversal per transaction) are enforced by deriving the aggregate id
from the unique key: the event store's (aggregate id, version) constraint then
rejects a second creation atomically, with no extra index to keep in step.
"""

from __future__ import annotations

from uuid import UUID, uuid5

# Fixed forever: changing it would re-key every aggregate.
INVARIO_NAMESPACE = UUID("6f1d4b0e-2d0c-4f57-9f3e-6a8f0c6b1e21")


def tenant_id_for(name: str) -> UUID:
    return uuid5(INVARIO_NAMESPACE, f"tenant/{name}")


def account_id_for(tenant_id: UUID, code: str) -> UUID:
    return uuid5(INVARIO_NAMESPACE, f"account/{tenant_id}/{code}")


def transaction_id_for(tenant_id: UUID, external_id: str) -> UUID:
    return uuid5(INVARIO_NAMESPACE, f"transaction/{tenant_id}/{external_id}")


def reversal_id_for(transaction_id: UUID) -> UUID:
    return uuid5(INVARIO_NAMESPACE, f"reversal/{transaction_id}")


def api_key_id_for(key_digest: str) -> UUID:
    """An API key is found by the HMAC of its secret: the lookup is a repository get."""
    return uuid5(INVARIO_NAMESPACE, f"api_key/{key_digest}")


def key_ring_id_for(tenant_id: UUID) -> UUID:
    return uuid5(INVARIO_NAMESPACE, f"key_ring/{tenant_id}")
