"""Scheduled jobs: when each is due, the lock that lets one worker run it, and the record of its runs.

A job is a name, a schedule (a cron expression, or an interval) and a function
of "now". ``JobRunner.run_due()`` runs each job that is due, each under its own
lock: on PostgreSQL a session advisory lock (``pg_try_advisory_lock``) on a key
derived from the job's name, so that however many workers run, one runs a job
at a time; a worker that finds the lock taken skips the job and counts
``job_lock_contended_total{job}``. On SQLite (one process) there is no lock.

Under the lock the job's row in ``invario_job_runs`` is read again, so a job a
worker has just finished is not run again by the next one. A run that fails is
logged (``event=job_failed``), counted (``job_failures_total{job}``) and due
again ``retry_seconds`` later; a run that succeeds is due at its schedule's
next moment after now. So runs missed while no worker ran are made up once,
not once per missed moment. See docs/jobs.md.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from sqlalchemy import Column, Connection, DateTime, Engine, Float, Integer, String, Table, Text, insert, select
from sqlalchemy import text, update

from infrastructure.schema import metadata
from infrastructure.telemetry import instruments, job_scheduled

log = logging.getLogger("invario.jobs")

RUNNING, SUCCEEDED, FAILED = "running", "succeeded", "failed"
CONTENDED, NOT_DUE = "contended", "not_due"
RETRY_SECONDS_DEFAULT = 60.0
DETAIL_LENGTH_MAX = 500
_LOCK_NAMESPACE = "invario.job:"

job_runs = Table(
    "invario_job_runs",
    metadata,
    Column("job", String(64), primary_key=True),
    Column("started_at", DateTime(timezone=True), nullable=True),
    Column("finished_at", DateTime(timezone=True), nullable=True),
    Column("duration_seconds", Float, nullable=True),
    Column("outcome", String(16), nullable=False),
    Column("detail", Text, nullable=True),
    Column("last_success_at", DateTime(timezone=True), nullable=True),
    Column("next_run_at", DateTime(timezone=True), nullable=True),
    Column("failures", Integer, nullable=False, server_default="0"),
)


# --- schedules ----------------------------------------------------------------------------------


def check_cron(expression: str) -> str:
    """The expression, if it is a valid five-field cron expression (UTC); else ValueError saying why."""
    from croniter import croniter

    cleaned = " ".join(str(expression).split())
    if len(cleaned.split(" ")) != 5 or not croniter.is_valid(cleaned):  # noqa: PLR2004
        raise ValueError(f"{expression!r} is not a cron expression of five fields (minute hour day-of-month "
                         "month day-of-week, in UTC), e.g. '0 1 1 * *' for 01:00 on the 1st of each month")
    return cleaned


@dataclass(frozen=True)
class CronSchedule:
    expression: str

    def next_after(self, moment: datetime) -> datetime:
        from croniter import croniter

        return croniter(self.expression, _utc(moment)).get_next(datetime)

    def describe(self) -> str:
        return f"cron '{self.expression}' (UTC)"


@dataclass(frozen=True)
class IntervalSchedule:
    seconds: float

    def next_after(self, moment: datetime) -> datetime:
        return _utc(moment) + timedelta(seconds=self.seconds)

    def describe(self) -> str:
        return f"every {self.seconds:g} s"


@dataclass(frozen=True)
class JobResult:
    """What a run did (``detail``, one line for ``jobs status``); ``more``: bounded work is left, run again soon."""

    detail: str = ""
    more: bool = False


@dataclass(frozen=True)
class Job:
    name: str
    schedule: CronSchedule | IntervalSchedule
    run: Callable[[datetime], JobResult]


@dataclass(frozen=True)
class JobState:
    """A job's row in ``invario_job_runs`` (all None when it never ran)."""

    job: str
    outcome: str | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    duration_seconds: float | None = None
    detail: str | None = None
    last_success_at: datetime | None = None
    next_run_at: datetime | None = None
    failures: int = 0

    def due(self, now: datetime) -> bool:
        """Never run (or never finished a run) counts as missed: due at once."""
        return self.next_run_at is None or _utc(self.next_run_at) <= _utc(now)


# --- the lock -----------------------------------------------------------------------------------


def lock_key(job: str) -> int:
    """A stable signed 64-bit advisory lock key for ``job`` (the same in every process and release)."""
    digest = hashlib.sha256((_LOCK_NAMESPACE + job).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


@contextmanager
def job_lock(engine: Engine, job: str) -> Iterator[bool]:
    """Yield whether this process holds ``job``'s lock; it is held until the block ends.

    A session lock on its own autocommit connection: the job's own transactions
    commit independently, and if this process dies the server drops the
    connection and with it the lock. SQLite is one process: always True.
    """
    if engine.dialect.name != "postgresql":
        yield True
        return
    key = lock_key(job)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        taken = bool(connection.execute(text("SELECT pg_try_advisory_lock(:key)"), {"key": key}).scalar())
        if not taken:
            yield False
            return
        try:
            yield True
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


# --- running ------------------------------------------------------------------------------------


def read_job_states(engine: Engine, names: Sequence[str]) -> dict[str, JobState]:
    with engine.connect() as connection:
        return _states(connection, names)


def _states(connection: Connection, names: Sequence[str]) -> dict[str, JobState]:
    rows = connection.execute(select(job_runs).where(job_runs.c.job.in_(list(names)))).all()
    found = {row.job: JobState(**row._asdict()) for row in rows}
    return {name: found.get(name, JobState(name)) for name in names}


class JobRunner:
    """Runs jobs that are due (or one job on demand), each under its lock, and records every run."""

    def __init__(self, engine: Engine, jobs: Sequence[Job], clock: Callable[[], datetime] | None = None,
                 retry_seconds: float = RETRY_SECONDS_DEFAULT) -> None:
        assert len({job.name for job in jobs}) == len(jobs)
        self.engine = engine
        self.jobs = {job.name: job for job in jobs}
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.retry_seconds = retry_seconds

    def run_due(self) -> dict[str, str]:
        """One cycle: each job that is due runs (or is skipped, if another worker holds it); its outcome."""
        outcomes = {}
        states = read_job_states(self.engine, list(self.jobs))
        for name, state in states.items():
            if state.due(self.clock()):
                outcomes[name] = self._run_locked(self.jobs[name], only_if_due=True)
        self._publish_next_runs()
        return outcomes

    def run_now(self, name: str) -> str:
        """Run ``name`` now, whether due or not, under the same lock (``invario jobs run``)."""
        outcome = self._run_locked(self.jobs[name], only_if_due=False)
        self._publish_next_runs()
        return outcome

    def _run_locked(self, job: Job, *, only_if_due: bool) -> str:
        with job_lock(self.engine, job.name) as held:
            if not held:
                instruments().job_lock_contended.add(1, {"job": job.name})
                log.info("job %s skipped: another worker holds its lock", job.name,
                         extra={"event": "job_lock_contended", "job": job.name})
                return CONTENDED
            # Another worker may have run it between our look at the table and taking the lock.
            if only_if_due and not read_job_states(self.engine, [job.name])[job.name].due(self.clock()):
                return NOT_DUE
            return self._execute(job)

    def _execute(self, job: Job) -> str:
        started_at = self.clock()
        self._write(job.name, outcome=RUNNING, started_at=started_at)
        began = time.perf_counter()
        try:
            result = job.run(started_at)
        except Exception as exc:  # a job must never take the worker down; it is retried
            return self._failed(job, started_at, time.perf_counter() - began, exc)
        duration = time.perf_counter() - began
        finished_at = self.clock()
        next_run_at = finished_at if result.more else job.schedule.next_after(finished_at)
        self._write(job.name, outcome=SUCCEEDED, finished_at=finished_at, duration_seconds=duration,
                    detail=result.detail[:DETAIL_LENGTH_MAX], last_success_at=finished_at, next_run_at=next_run_at,
                    failures=0)
        instruments().job_duration.record(duration, {"job": job.name})
        log.info("job %s succeeded in %.3f s: %s", job.name, duration, result.detail,
                 extra={"event": "job_succeeded", "job": job.name, "duration_seconds": round(duration, 6),
                        "detail": result.detail, "more": result.more})
        return SUCCEEDED

    def _failed(self, job: Job, started_at: datetime, duration: float, exc: Exception) -> str:
        detail = f"{type(exc).__name__}: {' '.join(str(exc).split())}"[:DETAIL_LENGTH_MAX]
        instruments().job_failures.add(1, {"job": job.name})
        instruments().job_duration.record(duration, {"job": job.name})
        finished_at = self.clock()
        retry_at = finished_at + timedelta(seconds=self.retry_seconds)
        log.debug("job %s failed", job.name, exc_info=exc)  # the traceback, for whoever turns DEBUG on
        log.error("job %s failed (retrying at %s): %s", job.name, retry_at.isoformat(), detail,
                  extra={"event": "job_failed", "job": job.name, "error": detail, "retry_at": retry_at.isoformat(),
                         "started_at": started_at.isoformat()})
        try:
            failures = read_job_states(self.engine, [job.name])[job.name].failures + 1
            self._write(job.name, outcome=FAILED, finished_at=finished_at, duration_seconds=duration, detail=detail,
                        next_run_at=retry_at, failures=failures)
        except Exception:  # noqa: BLE001 - the database may be what failed; the retry comes anyway
            log.warning("could not record the failure of job %s", job.name)
        return FAILED

    def _write(self, name: str, **values: Any) -> None:
        with self.engine.begin() as connection:
            changed = connection.execute(update(job_runs).where(job_runs.c.job == name).values(**values)).rowcount
            if changed == 0:
                connection.execute(insert(job_runs).values(job=name, **values))

    def _publish_next_runs(self) -> None:
        now = self.clock()
        for name, state in read_job_states(self.engine, list(self.jobs)).items():
            job_scheduled(name, _utc(state.next_run_at or now).timestamp())


class JobScheduler:
    """The hook of ``invario worker``: every ``tick_seconds`` it runs the due jobs, in a thread of their own.

    It has a follower's interface, so the worker's loop calls it between
    follower batches; the jobs run beside the followers, not in their way (a
    reconciliation of a large ledger takes minutes). One cycle at a time.
    """

    name = "jobs"

    def __init__(self, runner: JobRunner, tick_seconds: float) -> None:
        self.runner = runner
        self.tick_seconds = tick_seconds
        self._next_tick = 0.0
        self._cycle: threading.Thread | None = None

    def process_batch(self) -> int:
        """Start a cycle if one is due and none is running; 0 always, so the worker's loop idles."""
        if self._cycle is not None and self._cycle.is_alive():
            return 0
        if time.monotonic() < self._next_tick:
            return 0
        self._next_tick = time.monotonic() + self.tick_seconds
        # A daemon: a worker that stops mid-job leaves the job to be run again (every job is idempotent).
        self._cycle = threading.Thread(target=self._run_cycle, name="invario-jobs", daemon=True)
        self._cycle.start()
        return 0

    def _run_cycle(self) -> None:
        try:
            self.runner.run_due()
        except Exception as exc:  # noqa: BLE001 - the database may be down: the next tick tries again
            instruments().job_failures.add(1, {"job": self.name})
            self.record_error(f"{type(exc).__name__}: {' '.join(str(exc).split())[:DETAIL_LENGTH_MAX]}")

    def join(self, timeout_seconds: float) -> None:
        if self._cycle is not None:
            self._cycle.join(timeout_seconds)

    def record_error(self, message: str, names: object = None) -> None:  # noqa: ARG002
        log.error("job scheduler failed: %s", message, extra={"event": "job_scheduler_failed", "error": message})


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)
