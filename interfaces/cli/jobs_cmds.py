"""``invario jobs status|run``: the scheduled jobs of the worker (docs/jobs.md).

Exit codes: 0 fine; 1 the job failed, or another worker holds its lock (run it
again later); 2 no such job / bad configuration; 3 database unavailable.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime, timezone
from typing import Annotated, Any

import typer

from interfaces.cli.common import EXIT_USAGE, fail, log_to_stderr, read_models_runtime

# Imports inside the functions below are deferred on purpose: they load SQLAlchemy, alembic, rich,
# pydantic-settings, the application or the projections, which `invario --help` and every other
# command would otherwise pay for at start-up.

EXIT_JOB_FAILED = 1

jobs_app = typer.Typer(name="jobs", help="The scheduled jobs run by 'invario worker'.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(jobs_app)


@jobs_app.command("status")
def status(as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table")] = False) -> None:
    """Each job's schedule, last run (start, duration, outcome) and next run."""
    from infrastructure.jobs import read_job_states
    from interfaces.bootstrap import build_job_runner

    with read_models_runtime() as runtime:
        runner = build_job_runner(runtime)
        states = read_job_states(runtime.engine, list(runner.jobs))
    now = datetime.now(timezone.utc)
    rows = [_row(runner.jobs[name].schedule.describe(), state, now) for name, state in states.items()]
    if as_json:
        typer.echo(json.dumps({"jobs": rows}, indent=2))
        return
    _print_table(rows)


def _row(schedule: str, state: Any, now: datetime) -> dict[str, Any]:
    def moment(value: datetime | None) -> str | None:
        return value.astimezone(timezone.utc).isoformat(timespec="seconds") if value is not None else None

    return {
        "job": state.job, "schedule": schedule, "outcome": state.outcome or "never run",
        "last_started_at": moment(state.started_at), "last_finished_at": moment(state.finished_at),
        "duration_seconds": state.duration_seconds, "last_success_at": moment(state.last_success_at),
        "next_run_at": moment(state.next_run_at), "due": state.due(now), "failures": state.failures,
        "detail": state.detail,
    }


def _print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="scheduled jobs (times in UTC)")
    for column in ("job", "schedule", "last run", "duration", "outcome", "next run", "detail"):
        table.add_column(column, justify="right" if column == "duration" else "left",
                         no_wrap=column in ("job", "last run", "next run"))
    for row in rows:
        duration = f"{row['duration_seconds']:.3f} s" if row["duration_seconds"] is not None else "-"
        next_run = "due now" if row["due"] else row["next_run_at"]
        outcome = row["outcome"] + (f" ({row['failures']}x)" if row["failures"] else "")
        table.add_row(row["job"], row["schedule"], _short(row["last_started_at"]), duration, outcome,
                      _short(next_run), (row["detail"] or "")[:80])
    Console(width=max(140, Console().width)).print(table)


def _short(moment: str | None) -> str:
    """'2026-11-23T14:45:31+00:00' as '2026-11-23 14:45:31' (the table says UTC once)."""
    return moment.replace("T", " ").removesuffix("+00:00") if moment else "-"


@jobs_app.command("run")
def run(name: Annotated[str, typer.Argument(help="The job: monthly_snapshot, reconcile or recurring_transactions")],
        ) -> None:
    """Run one job now, whatever its schedule, under the same lock the workers take."""
    from infrastructure.jobs import CONTENDED, FAILED, read_job_states
    from interfaces.bootstrap import build_job_runner
    from projections.jobs.scheduled_jobs import JOB_NAMES

    if name not in JOB_NAMES:
        raise fail(f"no job named {name!r}; there are: {', '.join(JOB_NAMES)}", EXIT_USAGE)
    log_to_stderr(logging.INFO)
    with read_models_runtime() as runtime:
        outcome = build_job_runner(runtime).run_now(name)
        state = read_job_states(runtime.engine, [name])[name]
    if outcome == CONTENDED:
        raise fail(f"job {name} is running in another worker (its lock is held); try again later",
                    EXIT_JOB_FAILED)
    if outcome == FAILED:
        raise fail(f"job {name} failed: {state.detail}", EXIT_JOB_FAILED)
    typer.echo(f"job {name} succeeded in {state.duration_seconds or 0:.3f} s: {state.detail}")
