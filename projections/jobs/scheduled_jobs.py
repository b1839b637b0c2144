"""The scheduled jobs of ``invario worker``: monthly snapshots, daily reconciliation, recurring runs.

Each reuses what the operator commands use: ``recompute_month`` (``invario
projections recompute-month``), ``reconcile`` (``invario reconcile``) and the
recurring use case. ``infrastructure.jobs`` decides when they run and makes one
worker at a time run each; ``interfaces.bootstrap`` builds them from the settings. docs/jobs.md.
"""

from __future__ import annotations

import logging
from datetime import date, datetime, timedelta, timezone
from uuid import UUID

from sqlalchemy import Engine, insert, update

from application.ledger import Ledger
from application.recurring import RecurringTransactions
from domain.errors import LedgerError, RecurringTransactionCancelled, RecurringTransactionNotFound
from domain.recurring import Schedule
from infrastructure.jobs import JobResult
from projections.read_models.encoding import month_of
from projections.following.follower import read_tracking
from projections.read_models.monthly import recompute_month
from projections.jobs.reconcile import reconcile
from projections.read_models.recurring import recurring_progress
from projections.read_models.recurring_queries import DueSchedule, RecurringReadModel
from projections.following.registry import MONTHLY_SNAPSHOTS

log = logging.getLogger("invario.jobs")

MONTHLY_SNAPSHOT = "monthly_snapshot"
RECONCILE = "reconcile"
RECURRING = "recurring_transactions"
JOB_NAMES = (MONTHLY_SNAPSHOT, RECONCILE, RECURRING)
SCHEDULES_PAGE = 200
# How often the worker's loop looks at the job table; jobs themselves run on their schedules.
TICK_SECONDS_MAX = 30.0


# --- monthly snapshots and reconciliation -----------------------------------------------------


def previous_month(now: datetime) -> str:
    return month_of(now.date().replace(day=1) - timedelta(days=1))


def snapshot_previous_month(engine: Engine, now: datetime) -> JobResult:
    """Recompute (and so seal) the month before ``now`` for every tenant; a second run corrects nothing."""
    month = previous_month(now)
    with engine.connect() as connection:
        if read_tracking(connection, [MONTHLY_SNAPSHOTS])[MONTHLY_SNAPSHOTS].position == 0:
            return JobResult(f"month {month}: nothing projected yet")
    position, corrections = recompute_month(engine, month)
    return JobResult(f"month {month} at position {position}: {len(corrections)} row(s) corrected")


def reconcile_daily(ledger: Ledger, engine: Engine) -> JobResult:
    """Reconcile every read model; divergences are logged and counted by ``reconcile`` itself."""
    report = reconcile(ledger, engine)
    found = len(report.divergences)
    if found:
        log.error("reconciliation found %d divergence(s) at position %d", found, report.position,
                  extra={"event": "reconciliation_diverged", "divergences": found, "position": report.position})
    return JobResult(f"position {report.position}: {report.accounts_checked} accounts, {found} divergence(s)")


# --- recurring transactions ----------------------------------------------------------------------


class RecurringRunner:
    """Posts every run that is due, each exactly once, at most ``runs_max`` per cycle.

    ``invario_recurring_progress`` remembers each schedule's next run date. A run
    is posted under its deterministic external id *before* the progress moves,
    so a crash between the two makes the next cycle post it again, which the
    ledger answers with a replay: nothing is posted twice.
    """

    def __init__(self, engine: Engine, service: RecurringTransactions, schedules: RecurringReadModel,
                 runs_max: int) -> None:
        self.engine = engine
        self.service = service
        self.schedules = schedules
        self.runs_max = runs_max

    def run(self, now: datetime) -> JobResult:
        today = now.astimezone(timezone.utc).date()
        budget, posted, rejected, after = self.runs_max, 0, 0, ""
        while budget > 0:
            page = self.schedules.due_after(after, today, SCHEDULES_PAGE)
            for due in page:
                done, new, refused = self._catch_up(due, today, budget)
                budget, posted, rejected = budget - done, posted + new, rejected + refused
                if budget == 0:
                    break
            if len(page) < SCHEDULES_PAGE:
                break
            after = str(page[-1].view.id)
        detail = f"{posted} run(s) posted, {rejected} rejected"
        return JobResult(detail + (" (more due: continuing next cycle)" if budget == 0 else ""), more=budget == 0)

    def _catch_up(self, due: DueSchedule, today: date, budget: int) -> tuple[int, int, int]:
        """Post the schedule's due runs (at most ``budget``): (runs handled, posted, rejected)."""
        view = due.view
        schedule = Schedule(view.frequency, view.weekday, view.day_of_month)
        first = due.next_run_date
        last = min(today, view.end_date) if view.end_date is not None else today
        handled = posted = rejected = 0
        if first > last:
            return 0, 0, 0
        for run_date in schedule.runs_between(first, last):
            if handled == budget:
                break
            try:
                recorded = self.service.run(view.tenant_id, view.id, run_date)
                posted += 0 if recorded.replayed else 1
            except (RecurringTransactionCancelled, RecurringTransactionNotFound):
                break  # the read model is behind a cancellation: nothing more is due
            except LedgerError as error:
                # A business rejection (a closed account, a suspended tenant) does not get better by
                # retrying this run forever: it is logged, counted, and the schedule moves on.
                rejected += 1
                log.warning("recurring run %s of %s rejected: %s", run_date, view.id, error.code,
                            extra={"event": "recurring_run_rejected", "recurring_transaction_id": str(view.id),
                                   "tenant_id": str(view.tenant_id), "run_date": run_date.isoformat(),
                                   "code": error.code})
            handled += 1
            self._save_next_run_date(view.id, schedule.first_on_or_after(run_date + timedelta(days=1)))
        return handled, posted, rejected

    def _save_next_run_date(self, recurring_id: UUID, next_run_date: date) -> None:
        values = {"next_run_date": next_run_date, "updated_at": datetime.now(timezone.utc)}
        with self.engine.begin() as connection:
            key = recurring_progress.c.recurring_id == str(recurring_id)
            if connection.execute(update(recurring_progress).where(key).values(**values)).rowcount == 0:
                connection.execute(insert(recurring_progress).values(recurring_id=str(recurring_id), **values))
