"""domain.dates: the effective-date rule every interface shares (HTTP, CLI, batch files, Python)."""

from __future__ import annotations

from datetime import date, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from domain.dates import EFFECTIVE_DATE_MAX, EFFECTIVE_DATE_MIN, check_effective_date
from domain.errors import InvalidTransaction


@given(st.dates())
def test_a_date_is_accepted_exactly_when_it_is_in_the_range(when: date) -> None:
    if EFFECTIVE_DATE_MIN <= when <= EFFECTIVE_DATE_MAX:
        assert check_effective_date(when) == when
    else:
        with pytest.raises(InvalidTransaction, match="must be from 1900-01-01 to 2999-12-31"):
            check_effective_date(when)


@pytest.mark.parametrize("value", ["2026-12-01", 0, datetime(2026, 12, 1), None])
def test_only_a_calendar_date_is_a_date(value: object) -> None:
    with pytest.raises(InvalidTransaction, match="calendar date") as refused:
        check_effective_date(value, field="start_date")
    assert refused.value.details["field"] == "start_date"
