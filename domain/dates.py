"""Which calendar dates a ledger entry may carry.

Effective dates are calendar days (``YYYY-MM-DD``, no time, no zone) from
``EFFECTIVE_DATE_MIN`` to ``EFFECTIVE_DATE_MAX``. The range is wide enough for
any book a business keeps (back-filled history, far-future schedules) and keeps
date arithmetic away from the calendar's ends: a statement's next month, a
snapshot's month end or a recurring run one period on never leaves Python's
``date`` range (year 1 to 9999), where it would fail instead of answer.
"""

from __future__ import annotations

from datetime import date, datetime

from domain.errors import InvalidTransaction

EFFECTIVE_DATE_MIN = date(1900, 1, 1)
EFFECTIVE_DATE_MAX = date(2999, 12, 31)


def check_effective_date(value: object, field: str = "effective_date") -> date:
    """``value`` if it is a calendar date in the range; ``InvalidTransaction`` naming ``field`` otherwise."""
    if not isinstance(value, date) or isinstance(value, datetime):
        raise InvalidTransaction(f"{field} must be a calendar date (YYYY-MM-DD)", field=field)
    if not EFFECTIVE_DATE_MIN <= value <= EFFECTIVE_DATE_MAX:
        raise InvalidTransaction(
            f"{field} must be from {EFFECTIVE_DATE_MIN.isoformat()} to {EFFECTIVE_DATE_MAX.isoformat()}",
            field=field,
        )
    return value
