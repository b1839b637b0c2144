"""``invario backup FILE`` and ``invario restore FILE`` (docs/backup-restore.md).

Exit codes: 0 done (restore: and the restored ledger verifies and reconciles);
1 restored, but a hash chain is broken, a read model diverges or a projection
is not current; 2 bad input or configuration (an existing FILE without
--force, a file of the wrong kind, a database that holds data without --force,
a missing pg_dump); 3 database unavailable or the dump/restore failed;
6 restore: other sessions are connected to the database (without
--terminate-sessions; nothing was changed); 130 interrupted (no backup file is
left half-written).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from interfaces.cli.common import (
    EXIT_DATABASE,
    EXIT_INTERRUPTED,
    EXIT_SESSIONS_CONNECTED,
    EXIT_USAGE,
    fail,
    operator_errors,
)

if TYPE_CHECKING:
    from rich.progress import Progress

    from infrastructure.backup import BackupSummary
    from infrastructure.runtime import Runtime
    from infrastructure.database import DatabaseURL
    from infrastructure.settings import Settings
    from projections.jobs.restore import Settlement
    from projections.jobs.verification import LedgerVerification

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_INCONSISTENT = 1
HOLDING_TABLES_SHOWN = 5


def register(app: typer.Typer) -> None:
    app.command()(backup)
    app.command()(restore)


# --- plumbing -----------------------------------------------------------------------------------------


def _configured() -> tuple[Settings, DatabaseURL]:
    from infrastructure.database import DatabaseURL
    from infrastructure.settings import get_settings

    with operator_errors():
        settings = get_settings()
        return settings, DatabaseURL.parse(settings.database_url)


@contextmanager
def _backup_errors() -> Iterator[None]:
    from infrastructure.backup import BackupFailed

    with operator_errors():
        try:
            yield
        except BackupFailed as exc:
            raise fail(str(exc), EXIT_DATABASE) from None


@contextmanager
def _progress() -> Iterator[Progress]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        yield progress


def _size(size_bytes: int) -> str:
    size = float(size_bytes)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:,.0f} {unit}" if unit == "B" else f"{size:,.1f} {unit}"
        size /= 1024
    return f"{size_bytes} B"  # pragma: no cover


# --- invario backup ---------------------------------------------------------------------------------------


def backup(
    file: Annotated[Path, typer.Argument(help="Where to write the backup (pg_dump custom format, or a SQLite file)")],
    force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists")] = False,
) -> None:
    """Write one consistent snapshot of the whole database: events, read models, keys, integrity state.

    PostgreSQL: pg_dump -Fc of every table, as of one snapshot. SQLite: the
    online backup API. Safe while the API and workers keep running.
    """
    from infrastructure.backup import backup_postgres, backup_sqlite

    settings, database = _configured()
    _check_target(file, force=force)
    began = time.monotonic()
    try:
        with _backup_errors(), _progress() as progress:
            task = progress.add_task(f"backing up {database.describe()}", total=None)
            if database.is_postgres:
                summary = backup_postgres(database, file, settings.db_connect_timeout_seconds)
            else:
                summary = backup_sqlite(database, file,
                                        lambda done, total: progress.update(task, completed=done, total=total))
    except KeyboardInterrupt:
        raise fail(f"backup interrupted: nothing was written to {file}", EXIT_INTERRUPTED) from None
    _print_backup(summary, time.monotonic() - began)
    if not database.is_postgres:
        typer.echo("note: the auth pepper file beside the database (or INVARIO_AUTH_PEPPER) is a secret and is not "
                   "in the backup; API keys only work with it: keep it in your secret store", err=True)


def _check_target(file: Path, *, force: bool) -> None:
    if file.is_dir():
        raise fail(f"{file} is a directory; name the backup file", EXIT_USAGE)
    if file.exists() and not force:
        raise fail(f"{file} exists; pass --force to replace it", EXIT_USAGE)
    if not file.parent.is_dir():
        raise fail(f"directory {file.parent} does not exist", EXIT_USAGE)


def _print_backup(summary: BackupSummary, elapsed: float) -> None:
    kind = "pg_dump custom format" if summary.kind == "postgres" else "SQLite database"
    typer.echo(f"backup written: {summary.path} ({_size(summary.size_bytes)}, {kind}) in {elapsed:.1f} s")
    typer.echo(f"events: {summary.events:,}; last log position: {summary.last_position}")


# --- invario restore ----------------------------------------------------------------------------------------


def restore(
    file: Annotated[Path, typer.Argument(help="A file written by 'invario backup'", exists=True, dir_okay=False,
                                         readable=True)],
    force: Annotated[
        bool, typer.Option("--force", help="Replace the data of a database that already holds some")
    ] = False,
    terminate_sessions: Annotated[
        bool, typer.Option("--terminate-sessions", help="PostgreSQL: end the other sessions connected to the "
                           "database (running APIs and workers reconnect and drop what they held) and go ahead")
    ] = False,
) -> None:
    """Restore a backup into INVARIO_DATABASE_URL, then verify every hash chain and reconcile.

    Refuses a database that holds data unless --force, and (PostgreSQL) one that
    other sessions are connected to unless --terminate-sessions (exit 6). After
    the restore the projections are brought in line with the restored events
    (caught up, or rebuilt when they are ahead of them), every chain is verified
    and the read models are reconciled. Exit code 0 only if all of that is
    consistent. Running APIs and workers notice the restore and drop their caches.
    """
    from infrastructure.backup import file_kind

    settings, database = _configured()
    wanted = "postgres" if database.is_postgres else "sqlite"
    found = file_kind(file)
    if found != wanted:
        what = {"postgres": "a PostgreSQL dump", "sqlite": "a SQLite backup", None: "not an Invario backup"}[found]
        raise fail(f"{file} is {what}, but INVARIO_DATABASE_URL is {database.describe()}", EXIT_USAGE)
    _refuse_holding_data(settings, database, force=force)
    if database.is_postgres:
        _refuse_or_end_sessions(settings, database, terminate=terminate_sessions)
    try:
        _restore_data(settings, database, file)
    except KeyboardInterrupt:
        raise fail("restore interrupted: nothing was restored (it runs in one transaction)", EXIT_INTERRUPTED) from None
    typer.echo(f"restored {file} into {database.describe()}", err=True)
    try:
        settlement = _settle(settings, end_sessions_again=terminate_sessions)
    except KeyboardInterrupt:
        raise fail(f"interrupted after the data was restored, before it was verified; run "
                   f"'invario restore {file} --force' again to finish", EXIT_INTERRUPTED) from None
    _print_settlement(settlement)
    if not settlement.consistent:
        raise typer.Exit(EXIT_INCONSISTENT)


def _refuse_holding_data(settings: Settings, database: DatabaseURL, *, force: bool) -> None:
    from infrastructure.backup import pg_database_holds_data, sqlite_database_holds_data

    with _backup_errors():
        if database.is_postgres:
            holding = pg_database_holds_data(database, settings.db_connect_timeout_seconds)
        else:
            holding = sqlite_database_holds_data(database)
    if holding and not force:
        shown = ", ".join(holding[:HOLDING_TABLES_SHOWN]) + (", ..." if len(holding) > HOLDING_TABLES_SHOWN else "")
        raise fail(f"{database.describe()} already holds data ({shown}); pass --force to replace it", EXIT_USAGE)


def _refuse_or_end_sessions(settings: Settings, database: DatabaseURL, *, terminate: bool) -> None:
    """A process connected to the database would go on with what it held before the restore, and its
    locks would hold the restore up: refuse, or with --terminate-sessions end every other session."""
    from infrastructure.backup import describe_sessions, other_sessions, terminate_other_sessions

    with _backup_errors():
        if terminate:
            ended = terminate_other_sessions(database, settings.db_connect_timeout_seconds)
            if ended:
                typer.echo(f"ended {len(ended)} other session(s): {describe_sessions(ended)}", err=True)
            return
        sessions = other_sessions(database, settings.db_connect_timeout_seconds)
    if sessions:
        raise fail(f"{len(sessions)} other session(s) are connected to {database.describe()}: "
                   f"{describe_sessions(sessions)}; stop them, or pass --terminate-sessions to end them "
                   "(running APIs and workers reconnect and notice the restore)", EXIT_SESSIONS_CONNECTED)


def _restore_data(settings: Settings, database: DatabaseURL, file: Path) -> None:
    from infrastructure.backup import restore_postgres, restore_sqlite

    with _backup_errors(), _progress() as progress:
        task = progress.add_task(f"restoring {file.name}", total=None)
        if database.is_postgres:
            restore_postgres(database, file, settings.db_connect_timeout_seconds)
        else:
            restore_sqlite(database, file, lambda done, total: progress.update(task, completed=done, total=total))


def _settle(settings: Settings, *, end_sessions_again: bool) -> Settlement:
    from sqlalchemy.exc import DBAPIError

    from infrastructure.backup import terminate_other_sessions
    from infrastructure.runtime import open_runtime
    from infrastructure.migrate import upgrade_to_head
    from infrastructure.restore_epoch import begin_new_epoch
    from interfaces.bootstrap import build_read_models_group
    from projections.jobs.restore import settle

    with operator_errors():
        runtime = open_runtime(settings)
    try:
        with operator_errors():
            before, after = upgrade_to_head(runtime.engine)
            if before != after:
                typer.echo(f"schema migrated from revision {before or 'empty'} to {after}", err=True)
            if runtime.database.is_postgres:  # SQLite's file came with its new epoch (restore_sqlite)
                begin_new_epoch(runtime.engine)
            if end_sessions_again:
                # Sessions opened while pg_restore ran may hold statements prepared on the dropped tables.
                with _backup_errors():
                    terminate_other_sessions(runtime.database, settings.db_connect_timeout_seconds)
                runtime.forget_held_state()  # this process's own sessions were among them
            with _progress() as progress:
                return settle(runtime, _stages(progress),
                              verification_steps=lambda verification: _verify_steps(progress, verification),
                              read_models_group=lambda: build_read_models_group(
                                  runtime, runtime.settings.follower_batch_size, defer_to_rebuilds=False))
    except DBAPIError as exc:
        detail = " ".join(str(exc.orig or exc).split())[:300]
        raise fail(f"database error after the restore: {detail}", EXIT_DATABASE) from None
    finally:
        runtime.close()


def _stages(progress: Progress) -> Callable[[str], Callable[[int], None]]:
    def stage(label: str) -> Callable[[int], None]:
        task = progress.add_task(label, total=None)
        return lambda count: progress.advance(task, count)

    return stage


def _verify_steps(progress: Progress, verification: LedgerVerification) -> None:
    task = progress.add_task("verifying every hash chain", total=max(verification.stop_position, 1))
    while verification.step():
        progress.update(task, completed=verification.next_start - 1)


def _print_settlement(settlement: Settlement) -> None:
    from rich.console import Console
    from rich.table import Table

    verification, reconciliation = settlement.verification, settlement.reconciliation
    assert verification is not None and reconciliation is not None
    table = Table(title="restore report", show_header=True)
    table.add_column("check")
    table.add_column("result")
    table.add_column("detail", overflow="fold")
    table.add_row("events", f"{verification.events:,}", f"log head: position {settlement.head}")
    first = verification.first_damage
    table.add_row("hash chains", "[green]INTACT[/]" if verification.intact else "[red]BROKEN[/]",
                  f"head {verification.head_hash[:16]}…" if first is None else first.describe())
    for action in settlement.actions or ["nothing to repair: the derived data matched the events"]:
        table.add_row("repair", "done", action)
    for status in settlement.after:
        colour = "green" if status.state == "current" else "red"
        table.add_row(f"projection {status.name}", f"[{colour}]{status.state}[/]",
                      f"position {status.position}, lag {status.lag}")
    diverged = len(reconciliation.divergences)
    table.add_row("reconcile", "[green]OK[/]" if not diverged else f"[red]{diverged} divergence(s)[/]",
                  f"at position {reconciliation.position}: {reconciliation.accounts_checked} accounts, "
                  f"{reconciliation.months_checked} account-months")
    Console(width=max(120, Console().width)).print(table)
    verdict = "CONSISTENT" if settlement.consistent else "NOT CONSISTENT: see the rows above"
    typer.secho(f"restore {verdict}", fg=typer.colors.GREEN if settlement.consistent else typer.colors.RED)
