"""Value encodings shared by the read models: storable text, canonical JSON and calendar months.

**Storable text.** The write side refuses text a read model cannot store
(domain/text.py), but logs written by earlier versions may hold some: U+0000,
which PostgreSQL ``text`` cannot hold, and (in theory) surrogate code points,
which no UTF-8 store can. Every string an event gives a read model goes through
``storable`` first, which replaces each such code point with U+FFFD, the
Unicode replacement character, so that a read model never stops on one and
PostgreSQL and SQLite hold the same rows. The event itself is never changed: it
stays the record (and its hashes verify); only the read models' copy differs.
Everything else, other control characters included, is stored as given.
docs/projections.md describes the rule.
"""

from __future__ import annotations

import json
import re
from datetime import date, timedelta
from typing import Any

_MONTH = re.compile(r"^(\d{4})-(0[1-9]|1[0-2])$")
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# What JSON text holds once an unstorable code point went in: an escaped NUL or a raw surrogate.
_UNSTORABLE_IN_JSON = re.compile(r"\\u0000|[\ud800-\udfff]")
REPLACEMENT = "\ufffd"


def storable_text(text: str) -> str:
    """``text`` as a read model stores it: U+0000 and surrogates replaced with U+FFFD."""
    if _UNSTORABLE.search(text) is None:
        return text
    return _UNSTORABLE.sub(REPLACEMENT, text)


def storable(value: Any) -> Any:
    """``value`` with ``storable_text`` applied to every string in it, keys included."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [storable(item) for item in value]
    return value


def is_storable(text: str) -> bool:
    return _UNSTORABLE.search(text) is None


def canonical_json(value: Any) -> str:
    """Stored JSON is canonical, so a rebuilt row is byte-identical to the original.

    Its strings are ``storable``: JSON would escape a NUL (so PostgreSQL could store it),
    but the read model would then give it back, unlike the same text in a text column.
    """
    document = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    if _UNSTORABLE_IN_JSON.search(document) is None:  # nearly always: no second pass
        return document
    return json.dumps(storable(value), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


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
