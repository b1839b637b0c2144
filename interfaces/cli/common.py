"""Small pieces the operator commands share: failing with one line, and the --tenant option."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

import typer

if TYPE_CHECKING:
    from infrastructure.bootstrap import Runtime

EXIT_USAGE = 2


def fail(message: str, code: int) -> typer.Exit:
    """Print one red line on stderr and return the Exit to raise."""
    typer.secho(f"invario: {message}", err=True, fg=typer.colors.RED)
    return typer.Exit(code)


def tenant_option(runtime: Runtime, tenant: str | None) -> UUID | None:
    """A ``--tenant`` given by name or id, which must exist; ``None`` means every tenant."""
    from domain.errors import TenantNotFound

    if tenant is None:
        return None
    try:
        tenant_id = UUID(tenant)
    except ValueError:
        try:
            return runtime.ledger.get_tenant_by_name(tenant).id
        except TenantNotFound:
            raise fail(f"--tenant: no tenant named {tenant!r}", EXIT_USAGE) from None
    try:
        return runtime.ledger.get_tenant(tenant_id).id
    except TenantNotFound:
        raise fail(f"--tenant: no tenant with id {tenant}", EXIT_USAGE) from None
