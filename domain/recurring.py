"""The recurring transaction: a tenant's standing order, as an event-sourced aggregate.

A schedule (``daily``; ``weekly`` on a weekday; ``monthly`` on day N, clamped to
the month's last day) and a template transaction (balanced postings in minor
units, description, metadata). Each run is posted as an ordinary transaction
whose ``external_id`` is derived from the schedule and the run's date
(``recurring:{id}:{YYYY-MM-DD}``), so posting a run twice replays the first:
runs missed while no worker ran catch up exactly once each (docs/jobs.md).

Only ``Created`` and ``Cancelled`` are events here: which runs were posted is
in the transactions themselves, never duplicated on this aggregate.
"""

from __future__ import annotations

import calendar
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any
from uuid import UUID, uuid4

from eventsourcing.domain import event

from domain.chain import ChainedAggregate
from domain.errors import InvalidRecurringTransaction, RecurringTransactionCancelled
from domain.metadata import check_metadata
from domain.transaction import Posting, check_description, check_postings

DAILY, WEEKLY, MONTHLY = "daily", "weekly", "monthly"
FREQUENCIES = (DAILY, WEEKLY, MONTHLY)
WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
ACTIVE, CANCELLED = "active", "cancelled"
# How far ahead the first run may be looked for: the longest gap between runs is a month.
_SEARCH_DAYS_MAX = 62
# A schedule may start this far back (its missed runs are posted at once) or ahead.
START_DAYS_BACK_MAX = 366
START_DAYS_AHEAD_MAX = 3660


@dataclass(frozen=True)
class Schedule:
    """When runs fall: every day, one weekday a week, or day N of each month (clamped)."""

    frequency: str
    weekday: str | None = None
    day_of_month: int | None = None

    def __post_init__(self) -> None:
        if self.frequency not in FREQUENCIES:
            raise InvalidRecurringTransaction(f"frequency must be one of {', '.join(FREQUENCIES)}", field="frequency")
        needs_weekday, needs_day = self.frequency == WEEKLY, self.frequency == MONTHLY
        if needs_weekday != (self.weekday is not None):
            raise InvalidRecurringTransaction("weekday is required for weekly schedules, and only for them",
                                              field="weekday")
        if needs_weekday and self.weekday not in WEEKDAYS:
            raise InvalidRecurringTransaction(f"weekday must be one of {', '.join(WEEKDAYS)}", field="weekday")
        if needs_day != (self.day_of_month is not None):
            raise InvalidRecurringTransaction("day_of_month is required for monthly schedules, and only for them",
                                              field="day_of_month")
        if needs_day and not (isinstance(self.day_of_month, int) and 1 <= self.day_of_month <= 31):  # noqa: PLR2004
            raise InvalidRecurringTransaction("day_of_month must be 1-31 (clamped to the month's last day)",
                                              field="day_of_month")

    def falls_on(self, day: date) -> bool:
        if self.frequency == DAILY:
            return True
        if self.frequency == WEEKLY:
            return WEEKDAYS[day.weekday()] == self.weekday
        assert self.day_of_month is not None
        last = calendar.monthrange(day.year, day.month)[1]
        return day.day == min(self.day_of_month, last)

    def first_on_or_after(self, day: date) -> date:
        for offset in range(_SEARCH_DAYS_MAX):
            candidate = day + timedelta(days=offset)
            if self.falls_on(candidate):
                return candidate
        raise AssertionError(f"{self} has no run within {_SEARCH_DAYS_MAX} days of {day}")

    def runs_between(self, first: date, last: date) -> Iterator[date]:
        """Every run date from ``first`` to ``last`` inclusive, in order (bound it with ``last``)."""
        day = self.first_on_or_after(first)
        while day <= last:
            yield day
            day = self.first_on_or_after(day + timedelta(days=1))


def run_external_id(recurring_id: UUID, run_date: date) -> str:
    """The external id of one run: the same run always maps to the same transaction."""
    return f"recurring:{recurring_id}:{run_date.isoformat()}"


class RecurringTransaction(ChainedAggregate):
    @classmethod
    def create(  # noqa: PLR0913
        cls,
        tenant_id: UUID,
        schedule: Schedule,
        start_date: date,
        postings: tuple[Posting, ...],
        description: str = "",
        metadata: dict[str, str] | None = None,
        end_date: date | None = None,
        *,
        today: date,
    ) -> RecurringTransaction:
        if not isinstance(start_date, date) or (end_date is not None and not isinstance(end_date, date)):
            raise InvalidRecurringTransaction("start_date and end_date are calendar dates (YYYY-MM-DD)",
                                              field="start_date")
        earliest, latest = today - timedelta(days=START_DAYS_BACK_MAX), today + timedelta(days=START_DAYS_AHEAD_MAX)
        if not earliest <= start_date <= latest:
            raise InvalidRecurringTransaction(
                f"start_date must be from {earliest} to {latest}: at most {START_DAYS_BACK_MAX} days back "
                f"(its missed runs are all posted) and {START_DAYS_AHEAD_MAX} days ahead", field="start_date")
        if end_date is not None and end_date < start_date:
            raise InvalidRecurringTransaction("end_date is before start_date", field="end_date")
        check_description(description, InvalidRecurringTransaction)
        check_postings(postings)
        return cls(
            id=uuid4(), tenant_id=tenant_id, frequency=schedule.frequency, weekday=schedule.weekday,
            day_of_month=schedule.day_of_month, start_date=start_date, end_date=end_date,
            postings=[p.to_event() for p in postings], description=description,
            metadata=check_metadata(metadata),
        )

    @event("Created")
    def __init__(  # noqa: PLR0913
        self,
        id: UUID,  # noqa: A002
        tenant_id: UUID,
        frequency: str,
        weekday: str | None,
        day_of_month: int | None,
        start_date: date,
        end_date: date | None,
        postings: list[dict[str, Any]],
        description: str,
        metadata: dict[str, str],
    ) -> None:
        self.tenant_id = tenant_id
        self.schedule = Schedule(frequency, weekday, day_of_month)
        self.start_date = start_date
        self.end_date = end_date
        self.postings = tuple(Posting.from_event(p) for p in postings)
        self.description = description
        self.metadata = dict(metadata)
        self.status = ACTIVE

    @property
    def is_cancelled(self) -> bool:
        return self.status == CANCELLED

    def cancel(self) -> None:
        if self.is_cancelled:
            raise RecurringTransactionCancelled(f"recurring transaction {self.id} is already cancelled",
                                                recurring_transaction_id=str(self.id))
        self._cancel()

    @event("Cancelled")
    def _cancel(self) -> None:
        self.status = CANCELLED

    def check_run(self, run_date: date) -> str:
        """The external id of the run on ``run_date``, if that is one of this schedule's runs."""
        if self.is_cancelled:
            raise RecurringTransactionCancelled(f"recurring transaction {self.id} is cancelled",
                                                recurring_transaction_id=str(self.id))
        in_range = run_date >= self.start_date and (self.end_date is None or run_date <= self.end_date)
        if not in_range or not self.schedule.falls_on(run_date):
            raise InvalidRecurringTransaction(f"{run_date} is not a run date of recurring transaction {self.id}",
                                              field="run_date")
        return run_external_id(self.id, run_date)
