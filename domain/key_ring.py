"""The key ring: which API keys a tenant has, so operators can list and revoke them.

A key is authenticated through its own aggregate (``domain.api_key``), found by
its HMAC; the ring is the tenant-side index of those keys. Issuing saves the key
and the ring in one atomic write, and revoking saves every revoked key with the
ring, so the two never disagree. The ring keeps every active key (at most
``ACTIVE_KEYS_MAX``) and the most recent ``REVOKED_KEPT`` revoked ones; older
revocations remain in its events.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any
from uuid import UUID

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import TooManyApiKeys
from domain.ids import key_ring_id_for

ACTIVE_KEYS_MAX = 100
REVOKED_KEPT = 100


class KeyRing(ChainedAggregate):
    @classmethod
    def create(cls, tenant_id: UUID) -> KeyRing:
        return cls(id=key_ring_id_for(tenant_id), tenant_id=tenant_id)

    @event("Created")
    def __init__(self, id: UUID, tenant_id: UUID) -> None:  # noqa: A002
        self.tenant_id = tenant_id
        # key id -> {"display_prefix", "scopes", "issued_at", "revoked_at"}; insertion ordered.
        self.keys: dict[str, dict[str, Any]] = {}

    def active_key_ids(self) -> list[UUID]:
        return [UUID(key_id) for key_id, entry in self.keys.items() if entry["revoked_at"] is None]

    def add(self, key_id: UUID, display_prefix: str, scopes: tuple[str, ...], at: datetime) -> None:
        assert at.tzinfo is not None
        if len(self.active_key_ids()) >= ACTIVE_KEYS_MAX:
            raise TooManyApiKeys(
                f"a tenant has at most {ACTIVE_KEYS_MAX} active API keys; revoke some first", limit=ACTIVE_KEYS_MAX
            )
        self._add(str(key_id), display_prefix, list(scopes), at.isoformat())

    @event("KeyAdded")
    def _add(self, key_id: str, display_prefix: str, scopes: list[str], issued_at: str) -> None:
        self.keys[key_id] = {
            "display_prefix": display_prefix, "scopes": list(scopes), "issued_at": issued_at, "revoked_at": None,
        }

    def revoke_all(self, at: datetime) -> list[UUID]:
        """Mark every active key revoked; return their ids (the caller revokes the keys themselves)."""
        assert at.tzinfo is not None
        active = self.active_key_ids()
        if active:
            self._revoke([str(key_id) for key_id in active], at.isoformat())
        return active

    @event("KeysRevoked")
    def _revoke(self, key_ids: list[str], revoked_at: str) -> None:
        for key_id in key_ids:
            self.keys[key_id] = {**self.keys[key_id], "revoked_at": revoked_at}
        revoked = [key_id for key_id, entry in self.keys.items() if entry["revoked_at"] is not None]
        for key_id in revoked[: max(0, len(revoked) - REVOKED_KEPT)]:
            del self.keys[key_id]
