"""Recurring schedules and the recurring transaction aggregate: no I/O."""

from __future__ import annotations

from datetime import date, datetime, timezone
from uuid import uuid4

import pytest

from domain.errors import InvalidRecurringTransaction, RecurringTransactionCancelled, TransactionUnbalanced
from domain.recurring import RecurringTransaction, Schedule, run_external_id
from domain.transaction import Posting, check_external_id
from infrastructure.jobs import CronSchedule, IntervalSchedule, JobState, check_cron

A, B = uuid4(), uuid4()
TODAY = date(2026, 1, 15)
LEGS = (Posting(A, 100, "BRL"), Posting(B, -100, "BRL"))


def test_daily_weekly_and_monthly_runs() -> None:
    assert list(Schedule("daily").runs_between(date(2026, 2, 27), date(2026, 3, 2))) == [
        date(2026, 2, 27), date(2026, 2, 28), date(2026, 3, 1), date(2026, 3, 2)]
    fridays = list(Schedule("weekly", weekday="friday").runs_between(date(2026, 11, 1), date(2026, 11, 30)))
    assert fridays == [date(2026, 11, 6), date(2026, 11, 13), date(2026, 11, 20), date(2026, 11, 27)]


def test_monthly_on_day_n_is_clamped_to_the_month_end() -> None:
    runs = list(Schedule("monthly", day_of_month=31).runs_between(date(2024, 1, 1), date(2024, 5, 31)))
    assert runs == [date(2024, 1, 31), date(2024, 2, 29), date(2024, 3, 31), date(2024, 4, 30), date(2024, 5, 31)]
    assert list(Schedule("monthly", day_of_month=30).runs_between(date(2026, 2, 1), date(2026, 3, 31))) == [
        date(2026, 2, 28), date(2026, 3, 30)]


@pytest.mark.parametrize(("frequency", "weekday", "day"), [
    ("hourly", None, None), ("weekly", None, None), ("weekly", "friyay", None), ("monthly", None, None),
    ("monthly", None, 0), ("monthly", None, 32), ("daily", "monday", None), ("daily", None, 3),
])
def test_bad_schedules_are_refused(frequency: str, weekday: str | None, day: int | None) -> None:
    with pytest.raises(InvalidRecurringTransaction):
        Schedule(frequency, weekday, day)


def test_create_cancel_and_run_dates() -> None:
    recurring = RecurringTransaction.create(uuid4(), Schedule("daily"), date(2026, 1, 1), LEGS, "fee",
                                            end_date=date(2026, 1, 31), today=TODAY)
    external_id = recurring.check_run(date(2026, 1, 5))
    assert external_id == run_external_id(recurring.id, date(2026, 1, 5)) == check_external_id(external_id)
    for outside in (date(2025, 12, 31), date(2026, 2, 1)):
        with pytest.raises(InvalidRecurringTransaction):
            recurring.check_run(outside)
    recurring.cancel()
    with pytest.raises(RecurringTransactionCancelled):
        recurring.cancel()
    with pytest.raises(RecurringTransactionCancelled):
        recurring.check_run(date(2026, 1, 6))
    assert [type(e).__name__ for e in recurring.collect_events()] == ["Created", "Cancelled"]


def test_templates_must_balance_and_dates_be_ordered() -> None:
    with pytest.raises(TransactionUnbalanced):
        RecurringTransaction.create(uuid4(), Schedule("daily"), date(2026, 1, 1),
                                    (Posting(A, 100, "BRL"), Posting(B, -99, "BRL")), today=TODAY)
    with pytest.raises(InvalidRecurringTransaction):
        RecurringTransaction.create(uuid4(), Schedule("daily"), date(2026, 1, 2), LEGS, end_date=date(2026, 1, 1),
                                    today=TODAY)
    for start in (date(2024, 12, 31), date(2037, 1, 1), date(1, 1, 1)):  # too far back, too far ahead
        with pytest.raises(InvalidRecurringTransaction, match="start_date"):
            RecurringTransaction.create(uuid4(), Schedule("daily"), start, LEGS, today=TODAY)


def test_cron_schedules_and_due_times() -> None:
    assert check_cron("  0 1  1 * * ") == "0 1 1 * *"
    for bad in ("daily", "0 1 1 *", "61 1 * * *", "0 1 1 * * *"):
        with pytest.raises(ValueError, match="cron expression"):
            check_cron(bad)
    now = datetime(2026, 3, 1, 1, 0, 5, tzinfo=timezone.utc)
    assert CronSchedule("0 1 1 * *").next_after(now) == datetime(2026, 4, 1, 1, 0, tzinfo=timezone.utc)
    assert IntervalSchedule(60).next_after(now) == datetime(2026, 3, 1, 1, 1, 5, tzinfo=timezone.utc)
    assert JobState("x").due(now)
    assert not JobState("x", next_run_at=datetime(2026, 3, 1, 1, 1, tzinfo=timezone.utc)).due(now)
