"""``invario check-config``: every setting with its source and whether it is OK; ``--template`` for a start."""

from __future__ import annotations

from typing import Annotated

import typer

from interfaces.cli.common import EXIT_CONFIG

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

_COLOURS = {"OK": typer.colors.GREEN, "WARN": typer.colors.YELLOW, "ERROR": typer.colors.RED}


def check_config(
    template: Annotated[
        bool, typer.Option("--template", help="Print a commented env file of every INVARIO_* setting and exit")
    ] = False,
) -> None:
    """Validate every INVARIO_* setting, name missing or weak secrets; exit 2 on any ERROR.

    Secrets are never printed, only whether they are set and how long they are.
    The rules 'invario serve' refuses to start on are the ERRORs here.
    """
    from infrastructure.config_check import ERROR, WARN, check_environment
    from infrastructure.config_check import template as env_template

    if template:
        typer.echo(env_template())
        return
    findings = check_environment()
    width = max(len(finding.name) for finding in findings)
    for finding in findings:
        status = typer.style(f"{finding.status:<5}", fg=_COLOURS[finding.status])
        value = finding.shown if finding.shown else "-"
        line = f"{status} {finding.name:<{width}} = {value}  ({finding.source})"
        typer.echo(line + (f": {finding.note}" if finding.note else ""))
    errors = sum(finding.status == ERROR for finding in findings)
    warnings = sum(finding.status == WARN for finding in findings)
    summary = f"{len(findings)} settings checked: {errors} error(s), {warnings} warning(s)"
    if errors:
        typer.secho(f"invario: configuration error: {summary}", err=True, fg=typer.colors.RED)
        raise typer.Exit(EXIT_CONFIG)
    typer.echo(summary)
