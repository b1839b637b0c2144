"""The canonical bytes of an event: the one definition every hash of the ledger is taken over.

Sorted-key, compact JSON, UTF-8, no ASCII escaping; UUIDs, timestamps (in UTC,
ISO 8601), dates and enums as text. ``domain.chain`` hashes events with it, and
the offline proof verifier (``domain.proof_bundle``) re-encodes the documents a
proof bundle carries with it. It imports the standard library alone, so a client
can vendor it with ``merkle.py`` and ``proof_bundle.py``.

A document whose values are already JSON's own (as one parsed from a bundle)
re-encodes to the same bytes: the conversions below only apply to Python types
JSON does not have.
"""

from __future__ import annotations

import json
from datetime import date, datetime, timezone
from enum import Enum
from typing import Any
from uuid import UUID


def _encode_value(value: Any) -> Any:
    if isinstance(value, UUID):
        return str(value)
    if isinstance(value, datetime):
        assert value.tzinfo is not None, "event timestamps are timezone-aware"
        return value.astimezone(timezone.utc).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Enum):
        return value.value
    raise TypeError(f"cannot canonically encode {type(value).__name__}")


# Exactly what json.dumps(sort_keys=True, separators=(",", ":"), ensure_ascii=False,
# default=_encode_value) builds on every call; built once, because verification
# hashes every event of the ledger.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=_encode_value)


def reference_encoding(document: dict[str, Any]) -> bytes:
    """The definition of the canonical bytes: the standard library's encoder, as above."""
    return _CANONICAL_JSON.encode(document).encode("utf-8")
