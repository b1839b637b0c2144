"""Value encodings shared by the read models: canonical JSON and calendar months."""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")


def canonical_json(value: Any) -> str:
    """Stored JSON is canonical, so a rebuilt row is byte-identical to the original."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def month_of(day: date) -> str:
    """The calendar month of ``day`` as 'YYYY-MM' (sorts in time order as text)."""
    return f"{day.year:04d}-{day.month:02d}"


def parse_month(text: str) -> str:
    """Validate a 'YYYY-MM' month; raises ``ValueError`` with a readable message."""
    if not isinstance(text, str) or not _MONTH.match(text) or text < "0001-01":
        raise ValueError(f"month {text!r} is not of the form YYYY-MM, e.g. 2024-03")
    return text


def month_start(month: str) -> date:
    return date(int(month[:4]), int(month[5:7]), 1)


def month_end(month: str) -> date:
    start = month_start(month)
    if start.month == 12:
        return date(start.year, 12, 31)
    return date(start.year, start.month + 1, 1) - timedelta(days=1)
