"""Scheduled jobs on SQLite and PostgreSQL: recurring catch-up, failures and retries, the lock.

The clock is fake: "the worker was down for N days" is a clock moved N days on.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable
from datetime import date, datetime, timedelta, timezone
from typing import Any
from uuid import UUID

import pytest

from application.recurring import RecurringTransactions
from domain.account import Account
from domain.recurring import Schedule, run_external_id
from infrastructure import jobs as jobs_module
from infrastructure.runtime import Runtime
from infrastructure.jobs import (
    CONTENDED, FAILED, NOT_DUE, SUCCEEDED, IntervalSchedule, Job, JobResult, JobRunner, read_job_states,
)
from infrastructure.migrate import upgrade_to_head
from interfaces.bootstrap import build_followers, build_job_runner
from projections.jobs.scheduled_jobs import RECURRING
from tests.integration.conftest import OpenRuntime
from tests.integration.helpers import leg

START = date(2026, 3, 1)
NOON = datetime(2026, 3, 1, 12, 0, tzinfo=timezone.utc)


class FakeClock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta: float) -> None:
        self.now += timedelta(**delta)


class Recording:
    """Stands in for an OpenTelemetry counter or histogram: remembers each call by job."""

    def __init__(self) -> None:
        self.by_job: Counter[str] = Counter()

    def add(self, amount: float, attributes: dict[str, str]) -> None:
        self.by_job[attributes["job"]] += int(amount)

    def record(self, _value: float, attributes: dict[str, str]) -> None:
        self.by_job[attributes["job"]] += 1


class FakeInstruments:
    def __init__(self) -> None:
        self.job_failures, self.job_lock_contended, self.job_duration = Recording(), Recording(), Recording()


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> FakeInstruments:
    fake = FakeInstruments()
    monkeypatch.setattr(jobs_module, "instruments", lambda: fake)
    return fake


def ready(open_rt: OpenRuntime, url: str, **settings: Any) -> Runtime:
    runtime = open_rt(url, **settings)
    upgrade_to_head(runtime.engine)
    runtime.ledger.clock = lambda: NOON  # "today" for the schedules created (their start_date is checked)
    return runtime


def catch_up(runtime: Runtime) -> None:
    for follower in build_followers(runtime):
        follower.catch_up()


def book(runtime: Runtime) -> tuple[UUID, UUID, UUID]:
    ledger = runtime.ledger
    tenant_id = ledger.create_tenant("acme").aggregate.id
    cash = ledger.open_account(tenant_id, "cash", "Cash", "BRL", "asset").aggregate.id
    rent = ledger.open_account(tenant_id, "rent", "Rent", "BRL", "expense").aggregate.id
    return tenant_id, cash, rent


def balances(runtime: Runtime, *account_ids: UUID) -> list[int]:
    found = []
    for account_id in account_ids:
        account = runtime.ledger.repository.get(account_id)
        assert isinstance(account, Account)
        found.append(account.balance_minor)
    return found


# --- recurring catch-up -------------------------------------------------------------------------


def test_missed_runs_catch_up_exactly_once(database_url: str, open_rt: OpenRuntime, counted: FakeInstruments) -> None:
    runtime = ready(open_rt, database_url)
    tenant_id, cash, rent = book(runtime)
    recurring = RecurringTransactions(runtime.ledger).create(
        tenant_id, Schedule("daily"), START, [leg(rent, "12.50"), leg(cash, "-12.50")], "daily fee").aggregate
    catch_up(runtime)
    clock = FakeClock(NOON)
    runner = build_job_runner(runtime, clock)

    clock.advance(days=9)  # the worker was down: runs of March 1st to 10th are due
    assert runner.run_due()[RECURRING] == SUCCEEDED
    assert balances(runtime, rent, cash) == [10 * 1250, -10 * 1250]
    for day in range(1, 11):
        external_id = run_external_id(recurring.id, date(2026, 3, day))
        assert runtime.ledger.repository.get(_transaction_id(tenant_id, external_id)).effective_date.day == day
    assert "10 run(s) posted" in read_job_states(runtime.engine, [RECURRING])[RECURRING].detail

    assert runner.run_now(RECURRING) == SUCCEEDED  # a second cycle: nothing more is due
    assert balances(runtime, rent, cash) == [10 * 1250, -10 * 1250]
    assert runner.run_due() == {}  # and nothing is due before the interval has passed

    clock.advance(days=1)
    assert runner.run_due()[RECURRING] == SUCCEEDED
    assert balances(runtime, rent, cash) == [11 * 1250, -11 * 1250]


def test_catch_up_is_bounded_per_cycle_and_resumes(database_url: str, open_rt: OpenRuntime,
                                                   counted: FakeInstruments) -> None:
    runtime = ready(open_rt, database_url, job_recurring_runs_per_cycle_max=4)
    tenant_id, cash, rent = book(runtime)
    RecurringTransactions(runtime.ledger).create(
        tenant_id, Schedule("weekly", weekday="monday"), START, [leg(rent, "100"), leg(cash, "-100")])
    catch_up(runtime)
    clock = FakeClock(datetime(2026, 4, 30, 9, 0, tzinfo=timezone.utc))  # Mondays: Mar 2..Apr 27 = 9 runs
    runner = build_job_runner(runtime, clock)
    assert runner.run_due()[RECURRING] == SUCCEEDED
    assert balances(runtime, rent) == [4 * 10000]
    state = read_job_states(runtime.engine, [RECURRING])[RECURRING]
    assert state.due(clock())  # bounded work left: due again at once
    runner.run_due()
    runner.run_due()
    assert balances(runtime, rent) == [9 * 10000]
    runner.run_now(RECURRING)
    assert balances(runtime, rent) == [9 * 10000]


def test_cancelled_schedule_posts_nothing_more(database_url: str, open_rt: OpenRuntime,
                                               counted: FakeInstruments) -> None:
    runtime = ready(open_rt, database_url)
    tenant_id, cash, rent = book(runtime)
    service = RecurringTransactions(runtime.ledger)
    recurring = service.create(tenant_id, Schedule("monthly", day_of_month=31), START,
                               [leg(rent, "5"), leg(cash, "-5")]).aggregate
    catch_up(runtime)
    clock = FakeClock(datetime(2026, 4, 30, 23, 0, tzinfo=timezone.utc))  # Mar 31 and Apr 30 (clamped)
    runner = build_job_runner(runtime, clock)
    runner.run_due()
    assert balances(runtime, rent) == [1000]
    service.cancel(tenant_id, recurring.id)
    catch_up(runtime)
    clock.advance(days=62)
    runner.run_due()
    assert balances(runtime, rent) == [1000]


def test_a_rejected_run_is_logged_and_skipped(database_url: str, open_rt: OpenRuntime, counted: FakeInstruments,
                                              caplog: pytest.LogCaptureFixture) -> None:
    runtime = ready(open_rt, database_url)
    tenant_id, cash, rent = book(runtime)
    RecurringTransactions(runtime.ledger).create(tenant_id, Schedule("daily"), START,
                                                 [leg(rent, "1"), leg(cash, "-1")])
    runtime.ledger.freeze_account(tenant_id, cash)
    catch_up(runtime)
    runner = build_job_runner(runtime, FakeClock(NOON + timedelta(days=1)))
    with caplog.at_level(logging.WARNING, logger="invario.jobs"):
        assert runner.run_due()[RECURRING] == SUCCEEDED
    assert balances(runtime, rent, cash) == [0, 0]
    rejected = [r for r in caplog.records if getattr(r, "event", None) == "recurring_run_rejected"]
    assert [r.code for r in rejected] == ["account_frozen", "account_frozen"]


def _transaction_id(tenant_id: UUID, external_id: str) -> UUID:
    from domain.ids import transaction_id_for

    return transaction_id_for(tenant_id, external_id)


# --- failures and retries -----------------------------------------------------------------------


def flaky(failures: int) -> tuple[Callable[[datetime], JobResult], list[datetime]]:
    calls: list[datetime] = []

    def run(now: datetime) -> JobResult:
        calls.append(now)
        if len(calls) <= failures:
            raise RuntimeError("the disk is on fire")
        return JobResult("done")

    return run, calls


def test_a_failed_job_is_logged_counted_and_retried_next_cycle(
    database_url: str, open_rt: OpenRuntime, counted: FakeInstruments, caplog: pytest.LogCaptureFixture,
) -> None:
    runtime = ready(open_rt, database_url)
    run, calls = flaky(failures=1)
    clock = FakeClock(NOON)
    runner = JobRunner(runtime.engine, [Job("flaky", IntervalSchedule(3600), run)], clock=clock, retry_seconds=60)
    with caplog.at_level(logging.ERROR, logger="invario.jobs"):
        assert runner.run_due() == {"flaky": FAILED}
    failed = [r for r in caplog.records if getattr(r, "event", None) == "job_failed"]
    assert len(failed) == 1 and failed[0].job == "flaky" and "disk is on fire" in failed[0].error
    assert counted.job_failures.by_job["flaky"] == 1
    state = read_job_states(runtime.engine, ["flaky"])["flaky"]
    assert (state.outcome, state.failures) == (FAILED, 1)
    assert "RuntimeError: the disk is on fire" in (state.detail or "")

    clock.advance(seconds=30)
    assert runner.run_due() == {}  # not before the retry pause
    clock.advance(seconds=31)
    assert runner.run_due() == {"flaky": SUCCEEDED}
    state = read_job_states(runtime.engine, ["flaky"])["flaky"]
    assert (state.outcome, state.failures, state.detail) == (SUCCEEDED, 0, "done")
    assert state.next_run_at is not None and state.next_run_at.replace(tzinfo=timezone.utc) == clock() + timedelta(
        seconds=3600)
    assert len(calls) == 2 and counted.job_failures.by_job["flaky"] == 1


# --- the lock: two workers ----------------------------------------------------------------------


@pytest.mark.postgres
def test_two_workers_contend_for_one_job(pg_database_url: str, open_rt: OpenRuntime,
                                         counted: FakeInstruments) -> None:
    first, second = ready(open_rt, pg_database_url), open_rt(pg_database_url)  # two engines: two connections
    started, release = threading.Event(), threading.Event()
    runs: list[str] = []

    def slow(_now: datetime) -> JobResult:
        runs.append(threading.current_thread().name)
        started.set()
        assert release.wait(30)
        return JobResult("slow")

    clock = FakeClock(NOON)
    worker_a = JobRunner(first.engine, [Job("nightly", IntervalSchedule(86_400), slow)], clock=clock)
    worker_b = JobRunner(second.engine, [Job("nightly", IntervalSchedule(86_400), slow)], clock=clock)
    outcomes: dict[str, str] = {}
    thread = threading.Thread(target=lambda: outcomes.update(worker_a.run_due()), name="worker-a")
    thread.start()
    try:
        assert started.wait(30)
        assert worker_b.run_due() == {"nightly": CONTENDED}  # the job is due, but worker A holds the lock
        assert worker_b.run_now("nightly") == CONTENDED  # on demand too
        assert counted.job_lock_contended.by_job["nightly"] == 2
    finally:
        release.set()
        thread.join(30)
    assert outcomes == {"nightly": SUCCEEDED}
    assert worker_b.run_due() == {}  # worker A's run counts for both: not due again
    assert runs == ["worker-a"]


@pytest.mark.postgres
def test_a_worker_that_took_the_lock_late_does_not_run_again(pg_database_url: str, open_rt: OpenRuntime,
                                                             counted: FakeInstruments) -> None:
    runtime = ready(open_rt, pg_database_url)
    runs: list[datetime] = []
    clock = FakeClock(NOON)
    job = Job("nightly", IntervalSchedule(86_400), lambda now: runs.append(now) or JobResult())
    worker_a, worker_b = JobRunner(runtime.engine, [job], clock=clock), JobRunner(runtime.engine, [job], clock=clock)
    assert worker_a.run_due() == {"nightly": SUCCEEDED}
    assert worker_b._run_locked(job, only_if_due=True) == NOT_DUE  # noqa: SLF001 - its look at the table was stale
    assert len(runs) == 1


def test_lock_keys_are_stable_and_distinct() -> None:
    assert jobs_module.lock_key("reconcile") == jobs_module.lock_key("reconcile")
    assert len({jobs_module.lock_key(n) for n in ("monthly_snapshot", "reconcile", "recurring_transactions")}) == 3
    assert -(2**63) <= jobs_module.lock_key("reconcile") < 2**63


def test_the_worker_hook_runs_due_jobs_beside_the_followers(sqlite_database_url: str, open_rt: OpenRuntime,
                                                            counted: FakeInstruments) -> None:
    from infrastructure.jobs import JobScheduler

    runtime = ready(open_rt, sqlite_database_url)
    runs: list[datetime] = []
    runner = JobRunner(runtime.engine, [Job("tick", IntervalSchedule(3600), lambda now: runs.append(now) or
                                            JobResult())], clock=FakeClock(NOON))
    scheduler = JobScheduler(runner, tick_seconds=3600)
    assert scheduler.process_batch() == 0
    scheduler.join(30)
    assert scheduler.process_batch() == 0  # the next tick is an hour away
    scheduler.join(30)
    assert len(runs) == 1


# --- monthly snapshots and reconciliation --------------------------------------------------------


def test_monthly_snapshot_job_seals_the_previous_month(database_url: str, open_rt: OpenRuntime,
                                                       counted: FakeInstruments) -> None:
    from sqlalchemy import update

    from projections.read_models.monthly import read_monthly_snapshots
    from projections.jobs.scheduled_jobs import MONTHLY_SNAPSHOT

    runtime = ready(open_rt, database_url)
    tenant_id, cash, rent = book(runtime)
    runtime.ledger.post_transaction(tenant_id, "feb-rent", date(2026, 2, 27), [leg(rent, "7"), leg(cash, "-7")])
    catch_up(runtime)
    with runtime.engine.begin() as connection:  # a snapshot row gone wrong
        connection.execute(update(read_monthly_snapshots).where(read_monthly_snapshots.c.month == "2026-02")
                           .values(closing_balance_minor=1))
    clock = FakeClock(datetime(2026, 3, 1, 1, 0, tzinfo=timezone.utc))
    runner = build_job_runner(runtime, clock)
    assert runner.run_due()[MONTHLY_SNAPSHOT] == SUCCEEDED
    state = read_job_states(runtime.engine, [MONTHLY_SNAPSHOT])[MONTHLY_SNAPSHOT]
    assert state.detail is not None and state.detail.startswith("month 2026-02") and "2 row(s) corrected" in state.detail
    assert state.next_run_at is not None and state.next_run_at.replace(tzinfo=timezone.utc) == datetime(
        2026, 4, 1, 1, 0, tzinfo=timezone.utc)
    with runtime.engine.connect() as connection:
        closing = connection.execute(read_monthly_snapshots.select().where(
            read_monthly_snapshots.c.month == "2026-02")).all()
    assert sorted(row.closing_balance_minor for row in closing) == [-700, 700]
    runner.run_now(MONTHLY_SNAPSHOT)
    assert "0 row(s) corrected" in (read_job_states(runtime.engine, [MONTHLY_SNAPSHOT])[MONTHLY_SNAPSHOT].detail or "")


def test_reconcile_job_logs_divergences(database_url: str, open_rt: OpenRuntime, counted: FakeInstruments,
                                        caplog: pytest.LogCaptureFixture) -> None:
    from sqlalchemy import update

    from projections.read_models.accounts import read_accounts
    from projections.jobs.scheduled_jobs import RECONCILE

    runtime = ready(open_rt, database_url)
    tenant_id, cash, rent = book(runtime)
    runtime.ledger.post_transaction(tenant_id, "t1", START, [leg(rent, "3"), leg(cash, "-3")])
    catch_up(runtime)
    runner = build_job_runner(runtime, FakeClock(NOON))
    assert runner.run_now(RECONCILE) == SUCCEEDED
    assert "0 divergence(s)" in (read_job_states(runtime.engine, [RECONCILE])[RECONCILE].detail or "")
    with runtime.engine.begin() as connection:
        connection.execute(update(read_accounts).where(read_accounts.c.account_id == str(rent))
                           .values(balance_minor=read_accounts.c.balance_minor + 1))
    with caplog.at_level(logging.ERROR):
        assert runner.run_now(RECONCILE) == SUCCEEDED
    events = [getattr(r, "event", None) for r in caplog.records]
    assert "snapshot_divergence" in events and "reconciliation_diverged" in events
    assert "0 divergence(s)" not in (read_job_states(runtime.engine, [RECONCILE])[RECONCILE].detail or "")


def test_lost_progress_replays_without_posting_twice(database_url: str, open_rt: OpenRuntime,
                                                     counted: FakeInstruments) -> None:
    """A crash between posting a run and saving the progress: the next cycle's re-post is a replay."""
    from projections.read_models.recurring import recurring_progress

    runtime = ready(open_rt, database_url)
    tenant_id, cash, rent = book(runtime)
    RecurringTransactions(runtime.ledger).create(tenant_id, Schedule("daily"), START,
                                                 [leg(rent, "2"), leg(cash, "-2")])
    catch_up(runtime)
    runner = build_job_runner(runtime, FakeClock(NOON + timedelta(days=4)))
    runner.run_now(RECURRING)
    assert balances(runtime, rent) == [5 * 200]
    with runtime.engine.begin() as connection:
        connection.execute(recurring_progress.delete())
    assert runner.run_now(RECURRING) == SUCCEEDED
    assert balances(runtime, rent) == [5 * 200]
    assert "0 run(s) posted" in (read_job_states(runtime.engine, [RECURRING])[RECURRING].detail or "")


def test_revision_0007_creates_exactly_the_declared_job_tables(database_url: str, open_rt: OpenRuntime) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from infrastructure.schema import metadata
    from projections.read_models.recurring import read_recurring_transactions, recurring_progress

    runtime = ready(open_rt, database_url)
    ours = {jobs_module.job_runs.name, recurring_progress.name, read_recurring_transactions.name}
    with runtime.engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = [d for d in compare_metadata(context, metadata) if any(f"'{n}'" in repr(d) for n in ours)]
    assert differences == []
