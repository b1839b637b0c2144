"""``invario jobs status|run`` in-process (typer's CliRunner), on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from typer.testing import CliRunner, Result

from infrastructure.settings import get_settings
from interfaces.cli.main import app


def invoke(url: str, *args: str, **env: str) -> Result:
    get_settings.cache_clear()  # settings are read once per process; each invocation is a new "process"
    try:
        return CliRunner().invoke(app, list(args), env={"INVARIO_DATABASE_URL": url, **env})
    finally:
        get_settings.cache_clear()


def test_status_before_and_after_a_run(database_url: str) -> None:
    assert invoke(database_url, "migrate").exit_code == 0
    before = invoke(database_url, "jobs", "status")
    assert before.exit_code == 0, before.output
    for name in ("monthly_snapshot", "reconcile", "recurring_transactions"):
        assert name in before.output
    assert "never run" in before.output and "due now" in before.output
    assert "cron '30 2 * * *' (UTC)" in before.output

    ran = invoke(database_url, "jobs", "run", "reconcile")
    assert ran.exit_code == 0, ran.output
    assert "job reconcile succeeded" in ran.output and "0 divergence(s)" in ran.output

    after = json.loads(invoke(database_url, "jobs", "status", "--json").output)
    jobs = {job["job"]: job for job in after["jobs"]}
    reconcile = jobs["reconcile"]
    assert reconcile["outcome"] == "succeeded" and reconcile["duration_seconds"] is not None
    assert reconcile["next_run_at"].endswith("02:30:00+00:00") and reconcile["due"] is False
    assert jobs["monthly_snapshot"]["outcome"] == "never run"
    table = invoke(database_url, "jobs", "status").output
    assert "succeeded" in table and "02:30:00" in table


def test_schedules_are_configurable(sqlite_database_url: str) -> None:
    shown = invoke(sqlite_database_url, "jobs", "status", INVARIO_JOB_RECONCILE_SCHEDULE="15 4 * * 1")
    assert shown.exit_code == 0 and "cron '15 4 * * 1' (UTC)" in shown.output


def test_bad_schedule_and_unknown_job_are_one_line(sqlite_database_url: str) -> None:
    bad = invoke(sqlite_database_url, "jobs", "status", INVARIO_JOB_MONTHLY_SNAPSHOT_SCHEDULE="monthly")
    assert bad.exit_code == 2
    assert "INVARIO_JOB_MONTHLY_SNAPSHOT_SCHEDULE" in bad.output and "Traceback" not in bad.output
    unknown = invoke(sqlite_database_url, "jobs", "run", "nope")
    assert unknown.exit_code == 2 and "no job named 'nope'" in unknown.output
