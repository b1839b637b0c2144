"""``invario webhooks list|replay``: operators' view of the tenants' webhook endpoints (docs/events-out.md).

Tenants manage their endpoints through ``/v1/webhooks``; these commands are for
the runbook's dead-letter procedure (ops/RUNBOOK.md): see which endpoints are
dead-lettered and why, and replay one from a position once its receiver is fixed.
No command shows a secret. Exit codes: 0 fine; 2 bad arguments (no such
endpoint); 3 database unavailable.
"""

from __future__ import annotations

import json
from typing import Annotated, Any
from uuid import UUID

import typer

from interfaces.cli.common import EXIT_USAGE, fail, read_models_runtime, tenant_option

# Imports inside the functions are deferred: they load SQLAlchemy and the store, which `invario --help` must not.

webhooks_app = typer.Typer(name="webhooks", help="Tenants' webhook endpoints: list them, replay one.",
                           no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(webhooks_app)


@webhooks_app.command("list")
def list_endpoints(
    tenant: Annotated[str | None, typer.Option("--tenant", help="Only this tenant's (name or id)")] = None,
    dead_lettered: Annotated[bool, typer.Option("--dead-lettered", help="Only dead-lettered endpoints")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of lines")] = False,
) -> None:
    """Endpoints with their state: position, failed attempts, last error (never a secret)."""
    from infrastructure.webhooks.store import DEAD_LETTERED
    from interfaces.bootstrap import build_webhook_store

    with read_models_runtime() as runtime:
        tenant_id = tenant_option(runtime, tenant)
        endpoints = build_webhook_store(runtime, secrets=False).list(
            tenant_id, DEAD_LETTERED if dead_lettered else None)
    rows = [_row(endpoint) for endpoint in endpoints]
    if as_json:
        typer.echo(json.dumps({"webhooks": rows}, indent=2))
        return
    for row in rows:
        typer.echo(f"{row['id']}  tenant {row['tenant_id']}  {row['status']}  position {row['position']}  "
                   f"attempts {row['attempts']}  {row['url']}" + (f"  last error: {row['last_error']}"
                                                                    if row["last_error"] else ""))
    if not rows:
        typer.echo("no webhook endpoints", err=True)


@webhooks_app.command("replay")
def replay(
    webhook_id: Annotated[str, typer.Argument(help="The endpoint's id (see 'invario webhooks list')")],
    from_position: Annotated[int, typer.Option("--from", min=1, help="First log position to send again")],
) -> None:
    """Send an endpoint its tenant's events again from a log position on; revives a dead-lettered endpoint.

    The worker (or 'invario relay') delivers them at its next round."""
    from interfaces.bootstrap import build_webhook_store

    try:
        endpoint_id = UUID(webhook_id)
    except ValueError:
        raise fail(f"not an endpoint id: {webhook_id!r}", EXIT_USAGE) from None
    with read_models_runtime() as runtime:
        endpoint = build_webhook_store(runtime, secrets=False).replay(endpoint_id, from_position)
    if endpoint is None:
        raise fail(f"no webhook endpoint {endpoint_id}", EXIT_USAGE)
    typer.echo(f"webhook {endpoint.id}: active, replaying from position {from_position}")


def _row(endpoint: Any) -> dict[str, Any]:
    return {
        "id": str(endpoint.id), "tenant_id": str(endpoint.tenant_id), "url": endpoint.url,
        "event_types": list(endpoint.event_types) if endpoint.event_types is not None else None,
        "status": endpoint.status, "position": endpoint.position, "attempts": endpoint.attempts,
        "next_attempt_at": endpoint.next_attempt_at.isoformat(timespec="seconds"),
        "last_error": endpoint.last_error, "delivered_count": endpoint.delivered_count,
        "dead_lettered_at": endpoint.dead_lettered_at.isoformat(timespec="seconds")
        if endpoint.dead_lettered_at else None,
    }
