"""Operator commands for tenants and their API keys (names fixed by the runbooks).

``create-tenant NAME``, ``create-key --owner NAME --scopes '{"write": true}'``,
``revoke-key --owner NAME`` and ``list-keys --owner NAME``. A new key is printed
once, alone on stdout (so ``KEY=$(invario create-key ...)`` works), with the
warning on stderr; nothing shows a key again, only its prefix. A rejection is
one line on stderr with its code, exit status 1.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Annotated, Any

import typer

from domain.api_key import READ, SCOPES, WRITE
from domain.errors import InvalidScopes, LedgerError
from interfaces.cli.common import operator_errors

if TYPE_CHECKING:
    from infrastructure.runtime import Runtime

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_REJECTED = 1

Owner = Annotated[str, typer.Option("--owner", help="The tenant's name")]


def register(app: typer.Typer) -> None:
    app.command("create-tenant")(create_tenant)
    app.command("create-key")(create_key)
    app.command("revoke-key")(revoke_key)
    app.command("list-keys")(list_keys)


@contextmanager
def _runtime() -> Iterator[Runtime]:
    from infrastructure.runtime import open_runtime

    with operator_errors():
        runtime = open_runtime()
    try:
        with _rejections():
            yield runtime
    finally:
        runtime.close()


@contextmanager
def _rejections() -> Iterator[None]:
    with operator_errors():
        try:
            yield
        except LedgerError as exc:
            typer.secho(f"invario: {exc.code}: {exc.message}", err=True, fg=typer.colors.RED)
            raise typer.Exit(EXIT_REJECTED) from None


def parse_scopes(text: str) -> list[str]:
    """'{"write": true}' -> ["read", "write"]: read is granted unless '"read": false'."""
    try:
        document: Any = json.loads(text)
    except json.JSONDecodeError:
        document = None
    if not isinstance(document, dict) or any(k not in SCOPES or not isinstance(v, bool) for k, v in document.items()):
        raise InvalidScopes(f"--scopes must be a JSON object of booleans for {' and '.join(SCOPES)}, "
                            'e.g. \'{"write": true}\'')
    granted = {READ: document.get(READ, True), WRITE: document.get(WRITE, False)}
    return [scope for scope, on in granted.items() if on]


def create_tenant(name: Annotated[str, typer.Argument(help="2-63 characters of a-z, 0-9, '_' or '-'")]) -> None:
    """Create a tenant (a customer of the ledger whose data is isolated from all others)."""
    with _runtime() as runtime:
        tenant = runtime.ledger.create_tenant(name).aggregate
    typer.echo(f"tenant {tenant.name} created: id {tenant.id}")


def create_key(
    owner: Owner,
    scopes: Annotated[str, typer.Option(help='JSON, e.g. \'{"write": true}\' (read is implied unless false)')] = (
        '{"read": true}'
    ),
) -> None:
    """Issue an API key for a tenant; it is printed once and never shown again."""
    from interfaces.bootstrap import open_access

    with _runtime() as runtime:
        chosen = parse_scopes(scopes)
        tenant = runtime.ledger.get_tenant_by_name(owner)
        issued = open_access(runtime).issue_key(tenant.id, chosen)
    typer.secho(f"API key created for {owner!r} (scopes: {', '.join(issued.key.scopes)})", err=True,
                fg=typer.colors.GREEN)
    typer.echo(issued.secret)
    typer.secho("WARNING: save this key now. It will not be shown again.", err=True, fg=typer.colors.YELLOW)


def revoke_key(owner: Owner) -> None:
    """Revoke every active API key of a tenant; effective on the next request, in every process."""
    from interfaces.bootstrap import open_access

    with _runtime() as runtime:
        tenant = runtime.ledger.get_tenant_by_name(owner)
        revoked, _ = open_access(runtime).revoke_keys(tenant.id)
    if not revoked:
        typer.echo(f"{owner} has no active API keys")
        return
    typer.echo(f"revoked {len(revoked)} API key(s) of {owner}: " + ", ".join(f"{k.display_prefix}…" for k in revoked))


def list_keys(owner: Owner) -> None:
    """List a tenant's API keys: prefixes, scopes and dates only, never the keys."""
    from interfaces.bootstrap import open_access

    with _runtime() as runtime:
        tenant = runtime.ledger.get_tenant_by_name(owner)
        keys = open_access(runtime).list_keys(tenant.id)
    if not keys:
        typer.echo(f"{owner} has no API keys")
        return
    typer.echo(f"{'PREFIX':<17} {'SCOPES':<11} {'ISSUED (UTC)':<20} STATUS")
    for key in keys:
        status = f"revoked {key.revoked_at[:19].replace('T', ' ')}" if key.revoked_at else "active"
        issued = key.issued_at[:19].replace("T", " ")
        typer.echo(f"{key.display_prefix + '…':<17} {','.join(key.scopes):<11} {issued:<20} {status}")
