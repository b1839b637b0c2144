"""``invario demo``: fill an empty store with a generated demo ledger.

Three tenants (USD, EUR, JPY), a chart of accounts and customer wallets each,
and a few thousand seeded transactions over several months: back-dated
entries, reversals and holds (see ``interfaces.demo``). Interrupted,
it can simply be run again with the same options: every write replays.
"""

from __future__ import annotations

from typing import Annotated

import typer

from domain.errors import LedgerError
from interfaces.cli.common import EXIT_USAGE, fail, operator_errors

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_REFUSED = 1


def demo(
    database_url: Annotated[
        str | None, typer.Option("--database-url", help="Store to fill [default: INVARIO_DATABASE_URL]")
    ] = None,
    transactions: Annotated[int, typer.Option(help="Business transactions to generate", min=1, max=100_000)] = 3000,
    months: Annotated[int, typer.Option(help="Months of effective dates they span", min=1, max=36)] = 6,
    seed: Annotated[int, typer.Option(help="Random seed: the same options make the same ledger")] = 7,
) -> None:
    """Create a demo ledger (for trying the API and docs/notebooks/replay.ipynb).

    Refuses a store that holds anything but this demo; run it again with the
    same options to finish an interrupted run.
    """
    # Deferred: the generator (the application, the store) and the settings load only when the command runs.
    from infrastructure.database import DatabaseURL
    from infrastructure.settings import get_settings
    from interfaces.demo import DemoOptions, DemoRefused, create_demo_ledger

    with operator_errors():
        url = database_url or get_settings().database_url
        where = DatabaseURL.parse(url).describe()
        options = DemoOptions(seed=seed, transactions=transactions, months=months)
        try:
            summary = _with_progress(lambda tick: create_demo_ledger(url, options, tick), options, where)
        except DemoRefused as exc:
            raise fail(f"demo refused: {exc}", EXIT_REFUSED) from None
        except LedgerError as exc:  # pragma: no cover - the generator keeps every rule
            raise fail(f"demo rejected: {exc.code}: {exc.message}", EXIT_USAGE) from None
    written = (f"{summary.tenants} tenants, {summary.accounts} accounts, {summary.posted} transactions, "
               f"{summary.reversals} reversals, {summary.holds_placed} holds ({summary.holds_posted} posted, "
               f"{summary.holds_voided} voided)")
    typer.echo(
        f"demo ledger in {where}: tenants {', '.join(summary.tenant_names)}; written now: {written}"
        + (f"; already there: {summary.replayed} writes" if summary.replayed else "")
        + f"; effective dates {summary.first_date} to {summary.last_date}; log position {summary.position}"
    )


def _with_progress(run, options, where: str):  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    columns = (TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
               TimeElapsedColumn(), TimeRemainingColumn())
    total = options.transactions + 3  # and one opening entry per tenant
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task(f"demo -> {where}", total=total)
        return run(lambda step: progress.update(task, completed=step))
