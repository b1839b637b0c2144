"""Operator commands of the read side: ``invario worker``, ``invario reconcile`` and
``invario projections status|event|rebuild|recompute-month``.

Registered on the main app by ``interfaces/cli/main.py``. Every expected failure
is one line on stderr and an exit code, never a traceback:

- 0 fine; 1 ``reconcile`` found divergences (or ``worker --once`` had a failing follower);
- 2 bad input or configuration; 3 database unavailable;
- 4 the read models cannot be compared or read right now (a rebuild is running, tables are missing);
- 130 interrupted (a rebuild resumes when run again).
"""

from __future__ import annotations

import json
import logging
import signal
import threading
import time
from typing import TYPE_CHECKING, Annotated, Any
from uuid import UUID

import typer

from domain.errors import UnknownCurrency
from domain.money import format_amount
from interfaces.cli.common import (
    EXIT_APART,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    cut_database_waits_on_stop,
    fail,
    log_to_stderr,
    operator_errors,
    read_models_runtime,
    stop_on_signals,
    tenant_option,
    worker_logging,
)
from interfaces.cli.publishing import start_publishing

if TYPE_CHECKING:
    from infrastructure.runtime import Runtime
    from projections.jobs.reconcile import Reconciliation
    from projections.following.status import ProjectionStatus

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_DIVERGED = 1
EXIT_FOLLOWER_FAILED = 1

projections_app = typer.Typer(
    name="projections",
    help="Inspect and rebuild the projections (read models and the global chain).",
    no_args_is_help=True,
)


# --- plumbing -----------------------------------------------------------------------------


def _month_option(month: str | None) -> str | None:
    from projections.read_models.encoding import parse_month

    if month is None:
        return None
    try:
        return parse_month(month)
    except ValueError as exc:
        raise fail(f"--month: {exc}", EXIT_USAGE) from None


# --- invario worker ---------------------------------------------------------------------------


def worker(
    once: Annotated[bool, typer.Option("--once", help="Catch every projection up with the log, then exit")] = False,
    relay: Annotated[
        bool, typer.Option(help="Also run the relay when a sink is configured (INVARIO_RELAY_NATS_URL, "
                           "INVARIO_RELAY_AMQP_URL); "
                           "not with --once (see 'invario relay --once')")
    ] = True,
    webhooks: Annotated[
        bool, typer.Option(help="Also deliver the tenants' webhooks (unless INVARIO_WEBHOOKS_ENABLED=false); "
                           "not with --once")
    ] = True,
) -> None:
    """Run every projection follower until stopped (SIGINT/SIGTERM).

    On PostgreSQL it wakes on the event store's LISTEN/NOTIFY channel; on SQLite
    it polls every INVARIO_FOLLOWER_POLL_SECONDS. With a sink configured, the
    relay publishes committed events in a thread of its own; the webhook
    dispatcher delivers the tenants' webhooks in another (docs/events-out.md).
    """
    from projections.following.runner import FollowerLoop, waiter_for
    from interfaces.bootstrap import (
        build_followers, build_job_scheduler, resume_followers_when_the_database_returns, watch_for_restores,
    )

    worker_logging()
    stop = threading.Event()
    with read_models_runtime(following=not once) as runtime:
        metrics_server = None if once else _serve_worker_metrics(runtime)
        if not once:
            watch_for_restores(runtime)
        waiter, idle_seconds = waiter_for(runtime, stop)
        jobs = [] if once else [build_job_scheduler(runtime)]  # scheduled jobs (docs/jobs.md)
        loop = FollowerLoop([*build_followers(runtime), *jobs], stop, waiter, idle_seconds)
        resume_followers_when_the_database_returns(runtime, loop)
        how = f"LISTEN {waiter.channel}" if hasattr(waiter, "channel") else f"polling every {idle_seconds:g} s"
        typer.echo(f"invario worker: following {runtime.database.describe()} ({how})", err=True)
        previous = stop_on_signals(stop) if not once else {}
        cut_database_waits_on_stop(runtime, stop)
        batches = _start_batches(runtime, once)
        publishing = start_publishing(runtime, stop, "invario worker", relay=relay and not once,
                                      webhooks=webhooks and not once)
        try:
            loop.run(until_idle=once)
        finally:
            publishing.stop()
            batches.stop()
            waiter.close()
            if metrics_server is not None:
                metrics_server.shutdown()
                metrics_server.server_close()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
    if loop.failing:
        raise fail(f"followers failed: {', '.join(loop.failing)} (see 'invario projections status')", EXIT_FOLLOWER_FAILED)
    typer.echo("invario worker: stopped", err=True)


def _start_batches(runtime: Runtime, once: bool) -> Any:
    """Queued batch files (docs/batches.md): drained now with --once, else processed in a thread."""
    from interfaces.bootstrap import build_batch_runner

    batches = build_batch_runner(runtime)
    if once:
        batches.run_pending()
    else:
        batches.start()
    return batches


def _serve_worker_metrics(runtime: Runtime) -> Any:
    """The worker's own /metrics on INVARIO_WORKER_METRICS_PORT (0: none); a busy port stops the worker (exit 2)."""
    from prometheus_client import start_http_server

    from infrastructure.telemetry import setup_telemetry
    from projections.following.lag_metrics import register_lag_gauge

    settings = runtime.settings
    setup_telemetry("invario-worker")
    register_lag_gauge(runtime)
    if settings.worker_metrics_port == 0:
        return None
    try:
        server, _thread = start_http_server(settings.worker_metrics_port, addr=settings.worker_metrics_host)
    except OSError as exc:
        raise fail(f"cannot serve metrics on {settings.worker_metrics_host}:{settings.worker_metrics_port}: "
                    f"{exc.strerror} (set INVARIO_WORKER_METRICS_PORT; 0 disables)", EXIT_USAGE) from None
    typer.echo(f"invario worker: metrics on http://{settings.worker_metrics_host}:{settings.worker_metrics_port}"
               "/metrics", err=True)
    return server


# --- invario projections status -------------------------------------------------------------


@projections_app.command("status")
def status(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False,
) -> None:
    """Each projection's position, lag behind the log, state and last error."""
    from projections.following.status import projection_statuses

    with read_models_runtime() as runtime:
        head, statuses = projection_statuses(runtime)
    if as_json:
        typer.echo(json.dumps({"head": head, "projections": [_status_json(s) for s in statuses]}, indent=2))
        return
    _print_status_table(head, statuses)


def _status_json(status: ProjectionStatus) -> dict[str, Any]:
    def moment(value: Any) -> str | None:
        return value.isoformat() if value is not None else None

    return {
        "name": status.name, "position": status.position, "lag": status.lag, "state": status.state,
        "updated_at": moment(status.updated_at), "last_error": status.last_error,
        "rebuild_started_at": moment(status.rebuild_started_at),
    }


def _print_status_table(head: int, statuses: list[ProjectionStatus]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"projections (log head: position {head})")
    for column in ("projection", "position", "lag", "state", "updated", "last error"):
        table.add_column(column, justify="right" if column in ("position", "lag") else "left")
    for s in statuses:
        updated = s.updated_at.strftime("%Y-%m-%d %H:%M:%S") if s.updated_at else "-"
        table.add_row(s.name, str(s.position), str(s.lag), s.state, updated, (s.last_error or "")[:120])
    Console(width=max(120, Console().width)).print(table)


# --- invario projections rebuild --------------------------------------------------------------


@projections_app.command("event")
def show_event(
    position: Annotated[int, typer.Argument(min=1, help="The event's log position (a failing projection's error names it)")],
) -> None:
    """Print the event at a log position as JSON (read-only), e.g. the one a projection cannot apply.

    Text is printed with every non-ASCII and control character escaped
    (``\\u0000``), so what a read model could not store is visible.
    """
    from projections.following.status import describe_event

    with read_models_runtime() as runtime:
        found = describe_event(runtime, position)
    if found is None:
        raise fail(f"the log holds no event at position {position}", EXIT_USAGE)
    typer.echo(json.dumps(found, indent=2, default=str, ensure_ascii=True))


@projections_app.command("rebuild")
def rebuild(
    name: Annotated[str | None, typer.Argument(help="The projection to rebuild (see 'status')")] = None,
    all_: Annotated[bool, typer.Option("--all", help="Rebuild every read model and the Merkle tree")] = False,
    from_scratch: Annotated[
        bool, typer.Option("--from-scratch", help="Truncate again even if an earlier rebuild was interrupted")
    ] = False,
    batch_size: Annotated[int, typer.Option(min=1, max=10_000, help="Events per transaction")] = 5_000,
) -> None:
    """Truncate a projection (or every read model) and replay the whole log into it.

    Safe while the API keeps writing; resumable: if interrupted, run the same
    command again. The global chain is rebuilt only when named: it is tamper
    evidence, and a rebuild re-derives it from the events as they are now.
    """
    from projections.following.registry import ALL_PROJECTIONS, GLOBAL_CHAIN, REBUILT_BY_ALL

    if all_ == (name is not None):
        raise fail("name one projection or pass --all: " + ", ".join(ALL_PROJECTIONS), EXIT_USAGE)
    if name is not None and name not in ALL_PROJECTIONS:
        raise fail(f"no projection named {name!r}; there are: {', '.join(ALL_PROJECTIONS)}", EXIT_USAGE)
    names = REBUILT_BY_ALL if all_ else (name,)
    if GLOBAL_CHAIN in names:
        typer.secho("invario: warning: rebuilding the global chain re-derives the tamper evidence from the "
                    "events as they are now; run 'invario verify' first if you have it", err=True,
                    fg=typer.colors.YELLOW)
    with read_models_runtime() as runtime:
        _run_rebuild(runtime, names, from_scratch=from_scratch, batch_size=batch_size)


def _run_rebuild(runtime: Runtime, names: tuple[str, ...], *, from_scratch: bool, batch_size: int) -> None:
    from projections.following.rebuild import start_rebuild

    start = start_rebuild(runtime, names, from_scratch=from_scratch)
    if start.resumed:
        typer.echo(f"resuming the interrupted rebuild of {', '.join(start.resumed)}", err=True)
    typer.echo(f"rebuilding {', '.join(start.names)} from position {start.position} "
               f"(log head: {start.head})", err=True)
    began = time.monotonic()
    try:
        applied, position = _replay_with_progress(runtime, start, batch_size)
    except KeyboardInterrupt:
        raise fail("rebuild interrupted; run the same command again to resume", EXIT_INTERRUPTED) from None
    elapsed = max(time.monotonic() - began, 1e-9)
    typer.echo(f"rebuilt {', '.join(start.names)}: {applied} events in {elapsed:.1f} s "
               f"({applied / elapsed:,.0f} events/s), now at position {position}")


def _replay_with_progress(runtime: Runtime, start: Any, batch_size: int) -> tuple[int, int]:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from projections.following.follower import read_tracking
    from projections.following.rebuild import log_head, replay

    columns = (
        TextColumn("[bold]replaying"), BarColumn(), MofNCompleteColumn(),
        TextColumn("{task.fields[rate]} events/s"), TextColumn("ETA"), TimeRemainingColumn(), TimeElapsedColumn(),
    )
    began = time.monotonic()
    with Progress(*columns, console=Console(stderr=True)) as progress:
        task = progress.add_task("replay", total=max(start.head - start.position, 0), rate="-")
        done = 0

        def on_batch(count: int) -> None:
            nonlocal done
            done += count
            rate = done / max(time.monotonic() - began, 1e-9)
            total = max(log_head(runtime) - start.position, done)
            progress.update(task, completed=done, total=total, rate=f"{rate:,.0f}")

        applied = replay(runtime, start.names, batch_size=batch_size, on_batch=on_batch)
        progress.update(task, completed=progress.tasks[0].total)
    with runtime.engine.connect() as connection:
        position = min(state.position for state in read_tracking(connection, start.names).values())
    return applied, position


# --- invario projections recompute-month -------------------------------------------------------


@projections_app.command("recompute-month")
def recompute_month_command(
    month: Annotated[str, typer.Argument(help="The month, YYYY-MM")],
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (name or id)")] = None,
) -> None:
    """Recompute one month's snapshots from the statement entries; fix only what is wrong."""
    from projections.following.consistency import PositionsApart
    from projections.read_models.monthly import recompute_month

    checked_month = _month_option(month)
    assert checked_month is not None
    with read_models_runtime() as runtime:
        tenant_id = tenant_option(runtime, tenant)
        try:
            position, corrections = recompute_month(runtime.engine, checked_month, tenant_id)
        except PositionsApart as exc:
            raise fail(str(exc), EXIT_APART) from None
    for correction in corrections:
        typer.echo(f"corrected {correction.month} of account {correction.account_id}")
    typer.echo(f"month {checked_month} recomputed at position {position}: {len(corrections)} row(s) corrected")


# --- invario reconcile ---------------------------------------------------------------------------


def reconcile(
    tenant: Annotated[str | None, typer.Option(help="Only this tenant (name or id)")] = None,
    month: Annotated[str | None, typer.Option(help="Check the monthly snapshots of this month only (YYYY-MM)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the divergences as JSON")] = False,
    catch_up: Annotated[
        bool, typer.Option(help="First bring the read models up to the head of the log")
    ] = True,
) -> None:
    """Compare the read models with each other and with the write side, at one common position.

    Checks: (a) monthly snapshots against the statement entries; (b) balances
    against the account aggregates; (c) each tenant's balances sum to zero per
    currency. Exit code 1 when anything diverges.
    """
    from projections.following.consistency import PositionsApart
    from projections.jobs.reconcile import reconcile as run_reconcile
    from interfaces.bootstrap import build_read_models_group

    checked_month = _month_option(month)
    log_to_stderr(logging.WARNING)
    with read_models_runtime() as runtime:
        tenant_id = tenant_option(runtime, tenant)
        if catch_up:
            build_read_models_group(runtime, runtime.settings.follower_batch_size, defer_to_rebuilds=True).catch_up()
        try:
            report = _reconcile_with_progress(run_reconcile, runtime, tenant_id, checked_month)
        except PositionsApart as exc:
            raise fail(str(exc), EXIT_APART) from None
    if as_json:
        typer.echo(json.dumps(_report_json(report), indent=2))
    else:
        _print_report(report)
    if report.divergences:
        raise typer.Exit(EXIT_DIVERGED)


def _reconcile_with_progress(run: Any, runtime: Runtime, tenant_id: UUID | None, month: str | None) -> Reconciliation:
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = (TextColumn("[bold]reconciling accounts"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
        task = progress.add_task("reconcile", total=None)

        def on_progress(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        return run(runtime.ledger, runtime.engine, tenant_id=tenant_id, month=month, on_progress=on_progress)


def _difference(amount_minor: int, currency: str) -> str:
    try:
        return f"{format_amount(amount_minor, currency)} {currency}"
    except UnknownCurrency:
        return f"{amount_minor} minor units {currency}"


def _report_json(report: Reconciliation) -> dict[str, Any]:
    return {
        "position": report.position,
        "accounts_checked": report.accounts_checked,
        "months_checked": report.months_checked,
        "divergences": [
            {
                "check": d.check, "tenant_id": str(d.tenant_id),
                "account_id": str(d.account_id) if d.account_id else None, "account_code": d.account_code,
                "month": d.month, "currency": d.currency, "difference_minor": d.difference_minor,
                "difference": _difference(d.difference_minor, d.currency).split(" ")[0], "detail": d.detail,
            }
            for d in report.divergences
        ],
    }


def _print_report(report: Reconciliation) -> None:
    from rich.console import Console
    from rich.table import Table

    summary = (f"reconciled at position {report.position}: {report.accounts_checked} accounts, "
               f"{report.months_checked} account-months, {len(report.divergences)} divergence(s)")
    if not report.divergences:
        typer.echo(summary)
        return
    table = Table(title="divergences (read model minus expected)")
    for column in ("check", "month", "tenant", "account", "difference", "detail"):
        table.add_column(column, justify="right" if column == "difference" else "left",
                         no_wrap=column in ("tenant", "account", "difference"))
    for d in report.divergences:
        account = f"{d.account_code or '?'} {d.account_id}" if d.account_id else "-"
        table.add_row(d.check, d.month or "-", str(d.tenant_id), account,
                      _difference(d.difference_minor, d.currency), d.detail)
    Console(width=max(200, Console().width)).print(table)
    typer.echo(summary)
