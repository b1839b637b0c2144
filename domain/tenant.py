"""The tenant: one customer of the ledger, whose data is isolated from all others."""

from __future__ import annotations

import re
from enum import StrEnum
from uuid import UUID

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import InvalidTenant, TenantAlreadySuspended, TenantNotSuspended, TenantSuspended
from domain.ids import tenant_id_for
from domain.text import check_text, quoted

_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{1,62}")
REASON_LENGTH_MAX = 500


def is_tenant_name(value: object) -> bool:
    return isinstance(value, str) and _NAME.fullmatch(value) is not None


class TenantStatus(StrEnum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


class Tenant(ChainedAggregate):
    @classmethod
    def create(cls, name: str) -> Tenant:
        if not is_tenant_name(name):
            raise InvalidTenant(
                "tenant name must be 2-63 characters of a-z, 0-9, '_' or '-', starting with a letter or digit",
                name=quoted(name),
            )
        return cls(id=tenant_id_for(name), name=name)

    @event("Created")
    def __init__(self, id: UUID, name: str) -> None:  # noqa: A002
        self.name = name
        self.status = TenantStatus.ACTIVE
        self.suspension_reason: str | None = None

    @property
    def is_suspended(self) -> bool:
        return self.status == TenantStatus.SUSPENDED

    def check_writable(self) -> None:
        if self.is_suspended:
            raise TenantSuspended(f"tenant {self.name} is suspended", tenant=self.name)

    def suspend(self, reason: str = "") -> None:
        if self.is_suspended:
            raise TenantAlreadySuspended(f"tenant {self.name} is already suspended", tenant=self.name)
        if not isinstance(reason, str) or len(reason) > REASON_LENGTH_MAX:
            raise InvalidTenant(f"reason must be a string of at most {REASON_LENGTH_MAX} characters")
        check_text(reason, "reason")
        self._suspend(reason)

    @event("Suspended")
    def _suspend(self, reason: str) -> None:
        self.status = TenantStatus.SUSPENDED
        self.suspension_reason = reason

    def resume(self) -> None:
        if not self.is_suspended:
            raise TenantNotSuspended(f"tenant {self.name} is not suspended", tenant=self.name)
        self._resume()

    @event("Resumed")
    def _resume(self) -> None:
        self.status = TenantStatus.ACTIVE
        self.suspension_reason = None
